//! Conversations (`/api/conversations`): the list every tab shows, messages
//! with cursor pagination, streaming messages (create → deltas → complete),
//! and the sync endpoint for polling clients.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::answer::{snapshot, Answer, WriteContext};
use super::{AppState, Identity, JsonBody};
use crate::app::conversations as use_case;
use crate::domain::conversations::{
    self as rules, Conversation, MessageStatus, NewMessage, Role, Usage,
};
use crate::domain::views::{ConversationView, DeletedView, MessageView};
use crate::domain::work_items::new_id;
use crate::domain::{DomainError, EventId, ResourceId, Timestamp};
use crate::error::ApiError;
use crate::store::conversations as store;
use crate::store::events;

/// Default and largest page of messages.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

fn conversation_id(value: &str) -> Result<String, ApiError> {
    let id = ResourceId::parse("id", value)?.into_string();
    if id == "sync" {
        return Err(DomainError::validation("id", "\"sync\" is reserved").into());
    }
    Ok(id)
}

fn message_id(field: &str, value: &str) -> Result<String, ApiError> {
    Ok(ResourceId::parse(field, value)?.into_string())
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
    params(super::openapi::IdentityHeaders, super::openapi::IdempotencyHeader),
    request_body = CreateRequest,
    responses(
        (status = 201, description = "The new conversation's summary", body = ConversationView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 409, description = "`already_exists`: a live conversation has this id", body = crate::error::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
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
            let mut answer = summary(&conversation);
            answer.status = actix_web::http::StatusCode::CREATED;
            Ok(answer)
        })
        .await
}

/// `GET /api/conversations` → `{"conversations": [summaries], "cursor": N}`.
#[utoipa::path(
    get,
    path = "/api/conversations",
    tag = "conversations",
    params(super::openapi::IdentityHeaders),
    responses(
        (status = 200, description = "Every live conversation's summary", body = ConversationList, headers(("X-Event-Cursor" = i64, description = "The newest event the list includes"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 503, response = super::openapi::Unavailable),
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
    params(("id" = String, Path, description = "The conversation's id"), super::openapi::IdentityHeaders),
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
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
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
    params(("id" = String, Path, description = "The conversation's id"), super::openapi::IdentityHeaders, super::openapi::IfMatchHeader, super::openapi::IdempotencyHeader),
    request_body = RenameRequest,
    responses(
        (status = 200, description = "The conversation's summary", body = ConversationView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
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
    params(("id" = String, Path, description = "The conversation's id"), super::openapi::IdentityHeaders, super::openapi::IfMatchHeader, super::openapi::IdempotencyHeader),
    responses(
        (status = 200, description = "The tombstone", body = DeletedView, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
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

/// A new message. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateMessageRequest, example = json!({"role": "assistant", "content": "", "status": "streaming"}))]
pub struct MessageRequest {
    /// 1–64 characters of `[A-Za-z0-9._:-]`; missing → `msg-` and random hex.
    id: Option<String>,
    #[schema(value_type = Role)]
    role: Option<String>,
    /// Default empty: a streaming message gets its text by deltas.
    content: Option<String>,
    /// Default `complete`.
    #[schema(value_type = Option<MessageStatus>)]
    status: Option<String>,
    /// Only for a message created complete.
    #[schema(value_type = Option<Usage>)]
    usage: Option<Value>,
}

/// `POST /api/conversations/{id}/messages` → 201 with the message;
/// `message_created` (+ `tokens_updated` with usage) and `conversation_updated`.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/messages",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation's id"), super::openapi::IdentityHeaders, super::openapi::IdempotencyHeader),
    request_body = MessageRequest,
    responses(
        (status = 201, description = "The new message", body = MessageView),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "`already_exists`: a message has this id", body = crate::error::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn create_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
    body: JsonBody<MessageRequest>,
) -> Result<HttpResponse, ApiError> {
    let conversation = conversation_id(&id)?;
    let context = WriteContext::new(&req, &identity, &body.raw)?;
    let request = body.value;
    let id = match &request.id {
        Some(id) => message_id("id", id)?,
        None => new_id("msg-"),
    };
    let role = request
        .role
        .as_deref()
        .ok_or_else(|| DomainError::validation("role", "is required"))?;
    let status = request
        .status
        .as_deref()
        .map(|s| MessageStatus::parse("status", s))
        .transpose()?
        .unwrap_or(MessageStatus::Complete);
    let usage = request
        .usage
        .as_ref()
        .filter(|u| !u.is_null())
        .map(Usage::parse)
        .transpose()?;
    let content = request.content.unwrap_or_default();
    let new = NewMessage::new(id, Role::parse("role", role)?, content, status, usage)?;
    context
        .run(&state, move |tx, actor| {
            let message = use_case::create_message(tx, actor, &conversation, new)?;
            Ok(Answer::created(MessageView::from(&message)))
        })
        .await
}

/// Text to append. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeltaRequest {
    /// Not empty.
    #[schema(value_type = String, min_length = 1)]
    text: Option<String>,
}

/// `POST …/messages/{mid}/delta` `{text}` → `{message_id, offset, length}`;
/// `message_delta`. The server appends the text to what it keeps.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/messages/{message_id}/delta",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation's id"), ("message_id" = String, Path, description = "The message's id"), super::openapi::IdentityHeaders, super::openapi::IdempotencyHeader),
    request_body = DeltaRequest,
    responses(
        (status = 200, description = "Where the text went", body = crate::domain::views::DeltaView),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "`conflict`: the message is complete and takes no more deltas", body = crate::error::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn append_delta(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<DeltaRequest>,
) -> Result<HttpResponse, ApiError> {
    let (conversation, message) = path.into_inner();
    let conversation = conversation_id(&conversation)?;
    let message = message_id("message_id", &message)?;
    let context = WriteContext::new(&req, &identity, &body.raw)?;
    let text = body
        .value
        .text
        .filter(|t| !t.is_empty())
        .ok_or_else(|| DomainError::validation("text", "is required and must not be empty"))?;
    context
        .run(&state, move |tx, actor| {
            let delta = use_case::append_delta(tx, actor, &conversation, &message, &text)?;
            Ok(Answer::ok(delta))
        })
        .await
}

/// The final token usage. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CompleteMessageRequest)]
pub struct CompleteRequest {
    /// Missing → zero tokens.
    #[schema(value_type = Option<Usage>)]
    usage: Option<Value>,
}

/// `POST …/messages/{mid}/complete` `{usage?}` → the final message;
/// `message_completed`, `tokens_updated`, and `conversation_updated` when the
/// usage changed the totals.
#[utoipa::path(
    post,
    path = "/api/conversations/{id}/messages/{message_id}/complete",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation's id"), ("message_id" = String, Path, description = "The message's id"), super::openapi::IdentityHeaders, super::openapi::IdempotencyHeader),
    request_body(content = Option<CompleteRequest>, description = "Optional; an empty body completes with zero usage"),
    responses(
        (status = 200, description = "The final message", body = MessageView),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "`conflict`: the message is already complete; `details.message` is it", body = crate::error::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn complete_message(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<Option<CompleteRequest>>,
) -> Result<HttpResponse, ApiError> {
    let (conversation, message) = path.into_inner();
    let conversation = conversation_id(&conversation)?;
    let message = message_id("message_id", &message)?;
    let context = WriteContext::new(&req, &identity, &body.raw)?;
    let usage = body
        .value
        .as_ref()
        .and_then(|b| b.usage.as_ref())
        .filter(|u| !u.is_null())
        .map(Usage::parse)
        .transpose()?;
    context
        .run(&state, move |tx, actor| {
            let message = use_case::complete_message(tx, actor, &conversation, &message, usage)?;
            Ok(Answer::ok(MessageView::from(&message)))
        })
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// A message id: the page ends just before it (`next_before` of the
    /// previous page). Missing → the newest messages.
    #[param(value_type = String, required = false)]
    before: Option<String>,
    /// 1–500, default 50.
    #[param(value_type = i64, required = false, minimum = 1, maximum = 500)]
    limit: Option<i64>,
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

/// `GET /api/conversations/{id}/messages?before=&limit=` →
/// `{messages, total_count, next_before, cursor}`: the newest `limit`
/// messages before `before` (a message id), oldest first, with the text a
/// streaming message has so far. `cursor` (also `X-Event-Cursor`) is the
/// newest event this page includes: stream from it to get exactly the later
/// deltas.
#[utoipa::path(
    get,
    path = "/api/conversations/{id}/messages",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation's id"), PageQuery, super::openapi::IdentityHeaders),
    responses(
        (status = 200, description = "One page of messages, oldest first", body = MessagesPage, headers(("X-Event-Cursor" = i64, description = "The newest event the page includes"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn list_messages(
    state: web::Data<AppState>,
    _identity: Identity,
    id: web::Path<String>,
    query: super::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let conversation = conversation_id(&id)?;
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(DomainError::validation("limit", format!("must be 1 to {MAX_PAGE}")).into());
    }
    let before = query
        .before
        .as_deref()
        .map(|b| message_id("before", b))
        .transpose()?;
    let (cursor, conv, page) = state
        .store
        .read(move |conn| {
            let cursor = events::head_id(conn)?;
            let Some(conv) = store::load(conn, &conversation)?.filter(|c| !c.deleted) else {
                return Err(DomainError::NotFound(format!("conversation {conversation}")).into());
            };
            let before_seq = match &before {
                None => None,
                Some(before) => Some(
                    store::load_message(conn, &conversation, before)?
                        .ok_or_else(|| {
                            DomainError::validation(
                                "before",
                                format!("no message {before} in this conversation"),
                            )
                        })?
                        .seq,
                ),
            };
            let page = store::messages_page(conn, &conversation, before_seq, limit)?;
            Ok((cursor, conv, page))
        })
        .await?;
    let page = MessagesPage {
        next_before: page.first().filter(|m| m.seq > 1).map(|m| m.id.clone()),
        messages: page.iter().map(MessageView::from).collect(),
        total_count: conv.message_count,
        cursor,
    };
    Ok(snapshot(cursor, None, &page))
}

/// `GET /api/conversations/{id}/messages`: the newest `limit` messages before
/// `before`, oldest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MessagesPage {
    messages: Vec<MessageView>,
    /// Messages in the conversation.
    total_count: i64,
    /// Pass as `before` for the older page; `null` at the first message.
    #[schema(required = true)]
    next_before: Option<String>,
    /// The newest event this page includes (also `X-Event-Cursor`).
    #[schema(value_type = i64)]
    cursor: EventId,
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
    params(SyncQuery, super::openapi::IdentityHeaders),
    responses(
        (status = 200, description = "Conversations changed since then", body = ConversationsSync, headers(("X-Event-Cursor" = i64, description = "The newest event the answer includes"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
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
    deleted_ids: Vec<String>,
    #[schema(value_type = String, format = DateTime)]
    server_time: Timestamp,
    is_full_sync: bool,
    /// The newest event this answer includes (also `X-Event-Cursor`): pass it
    /// as `cursor` next time.
    #[schema(value_type = i64)]
    cursor: EventId,
}
