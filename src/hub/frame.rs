//! The SSE wire format, written in one place. An event's frame is built once
//! and its bytes are shared (reference-counted) by every stream that sends it.

use bytes::{BufMut, Bytes, BytesMut};

use crate::domain::mercure::Update;
use crate::domain::{Event, EventId};

/// One event's frame, as queued for a stream.
#[derive(Debug, Clone)]
pub struct Frame {
    pub id: EventId,
    pub bytes: Bytes,
}

/// How a stream wants its events framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Framing {
    /// `event: <type>`: `EventSource` dispatches by type.
    #[default]
    Named,
    /// No `event:` line: every event reaches `onmessage` (the type is in the JSON).
    Plain,
    /// A Mercure update: the publisher's `id`, `event` and `retry`, and its
    /// data as `data:` lines (see `mercure_frame`).
    Mercure,
}

fn write_event(out: &mut BytesMut, event: &Event, framing: Framing) {
    use std::fmt::Write as _;
    if framing == Framing::Mercure {
        if let Some(update) = Update::from_event(event) {
            write_update(out, &update);
        }
        return;
    }
    // Event types are `[A-Za-z0-9_.-]` and compact JSON has no raw newline, so
    // neither can break the frame.
    let _ = match framing {
        Framing::Named => write!(out, "id: {}\nevent: {}\ndata: ", event.id, event.event_type),
        Framing::Plain | Framing::Mercure => write!(out, "id: {}\ndata: ", event.id),
    };
    let mut writer = out.writer();
    // Serialising an `Event` to memory cannot fail: every field is a string,
    // a number or already-valid JSON.
    let _ = serde_json::to_writer(&mut writer, event);
    writer.into_inner().put_slice(b"\n\n");
}

/// A Mercure update's SSE fields. The data's lines (split at CRLF, CR or
/// LF) become one `data:` line each, so a client sees the data unchanged.
fn write_update(out: &mut BytesMut, update: &Update) {
    out.put_slice(b"id: ");
    out.put_slice(update.id.as_bytes());
    out.put_slice(b"\n");
    if let Some(event_type) = &update.event_type {
        out.put_slice(b"event: ");
        out.put_slice(event_type.as_bytes());
        out.put_slice(b"\n");
    }
    if let Some(retry) = update.retry {
        out.put_slice(format!("retry: {retry}\n").as_bytes());
    }
    let data = update.data.replace("\r\n", "\n").replace('\r', "\n");
    for line in data.split('\n') {
        out.put_slice(b"data: ");
        out.put_slice(line.as_bytes());
        out.put_slice(b"\n");
    }
    out.put_slice(b"\n");
}

/// A Mercure update's frame, built once for every Mercure stream it reaches.
pub fn mercure_frame(update: &Update) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + update.id.len() + update.data.len());
    write_update(&mut out, update);
    out.freeze()
}

/// `id: …\nevent: …\ndata: {json}\n\n`
pub fn event_frame(event: &Event, framing: Framing) -> Bytes {
    let mut out = BytesMut::with_capacity(256 + event.payload.get().len());
    write_event(&mut out, event, framing);
    out.freeze()
}

/// Many events in one chunk, for replay from the log.
pub fn frame_events(events: &[Event], framing: Framing) -> Bytes {
    let size: usize = events.iter().map(|e| 256 + e.payload.get().len()).sum();
    let mut out = BytesMut::with_capacity(size);
    for event in events {
        write_event(&mut out, event, framing);
    }
    out.freeze()
}

pub fn retry_frame(millis: u128) -> Bytes {
    Bytes::from(format!("retry: {millis}\n\n"))
}

pub fn comment_frame(text: &'static str) -> Bytes {
    Bytes::from_static(match text {
        "keep-alive" => b": keep-alive\n\n",
        _ => b": \n\n",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[test]
    fn an_event_frame_is_id_event_and_one_data_line() {
        let event = Event {
            payload: RawValue::from_string(r#"{"text":"two\nlines"}"#.into()).unwrap(),
            ..crate::hub::tests::event("7")
        };
        let frame = event_frame(&event, Framing::Named);
        let text = std::str::from_utf8(&frame).unwrap();
        assert!(text.starts_with("id: 7\nevent: note\ndata: {\"id\":7,"));
        assert!(text.ends_with("}\n\n"));
        assert_eq!(text.matches('\n').count(), 4, "{text}");
        assert_eq!(
            frame_events(&[event.clone(), event.clone()], Framing::Named).len(),
            frame.len() * 2
        );
        let plain = event_frame(&event, Framing::Plain);
        assert!(std::str::from_utf8(&plain)
            .unwrap()
            .starts_with("id: 7\ndata: {\"id\":7,"));
    }
}
