//! The end of a Durable Streams subscription's wake, as use cases (each one
//! writer transaction): a webhook's callback or a pull-wake worker's ack,
//! a claim, a release, a receiver's synchronous `done`, a lapsed lease.
//!
//! A call must name the current generation and wake id (else `FENCED`, even
//! with a token that was once valid) and carry the current token (else
//! `TOKEN_INVALID`). Ending a wake makes the next one at once when work is
//! still pending (`ds_subscriptions::end_wake`).

use std::collections::BTreeMap;

use super::ds_subscriptions::{
    end_wake, link_new_matches, load, new_wake, random_token, tail, token_hash, Refusal,
    StreamInfo, WebhookWake,
};
use crate::domain::ds_subscription::{normalize, Kind, BEFORE_FIRST};
use crate::store::ds_subscriptions::{self as rows, SubscriptionRow};
use crate::store::DbConn;
use crate::store::{StoreError, Tx};

/// A claimed pull-wake wake.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub wake_id: String,
    pub generation: i64,
    pub token: String,
    pub streams: Vec<StreamInfo>,
    pub lease_ttl_ms: i64,
}

/// A callback, ack or release body.
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct AckRequest {
    pub wake_id: Option<String>,
    pub generation: Option<i64>,
    #[serde(default)]
    pub acks: Vec<Ack>,
    #[serde(default)]
    pub done: bool,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Ack {
    pub stream: Option<String>,
    pub path: Option<String>,
    pub offset: String,
}

/// What a use case that may end a wake did: its answer and the webhook
/// wakes to deliver after the commit.
pub type WithWakes<T> = (Result<T, Refusal>, Vec<WebhookWake>);

/// Checks a wake's credentials: a token must be sent; then the generation
/// and wake id (a stale one is fenced whatever its token); then the token.
fn check_wake(
    row: &SubscriptionRow,
    token: Option<&str>,
    request: &AckRequest,
) -> Result<(), Refusal> {
    let Some(token) = token else {
        return Err(Refusal::TokenInvalid);
    };
    if request.generation != Some(row.generation)
        || row.wake_id.is_none()
        || request.wake_id != row.wake_id
    {
        return Err(Refusal::Fenced);
    }
    if row.token_hash.as_deref() != Some(token_hash(token).as_str()) {
        return Err(Refusal::TokenInvalid);
    }
    Ok(())
}

/// Validates every ack, then moves the acked offsets.
fn apply_acks(
    conn: &mut DbConn,
    id: &str,
    acks: &[Ack],
) -> Result<Result<(), Refusal>, StoreError> {
    let mut links = rows::links(conn, id)?;
    for ack in acks {
        let stream = normalize(ack.stream.as_deref().or(ack.path.as_deref()).unwrap_or(""));
        let Some(at) = links.iter().position(|l| l.path == stream) else {
            return Ok(Err(Refusal::InvalidOffset(
                "Ack references an unknown subscription stream",
            )));
        };
        if ack.offset == BEFORE_FIRST || !crate::domain::durable::is_offset(&ack.offset) {
            return Ok(Err(Refusal::InvalidOffset(
                "Ack offset must be a stream offset",
            )));
        }
        if ack.offset < links[at].acked_offset {
            return Ok(Err(Refusal::InvalidOffset(
                "Ack offset regresses the committed cursor",
            )));
        }
        if ack.offset > tail(conn, &stream)? {
            return Ok(Err(Refusal::InvalidOffset(
                "Ack offset is beyond stream tail",
            )));
        }
        links[at].acked_offset = ack.offset.clone();
    }
    for l in &links {
        rows::save_link(conn, l)?;
    }
    Ok(Ok(()))
}

/// A webhook callback (`pull: false`) or a pull-wake ack (`pull: true`):
/// acks offsets, renews the lease, and with `done` ends the wake. Answers
/// whether a next wake was made.
pub fn ack(
    tx: &mut Tx<'_>,
    id: String,
    token: Option<String>,
    request: AckRequest,
    pull: bool,
    now_ms: i64,
) -> Result<WithWakes<bool>, StoreError> {
    let Some(mut row) = rows::get_locked(tx.conn()?, &id)? else {
        return Ok((Err(Refusal::NotFound), vec![]));
    };
    if pull != (row.kind == Kind::PullWake.as_str()) {
        return Ok((
            Err(Refusal::Invalid(
                "Wrong endpoint for this subscription type",
            )),
            vec![],
        ));
    }
    if let Err(refusal) = check_wake(&row, token.as_deref(), &request) {
        return Ok((Err(refusal), vec![]));
    }
    if let Err(refusal) = apply_acks(tx.conn()?, &id, &request.acks)? {
        return Ok((Err(refusal), vec![]));
    }
    if !request.done {
        row.lease_expires_ms = Some(now_ms + row.lease_ttl_ms);
        rows::update(tx.conn()?, &row)?;
        return Ok((Ok(false), vec![]));
    }
    let (next, wake) = end_wake(tx, row, now_ms)?;
    Ok((Ok(next), wake.into_iter().collect()))
}

/// `POST …/claim`: a worker takes the wake (making one if work is pending
/// and none is outstanding) under the subscription's lease.
pub fn claim(
    tx: &mut Tx<'_>,
    id: String,
    worker: String,
    now_ms: i64,
) -> Result<Result<Claimed, Refusal>, StoreError> {
    let Some(row) = rows::get_locked(tx.conn()?, &id)? else {
        return Ok(Err(Refusal::NotFound));
    };
    if row.kind != Kind::PullWake.as_str() {
        return Ok(Err(Refusal::Invalid("Subscription is not pull-wake")));
    }
    // Changes the driver has not seen yet (it follows the log a moment
    // behind, on another node even later) must not hide pending work.
    link_new_matches(tx.conn()?, &row)?;
    if row.lease_expires_ms.is_some_and(|at| at <= now_ms) {
        // Lapsed, and the driver has not ended it yet: end it now.
        end_wake(tx, row, now_ms)?;
    }
    let conn = tx.conn()?;
    let Some(sub) = load(conn, &id)? else {
        return Ok(Err(Refusal::NotFound));
    };
    if let Some(holder) = &sub.row.holder {
        return Ok(Err(Refusal::AlreadyClaimed {
            holder: holder.clone(),
            generation: sub.row.generation,
        }));
    }
    if !sub.streams.iter().any(|s| s.has_pending) {
        return Ok(Err(Refusal::NoPendingWork));
    }
    if sub.row.wake_id.is_none() {
        new_wake(tx, sub, now_ms)?;
    }
    let conn = tx.conn()?;
    let mut sub = load(conn, &id)?.ok_or(StoreError::Corrupt("a subscription vanished".into()))?;
    let token = random_token();
    sub.row.holder = Some(worker);
    sub.row.token_hash = Some(token_hash(&token));
    sub.row.lease_expires_ms = Some(now_ms + sub.row.lease_ttl_ms);
    rows::update(conn, &sub.row)?;
    Ok(Ok(Claimed {
        wake_id: sub.row.wake_id.clone().unwrap_or_default(),
        generation: sub.row.generation,
        token,
        streams: sub.streams,
        lease_ttl_ms: sub.row.lease_ttl_ms,
    }))
}

/// `POST …/release`: the worker gives the wake back unacked; the next wake
/// follows at once if work is pending.
pub fn release(
    tx: &mut Tx<'_>,
    id: String,
    token: Option<String>,
    request: AckRequest,
    now_ms: i64,
) -> Result<WithWakes<()>, StoreError> {
    let Some(row) = rows::get_locked(tx.conn()?, &id)? else {
        return Ok((Err(Refusal::NotFound), vec![]));
    };
    if row.kind != Kind::PullWake.as_str() {
        return Ok((
            Err(Refusal::Invalid("Subscription is not pull-wake")),
            vec![],
        ));
    }
    if let Err(refusal) = check_wake(&row, token.as_deref(), &request) {
        return Ok((Err(refusal), vec![]));
    }
    let (_, wake) = end_wake(tx, row, now_ms)?;
    Ok((Ok(()), wake.into_iter().collect()))
}

/// A webhook answered `{"done": true}`: the wake's snapshot is acked and the
/// wake ends, unless it is no longer the current one.
pub fn auto_ack(
    tx: &mut Tx<'_>,
    id: String,
    wake_id: String,
    now_ms: i64,
) -> Result<Vec<WebhookWake>, StoreError> {
    let conn = tx.conn()?;
    let Some(row) = rows::get_locked(conn, &id)? else {
        return Ok(vec![]);
    };
    if row.wake_id.as_deref() != Some(wake_id.as_str()) {
        return Ok(vec![]);
    }
    let snapshot: BTreeMap<String, String> = row
        .wake_snapshot
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    for mut l in rows::links(conn, &id)? {
        if let Some(at) = snapshot.get(&l.path) {
            if *at > l.acked_offset {
                l.acked_offset = at.clone();
                rows::save_link(conn, &l)?;
            }
        }
    }
    let (_, wake) = end_wake(tx, row, now_ms)?;
    Ok(wake.into_iter().collect())
}

/// Ends every wake whose lease lapsed (its consumer went quiet), making the
/// next one where work is pending.
pub fn lapse(tx: &mut Tx<'_>, now_ms: i64) -> Result<Vec<WebhookWake>, StoreError> {
    let mut wakes = Vec::new();
    for id in rows::lapsed(tx.conn()?, now_ms)? {
        // Locked, then read again: another node may have ended it meanwhile.
        match rows::get_locked(tx.conn()?, &id)? {
            Some(row) if row.lease_expires_ms.is_some_and(|at| at <= now_ms) => {
                wakes.extend(end_wake(tx, row, now_ms)?.1);
            }
            _ => {}
        }
    }
    Ok(wakes)
}

/// Whether a webhook wake is still the outstanding one (a delivery retry
/// stops when it is not).
pub fn is_current(conn: &mut DbConn, id: &str, wake_id: &str) -> Result<bool, StoreError> {
    Ok(rows::get(conn, id)?.and_then(|r| r.wake_id).as_deref() == Some(wake_id))
}
