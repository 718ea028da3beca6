//! One open stream's engine: the hand-over from the log to the hub's queue
//! (see the parent module's doc), the keep-alives, the end of a credential,
//! and the `resync` event. `GET /api/stream` and Mercure's subscribe both
//! send what a [`LogStream`] produces.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::http::header::{CacheControl, CacheDirective, ContentEncoding};
use actix_web::HttpResponse;
use bytes::Bytes;
use futures_util::FutureExt as _;
use serde::Serialize;

use super::keepalive::KeepAlive;
use super::Start;
use crate::auth::{EndOfCredential, StreamEnd};
use crate::domain::mercure::Update;
use crate::domain::{EventId, StreamFilter, Timestamp};
use crate::http::AppState;
use crate::hub::{
    comment_frame, frame_events, mercure_frame, retry_frame, Frame, FrameQueue, Framing, Hub,
    Registration, SubscriberId,
};
use crate::store::{events, LogPosition, Store, StoreError};

/// Events read from the log per page while catching up.
const PAGE: i64 = 1000;
/// How often a sending stream checks whether its credential has ended.
const END_CHECK: Duration = Duration::from_millis(100);

/// The endless `text/event-stream` answer that sends what `stream` produces,
/// with headers of the caller's already on `response`.
pub(in crate::http) fn sse_response_with(
    stream: LogStream,
    mut response: actix_web::HttpResponseBuilder,
) -> HttpResponse {
    response
        .content_type("text/event-stream")
        .insert_header(CacheControl(vec![CacheDirective::NoCache]))
        .insert_header(ContentEncoding::Identity)
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(Body {
            stream: Some(stream),
            reading: None,
        })
}

/// A read of the log that owns its stream until it is done.
type Reading = Pin<Box<dyn Future<Output = (LogStream, Result<Option<Bytes>, StoreError>)>>>;

/// The response body. A live stream is polled in place, with no future in
/// between (the path every delivery takes); opening and catching up read
/// the log in a boxed future that holds the stream until the read is done.
struct Body {
    stream: Option<LogStream>,
    reading: Option<Reading>,
}

impl futures_util::Stream for Body {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(reading) = this.reading.as_mut() {
                let Poll::Ready((mut stream, step)) = reading.as_mut().poll(cx) else {
                    return Poll::Pending;
                };
                this.reading = None;
                match step {
                    Ok(Some(chunk)) => {
                        stream.last_sent = Instant::now();
                        this.stream = Some(stream);
                        return Poll::Ready(Some(Ok(chunk)));
                    }
                    Ok(None) => this.stream = Some(stream),
                    Err(err) => {
                        tracing::warn!(subscriber = stream.subscriber, error = %err, "stream ended by a storage error; the client resumes with Last-Event-ID");
                        return Poll::Ready(None);
                    }
                }
            }
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            match stream.poll_step(cx) {
                Step::Chunk(chunk) => {
                    stream.last_sent = Instant::now();
                    return Poll::Ready(Some(Ok(chunk)));
                }
                Step::End => {
                    this.stream = None;
                    return Poll::Ready(None);
                }
                Step::Wait => return Poll::Pending,
                Step::Read => {
                    let stream = this.stream.take().expect("polled above");
                    this.reading = Some(Box::pin(stream.read_log()));
                }
            }
        }
    }
}

/// What a stream does next, short of reading the log.
enum Step {
    Chunk(Bytes),
    End,
    /// Nothing to send yet; the context is woken when there is.
    Wait,
    /// Open or catch up: read the log.
    Read,
}

enum Phase {
    /// Decide where to start: resume after a cursor, or replay recent events.
    Opening {
        start: Start,
        upto: EventId,
    },
    /// Read the log after the cursor up to `upto`, then go live.
    CatchUp {
        upto: EventId,
    },
    /// Send frames from the hub's queue.
    Live,
    Finished,
}

/// One open stream's state. Dropping it unregisters from the hub.
pub(in crate::http) struct LogStream {
    hub: Arc<Hub>,
    store: Store,
    subscriber: SubscriberId,
    queue: Arc<FrameQueue>,
    filter: Arc<StreamFilter>,
    framing: Framing,
    /// The last event id sent (or skipped on purpose by replay or resync).
    cursor: EventId,
    phase: Phase,
    pending: VecDeque<Bytes>,
    replay_window: Duration,
    keepalive: KeepAlive,
    last_sent: Instant,
    opened: Instant,
    events_sent: u64,
    /// What ends the stream before its client does: its credential expiring
    /// or being revoked (a JWT's `exp`, a token removed from the file, a
    /// Mercure subscriber's JWT). Polled while the stream waits, and at most
    /// every [`END_CHECK`] while it sends.
    ends: Option<EndOfCredential>,
    end_checked: Instant,
    /// Run once when the stream ends (a Mercure subscription's end).
    on_close: Option<Box<dyn FnOnce() + Send>>,
    /// `Hub::failovers` when this stream last checked its cursor.
    failovers_seen: u64,
}

impl LogStream {
    /// A stream for a fresh hub registration: it opens at `start`, reading
    /// the log up to the registration's head, and first sends `retry:`.
    pub(in crate::http) fn new(
        state: &AppState,
        registration: Registration,
        filter: Arc<StreamFilter>,
        framing: Framing,
        start: Start,
    ) -> Self {
        let settings = &state.streams;
        LogStream {
            hub: state.hub.clone(),
            store: state.store.clone(),
            subscriber: registration.id,
            queue: registration.queue,
            filter,
            framing,
            cursor: EventId::ZERO,
            phase: Phase::Opening {
                start,
                upto: registration.head_id,
            },
            pending: VecDeque::from([retry_frame(settings.retry.as_millis())]),
            replay_window: settings.replay_window,
            keepalive: KeepAlive::new(settings.keepalive),
            last_sent: Instant::now(),
            opened: Instant::now(),
            events_sent: 0,
            failovers_seen: state.hub.failovers(),
            ends: None,
            end_checked: Instant::now(),
            on_close: None,
        }
    }

    /// Ends the stream at `deadline`.
    pub(in crate::http) fn expires_at(mut self, deadline: Instant) -> Self {
        self.ends = Some(Box::pin(async move {
            tokio::time::sleep_until(deadline.into()).await;
            StreamEnd::Expired
        }));
        self
    }

    /// Ends the stream when its credential does ([`crate::auth::Auth::end_of`]).
    pub(in crate::http) fn ends_with(mut self, end: Option<EndOfCredential>) -> Self {
        self.ends = end;
        self
    }

    /// Runs `f` once when the stream ends.
    pub(in crate::http) fn on_close(mut self, f: impl FnOnce() + Send + 'static) -> Self {
        self.on_close = Some(Box::new(f));
        self
    }

    /// Whether the credential has ended, checked at most every
    /// [`END_CHECK`] (a busy stream never waits, so never polls it in
    /// `live`).
    fn credential_ended(&mut self) -> Option<StreamEnd> {
        let ends = self.ends.as_mut()?;
        let now = Instant::now();
        if now.duration_since(self.end_checked) < END_CHECK {
            return None;
        }
        self.end_checked = now;
        ends.as_mut().now_or_never()
    }

    /// The stream's last frame, when its credential ended: `event:
    /// reauthenticate`, no id (the client's cursor stays where it was), so
    /// that the client gets a fresh credential and resumes. A Mercure
    /// stream just ends, as Mercure hubs do.
    fn finish(&mut self, end: StreamEnd) -> Option<Bytes> {
        self.ends = None;
        self.phase = Phase::Finished;
        self.pending.clear();
        tracing::info!(
            subscriber = self.subscriber,
            reason = end.reason(),
            "stream ended: its credential {}",
            end.reason()
        );
        if self.framing == Framing::Mercure {
            return None;
        }
        let data = serde_json::json!({"reason": end.reason(), "message": end.message()});
        Some(Bytes::from(format!(
            "event: reauthenticate\ndata: {data}\n\n"
        )))
    }

    /// The next step that needs no read of the log.
    fn poll_step(&mut self, cx: &mut Context<'_>) -> Step {
        loop {
            if let Some(end) = self.credential_ended() {
                return self.finish(end).map_or(Step::End, Step::Chunk);
            }
            if let Some(chunk) = self.pending.pop_front() {
                return Step::Chunk(chunk);
            }
            match self.phase {
                Phase::Opening { .. } | Phase::CatchUp { .. } => return Step::Read,
                Phase::Finished => return Step::End,
                Phase::Live => match self.poll_live(cx) {
                    Poll::Ready(Some(chunk)) => return Step::Chunk(chunk),
                    Poll::Ready(None) => continue,
                    Poll::Pending => return Step::Wait,
                },
            }
        }
    }

    /// Opens the stream or reads the next page of the log; the chunk to
    /// send, if the step made one.
    async fn read_log(mut self) -> (Self, Result<Option<Bytes>, StoreError>) {
        let step = match self.phase {
            Phase::Opening { start, upto } => self.open(start, upto).await,
            Phase::CatchUp { upto } => self.catch_up(upto).await,
            Phase::Live | Phase::Finished => Ok(None),
        };
        (self, step)
    }

    async fn open(&mut self, start: Start, upto: EventId) -> Result<Option<Bytes>, StoreError> {
        match start {
            Start::After(cursor) => {
                let position = self.store.read(events::position).await?;
                // Events a lost primary answered (PostgreSQL, asynchronous
                // replication): the client holds ids this log never had.
                if position.lost_cursor(cursor) {
                    return Ok(Some(self.resync("failover", upto, &position)));
                }
                // Ahead of the log, not merely of this node's hub: with a
                // shared database a client may resume here with an id that
                // another node delivered a moment before this one heard of it.
                if cursor > upto.max(position.head_id) {
                    return Ok(Some(self.resync("cursor_ahead", upto, &position)));
                }
                if cursor < position.pruned_through {
                    return Ok(Some(self.resync("cursor_expired", upto, &position)));
                }
                self.cursor = cursor;
                self.phase = Phase::CatchUp { upto };
                Ok(None)
            }
            Start::Recent(0) => {
                self.cursor = upto;
                self.phase = Phase::Live;
                Ok(None)
            }
            Start::Recent(count) => {
                let since = Timestamp::now()
                    .minus(chrono::Duration::from_std(self.replay_window).unwrap_or_default());
                let filter = self.filter.clone();
                let recent = self
                    .store
                    .read(move |conn| events::read_recent(conn, &filter, upto, since, count as i64))
                    .await?;
                self.cursor = upto;
                self.phase = Phase::Live;
                Ok(self.send_events(&recent))
            }
        }
    }

    async fn catch_up(&mut self, upto: EventId) -> Result<Option<Bytes>, StoreError> {
        // After a failover that lost ids this node published, a stream that
        // is not behind still checks whether it sent any of them.
        let failovers = self.hub.failovers();
        if self.cursor >= upto && failovers == self.failovers_seen {
            self.phase = Phase::Live;
            return Ok(None);
        }
        self.failovers_seen = failovers;
        let filter = self.filter.clone();
        let after = self.cursor;
        // The watermark and the page come from one snapshot: if retention
        // overtook the cursor, the page may have holes, and we say so.
        let (position, page) = self
            .store
            .read(move |conn| {
                let position = events::position(conn)?;
                let page = events::read_range(conn, &filter, after, upto, PAGE)?;
                Ok((position, page))
            })
            .await?;
        if after < position.pruned_through {
            return Ok(Some(self.resync("cursor_expired", upto, &position)));
        }
        if position.lost_cursor(after) {
            // Live across a failover: this stream sent events the new
            // primary never had (the follower made it read the log).
            return Ok(Some(self.resync("failover", upto, &position)));
        }
        if (page.len() as i64) < PAGE {
            // Nothing else matches up to `upto` (a stream that was not
            // behind, checking after a failover, keeps its cursor).
            self.cursor = self.cursor.max(upto);
            self.phase = Phase::Live;
        }
        Ok(self.send_events(&page))
    }

    /// Frames from the hub's queue; a poll rather than an `async fn`, so
    /// that the waiting stream holds no future's state (its memory is per
    /// stream). Ends when the server shuts down (the hub closes the queue).
    fn poll_live(&mut self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        loop {
            if self.queue.is_closed() {
                self.phase = Phase::Finished;
                return Poll::Ready(None);
            }
            if let Some(frame) = self.queue.try_recv() {
                if let Some(bytes) = self.accept(frame) {
                    return Poll::Ready(Some(bytes));
                }
                continue;
            }
            if self.queue.is_lagged() {
                // Everything queued is sent; read the rest from the log.
                let upto = self.hub.clear_lag(self.subscriber);
                self.phase = Phase::CatchUp { upto };
                return Poll::Ready(None);
            }
            if let Some(end) = self.ends.as_mut() {
                if let Poll::Ready(end) = end.as_mut().poll(cx) {
                    return Poll::Ready(self.finish(end));
                }
            }
            if self.queue.poll_ready(cx).is_ready() {
                // Taken at the top of the loop.
                continue;
            }
            if self.keepalive.poll_due(cx, self.last_sent) {
                return Poll::Ready(Some(comment_frame("keep-alive")));
            }
            return Poll::Pending;
        }
    }

    fn accept(&mut self, frame: Frame) -> Option<Bytes> {
        if frame.id <= self.cursor {
            return None;
        }
        self.cursor = frame.id;
        self.events_sent += 1;
        Some(frame.bytes)
    }

    fn send_events(&mut self, batch: &[crate::domain::Event]) -> Option<Bytes> {
        let last = batch.last()?;
        self.cursor = self.cursor.max(last.id);
        if self.filter.mercure.is_some() {
            // Topics and authorization are not in the SQL: check each update.
            let mut out = bytes::BytesMut::new();
            for update in batch.iter().filter_map(Update::from_event) {
                if self.filter.admits_update(Some(&update)) {
                    out.extend_from_slice(&mercure_frame(&update));
                    self.events_sent += 1;
                }
            }
            return (!out.is_empty()).then(|| out.freeze());
        }
        self.events_sent += batch.len() as u64;
        Some(frame_events(batch, self.framing))
    }

    /// The client's cursor cannot be resumed exactly: tell it to refetch, and
    /// go on live from `head_id`.
    fn resync(&mut self, reason: &str, head_id: EventId, position: &LogPosition) -> Bytes {
        self.cursor = head_id;
        self.phase = Phase::Live;
        if self.framing == Framing::Mercure {
            // Mercure has no such event; a comment says it (its clients
            // compare the Last-Event-ID response header, see mercure.rs).
            return Bytes::from(format!(
                ": resync {reason}: the history before {head_id} is gone\n\n"
            ));
        }
        // Serialising a string and two ids to memory cannot fail.
        let data = serde_json::to_string(&ResyncData {
            reason,
            head_id,
            oldest_id: position.oldest_id,
            kept_through: position
                .lost
                .map(|(kept, _)| kept)
                .filter(|_| reason == "failover"),
        })
        .unwrap_or_default();
        Bytes::from(format!("id: {head_id}\nevent: resync\ndata: {data}\n\n"))
    }
}

/// The data of a `resync` event, in this field order on the wire.
#[derive(Serialize)]
struct ResyncData<'a> {
    /// `cursor_expired`, `cursor_ahead` or `failover`.
    reason: &'a str,
    head_id: EventId,
    oldest_id: EventId,
    /// `failover`: the last id the log kept; the ids above it up to the new
    /// timeline's first were lost.
    #[serde(skip_serializing_if = "Option::is_none")]
    kept_through: Option<EventId>,
}

impl Drop for LogStream {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.subscriber);
        if let Some(on_close) = self.on_close.take() {
            on_close();
        }
        tracing::info!(
            subscriber = self.subscriber,
            duration_ms = self.opened.elapsed().as_millis() as u64,
            events_sent = self.events_sent,
            "stream closed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resync_data_is_reason_head_id_oldest_id_in_that_order() {
        let data = ResyncData {
            reason: "cursor_ahead",
            head_id: EventId::parse("head_id", "7").unwrap(),
            oldest_id: EventId::parse("oldest_id", "3").unwrap(),
            kept_through: None,
        };
        assert_eq!(
            serde_json::to_string(&data).unwrap(),
            r#"{"reason":"cursor_ahead","head_id":7,"oldest_id":3}"#
        );
        let failover = ResyncData {
            reason: "failover",
            kept_through: Some(EventId::parse("kept_through", "5").unwrap()),
            ..data
        };
        assert_eq!(
            serde_json::to_string(&failover).unwrap(),
            r#"{"reason":"failover","head_id":7,"oldest_id":3,"kept_through":5}"#
        );
    }
}
