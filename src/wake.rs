//! Waking tasks on the HTTP workers from the writer's thread: one wake per
//! worker thread per commit, not one per stream or per request.
//!
//! The hub publishes on the writer's thread (or the follower's); the streams
//! it pushes to, and the requests the writer answers, run on the HTTP
//! workers. Waking a task from another thread costs a system call (tokio
//! writes to the worker's eventfd) and a context switch, every time: a
//! publish to 100 idle streams made 100 of them, and each answered request
//! one more. Instead, each worker thread runs one relay task ([`install`]).
//! A stream that waits on its queue registers its waker together with its
//! thread's relay, and a request sent to the writer names its thread's relay
//! ([`current`]). A publish hands the relay, once and after the hub's lock
//! is released, every waker of that thread's streams it queued frames for
//! ([`Wakes`]), and wakes the relay. The relay, on the worker, wakes them
//! there: same-thread wakes are a push onto the worker's run queue.
//!
//! The writer runs a committed batch's publish and its answers inside
//! [`gathered`]: the wakes the hub owes and the answers ([`run_on`]) are
//! held until the end and handed over together, so a batch costs one wake
//! per worker thread, whatever it published and whoever it answers.
//!
//! Where no relay was installed (a thread outside the HTTP workers, the
//! unit tests), a stream's waker is woken directly, and an answer sent
//! directly, as before.

use std::cell::{OnceCell, RefCell};
use std::future::poll_fn;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use futures_util::task::AtomicWaker;

use crate::sync::LockExt;

/// What a relay does on its thread: wake a task, or run a small piece of
/// work (an answer's send) whose wake is then a same-thread one.
enum Work {
    Wake(Waker),
    Run(Box<dyn FnOnce() + Send>),
}

impl Work {
    fn run(self) {
        match self {
            Work::Wake(waker) => waker.wake(),
            Work::Run(f) => f(),
        }
    }
}

/// One worker thread's relay: the work handed over for it, and the relay
/// task's own waker.
#[derive(Default)]
pub struct Relay {
    pending: Mutex<Vec<Work>>,
    task: AtomicWaker,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").finish_non_exhaustive()
    }
}

thread_local! {
    static RELAY: OnceCell<Arc<Relay>> = const { OnceCell::new() };
    /// The hand-overs [`gathered`] holds back on this thread, if it runs.
    static GATHERING: RefCell<Option<Wakes>> = const { RefCell::new(None) };
}

/// Starts this worker thread's relay task (once per thread; later calls do
/// nothing). Must run on a thread whose tasks `tokio::task::spawn_local`
/// can spawn, as actix's workers are.
pub fn install() {
    RELAY.with(|cell| {
        cell.get_or_init(|| {
            let relay = Arc::new(Relay::default());
            tokio::task::spawn_local(Arc::clone(&relay).run());
            relay
        });
    });
}

/// This thread's relay, if [`install`] ran here.
pub fn current() -> Option<Arc<Relay>> {
    RELAY.with(|cell| cell.get().cloned())
}

/// Runs `f`, holding back every hand-over to a relay made on this thread
/// meanwhile ([`Wakes::send`], [`run_on`]), and hands them over at the end
/// (also if `f` panics): one wake per relay for all of them.
pub fn gathered<R>(f: impl FnOnce() -> R) -> R {
    struct Flush;
    impl Drop for Flush {
        fn drop(&mut self) {
            if let Some(wakes) = GATHERING.with(|cell| cell.borrow_mut().take()) {
                wakes.send_now();
            }
        }
    }
    let outer = GATHERING.with(|cell| {
        let mut gathering = cell.borrow_mut();
        let outer = gathering.is_some();
        gathering.get_or_insert_with(Wakes::default);
        outer
    });
    if outer {
        // Already gathering: the outermost call hands over.
        return f();
    }
    let _flush = Flush;
    f()
}

/// Runs `f` on `relay`'s thread (after what a [`gathered`] call around this
/// one holds back), or here and now without a relay.
pub fn run_on(relay: Option<&Arc<Relay>>, f: impl FnOnce() + Send + 'static) {
    match relay {
        Some(relay) => {
            let mut wakes = Wakes::default();
            wakes.push(relay, Work::Run(Box::new(f)));
            wakes.send();
        }
        None => f(),
    }
}

impl Relay {
    /// Does, on its own thread, what was handed over for it; never ends.
    async fn run(self: Arc<Self>) {
        let mut taken = Vec::new();
        loop {
            poll_fn(|cx| {
                self.task.register(cx.waker());
                // Looked at after registering: a hand-over in between woke
                // the new waker.
                if self.lock().is_empty() {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
            std::mem::swap(&mut *self.lock(), &mut taken);
            for work in taken.drain(..) {
                // A panicking answer must not end the relay for the rest.
                if catch_unwind(AssertUnwindSafe(|| work.run())).is_err() {
                    tracing::error!("work handed to a worker's relay panicked");
                }
            }
            // A burst that grew the list does not keep it.
            taken.shrink_to(64);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Work>> {
        self.pending.locked()
    }
}

/// The wakes (and work) owed, grouped by relay; sent with [`Wakes::send`]
/// once the hub's lock is released.
#[derive(Default)]
pub struct Wakes {
    /// Streams without a relay: woken directly.
    direct: Vec<Waker>,
    /// Per relay (a handful: one per worker), what it is to do.
    relayed: Vec<(Arc<Relay>, Vec<Work>)>,
}

impl Wakes {
    pub fn add(&mut self, waker: Waker, relay: Option<&Arc<Relay>>) {
        match relay {
            Some(relay) => self.push(relay, Work::Wake(waker)),
            None => self.direct.push(waker),
        }
    }

    fn push(&mut self, relay: &Arc<Relay>, work: Work) {
        self.works_for(relay).push(work);
    }

    fn works_for(&mut self, relay: &Arc<Relay>) -> &mut Vec<Work> {
        let at = match self.relayed.iter().position(|(r, _)| Arc::ptr_eq(r, relay)) {
            Some(at) => at,
            None => {
                self.relayed.push((Arc::clone(relay), Vec::new()));
                self.relayed.len() - 1
            }
        };
        &mut self.relayed[at].1
    }

    /// Wakes every stream owed: one hand-over and one wake per relay; held
    /// back until the end of a [`gathered`] call running on this thread.
    pub fn send(self) {
        let held = GATHERING.with(|cell| match cell.borrow_mut().as_mut() {
            Some(gathering) => {
                gathering.merge(self);
                None
            }
            None => Some(self),
        });
        if let Some(wakes) = held {
            wakes.send_now();
        }
    }

    fn merge(&mut self, other: Wakes) {
        self.direct.extend(other.direct);
        for (relay, works) in other.relayed {
            self.works_for(&relay).extend(works);
        }
    }

    fn send_now(self) {
        for waker in self.direct {
            waker.wake();
        }
        for (relay, works) in self.relayed {
            relay.lock().extend(works);
            relay.task.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::time::Duration;

    /// Starts a thread with a relay installed, as an HTTP worker has, and
    /// returns the relay and that thread's id.
    fn worker() -> (Arc<Relay>, std::thread::ThreadId) {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                install();
                tx.send((current().expect("installed"), std::thread::current().id()))
                    .expect("send");
                std::future::pending::<()>().await;
            });
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("worker started")
    }

    #[test]
    fn work_handed_to_a_relay_runs_on_its_thread() {
        let (relay, thread) = worker();
        let (tx, rx) = mpsc::channel();
        run_on(Some(&relay), move || {
            tx.send(std::thread::current().id()).expect("send");
        });
        let ran_on = rx.recv_timeout(Duration::from_secs(5)).expect("ran");
        assert_eq!(ran_on, thread);
    }

    #[test]
    fn without_a_relay_work_runs_at_once() {
        let ran = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&ran);
        run_on(None, move || {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        assert!(current().is_none(), "no relay on a plain thread");
    }

    #[test]
    fn gathered_hands_over_at_its_end_in_order() {
        let (relay, _) = worker();
        let order = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        gathered(|| {
            for n in 0..3 {
                let order = Arc::clone(&order);
                run_on(Some(&relay), move || order.lock().expect("lock").push(n));
            }
            // Nested: still held back by the outer call.
            gathered(|| {
                let tx = tx.clone();
                run_on(Some(&relay), move || tx.send(()).expect("send"));
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(
                order.lock().expect("lock").is_empty(),
                "nothing ran before the end of gathered"
            );
        });
        rx.recv_timeout(Duration::from_secs(5)).expect("ran");
        assert_eq!(*order.lock().expect("lock"), vec![0, 1, 2]);
    }

    #[test]
    fn a_panicking_gathered_still_hands_over_and_the_relay_goes_on() {
        let (relay, _) = worker();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            gathered(|| {
                run_on(Some(&relay), || panic!("an answer that panics"));
                run_on(Some(&relay), move || tx.send(1).expect("send"));
                panic!("the publish panicked");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).expect("ran"), 1);
        run_on(Some(&relay), move || tx2.send(2).expect("send"));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).expect("ran"), 2);
    }
}
