//! Generic publish (one event or an all-or-nothing batch) and the history API.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::answer::{Answer, WriteContext};
use super::{AppState, Identity, JsonBody};
use crate::app::events;
use crate::domain::{
    ChannelName, ChannelPattern, DomainError, Event, EventId, EventType, NewEvent, ResourceId,
    ResourceType,
};
use crate::http::error::ApiError;
use crate::store::{self, EventQuery, Order};

/// The largest page of `GET /api/events`.
pub const MAX_PAGE: i64 = 1000;

/// One event to publish. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"type": "note", "data": {"text": "hi"}, "resource_type": "doc", "resource_id": "doc-1"}))]
pub struct PublishRequest {
    /// 1–64 characters of `[A-Za-z0-9_.-]`.
    #[serde(rename = "type")]
    #[schema(value_type = String, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.-]+$")]
    event_type: Option<String>,
    /// Missing → `{}`; `null` is kept as `null`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Value)]
    data: Box<RawValue>,
    /// 1–64 characters of `[A-Za-z0-9_.-]`.
    resource_type: Option<String>,
    /// 1–64 characters of `[A-Za-z0-9._:-]`.
    resource_id: Option<String>,
}

/// One event of a batch. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// 1–200 characters of `[A-Za-z0-9._:/-]`, not a built-in channel.
    #[schema(value_type = String, min_length = 1, max_length = 200, pattern = "^[A-Za-z0-9._:/-]+$")]
    channel: Option<String>,
    /// 1–64 characters of `[A-Za-z0-9_.-]`.
    #[serde(rename = "type")]
    #[schema(value_type = String, min_length = 1, max_length = 64, pattern = "^[A-Za-z0-9_.-]+$")]
    event_type: Option<String>,
    /// Missing → `{}`; `null` is kept as `null`.
    #[serde(default = "empty_object")]
    #[schema(value_type = Value)]
    data: Box<RawValue>,
    resource_type: Option<String>,
    resource_id: Option<String>,
}

/// 1 to 1000 events, stored all or nothing.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    #[schema(value_type = Vec<BatchItem>, min_items = 1, max_items = 1000)]
    events: Option<Vec<BatchItem>>,
}

/// Validates one event to publish; `prefix` names its place in the body.
fn new_event(
    identity: &Identity,
    prefix: &str,
    channel: ChannelName,
    event_type: Option<&str>,
    data: Box<RawValue>,
    resource_type: Option<&str>,
    resource_id: Option<&str>,
) -> Result<NewEvent, ApiError> {
    let field = |name: &str| format!("{prefix}{name}");
    let event_type =
        event_type.ok_or_else(|| DomainError::validation(field("type"), "is required"))?;
    Ok(NewEvent {
        channel,
        event_type: EventType::parse(&field("type"), event_type)?,
        resource_type: resource_type
            .map(|t| ResourceType::parse(&field("resource_type"), t))
            .transpose()?,
        resource_id: resource_id
            .map(|r| ResourceId::parse(&field("resource_id"), r))
            .transpose()?,
        agent_id: identity.agent_id.clone(),
        session_id: identity.session_id.clone(),
        payload: data,
    })
}

fn empty_object() -> Box<RawValue> {
    RawValue::from_string("{}".to_owned()).expect("{} is JSON")
}

/// The events of a batch, as stored.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventList {
    events: Vec<Event>,
}

/// `POST /api/channels/{channel}/events` → 201 with the stored event.
///
/// The built-in channels (`features`, `tracks`, `spikes`, `files`,
/// `conversations`, `conversation:*`, `presence`) are written only by the
/// server → 403.
#[utoipa::path(
    post,
    path = "/api/channels/{channel}/events",
    tag = "events",
    params(
        ("channel" = String, Path, description = "1–200 characters of `[A-Za-z0-9._:/-]`", example = "global"),
        super::described::IdentityHeaders,
        super::described::IdempotencyHeader,
    ),
    request_body = PublishRequest,
    responses(
        (status = 201, description = "The stored event", body = Event),
        (status = 403, response = super::described::Forbidden),
        super::described::Errors,
        super::described::BodyErrors,
    ),
)]
pub async fn publish_event(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    channel: web::Path<String>,
    body: JsonBody<PublishRequest>,
) -> Result<HttpResponse, ApiError> {
    let channel = ChannelName::parse("channel", &channel)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let context = WriteContext::new(&req, &identity, &body.raw)?;
    let request = body.value;
    let event = new_event(
        &identity,
        "",
        channel,
        request.event_type.as_deref(),
        request.data,
        request.resource_type.as_deref(),
        request.resource_id.as_deref(),
    )?;
    context
        .run(&state, move |tx, _| {
            Ok(Answer::created(events::publish(tx, &event)?))
        })
        .await
}

/// `POST /api/events/batch` → 201 `{"events": [...]}`, all or nothing, with
/// consecutive ids (one transaction, one writer).
#[utoipa::path(
    post,
    path = "/api/events/batch",
    tag = "events",
    params(super::described::IdentityHeaders, super::described::IdempotencyHeader),
    request_body = BatchRequest,
    responses(
        (status = 201, description = "The stored events, in the order given", body = EventList),
        (status = 403, response = super::described::Forbidden),
        super::described::Errors,
        super::described::BodyErrors,
    ),
)]
pub async fn publish_batch(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    body: JsonBody<BatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let context = WriteContext::new(&req, &identity, &body.raw)?;
    let items = body
        .value
        .events
        .ok_or_else(|| DomainError::validation("events", "is required"))?;
    // The size first: a batch of a million is refused before it is read.
    crate::domain::event::check_batch_size(items.len())?;
    let batch: Vec<NewEvent> = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let prefix = format!("events[{i}].");
            let channel = item.channel.ok_or_else(|| {
                DomainError::validation(format!("{prefix}channel"), "is required")
            })?;
            let channel = ChannelName::parse(&format!("{prefix}channel"), &channel)?;
            new_event(
                &identity,
                &prefix,
                channel,
                item.event_type.as_deref(),
                item.data,
                item.resource_type.as_deref(),
                item.resource_id.as_deref(),
            )
        })
        .collect::<Result<_, ApiError>>()?;
    let caller = super::principal(&req);
    if let Some(event) = batch
        .iter()
        .find(|e| !caller.write.allows(e.channel.as_str()))
    {
        return Err(
            DomainError::Forbidden(format!("this token may not write {}", event.channel)).into(),
        );
    }
    context
        .run(&state, move |tx, _| {
            let stored = events::publish_batch(tx, &batch)?;
            Ok(Answer::created(EventList { events: stored }))
        })
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only events with a larger id.
    #[param(value_type = i64, required = false)]
    after: Option<i64>,
    /// Only events with a smaller id.
    #[param(value_type = i64, required = false)]
    before: Option<i64>,
    /// 1–1000, default 100.
    #[param(value_type = i64, required = false, minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Comma-separated channel patterns, as for the stream.
    #[param(value_type = String, required = false)]
    channels: Option<String>,
    /// Only events of this type.
    #[serde(rename = "type")]
    #[param(value_type = String, required = false)]
    event_type: Option<String>,
    /// Only events about this resource.
    #[param(value_type = String, required = false)]
    resource_id: Option<String>,
    /// Only events of this agent.
    #[param(value_type = String, required = false)]
    agent_id: Option<String>,
    /// Only events of this session (a filter, not the caller's identity).
    #[param(value_type = String, required = false)]
    session_id: Option<String>,
    /// `asc` (default) or `desc`.
    #[param(value_type = Order, required = false)]
    order: Option<Order>,
    // `agent_id` and `session_id` are filters here; the token is `Identity`'s.
    #[serde(rename = "access_token")]
    #[param(ignore)]
    _access_token: Option<String>,
    #[serde(rename = "ticket")]
    #[param(ignore)]
    _ticket: Option<String>,
}

/// One page of `GET /api/events`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EventsPage {
    events: Vec<Event>,
    /// The last id of a full page (pass it as `after`, or `before` with
    /// `order=desc`); `null` when the page is the last.
    #[schema(required = true, value_type = Option<i64>)]
    next_cursor: Option<EventId>,
}

/// `GET /api/events`: one page of history, walking the primary key.
/// `next_cursor` is the last id of a full page: pass it as `after` (asc) or
/// `before` (desc) for the next one; `null` when the page is the last.
#[utoipa::path(
    get,
    path = "/api/events",
    tag = "events",
    params(ListQuery, super::described::IdentityHeaders),
    responses(
        (
            status = 200,
            description = "One page of the log",
            body = EventsPage,
            headers(("X-Event-Cursor" = i64, description = "The log's head id")),
        ),
        (status = 400, response = super::described::BadRequest),
        (status = 422, response = super::described::ValidationFailed),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn list_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    _identity: Identity,
    query: super::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(DomainError::validation("limit", format!("must be 1 to {MAX_PAGE}")).into());
    }
    let query = EventQuery {
        after: super::extract::event_id("after", q.after)?,
        before: super::extract::event_id("before", q.before)?,
        limit,
        channels: ChannelPattern::parse_list("channels", q.channels.as_deref())?,
        event_type: q
            .event_type
            .map(|t| EventType::parse("type", &t))
            .transpose()?
            .map(EventType::into_string),
        resource_id: q.resource_id,
        agent_id: q.agent_id,
        session_id: q.session_id,
        order: q.order.unwrap_or_default(),
        allowed: super::principal(&req).read.restriction(),
    };
    let (head_id, events) = state
        .store
        .read(move |conn| {
            Ok((
                store::events::head_id(conn)?,
                store::events::query(conn, &query)?,
            ))
        })
        .await?;
    let next_cursor = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    Ok(HttpResponse::Ok()
        .insert_header(("X-Event-Cursor", head_id.to_string()))
        .json(EventsPage {
            events,
            next_cursor,
        }))
}

/// `GET /api/events/{id}`.
#[utoipa::path(
    get,
    path = "/api/events/{id}",
    tag = "events",
    params(
        ("id" = i64, Path, description = "The event's id"),
        super::described::IdentityHeaders,
    ),
    responses(
        (status = 200, description = "The event", body = Event),
        (status = 400, response = super::described::BadRequest),
        (status = 404, response = super::described::NotFound),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn get_event(
    req: HttpRequest,
    state: web::Data<AppState>,
    _identity: Identity,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = EventId::checked("id", id.into_inner())?;
    let event = state
        .store
        .read(move |conn| store::events::find(conn, id))
        .await?
        .filter(|event| super::principal(&req).read.allows(&event.channel))
        .ok_or_else(|| DomainError::NotFound(format!("event {id}")))?;
    Ok(HttpResponse::Ok().json(event))
}
