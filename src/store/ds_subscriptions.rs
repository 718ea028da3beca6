//! Durable Streams subscriptions in the database: one row per subscription
//! (its configuration and its current wake), one per stream it follows (how
//! it was linked and the offset acked so far), and the webhook signing keys.
//! Rows only: what they mean is decided in `app::ds_subscriptions`.

use diesel::prelude::*;

use super::db::DbConn;
use super::schema::{ds_signing_keys, ds_streams, ds_subscription_streams, ds_subscriptions};
use super::StoreError;

/// A subscription's row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = ds_subscriptions)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct SubscriptionRow {
    pub id: String,
    /// `webhook` or `pull-wake`.
    pub kind: String,
    pub pattern: Option<String>,
    pub webhook_url: Option<String>,
    pub wake_stream: Option<String>,
    pub lease_ttl_ms: i64,
    pub description: Option<String>,
    pub config_hash: String,
    pub created_at: String,
    /// Bumped by every new wake: a callback of an older one is fenced.
    pub generation: i64,
    /// The outstanding wake, if any.
    pub wake_id: Option<String>,
    /// JSON object: stream path → its tail when the wake was made.
    pub wake_snapshot: Option<String>,
    /// SHA-256 (hex) of the outstanding wake's token.
    pub token_hash: Option<String>,
    /// The worker that claimed the wake (pull-wake).
    pub holder: Option<String>,
    /// When the outstanding wake's lease ends (ms since the epoch).
    pub lease_expires_ms: Option<i64>,
}

/// A stream a subscription follows.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = ds_subscription_streams)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct LinkRow {
    pub subscription_id: String,
    /// Relative to `/v1/stream/`.
    pub path: String,
    pub explicit: bool,
    pub glob: bool,
    pub acked_offset: String,
}

/// A webhook signing key (Ed25519 secret key bytes).
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = ds_signing_keys)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
pub struct KeyRow {
    pub kid: String,
    pub secret: Vec<u8>,
    pub created_ms: i64,
}

/// A subscription's row, locked until the writer's transaction ends: on
/// PostgreSQL two nodes that react to the same change (a new wake, a claim,
/// a lapsed lease) take turns, and the second sees what the first did, so a
/// wake is made once. SQLite has one writer already.
pub fn get_locked(conn: &mut DbConn, id: &str) -> Result<Option<SubscriptionRow>, StoreError> {
    if let DbConn::Pg(pg) = conn {
        ds_subscriptions::table
            .find(id)
            .select(ds_subscriptions::id)
            .for_update()
            .get_result::<String>(pg)
            .optional()?;
    }
    get(conn, id)
}

pub fn get(conn: &mut DbConn, id: &str) -> Result<Option<SubscriptionRow>, StoreError> {
    Ok(ds_subscriptions::table
        .find(id)
        .select(SubscriptionRow::as_select())
        .get_result(conn)
        .optional()?)
}

/// Whether any subscription exists.
pub fn any(conn: &mut DbConn) -> Result<bool, StoreError> {
    Ok(diesel::select(diesel::dsl::exists(
        ds_subscriptions::table.select(ds_subscriptions::id),
    ))
    .get_result(conn)?)
}

/// Every subscription, by id.
pub fn all(conn: &mut DbConn) -> Result<Vec<SubscriptionRow>, StoreError> {
    Ok(ds_subscriptions::table
        .order(ds_subscriptions::id)
        .select(SubscriptionRow::as_select())
        .load(conn)?)
}

/// The ids of subscriptions whose wake's lease ended at or before `now_ms`.
pub fn lapsed(conn: &mut DbConn, now_ms: i64) -> Result<Vec<String>, StoreError> {
    Ok(ds_subscriptions::table
        .filter(ds_subscriptions::lease_expires_ms.le(now_ms))
        .select(ds_subscriptions::id)
        .load(conn)?)
}

pub fn insert(conn: &mut DbConn, row: &SubscriptionRow) -> Result<(), StoreError> {
    diesel::insert_into(ds_subscriptions::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn update(conn: &mut DbConn, row: &SubscriptionRow) -> Result<(), StoreError> {
    diesel::update(ds_subscriptions::table.find(&row.id))
        .set(row)
        .execute(conn)?;
    Ok(())
}

/// Removes a subscription and its links; whether it existed.
pub fn remove(conn: &mut DbConn, id: &str) -> Result<bool, StoreError> {
    diesel::delete(
        ds_subscription_streams::table.filter(ds_subscription_streams::subscription_id.eq(id)),
    )
    .execute(conn)?;
    Ok(diesel::delete(ds_subscriptions::table.find(id)).execute(conn)? > 0)
}

/// A subscription's streams, by path.
pub fn links(conn: &mut DbConn, id: &str) -> Result<Vec<LinkRow>, StoreError> {
    Ok(ds_subscription_streams::table
        .filter(ds_subscription_streams::subscription_id.eq(id))
        .order(ds_subscription_streams::path)
        .select(LinkRow::as_select())
        .load(conn)?)
}

/// Inserts or replaces a link.
pub fn save_link(conn: &mut DbConn, link: &LinkRow) -> Result<(), StoreError> {
    let updated =
        diesel::update(ds_subscription_streams::table.find((&link.subscription_id, &link.path)))
            .set(link)
            .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(ds_subscription_streams::table)
            .values(link)
            .execute(conn)?;
    }
    Ok(())
}

pub fn remove_link(conn: &mut DbConn, id: &str, path: &str) -> Result<(), StoreError> {
    diesel::delete(ds_subscription_streams::table.find((id, path))).execute(conn)?;
    Ok(())
}

/// Unlinks a stream from every subscription (it was deleted).
pub fn remove_links_to(conn: &mut DbConn, path: &str) -> Result<(), StoreError> {
    diesel::delete(ds_subscription_streams::table.filter(ds_subscription_streams::path.eq(path)))
        .execute(conn)?;
    Ok(())
}

/// The tail of the stream at an absolute path, unless it does not exist or
/// is soft-deleted.
pub fn tail(conn: &mut DbConn, absolute: &str) -> Result<Option<String>, StoreError> {
    Ok(ds_streams::table
        .find(absolute)
        .filter(ds_streams::soft_deleted.eq(false))
        .select(ds_streams::tail)
        .get_result(conn)
        .optional()?)
}

/// Every stream path (absolute) under a prefix.
pub fn stream_paths(conn: &mut DbConn, prefix: &str) -> Result<Vec<String>, StoreError> {
    Ok(ds_streams::table
        .filter(
            ds_streams::path
                .like(format!("{}%", escape_like(prefix)))
                .escape('\\'),
        )
        .filter(ds_streams::soft_deleted.eq(false))
        .select(ds_streams::path)
        .load(conn)?)
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// The oldest signing key, if one was made.
pub fn signing_key(conn: &mut DbConn) -> Result<Option<KeyRow>, StoreError> {
    Ok(ds_signing_keys::table
        .order((ds_signing_keys::created_ms, ds_signing_keys::kid))
        .select(KeyRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn insert_signing_key(conn: &mut DbConn, key: &KeyRow) -> Result<(), StoreError> {
    diesel::insert_into(ds_signing_keys::table)
        .values(key)
        .execute(conn)?;
    Ok(())
}
