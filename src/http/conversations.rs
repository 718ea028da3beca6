//! Conversations (`/api/conversations`): the list every tab shows, messages
//! with cursor pagination, streaming messages (create → deltas → complete),
//! and the sync endpoint for polling clients.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::events::{committed_response, versioned_response};
use super::work_items::if_match;
use super::{AppState, Identity, JsonBody};
use crate::domain::conversations::{
    self as rules, conversation_event, delta_event, text_units, Conversation, ConversationChange,
    Message, MessageStatus, Usage,
};
use crate::domain::work_items::new_id;
use crate::domain::{format_timestamp, DomainError, ResourceId};
use crate::error::ApiError;
use crate::store::conversations as store;
use crate::store::{events, Outcome, StoreError, Tx};

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

/// Appends the events of `changes` and writes the conversation's row.
fn record(
    tx: &mut Tx<'_>,
    conversation: &Conversation,
    changes: &[ConversationChange],
    identity: &Identity,
) -> Result<(), StoreError> {
    let mut last = None;
    for change in changes {
        let event = conversation_event(
            conversation,
            change,
            &identity.agent_id,
            identity.session_id.as_ref(),
        )?;
        last = Some(tx.append(&event)?.id);
    }
    if let Some(last) = last {
        store::save(tx.conn(), conversation, last)?;
    }
    Ok(())
}

fn load_live(tx: &mut Tx<'_>, id: &str) -> Result<Conversation, StoreError> {
    store::load(tx.conn(), id)?
        .filter(|c| !c.deleted)
        .ok_or_else(|| DomainError::NotFound(format!("conversation {id}")).into())
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
        (status = 201, description = "The new conversation's summary", body = super::openapi::ConversationSummary, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 409, description = "`already_exists`: a live conversation has this id", body = super::openapi::ErrorBody),
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
    let claim = identity.idempotency_claim(&req, &body.raw)?;
    let id = match &body.value.id {
        Some(id) => conversation_id(id)?,
        None => new_id("conv-"),
    };
    let title = rules::validate_title(
        body.value
            .title
            .as_deref()
            .ok_or_else(|| DomainError::validation("title", "is required"))?,
    )?;
    let actor = identity.clone();
    let committed = state
        .writer
        .write(claim, move |tx| {
            let previous = store::load(tx.conn(), &id)?;
            if previous.as_ref().is_some_and(|c| !c.deleted) {
                return Err(DomainError::Conflict {
                    code: "already_exists",
                    message: format!("conversation {id} already exists"),
                    details: json!({ "id": id }),
                }
                .into());
            }
            let now = tx.now().to_owned();
            let conversation =
                Conversation::new(id, title, previous.as_ref(), &actor.agent_id, &now);
            record(tx, &conversation, &[ConversationChange::Created], &actor)?;
            Ok(Outcome::new(201, conversation.summary()))
        })
        .await?;
    Ok(versioned_response(committed))
}

/// `GET /api/conversations` → `{"conversations": [summaries], "cursor": N}`.
#[utoipa::path(
    get,
    path = "/api/conversations",
    tag = "conversations",
    params(super::openapi::IdentityHeaders),
    responses(
        (status = 200, description = "Every live conversation's summary", body = super::openapi::ConversationList, headers(("X-Event-Cursor" = i64, description = "The newest event the list includes"))),
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
    let list: Vec<Value> = list.iter().map(Conversation::summary).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("X-Event-Cursor", cursor.to_string()))
        .json(json!({ "conversations": list, "cursor": cursor })))
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
            body = super::openapi::ConversationSummary,
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
    Ok(HttpResponse::Ok()
        .insert_header(("X-Event-Cursor", cursor.to_string()))
        .insert_header((
            actix_web::http::header::ETAG,
            format!("\"{}\"", conversation.version),
        ))
        .json(conversation.summary()))
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
        (status = 200, description = "The conversation's summary", body = super::openapi::ConversationSummary, headers(("ETag" = String, description = "`\"<version>\"`"))),
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
    let claim = identity.idempotency_claim(&req, &body.raw)?;
    let precondition = if_match(&req)?;
    let title = rules::validate_title(
        body.value
            .title
            .as_deref()
            .ok_or_else(|| DomainError::validation("title", "is required"))?,
    )?;
    let actor = identity.clone();
    let committed = state
        .writer
        .write(claim, move |tx| {
            let mut conversation = load_live(tx, &id)?;
            if let Some(precondition) = precondition {
                precondition.check_version(conversation.version, || conversation.summary())?;
            }
            if conversation.title != title {
                conversation.title = title;
                let now = tx.now().to_owned();
                conversation.touch(&actor.agent_id, &now);
                record(tx, &conversation, &[ConversationChange::Updated], &actor)?;
            }
            Ok(Outcome::new(200, conversation.summary()))
        })
        .await?;
    Ok(versioned_response(committed))
}

/// `DELETE /api/conversations/{id}` → `conversation_deleted`; a tombstone stays.
#[utoipa::path(
    delete,
    path = "/api/conversations/{id}",
    tag = "conversations",
    params(("id" = String, Path, description = "The conversation's id"), super::openapi::IdentityHeaders, super::openapi::IfMatchHeader, super::openapi::IdempotencyHeader),
    responses(
        (status = 200, description = "The tombstone", body = super::openapi::DeletedResource, headers(("ETag" = String, description = "`\"<version>\"`"))),
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
    let claim = identity.idempotency_claim(&req, b"")?;
    let precondition = if_match(&req)?;
    let actor = identity.clone();
    let committed = state
        .writer
        .write(claim, move |tx| {
            let mut conversation = load_live(tx, &id)?;
            if let Some(precondition) = precondition {
                precondition.check_version(conversation.version, || conversation.summary())?;
            }
            store::delete_messages(tx.conn(), &id)?;
            conversation.deleted = true;
            let now = tx.now().to_owned();
            conversation.touch(&actor.agent_id, &now);
            record(tx, &conversation, &[ConversationChange::Deleted], &actor)?;
            Ok(Outcome::new(
                200,
                json!({ "id": conversation.id, "version": conversation.version, "deleted": true }),
            ))
        })
        .await?;
    Ok(versioned_response(committed))
}

/// A new message. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateMessageRequest, example = json!({"role": "assistant", "content": "", "status": "streaming"}))]
pub struct MessageRequest {
    /// 1–64 characters of `[A-Za-z0-9._:-]`; missing → `msg-` and random hex.
    id: Option<String>,
    #[schema(value_type = super::openapi::MessageRole)]
    role: Option<String>,
    /// Default empty: a streaming message gets its text by deltas.
    content: Option<String>,
    /// Default `complete`.
    #[schema(value_type = Option<super::openapi::MessageStatus>)]
    status: Option<String>,
    /// Only for a message created complete.
    #[schema(value_type = Option<super::openapi::Usage>)]
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
        (status = 201, description = "The new message", body = super::openapi::Message),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "`already_exists`: a message has this id", body = super::openapi::ErrorBody),
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
    let claim = identity.idempotency_claim(&req, &body.raw)?;
    let request = body.value;
    let id = match &request.id {
        Some(id) => message_id("id", id)?,
        None => new_id("msg-"),
    };
    let role = rules::validate_role(
        request
            .role
            .as_deref()
            .ok_or_else(|| DomainError::validation("role", "is required"))?,
    )?;
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
    if usage.is_some() && status == MessageStatus::Streaming {
        return Err(
            DomainError::validation("usage", "is given when the message is completed").into(),
        );
    }
    let content = request.content.unwrap_or_default();
    let actor = identity.clone();
    let committed = state
        .writer
        .write(claim, move |tx| {
            let mut conv = load_live(tx, &conversation)?;
            if store::message_exists(tx.conn(), &id)? {
                return Err(DomainError::Conflict {
                    code: "already_exists",
                    message: format!("message {id} already exists"),
                    details: json!({ "id": id }),
                }
                .into());
            }
            let now = tx.now().to_owned();
            let message = Message {
                id,
                conversation_id: conv.id.clone(),
                seq: conv.message_count + 1,
                role,
                content_units: text_units(&content),
                content,
                status,
                usage,
                created_at: now.clone(),
                updated_at: now.clone(),
                created_by: actor.agent_id.as_str().to_owned(),
            };
            store::insert_message(tx.conn(), &message)?;
            conv.message_count += 1;
            let mut changes = vec![ConversationChange::MessageCreated(message.clone())];
            if let Some(usage) = usage {
                conv.add_usage(usage);
                changes.push(ConversationChange::TokensUpdated);
            }
            conv.touch(&actor.agent_id, &now);
            changes.push(ConversationChange::Updated);
            record(tx, &conv, &changes, &actor)?;
            Ok(Outcome::new(201, message.to_json()))
        })
        .await?;
    Ok(committed_response(committed))
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
        (status = 200, description = "Where the text went", body = super::openapi::DeltaResult),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "`conflict`: the message is complete and takes no more deltas", body = super::openapi::ErrorBody),
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
    let claim = identity.idempotency_claim(&req, &body.raw)?;
    let text = body
        .value
        .text
        .filter(|t| !t.is_empty())
        .ok_or_else(|| DomainError::validation("text", "is required and must not be empty"))?;
    let actor = identity.clone();
    let committed = state
        .writer
        .write(claim, move |tx| {
            let units = text_units(&text);
            let now = tx.now().to_owned();
            let Some(offset) =
                store::append_delta(tx.conn(), &conversation, &message, &text, units, &now)?
            else {
                return Err(
                    match store::load_message(tx.conn(), &conversation, &message)? {
                        Some(_) => DomainError::Conflict {
                            code: "conflict",
                            message: format!(
                                "message {message} is complete: it takes no more deltas"
                            ),
                            details: json!({ "message_id": message }),
                        },
                        None => DomainError::NotFound(format!(
                            "message {message} in conversation {conversation}"
                        )),
                    }
                    .into(),
                );
            };
            let event = delta_event(
                &conversation,
                &message,
                offset,
                &text,
                &actor.agent_id,
                actor.session_id.as_ref(),
            )?;
            tx.append(&event)?;
            Ok(Outcome::new(
                200,
                json!({ "message_id": message, "offset": offset, "length": offset + units }),
            ))
        })
        .await?;
    Ok(committed_response(committed))
}

/// The final token usage. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CompleteMessageRequest)]
pub struct CompleteRequest {
    /// Missing → zero tokens.
    #[schema(value_type = Option<super::openapi::Usage>)]
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
        (status = 200, description = "The final message", body = super::openapi::Message),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 409, description = "`conflict`: the message is already complete; `details.message` is it", body = super::openapi::ErrorBody),
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
    let claim = identity.idempotency_claim(&req, &body.raw)?;
    let usage = body
        .value
        .as_ref()
        .and_then(|b| b.usage.as_ref())
        .filter(|u| !u.is_null())
        .map(Usage::parse)
        .transpose()?;
    let actor = identity.clone();
    let committed = state
        .writer
        .write(claim, move |tx| {
            let mut conv = load_live(tx, &conversation)?;
            let mut msg =
                store::load_message(tx.conn(), &conversation, &message)?.ok_or_else(|| {
                    DomainError::NotFound(format!(
                        "message {message} in conversation {conversation}"
                    ))
                })?;
            if msg.status == MessageStatus::Complete {
                return Err(DomainError::Conflict {
                    code: "conflict",
                    message: format!("message {message} is already complete"),
                    details: json!({ "message": msg.to_json() }),
                }
                .into());
            }
            let now = tx.now().to_owned();
            msg.status = MessageStatus::Complete;
            msg.usage = Some(usage.unwrap_or(Usage {
                input_tokens: 0,
                output_tokens: 0,
            }));
            msg.updated_at = now.clone();
            store::update_message(tx.conn(), &msg)?;
            let mut changes = vec![
                ConversationChange::MessageCompleted(msg.clone()),
                ConversationChange::TokensUpdated,
            ];
            if let Some(usage) = usage.filter(|u| u.input_tokens != 0 || u.output_tokens != 0) {
                conv.add_usage(usage);
                conv.touch(&actor.agent_id, &now);
                changes.push(ConversationChange::Updated);
            }
            record(tx, &conv, &changes, &actor)?;
            Ok(Outcome::new(200, msg.to_json()))
        })
        .await?;
    Ok(committed_response(committed))
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
        (status = 200, description = "One page of messages, oldest first", body = super::openapi::MessagesPage, headers(("X-Event-Cursor" = i64, description = "The newest event the page includes"))),
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
    let next_before = page.first().filter(|m| m.seq > 1).map(|m| m.id.clone());
    let messages: Vec<Value> = page.iter().map(Message::to_json).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("X-Event-Cursor", cursor.to_string()))
        .json(json!({
            "messages": messages,
            "total_count": conv.message_count,
            "next_before": next_before,
            "cursor": cursor,
        })))
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
    Time(String),
    Cursor(i64),
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
        (status = 200, description = "Conversations changed since then", body = super::openapi::ConversationsSync, headers(("X-Event-Cursor" = i64, description = "The newest event the answer includes"))),
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
    } else if let Some(cursor) = query.cursor {
        if cursor < 0 {
            return Err(
                DomainError::validation("cursor", "must be a non-negative event id").into(),
            );
        }
        Since::Cursor(cursor)
    } else if let Some(since) = &query.since {
        let time = DateTime::parse_from_rfc3339(since).map_err(|_| {
            DomainError::validation(
                "since",
                "must be an RFC 3339 time like 2026-11-21T12:00:00.000000Z",
            )
        })?;
        Since::Time(format_timestamp(time.with_timezone(&Utc)))
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
            let server_time = format_timestamp(Utc::now());
            let changed = match &since {
                Since::Everything => store::list(conn)?,
                Since::Time(time) => store::updated_after(conn, time)?,
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
    Ok(HttpResponse::Ok()
        .insert_header(("X-Event-Cursor", cursor.to_string()))
        .json(json!({
            "conversations": live.iter().map(Conversation::summary).collect::<Vec<_>>(),
            "deleted_ids": deleted.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
            "server_time": server_time,
            "is_full_sync": full,
            "cursor": cursor,
        })))
}
