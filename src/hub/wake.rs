//! Waking streams once per worker thread, not once per stream.
//!
//! A stream's task lives on one HTTP worker thread (a single-threaded
//! runtime). When the writer thread wakes it directly, every wake is a
//! cross-thread hand-off: the worker's event loop is signalled (an `eventfd`
//! write) and, on a busy machine, the woken thread takes the writer's core.
//! With a hundred streams that is up to a hundred signals per commit, sent
//! one by one while the writer still holds the events the last streams are
//! waiting for.
//!
//! So each worker thread has a [`WakeGroup`]: the hub hands it the wakers of
//! the streams living there, and signals it once per batch; a small task on
//! the worker then wakes those streams locally, which costs no system call.
//! Streams registered on a thread without a group (a test's runtime, a
//! helper task) are woken directly, as before.

use std::cell::RefCell;
use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use futures_util::task::AtomicWaker;

/// The streams of one worker thread that are waiting to be woken.
#[derive(Debug, Default)]
pub struct WakeGroup {
    pending: Mutex<Vec<Waker>>,
    /// The worker's dispatcher task.
    signal: AtomicWaker,
}

impl WakeGroup {
    fn lock(&self) -> MutexGuard<'_, Vec<Waker>> {
        // Plain data: a panic elsewhere leaves nothing half-done here.
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<WakeGroup>>> = const { RefCell::new(None) };
}

/// Gives the calling worker thread its group and starts the task that wakes
/// its streams. Call it from a task on a single-threaded runtime with a
/// `LocalSet` (an actix worker); a second call on the same thread does
/// nothing.
pub fn install_on_this_thread() {
    CURRENT.with(|current| {
        let mut current = current.borrow_mut();
        if current.is_some() {
            return;
        }
        let group = Arc::new(WakeGroup::default());
        *current = Some(group.clone());
        tokio::task::spawn_local(dispatch(group));
    });
}

/// The calling thread's group, if it has one: streams registered here are
/// woken through it.
pub fn this_thread() -> Option<Arc<WakeGroup>> {
    CURRENT.with(|current| current.borrow().clone())
}

/// Wakes a group's streams whenever the hub signals it, on the group's own
/// thread (where waking a task only queues it).
async fn dispatch(group: Arc<WakeGroup>) {
    let mut ready = Vec::new();
    loop {
        poll_fn(|cx| {
            group.signal.register(cx.waker());
            let mut pending = group.lock();
            if pending.is_empty() {
                Poll::Pending
            } else {
                std::mem::swap(&mut *pending, &mut ready);
                Poll::Ready(())
            }
        })
        .await;
        for waker in ready.drain(..) {
            waker.wake();
        }
    }
}

/// The wake-ups one publish collects, sent when it is done (after the hub's
/// lock is released): each group is signalled once.
#[derive(Default)]
pub(super) struct Wakes {
    direct: Vec<Waker>,
    grouped: Vec<(Arc<WakeGroup>, Vec<Waker>)>,
}

impl Wakes {
    pub(super) fn add(&mut self, group: Option<&Arc<WakeGroup>>, waker: Waker) {
        let Some(group) = group else {
            self.direct.push(waker);
            return;
        };
        match self.grouped.iter_mut().find(|(g, _)| Arc::ptr_eq(g, group)) {
            Some((_, wakers)) => wakers.push(waker),
            None => self.grouped.push((group.clone(), vec![waker])),
        }
    }

    pub(super) fn send(self) {
        for (group, wakers) in self.grouped {
            group.lock().extend(wakers);
            group.signal.wake();
        }
        for waker in self.direct {
            waker.wake();
        }
    }
}
