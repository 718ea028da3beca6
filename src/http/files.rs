//! Shared files with edit locks (`/api/files`): the REST surface of
//! `app::files` (the rules: only the session holding a file's lock may save
//! or delete it; a lock is a lease the sweeper releases when it runs out).

use std::collections::BTreeSet;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::answer::{snapshot, Answer, WriteContext};
use super::{AppState, Identity, JsonBody};
use crate::app::files::{self as use_case, MAX_BULK};
use crate::domain::files::{self as rules, LockRequest, NewFile, VersionInfo};
use crate::domain::ids::new_id;
use crate::domain::{AgentId, DomainError, EventId, ResourceId, Timestamp};
use crate::http::error::ApiError;
use crate::store::files as store;
use crate::store::{events, StoreError};
use crate::views::{FileMetadataView, FileWithContentView, LockView};

fn stable_id(field: &str, value: &str) -> Result<ResourceId, ApiError> {
    let id = ResourceId::parse(field, value)?;
    if id.as_str() == "delete" {
        return Err(DomainError::validation(field, "\"delete\" is reserved").into());
    }
    Ok(id)
}

/// A file's metadata as of the commit, with its version as the ETag.
fn metadata(file: &rules::SharedFile, now: Timestamp) -> Answer<FileMetadataView> {
    Answer::ok(FileMetadataView::at(file, now)).versioned(file.version)
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
    params(super::described::IdentityHeaders, super::described::IdempotencyHeader),
    request_body = CreateFileRequest,
    responses(
        (status = 201, description = "The new file's metadata", body = FileMetadataView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 409, description = "`already_exists`: a live file has this `stable_id`", body = crate::http::error::ErrorBody),
        super::described::Errors,
        super::described::BodyErrors,
    ),
)]
pub async fn create_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    body: JsonBody<CreateFileRequest>,
) -> Result<HttpResponse, ApiError> {
    let context = WriteContext::new(&req, &identity, &body.raw)?;
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
    context
        .run(&state, move |tx, actor| {
            let file = use_case::create(tx, actor, new)?;
            let view = FileMetadataView::at(&file, tx.now());
            Ok(Answer::created(view).versioned(file.version))
        })
        .await
}

/// `GET /api/files` → `{"files": [metadata with lock state], "cursor": N}`.
#[utoipa::path(
    get,
    path = "/api/files",
    tag = "files",
    params(super::described::IdentityHeaders),
    responses(
        (status = 200, description = "Every live file's metadata and lock state", body = FileList, headers(("X-Event-Cursor" = i64, description = "The newest event the list includes"))),
        (status = 400, response = super::described::BadRequest),
        (status = 503, response = super::described::Unavailable),
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
    let now = Timestamp::now();
    let files = list.iter().map(|f| FileMetadataView::at(f, now)).collect();
    Ok(snapshot(cursor, None, &FileList { files, cursor }))
}

/// `GET /api/files`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FileList {
    files: Vec<FileMetadataView>,
    /// The newest event this list includes (also `X-Event-Cursor`).
    #[schema(value_type = i64)]
    cursor: EventId,
}

/// `GET /api/files/{id}` → metadata and content.
#[utoipa::path(
    get,
    path = "/api/files/{id}",
    tag = "files",
    params(("id" = String, Path, description = "The file's `stable_id`"), super::described::IdentityHeaders),
    responses(
        (
            status = 200,
            description = "The file's metadata, lock state and content",
            body = FileWithContentView,
            headers(
                ("ETag" = String, description = "`\"<version>\"`"),
                ("X-Event-Cursor" = i64, description = "The newest event the answer includes"),
            ),
        ),
        (status = 400, response = super::described::BadRequest),
        (status = 404, response = super::described::NotFound),
        (status = 422, response = super::described::ValidationFailed),
        (status = 503, response = super::described::Unavailable),
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
    let view = FileWithContentView::at(&file, Timestamp::now());
    Ok(snapshot(cursor, Some(file.version), &view))
}

/// `GET /api/files/{id}/versions` → `{"stable_id", "versions": [{version, saved_at, saved_by, size}]}`.
#[utoipa::path(
    get,
    path = "/api/files/{id}/versions",
    tag = "files",
    params(("id" = String, Path, description = "The file's `stable_id`"), super::described::IdentityHeaders),
    responses(
        (status = 200, description = "Every kept version, without content", body = FileVersions),
        (status = 404, response = super::described::NotFound),
        super::described::Errors,
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
    Ok(HttpResponse::Ok().json(FileVersions {
        stable_id: id,
        versions,
    }))
}

/// `GET /api/files/{id}/versions`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FileVersions {
    #[schema(value_type = String)]
    stable_id: ResourceId,
    versions: Vec<VersionInfo>,
}

/// `GET /api/files/{id}/versions/{n}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FileVersion {
    #[schema(value_type = String)]
    stable_id: ResourceId,
    version: i64,
    #[schema(value_type = String, format = DateTime)]
    saved_at: Timestamp,
    #[schema(value_type = String)]
    saved_by: AgentId,
    size: usize,
    content: String,
}

/// `GET /api/files/{id}/versions/{n}` → that version with its content.
#[utoipa::path(
    get,
    path = "/api/files/{id}/versions/{n}",
    tag = "files",
    params(
        ("id" = String, Path, description = "The file's `stable_id`"),
        ("n" = i64, Path, description = "The version number"),
        super::described::IdentityHeaders,
    ),
    responses(
        (status = 200, description = "The version with its content", body = FileVersion),
        (status = 404, response = super::described::NotFound),
        super::described::Errors,
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
    Ok(HttpResponse::Ok().json(FileVersion {
        stable_id: id,
        version: info.version,
        saved_at: info.saved_at,
        saved_by: info.saved_by,
        size: info.size,
        content,
    }))
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
    params(("id" = String, Path, description = "The file's `stable_id`"), super::described::IdentityHeaders, super::described::IfMatchHeader, super::described::IdempotencyHeader),
    request_body = SaveRequest,
    responses(
        (status = 200, description = "The file's metadata", body = FileMetadataView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 404, response = super::described::NotFound),
        (status = 409, description = "`lock_required`: the caller's session (`X-Session-ID`) does not hold the file's lock", body = crate::http::error::ErrorBody),
        (status = 412, response = super::described::PreconditionFailed),
        super::described::Errors,
        super::described::BodyErrors,
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
    let context = WriteContext::new(&req, &identity, &body.raw)?;
    let content = body
        .value
        .content
        .ok_or_else(|| DomainError::validation("content", "is required"))?;
    let if_match = context.if_match;
    context
        .run(&state, move |tx, actor| {
            let file = use_case::save(tx, actor, &id, if_match, content)?;
            Ok(metadata(&file, tx.now()))
        })
        .await
}

/// Deletes `ids` — all or nothing — if the caller holds every lock.
async fn delete_files(
    req: &HttpRequest,
    state: &AppState,
    identity: &Identity,
    raw: &[u8],
    ids: Vec<ResourceId>,
) -> Result<HttpResponse, ApiError> {
    let context = WriteContext::new(req, identity, raw)?;
    let if_match = context.if_match;
    context
        .run(state, move |tx, actor| {
            let stable_ids = use_case::delete(tx, actor, ids, if_match)?;
            Ok(Answer::ok(FilesDeleted { stable_ids }))
        })
        .await
}

/// The files deleted.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FilesDeleted {
    #[schema(value_type = Vec<String>)]
    stable_ids: Vec<ResourceId>,
}

/// `DELETE /api/files/{id}` → `files_deleted`; the caller must hold the lock.
#[utoipa::path(
    delete,
    path = "/api/files/{id}",
    tag = "files",
    params(("id" = String, Path, description = "The file's `stable_id`"), super::described::IdentityHeaders, super::described::IfMatchHeader, super::described::IdempotencyHeader),
    responses(
        (status = 200, description = "The file is deleted", body = FilesDeleted),
        (status = 404, response = super::described::NotFound),
        (status = 409, description = "`lock_required`: the caller's session does not hold the file's lock", body = crate::http::error::ErrorBody),
        (status = 412, response = super::described::PreconditionFailed),
        super::described::Errors,
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
    params(super::described::IdentityHeaders, super::described::IfMatchHeader, super::described::IdempotencyHeader),
    request_body = BulkDeleteRequest,
    responses(
        (status = 200, description = "Every file named is deleted", body = FilesDeleted),
        (status = 404, response = super::described::NotFound),
        (status = 409, description = "`lock_required`: the caller's session does not hold every lock; `details.stable_ids` names the others", body = crate::http::error::ErrorBody),
        (status = 412, response = super::described::PreconditionFailed),
        super::described::Errors,
        super::described::BodyErrors,
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
pub struct LockBody {
    /// 1–3600; default 60 (`--lock-ttl`).
    #[schema(minimum = 1, maximum = 3600)]
    ttl_seconds: Option<u64>,
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
    params(("id" = String, Path, description = "The file's `stable_id`"), super::described::IdentityHeaders, super::described::IdempotencyHeader),
    request_body(content = Option<LockBody>, description = "Optional; an empty body takes the default lease"),
    responses(
        (status = 200, description = "The caller's session holds the lock", body = LockView),
        (status = 404, response = super::described::NotFound),
        (status = 409, description = "`lock_held`: another session holds the lock; `details.locked_by`, `details.lock_session_id`, `details.lock_expires_at`", body = crate::http::error::ErrorBody),
        super::described::Errors,
        super::described::BodyErrors,
    ),
)]
pub async fn acquire_lock(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
    body: JsonBody<Option<LockBody>>,
) -> Result<HttpResponse, ApiError> {
    let id = stable_id("stable_id", &id)?;
    let ttl_seconds = body.value.as_ref().and_then(|b| b.ttl_seconds);
    let request = LockRequest::new(identity.session_id.as_ref(), ttl_seconds)?;
    let default_ttl = state.lock_ttl.max(Duration::from_secs(1));
    let context = WriteContext::new(&req, &identity, &body.raw)?;
    context
        .run(&state, move |tx, actor| {
            let file = use_case::lock(tx, actor, &request, &id, default_ttl)?;
            let lock =
                LockView::of(&file).ok_or_else(|| StoreError::Corrupt("lock vanished".into()))?;
            Ok(Answer::ok(lock))
        })
        .await
}

/// `DELETE /api/files/{id}/lock` → `lock_released`; only the holder.
#[utoipa::path(
    delete,
    path = "/api/files/{id}/lock",
    tag = "files",
    operation_id = "unlock_file",
    params(("id" = String, Path, description = "The file's `stable_id`"), super::described::IdentityHeaders, super::described::IdempotencyHeader),
    responses(
        (status = 200, description = "The lock is released", body = LockReleased),
        (status = 404, response = super::described::NotFound),
        (status = 409, description = "`lock_held`: another session holds the lock, or `conflict`: the file is not locked", body = crate::http::error::ErrorBody),
        super::described::Errors,
    ),
)]
pub async fn release_lock(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = stable_id("stable_id", &id)?;
    let context = WriteContext::new(&req, &identity, b"")?;
    context
        .run(&state, move |tx, actor| {
            let file = use_case::release(tx, actor, &id)?;
            Ok(Answer::ok(LockReleased {
                stable_id: file.stable_id,
                released: true,
            }))
        })
        .await
}

/// `DELETE /api/files/{id}/lock`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct LockReleased {
    #[schema(value_type = String)]
    stable_id: ResourceId,
    /// Always `true`.
    released: bool,
}
