//! A connection's hang-up: the one thing a request body (`body.rs`) may do
//! to the connection it arrived on, and what the connection
//! (`connection/guarded.rs`) listens to.
//!
//! It lives apart from both so that neither imports the other. It never
//! touches a socket itself: it only says when reading must stop.

use std::cell::{Cell, RefCell};
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};

/// A connection's reading side, to be ended a little later: set by a
/// request whose body will not be read whole (`body.rs`), so that
/// actix-http, which would go on reading what is left of that body, sees
/// the end of the connection instead, sends its answer, and closes.
#[derive(Default)]
pub(crate) struct Hangup {
    at: Cell<Option<Instant>>,
    /// The connection's task, woken to notice the hang-up.
    reader: RefCell<Option<Waker>>,
}

impl Hangup {
    /// Ends the reading side `delay` from now (or sooner, if already set).
    pub(crate) fn after(&self, delay: Duration) {
        let at = Instant::now() + delay;
        if self.at.get().is_some_and(|set| set <= at) {
            return;
        }
        self.at.set(Some(at));
        if let Some(reader) = self.reader.borrow_mut().take() {
            reader.wake();
        }
    }

    /// Whether reading must end now. Until a hang-up is set, the reading
    /// task is remembered so that setting one wakes it; once set, `timer`
    /// (the reader's, kept across polls) wakes it when the time comes.
    pub(crate) fn poll_due(
        &self,
        timer: &mut Option<Pin<Box<Sleep>>>,
        cx: &mut Context<'_>,
    ) -> bool {
        match self.at.get() {
            Some(at) => {
                let timer = timer.get_or_insert_with(|| Box::pin(sleep_until(at)));
                timer.as_mut().poll(cx).is_ready()
            }
            None => {
                let mut reader = self.reader.borrow_mut();
                if !reader.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *reader = Some(cx.waker().clone());
                }
                false
            }
        }
    }
}
