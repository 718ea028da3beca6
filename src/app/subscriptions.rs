//! Subscriptions on channels, as use cases: make or change one, remove it,
//! read which events it takes next, and — for pull subscriptions — claim a
//! range of events under a lease, ack it, release it. Each change runs in
//! one writer transaction; webhook delivery (`app::deliveries`) uses the
//! reads here and the conditional updates of `store::subscriptions`.
//!
//! Promises:
//! - A subscription's events are the log's events that match its channel
//!   patterns and types, in id order; its cursor (`acked_through`) only
//!   moves forward, over events that were acknowledged or that match not.
//! - A pull subscription hands each event to one claim at a time: a fresh
//!   claim takes the next events after `claimed_through`, a lapsed claim is
//!   handed whole to the next worker under a new id (the old id's ack is
//!   then refused), so no event is claimed twice at once and none is lost.
//! - On PostgreSQL two nodes racing for the same range both run the same
//!   compare-and-set: one wins, the other takes the next range.

use base64::Engine as _;
use rand::Rng as _;

use crate::domain::subscription::{Kind, Selection, Spec, Start};
use crate::domain::{
    AgentId, ChannelPattern, DomainError, Event, EventId, StreamFilter, SubscriptionId,
};
use crate::store::subscriptions::{self as rows, ClaimRow, ConfigChange, SubscriptionRow};
use crate::store::{events, DbConn, StoreError, Tx};

/// How many pages of non-matching events one read looks through before it
/// reports how far it got (a rare event type must not hold the writer).
const SCAN_PAGES: usize = 10;

/// A subscription with its parsed selection and, for pull, its claims.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub row: SubscriptionRow,
    pub kind: Kind,
    pub selection: Selection,
    pub claims: Vec<ClaimRow>,
}

/// Events handed to a worker under a claim.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub claim: ClaimRow,
    pub events: Vec<Event>,
}

/// What an ack did.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Acked {
    /// Events of the claim.
    pub acked: i64,
    /// Every matching event up to this id is now acknowledged.
    pub acked_through: i64,
}

fn corrupt(id: &str) -> StoreError {
    StoreError::Corrupt(format!("subscription {id} has a damaged configuration"))
}

fn parse(row: SubscriptionRow, claims: Vec<ClaimRow>) -> Result<Subscription, StoreError> {
    let kind = Kind::parse(&row.kind).ok_or_else(|| corrupt(&row.id))?;
    let selection = Selection::from_stored(&row.channels, row.types.as_deref())
        .ok_or_else(|| corrupt(&row.id))?;
    Ok(Subscription {
        row,
        kind,
        selection,
        claims,
    })
}

fn not_found(id: &str) -> StoreError {
    DomainError::NotFound(format!("subscription {id}")).into()
}

/// A subscription as stored now.
pub fn load(conn: &mut DbConn, id: &str) -> Result<Option<Subscription>, StoreError> {
    let Some(row) = rows::get(conn, id)? else {
        return Ok(None);
    };
    let claims = rows::claims(conn, id)?;
    parse(row, claims).map(Some)
}

/// Every subscription, by id.
pub fn list(conn: &mut DbConn) -> Result<Vec<Subscription>, StoreError> {
    rows::all(conn)?
        .into_iter()
        .map(|row| {
            let claims = rows::claims(conn, &row.id)?;
            parse(row, claims)
        })
        .collect()
}

/// The matching events after `after` up to `upto`, at most `limit`, and the
/// id every event up to which was looked at (beyond the last match when
/// non-matching events followed it).
pub fn matching(
    conn: &mut DbConn,
    selection: &Selection,
    after: EventId,
    upto: EventId,
    limit: i64,
) -> Result<(Vec<Event>, EventId), StoreError> {
    let filter = StreamFilter {
        patterns: selection.channels.clone(),
        ..StreamFilter::all()
    };
    let mut found = Vec::new();
    let mut cursor = after;
    for _ in 0..SCAN_PAGES {
        let page = events::read_range(conn, &filter, cursor, upto, limit)?;
        let full = page.len() as i64 == limit;
        for event in page {
            cursor = event.id;
            if selection.matches(&event) {
                found.push(event);
                if found.len() as i64 == limit {
                    return Ok((found, cursor));
                }
            }
        }
        if !full {
            // Nothing left up to `upto` on these channels.
            return Ok((found, upto.max(after)));
        }
    }
    Ok((found, cursor))
}

/// `PUT /api/subscriptions/{id}`: makes the subscription (`true`) or
/// changes its configuration, keeping its cursors (`false`). Its kind
/// cannot change, and a caller who may read only `scope` (`None`:
/// everything) may change it only if it may read every channel it names
/// now (else it could take over a subscription it may not see).
pub fn put(
    tx: &mut Tx<'_>,
    id: &SubscriptionId,
    spec: Spec,
    owner: &AgentId,
    scope: Option<&[ChannelPattern]>,
) -> Result<(Subscription, bool), StoreError> {
    let created_at = tx.now().to_string();
    let conn = tx.conn()?;
    if let Some(existing) = rows::get(conn, id.as_str())? {
        may_change(&existing, id, &spec, scope)?;
        let changed = change(conn, id, spec)?;
        return Ok((changed, false));
    }
    let created = create(conn, id, spec, owner, created_at)?;
    Ok((created, true))
}

/// Refuses a change to `existing` by a caller who may read only `scope`
/// and cannot read every channel it names now, or one to another kind.
fn may_change(
    existing: &SubscriptionRow,
    id: &SubscriptionId,
    spec: &Spec,
    scope: Option<&[ChannelPattern]>,
) -> Result<(), StoreError> {
    let selection = Selection::from_stored(&existing.channels, existing.types.as_deref())
        .ok_or_else(|| corrupt(&existing.id))?;
    if !selection.readable_within(scope) {
        return Err(DomainError::Forbidden(
            "this token may not read every channel the subscription names".into(),
        )
        .into());
    }
    if existing.kind != spec.kind.as_str() {
        return Err(DomainError::Conflict {
            code: "conflict",
            message: format!(
                "subscription {id} is a {} subscription; delete it to make a {} one",
                existing.kind,
                spec.kind.as_str()
            ),
            details: serde_json::json!({"kind": existing.kind}),
        }
        .into());
    }
    Ok(())
}

/// Stores `spec` as the configuration of the existing subscription `id`,
/// keeping its cursors, its claims and its delivery state.
fn change(conn: &mut DbConn, id: &SubscriptionId, spec: Spec) -> Result<Subscription, StoreError> {
    rows::change_config(
        conn,
        id.as_str(),
        &ConfigChange {
            channels: spec.selection.channels_json(),
            types: spec.selection.types_json(),
            webhook_url: spec.webhook_url,
            description: spec.description,
            batch_size: spec.batch_size,
            lease_ms: spec.lease_seconds * 1000,
        },
    )?;
    load(conn, id.as_str())?.ok_or_else(|| not_found(id.as_str()))
}

/// Where a new subscription's cursor starts: the log's head, just before
/// its oldest event, or the id asked for (refused when newer than the head).
fn start_cursor(conn: &mut DbConn, start: Start) -> Result<EventId, StoreError> {
    let position = events::position(conn)?;
    Ok(match start {
        Start::Now => position.head_id,
        Start::Beginning => EventId::from_stored(position.oldest_id.get() - 1),
        Start::After(after) if after > position.head_id => {
            return Err(DomainError::validation(
                "start",
                format!("must not be after the newest event ({})", position.head_id),
            )
            .into())
        }
        Start::After(after) => after,
    })
}

/// Makes the subscription `id`, owned by `owner`, with both cursors where
/// `spec` starts and no delivery attempted yet.
fn create(
    conn: &mut DbConn,
    id: &SubscriptionId,
    spec: Spec,
    owner: &AgentId,
    created_at: String,
) -> Result<Subscription, StoreError> {
    let cursor = start_cursor(conn, spec.start)?;
    rows::insert(
        conn,
        &SubscriptionRow {
            id: id.as_str().to_owned(),
            kind: spec.kind.as_str().to_owned(),
            channels: spec.selection.channels_json(),
            types: spec.selection.types_json(),
            webhook_url: spec.webhook_url,
            description: spec.description,
            batch_size: spec.batch_size,
            lease_ms: spec.lease_seconds * 1000,
            created_at,
            created_by: owner.as_str().to_owned(),
            acked_through: cursor.get(),
            claimed_through: cursor.get(),
            delivered: 0,
            failures: 0,
            next_attempt_ms: 0,
            last_error: None,
            last_success_at: None,
            deliverer: None,
            deliverer_until_ms: None,
        },
    )?;
    load(conn, id.as_str())?.ok_or_else(|| not_found(id.as_str()))
}

/// `DELETE`: removes the subscription and its claims; 404 when there is none.
pub fn delete(tx: &mut Tx<'_>, id: &str) -> Result<(), StoreError> {
    if rows::remove(tx.conn()?, id)? {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

/// `POST …/retry`: a webhook's next attempt is due now.
pub fn retry(tx: &mut Tx<'_>, id: &str) -> Result<Subscription, StoreError> {
    let conn = tx.conn()?;
    if !rows::retry_now(conn, id)? {
        return Err(not_found(id));
    }
    load(conn, id)?.ok_or_else(|| not_found(id))
}

fn random_claim_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    format!(
        "c_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

fn pull(conn: &mut DbConn, id: &str) -> Result<Subscription, StoreError> {
    let subscription = load(conn, id)?.ok_or_else(|| not_found(id))?;
    if subscription.kind != Kind::Pull {
        return Err(DomainError::Conflict {
            code: "wrong_kind",
            message: format!(
                "subscription {id} delivers to its webhook; only a pull subscription is claimed"
            ),
            details: serde_json::json!({"kind": subscription.kind.as_str()}),
        }
        .into());
    }
    Ok(subscription)
}

/// What a worker asks for.
#[derive(Debug, Clone, Default)]
pub struct ClaimAsk {
    pub worker: Option<String>,
    /// At most this many events (default: the subscription's batch size).
    pub max: Option<i64>,
    /// The lease (default: the subscription's).
    pub lease_ms: Option<i64>,
}

/// What a claim found.
#[derive(Debug, Clone)]
pub enum ClaimOutcome {
    Claimed(Claimed),
    /// Nothing claimable among the events up to `looked_through` (one claim
    /// looks through a bounded number: short of the log's head, the caller
    /// may look on in a new transaction).
    Nothing {
        looked_through: EventId,
    },
}

/// `POST …/claims`: a lapsed claim's events under a new id, else the next
/// events nobody claimed.
pub fn claim(
    tx: &mut Tx<'_>,
    id: &str,
    ask: ClaimAsk,
    now_ms: i64,
) -> Result<ClaimOutcome, StoreError> {
    let conn = tx.conn()?;
    // Two nodes may race: the loser of a compare-and-set reads again (on
    // PostgreSQL each statement sees what committed before it).
    for _ in 0..5 {
        let subscription = pull(conn, id)?;
        let row = &subscription.row;
        let lease_expires_ms = now_ms + ask.lease_ms.unwrap_or(row.lease_ms);
        let worker = ask.worker.as_deref();
        if let Some(lapsed) = subscription
            .claims
            .iter()
            .find(|c| c.lease_expires_ms <= now_ms)
        {
            let new_id = random_claim_id();
            if rows::reassign_claim(conn, &lapsed.id, &new_id, worker, now_ms, lease_expires_ms)? {
                let (events, _) = matching(
                    conn,
                    &subscription.selection,
                    EventId::from_stored(lapsed.first_id - 1),
                    EventId::from_stored(lapsed.last_id),
                    crate::domain::subscription::MAX_BATCH,
                )?;
                let claim = ClaimRow {
                    id: new_id,
                    worker: ask.worker.clone(),
                    lease_expires_ms,
                    ..lapsed.clone()
                };
                return Ok(ClaimOutcome::Claimed(Claimed { claim, events }));
            }
            continue;
        }
        let from = row.claimed_through;
        let head = events::head_id(conn)?;
        let limit = ask.max.unwrap_or(row.batch_size);
        let (events, scanned) = matching(
            conn,
            &subscription.selection,
            EventId::from_stored(from),
            head,
            limit,
        )?;
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            if scanned.get() > from {
                if subscription.claims.is_empty() {
                    rows::skip_all(conn, id, from, scanned.get())?;
                } else {
                    rows::skip(conn, id, from, scanned.get())?;
                }
            }
            return Ok(ClaimOutcome::Nothing {
                looked_through: scanned.max(EventId::from_stored(from)),
            });
        };
        if !rows::skip(conn, id, from, last.id.get())? {
            continue;
        }
        let claim = ClaimRow {
            id: random_claim_id(),
            subscription_id: id.to_owned(),
            first_id: first.id.get(),
            last_id: last.id.get(),
            size: events.len() as i64,
            worker: ask.worker.clone(),
            lease_expires_ms,
        };
        rows::insert_claim(conn, &claim)?;
        return Ok(ClaimOutcome::Claimed(Claimed { claim, events }));
    }
    Err(StoreError::Unavailable(
        "other workers claimed at the same moment; retry".into(),
    ))
}

fn claim_lost(conn: &mut DbConn, id: &str, claim_id: &str) -> StoreError {
    match rows::get(conn, id) {
        Ok(None) => not_found(id),
        Err(err) => err,
        Ok(Some(_)) => DomainError::Conflict {
            code: "claim_lost",
            message: format!(
                "claim {claim_id} is not held: it was acked or released, or its lease ended and \
                 its events went to another worker"
            ),
            details: serde_json::json!({"claim": claim_id}),
        }
        .into(),
    }
}

/// `POST …/claims/{claim}/ack`: the claim's events are done.
pub fn ack(tx: &mut Tx<'_>, id: &str, claim_id: &str) -> Result<Acked, StoreError> {
    let conn = tx.conn()?;
    let subscription = pull(conn, id)?;
    let Some(claim) = rows::take_claim(conn, id, claim_id)? else {
        return Err(claim_lost(conn, id, claim_id));
    };
    let count = claim.size;
    let remaining = rows::claims(conn, id)?;
    let through = remaining
        .first()
        .map_or(subscription.row.claimed_through, |c| c.first_id - 1);
    rows::ack_through(conn, id, through)?;
    rows::count_delivered(conn, id, count)?;
    Ok(Acked {
        acked: count,
        acked_through: through.max(subscription.row.acked_through),
    })
}

/// `POST …/claims/{claim}/release`: the claim's events go to the next
/// worker that claims.
pub fn release(tx: &mut Tx<'_>, id: &str, claim_id: &str) -> Result<(), StoreError> {
    let conn = tx.conn()?;
    pull(conn, id)?;
    if rows::release_claim(conn, id, claim_id)? {
        Ok(())
    } else {
        Err(claim_lost(conn, id, claim_id))
    }
}

/// The channel patterns of every webhook subscription (what the delivery
/// task listens to).
pub fn webhook_patterns(subscriptions: &[Subscription]) -> Vec<ChannelPattern> {
    let mut patterns: Vec<ChannelPattern> = Vec::new();
    for s in subscriptions.iter().filter(|s| s.kind == Kind::Webhook) {
        for p in &s.selection.channels {
            if !patterns.contains(p) {
                patterns.push(p.clone());
            }
        }
    }
    patterns
}
