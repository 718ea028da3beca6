//! When an idle stream owes its client a keep-alive comment, without a timer
//! per stream.
//!
//! A tokio timer is ~130 bytes of heap per stream for its whole life, and
//! most of ten thousand idle streams' memory is such small things. Instead,
//! each worker thread keeps one clock per keep-alive period: a ring of
//! slots, [`TICKS_PER_PERIOD`] per period, each holding the wakers of the
//! streams that fall due at that tick, and one task that wakes each slot's
//! streams when its tick comes. A waiting stream costs its waker (16 bytes)
//! in one slot. A stream is woken once per period when idle (at the tick
//! its comment falls due, so the comment goes out at most one tick late)
//! and never for the clock while it sends; one that sent since it
//! registered finds it is not due yet and registers for its new tick. The
//! clock's task ends when no stream waits on it and starts again with the
//! next one.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use crate::sync::LockExt;

/// Ticks of a clock per keep-alive period: a comment goes out at most
/// 1/TICKS_PER_PERIOD of the period late.
const TICKS_PER_PERIOD: u32 = 8;

/// One stream's keep-alive: its thread's clock for the period, and the tick
/// its waker waits for there.
pub(super) struct KeepAlive {
    clock: Arc<Clock>,
    /// The tick this stream's waker is in the clock's ring for, and where
    /// in that tick's slot.
    registered: Option<(u64, usize)>,
}

impl KeepAlive {
    /// A keep-alive every `period` without traffic, on this thread's clock.
    pub(super) fn new(period: Duration) -> Self {
        KeepAlive {
            clock: Clock::for_period(period),
            registered: None,
        }
    }

    /// Whether a comment is due now, `period` after `last_sent`; if not,
    /// `cx` is woken when it will be (or a little after).
    pub(super) fn poll_due(&mut self, cx: &mut Context<'_>, last_sent: Instant) -> bool {
        let mut state = self.clock.lock();
        if self
            .registered
            .is_some_and(|(tick, _)| tick > state.now_tick)
        {
            // Its tick has not come: still waiting in the ring.
            return false;
        }
        let due = last_sent + self.clock.period;
        let now = Instant::now();
        if now >= due {
            self.registered = None;
            return true;
        }
        let start = !state.running;
        if start {
            // Nothing waits while the clock's task is stopped: the ticks
            // missed meanwhile are skipped.
            let now = self.clock.tick_at(now);
            state.now_tick = state.now_tick.max(now.saturating_sub(1));
            state.running = true;
        }
        // Within the ring: a tick further on would share a slot with one
        // still to come (the stream is then woken early, and registers
        // again).
        let last = state.now_tick + state.slots.len() as u64 - 1;
        let tick = self.clock.tick_at(due).clamp(state.now_tick + 1, last);
        let at = state.wait(tick, cx.waker().clone());
        self.registered = Some((tick, at));
        drop(state);
        if start {
            tokio::spawn(Arc::clone(&self.clock).run());
        }
        false
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        if let Some((tick, at)) = self.registered {
            self.clock.lock().leave(tick, at);
        }
    }
}

struct Clock {
    period: Duration,
    tick: Duration,
    /// Tick 0.
    epoch: Instant,
    state: Mutex<State>,
}

struct State {
    /// The last tick whose streams were woken.
    now_tick: u64,
    /// Wakers by the tick they wait for: slot `tick % len`. Every tick
    /// waited for is within the ring's length after `now_tick`. A stream
    /// that ends takes its waker out (which holds its task's memory).
    slots: Vec<Vec<Option<Waker>>>,
    /// Wakers in all slots.
    waiting: usize,
    /// The clock's task runs.
    running: bool,
}

thread_local! {
    /// This thread's clocks, one per keep-alive period in use (one, unless
    /// the tests vary it).
    static CLOCKS: RefCell<Vec<Arc<Clock>>> = const { RefCell::new(Vec::new()) };
}

impl Clock {
    fn for_period(period: Duration) -> Arc<Clock> {
        CLOCKS.with(|clocks| {
            let mut clocks = clocks.borrow_mut();
            if let Some(clock) = clocks.iter().find(|clock| clock.period == period) {
                return Arc::clone(clock);
            }
            let clock = Arc::new(Clock {
                period,
                tick: (period / TICKS_PER_PERIOD).max(Duration::from_millis(1)),
                epoch: Instant::now(),
                state: Mutex::new(State {
                    now_tick: 0,
                    // A period's ticks and one more, twice: room for a
                    // clock running late.
                    slots: (0..2 * TICKS_PER_PERIOD + 2).map(|_| Vec::new()).collect(),
                    waiting: 0,
                    running: false,
                }),
            });
            clocks.push(Arc::clone(&clock));
            clock
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// The first tick at or after `at`.
    fn tick_at(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        let tick = self.tick.as_nanos();
        u64::try_from(since.div_ceil(tick)).unwrap_or(u64::MAX)
    }

    /// Wakes each tick's streams when it comes; ends when none waits.
    async fn run(self: Arc<Self>) {
        let tick_nanos = u64::try_from(self.tick.as_nanos()).unwrap_or(u64::MAX);
        loop {
            let next = self.lock().now_tick + 1;
            let at = self.epoch + Duration::from_nanos(tick_nanos.saturating_mul(next));
            tokio::time::sleep_until(at.into()).await;
            let woken = {
                let mut state = self.lock();
                state.now_tick = next;
                let woken = state.take(next);
                if woken.is_empty() && state.waiting == 0 {
                    state.running = false;
                    return;
                }
                woken
            };
            for waker in woken {
                waker.wake();
            }
        }
    }
}

impl State {
    fn slot(&mut self, tick: u64) -> &mut Vec<Option<Waker>> {
        let len = self.slots.len() as u64;
        &mut self.slots[(tick % len) as usize]
    }

    /// Where in `tick`'s slot the waker went.
    fn wait(&mut self, tick: u64, waker: Waker) -> usize {
        self.waiting += 1;
        let slot = self.slot(tick);
        slot.push(Some(waker));
        slot.len() - 1
    }

    /// Takes the waker a stream left at (`tick`, `at`), if its tick has
    /// not come.
    fn leave(&mut self, tick: u64, at: usize) {
        if tick > self.now_tick && self.slot(tick)[at].take().is_some() {
            self.waiting -= 1;
        }
    }

    fn take(&mut self, tick: u64) -> Vec<Waker> {
        let slot = self.slot(tick);
        // A burst that grew the slot does not keep it.
        let capacity = slot.len().min(64);
        let woken: Vec<Waker> = std::mem::replace(slot, Vec::with_capacity(capacity))
            .into_iter()
            .flatten()
            .collect();
        self.waiting -= woken.len();
        woken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::task::Poll;

    /// Waits, as an idle stream does, until a comment is due; returns when.
    async fn due(keepalive: &mut KeepAlive, last_sent: Instant) -> Instant {
        poll_fn(|cx| {
            if keepalive.poll_due(cx, last_sent) {
                Poll::Ready(Instant::now())
            } else {
                Poll::Pending
            }
        })
        .await
    }

    #[tokio::test]
    async fn an_idle_stream_is_due_one_period_after_it_last_sent_at_most_a_tick_late() {
        let period = Duration::from_millis(160);
        let mut keepalive = KeepAlive::new(period);
        for _ in 0..3 {
            let last_sent = Instant::now();
            let at = tokio::time::timeout(Duration::from_secs(5), due(&mut keepalive, last_sent))
                .await
                .expect("woken");
            let after = at - last_sent;
            assert!(after >= period, "due after {after:?}");
            // One tick (20 ms) late at most, and the machine's scheduling.
            assert!(
                after < period + Duration::from_millis(120),
                "due after {after:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_stream_that_sent_meanwhile_is_not_due_until_a_period_after_that() {
        let period = Duration::from_millis(200);
        let mut keepalive = KeepAlive::new(period);
        let first = Instant::now();
        // Registers for `first + period`.
        let waiting = tokio::time::timeout(Duration::from_millis(50), due(&mut keepalive, first));
        assert!(waiting.await.is_err(), "not due yet");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let sent = Instant::now();
        let at = tokio::time::timeout(Duration::from_secs(5), due(&mut keepalive, sent))
            .await
            .expect("woken");
        assert!(
            at - sent >= period,
            "due {:?} after the last send",
            at - sent
        );
    }

    #[tokio::test]
    async fn a_stream_that_ends_leaves_the_clock_at_once() {
        let mut keepalive = KeepAlive::new(Duration::from_secs(60));
        let clock = Arc::clone(&keepalive.clock);
        let waiting = tokio::time::timeout(
            Duration::from_millis(20),
            due(&mut keepalive, Instant::now()),
        );
        assert!(waiting.await.is_err(), "not due yet");
        assert_eq!(clock.lock().waiting, 1);
        drop(keepalive);
        let state = clock.lock();
        assert_eq!(state.waiting, 0);
        assert!(
            state.slots.iter().flatten().all(Option::is_none),
            "its waker is gone"
        );
    }

    #[tokio::test]
    async fn streams_on_one_thread_share_a_clock_that_stops_when_none_waits() {
        let period = Duration::from_millis(80);
        let mut streams: Vec<KeepAlive> = (0..50).map(|_| KeepAlive::new(period)).collect();
        let clock = Arc::clone(&streams[0].clock);
        assert!(streams.iter().all(|s| Arc::ptr_eq(&s.clock, &clock)));
        let last_sent = Instant::now();
        for stream in &mut streams {
            let at = tokio::time::timeout(Duration::from_secs(5), due(stream, last_sent))
                .await
                .expect("woken");
            assert!(at - last_sent >= period);
        }
        // Nobody waits: the clock's task ends within a tick or two.
        drop(streams);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let state = clock.lock();
        assert_eq!(state.waiting, 0);
        assert!(!state.running, "the clock's task ended");
    }
}
