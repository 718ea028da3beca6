//! The messages of a conversation (`/api/conversations/{id}/messages`):
//! pages with cursor pagination, and streaming messages (create → deltas →
//! complete). Every write is one use case of `app::conversations`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::answer::{snapshot, Answer, WriteContext};
use super::conversations::{conversation_id, message_id};
use super::{AppState, Identity, JsonBody};
use crate::app::conversations as use_case;
use crate::domain::conversations::{MessageStatus, NewMessage, Role, Usage};
use crate::domain::ids::new_id;
use crate::domain::{DomainError, EventId, ResourceId};
use crate::http::error::ApiError;
use crate::store::conversations as store;
use crate::store::events;
use crate::views::MessageView;

/// Default and largest page of messages.
const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 500;

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
    params(("id" = String, Path, description = "The conversation's id"), super::described::IdentityHeaders, super::described::IdempotencyHeader),
    request_body = MessageRequest,
    responses(
        (status = 201, description = "The new message", body = MessageView),
        (status = 404, response = super::described::NotFound),
        (status = 409, description = "`already_exists`: a message has this id", body = crate::http::error::ErrorBody),
        super::described::Errors,
        super::described::BodyErrors,
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
    params(("id" = String, Path, description = "The conversation's id"), ("message_id" = String, Path, description = "The message's id"), super::described::IdentityHeaders, super::described::IdempotencyHeader),
    request_body = DeltaRequest,
    responses(
        (status = 200, description = "Where the text went", body = crate::views::DeltaView),
        (status = 404, response = super::described::NotFound),
        (status = 409, description = "`conflict`: the message is complete and takes no more deltas", body = crate::http::error::ErrorBody),
        super::described::Errors,
        super::described::BodyErrors,
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
    params(("id" = String, Path, description = "The conversation's id"), ("message_id" = String, Path, description = "The message's id"), super::described::IdentityHeaders, super::described::IdempotencyHeader),
    request_body(content = Option<CompleteRequest>, description = "Optional; an empty body completes with zero usage"),
    responses(
        (status = 200, description = "The final message", body = MessageView),
        (status = 404, response = super::described::NotFound),
        (status = 409, description = "`conflict`: the message is already complete; `details.message` is it", body = crate::http::error::ErrorBody),
        super::described::Errors,
        super::described::BodyErrors,
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
    params(("id" = String, Path, description = "The conversation's id"), PageQuery, super::described::IdentityHeaders),
    responses(
        (status = 200, description = "One page of messages, oldest first", body = MessagesPage, headers(("X-Event-Cursor" = i64, description = "The newest event the page includes"))),
        (status = 404, response = super::described::NotFound),
        super::described::Errors,
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
    #[schema(required = true, value_type = Option<String>)]
    next_before: Option<ResourceId>,
    /// The newest event this page includes (also `X-Event-Cursor`).
    #[schema(value_type = i64)]
    cursor: EventId,
}
