//! Durable Streams subscriptions, as use cases: each runs in one writer
//! transaction (create or confirm, delete, add and remove streams, react to
//! changed streams, callbacks and acks, claims, releases, lapsed leases).
//!
//! A subscription has at most one outstanding **wake** at a time: a
//! generation number (bumped by every wake), a random wake id, a snapshot of
//! its streams' tails and the hash of a token. A callback, ack or release
//! must name the current generation and wake id (else 409 `FENCED`) and
//! carry the current token (else 401 `TOKEN_INVALID`). A wake ends when its
//! consumer says `done`, when it is released, or when its lease lapses; then,
//! if any stream still has pending work, the next wake is made at once.
//!
//! A webhook wake is returned to the caller as a `WebhookWake`, delivered
//! (signed) after the commit by `app::ds_wakes`; a pull-wake wake is an event
//! appended to the wake stream in the same transaction.
//!
//! Callbacks, acks, claims, releases and lapses are in `ds_claims`.
//! Nothing here sends HTTP or renders an answer.

use std::collections::BTreeMap;

use base64::Engine as _;
use rand::Rng as _;
use sha2::{Digest, Sha256};

use crate::app::durable::{self as streams, Append};
use crate::domain::ds_subscription::{
    self as rules, absolute, glob_match, normalize, pending, Config, Kind, BEFORE_FIRST,
};
use crate::domain::durable::ZERO_OFFSET;
use crate::domain::webhook::WebhookPolicy;
use crate::store::ds_subscriptions::{self as rows, KeyRow, LinkRow, SubscriptionRow};
use crate::store::DbConn;
use crate::store::{StoreError, Tx};

/// Why a request was refused; the protocol's error code names each one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Invalid(&'static str),
    NotFound,
    AlreadyExists,
    UrlRejected(&'static str),
    TokenInvalid,
    Fenced,
    AlreadyClaimed { holder: String, generation: i64 },
    NoPendingWork,
    InvalidOffset(&'static str),
}

/// One followed stream as a subscription reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StreamInfo {
    pub path: String,
    /// `explicit` when added by name (also if a pattern matches it), else `glob`.
    pub link_type: &'static str,
    pub acked_offset: String,
    pub tail_offset: String,
    pub has_pending: bool,
}

/// A subscription with its streams.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub row: SubscriptionRow,
    pub streams: Vec<StreamInfo>,
}

/// A webhook notification to send once the transaction commits.
#[derive(Debug, Clone)]
pub struct WebhookWake {
    pub subscription_id: String,
    pub url: String,
    pub wake_id: String,
    pub generation: i64,
    pub token: String,
    pub streams: Vec<StreamInfo>,
}

pub(super) fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn random_wake_id() -> String {
    let bytes: [u8; 12] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("w_{hex}")
}

/// The tail of a relative stream path (the zero offset when it does not
/// exist, as for an explicit stream not created yet).
pub(super) fn tail(conn: &mut DbConn, relative: &str) -> Result<String, StoreError> {
    Ok(rows::tail(conn, &absolute(relative))?.unwrap_or_else(|| ZERO_OFFSET.to_owned()))
}

fn infos(conn: &mut DbConn, links: &[LinkRow]) -> Result<Vec<StreamInfo>, StoreError> {
    links
        .iter()
        .map(|link| {
            let tail_offset = tail(conn, &link.path)?;
            Ok(StreamInfo {
                has_pending: pending(&link.acked_offset, &tail_offset),
                path: link.path.clone(),
                link_type: if link.explicit { "explicit" } else { "glob" },
                acked_offset: link.acked_offset.clone(),
                tail_offset,
            })
        })
        .collect()
}

/// A subscription as stored now (for `GET`, and after every change).
pub fn load(conn: &mut DbConn, id: &str) -> Result<Option<Subscription>, StoreError> {
    let Some(row) = rows::get(conn, id)? else {
        return Ok(None);
    };
    let links = rows::links(conn, id)?;
    let streams = infos(conn, &links)?;
    Ok(Some(Subscription { row, streams }))
}

/// Links a stream (relative path) to a subscription, keeping an existing
/// link's acked offset.
fn link(
    conn: &mut DbConn,
    id: &str,
    path: &str,
    explicit: bool,
    acked_offset: String,
) -> Result<(), StoreError> {
    let existing = rows::links(conn, id)?.into_iter().find(|l| l.path == path);
    let row = match existing {
        Some(mut l) => {
            l.explicit |= explicit;
            l.glob |= !explicit;
            l
        }
        None => LinkRow {
            subscription_id: id.to_owned(),
            path: path.to_owned(),
            explicit,
            glob: !explicit,
            acked_offset,
        },
    };
    rows::save_link(conn, &row)
}

/// `PUT`: creates the subscription (`true`), or confirms one with the same
/// configuration (`false`). Streams that exist are followed from their tail.
pub fn create(
    tx: &mut Tx<'_>,
    id: String,
    config: Config,
    policy: &WebhookPolicy,
    now_ms: i64,
) -> Result<Result<(Subscription, bool), Refusal>, StoreError> {
    let digest = config.digest();
    let conn = tx.conn()?;
    if let Some(existing) = rows::get(conn, &id)? {
        if existing.config_hash != digest {
            return Ok(Err(Refusal::AlreadyExists));
        }
        let found =
            load(conn, &id)?.ok_or(StoreError::Corrupt("a subscription vanished".into()))?;
        return Ok(Ok((found, false)));
    }
    if let Some(url) = &config.webhook_url {
        if let Some(reason) = rules::refuse_webhook_url(url, policy) {
            return Ok(Err(Refusal::UrlRejected(reason)));
        }
    }
    let created_at = chrono::DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    rows::insert(
        conn,
        &SubscriptionRow {
            id: id.clone(),
            kind: config.kind.as_str().to_owned(),
            pattern: config.pattern.clone(),
            webhook_url: config.webhook_url.clone(),
            wake_stream: config.wake_stream.clone(),
            lease_ttl_ms: config.lease_ttl_ms,
            description: config.description.clone(),
            config_hash: digest,
            created_at,
            generation: 0,
            wake_id: None,
            wake_snapshot: None,
            token_hash: None,
            holder: None,
            lease_expires_ms: None,
        },
    )?;
    for stream in &config.streams {
        let at = tail(conn, stream)?;
        link(conn, &id, stream, true, at)?;
    }
    if let Some(pattern) = &config.pattern {
        for path in rows::stream_paths(conn, &absolute(&literal_prefix(pattern)))? {
            let Some(relative) = rules::relative(&path) else {
                continue;
            };
            if glob_match(pattern, relative) && Some(relative) != config.wake_stream.as_deref() {
                let at = tail(conn, relative)?;
                link(conn, &id, relative, false, at)?;
            }
        }
    }
    let created = load(conn, &id)?.ok_or(StoreError::Corrupt("a subscription vanished".into()))?;
    Ok(Ok((created, true)))
}

/// The segments of a pattern before its first wildcard, with a trailing `/`
/// when there are any (the prefix every match starts with).
fn literal_prefix(pattern: &str) -> String {
    let mut prefix = String::new();
    for segment in pattern.split('/').filter(|s| !s.is_empty()) {
        if segment.contains('*') || segment.contains('%') {
            break;
        }
        prefix.push_str(segment);
        prefix.push('/');
    }
    prefix
}

/// Links the streams a pattern matches that are not linked yet: they were
/// created after the subscription (it linked the others when it was made),
/// so everything in them is pending.
pub(super) fn link_new_matches(conn: &mut DbConn, row: &SubscriptionRow) -> Result<(), StoreError> {
    let Some(pattern) = &row.pattern else {
        return Ok(());
    };
    let linked: Vec<String> = rows::links(conn, &row.id)?
        .into_iter()
        .map(|l| l.path)
        .collect();
    for path in rows::stream_paths(conn, &absolute(&literal_prefix(pattern)))? {
        let Some(relative) = rules::relative(&path) else {
            continue;
        };
        if glob_match(pattern, relative)
            && row.wake_stream.as_deref() != Some(relative)
            && !linked.iter().any(|l| l == relative)
        {
            link(conn, &row.id, relative, false, BEFORE_FIRST.to_owned())?;
        }
    }
    Ok(())
}

/// `DELETE`: whether it existed.
pub fn delete(tx: &mut Tx<'_>, id: String) -> Result<bool, StoreError> {
    rows::remove(tx.conn()?, &id)
}

/// `POST …/streams`: follows more streams by name, from their tails.
pub fn add_streams(tx: &mut Tx<'_>, id: String, streams: Vec<String>) -> Result<bool, StoreError> {
    let conn = tx.conn()?;
    if rows::get(conn, &id)?.is_none() {
        return Ok(false);
    }
    for stream in streams {
        let stream = normalize(&stream);
        let at = tail(conn, &stream)?;
        link(conn, &id, &stream, true, at)?;
    }
    Ok(true)
}

/// `DELETE …/streams/{path}`: stops following a stream by name (a pattern
/// that matches it keeps it).
pub fn remove_stream(tx: &mut Tx<'_>, id: String, stream: String) -> Result<bool, StoreError> {
    let conn = tx.conn()?;
    if rows::get(conn, &id)?.is_none() {
        return Ok(false);
    }
    let stream = normalize(&stream);
    if let Some(mut l) = rows::links(conn, &id)?
        .into_iter()
        .find(|l| l.path == stream)
    {
        if l.glob {
            l.explicit = false;
            rows::save_link(conn, &l)?;
        } else {
            rows::remove_link(conn, &id, &stream)?;
        }
    }
    Ok(true)
}

/// Streams (absolute paths) changed (`false`) or were deleted (`true`):
/// links new streams to the patterns they match and wakes every
/// subscription that has pending work and no outstanding wake.
pub fn streams_changed(
    tx: &mut Tx<'_>,
    changes: Vec<(String, bool)>,
    now_ms: i64,
) -> Result<Vec<WebhookWake>, StoreError> {
    let mut wakes = Vec::new();
    let subscriptions = rows::all(tx.conn()?)?;
    for (path, deleted) in changes {
        let Some(relative) = rules::relative(&path) else {
            continue;
        };
        if deleted {
            rows::remove_links_to(tx.conn()?, relative)?;
            continue;
        }
        for sub in &subscriptions {
            let conn = tx.conn()?;
            let linked = rows::links(conn, &sub.id)?
                .iter()
                .any(|l| l.path == relative);
            let matches = sub
                .pattern
                .as_deref()
                .is_some_and(|p| glob_match(p, relative))
                && sub.wake_stream.as_deref() != Some(relative);
            if !linked && matches {
                link(conn, &sub.id, relative, false, BEFORE_FIRST.to_owned())?;
            }
            if linked || matches {
                wakes.extend(maybe_wake(tx, &sub.id, now_ms)?);
            }
        }
    }
    Ok(wakes)
}

/// Wakes every subscription with pending work and no outstanding wake (at
/// start: a change may have committed while no node was watching).
pub fn wake_pending(tx: &mut Tx<'_>, now_ms: i64) -> Result<Vec<WebhookWake>, StoreError> {
    let mut wakes = Vec::new();
    for sub in rows::all(tx.conn()?)? {
        wakes.extend(maybe_wake(tx, &sub.id, now_ms)?);
    }
    Ok(wakes)
}

/// Makes a wake unless one is outstanding or nothing is pending.
fn maybe_wake(tx: &mut Tx<'_>, id: &str, now_ms: i64) -> Result<Option<WebhookWake>, StoreError> {
    let conn = tx.conn()?;
    if rows::get_locked(conn, id)?.is_none() {
        return Ok(None);
    }
    let Some(sub) = load(conn, id)? else {
        return Ok(None);
    };
    if sub.row.wake_id.is_some() || sub.row.holder.is_some() {
        return Ok(None);
    }
    if !sub.streams.iter().any(|s| s.has_pending) {
        return Ok(None);
    }
    new_wake(tx, sub, now_ms)
}

/// A new generation: its wake id, snapshot, token and lease. A webhook wake
/// is returned for delivery; a pull-wake wake is appended to the wake stream.
pub(super) fn new_wake(
    tx: &mut Tx<'_>,
    sub: Subscription,
    now_ms: i64,
) -> Result<Option<WebhookWake>, StoreError> {
    let Subscription { mut row, streams } = sub;
    row.generation += 1;
    let wake_id = random_wake_id();
    row.wake_id = Some(wake_id.clone());
    let snapshot: BTreeMap<&str, &str> = streams
        .iter()
        .map(|s| (s.path.as_str(), s.tail_offset.as_str()))
        .collect();
    row.wake_snapshot = serde_json::to_string(&snapshot).ok();
    let kind = Kind::parse(&row.kind).unwrap_or(Kind::Webhook);
    let mut wake = None;
    match kind {
        Kind::Webhook => {
            let token = random_token();
            row.token_hash = Some(token_hash(&token));
            row.lease_expires_ms = Some(now_ms + row.lease_ttl_ms);
            wake = row.webhook_url.clone().map(|url| WebhookWake {
                subscription_id: row.id.clone(),
                url,
                wake_id: wake_id.clone(),
                generation: row.generation,
                token,
                streams: streams.clone(),
            });
        }
        Kind::PullWake => {
            row.token_hash = None;
            row.lease_expires_ms = None;
        }
    }
    rows::update(tx.conn()?, &row)?;
    if kind == Kind::PullWake {
        if let Some(wake_stream) = &row.wake_stream {
            let trigger = streams
                .iter()
                .find(|s| s.has_pending)
                .map(|s| s.path.as_str());
            let event = serde_json::json!({
                "type": "wake",
                "subscription_id": row.id,
                "stream": trigger,
                "generation": row.generation,
                "wake_id": wake_id,
                "ts": now_ms,
            });
            // A wake stream that is missing, closed or of another type gets
            // no event; the wake can still be claimed.
            let refused = streams::append(
                tx,
                Append {
                    path: absolute(wake_stream),
                    content_type: Some("application/json".into()),
                    body: event.to_string().into_bytes(),
                    seq: None,
                    producer: None,
                    close: false,
                    now_ms,
                    touched_ms: now_ms,
                },
            )?;
            if let Err(refusal) = refused {
                tracing::warn!(subscription = %row.id, ?refusal, "the wake stream refused a wake event");
            }
        }
    }
    Ok(wake)
}

/// Ends the outstanding wake and, when work is pending, makes the next one
/// (returned: whether it was made, and the webhook wake to deliver).
pub(super) fn end_wake(
    tx: &mut Tx<'_>,
    mut row: SubscriptionRow,
    now_ms: i64,
) -> Result<(bool, Option<WebhookWake>), StoreError> {
    row.wake_id = None;
    row.wake_snapshot = None;
    row.token_hash = None;
    row.holder = None;
    row.lease_expires_ms = None;
    rows::update(tx.conn()?, &row)?;
    let Some(sub) = load(tx.conn()?, &row.id)? else {
        return Ok((false, None));
    };
    if !sub.streams.iter().any(|s| s.has_pending) {
        return Ok((false, None));
    }
    Ok((true, new_wake(tx, sub, now_ms)?))
}

/// The webhook signing key: the stored one, or a new one stored now (so
/// every node of a cluster, and every restart, signs with the same key).
pub fn signing_key(tx: &mut Tx<'_>, now_ms: i64) -> Result<KeyRow, StoreError> {
    let conn = tx.conn()?;
    if let Some(key) = rows::signing_key(conn)? {
        return Ok(key);
    }
    let secret: [u8; 32] = rand::rng().random();
    let key = KeyRow {
        kid: crate::app::webhooks::key_id(&secret),
        secret: secret.to_vec(),
        created_ms: now_ms,
    };
    rows::insert_signing_key(conn, &key)?;
    Ok(key)
}
