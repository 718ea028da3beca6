//! Durable Streams reads: which stream a read may see, and its messages
//! after an offset, a fork's inherited ones first (following its sources up
//! the chain). Reads run on a pooled connection inside one read transaction
//! (`Store::read`), never through the writer, and change nothing: an expired
//! stream is only hidden here; the next write that finds it removes it
//! (`app::durable`).

use super::durable::Refusal;
use crate::domain::durable::{Message, Stream, Visibility, PAGE_BYTES};
use crate::store::durable as rows;
use crate::store::{DbConn, StoreError};

/// The stream at `path` if a read may see it at `now_ms` (`touched_ms`: the
/// last read of it on this node): 404 when absent or expired, 410 when
/// deleted or expired while forks still read it.
pub fn visible(
    conn: &mut DbConn,
    path: &str,
    now_ms: i64,
    touched_ms: i64,
) -> Result<Result<Stream, Refusal>, StoreError> {
    let Some(stream) = rows::stream(conn, path)? else {
        return Ok(Err(Refusal::NotFound("Stream not found")));
    };
    Ok(match stream.visibility(now_ms, touched_ms) {
        Visibility::Visible => Ok(stream),
        Visibility::Absent => Err(Refusal::NotFound("Stream not found")),
        Visibility::Gone => Err(Refusal::Gone),
    })
}

/// One page of the stream's messages after `after`: inherited ones first (a
/// fork reads its source up to the fork offset), then its own; at most
/// `PAGE_BYTES` (at least one message), and whether more follow.
pub fn read_page(
    conn: &mut DbConn,
    stream: &Stream,
    after: &str,
) -> Result<(Vec<Message>, bool), StoreError> {
    let mut out = Vec::new();
    if let Some((source, fork_offset)) = stream.fork() {
        if after < fork_offset {
            inherited(conn, source, after, fork_offset, &mut out)?;
        }
    }
    let size: usize = out.iter().map(|m| m.data.len()).sum();
    if !out.is_empty() && size >= PAGE_BYTES {
        // The inherited range goes on (or the fork's own data follows).
        return Ok((out, true));
    }
    let (own, more) = rows::messages(
        conn,
        &stream.path,
        after,
        None,
        PAGE_BYTES.saturating_sub(size).max(1),
    )?;
    out.extend(own);
    Ok((out, more))
}

/// A source's messages in `(after, cap]`, its own source's first.
fn inherited(
    conn: &mut DbConn,
    path: &str,
    after: &str,
    cap: &str,
    out: &mut Vec<Message>,
) -> Result<(), StoreError> {
    let Some(source) = rows::stream(conn, path)? else {
        return Ok(());
    };
    if let Some((parent, fork_offset)) = source.fork() {
        if after < fork_offset {
            inherited(conn, parent, after, fork_offset.min(cap), out)?;
        }
    }
    let have: usize = out.iter().map(|m| m.data.len()).sum();
    if have >= PAGE_BYTES {
        return Ok(());
    }
    let (own, _) = rows::messages(conn, path, after, Some(cap), PAGE_BYTES - have)?;
    out.extend(own);
    Ok(())
}

/// The stream at `path` and one page after `after`, read together (one
/// snapshot), or `None` when a read may not see it.
pub fn read_visible(
    conn: &mut DbConn,
    path: &str,
    after: &str,
    now_ms: i64,
    touched_ms: i64,
) -> Result<Option<(Stream, Vec<Message>, bool)>, StoreError> {
    let Ok(stream) = visible(conn, path, now_ms, touched_ms)? else {
        return Ok(None);
    };
    let (messages, more) = read_page(conn, &stream, after)?;
    Ok(Some((stream, messages, more)))
}
