//! A client-side parser of the `text/event-stream` format (WHATWG HTML,
//! "Server-sent events"), for `tail`, the MCP server's feed, the benchmark and the tests. It only
//! parses; connecting and resuming are the caller's.

use crate::domain::EventId;

/// One message of the stream: an event, a `retry:` announcement or a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseMessage {
    Event(SseEvent),
    Retry(u64),
    Comment(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    /// `message` when the frame named no event type.
    pub event: String,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_str(&self.data)
    }

    /// The id as a number, when it is one.
    pub fn id_number(&self) -> Option<i64> {
        self.id.as_deref()?.parse().ok()
    }

    /// The id as an event id, when it is one (a resync's is the head).
    pub fn event_id(&self) -> Option<EventId> {
        EventId::parse("id", self.id.as_deref()?).ok()
    }
}

/// Feed it bytes as they arrive; take complete messages out.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses every complete line in `bytes` (plus what was buffered) and
    /// appends the finished messages to `out`.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseMessage>) {
        self.buffer.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(offset) = self.buffer[start..]
            .iter()
            .position(|b| *b == b'\n' || *b == b'\r')
        {
            let end = start + offset;
            let mut next = end + 1;
            if self.buffer[end] == b'\r' {
                if next >= self.buffer.len() {
                    break; // a lone \r at the end may be half of \r\n
                }
                if self.buffer[next] == b'\n' {
                    next += 1;
                }
            }
            let line = String::from_utf8_lossy(&self.buffer[start..end]).into_owned();
            self.line(&line, out);
            start = next;
        }
        self.buffer.drain(..start);
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseMessage>) {
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(SseMessage::Event(SseEvent {
                    id: self.id.take(),
                    event: self.event.take().unwrap_or_else(|| "message".into()),
                    data,
                }));
            }
            self.id = None;
            self.event = None;
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            out.push(SseMessage::Comment(comment.trim_start().to_owned()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "id" => self.id = Some(value.to_owned()),
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "retry" => {
                if let Ok(ms) = value.parse() {
                    out.push(SseMessage::Retry(ms));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_anywhere_parse_the_same() {
        let wire = b"retry: 2000\n\n: keep-alive\n\nid: 7\nevent: note\ndata: {\"a\":1}\n\ndata: x\r\ndata: y\r\n\r\n";
        for split in 0..wire.len() {
            let mut parser = SseParser::new();
            let mut out = Vec::new();
            parser.feed(&wire[..split], &mut out);
            parser.feed(&wire[split..], &mut out);
            assert_eq!(
                out,
                vec![
                    SseMessage::Retry(2000),
                    SseMessage::Comment("keep-alive".into()),
                    SseMessage::Event(SseEvent {
                        id: Some("7".into()),
                        event: "note".into(),
                        data: "{\"a\":1}".into()
                    }),
                    SseMessage::Event(SseEvent {
                        id: None,
                        event: "message".into(),
                        data: "x\ny".into()
                    }),
                ],
                "split at {split}"
            );
        }
    }
}
