//! Durable Streams use cases, each one job of the writer: create (or fork),
//! append (with `Stream-Seq`, idempotent producers and close), close and
//! delete. Every change appends an event to the log on the stream's own
//! channel (`ds:` and a digest of its path) in the same transaction: the
//! event's id is the first part of the new offset, and the hub wakes the
//! stream's live readers on every node with it.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::durable::{
    self as rules, check_producer, fork_expiry, json_append, ClosedBy, JsonRefusal, Message,
    ProducerCheck, Stream, ZERO_OFFSET,
};
use crate::domain::{AgentId, ChannelName, EventType, NewEvent, ResourceType};
use crate::store::durable::{self as rows, StreamRow};
use crate::store::{StoreError, Tx};
use crate::views::to_payload;

/// The hub channel of a stream (valid whatever the path holds).
pub fn channel(path: &str) -> String {
    let digest = Sha256::digest(path.as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("ds:{hex}")
}

/// A refusal of the protocol (answered with its status; nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotFound(&'static str),
    Gone,
    Conflict(&'static str),
    BadRequest(&'static str),
    /// Appending to a closed stream: 409 with its tail.
    Closed {
        tail: String,
    },
    StaleEpoch {
        current: i64,
    },
    InvalidEpochSeq,
    Gap {
        expected: i64,
        received: i64,
    },
}

/// A stream to create (or fork).
pub struct Create {
    pub path: String,
    pub content_type: Option<String>,
    pub ttl_seconds: Option<i64>,
    pub expires_at: Option<String>,
    pub closed: bool,
    pub forked_from: Option<String>,
    pub fork_offset: Option<String>,
    pub fork_sub_offset: Option<i64>,
    pub body: Vec<u8>,
    pub now_ms: i64,
    /// The last read of the path on this node (sliding TTL).
    pub touched_ms: i64,
}

/// An append (or a close, when `body` is empty and `close`).
pub struct Append {
    pub path: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub seq: Option<String>,
    pub producer: Option<(String, i64, i64)>,
    pub close: bool,
    pub now_ms: i64,
    pub touched_ms: i64,
}

/// What an append did.
#[derive(Debug, Clone)]
pub struct Appended {
    pub tail: String,
    pub closed: bool,
    /// A producer's retry of an append already made.
    pub duplicate: Option<i64>,
    /// The message a plain append (bytes, no close) added.
    pub fresh: Option<Fresh>,
}

/// One message an append added, with what a read of the stream right after
/// it would answer: the stream's state and the event that announced it.
#[derive(Debug, Clone)]
pub struct Fresh {
    /// The tail before the append: the message follows this offset.
    pub after: String,
    /// The id of the append's event (`stream_appended` on its channel).
    pub event_id: i64,
    pub message: Message,
    pub stream: Stream,
}

fn note(tx: &mut Tx<'_>, path: &str, kind: &str, tail: &str) -> Result<i64, StoreError> {
    let event = NewEvent {
        channel: ChannelName::parse("channel", &channel(path))?,
        event_type: EventType::parse("type", kind)?,
        resource_type: Some(ResourceType::parse("resource_type", "stream")?),
        resource_id: None,
        agent_id: AgentId::parse("agent", "durable-streams")?,
        session_id: None,
        payload: to_payload(json!({ "path": path, "offset": tail }))?,
    };
    Ok(tx.append(&event)?.id.get())
}

/// The live stream at `path`, or why not (an expired one is removed).
fn live_stream(
    tx: &mut Tx<'_>,
    path: &str,
    now_ms: i64,
    touched_ms: i64,
) -> Result<Result<StreamRow, Refusal>, StoreError> {
    let Some(row) = rows::get(tx.conn()?, path)? else {
        return Ok(Err(Refusal::NotFound("Stream not found")));
    };
    if row.soft_deleted {
        return Ok(Err(Refusal::Gone));
    }
    if row.is_expired(now_ms, touched_ms) {
        if row.ref_count > 0 {
            let mut gone = row;
            gone.soft_deleted = true;
            rows::update(tx.conn()?, &gone)?;
            return Ok(Err(Refusal::Gone));
        }
        remove_cascade(tx, &row)?;
        return Ok(Err(Refusal::NotFound("Stream not found")));
    }
    Ok(Ok(row))
}

/// Adds `data` (a body, JSON processed) as the stream's next message,
/// moving `row`'s tail; the id of the event that announces it.
fn append_bytes(
    tx: &mut Tx<'_>,
    row: &mut StreamRow,
    data: &[u8],
    kind: &str,
) -> Result<i64, StoreError> {
    let event_id = note(tx, &row.path, kind, &row.tail)?;
    row.bytes += data.len() as i64;
    row.tail = rules::offset(event_id, row.bytes);
    rows::add_message(tx.conn()?, &row.path, &row.tail, data)?;
    Ok(event_id)
}

/// `PUT`: creates, or answers the existing stream when its configuration is
/// the same (`Ok(false)`), else a conflict. Answers the stream as readers
/// see it.
pub fn create(tx: &mut Tx<'_>, c: Create) -> Result<Result<(Stream, bool), Refusal>, StoreError> {
    if let Some(existing) = rows::get(tx.conn()?, &c.path)? {
        if existing.soft_deleted {
            return Ok(Err(Refusal::Conflict(
                "stream was deleted but still has active forks; the path cannot be reused until they are removed",
            )));
        }
        if existing.is_expired(c.now_ms, c.touched_ms) && existing.ref_count == 0 {
            remove_cascade(tx, &existing)?;
        } else {
            return Ok(if same_configuration(&c, &existing) {
                Ok((existing.into(), false))
            } else {
                Err(Refusal::Conflict(
                    "Stream already exists with different configuration",
                ))
            });
        }
    }
    let mut row = new_row(&c);
    let mut prefix = None;
    if let Some(source_path) = &c.forked_from {
        prefix = match fork(tx, &c, source_path, &mut row)? {
            Ok(prefix) => prefix,
            Err(refusal) => return Ok(Err(refusal)),
        };
    }
    rows::insert(tx.conn()?, &row)?;
    if let Some(prefix) = prefix {
        // The part of the source's next message the fork inherits.
        let (event, bytes) = rules::offset_parts(&row.tail);
        row.bytes = bytes + prefix.len() as i64 + 5;
        row.tail = rules::offset(event, row.bytes);
        rows::add_message(tx.conn()?, &row.path, &row.tail, &prefix)?;
    }
    if !c.body.is_empty() {
        let data = initial_data(&c.body, &row.content_type)?;
        if !data.is_empty() {
            append_bytes(tx, &mut row, &data, "stream_appended")?;
        }
    }
    row.closed = c.closed;
    rows::update(tx.conn()?, &row)?;
    note(tx, &row.path, "stream_created", &row.tail)?;
    Ok(Ok((row.into(), true)))
}

/// Whether a `PUT` on an existing stream asks for what it is (a fork's
/// content type, TTL and expiry are its source's unless given).
fn same_configuration(c: &Create, existing: &StreamRow) -> bool {
    let wanted = c
        .content_type
        .as_deref()
        .map(rules::normalize_content_type)
        .unwrap_or_else(|| {
            if c.forked_from.is_some() {
                rules::normalize_content_type(&existing.content_type)
            } else {
                "application/octet-stream".into()
            }
        });
    wanted == rules::normalize_content_type(&existing.content_type)
        && (c.forked_from.is_some() || c.ttl_seconds == existing.ttl_seconds)
        && (c.forked_from.is_some() || c.expires_at == existing.expires_at)
        && c.closed == existing.closed
        && c.forked_from == existing.forked_from
        && (c.fork_offset.is_none() || c.fork_offset == existing.fork_offset)
        && c.fork_sub_offset.unwrap_or(0) == existing.fork_sub_offset.unwrap_or(0)
}

/// The row of a new stream, before its fork and its first bytes.
fn new_row(c: &Create) -> StreamRow {
    StreamRow {
        path: c.path.clone(),
        content_type: c
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into()),
        ttl_seconds: c.ttl_seconds,
        expires_at: c.expires_at.clone(),
        closed: false,
        closed_by: None,
        created_ms: c.now_ms,
        accessed_ms: c.now_ms,
        forked_from: None,
        fork_offset: None,
        fork_sub_offset: None,
        ref_count: 0,
        soft_deleted: false,
        tail: ZERO_OFFSET.into(),
        bytes: 0,
        last_seq: None,
    }
}

/// Makes `row` a fork of `source_path` (its content type, TTL or expiry,
/// tail at the fork offset) and counts it on the source; answers the part
/// of the source's next message it inherits (a sub-offset), if any.
fn fork(
    tx: &mut Tx<'_>,
    c: &Create,
    source_path: &str,
    row: &mut StreamRow,
) -> Result<Result<Option<Vec<u8>>, Refusal>, StoreError> {
    let mut source = match rows::get(tx.conn()?, source_path)? {
        Some(s) if !s.is_expired(c.now_ms, 0) || s.soft_deleted => s,
        _ => return Ok(Err(Refusal::NotFound("Source stream not found"))),
    };
    if source.soft_deleted {
        return Ok(Err(Refusal::Conflict(
            "source stream was deleted but still has active forks",
        )));
    }
    if let Some(ct) = &c.content_type {
        if rules::normalize_content_type(ct) != rules::normalize_content_type(&source.content_type)
        {
            return Ok(Err(Refusal::Conflict(
                "Content type mismatch with source stream",
            )));
        }
    }
    let fork_offset = c.fork_offset.clone().unwrap_or_else(|| source.tail.clone());
    if fork_offset.as_str() < ZERO_OFFSET || fork_offset > source.tail {
        return Ok(Err(Refusal::BadRequest(
            "Fork offset beyond source stream length",
        )));
    }
    let mut prefix = None;
    if let Some(sub) = c.fork_sub_offset.filter(|n| *n > 0) {
        match sub_offset_prefix(tx, &source, &fork_offset, sub)? {
            Some(bytes) => prefix = Some(bytes),
            None => return Ok(Err(Refusal::BadRequest("Invalid fork sub-offset"))),
        }
    }
    let (ttl, expires) = fork_expiry(
        c.ttl_seconds,
        c.expires_at.clone(),
        source.ttl_seconds,
        source.expires_at.clone(),
    );
    row.ttl_seconds = ttl;
    row.expires_at = expires;
    row.content_type = source.content_type.clone();
    row.forked_from = Some(source_path.to_owned());
    row.fork_offset = Some(fork_offset.clone());
    row.fork_sub_offset = c.fork_sub_offset.filter(|n| *n > 0);
    row.tail = fork_offset.clone();
    row.bytes = rules::offset_parts(&fork_offset).1;
    source.ref_count += 1;
    rows::update(tx.conn()?, &source)?;
    Ok(Ok(prefix))
}

/// A `PUT`'s body as stored: in JSON mode its values (an empty array is
/// nothing); a bad JSON body fails the job (400, or 422 when too deep).
fn initial_data(body: &[u8], content_type: &str) -> Result<Vec<u8>, StoreError> {
    if !rules::is_json(content_type) {
        return Ok(body.to_vec());
    }
    match json_append(body, true) {
        Ok(data) => Ok(data),
        Err(JsonRefusal::Invalid) => {
            Err(crate::domain::DomainError::BadRequest("Invalid JSON".into()).into())
        }
        Err(JsonRefusal::EmptyArray) => Ok(Vec::new()),
        Err(JsonRefusal::TooDeep { field, message }) => {
            Err(crate::domain::DomainError::Validation { field, message }.into())
        }
    }
}

/// The inherited part of the source's first message after `fork_offset`:
/// `sub` JSON values or bytes; `None` when it overshoots.
fn sub_offset_prefix(
    tx: &mut Tx<'_>,
    source: &StreamRow,
    fork_offset: &str,
    sub: i64,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut from = source.clone();
    // The message may be inherited by the source itself.
    let message = loop {
        if let (Some(parent), Some(at)) = (&from.forked_from, &from.fork_offset) {
            if fork_offset < at.as_str() {
                let first = rows::first_after(tx.conn()?, parent, fork_offset)?;
                if first
                    .as_ref()
                    .is_some_and(|m| m.offset.as_str() <= at.as_str())
                {
                    break first;
                }
                match rows::get(tx.conn()?, parent)? {
                    Some(p) => {
                        from = p;
                        continue;
                    }
                    None => break None,
                }
            }
        }
        break rows::first_after(tx.conn()?, &source.path, fork_offset)?;
    };
    let Some(message) = message else {
        return Ok(None);
    };
    let sub = sub as usize;
    Ok(if rules::is_json(&source.content_type) {
        rules::json_prefix(&message.data, sub)
    } else if sub <= message.data.len() {
        Some(message.data[..sub].to_vec())
    } else {
        None
    })
}

/// `POST`: appends (and/or closes).
pub fn append(tx: &mut Tx<'_>, a: Append) -> Result<Result<Appended, Refusal>, StoreError> {
    let mut row = match live_stream(tx, &a.path, a.now_ms, a.touched_ms)? {
        Ok(row) => row,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if row.closed {
        return Ok(append_to_closed(row, &a));
    }
    if let Some(refusal) = mismatch(&a, &row) {
        return Ok(Err(refusal));
    }
    let mut producer = None;
    if let Some((id, epoch, seq)) = &a.producer {
        let state = rows::producer(tx.conn()?, &a.path, id)?;
        match check_producer(state, *epoch, *seq) {
            ProducerCheck::Accepted(next) => producer = Some((id.clone(), next)),
            ProducerCheck::Duplicate { last_seq } => {
                return Ok(Ok(Appended {
                    tail: row.tail,
                    closed: row.closed,
                    duplicate: Some(last_seq),
                    fresh: None,
                }))
            }
            ProducerCheck::StaleEpoch { current } => {
                return Ok(Err(Refusal::StaleEpoch { current }))
            }
            ProducerCheck::InvalidEpochSeq => return Ok(Err(Refusal::InvalidEpochSeq)),
            ProducerCheck::Gap { expected, received } => {
                return Ok(Err(Refusal::Gap { expected, received }))
            }
        }
    }
    if a.seq
        .as_ref()
        .is_some_and(|seq| row.last_seq.as_ref().is_some_and(|last| seq <= last))
    {
        return Ok(Err(Refusal::Conflict("Sequence conflict")));
    }
    let mut added = None;
    if !a.body.is_empty() {
        let data = match appended_data(&a.body, &row.content_type)? {
            Ok(data) => data,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let after = row.tail.clone();
        let event_id = append_bytes(tx, &mut row, &data, "stream_appended")?;
        added = Some((after, event_id, data));
    }
    if let Some((id, state)) = &producer {
        rows::save_producer(tx.conn()?, &a.path, id, *state, a.now_ms)?;
    }
    if let Some(seq) = &a.seq {
        row.last_seq = Some(seq.clone());
    }
    row.accessed_ms = a.now_ms;
    if a.close {
        close(tx, &mut row, &a)?;
        rows::update(tx.conn()?, &row)?;
    } else {
        rows::update_appended(tx.conn()?, &row)?;
    }
    // A close makes an event of its own after the message's: only a plain
    // append is one message announced by one event.
    let fresh = added
        .filter(|_| !a.close)
        .map(|(after, event_id, data)| Fresh::new(after, event_id, data, &row));
    Ok(Ok(Appended {
        tail: row.tail,
        closed: row.closed,
        duplicate: None,
        fresh,
    }))
}

/// A body in another content type than the stream's.
fn mismatch(a: &Append, row: &StreamRow) -> Option<Refusal> {
    let ct = a.content_type.as_deref().filter(|_| !a.body.is_empty())?;
    (rules::normalize_content_type(ct) != rules::normalize_content_type(&row.content_type))
        .then_some(Refusal::Conflict("Content-type mismatch"))
}

impl Fresh {
    /// The message `data` appended after `after`, announced by `event_id`;
    /// `row` is the stream after the append.
    fn new(after: String, event_id: i64, data: Vec<u8>, row: &StreamRow) -> Fresh {
        Fresh {
            message: Message {
                offset: row.tail.clone(),
                data,
            },
            after,
            event_id,
            stream: Stream::from(row.clone()),
        }
    }
}

/// An append to a closed stream: closing it again succeeds, a retry of the
/// producer's append that closed it is a duplicate, anything else is
/// refused with the tail.
fn append_to_closed(row: StreamRow, a: &Append) -> Result<Appended, Refusal> {
    if a.body.is_empty() && a.close && a.producer.is_none() {
        return Ok(Appended {
            tail: row.tail,
            closed: true,
            duplicate: None,
            fresh: None,
        });
    }
    let by: Option<ClosedBy> = row
        .closed_by
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok());
    if let (Some(by), Some((id, epoch, seq))) = (&by, &a.producer) {
        if by.producer_id == *id && by.epoch == *epoch && by.seq == *seq {
            return Ok(Appended {
                tail: row.tail,
                closed: true,
                duplicate: Some(*seq),
                fresh: None,
            });
        }
    }
    Err(Refusal::Closed { tail: row.tail })
}

/// A `POST`'s body as stored: in JSON mode its values; invalid JSON and an
/// empty array are refused, a body nested too deep fails the job (422).
fn appended_data(body: &[u8], content_type: &str) -> Result<Result<Vec<u8>, Refusal>, StoreError> {
    if !rules::is_json(content_type) {
        return Ok(Ok(body.to_vec()));
    }
    Ok(match json_append(body, false) {
        Ok(data) => Ok(data),
        Err(JsonRefusal::Invalid) => Err(Refusal::BadRequest("Invalid JSON")),
        Err(JsonRefusal::EmptyArray) => Err(Refusal::BadRequest("Empty arrays are not allowed")),
        Err(JsonRefusal::TooDeep { field, message }) => {
            return Err(crate::domain::DomainError::Validation { field, message }.into())
        }
    })
}

/// Closes the stream, remembering the producer whose append closed it.
fn close(tx: &mut Tx<'_>, row: &mut StreamRow, a: &Append) -> Result<(), StoreError> {
    row.closed = true;
    row.closed_by = a.producer.as_ref().map(|(id, epoch, seq)| {
        serde_json::to_string(&ClosedBy {
            producer_id: id.clone(),
            epoch: *epoch,
            seq: *seq,
        })
        .unwrap_or_default()
    });
    note(tx, &a.path, "stream_closed", &row.tail)?;
    Ok(())
}

/// `DELETE`: removes the stream, or soft-deletes it while forks read it.
pub fn delete(
    tx: &mut Tx<'_>,
    path: &str,
    now_ms: i64,
    touched_ms: i64,
) -> Result<Result<(), Refusal>, StoreError> {
    let row = match live_stream(tx, path, now_ms, touched_ms)? {
        Ok(row) => row,
        Err(refusal) => return Ok(Err(refusal)),
    };
    if row.ref_count > 0 {
        let mut gone = row;
        gone.soft_deleted = true;
        rows::update(tx.conn()?, &gone)?;
    } else {
        remove_cascade(tx, &row)?;
    }
    note(tx, path, "stream_deleted", ZERO_OFFSET)?;
    Ok(Ok(()))
}

/// Removes a stream; a soft-deleted source left without forks goes too.
fn remove_cascade(tx: &mut Tx<'_>, row: &StreamRow) -> Result<(), StoreError> {
    rows::remove(tx.conn()?, &row.path)?;
    let mut parent_path = row.forked_from.clone();
    while let Some(path) = parent_path.take() {
        let Some(mut parent) = rows::get(tx.conn()?, &path)? else {
            break;
        };
        parent.ref_count = (parent.ref_count - 1).max(0);
        if parent.ref_count == 0 && parent.soft_deleted {
            rows::remove(tx.conn()?, &parent.path)?;
            parent_path = parent.forked_from.clone();
        } else {
            rows::update(tx.conn()?, &parent)?;
        }
    }
    Ok(())
}
