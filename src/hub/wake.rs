//! Waking streams: one wake per worker thread per publish, not one per
//! stream.
//!
//! The hub publishes on the writer's thread (or the follower's); the streams
//! it pushes to run on the HTTP workers. Waking a task from another thread
//! costs a system call (tokio writes to the worker's eventfd) and a context
//! switch, every time: a publish to 100 idle streams made 100 of them.
//! Instead, each worker thread runs one relay task ([`install`]). A stream
//! that waits on its queue registers its waker together with its thread's
//! relay; a publish hands the relay, once and after the hub's lock is
//! released, every waker of that thread's streams it queued frames for
//! ([`Wakes`]), and wakes the relay. The relay, on the worker, wakes them
//! there: same-thread wakes are a push onto the worker's run queue.
//!
//! Where no relay was installed (a thread outside the HTTP workers, the
//! unit tests), a stream's waker is woken directly, as before.

use std::cell::OnceCell;
use std::future::poll_fn;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use futures_util::task::AtomicWaker;

/// One worker thread's relay: the wakers a publish left for it, and the
/// relay task's own waker.
#[derive(Debug, Default)]
pub struct Relay {
    pending: Mutex<Vec<Waker>>,
    task: AtomicWaker,
}

thread_local! {
    static RELAY: OnceCell<Arc<Relay>> = const { OnceCell::new() };
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
pub(super) fn current() -> Option<Arc<Relay>> {
    RELAY.with(|cell| cell.get().cloned())
}

impl Relay {
    /// Wakes, on its own thread, what publishes left here; never ends.
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
            for waker in taken.drain(..) {
                waker.wake();
            }
            // A burst that grew the list does not keep it.
            taken.shrink_to(64);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Waker>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The wakes one publish owes, grouped by relay; sent with [`Wakes::send`]
/// once the hub's lock is released.
#[derive(Default)]
pub(super) struct Wakes {
    /// Streams without a relay: woken directly.
    direct: Vec<Waker>,
    /// Per relay (a handful: one per worker), its streams' wakers.
    relayed: Vec<(Arc<Relay>, Vec<Waker>)>,
}

impl Wakes {
    pub(super) fn add(&mut self, waker: Waker, relay: Option<&Arc<Relay>>) {
        let Some(relay) = relay else {
            self.direct.push(waker);
            return;
        };
        match self.relayed.iter_mut().find(|(r, _)| Arc::ptr_eq(r, relay)) {
            Some((_, wakers)) => wakers.push(waker),
            None => self.relayed.push((Arc::clone(relay), vec![waker])),
        }
    }

    /// Wakes every stream owed: one hand-over and one wake per relay.
    pub(super) fn send(self) {
        for waker in self.direct {
            waker.wake();
        }
        for (relay, wakers) in self.relayed {
            relay.lock().extend(wakers);
            relay.task.wake();
        }
    }
}
