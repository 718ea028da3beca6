//! Generic publish (one event or an all-or-nothing batch) and the history API.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{AppState, Identity, JsonBody};
use crate::domain::{
    ChannelName, ChannelPattern, DomainError, Event, EventType, NewEvent, ResourceId, ResourceType,
};
use crate::error::ApiError;
use crate::store::{events, Committed, EventQuery, Order, Outcome};

/// The most events one batch may hold.
pub const MAX_BATCH: usize = 1000;
/// The largest page of `GET /api/events`.
pub const MAX_PAGE: i64 = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    #[serde(rename = "type")]
    event_type: Option<String>,
    /// Missing → `{}`; `null` is kept as `null`.
    #[serde(default = "empty_object")]
    data: Box<RawValue>,
    resource_type: Option<String>,
    resource_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    channel: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    #[serde(default = "empty_object")]
    data: Box<RawValue>,
    resource_type: Option<String>,
    resource_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
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
    if channel.is_reserved() {
        return Err(DomainError::Forbidden(format!(
            "channel {channel:?} is written only by the server; publish on another channel"
        ))
        .into());
    }
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

/// Sends a committed write's answer (the stored one on an idempotent retry).
pub fn committed_response(committed: Committed) -> HttpResponse {
    let status = StatusCode::from_u16(committed.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    if committed.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response
        .content_type("application/json")
        .body(committed.body)
}

#[derive(Serialize)]
struct StoredEvents<'a> {
    events: &'a [Event],
}

/// `POST /api/channels/{channel}/events` → 201 with the stored event.
pub async fn publish_event(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    channel: web::Path<String>,
    body: JsonBody<PublishRequest>,
) -> Result<HttpResponse, ApiError> {
    let channel = ChannelName::parse("channel", &channel)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let claim = identity.idempotency_claim(&req, &body.raw)?;
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
    let committed = state
        .writer
        .write(claim, move |tx| {
            let stored = tx.append(&event)?;
            Outcome::serialize(201, stored)
        })
        .await?;
    Ok(committed_response(committed))
}

/// `POST /api/events/batch` → 201 `{"events": [...]}`, all or nothing, with
/// consecutive ids (one transaction, one writer).
pub async fn publish_batch(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    body: JsonBody<BatchRequest>,
) -> Result<HttpResponse, ApiError> {
    let claim = identity.idempotency_claim(&req, &body.raw)?;
    let items = body
        .value
        .events
        .ok_or_else(|| DomainError::validation("events", "is required"))?;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(DomainError::validation(
            "events",
            format!("must hold 1 to {MAX_BATCH} events"),
        )
        .into());
    }
    let events: Vec<NewEvent> = items
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
    if let Some(event) = events
        .iter()
        .find(|e| !caller.write.allows(e.channel.as_str()))
    {
        return Err(
            DomainError::Forbidden(format!("this token may not write {}", event.channel)).into(),
        );
    }
    let committed = state
        .writer
        .write(claim, move |tx| {
            let mut stored = Vec::with_capacity(events.len());
            for event in &events {
                stored.push(tx.append(event)?.clone());
            }
            Outcome::serialize(201, &StoredEvents { events: &stored })
        })
        .await?;
    Ok(committed_response(committed))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    after: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
    channels: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    resource_id: Option<String>,
    agent_id: Option<String>,
    session_id: Option<String>,
    order: Option<Order>,
    // `agent_id` and `session_id` are filters here; the token is `Identity`'s.
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

#[derive(Serialize)]
struct EventsPage {
    events: Vec<Event>,
    next_cursor: Option<i64>,
}

/// `GET /api/events`: one page of history, walking the primary key.
/// `next_cursor` is the last id of a full page: pass it as `after` (asc) or
/// `before` (desc) for the next one; `null` when the page is the last.
pub async fn list_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    _identity: Identity,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = query.into_inner();
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(DomainError::validation("limit", format!("must be 1 to {MAX_PAGE}")).into());
    }
    let query = EventQuery {
        after: q.after,
        before: q.before,
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
        .read(move |conn| Ok((events::head_id(conn)?, events::query(conn, &query)?)))
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
pub async fn get_event(
    req: HttpRequest,
    state: web::Data<AppState>,
    _identity: Identity,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let event = state
        .store
        .read(move |conn| events::find(conn, id))
        .await?
        .filter(|event| super::principal(&req).read.allows(&event.channel))
        .ok_or_else(|| DomainError::NotFound(format!("event {id}")))?;
    Ok(HttpResponse::Ok().json(event))
}
