//! The Durable Streams protocol's rules (the upstream PROTOCOL.md and the
//! conformance suite 0.3.6): offsets, content types, JSON mode, TTL values,
//! idempotent producers, and the read model — a [`Stream`] as readers see
//! it (whether it is visible, expired, where a read starts and ends), its
//! ETags and cursors. Plain Rust, no clock: the time is an argument. The
//! edge is `http/durable/`, the use cases `app/durable.rs` and
//! `app/durable_read.rs`, the storage `store/durable.rs`.

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

/// The values of stored JSON messages as one array: `[a,b,c]`.
pub fn json_array<'a>(messages: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = vec![b'['];
    for data in messages {
        let trimmed = data.strip_suffix(b",").unwrap_or(data);
        if trimmed.is_empty() {
            continue;
        }
        if out.len() > 1 {
            out.push(b',');
        }
        out.extend_from_slice(trimmed);
    }
    out.push(b']');
    out
}

/// The first `count` values of a stored JSON message, stored again.
pub fn json_prefix(data: &[u8], count: usize) -> Option<Vec<u8>> {
    let trimmed = data.strip_suffix(b",").unwrap_or(data);
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

/// The most bytes one read of a stream answers (a page): a catch-up answer
/// larger than that is sent page by page, each read when the one before has
/// gone.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// One message: the offset after it and its bytes.
#[derive(Debug, Clone)]
pub struct Message {
    pub offset: String,
    pub data: Vec<u8>,
}

/// A stream as its readers see it: its metadata and tail, not its bytes.
#[derive(Debug, Clone)]
pub struct Stream {
    pub path: String,
    pub content_type: String,
    pub ttl_seconds: Option<i64>,
    pub expires_at: Option<String>,
    pub closed: bool,
    /// The last append or create (a sliding TTL counts from it, or from a
    /// later read on this node).
    pub accessed_ms: i64,
    /// A fork's source, and the offset up to which it inherits from it.
    pub forked_from: Option<String>,
    pub fork_offset: Option<String>,
    /// How many forks read it.
    pub ref_count: i64,
    /// Deleted while forks still read it.
    pub soft_deleted: bool,
    pub tail: String,
}

/// Whether a read may see a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    Visible,
    /// No such stream (404): never created, or expired with no fork reading it.
    Absent,
    /// Deleted or expired while forks still read it (410).
    Gone,
}

/// Where a read's answer ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// `Stream-Next-Offset`.
    pub next: String,
    /// Nothing more to read now (`Stream-Up-To-Date`).
    pub up_to_date: bool,
    /// At the tail of a closed stream (`Stream-Closed`).
    pub at_end: bool,
}

/// Whether a stream is past its expiry, or past its TTL since its last
/// access (`accessed_ms`, or `touched_ms`, a later read on this node).
pub fn expired(
    expires_at: Option<&str>,
    ttl_seconds: Option<i64>,
    accessed_ms: i64,
    now_ms: i64,
    touched_ms: i64,
) -> bool {
    if let Some(at) = expires_at {
        match chrono::DateTime::parse_from_rfc3339(at) {
            Ok(at) if at.timestamp_millis() > now_ms => {}
            _ => return true,
        }
    }
    if let Some(ttl) = ttl_seconds {
        if touched_ms.max(accessed_ms) + ttl * 1000 <= now_ms {
            return true;
        }
    }
    false
}

impl Stream {
    /// Whether it is past its TTL or expiry at `now_ms`.
    pub fn is_expired(&self, now_ms: i64, touched_ms: i64) -> bool {
        expired(
            self.expires_at.as_deref(),
            self.ttl_seconds,
            self.accessed_ms,
            now_ms,
            touched_ms,
        )
    }

    /// Whether a read may see it: an expired stream a fork still reads is
    /// gone, not absent.
    pub fn visibility(&self, now_ms: i64, touched_ms: i64) -> Visibility {
        if self.soft_deleted {
            return Visibility::Gone;
        }
        if self.is_expired(now_ms, touched_ms) {
            return if self.ref_count > 0 {
                Visibility::Gone
            } else {
                Visibility::Absent
            };
        }
        Visibility::Visible
    }

    /// A fork's source and the offset it inherits up to.
    pub fn fork(&self) -> Option<(&str, &str)> {
        match (&self.forked_from, &self.fork_offset) {
            (Some(source), Some(offset)) => Some((source, offset)),
            _ => None,
        }
    }

    /// JSON mode: messages are values, answers arrays.
    pub fn is_json(&self) -> bool {
        is_json(&self.content_type)
    }

    /// Whether a read renews its TTL (a sliding TTL).
    pub fn slides(&self) -> bool {
        self.ttl_seconds.is_some()
    }

    /// The offset a read starts after: `-1` (or none) is the start, `now`
    /// the tail.
    pub fn start(&self, offset: Option<&str>) -> String {
        match offset {
            None | Some("-1") => ZERO_OFFSET.to_owned(),
            Some("now") => self.tail.clone(),
            Some(o) => o.to_owned(),
        }
    }

    /// Where an answer from `start` ends, given the last message it holds
    /// (none past the tail) and whether more was left: a `whole` answer
    /// (a catch-up sent page by page) goes to the tail; an offset past the
    /// tail stays.
    pub fn position(&self, start: &str, last: Option<&str>, more: bool, whole: bool) -> Position {
        let next = match last {
            _ if whole => self.tail.clone(),
            Some(last) => last.to_owned(),
            None if start > self.tail.as_str() => start.to_owned(),
            None => self.tail.clone(),
        };
        let up_to_date = whole || !more;
        let at_end = self.closed && next == self.tail && up_to_date;
        Position {
            next,
            up_to_date,
            at_end,
        }
    }

    /// Whether a follower at `offset` that read nothing goes on from the
    /// tail: an offset between two messages (never one inherited by a fork).
    pub fn skips_to_tail(&self, offset: &str) -> bool {
        offset < self.tail.as_str() && offset >= self.fork_offset.as_deref().unwrap_or("")
    }
}

/// The ETag of an answer: the path, where it started and ended, and
/// whether the stream was closed there.
pub fn etag(path: &str, start: &str, end: &str, closed: bool) -> String {
    use base64::Engine;
    let id = base64::engine::general_purpose::STANDARD.encode(path.as_bytes());
    format!("\"{id}:{start}:{end}{}\"", if closed { ":c" } else { "" })
}

/// `Stream-Cursor`: a 20-second interval number, moved ahead of a client's
/// own when it echoes the current one (collapsing keys for CDNs).
pub fn cursor(client: Option<&str>, now_ms: i64) -> String {
    const EPOCH_MS: i64 = 1_728_432_000_000; // 2024-10-09
    let current = (now_ms - EPOCH_MS) / 20_000;
    match client.and_then(|c| c.parse::<i64>().ok()) {
        Some(theirs) if theirs >= current => {
            use rand::Rng;
            let jitter: i64 = rand::rng().random_range(1..=180);
            (theirs + jitter).to_string()
        }
        _ => current.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(tail: &str) -> Stream {
        Stream {
            path: "/v1/stream/a".into(),
            content_type: "text/plain".into(),
            ttl_seconds: None,
            expires_at: None,
            closed: false,
            accessed_ms: 0,
            forked_from: None,
            fork_offset: None,
            ref_count: 0,
            soft_deleted: false,
            tail: tail.into(),
        }
    }

    #[test]
    fn an_expired_stream_a_fork_reads_is_gone_not_absent() {
        let mut s = stream("1_1");
        s.ttl_seconds = Some(10);
        s.accessed_ms = 1_000;
        assert_eq!(s.visibility(10_999, 0), Visibility::Visible);
        // A read on this node slid the TTL.
        assert_eq!(s.visibility(11_000, 5_000), Visibility::Visible);
        assert_eq!(s.visibility(11_000, 0), Visibility::Absent);
        s.ref_count = 1;
        assert_eq!(s.visibility(11_000, 0), Visibility::Gone);
        let mut deleted = stream("1_1");
        deleted.soft_deleted = true;
        assert_eq!(deleted.visibility(0, 0), Visibility::Gone);
        let mut dated = stream("1_1");
        dated.expires_at = Some("2024-10-09T00:00:00Z".into());
        assert!(!dated.is_expired(1_728_431_999_999, 0));
        assert!(dated.is_expired(1_728_432_000_000, 0));
        dated.expires_at = Some("not a date".into());
        assert!(dated.is_expired(0, 0));
    }

    #[test]
    fn a_read_starts_and_ends_where_the_protocol_says() {
        let mut s = stream(&offset(5, 10));
        assert_eq!(s.start(None), ZERO_OFFSET);
        assert_eq!(s.start(Some("-1")), ZERO_OFFSET);
        assert_eq!(s.start(Some("now")), s.tail);
        assert_eq!(s.start(Some("3_4")), "3_4");
        let mid = offset(3, 4);
        let end = |next: &str, up_to_date, at_end| Position {
            next: next.into(),
            up_to_date,
            at_end,
        };
        assert_eq!(
            s.position(ZERO_OFFSET, Some(&mid), true, false),
            end(&mid, false, false)
        );
        assert_eq!(
            s.position(ZERO_OFFSET, Some(&mid), true, true),
            end(&s.tail, true, false)
        );
        assert_eq!(
            s.position(ZERO_OFFSET, None, false, false),
            end(&s.tail, true, false)
        );
        let past = offset(9, 99);
        assert_eq!(
            s.position(&past, None, false, false),
            end(&past, true, false)
        );
        s.closed = true;
        assert_eq!(
            s.position(ZERO_OFFSET, None, false, false),
            end(&s.tail, true, true)
        );
        assert!(s.skips_to_tail(&mid) && !s.skips_to_tail(&s.tail));
        s.fork_offset = Some(offset(4, 0));
        assert!(!s.skips_to_tail(&mid));
    }

    #[test]
    fn etags_and_cursors_follow_the_protocol() {
        assert_eq!(etag("/a", "-1", "1_1", false), "\"L2E=:-1:1_1\"");
        assert_eq!(etag("/a", "-1", "1_1", true), "\"L2E=:-1:1_1:c\"");
        let now = 1_728_432_000_000 + 20_000 * 7 + 5;
        assert_eq!(cursor(None, now), "7");
        assert_eq!(cursor(Some("3"), now), "7");
        let ahead: i64 = cursor(Some("7"), now).parse().unwrap();
        assert!((8..=187).contains(&ahead), "{ahead}");
    }

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
