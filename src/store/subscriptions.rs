//! Subscriptions on channels in the database: one row per subscription (its
//! configuration, its cursors and its delivery state) and one per
//! outstanding claim of a pull subscription. Rows only: what they mean is
//! decided in `app::subscriptions`.
//!
//! Every change that two nodes could race for is a conditional `UPDATE`
//! (compare-and-set on the value the caller read): on PostgreSQL the second
//! of two concurrent updates waits for the first, finds the condition false
//! and changes nothing, so exactly one node wins.

use diesel::prelude::*;

use super::db::DbConn;
use super::schema::{subscription_claims, subscriptions};
use super::StoreError;

/// A subscription's row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = subscriptions)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct SubscriptionRow {
    pub id: String,
    /// `webhook` or `pull`.
    pub kind: String,
    /// JSON array of channel patterns.
    pub channels: String,
    /// JSON array of event types; `None` for every type.
    pub types: Option<String>,
    pub webhook_url: Option<String>,
    pub description: Option<String>,
    pub batch_size: i64,
    pub lease_ms: i64,
    pub created_at: String,
    pub created_by: String,
    /// Every matching event with an id up to this one is acknowledged.
    pub acked_through: i64,
    /// Pull: every matching event up to here was handed to a claim.
    pub claimed_through: i64,
    /// Events acknowledged since the subscription was made.
    pub delivered: i64,
    /// Webhook: failed attempts since the last success.
    pub failures: i64,
    /// Webhook: no attempt before this instant (ms since the epoch).
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub last_success_at: Option<String>,
    /// Webhook: the node delivering now, until `deliverer_until_ms`.
    pub deliverer: Option<String>,
    pub deliverer_until_ms: Option<i64>,
}

/// The part of a subscription its owner may change.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = subscriptions)]
#[diesel(treat_none_as_null = true)]
pub struct ConfigChange {
    pub channels: String,
    pub types: Option<String>,
    pub webhook_url: Option<String>,
    pub description: Option<String>,
    pub batch_size: i64,
    pub lease_ms: i64,
}

/// An outstanding claim: the events of the subscription with
/// `first_id <= id <= last_id`.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = subscription_claims)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct ClaimRow {
    pub id: String,
    pub subscription_id: String,
    pub first_id: i64,
    pub last_id: i64,
    /// How many events the range holds.
    pub size: i64,
    pub worker: Option<String>,
    pub lease_expires_ms: i64,
}

pub fn get(conn: &mut DbConn, id: &str) -> Result<Option<SubscriptionRow>, StoreError> {
    Ok(subscriptions::table
        .find(id)
        .select(SubscriptionRow::as_select())
        .get_result(conn)
        .optional()?)
}

/// Every subscription, by id.
pub fn all(conn: &mut DbConn) -> Result<Vec<SubscriptionRow>, StoreError> {
    Ok(subscriptions::table
        .order(subscriptions::id)
        .select(SubscriptionRow::as_select())
        .load(conn)?)
}

pub fn insert(conn: &mut DbConn, row: &SubscriptionRow) -> Result<(), StoreError> {
    diesel::insert_into(subscriptions::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn change_config(conn: &mut DbConn, id: &str, change: &ConfigChange) -> Result<(), StoreError> {
    diesel::update(subscriptions::table.find(id))
        .set(change)
        .execute(conn)?;
    Ok(())
}

/// Removes a subscription and its claims; whether it existed.
pub fn remove(conn: &mut DbConn, id: &str) -> Result<bool, StoreError> {
    diesel::delete(subscription_claims::table.filter(subscription_claims::subscription_id.eq(id)))
        .execute(conn)?;
    Ok(diesel::delete(subscriptions::table.find(id)).execute(conn)? > 0)
}

/// Takes the delivery of a webhook subscription for `node` until
/// `until_ms`, if its cursor is still `acked_through`, its next attempt is
/// due and no other node holds it; whether it was taken.
pub fn take_delivery(
    conn: &mut DbConn,
    id: &str,
    acked_through: i64,
    node: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<bool, StoreError> {
    let free = subscriptions::deliverer
        .is_null()
        .or(subscriptions::deliverer.eq(node))
        .or(subscriptions::deliverer_until_ms.lt(now_ms));
    let taken = diesel::update(
        subscriptions::table
            .find(id)
            .filter(subscriptions::acked_through.eq(acked_through))
            .filter(subscriptions::next_attempt_ms.le(now_ms))
            .filter(free),
    )
    .set((
        subscriptions::deliverer.eq(node),
        subscriptions::deliverer_until_ms.eq(until_ms),
    ))
    .execute(conn)?;
    Ok(taken == 1)
}

/// Moves the cursor of a subscription `node` delivers from `from` to `to`
/// after `count` events were acknowledged; whether it still held it.
pub fn delivered(
    conn: &mut DbConn,
    id: &str,
    node: &str,
    from: i64,
    to: i64,
    count: i64,
    now: &str,
) -> Result<bool, StoreError> {
    let moved = diesel::update(
        subscriptions::table
            .find(id)
            .filter(subscriptions::deliverer.eq(node))
            .filter(subscriptions::acked_through.eq(from)),
    )
    .set((
        subscriptions::acked_through.eq(to),
        subscriptions::claimed_through.eq(to),
        subscriptions::delivered.eq(subscriptions::delivered + count),
        subscriptions::failures.eq(0),
        subscriptions::next_attempt_ms.eq(0),
        subscriptions::last_error.eq(None::<String>),
        subscriptions::last_success_at.eq(now),
    ))
    .execute(conn)?;
    Ok(moved == 1)
}

/// Records a failed attempt of `node` and gives the delivery up until
/// `next_attempt_ms`.
pub fn failed(
    conn: &mut DbConn,
    id: &str,
    node: &str,
    error: &str,
    next_attempt_ms: i64,
) -> Result<(), StoreError> {
    diesel::update(
        subscriptions::table
            .find(id)
            .filter(subscriptions::deliverer.eq(node)),
    )
    .set((
        subscriptions::failures.eq(subscriptions::failures + 1),
        subscriptions::next_attempt_ms.eq(next_attempt_ms),
        subscriptions::last_error.eq(error),
        subscriptions::deliverer.eq(None::<String>),
        subscriptions::deliverer_until_ms.eq(None::<i64>),
    ))
    .execute(conn)?;
    Ok(())
}

/// Gives up the delivery `node` holds (nothing was pending).
pub fn give_up_delivery(conn: &mut DbConn, id: &str, node: &str) -> Result<(), StoreError> {
    diesel::update(
        subscriptions::table
            .find(id)
            .filter(subscriptions::deliverer.eq(node)),
    )
    .set((
        subscriptions::deliverer.eq(None::<String>),
        subscriptions::deliverer_until_ms.eq(None::<i64>),
    ))
    .execute(conn)?;
    Ok(())
}

/// Makes the next attempt due now; whether the subscription exists.
pub fn retry_now(conn: &mut DbConn, id: &str) -> Result<bool, StoreError> {
    Ok(diesel::update(subscriptions::table.find(id))
        .set(subscriptions::next_attempt_ms.eq(0))
        .execute(conn)?
        == 1)
}

/// Moves `claimed_through` over events none of which match, from `from` to
/// `to`; whether it was still `from`.
pub fn skip(conn: &mut DbConn, id: &str, from: i64, to: i64) -> Result<bool, StoreError> {
    let moved = diesel::update(
        subscriptions::table
            .find(id)
            .filter(subscriptions::claimed_through.eq(from)),
    )
    .set(subscriptions::claimed_through.eq(to))
    .execute(conn)?;
    Ok(moved == 1)
}

/// Sets `acked_through` to `to` unless it is already higher.
pub fn ack_through(conn: &mut DbConn, id: &str, to: i64) -> Result<(), StoreError> {
    diesel::update(
        subscriptions::table
            .find(id)
            .filter(subscriptions::acked_through.lt(to)),
    )
    .set(subscriptions::acked_through.eq(to))
    .execute(conn)?;
    Ok(())
}

/// Moves both cursors of a subscription with nothing outstanding over
/// events none of which match, from `from` to `to`.
pub fn skip_all(conn: &mut DbConn, id: &str, from: i64, to: i64) -> Result<(), StoreError> {
    diesel::update(
        subscriptions::table
            .find(id)
            .filter(subscriptions::acked_through.eq(from))
            .filter(subscriptions::claimed_through.eq(from)),
    )
    .set((
        subscriptions::acked_through.eq(to),
        subscriptions::claimed_through.eq(to),
    ))
    .execute(conn)?;
    Ok(())
}

/// Adds `count` to the events a subscription had acknowledged.
pub fn count_delivered(conn: &mut DbConn, id: &str, count: i64) -> Result<(), StoreError> {
    diesel::update(subscriptions::table.find(id))
        .set(subscriptions::delivered.eq(subscriptions::delivered + count))
        .execute(conn)?;
    Ok(())
}

/// A subscription's outstanding claims, oldest range first.
pub fn claims(conn: &mut DbConn, id: &str) -> Result<Vec<ClaimRow>, StoreError> {
    Ok(subscription_claims::table
        .filter(subscription_claims::subscription_id.eq(id))
        .order(subscription_claims::first_id)
        .select(ClaimRow::as_select())
        .load(conn)?)
}

pub fn insert_claim(conn: &mut DbConn, claim: &ClaimRow) -> Result<(), StoreError> {
    diesel::insert_into(subscription_claims::table)
        .values(claim)
        .execute(conn)?;
    Ok(())
}

/// Hands a lapsed claim to a new holder under a new id; whether it was
/// still lapsed (no other worker took it first).
pub fn reassign_claim(
    conn: &mut DbConn,
    old_id: &str,
    new_id: &str,
    worker: Option<&str>,
    now_ms: i64,
    lease_expires_ms: i64,
) -> Result<bool, StoreError> {
    let moved = diesel::update(
        subscription_claims::table
            .find(old_id)
            .filter(subscription_claims::lease_expires_ms.le(now_ms)),
    )
    .set((
        subscription_claims::id.eq(new_id),
        subscription_claims::worker.eq(worker),
        subscription_claims::lease_expires_ms.eq(lease_expires_ms),
    ))
    .execute(conn)?;
    Ok(moved == 1)
}

/// Removes a claim of a subscription; the claim, if it was there.
pub fn take_claim(
    conn: &mut DbConn,
    subscription_id: &str,
    claim_id: &str,
) -> Result<Option<ClaimRow>, StoreError> {
    let claim = subscription_claims::table
        .find(claim_id)
        .filter(subscription_claims::subscription_id.eq(subscription_id))
        .select(ClaimRow::as_select())
        .get_result(conn)
        .optional()?;
    // Two nodes may race to ack one claim: the one whose delete removed it won.
    if claim.is_some()
        && diesel::delete(subscription_claims::table.find(claim_id)).execute(conn)? == 0
    {
        return Ok(None);
    }
    Ok(claim)
}

/// Ends a claim's lease now (released); whether it was there.
pub fn release_claim(
    conn: &mut DbConn,
    subscription_id: &str,
    claim_id: &str,
) -> Result<bool, StoreError> {
    Ok(diesel::update(
        subscription_claims::table
            .find(claim_id)
            .filter(subscription_claims::subscription_id.eq(subscription_id)),
    )
    .set((
        subscription_claims::lease_expires_ms.eq(0),
        subscription_claims::worker.eq(None::<String>),
    ))
    .execute(conn)?
        == 1)
}

/// Keeps the delivery `node` holds until `until_ms`.
pub fn extend_delivery(
    conn: &mut DbConn,
    id: &str,
    node: &str,
    until_ms: i64,
) -> Result<(), StoreError> {
    diesel::update(
        subscriptions::table
            .find(id)
            .filter(subscriptions::deliverer.eq(node)),
    )
    .set(subscriptions::deliverer_until_ms.eq(until_ms))
    .execute(conn)?;
    Ok(())
}
