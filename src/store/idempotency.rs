//! `Idempotency-Key`: the first successful response to a POST is stored with
//! the request's fingerprint in the same transaction as the change itself, so
//! a retry either finds it or runs the change: never both, never neither.

use super::db::DbConn;
use diesel::prelude::*;
use sha2::{Digest, Sha256};

use super::schema::idempotency_keys;
use super::StoreError;
use crate::domain::{AgentId, DomainError, IdempotencyKey};

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

/// A stored first response.
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// The stored response for this claim if the key is live; an error if the key
/// was used for a different request.
pub fn lookup(
    conn: &mut DbConn,
    claim: &IdempotencyClaim,
    not_before: &str,
) -> Result<Option<StoredResponse>, StoreError> {
    let found: Option<(String, i32, String)> = idempotency_keys::table
        .filter(idempotency_keys::agent_id.eq(claim.agent_id.as_str()))
        .filter(idempotency_keys::idem_key.eq(claim.key.as_str()))
        .filter(idempotency_keys::created_at.ge(not_before))
        .select((
            idempotency_keys::fingerprint,
            idempotency_keys::status,
            idempotency_keys::response_body,
        ))
        .first(conn)
        .optional()?;
    match found {
        None => Ok(None),
        Some((fingerprint, _, _)) if fingerprint != claim.fingerprint => {
            Err(DomainError::IdempotencyKeyReused.into())
        }
        Some((_, status, body)) => Ok(Some(StoredResponse {
            status: u16::try_from(status).unwrap_or(200),
            body,
        })),
    }
}

/// Remembers the first response (replacing an expired record of the key).
pub fn remember(
    conn: &mut DbConn,
    claim: &IdempotencyClaim,
    status: u16,
    body: &str,
    now: &str,
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
            idempotency_keys::status.eq(i32::from(status)),
            idempotency_keys::response_body.eq(body),
            idempotency_keys::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Forgets up to `limit` keys older than `cutoff`.
pub fn forget_expired(conn: &mut DbConn, cutoff: &str, limit: i64) -> Result<usize, StoreError> {
    let doomed: Vec<(String, String)> = idempotency_keys::table
        .filter(idempotency_keys::created_at.lt(cutoff))
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
