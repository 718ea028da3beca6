//! Files with edit locks: create, lock (or renew), release, save, delete
//! (one or many, all or nothing), and the sweep that releases leases that
//! ran out. Only the session holding a file's lock may save or delete it.

use std::time::Duration;

use serde_json::json;

use super::{record, Actor};
use crate::domain::files::{self as rules, Acquired, FileChange, LockRequest, NewFile, SharedFile};
use crate::domain::precondition::IfMatch;
use crate::domain::{DomainError, ResourceId};
use crate::store::files as store;
use crate::store::{StoreError, Tx, Writer};
use crate::views::FileMetadataView;

/// The most files one bulk delete may name.
pub const MAX_BULK: usize = 1000;
/// The most leases one sweep releases (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 500;

/// A new file; 409 `already_exists` when a live file has the id.
pub fn create(tx: &mut Tx<'_>, actor: &Actor, new: NewFile) -> Result<SharedFile, StoreError> {
    let previous = store::load(tx.conn()?, &new.stable_id)?;
    if previous.as_ref().is_some_and(|f| !f.deleted) {
        return Err(DomainError::Conflict {
            code: "already_exists",
            message: format!("file {} already exists", new.stable_id),
            details: json!({ "stable_id": new.stable_id }),
        }
        .into());
    }
    if let Some(source) = &new.derived_from {
        if load_live(tx, source).is_err() {
            return Err(
                DomainError::validation("derived_from", format!("no file {source}")).into(),
            );
        }
    }
    let file = rules::create_file(new, previous.as_ref(), &actor.agent, tx.now());
    record(tx, &file, actor, &[FileChange::Created])?;
    store::keep_version(tx.conn()?, &file)?;
    Ok(file)
}

/// New content from the lock holder; it becomes the next version.
pub fn save(
    tx: &mut Tx<'_>,
    actor: &Actor,
    stable_id: &ResourceId,
    if_match: Option<IfMatch>,
    content: String,
) -> Result<SharedFile, StoreError> {
    let now = tx.now();
    let mut file = load_live(tx, stable_id)?;
    if let Some(precondition) = if_match {
        precondition.check_version(file.version, || FileMetadataView::at(&file, now))?;
    }
    rules::require_lock(&file, actor.session.as_ref(), now)?;
    rules::save_file(&mut file, content, &actor.agent, now);
    record(tx, &file, actor, &[FileChange::Saved])?;
    store::keep_version(tx.conn()?, &file)?;
    Ok(file)
}

/// Deletes `ids` — all or nothing — if the caller holds every lock.
/// `If-Match` applies when exactly one file is named.
pub fn delete(
    tx: &mut Tx<'_>,
    actor: &Actor,
    ids: Vec<ResourceId>,
    if_match: Option<IfMatch>,
) -> Result<Vec<ResourceId>, StoreError> {
    let now = tx.now();
    let mut doomed = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for id in &ids {
        match load_live(tx, id) {
            Ok(file) => doomed.push(file),
            Err(StoreError::Rejected(DomainError::NotFound(_))) => missing.push(id.clone()),
            Err(other) => return Err(other),
        }
    }
    if !missing.is_empty() {
        let missing: Vec<&str> = missing.iter().map(ResourceId::as_str).collect();
        return Err(DomainError::NotFound(format!("files {}", missing.join(", "))).into());
    }
    if let (Some(precondition), [file]) = (if_match, doomed.as_slice()) {
        precondition.check_version(file.version, || FileMetadataView::at(file, now))?;
    }
    let unlocked: Vec<&str> = doomed
        .iter()
        .filter(|f| rules::require_lock(f, actor.session.as_ref(), now).is_err())
        .map(|f| f.stable_id.as_str())
        .collect();
    if !unlocked.is_empty() {
        return Err(DomainError::Conflict {
            code: "lock_required",
            message: format!(
                "hold the lock of every file first; not held: {}",
                unlocked.join(", ")
            ),
            details: json!({ "stable_ids": unlocked }),
        }
        .into());
    }
    for file in &mut doomed {
        rules::delete_file(file, &actor.agent, now);
        record(tx, &*file, actor, &[FileChange::Deleted])?;
    }
    Ok(ids)
}

/// Takes the lock for the request's session for its lease (a renewal without
/// one keeps the lease's length, a new lease gets `default_ttl`), or renews it when
/// the session holds it already (silently: nobody else needs to know); 409
/// `lock_held` when another session holds it. Of any number of racing
/// sessions exactly one wins (this runs in the one writer). A lease that
/// ran out but was not swept yet is announced released first.
pub fn lock(
    tx: &mut Tx<'_>,
    actor: &Actor,
    request: &LockRequest,
    stable_id: &ResourceId,
    default_ttl: Duration,
) -> Result<SharedFile, StoreError> {
    let LockRequest { session, lease } = request;
    let now = tx.now();
    let mut file = load_live(tx, stable_id)?;
    let seconds = |ttl: Duration| ttl.as_secs().max(1);
    match rules::acquire_lock(
        &mut file,
        session,
        &actor.agent,
        lease.map(seconds),
        seconds(default_ttl),
        now,
    )? {
        Acquired::Renewed => store::save_lock(tx.conn()?, &file)?,
        Acquired::New { expired } => {
            if expired.is_some() {
                let released = FileChange::LockReleased { reason: "expired" };
                record(tx, &file, &Actor::server(), &[released])?;
            }
            let holder = Actor::new(actor.agent.clone(), Some(session.clone()));
            record(tx, &file, &holder, &[FileChange::LockAcquired])?;
        }
    }
    Ok(file)
}

/// Releases the caller's lock; 409 when it holds none.
pub fn release(
    tx: &mut Tx<'_>,
    actor: &Actor,
    stable_id: &ResourceId,
) -> Result<SharedFile, StoreError> {
    let now = tx.now();
    let mut file = load_live(tx, stable_id)?;
    rules::release_lock(&mut file, actor.session.as_ref(), now)?;
    let released = FileChange::LockReleased { reason: "released" };
    record(tx, &file, actor, &[released])?;
    Ok(file)
}

/// Releases every lease that ran out (up to a batch), announcing
/// `lock_released` with `reason: "expired"` to every session, the holder's
/// included. Returns how many it released.
pub fn sweep_expired(tx: &mut Tx<'_>) -> Result<usize, StoreError> {
    let now = tx.now();
    let expired = store::expired_locks(tx.conn()?, now, SWEEP_BATCH)?;
    let server = Actor::server();
    for mut file in expired.iter().cloned() {
        file.lock = None;
        if file.deleted {
            store::save_lock(tx.conn()?, &file)?;
            continue;
        }
        record(
            tx,
            &file,
            &server,
            &[FileChange::LockReleased { reason: "expired" }],
        )?;
    }
    Ok(expired.len())
}

/// The background task's tick: a sweep through the writer only when a
/// lease can have run out (a read says when the first one does), so an idle
/// server writes nothing and, on PostgreSQL, takes no cluster-wide lock.
pub async fn sweep_expired_locks(
    reads: &crate::store::Store,
    writer: &Writer,
) -> Result<usize, StoreError> {
    let Some(first) = reads.read(store::earliest_lock_expiry).await? else {
        return Ok(0);
    };
    if first > crate::domain::Timestamp::now() {
        return Ok(0);
    }
    Ok(writer.write(sweep_expired).await?.value)
}

fn load_live(tx: &mut Tx<'_>, id: &ResourceId) -> Result<SharedFile, StoreError> {
    store::load(tx.conn()?, id)?
        .filter(|f| !f.deleted)
        .ok_or_else(|| DomainError::NotFound(format!("file {id}")).into())
}
