//! Shared files with edit locks (`/api/files`). Only the session holding a
//! file's lock may save or delete it; a lock is a lease that the sweeper
//! (`startup::spawn_lock_sweeper`) releases when it runs out.

use std::collections::BTreeSet;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::events::{committed_response, versioned_response};
use super::work_items::if_match;
use super::{AppState, Identity, JsonBody};
use crate::domain::files::{self as rules, Acquired, FileChange, NewFile, SharedFile};
use crate::domain::work_items::new_id;
use crate::domain::{format_timestamp, AgentId, DomainError, ResourceId, SessionId};
use crate::error::ApiError;
use crate::store::files as store;
use crate::store::{events, Outcome, StoreError, Tx};

/// The longest lease a client may ask for.
pub const MAX_LOCK_TTL_SECONDS: u64 = 3600;
/// The most files one bulk delete may name.
pub const MAX_BULK: usize = 1000;

fn stable_id(field: &str, value: &str) -> Result<String, ApiError> {
    let id = ResourceId::parse(field, value)?.into_string();
    if id == "delete" {
        return Err(DomainError::validation(field, "\"delete\" is reserved").into());
    }
    Ok(id)
}

/// The server acts for expiries.
fn server_agent() -> AgentId {
    AgentId::parse("agent_id", "switchboard").expect("a valid agent id")
}

/// Appends the events of `changes` (each with its actor) and writes the row.
fn record(
    tx: &mut Tx<'_>,
    file: &SharedFile,
    changes: &[(FileChange, &AgentId, Option<&SessionId>)],
) -> Result<(), StoreError> {
    let now = tx.now().to_owned();
    let mut last = None;
    for (change, agent, session) in changes {
        let event = rules::file_event(file, change, &now, agent, *session)?;
        last = Some(tx.append(&event)?.id);
    }
    if let Some(last) = last {
        store::save(tx.conn(), file, last)?;
    }
    Ok(())
}

fn load_live(tx: &mut Tx<'_>, id: &str) -> Result<SharedFile, StoreError> {
    store::load(tx.conn(), id)?
        .filter(|f| !f.deleted)
        .ok_or_else(|| DomainError::NotFound(format!("file {id}")).into())
}

/// A new file. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "plan.md", "content": "# Plan", "label": "draft"}))]
pub struct CreateFileRequest {
    /// 1–64 characters of `[A-Za-z0-9._:-]`, not `delete`; missing → `file-`
    /// and random hex.
    stable_id: Option<String>,
    /// 1–255 characters without control characters.
    #[schema(value_type = String, min_length = 1, max_length = 255)]
    name: Option<String>,
    /// UTF-8 text.
    #[schema(value_type = String)]
    content: Option<String>,
    /// 1–255 characters without control characters.
    label: Option<String>,
    /// The `stable_id` of a live file this one was made from.
    derived_from: Option<String>,
}

/// `POST /api/files` → 201 with the file's metadata; `file_created`.
#[utoipa::path(
    post,
    path = "/api/files",
    tag = "files",
    params(super::openapi::IdentityHeaders, super::openapi::IdempotencyHeader),
    request_body = CreateFileRequest,
    responses(
        (status = 201, description = "The new file's metadata", body = super::openapi::FileMetadata, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 409, description = "`already_exists`: a live file has this `stable_id`", body = super::openapi::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn create_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    body: JsonBody<CreateFileRequest>,
) -> Result<HttpResponse, ApiError> {
    let claim = identity.idempotency_claim(&req, &body.raw)?;
    let request = body.value;
    let new = NewFile {
        stable_id: match &request.stable_id {
            Some(id) => stable_id("stable_id", id)?,
            None => new_id("file-"),
        },
        name: rules::validate_name(
            "name",
            request
                .name
                .as_deref()
                .ok_or_else(|| DomainError::validation("name", "is required"))?,
        )?,
        label: request
            .label
            .as_deref()
            .map(|l| rules::validate_name("label", l))
            .transpose()?,
        derived_from: request
            .derived_from
            .as_deref()
            .map(|d| stable_id("derived_from", d))
            .transpose()?,
        content: request
            .content
            .ok_or_else(|| DomainError::validation("content", "is required"))?,
    };
    let actor = identity.clone();
    let committed = state
        .writer
        .write(claim, move |tx| {
            let previous = store::load(tx.conn(), &new.stable_id)?;
            if previous.as_ref().is_some_and(|f| !f.deleted) {
                return Err(DomainError::Conflict {
                    code: "already_exists",
                    message: format!("file {} already exists", new.stable_id),
                    details: json!({ "stable_id": new.stable_id }),
                }
                .into());
            }
            if let Some(source) = &new.derived_from {
                if store::load(tx.conn(), source)?
                    .filter(|f| !f.deleted)
                    .is_none()
                {
                    return Err(DomainError::validation(
                        "derived_from",
                        format!("no file {source}"),
                    )
                    .into());
                }
            }
            let now = tx.now().to_owned();
            let file = rules::create_file(new, previous.as_ref(), &actor.agent_id, &now);
            record(
                tx,
                &file,
                &[(
                    FileChange::Created,
                    &actor.agent_id,
                    actor.session_id.as_ref(),
                )],
            )?;
            store::keep_version(tx.conn(), &file)?;
            Ok(Outcome::new(201, file.metadata(&now)))
        })
        .await?;
    Ok(versioned_response(committed))
}

/// `GET /api/files` → `{"files": [metadata with lock state], "cursor": N}`.
#[utoipa::path(
    get,
    path = "/api/files",
    tag = "files",
    params(super::openapi::IdentityHeaders),
    responses(
        (status = 200, description = "Every live file's metadata and lock state", body = super::openapi::FileList, headers(("X-Event-Cursor" = i64, description = "The newest event the list includes"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn list_files(
    state: web::Data<AppState>,
    _identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let (cursor, list) = state
        .store
        .read(|conn| Ok((events::head_id(conn)?, store::list(conn)?)))
        .await?;
    let now = format_timestamp(Utc::now());
    let list: Vec<Value> = list.iter().map(|f| f.metadata(&now)).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("X-Event-Cursor", cursor.to_string()))
        .json(json!({ "files": list, "cursor": cursor })))
}

/// `GET /api/files/{id}` → metadata and content.
#[utoipa::path(
    get,
    path = "/api/files/{id}",
    tag = "files",
    params(("id" = String, Path, description = "The file's `stable_id`"), super::openapi::IdentityHeaders),
    responses(
        (
            status = 200,
            description = "The file's metadata, lock state and content",
            body = super::openapi::FileWithContent,
            headers(
                ("ETag" = String, description = "`\"<version>\"`"),
                ("X-Event-Cursor" = i64, description = "The newest event the answer includes"),
            ),
        ),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn get_file(
    state: web::Data<AppState>,
    _identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = stable_id("stable_id", &id)?;
    let lookup = id.clone();
    let (cursor, file) = state
        .store
        .read(move |conn| Ok((events::head_id(conn)?, store::load(conn, &lookup)?)))
        .await?;
    let file = file
        .filter(|f| !f.deleted)
        .ok_or_else(|| DomainError::NotFound(format!("file {id}")))?;
    let now = format_timestamp(Utc::now());
    Ok(HttpResponse::Ok()
        .insert_header(("X-Event-Cursor", cursor.to_string()))
        .insert_header((header::ETAG, format!("\"{}\"", file.version)))
        .json(file.with_content(&now)))
}

/// `GET /api/files/{id}/versions` → `{"stable_id", "versions": [{version, saved_at, saved_by, size}]}`.
#[utoipa::path(
    get,
    path = "/api/files/{id}/versions",
    tag = "files",
    params(("id" = String, Path, description = "The file's `stable_id`"), super::openapi::IdentityHeaders),
    responses(
        (status = 200, description = "Every kept version, without content", body = super::openapi::FileVersions),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn list_versions(
    state: web::Data<AppState>,
    _identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = stable_id("stable_id", &id)?;
    let lookup = id.clone();
    let (file, versions) = state
        .store
        .read(move |conn| Ok((store::load(conn, &lookup)?, store::versions(conn, &lookup)?)))
        .await?;
    if file.is_none_or(|f| f.deleted) {
        return Err(DomainError::NotFound(format!("file {id}")).into());
    }
    Ok(HttpResponse::Ok().json(json!({ "stable_id": id, "versions": versions })))
}

/// `GET /api/files/{id}/versions/{n}` → that version with its content.
#[utoipa::path(
    get,
    path = "/api/files/{id}/versions/{n}",
    tag = "files",
    params(
        ("id" = String, Path, description = "The file's `stable_id`"),
        ("n" = i64, Path, description = "The version number"),
        super::openapi::IdentityHeaders,
    ),
    responses(
        (status = 200, description = "The version with its content", body = super::openapi::FileVersion),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn get_version(
    state: web::Data<AppState>,
    _identity: Identity,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let (id, n) = path.into_inner();
    super::extract::positive("n", n)?;
    let id = stable_id("stable_id", &id)?;
    let lookup = id.clone();
    let (file, found) = state
        .store
        .read(move |conn| {
            Ok((
                store::load(conn, &lookup)?,
                store::version(conn, &lookup, n)?,
            ))
        })
        .await?;
    let (info, content) = match (file, found) {
        (Some(file), Some(found)) if !file.deleted => found,
        _ => return Err(DomainError::NotFound(format!("version {n} of file {id}")).into()),
    };
    Ok(HttpResponse::Ok().json(json!({
        "stable_id": id,
        "version": info.version,
        "saved_at": info.saved_at,
        "saved_by": info.saved_by,
        "size": info.size,
        "content": content,
    })))
}

/// New content. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SaveFileRequest)]
pub struct SaveRequest {
    /// UTF-8 text; it becomes the next version.
    #[schema(value_type = String)]
    content: Option<String>,
}

/// `PUT /api/files/{id}` `{content}` → `file_saved`. The caller's session must
/// hold the lock; the new content becomes the next version.
#[utoipa::path(
    put,
    path = "/api/files/{id}",
    tag = "files",
    params(("id" = String, Path, description = "The file's `stable_id`"), super::openapi::IdentityHeaders, super::openapi::IfMatchHeader, super::openapi::IdempotencyHeader),
    request_body = SaveRequest,
    responses(
        (status = 200, description = "The file's metadata", body = super::openapi::FileMetadata, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "`lock_required`: the caller's session (`X-Session-ID`) does not hold the file's lock", body = super::openapi::ErrorBody),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn save_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
    body: JsonBody<SaveRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = stable_id("stable_id", &id)?;
    let claim = identity.idempotency_claim(&req, &body.raw)?;
    let precondition = if_match(&req)?;
    let content = body
        .value
        .content
        .ok_or_else(|| DomainError::validation("content", "is required"))?;
    let actor = identity.clone();
    let committed = state
        .writer
        .write(claim, move |tx| {
            let mut file = load_live(tx, &id)?;
            if let Some(precondition) = precondition {
                precondition.check_version(file.version, || file.metadata(tx.now()))?;
            }
            let now = tx.now().to_owned();
            rules::require_lock(&file, actor.session_id.as_ref(), &now)?;
            rules::save_file(&mut file, content, &actor.agent_id, &now);
            record(
                tx,
                &file,
                &[(
                    FileChange::Saved,
                    &actor.agent_id,
                    actor.session_id.as_ref(),
                )],
            )?;
            store::keep_version(tx.conn(), &file)?;
            Ok(Outcome::new(200, file.metadata(&now)))
        })
        .await?;
    Ok(versioned_response(committed))
}

/// Deletes `ids` — all or nothing — if the caller holds every lock.
async fn delete_files(
    req: &HttpRequest,
    state: &AppState,
    identity: &Identity,
    raw: &[u8],
    ids: Vec<String>,
) -> Result<HttpResponse, ApiError> {
    let claim = identity.idempotency_claim(req, raw)?;
    let precondition = if_match(req)?;
    let actor = identity.clone();
    let committed = state
        .writer
        .write(claim, move |tx| {
            let now = tx.now().to_owned();
            let mut doomed = Vec::with_capacity(ids.len());
            let mut missing = Vec::new();
            for id in &ids {
                match store::load(tx.conn(), id)?.filter(|f| !f.deleted) {
                    Some(file) => doomed.push(file),
                    None => missing.push(id.clone()),
                }
            }
            if !missing.is_empty() {
                return Err(DomainError::NotFound(format!("files {}", missing.join(", "))).into());
            }
            if let (Some(precondition), [file]) = (precondition, doomed.as_slice()) {
                precondition.check_version(file.version, || file.metadata(&now))?;
            }
            let unlocked: Vec<&str> = doomed
                .iter()
                .filter(|f| rules::require_lock(f, actor.session_id.as_ref(), &now).is_err())
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
                rules::delete_file(file, &actor.agent_id, &now);
                record(
                    tx,
                    file,
                    &[(
                        FileChange::Deleted,
                        &actor.agent_id,
                        actor.session_id.as_ref(),
                    )],
                )?;
            }
            Ok(Outcome::new(200, json!({ "stable_ids": ids })))
        })
        .await?;
    Ok(committed_response(committed))
}

/// `DELETE /api/files/{id}` → `files_deleted`; the caller must hold the lock.
#[utoipa::path(
    delete,
    path = "/api/files/{id}",
    tag = "files",
    params(("id" = String, Path, description = "The file's `stable_id`"), super::openapi::IdentityHeaders, super::openapi::IfMatchHeader, super::openapi::IdempotencyHeader),
    responses(
        (status = 200, description = "The file is deleted", body = super::openapi::FilesDeleted),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "`lock_required`: the caller's session does not hold the file's lock", body = super::openapi::ErrorBody),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn delete_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = stable_id("stable_id", &id)?;
    delete_files(&req, &state, &identity, b"", vec![id]).await
}

/// The files to delete, all or nothing. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkDeleteRequest {
    /// 1 to 1000 `stable_id`s; duplicates count once.
    #[schema(value_type = Vec<String>, min_items = 1, max_items = 1000)]
    stable_ids: Option<Vec<String>>,
}

/// `POST /api/files/delete` `{"stable_ids": [...]}`: all or nothing.
///
/// The caller's session must hold the lock of every file. `If-Match` applies
/// when exactly one file is named.
#[utoipa::path(
    post,
    path = "/api/files/delete",
    tag = "files",
    operation_id = "delete_files",
    params(super::openapi::IdentityHeaders, super::openapi::IfMatchHeader, super::openapi::IdempotencyHeader),
    request_body = BulkDeleteRequest,
    responses(
        (status = 200, description = "Every file named is deleted", body = super::openapi::FilesDeleted),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "`lock_required`: the caller's session does not hold every lock; `details.stable_ids` names the others", body = super::openapi::ErrorBody),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn bulk_delete(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    body: JsonBody<BulkDeleteRequest>,
) -> Result<HttpResponse, ApiError> {
    let list = body
        .value
        .stable_ids
        .as_ref()
        .ok_or_else(|| DomainError::validation("stable_ids", "is required"))?;
    if list.is_empty() || list.len() > MAX_BULK {
        return Err(DomainError::validation(
            "stable_ids",
            format!("must name 1 to {MAX_BULK} files"),
        )
        .into());
    }
    let mut seen = BTreeSet::new();
    let mut ids = Vec::with_capacity(list.len());
    for id in list {
        let id = stable_id("stable_ids", id)?;
        if seen.insert(id.clone()) {
            ids.push(id);
        }
    }
    delete_files(&req, &state, &identity, &body.raw, ids).await
}

/// The lease asked for. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = LockFileRequest)]
pub struct LockRequest {
    /// 1–3600; default 60 (`--lock-ttl`).
    #[schema(minimum = 1, maximum = 3600)]
    ttl_seconds: Option<u64>,
}

fn lock_session(identity: &Identity) -> Result<SessionId, ApiError> {
    identity
        .session_id
        .clone()
        .ok_or_else(|| ApiError::bad_request("a lock is held by a session: send X-Session-ID"))
}

/// `POST /api/files/{id}/lock` `{ttl_seconds?}` → 200 with the lock;
/// `lock_acquired` unless the caller already held it (then it is renewed
/// silently); 409 `lock_held` when another session holds it.
///
/// The lock belongs to the caller's session: `X-Session-ID` is required.
/// When many sessions race for a free lock, exactly one wins.
#[utoipa::path(
    post,
    path = "/api/files/{id}/lock",
    tag = "files",
    operation_id = "lock_file",
    params(("id" = String, Path, description = "The file's `stable_id`"), super::openapi::IdentityHeaders, super::openapi::IdempotencyHeader),
    request_body(content = Option<LockRequest>, description = "Optional; an empty body takes the default lease"),
    responses(
        (status = 200, description = "The caller's session holds the lock", body = super::openapi::FileLock),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "`lock_held`: another session holds the lock; `details.locked_by`, `details.lock_session_id`, `details.lock_expires_at`", body = super::openapi::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn acquire_lock(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
    body: JsonBody<Option<LockRequest>>,
) -> Result<HttpResponse, ApiError> {
    let id = stable_id("stable_id", &id)?;
    let session = lock_session(&identity)?;
    let (ttl, raw) = (
        body.value.as_ref().and_then(|b| b.ttl_seconds),
        body.raw.clone(),
    );
    let ttl = ttl.unwrap_or(state.lock_ttl.as_secs().max(1));
    if !(1..=MAX_LOCK_TTL_SECONDS).contains(&ttl) {
        return Err(DomainError::validation(
            "ttl_seconds",
            format!("must be 1 to {MAX_LOCK_TTL_SECONDS}"),
        )
        .into());
    }
    let claim = identity.idempotency_claim(&req, &raw)?;
    let agent = identity.agent_id.clone();
    let committed = state
        .writer
        .write(claim, move |tx| {
            let mut file = load_live(tx, &id)?;
            let now = tx.now().to_owned();
            let expires_at =
                format_timestamp(tx.now_time() + chrono::Duration::seconds(ttl as i64));
            match rules::acquire_lock(&mut file, &session, &agent, expires_at, &now)? {
                Acquired::Renewed => store::save_lock(tx.conn(), &file)?,
                Acquired::New { expired } => {
                    let server = server_agent();
                    let mut changes = Vec::new();
                    if expired.is_some() {
                        changes.push((
                            FileChange::LockReleased { reason: "expired" },
                            &server,
                            None,
                        ));
                    }
                    changes.push((FileChange::LockAcquired, &agent, Some(&session)));
                    record(tx, &file, &changes)?;
                }
            }
            let lock = file
                .lock
                .as_ref()
                .ok_or_else(|| StoreError::Corrupt("lock vanished".into()))?;
            Ok(Outcome::new(
                200,
                json!({
                    "stable_id": file.stable_id,
                    "locked_by": lock.agent_id,
                    "session_id": lock.session_id,
                    "expires_at": lock.expires_at,
                }),
            ))
        })
        .await?;
    Ok(committed_response(committed))
}

/// `DELETE /api/files/{id}/lock` → `lock_released`; only the holder.
#[utoipa::path(
    delete,
    path = "/api/files/{id}/lock",
    tag = "files",
    operation_id = "unlock_file",
    params(("id" = String, Path, description = "The file's `stable_id`"), super::openapi::IdentityHeaders, super::openapi::IdempotencyHeader),
    responses(
        (status = 200, description = "The lock is released", body = super::openapi::LockReleased),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "`lock_held`: another session holds the lock, or `conflict`: the file is not locked", body = super::openapi::ErrorBody),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn release_lock(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = stable_id("stable_id", &id)?;
    let actor = identity.clone();
    let committed = state
        .writer
        .write(identity.idempotency_claim(&req, b"")?, move |tx| {
            let mut file = load_live(tx, &id)?;
            let now = tx.now().to_owned();
            rules::release_lock(&mut file, actor.session_id.as_ref(), &now)?;
            record(
                tx,
                &file,
                &[(
                    FileChange::LockReleased { reason: "released" },
                    &actor.agent_id,
                    actor.session_id.as_ref(),
                )],
            )?;
            Ok(Outcome::new(
                200,
                json!({ "stable_id": file.stable_id, "released": true }),
            ))
        })
        .await?;
    Ok(committed_response(committed))
}

/// Releases every lease that ran out, announcing `lock_released` with
/// `reason: "expired"` to every session (the holder's included). Returns how
/// many it released.
pub async fn sweep_expired_locks(writer: &crate::store::Writer) -> Result<usize, StoreError> {
    let committed = writer
        .write(None, |tx| {
            let now = tx.now().to_owned();
            let expired = store::expired_locks(tx.conn(), &now, 500)?;
            let server = server_agent();
            for mut file in expired.iter().cloned() {
                file.lock = None;
                if file.deleted {
                    store::save_lock(tx.conn(), &file)?;
                    continue;
                }
                record(
                    tx,
                    &file,
                    &[(
                        FileChange::LockReleased { reason: "expired" },
                        &server,
                        None,
                    )],
                )?;
            }
            Ok(Outcome::new(200, json!(expired.len())))
        })
        .await?;
    Ok(committed.body.parse().unwrap_or(0))
}
