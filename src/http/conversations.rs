//! Conversations (`/api/conversations`): the list every tab shows, create,
//! rename, delete, and the sync endpoint for polling clients. Their messages
//! are `messages.rs`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::answer::{snapshot, Answer, WriteContext};
use super::{AppState, Identity, JsonBody};
use crate::app::conversations as use_case;
use crate::domain::conversations::{self as rules, Conversation};
use crate::domain::ids::new_id;
use crate::domain::{DomainError, EventId, ResourceId, Timestamp};
use crate::http::error::ApiError;
use crate::store::conversations as store;
use crate::store::events;
use crate::views::{ConversationView, DeletedView};

pub(super) fn conversation_id(value: &str) -> Result<ResourceId, ApiError> {
    let id = ResourceId::parse("id", value)?;
    if id.as_str() == "sync" {
        return Err(DomainError::validation("id", "\"sync\" is reserved").into());
    }
    Ok(id)
}

pub(super) fn message_id(field: &str, value: &str) -> Result<ResourceId, ApiError> {
    Ok(ResourceId::parse(field, value)?)
}

fn title(value: Option<&str>) -> Result<String, ApiError> {
    let title = value.ok_or_else(|| DomainError::validation("title", "is required"))?;
    Ok(rules::validate_title(title)?)
}

fn summary(conversation: &Conversation) -> Answer<ConversationView> {
    Answer::ok(ConversationView::from(conversation)).versioned(conversation.version)
}

/// A new conversation. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateConversationRequest)]
pub struct CreateRequest {
    /// 1–64 characters of `[A-Za-z0-9._:-]`, not `sync`; missing → `conv-`
    /// and random hex.
    id: Option<String>,
    /// Not blank; at most 500 characters.
    #[schema(value_type = String, min_length = 1, max_length = 500)]
    title: Option<String>,
}

/// `POST /api/conversations` `{id?, title}` → 201; `conversation_created`.
#[utoipa::path(
    post,
    path = "/api/conversations",
    tag = "conversations",
    params(super::described::IdentityHeaders, super::described::IdempotencyHeader),
    request_body = CreateRequest,
    responses(
        (status = 201, description = "The new conversation's summary", body = ConversationView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 409, description = "`already_exists`: a live conversation has this id", body = crate::http::error::ErrorBody),
        super::described::Errors,
        super::described::BodyErrors,
    ),
)]
pub async fn create_conversation(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    body: JsonBody<CreateRequest>,
) -> Result<HttpResponse, ApiError> {
    let context = WriteContext::new(&req, &identity, &body.raw)?;
    let id = match &body.value.id {
        Some(id) => conversation_id(id)?,
        None => new_id("conv-"),
    };
    let title = title(body.value.title.as_deref())?;
    context
        .run(&state, move |tx, actor| {
            let conversation = use_case::create(tx, actor, id, title)?;
            let view = ConversationView::from(&conversation);
            Ok(Answer::created(view).versioned(conversation.version))
        })
        .await
}

/// `GET /api/conversations` → `{"conversations": [summaries], "cursor": N}`.
#[utoipa::path(
    get,
    path = "/api/conversations",
    tag = "conversations",
    params(super::described::IdentityHeaders),
    responses(
        (status = 200, description = "Every live conversation's summary", body = ConversationList, headers(("X-Event-Cursor" = i64, description = "The newest event the list includes"))),
        (status = 400, response = super::described::BadRequest),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn list_conversations(
    state: web::Data<AppState>,
    _identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let (cursor, list) = state
        .store
        .read(|conn| Ok((events::head_id(conn)?, store::list(conn)?)))
        .await?;
    let conversations = list.iter().map(ConversationView::from).collect();
    Ok(snapshot(
        cursor,
        None,
        &ConversationList {
            conversations,
            cursor,
        },
    ))
}

/// `GET /api/conversations`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConversationList {
    conversations: Vec<ConversationView>,
    /// The newest event this list includes (also `X-Event-Cursor`).
    #[schema(value_type = i64)]
    cursor: EventId,
}

/// `GET /api/conversations/{id}` → the summary.
#[utoipa::path(
    get,
    path = "/api/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation's id"), super::described::IdentityHeaders),
    responses(
        (
            status = 200,
            description = "The conversation's summary",
            body = ConversationView,
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
pub async fn get_conversation(
    state: web::Data<AppState>,
    _identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = conversation_id(&id)?;
    let lookup = id.clone();
    let (cursor, found) = state
        .store
        .read(move |conn| Ok((events::head_id(conn)?, store::load(conn, &lookup)?)))
        .await?;
    let conversation = found
        .filter(|c| !c.deleted)
        .ok_or_else(|| DomainError::NotFound(format!("conversation {id}")))?;
    let view = ConversationView::from(&conversation);
    Ok(snapshot(cursor, Some(conversation.version), &view))
}

/// A new title. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RenameConversationRequest)]
pub struct RenameRequest {
    /// Not blank; at most 500 characters.
    #[schema(value_type = String, min_length = 1, max_length = 500)]
    title: Option<String>,
}

/// `PATCH /api/conversations/{id}` `{title}` → `conversation_updated`.
#[utoipa::path(
    patch,
    path = "/api/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation's id"), super::described::IdentityHeaders, super::described::IfMatchHeader, super::described::IdempotencyHeader),
    request_body = RenameRequest,
    responses(
        (status = 200, description = "The conversation's summary", body = ConversationView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 404, response = super::described::NotFound),
        (status = 412, response = super::described::PreconditionFailed),
        super::described::Errors,
        super::described::BodyErrors,
    ),
)]
pub async fn rename_conversation(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
    body: JsonBody<RenameRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = conversation_id(&id)?;
    let context = WriteContext::new(&req, &identity, &body.raw)?;
    let title = title(body.value.title.as_deref())?;
    let if_match = context.if_match;
    context
        .run(&state, move |tx, actor| {
            let conversation = use_case::rename(tx, actor, &id, if_match, title)?;
            Ok(summary(&conversation))
        })
        .await
}

/// `DELETE /api/conversations/{id}` → `conversation_deleted`; a tombstone stays.
#[utoipa::path(
    delete,
    path = "/api/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation's id"), super::described::IdentityHeaders, super::described::IfMatchHeader, super::described::IdempotencyHeader),
    responses(
        (status = 200, description = "The tombstone", body = DeletedView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 404, response = super::described::NotFound),
        (status = 412, response = super::described::PreconditionFailed),
        super::described::Errors,
    ),
)]
pub async fn delete_conversation(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = conversation_id(&id)?;
    let context = WriteContext::new(&req, &identity, b"")?;
    let if_match = context.if_match;
    context
        .run(&state, move |tx, actor| {
            let conversation = use_case::delete(tx, actor, &id, if_match)?;
            let view = DeletedView::new(&conversation.id, conversation.version);
            Ok(Answer::ok(view).versioned(conversation.version))
        })
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// Conversations updated after this RFC 3339 time.
    #[param(value_type = String, format = DateTime, required = false)]
    since: Option<String>,
    /// `true`: every live conversation (wins over `since` and `cursor`).
    #[param(value_type = bool, required = false)]
    full: Option<bool>,
    /// Conversations changed after this event id; exact, unlike `since`
    /// (wins over `since`).
    #[param(value_type = i64, required = false, minimum = 0)]
    cursor: Option<i64>,
    #[serde(rename = "session_id")]
    #[param(ignore)]
    _session_id: Option<String>,
    #[serde(rename = "agent_id")]
    #[param(ignore)]
    _agent_id: Option<String>,
    #[serde(rename = "access_token")]
    #[param(ignore)]
    _access_token: Option<String>,
    #[serde(rename = "ticket")]
    #[param(ignore)]
    _ticket: Option<String>,
}

enum Since {
    Everything,
    Time(Timestamp),
    Cursor(EventId),
}

/// `GET /api/conversations/sync?since=<time>&full=<bool>` (or `cursor=<id>`,
/// which is exact) → `{conversations, deleted_ids, server_time, is_full_sync, cursor}`.
///
/// Without `since`, `cursor` or `full`: a full sync.
#[utoipa::path(
    get,
    path = "/api/conversations/sync",
    tag = "conversations",
    params(SyncQuery, super::described::IdentityHeaders),
    responses(
        (status = 200, description = "Conversations changed since then", body = ConversationsSync, headers(("X-Event-Cursor" = i64, description = "The newest event the answer includes"))),
        super::described::Errors,
    ),
)]
pub async fn sync_conversations(
    state: web::Data<AppState>,
    _identity: Identity,
    query: super::Query<SyncQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let since = if query.full == Some(true) {
        Since::Everything
    } else if let Some(cursor) = super::extract::sync_cursor(query.cursor)? {
        Since::Cursor(cursor)
    } else if let Some(since) = &query.since {
        Since::Time(Timestamp::parse("since", since)?)
    } else {
        Since::Everything
    };
    let full = matches!(since, Since::Everything);
    let asked_after = match since {
        Since::Cursor(after) => Some(after),
        _ => None,
    };
    let (cursor, server_time, changed) = state
        .store
        .read(move |conn| {
            let cursor = events::head_id(conn)?;
            let server_time = Timestamp::now();
            let changed = match &since {
                Since::Everything => store::list(conn)?,
                Since::Time(time) => store::updated_after(conn, *time)?,
                Since::Cursor(after) => store::changed_since(conn, *after)?,
            };
            Ok((cursor, server_time, changed))
        })
        .await?;
    if asked_after.is_some_and(|after| after > cursor) {
        // As /api/sync: a cursor from another database (or a restored
        // backup) would silently hide changes.
        return Err(DomainError::validation(
            "cursor",
            format!("is ahead of the log's head ({cursor}); sync with full=true"),
        )
        .into());
    }
    let (deleted, live): (Vec<Conversation>, Vec<Conversation>) =
        changed.into_iter().partition(|c| c.deleted);
    let answer = ConversationsSync {
        conversations: live.iter().map(ConversationView::from).collect(),
        deleted_ids: deleted.into_iter().map(|c| c.id).collect(),
        server_time,
        is_full_sync: full,
        cursor,
    };
    Ok(snapshot(cursor, None, &answer))
}

/// `GET /api/conversations/sync`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConversationsSync {
    /// Live conversations changed since `since`/`cursor` (all of them on a full sync).
    conversations: Vec<ConversationView>,
    /// Conversations deleted since then.
    #[schema(value_type = Vec<String>)]
    deleted_ids: Vec<ResourceId>,
    #[schema(value_type = String, format = DateTime)]
    server_time: Timestamp,
    is_full_sync: bool,
    /// The newest event this answer includes (also `X-Event-Cursor`): pass it
    /// as `cursor` next time.
    #[schema(value_type = i64)]
    cursor: EventId,
}
