//! A stream's queue of frames: the hub pushes under its lock, the stream
//! takes. It is bounded: a frame that does not fit is not queued, and the
//! stream is marked lagged instead (it then reads the gap from the log).
//!
//! An idle stream's queue holds no buffer: the frames' ring is allocated
//! when frames arrive and given back once a burst is drained, so ten
//! thousand idle streams cost a few dozen bytes each here.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};

use futures_util::task::AtomicWaker;

use super::Frame;
use crate::sync::LockExt;
use crate::wake::{self, Relay};

/// A drained ring larger than this is given back rather than kept.
const KEEP_CAPACITY: usize = 16;

#[derive(Debug, Default)]
pub struct FrameQueue {
    frames: Mutex<VecDeque<Frame>>,
    waker: AtomicWaker,
    /// Set by the hub when a frame did not fit.
    lagged: AtomicBool,
    /// Set by the hub when the server shuts down: the stream ends.
    closed: AtomicBool,
    /// The relay of the worker thread the stream waits on, if it has one.
    relay: OnceLock<Arc<Relay>>,
}

/// What became of a pushed frame.
pub(super) enum Pushed {
    /// Queued; the stream's waker, if it waits, for the publish to wake
    /// once the hub's lock is released.
    Queued(Option<Waker>),
    /// The queue is full: the stream is now lagged, the frame dropped.
    Full,
}

impl FrameQueue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Frame>> {
        self.frames.locked()
    }

    /// Makes the stream read the log before it takes another frame, as an
    /// overflow does.
    pub(super) fn force_lag(&self) {
        self.lagged.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Ends the stream: it sends nothing more (server shutdown).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.waker.wake();
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Queues `frame` unless `capacity` frames wait already. A queued frame
    /// leaves the waking to the caller ([`Pushed::Queued`]); a full queue
    /// wakes the stream now.
    pub(super) fn push(&self, frame: Frame, capacity: usize) -> Pushed {
        let mut frames = self.lock();
        if frames.len() >= capacity {
            drop(frames);
            self.lagged.store(true, Ordering::Release);
            self.waker.wake();
            return Pushed::Full;
        }
        frames.push_back(frame);
        drop(frames);
        Pushed::Queued(self.waker.take())
    }

    /// The relay the stream's wakes go through, if it registered with one.
    pub(super) fn relay(&self) -> Option<&Arc<Relay>> {
        self.relay.get()
    }

    pub fn is_lagged(&self) -> bool {
        self.lagged.load(Ordering::Acquire)
    }

    pub(super) fn clear_lag(&self) {
        self.lagged.store(false, Ordering::Release);
    }

    /// The oldest queued frame, if any.
    pub fn try_recv(&self) -> Option<Frame> {
        let mut frames = self.lock();
        let frame = frames.pop_front();
        if frames.is_empty() && frames.capacity() > KEEP_CAPACITY {
            *frames = VecDeque::new();
        }
        frame
    }

    /// Waits until a frame is queued, the stream is lagged or it is closed;
    /// does not take the frame (`try_recv` does).
    pub async fn ready(&self) {
        poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// [`FrameQueue::ready`] as a poll: registers `cx`'s waker when pending.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.has_news() {
            return Poll::Ready(());
        }
        if self.relay.get().is_none() {
            if let Some(relay) = wake::current() {
                let _ = self.relay.set(relay);
            }
        }
        self.waker.register(cx.waker());
        // A push between the check and the registration woke nobody: look
        // again.
        if self.has_news() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    fn has_news(&self) -> bool {
        self.is_lagged() || self.is_closed() || !self.lock().is_empty()
    }
}
