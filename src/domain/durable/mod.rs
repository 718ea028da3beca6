//! The Durable Streams protocol's rules (the upstream PROTOCOL.md and the
//! conformance suite 0.3.6): offsets, content types, JSON mode, TTL values,
//! idempotent producers here; the read model — a [`Stream`] as readers see
//! it, its ETags and cursors — in `stream.rs`. Plain Rust, no clock: the
//! time is an argument. The edge is `http/durable/`, the use cases
//! `app/durable.rs` and `app/durable_read.rs`, the storage
//! `store/durable.rs`.

mod stream;

pub use stream::{
    cursor, cursor_interval, echoed_cursor, etag, expired, Message, Position, Stream, Visibility,
    PAGE_BYTES,
};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The tail of an empty stream, and the start of every stream.
pub const ZERO_OFFSET: &str = "0000000000000000_0000000000000000";

/// The offset after a message: the id of the event that announced it, and
/// the stream's byte count after it. Strictly increasing per stream, and
/// sortable as text (both parts are padded).
pub fn offset(event_id: i64, bytes: i64) -> String {
    format!("{event_id:016}_{bytes:016}")
}

/// `digits_digits`, the shape of every offset.
pub fn is_offset(text: &str) -> bool {
    match text.split_once('_') {
        Some((a, b)) => {
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        }
        None => false,
    }
}

/// The parts of an offset (for the sub-offset prefix of a fork).
pub fn offset_parts(text: &str) -> (i64, i64) {
    let (a, b) = text.split_once('_').unwrap_or(("0", "0"));
    (a.parse().unwrap_or(0), b.parse().unwrap_or(0))
}

/// `text/plain; charset=utf-8` → `text/plain`.
pub fn normalize_content_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A content type worth keeping: `type/subtype`.
pub fn is_content_type(text: &str) -> bool {
    let essence = text.split(';').next().unwrap_or("").trim();
    match essence.split_once('/') {
        Some((a, b)) => {
            let ok = |s: &str| {
                !s.is_empty()
                    && s.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-_.+".contains(&c))
            };
            ok(a) && ok(b)
        }
        None => false,
    }
}

pub fn is_json(content_type: &str) -> bool {
    normalize_content_type(content_type) == "application/json"
}

/// SSE carries `text/*` and JSON as text, everything else as base64.
pub fn is_text(content_type: &str) -> bool {
    let ct = normalize_content_type(content_type);
    ct.starts_with("text/") || ct == "application/json"
}

/// `Stream-TTL`: a non-negative integer without sign, leading zeros,
/// decimal point or exponent.
pub fn parse_ttl(text: &str) -> Option<i64> {
    let ok = text == "0"
        || (!text.is_empty() && !text.starts_with('0') && text.bytes().all(|c| c.is_ascii_digit()));
    if !ok {
        return None;
    }
    text.parse().ok()
}

/// A strict non-negative integer (`Producer-Epoch`, `Producer-Seq`).
pub fn parse_count(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    text.parse::<i64>().ok().filter(|n| *n <= (1i64 << 53))
}

/// Why a JSON append was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum JsonRefusal {
    Invalid,
    EmptyArray,
    /// Nested deeper than `MAX_JSON_DEPTH`: a validation error of `field`.
    TooDeep {
        field: String,
        message: String,
    },
}

/// A JSON append as stored: each value (an array's elements, flattened)
/// followed by a comma. An empty array creates nothing on create (`Ok`
/// empty) and is refused on append; nesting deeper than `MAX_JSON_DEPTH`
/// is refused, as in every JSON body.
pub fn json_append(body: &[u8], create: bool) -> Result<Vec<u8>, JsonRefusal> {
    if let Err(super::DomainError::Validation { field, message }) = super::check_depth(body) {
        return Err(JsonRefusal::TooDeep { field, message });
    }
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| JsonRefusal::Invalid)?;
    // Stored compact, as the reference server does.
    let mut out = Vec::with_capacity(body.len() + 2);
    let mut push = |v: &serde_json::Value| {
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b',');
    };
    match &value {
        serde_json::Value::Array(items) => {
            if items.is_empty() {
                return if create {
                    Ok(Vec::new())
                } else {
                    Err(JsonRefusal::EmptyArray)
                };
            }
            items.iter().for_each(&mut push);
        }
        other => push(other),
    }
    Ok(out)
}

/// A stored JSON message's values, comma-separated (it may be stored with
/// a trailing comma); `None` when it holds none.
pub fn json_values(data: &[u8]) -> Option<&[u8]> {
    Some(data.strip_suffix(b",").unwrap_or(data)).filter(|values| !values.is_empty())
}

/// The values of stored JSON messages as one array: `[a,b,c]`.
pub fn json_array<'a>(messages: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![b'['];
    for values in messages.filter_map(json_values) {
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(values);
    }
    out.push(b']');
    out
}

/// The first `count` values of a stored JSON message, stored again.
pub fn json_prefix(data: &[u8], count: usize) -> Option<Vec<u8>> {
    let trimmed = json_values(data).unwrap_or_default();
    let mut wrapped = Vec::with_capacity(trimmed.len() + 2);
    wrapped.push(b'[');
    wrapped.extend_from_slice(trimmed);
    wrapped.push(b']');
    let values: Vec<Box<RawValue>> = serde_json::from_slice(&wrapped).ok()?;
    if count > values.len() {
        return None;
    }
    let mut out = Vec::new();
    for value in values.iter().take(count) {
        out.extend_from_slice(value.get().as_bytes());
        out.push(b',');
    }
    Some(out)
}

/// An idempotent producer's state on one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerState {
    pub epoch: i64,
    pub last_seq: i64,
}

/// What a producer's append means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerCheck {
    Accepted(ProducerState),
    Duplicate { last_seq: i64 },
    StaleEpoch { current: i64 },
    InvalidEpochSeq,
    Gap { expected: i64, received: i64 },
}

/// Epoch fencing and sequence checks (PROTOCOL.md 5.2.1).
pub fn check_producer(state: Option<ProducerState>, epoch: i64, seq: i64) -> ProducerCheck {
    let Some(state) = state else {
        return if seq == 0 {
            ProducerCheck::Accepted(ProducerState { epoch, last_seq: 0 })
        } else {
            ProducerCheck::Gap {
                expected: 0,
                received: seq,
            }
        };
    };
    if epoch < state.epoch {
        return ProducerCheck::StaleEpoch {
            current: state.epoch,
        };
    }
    if epoch > state.epoch {
        return if seq == 0 {
            ProducerCheck::Accepted(ProducerState { epoch, last_seq: 0 })
        } else {
            ProducerCheck::InvalidEpochSeq
        };
    }
    if seq <= state.last_seq {
        return ProducerCheck::Duplicate {
            last_seq: state.last_seq,
        };
    }
    if seq == state.last_seq + 1 {
        return ProducerCheck::Accepted(ProducerState {
            epoch,
            last_seq: seq,
        });
    }
    ProducerCheck::Gap {
        expected: state.last_seq + 1,
        received: seq,
    }
}

/// The producer whose append closed a stream (a retry of it is a duplicate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClosedBy {
    pub producer_id: String,
    pub epoch: i64,
    pub seq: i64,
}

/// A fork's TTL and expiry (PROTOCOL.md 4.2): its own if asked, else the
/// source's.
pub fn fork_expiry(
    ttl: Option<i64>,
    expires_at: Option<String>,
    source_ttl: Option<i64>,
    source_expires_at: Option<String>,
) -> (Option<i64>, Option<String>) {
    if ttl.is_some() {
        return (ttl, None);
    }
    if expires_at.is_some() {
        return (None, expires_at);
    }
    if source_ttl.is_some() {
        return (source_ttl, None);
    }
    (None, source_expires_at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_sort_as_text() {
        assert_eq!(offset(0, 0), ZERO_OFFSET);
        assert!(offset(9, 100) < offset(10, 5));
        assert!(is_offset("12_34") && !is_offset("12") && !is_offset("a_1") && !is_offset("-1"));
    }

    #[test]
    fn ttl_values_are_strict() {
        assert_eq!(parse_ttl("3600"), Some(3600));
        assert_eq!(parse_ttl("0"), Some(0));
        for bad in ["+3600", "03600", "3600.0", "3.6e3", "", "-1"] {
            assert_eq!(parse_ttl(bad), None, "{bad}");
        }
    }

    #[test]
    fn json_appends_flatten_arrays_and_store_values_compact() {
        assert_eq!(json_append(br#"{"a": 1}"#, false).unwrap(), br#"{"a":1},"#);
        assert_eq!(
            json_append(b"[1, {\"b\":2}]", false).unwrap(),
            b"1,{\"b\":2},"
        );
        assert_eq!(json_append(b"[]", false), Err(JsonRefusal::EmptyArray));
        assert_eq!(json_append(b"[]", true).unwrap(), b"");
        assert_eq!(json_append(b"{oops", false), Err(JsonRefusal::Invalid));
        let deep = format!("[{{\"a\": {}{}}}]", "[".repeat(64), "]".repeat(64));
        assert!(matches!(
            json_append(deep.as_bytes(), false),
            Err(JsonRefusal::TooDeep { field, .. }) if field == "[0].a"
        ));
        let stored = [b"1,2,".as_slice(), b"{\"c\":3},".as_slice()];
        assert_eq!(json_array(stored.into_iter()), b"[1,2,{\"c\":3}]");
        assert_eq!(json_array(std::iter::empty()), b"[]");
        assert_eq!(json_prefix(b"1,2,3,", 2).unwrap(), b"1,2,");
        assert_eq!(json_prefix(b"1,", 2), None);
    }

    #[test]
    fn producers_are_fenced_by_epoch_and_sequenced() {
        let s = |epoch, last_seq| Some(ProducerState { epoch, last_seq });
        assert!(matches!(
            check_producer(None, 0, 0),
            ProducerCheck::Accepted(_)
        ));
        assert_eq!(
            check_producer(None, 0, 3),
            ProducerCheck::Gap {
                expected: 0,
                received: 3
            }
        );
        assert_eq!(
            check_producer(s(2, 5), 1, 0),
            ProducerCheck::StaleEpoch { current: 2 }
        );
        assert_eq!(
            check_producer(s(2, 5), 3, 1),
            ProducerCheck::InvalidEpochSeq
        );
        assert_eq!(
            check_producer(s(2, 5), 2, 5),
            ProducerCheck::Duplicate { last_seq: 5 }
        );
        assert_eq!(
            check_producer(s(2, 5), 2, 7),
            ProducerCheck::Gap {
                expected: 6,
                received: 7
            }
        );
        assert_eq!(
            check_producer(s(2, 5), 2, 6),
            ProducerCheck::Accepted(ProducerState {
                epoch: 2,
                last_seq: 6
            })
        );
    }
}
