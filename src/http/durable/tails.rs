//! The recent messages of each stream, kept in memory as the appends on
//! this node committed them, so a catch-up read of them is answered without
//! reading them back from the database one row at a time.
//!
//! Only on SQLite: every append, create and delete then passes this node's
//! writer, which updates the tails after each commit in commit order
//! (`Tx::after_commit`), so a tail always holds what the database holds
//! between its start and its last message. A read uses a tail only when the
//! tail ends exactly at the stream's tail as the read found it (in the
//! database), and starts at or before the read's offset; anything else
//! (a fork, a tail cut short by the memory bounds, a message of a
//! different node) reads the database as before.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

use crate::domain::durable as rules;
use crate::sync::LockExt;

/// A stream's tail starts over once it would cost more than this.
const STREAM_BYTES: usize = 16 << 20;
/// Every stream's tail together: past this, the tails appended to longest
/// ago are dropped, down to three quarters of it.
const TOTAL_BYTES: usize = 64 << 20;
/// What a message costs a tail beside its bytes (its offset, its end).
const PER_MESSAGE: usize = 64;
/// A tail's bytes are frozen (shared with readers without a copy) in blocks
/// of about this size.
const BLOCK: usize = 64 << 10;

#[derive(Default)]
pub(super) struct Tails {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, Tail>,
    /// What every tail costs ([`Tail::cost`]).
    total: usize,
    /// Counts appends, to find the tails appended to longest ago.
    clock: u64,
}

/// The messages of one stream that follow `start`, as a read answers them:
/// in JSON mode each value with a comma before it, else the bytes as they
/// were appended.
struct Tail {
    start: String,
    json: bool,
    /// Each message's offset, and where its bytes end (counted from the
    /// tail's first byte).
    offsets: Vec<String>,
    ends: Vec<usize>,
    /// Frozen blocks, and where each ends.
    blocks: Vec<Bytes>,
    block_ends: Vec<usize>,
    open: Vec<u8>,
    last_used: u64,
}

/// A read the tail answers: the body's parts (a JSON array's values without
/// the brackets) and the last message's offset, if any follows the read's.
pub(super) struct Hit {
    pub parts: Vec<Bytes>,
    pub last: Option<String>,
}

impl Tail {
    fn new(start: String, json: bool) -> Tail {
        Tail {
            start,
            json,
            offsets: Vec::new(),
            ends: Vec::new(),
            blocks: Vec::new(),
            block_ends: Vec::new(),
            open: Vec::new(),
            last_used: 0,
        }
    }

    fn len(&self) -> usize {
        self.ends.last().copied().unwrap_or(0)
    }

    /// The memory it holds, about.
    fn cost(&self) -> usize {
        self.len() + self.offsets.len() * PER_MESSAGE
    }

    fn ends_at(&self) -> &str {
        self.offsets.last().unwrap_or(&self.start)
    }

    fn push(&mut self, offset: String, data: &[u8]) {
        if self.json {
            if let Some(values) = rules::json_values(data) {
                self.open.push(b',');
                self.open.extend_from_slice(values);
            }
        } else {
            self.open.extend_from_slice(data);
        }
        let frozen = self.block_ends.last().copied().unwrap_or(0);
        let end = frozen + self.open.len();
        self.offsets.push(offset);
        self.ends.push(end);
        if self.open.len() >= BLOCK {
            self.blocks
                .push(Bytes::from(std::mem::take(&mut self.open)));
            self.block_ends.push(end);
        }
    }

    /// The bytes in `[from, to)`, as slices of the blocks.
    fn slice(&self, from: usize, to: usize) -> Vec<Bytes> {
        let mut parts = Vec::new();
        let mut block_start = 0;
        for (block, &block_end) in self.blocks.iter().zip(&self.block_ends) {
            if block_end > from && block_start < to {
                let a = from.max(block_start) - block_start;
                let b = to.min(block_end) - block_start;
                parts.push(block.slice(a..b));
            }
            block_start = block_end;
        }
        if to > block_start {
            let a = from.max(block_start) - block_start;
            parts.push(Bytes::copy_from_slice(&self.open[a..to - block_start]));
        }
        parts
    }

    /// What follows `after` up to `tail`, if this tail holds all of it.
    fn read(&self, after: &str, tail: &str) -> Option<Hit> {
        if after < self.start.as_str() || after > tail {
            return None;
        }
        // The message the read ends with must be here (or be the start).
        let upto = if tail == self.start {
            0
        } else {
            self.offsets
                .binary_search_by(|o| o.as_str().cmp(tail))
                .ok()?
                + 1
        };
        let from = self.offsets.partition_point(|o| o.as_str() <= after);
        if from >= upto {
            return Some(Hit {
                parts: Vec::new(),
                last: None,
            });
        }
        let byte = |i: usize| if i == 0 { 0 } else { self.ends[i - 1] };
        let (mut a, b) = (byte(from), byte(upto));
        // A JSON range begins with its first value's comma.
        if self.json && a < b {
            a += 1;
        }
        Some(Hit {
            parts: if a < b { self.slice(a, b) } else { Vec::new() },
            last: Some(self.offsets[upto - 1].clone()),
        })
    }
}

impl State {
    /// Drops the tails appended to longest ago until the rest cost at most
    /// `keep`.
    fn shed(&mut self, keep: usize) {
        let mut by_age: Vec<(u64, String)> = self
            .streams
            .iter()
            .map(|(path, tail)| (tail.last_used, path.clone()))
            .collect();
        by_age.sort_unstable();
        for (_, path) in by_age {
            if self.total <= keep {
                break;
            }
            if let Some(tail) = self.streams.remove(&path) {
                self.total -= tail.cost();
            }
        }
    }
}

impl Tails {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.locked()
    }

    /// A committed append of `data` at `offset`, after `after`: the stream's
    /// tail grows when it ends at `after`, else starts over there.
    pub(super) fn append(&self, path: &str, json: bool, after: &str, offset: String, data: &[u8]) {
        let mut state = self.lock();
        state.clock += 1;
        let clock = state.clock;
        let adds = data.len() + 1 + PER_MESSAGE;
        let mut tail = match state.streams.remove(path) {
            Some(tail) if tail.json == json && tail.ends_at() == after => tail,
            Some(tail) => {
                state.total -= tail.cost();
                Tail::new(after.to_owned(), json)
            }
            None => Tail::new(after.to_owned(), json),
        };
        if tail.cost() + adds > STREAM_BYTES {
            state.total -= tail.cost();
            tail = Tail::new(after.to_owned(), json);
        }
        if adds > STREAM_BYTES {
            return;
        }
        let before = tail.cost();
        tail.push(offset, data);
        tail.last_used = clock;
        state.total += tail.cost() - before;
        state.streams.insert(path.to_owned(), tail);
        if state.total > TOTAL_BYTES {
            state.shed(TOTAL_BYTES / 4 * 3);
        }
    }

    /// The stream at `path` was created or removed: its tail goes.
    pub(super) fn forget(&self, path: &str) {
        let mut state = self.lock();
        if let Some(tail) = state.streams.remove(path) {
            state.total -= tail.cost();
        }
    }

    /// What follows `after` up to the stream's `tail` (as the read found it
    /// in the database), if the stream's tail in memory holds all of it.
    pub(super) fn read(&self, path: &str, after: &str, tail: &str) -> Option<Hit> {
        self.lock().streams.get(path)?.read(after, tail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(hit: &Hit) -> String {
        hit.parts
            .iter()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect()
    }

    #[test]
    fn a_read_inside_the_tail_gets_exactly_the_messages_after_its_offset() {
        let tails = Tails::default();
        tails.append("/s", true, "a0", "a1".into(), b"{\"n\":1}");
        tails.append("/s", true, "a1", "a2".into(), b"2,3,");
        tails.append("/s", true, "a2", "a3".into(), b"4");
        let hit = tails.read("/s", "a0", "a3").unwrap();
        assert_eq!(
            (body(&hit).as_str(), hit.last.as_deref()),
            ("{\"n\":1},2,3,4", Some("a3"))
        );
        // Up to the tail the read found, not past it.
        let hit = tails.read("/s", "a1", "a2").unwrap();
        assert_eq!(
            (body(&hit).as_str(), hit.last.as_deref()),
            ("2,3", Some("a2"))
        );
        // An offset between messages reads what follows it.
        let hit = tails.read("/s", "a15", "a3").unwrap();
        assert_eq!(body(&hit), "2,3,4");
        // At the tail: nothing.
        let hit = tails.read("/s", "a3", "a3").unwrap();
        assert_eq!((hit.parts.len(), hit.last), (0, None));
        // Before the tail's start, or a tail the stream has not: the database.
        assert!(tails.read("/s", "a", "a3").is_none());
        assert!(tails.read("/s", "a0", "a4").is_none());
        assert!(tails.read("/other", "a0", "a1").is_none());
    }

    #[test]
    fn an_append_that_does_not_follow_starts_the_tail_over_and_forget_drops_it() {
        let tails = Tails::default();
        tails.append("/s", false, "a0", "a1".into(), b"one");
        tails.append("/s", false, "b5", "b6".into(), b"six");
        assert!(tails.read("/s", "a0", "a1").is_none());
        assert_eq!(body(&tails.read("/s", "b5", "b6").unwrap()), "six");
        tails.forget("/s");
        assert!(tails.read("/s", "b5", "b6").is_none());
        assert_eq!(tails.lock().total, 0);
    }

    #[test]
    fn bytes_across_many_blocks_come_back_whole() {
        let tails = Tails::default();
        let chunk = vec![b'x'; 1000];
        let mut expected = Vec::new();
        let mut after = "m00000".to_owned();
        for i in 1..=300 {
            let offset = format!("m{i:05}");
            let mut data = chunk.clone();
            data[0] = b'0' + (i % 10) as u8;
            tails.append("/s", false, &after, offset.clone(), &data);
            if i > 7 {
                expected.extend_from_slice(&data);
            }
            after = offset;
        }
        let hit = tails.read("/s", "m00007", "m00300").unwrap();
        assert!(hit.parts.len() > 1);
        assert_eq!(hit.parts.concat(), expected);
    }

    #[test]
    fn the_tails_stay_within_their_bounds() {
        let tails = Tails::default();
        let big = vec![b'y'; 1 << 20];
        for s in 0..80 {
            let path = format!("/s{s}");
            tails.append(&path, false, "0", "1".into(), &big);
        }
        let state = tails.lock();
        assert!(state.total <= TOTAL_BYTES);
        assert_eq!(
            state.total,
            state.streams.values().map(Tail::cost).sum::<usize>()
        );
        // The newest stay.
        assert!(state.streams.contains_key("/s79"));
        assert!(!state.streams.contains_key("/s0"));
    }
}
