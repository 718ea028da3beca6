//! The read model of a Durable Stream: a [`Stream`] as its readers see it —
//! whether a read may see it (visible, absent, gone), whether it expired,
//! where a read starts and where its answer ends — and the ETag and
//! `Stream-Cursor` of an answer. Which messages follow an offset (a fork's
//! inherited ones first) is read by `app::durable_read`.

use super::{is_json, ZERO_OFFSET};

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

#[cfg(test)]
impl Stream {
    /// A plain text stream at `/v1/stream/a` with its tail at `tail`, for
    /// tests.
    pub(crate) fn example(tail: &str) -> Stream {
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
    let current = cursor_interval(now_ms);
    match echoed_cursor(client, current) {
        Some(theirs) => {
            use rand::Rng;
            let jitter: i64 = rand::rng().random_range(1..=180);
            (theirs + jitter).to_string()
        }
        None => current.to_string(),
    }
}

/// The 20-second interval `now_ms` falls in: the cursor of every client
/// that does not echo the current one.
pub fn cursor_interval(now_ms: i64) -> i64 {
    const EPOCH_MS: i64 = 1_728_432_000_000; // 2024-10-09
    (now_ms - EPOCH_MS) / 20_000
}

/// The client's cursor when it is the `current` interval's or later (the
/// answer's cursor then moves ahead of it).
pub fn echoed_cursor(client: Option<&str>, current: i64) -> Option<i64> {
    client
        .and_then(|c| c.parse::<i64>().ok())
        .filter(|theirs| *theirs >= current)
}

#[cfg(test)]
mod tests {
    use super::super::offset;
    use super::*;

    fn stream(tail: &str) -> Stream {
        Stream::example(tail)
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
}
