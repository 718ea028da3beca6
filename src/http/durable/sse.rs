//! `GET …?live=sse`: one connection following a stream. Every data event is
//! followed by its control event; an idle stream gets a control event every
//! long-poll period; the answer ends at the end of a closed stream, when the
//! stream goes away, when the server stops or when the reader's credential
//! ends. Readers of one stream woken by one append share one read of it
//! (`Snapshot`).

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use base64::Engine;
use bytes::Bytes;
use futures_util::FutureExt as _;
use serde::Serialize;

use super::watch::Watch;
use super::{answer, now_ms, visible};
use crate::app::durable::Fresh;
use crate::app::durable_read;
use crate::auth::EndOfCredential;
use crate::domain::durable::{self as rules, Message, Stream};
use crate::http::AppState;
use crate::sync::LockExt;

/// The most messages a read grown by appends keeps; a reader further
/// behind reads the database.
const SEEDED_KEEP: usize = 64;

/// The last read of one stream, shared by its SSE readers.
pub(super) type ReadSlot = Arc<Slot>;

/// The last read is looked at under a plain lock, held for no more than a
/// clone of it (readers on both workers look at it after every append, and
/// a lock they waited for across threads would cost each a cross-thread
/// wake); a reader that must read the database anew holds `renewing`
/// meanwhile, so the others wait for its read rather than read too.
#[derive(Default)]
pub(super) struct Slot {
    last: std::sync::Mutex<Option<Arc<Snapshot>>>,
    renewing: tokio::sync::Mutex<()>,
}

impl Slot {
    fn last(&self) -> std::sync::MutexGuard<'_, Option<Arc<Snapshot>>> {
        self.last.locked()
    }

    /// Leaves a committed append's message in the last read (see
    /// [`Snapshot::seeded`]).
    pub(super) fn seed(&self, fresh: Fresh) {
        let mut last = self.last();
        if let Some(seeded) = Snapshot::seeded(last.as_deref(), fresh) {
            *last = Some(Arc::new(seeded));
        }
    }

    /// The last read, and where in it what follows `offset` begins, if it
    /// covers `offset` and every event up to `seen`.
    fn covering(&self, offset: &str, seen: i64) -> Option<(Arc<Snapshot>, usize)> {
        let last = self.last();
        let snapshot = last.as_ref()?;
        if snapshot.valid_through < seen {
            return None;
        }
        let from = snapshot.after(offset)?;
        Some((Arc::clone(snapshot), from))
    }
}

/// One read of a stream: what followed `start`, valid for every event up to
/// `valid_through` (the hub's head when it was read). Offsets never change
/// their bytes, so readers at `start` or at any offset in it may share it,
/// and the data event of each message is rendered once for all of them.
pub(super) struct Snapshot {
    start: String,
    valid_through: i64,
    stream: Stream,
    /// Shared with the reads grown from this one.
    messages: Vec<Arc<Entry>>,
    more: bool,
}

/// One message of a read, with its events as the first reader to send
/// them rendered them.
struct Entry {
    message: Message,
    data_event: OnceLock<String>,
    /// The control event after it, for every reader with the same cursor.
    control: OnceLock<SharedControl>,
}

impl Entry {
    fn new(message: Message) -> Arc<Entry> {
        Arc::new(Entry {
            message,
            data_event: OnceLock::new(),
            control: OnceLock::new(),
        })
    }
}

/// A control event that readers whose cursor is the current interval's
/// share.
struct SharedControl {
    interval: i64,
    up_to_date: bool,
    event: String,
}

impl Snapshot {
    fn new(start: String, valid_through: i64, read: (Stream, Vec<Message>, bool)) -> Self {
        let (stream, messages, more) = read;
        Snapshot {
            start,
            valid_through,
            messages: messages.into_iter().map(Entry::new).collect(),
            stream,
            more,
        }
    }

    /// The read a committed append leaves for the stream's readers (see
    /// [`super::Durable::seed`]): `last` with the message added when `last`
    /// ends where the append begins, else the message alone; `None` when
    /// `last` is newer than the append.
    pub(super) fn seeded(last: Option<&Snapshot>, fresh: Fresh) -> Option<Snapshot> {
        if let Some(last) = last {
            if last.valid_through >= fresh.event_id {
                return None;
            }
            let ends_at = last
                .messages
                .last()
                .map_or(&last.start, |m| &m.message.offset);
            if !last.more && *ends_at == fresh.after && last.messages.len() < SEEDED_KEEP {
                let mut messages = last.messages.clone();
                messages.push(Entry::new(fresh.message));
                return Some(Snapshot {
                    start: last.start.clone(),
                    valid_through: fresh.event_id,
                    stream: fresh.stream,
                    messages,
                    more: false,
                });
            }
        }
        let read = (fresh.stream, vec![fresh.message], false);
        Some(Snapshot::new(fresh.after, fresh.event_id, read))
    }

    /// Where what follows `offset` begins in this read, if it covers it.
    fn after(&self, offset: &str) -> Option<usize> {
        if offset == self.start {
            return Some(0);
        }
        let at = self
            .messages
            .iter()
            .position(|m| m.message.offset == offset)?;
        Some(at + 1)
    }

    /// Message `i`'s data event (`event: data` and its `data:` lines), in
    /// base64 or not as the reader's answer said when it opened. The one
    /// rendered for every reader is in the encoding this read's stream
    /// calls for; a reader that opened on an earlier stream of the same
    /// path with another content type gets its own.
    fn data_event(&self, i: usize, base64: bool) -> Cow<'_, str> {
        let render = || {
            let payload = payload(&self.stream, &self.messages[i].message, base64);
            format!("event: data\n{}", sse_data(&payload))
        };
        let streams_own = !rules::is_text(&self.stream.content_type);
        if base64 == streams_own {
            Cow::Borrowed(self.messages[i].data_event.get_or_init(render))
        } else {
            Cow::Owned(render())
        }
    }
}

/// One message as a data event's payload: base64, one JSON array, or text.
fn payload(stream: &Stream, message: &Message, base64: bool) -> String {
    if base64 {
        base64::engine::general_purpose::STANDARD.encode(&message.data)
    } else if stream.is_json() {
        String::from_utf8_lossy(&rules::json_array(std::iter::once(message.data.as_slice())))
            .into_owned()
    } else {
        String::from_utf8_lossy(&message.data).into_owned()
    }
}

/// A control event's data, in this field order on the wire.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Control<'a> {
    stream_next_offset: &'a str,
    #[serde(skip_serializing_if = "is_false")]
    stream_closed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_cursor: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    up_to_date: bool,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// A control event (`cursor`: the answer's `streamCursor`, none once
/// closed). A closed stream at its tail is up to date as well.
fn control_event(offset: &str, closed: bool, cursor: Option<String>, up_to_date: bool) -> String {
    let control = Control {
        stream_next_offset: offset,
        stream_closed: closed,
        stream_cursor: cursor,
        up_to_date: closed || up_to_date,
    };
    let json = serde_json::to_string(&control).unwrap_or_default();
    format!("event: control\n{}", sse_data(&json))
}

/// `data:` lines of one payload (split at line breaks).
fn sse_data(payload: &str) -> String {
    let mut out = String::with_capacity(payload.len() + 16);
    for line in payload.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        out.push_str("data:");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// One SSE connection's state.
struct Follow {
    state: web::Data<AppState>,
    path: String,
    offset: String,
    base64: bool,
    client_cursor: Option<String>,
    watch: Watch,
    /// The stream's last read, shared with its other readers.
    slot: ReadSlot,
    done: bool,
    waiting: bool,
    /// The reader's credential ending (a JWT's `exp`, a revoked token):
    /// the answer ends, and the client reconnects with a fresh one.
    ends: Option<EndOfCredential>,
}

impl Follow {
    /// Whether the reader's credential has ended.
    fn credential_ended(&mut self) -> bool {
        let ended = self
            .ends
            .as_mut()
            .is_some_and(|end| end.as_mut().now_or_never().is_some());
        if ended {
            self.ends = None;
            self.done = true;
        }
        ended
    }

    /// The read that holds what follows this reader's offset, and where in
    /// it that begins: the last read of the stream when it covers the offset
    /// and every event this reader was woken by, else one new read (the
    /// others wait for it rather than read too).
    async fn shared_read(&self) -> Option<(Arc<Snapshot>, usize)> {
        let slot = &self.slot;
        if let Some(covering) = slot.covering(&self.offset, self.watch.seen) {
            return Some(covering);
        }
        let _renewing = slot.renewing.lock().await;
        // Another reader may have renewed it meanwhile.
        if let Some(covering) = slot.covering(&self.offset, self.watch.seen) {
            return Some(covering);
        }
        let (path, after) = (self.path.clone(), self.offset.clone());
        let now = now_ms();
        let touched = self.state.durable.touched(&path);
        let valid_through = self.state.hub.head_id().get();
        let read = self
            .state
            .store
            .read(move |conn| durable_read::read_visible(conn, &path, &after, now, touched))
            .await
            .ok()??;
        let snapshot = Arc::new(Snapshot::new(self.offset.clone(), valid_through, read));
        let mut last = slot.last();
        // An append seeded while this read ran may be newer: it stays.
        if last
            .as_ref()
            .is_none_or(|l| l.valid_through <= valid_through)
        {
            *last = Some(Arc::clone(&snapshot));
        }
        drop(last);
        Some((snapshot, 0))
    }

    fn control(&self, offset: &str, closed: bool, up_to_date: bool) -> String {
        let cursor = (!closed).then(|| rules::cursor(self.client_cursor.as_deref(), now_ms()));
        control_event(offset, closed, cursor, up_to_date)
    }

    /// The control event after message `i` of `read`: the one rendered for
    /// every reader whose cursor is the current interval's, or this
    /// reader's own.
    fn control_after<'r>(
        &self,
        read: &'r Snapshot,
        i: usize,
        closed: bool,
        up_to_date: bool,
    ) -> Cow<'r, str> {
        let entry = &read.messages[i];
        let offset = &entry.message.offset;
        let current = rules::cursor_interval(now_ms());
        if !closed && rules::echoed_cursor(self.client_cursor.as_deref(), current).is_none() {
            let shared = entry.control.get_or_init(|| SharedControl {
                interval: current,
                up_to_date,
                event: control_event(offset, false, Some(current.to_string()), up_to_date),
            });
            // Rendered in another interval, or when this message was the
            // read's last and up to date: this reader's own.
            if shared.interval == current && shared.up_to_date == up_to_date {
                return Cow::Borrowed(&shared.event);
            }
        }
        Cow::Owned(self.control(offset, closed, up_to_date))
    }

    /// Waits for the stream to change. `Err` holds what to send instead of
    /// reading it (`None` ends the answer).
    async fn wait(&mut self) -> Result<(), Option<Bytes>> {
        let long_poll = self.state.durable.long_poll;
        let woke = match self.ends.as_mut() {
            Some(end) => tokio::select! {
                woke = self.watch.changed(long_poll) => woke,
                _ = end.as_mut() => {
                    self.ends = None;
                    self.done = true;
                    return Err(None);
                }
            },
            None => self.watch.changed(long_poll).await,
        };
        if self.watch.stopping() {
            self.done = true;
            return Err(None);
        }
        self.waiting = false;
        if woke {
            // `next` renews a sliding TTL after its read.
            Ok(())
        } else {
            // A connected reader keeps a stream with a sliding TTL alive.
            self.state.durable.touch(&self.path);
            Err(self.idle().await)
        }
    }

    /// A long-poll period without an append: a control event, or the end
    /// of a closed (or vanished) stream.
    async fn idle(&mut self) -> Option<Bytes> {
        let Ok(stream) = visible(&self.state, &self.path).await else {
            self.done = true;
            return None;
        };
        if stream.closed && stream.tail == self.offset {
            self.done = true;
            return Some(Bytes::from(self.control(&self.offset, true, true)));
        }
        self.waiting = true;
        Some(Bytes::from(self.control(&self.offset, false, true)))
    }

    /// The events of one read from message `from` on, moving the reader's
    /// offset; `done` once the end of a closed stream is sent.
    fn events(&mut self, read: &Snapshot, from: usize) -> String {
        let (stream, more) = (&read.stream, read.more);
        let mut out = String::new();
        let count = read.messages.len();
        // Every data event is followed by its control event.
        for i in from..count {
            out.push_str(&read.data_event(i, self.base64));
            self.offset.clone_from(&read.messages[i].message.offset);
            let last = i + 1 == count && !more;
            let closed = last && stream.closed && self.offset == stream.tail;
            out.push_str(&self.control_after(read, i, closed, last));
            if closed {
                self.done = true;
                return out;
            }
        }
        if from >= count {
            if stream.skips_to_tail(&self.offset) {
                // An offset between messages: go on from the tail.
                self.offset.clone_from(&stream.tail);
            }
            let closed = stream.closed && self.offset >= stream.tail;
            out.push_str(&self.control(&self.offset, closed, true));
            if closed {
                self.done = true;
            }
        }
        out
    }

    /// The next chunk of the SSE body, or `None` to end it.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done || self.credential_ended() || self.watch.stopping() {
            return None;
        }
        if self.waiting {
            if let Err(instead) = self.wait().await {
                return instead;
            }
        }
        // Readers of one stream woken by one append share one read.
        let Some((read, from)) = self.shared_read().await else {
            self.done = true;
            return None;
        };
        if read.stream.slides() {
            self.state.durable.touch(&self.path);
        }
        let out = self.events(&read, from);
        if !self.done && !read.more {
            self.waiting = true;
        }
        Some(Bytes::from(out))
    }
}

/// The SSE answer following `stream` from `offset` (`cursor`: the client's
/// last `Stream-Cursor`).
pub(super) fn sse(
    state: &web::Data<AppState>,
    stream: Stream,
    offset: String,
    cursor: Option<String>,
    ends: Option<EndOfCredential>,
) -> HttpResponse {
    let base64 = !rules::is_text(&stream.content_type);
    let follow = Follow {
        watch: Watch::new(state, &stream.path),
        slot: state.durable.read_slot(&stream.path),
        state: state.clone(),
        path: stream.path.clone(),
        offset,
        base64,
        client_cursor: cursor,
        done: false,
        waiting: false,
        ends,
    };
    let body = futures_util::stream::unfold(follow, |mut follow| async move {
        let chunk = follow.next().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), follow))
    });
    let mut r = answer(StatusCode::OK);
    r.content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .insert_header(header::ContentEncoding::Identity);
    if base64 {
        r.insert_header(("stream-sse-data-encoding", "base64"));
    }
    r.streaming(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fresh(after: &str, offset: &str, event_id: i64) -> Fresh {
        Fresh {
            after: after.into(),
            event_id,
            message: Message {
                offset: offset.into(),
                data: offset.as_bytes().to_vec(),
            },
            stream: Stream::example(offset),
        }
    }

    fn offsets(read: &Snapshot) -> Vec<&str> {
        read.messages
            .iter()
            .map(|m| m.message.offset.as_str())
            .collect()
    }

    #[test]
    fn an_append_grows_the_read_it_follows_and_replaces_one_it_does_not() {
        let first = Snapshot::seeded(None, fresh("a", "b", 5)).unwrap();
        assert_eq!((first.start.as_str(), offsets(&first)), ("a", vec!["b"]));
        // The next append begins where the read ends: a reader at `a` or at
        // `b` finds what follows it.
        let grown = Snapshot::seeded(Some(&first), fresh("b", "c", 7)).unwrap();
        assert_eq!(
            (grown.start.as_str(), offsets(&grown)),
            ("a", vec!["b", "c"])
        );
        assert_eq!(grown.valid_through, 7);
        assert_eq!(grown.stream.tail, "c");
        assert_eq!((grown.after("a"), grown.after("b")), (Some(0), Some(1)));
        // An append that does not follow it (one whose answer came late):
        // a read of that message alone.
        let apart = Snapshot::seeded(Some(&grown), fresh("x", "y", 9)).unwrap();
        assert_eq!((apart.start.as_str(), offsets(&apart)), ("x", vec!["y"]));
        assert_eq!(apart.after("b"), None);
        // A read newer than the append stays.
        assert!(Snapshot::seeded(Some(&grown), fresh("b", "c", 7)).is_none());
    }

    #[test]
    fn a_grown_read_keeps_a_bounded_number_of_messages() {
        let mut read = Snapshot::seeded(None, fresh("0", "1", 1)).unwrap();
        for i in 1..(SEEDED_KEEP as i64 + 5) {
            let next = fresh(&i.to_string(), &(i + 1).to_string(), i + 1);
            read = Snapshot::seeded(Some(&read), next).unwrap();
            assert!(read.messages.len() <= SEEDED_KEEP);
        }
        assert_eq!(read.valid_through, SEEDED_KEEP as i64 + 5);
    }
}
