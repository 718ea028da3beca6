//! `Idempotency-Key`: the first successful response to a POST is stored with
//! the request's fingerprint in the same transaction as the change itself, so
//! a retry either finds it or runs the change: never both, never neither.

use super::db::DbConn;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::schema::idempotency_keys;
use super::StoreError;
use crate::domain::{AgentId, DomainError, IdempotencyKey, Timestamp};

/// The answer to a request with an `Idempotency-Key`, stored in the same
/// transaction as the change so that a retry gets it again, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    /// The body, serialised once.
    pub body: String,
    /// The `ETag` the first answer carried, if any.
    pub etag: Option<String>,
}

/// How long a key is remembered.
pub const KEY_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

/// A request's claim on a key: who sent it and what exactly it asked for.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    pub agent_id: AgentId,
    pub key: IdempotencyKey,
    pub fingerprint: String,
}

impl IdempotencyClaim {
    /// The fingerprint covers the method, the path and the exact body bytes.
    pub fn new(
        agent_id: AgentId,
        key: IdempotencyKey,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(method.as_bytes());
        hasher.update(b" ");
        hasher.update(path.as_bytes());
        hasher.update(b"\n");
        hasher.update(body);
        let fingerprint = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        IdempotencyClaim {
            agent_id,
            key,
            fingerprint,
        }
    }
}

/// The stored response for this claim if the key is live; an error if the key
/// was used for a different request.
pub fn lookup(
    conn: &mut DbConn,
    claim: &IdempotencyClaim,
    not_before: Timestamp,
) -> Result<Option<StoredAnswer>, StoreError> {
    let found: Option<(String, i32, String, Option<String>)> = idempotency_keys::table
        .filter(idempotency_keys::agent_id.eq(claim.agent_id.as_str()))
        .filter(idempotency_keys::idem_key.eq(claim.key.as_str()))
        .filter(idempotency_keys::created_at.ge(not_before.to_string()))
        .select((
            idempotency_keys::fingerprint,
            idempotency_keys::status,
            idempotency_keys::response_body,
            idempotency_keys::etag,
        ))
        .get_result(conn)
        .optional()?;
    match found {
        None => Ok(None),
        Some((fingerprint, ..)) if fingerprint != claim.fingerprint => {
            Err(DomainError::IdempotencyKeyReused.into())
        }
        Some((_, status, body, etag)) => Ok(Some(StoredAnswer {
            status: u16::try_from(status).unwrap_or(200),
            body,
            etag,
        })),
    }
}

/// Remembers the first response (replacing an expired record of the key).
pub fn remember(
    conn: &mut DbConn,
    claim: &IdempotencyClaim,
    answer: &StoredAnswer,
    now: Timestamp,
) -> Result<(), StoreError> {
    // Delete-then-insert replaces an expired record on both backends.
    diesel::delete(
        idempotency_keys::table
            .filter(idempotency_keys::agent_id.eq(claim.agent_id.as_str()))
            .filter(idempotency_keys::idem_key.eq(claim.key.as_str())),
    )
    .execute(conn)?;
    diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::agent_id.eq(claim.agent_id.as_str()),
            idempotency_keys::idem_key.eq(claim.key.as_str()),
            idempotency_keys::fingerprint.eq(&claim.fingerprint),
            idempotency_keys::status.eq(i32::from(answer.status)),
            idempotency_keys::response_body.eq(&answer.body),
            idempotency_keys::etag.eq(answer.etag.as_deref()),
            idempotency_keys::created_at.eq(now.to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Forgets up to `limit` keys older than `cutoff`.
pub fn forget_expired(
    conn: &mut DbConn,
    cutoff: Timestamp,
    limit: i64,
) -> Result<usize, StoreError> {
    let doomed: Vec<(String, String)> = idempotency_keys::table
        .filter(idempotency_keys::created_at.lt(cutoff.to_string()))
        .limit(limit)
        .select((idempotency_keys::agent_id, idempotency_keys::idem_key))
        .load(conn)?;
    let mut deleted = 0;
    for (agent, key) in &doomed {
        deleted += diesel::delete(
            idempotency_keys::table
                .filter(idempotency_keys::agent_id.eq(agent))
                .filter(idempotency_keys::idem_key.eq(key)),
        )
        .execute(conn)?;
    }
    Ok(deleted)
}
