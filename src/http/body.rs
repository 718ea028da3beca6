//! Request bodies that do not arrive: a deadline, and a bound on how many
//! requests may wait for theirs at once.
//!
//! actix-http cuts a request *head* that takes longer than 5 s, but gives
//! the body no deadline of its own: a head saying `Content-Length: 100000`
//! followed by one byte held its connection, and its file descriptor, for
//! as long as the client liked, and a few thousand of them left the process
//! without descriptors. So every request body the HTTP/1 path hands to the
//! app is a [`WatchedBody`]:
//!
//! 1. A body that is not received in full within [`BODY_TIMEOUT`] of its
//!    head ends its reader with [`BodyRefused::TimedOut`]: the request is
//!    answered 408 `request_timeout`, and its connection is closed.
//! 2. A request counts as *waiting* from the moment its reader finds the
//!    body incomplete, with every byte the connection has read handed over,
//!    until the body ends (or is refused or dropped). At most [`MAX_WAITING_BODIES`] requests wait at once in the
//!    process; one more is refused at once with
//!    [`BodyRefused::TooManyWaiting`] (503 `unavailable`, `Retry-After`)
//!    and its connection closed at once, so its descriptor is freed. A body that
//!    arrives with its head, as nearly all do, never waits.
//! 3. A body left unfinished when the request is dropped (the handler
//!    answered without reading it all, or the deadline passed) hangs up the
//!    connection's reading side a moment later
//!    (`hangup::Hangup`): actix-http would otherwise keep reading an
//!    unfinished chunked body, which has no deadline, for ever.
//!
//! Nothing here reads the socket itself or knows HTTP framing: it watches
//! the payload stream actix-http decodes.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_http::error::PayloadError;
use actix_http::{Payload, Request};
use bytes::Bytes;
use futures_util::Stream;
use tokio::time::{sleep_until, Instant, Sleep};

use super::hangup::Hangup;

/// How long a request body may take to arrive, counted from its head. Twice
/// the head's 5 s: a body is larger than a head, and the default
/// `--max-body` (1 MiB) takes about 8 s at 1 Mbit/s. Bodies here are JSON
/// documents and appends, not uploads of files: a client that needs longer
/// is stalled, not slow.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How many requests, in the whole process, may wait for their bodies at
/// once. A waiting request holds a connection (a file descriptor) and
/// little else; the bound keeps the descriptors they hold well below any
/// limit a server runs with (the common soft limit of 1,024 keeps half of
/// it for everything else), while honest clients, whose bodies arrive with
/// their heads or within milliseconds, come nowhere near it.
pub const MAX_WAITING_BODIES: usize = 512;

/// How long after an unfinished body is dropped its connection stops
/// reading: time for the answer to leave first (actix-http's own linger
/// for an unread body with a `Content-Length` is as long).
const HANG_UP_AFTER: Duration = Duration::from_secs(1);

/// Requests now waiting for their bodies (see the module doc, 2).
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Why a body was cut off; carried to the body's reader inside
/// `PayloadError::Io`, and turned into the answer by `extract::read_body`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyRefused {
    #[error("the request body did not arrive in time")]
    TimedOut,
    #[error("too many requests are waiting for their bodies")]
    TooManyWaiting,
}

impl BodyRefused {
    /// The refusal inside a payload error, if it is one.
    pub fn of(err: &PayloadError) -> Option<BodyRefused> {
        match err {
            PayloadError::Io(io) => io.get_ref()?.downcast_ref::<BodyRefused>().copied(),
            _ => None,
        }
    }

    fn into_payload_error(self) -> PayloadError {
        PayloadError::Io(std::io::Error::other(self))
    }
}

/// Gives the request's body, if it has one, a deadline and a place in the
/// count of waiting bodies. `hangup` is its connection's, when it has one.
pub fn watch(req: &mut Request, hangup: Option<Rc<Hangup>>) {
    let payload = req.take_payload();
    if matches!(payload, Payload::None) {
        return;
    }
    *req.payload() = Payload::Stream {
        payload: Box::pin(WatchedBody {
            inner: payload,
            started: Instant::now(),
            looked: false,
            deadline: None,
            slot: None,
            ended: false,
            refused: None,
            hangup,
        }),
    };
}

/// A request body with a deadline (see the module doc).
struct WatchedBody {
    inner: Payload,
    started: Instant,
    /// The body was polled once already (see `poll_next`).
    looked: bool,
    /// Made the first time the body is found incomplete.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Held while the body is incomplete at the socket.
    slot: Option<WaitingSlot>,
    /// The body ended: every byte was read.
    ended: bool,
    /// Given again to a reader that polls after a refusal.
    refused: Option<BodyRefused>,
    hangup: Option<Rc<Hangup>>,
}

impl Stream for WatchedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(refusal) = this.refused {
            return Poll::Ready(Some(Err(refusal.into_payload_error())));
        }
        if this.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(bytes))) => Poll::Ready(Some(Ok(bytes))),
            Poll::Ready(None) => {
                this.ended = true;
                this.slot = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(err))) => {
                this.slot = None;
                Poll::Ready(Some(Err(err)))
            }
            // actix-http calls the app as soon as it has parsed a head,
            // before it hands over the body bytes read with it: the first
            // look finds nothing even when the body is here. Look again
            // once the connection's task has run.
            Poll::Pending if !this.looked => {
                this.looked = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Pending => {
                if this.slot.is_none() {
                    match WaitingSlot::take() {
                        Some(slot) => this.slot = Some(slot),
                        None => {
                            return Poll::Ready(Some(Err(this.refuse(BodyRefused::TooManyWaiting))))
                        }
                    }
                }
                let started = this.started;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(sleep_until(started + BODY_TIMEOUT)));
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Some(Err(this.refuse(BodyRefused::TimedOut))));
                }
                Poll::Pending
            }
        }
    }
}

impl WatchedBody {
    fn refuse(&mut self, refusal: BodyRefused) -> PayloadError {
        self.refused = Some(refusal);
        self.slot = None;
        refusal.into_payload_error()
    }

    /// Whether the rest of the body is already here, unread: then the
    /// connection can serve its next request.
    fn arrived_whole(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            match Pin::new(&mut self.inner).poll_next(&mut cx) {
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Ready(None) => return true,
                Poll::Ready(Some(Err(_))) | Poll::Pending => return false,
            }
        }
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        let Some(hangup) = self.hangup.take() else {
            return;
        };
        let refused = self.refused;
        match refused {
            // Refused for want of room: the descriptor is what is short, so
            // it goes at once (the client has sent nothing unread that a
            // reset could make it lose its answer over, unless it sends
            // still, and then it is told by the reset).
            Some(BodyRefused::TooManyWaiting) => hangup.after(Duration::ZERO),
            Some(BodyRefused::TimedOut) => hangup.after(HANG_UP_AFTER),
            None if !self.ended && !self.arrived_whole() => hangup.after(HANG_UP_AFTER),
            None => {}
        }
    }
}

/// One place among the [`MAX_WAITING_BODIES`]; given back when dropped.
struct WaitingSlot(());

impl WaitingSlot {
    fn take() -> Option<WaitingSlot> {
        WAITING
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_WAITING_BODIES).then_some(n + 1)
            })
            .ok()
            .map(|_| WaitingSlot(()))
    }
}

impl Drop for WaitingSlot {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_survives_the_trip_through_a_payload_error() {
        for refusal in [BodyRefused::TimedOut, BodyRefused::TooManyWaiting] {
            assert_eq!(
                BodyRefused::of(&refusal.into_payload_error()),
                Some(refusal)
            );
        }
        assert_eq!(BodyRefused::of(&PayloadError::Incomplete(None)), None);
        assert_eq!(
            BodyRefused::of(&PayloadError::Io(std::io::Error::other("reset"))),
            None
        );
    }
}
