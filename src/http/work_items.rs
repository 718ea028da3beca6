//! Features, tracks and spikes (`/api/{features|tracks|spikes}`) and their
//! compatibility twins under `/api/broadcast/…`: the REST surface of
//! `app::work_items`. Each change is one `ItemCommand` run through the
//! writer; the answer carries `ETag: "<version>"`. Their OpenAPI operations,
//! one set per collection, are `work_items/docs.rs`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod docs;

use super::answer::{replayed, snapshot, Answer, WriteContext};
use super::{AppState, Identity, JsonBody};
use crate::app::work_items::{self as use_case, ItemCommand, Target};
use crate::domain::ids::new_id;
use crate::domain::work_items::{ItemFields, Kind, Link, LinkType, Status, WorkItem};
use crate::domain::{DomainError, EventId, ResourceId, Timestamp};
use crate::http::error::ApiError;
use crate::store::work_items::{self as items, ListFilter};
use crate::store::{events, Reply};
use crate::views::{DeletedView, FeatureView, SpikeView, TrackView, WorkItemView};

fn kind(collection: &str) -> Result<Kind, ApiError> {
    Kind::from_collection(collection).ok_or(ApiError::RouteNotFound)
}

fn item_id(id: &str) -> Result<ResourceId, ApiError> {
    Ok(ResourceId::parse("id", id)?)
}

fn object(value: Value) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(DomainError::validation("body", "must be a JSON object").into()),
    }
}

/// Runs `command` on the live item `{collection}/{id}` and answers with the
/// item (`status`), or its tombstone after a delete.
async fn change_item(
    req: &HttpRequest,
    state: &AppState,
    identity: &Identity,
    raw: &[u8],
    (collection, id): (String, String),
    command: ItemCommand,
    status: StatusCode,
) -> Result<HttpResponse, ApiError> {
    let context = WriteContext::new(req, identity, raw)?;
    let target = Target {
        kind: kind(&collection)?,
        id: item_id(&id)?,
        if_match: context.if_match,
    };
    context
        .run(state, move |tx, actor| {
            let item = use_case::change(tx, actor, target, command)?;
            let view = if item.deleted {
                ItemOrTombstone::Tombstone(DeletedView::new(&item.id, item.version))
            } else {
                ItemOrTombstone::Item(Box::new(WorkItemView::from(&item)))
            };
            Ok(Answer {
                status: if item.deleted { StatusCode::OK } else { status },
                view,
                version: Some(item.version),
                remembered: true,
            })
        })
        .await
}

/// A change's answer: the item, or the tombstone a delete leaves.
#[derive(Serialize)]
#[serde(untagged)]
enum ItemOrTombstone {
    Item(Box<WorkItemView>),
    Tombstone(DeletedView),
}

// ----- the REST surface -----

/// `POST /api/{collection}` → 201 and `{kind}_created`.
pub async fn create_item(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    collection: web::Path<String>,
    body: JsonBody<Value>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind(&collection)?;
    let context = WriteContext::new(&req, &identity, &body.raw)?;
    let map = object(body.value)?;
    let id = match map.get("id") {
        None | Some(Value::Null) => new_id(kind.id_prefix()),
        Some(Value::String(id)) => item_id(id)?,
        Some(_) => return Err(DomainError::validation("id", "must be a string").into()),
    };
    let fields = ItemFields::parse(kind, &map, &["id"])?;
    context
        .run(&state, move |tx, actor| {
            let item = use_case::create(tx, actor, kind, id, fields)?;
            Ok(Answer::created(WorkItemView::from(&item)).versioned(item.version))
        })
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only items with this status.
    #[param(value_type = crate::domain::work_items::Status, required = false)]
    status: Option<String>,
    /// Only items of this track.
    #[param(value_type = String, required = false)]
    track_id: Option<String>,
    /// Only items with this tag.
    #[param(value_type = String, required = false)]
    tag: Option<String>,
    /// Only items changed by an event after this id.
    #[param(value_type = i64, required = false)]
    updated_since_id: Option<i64>,
    // Identity parameters, read by `Identity`.
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

/// `GET /api/{collection}` → `{"<collection>": [...], "cursor": N}` and `X-Event-Cursor`.
pub async fn list_items(
    state: web::Data<AppState>,
    _identity: Identity,
    collection: web::Path<String>,
    query: super::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind(&collection)?;
    let query = query.into_inner();
    let filter = ListFilter {
        status: query
            .status
            .as_deref()
            .map(|s| Status::parse("status", s))
            .transpose()?,
        track_id: query.track_id,
        tag: query.tag,
        updated_since_id: super::extract::event_id("updated_since_id", query.updated_since_id)?,
    };
    let (cursor, list) = state
        .store
        .read(move |conn| Ok((events::head_id(conn)?, items::list(conn, kind, &filter)?)))
        .await?;
    Ok(snapshot(
        cursor,
        None,
        &WorkItemList::new(kind, &list, cursor),
    ))
}

/// `GET /api/{collection}`: the list under the collection's name.
#[derive(Serialize)]
#[serde(untagged)]
pub enum WorkItemList {
    Features(FeatureList),
    Tracks(TrackList),
    Spikes(SpikeList),
}

/// `GET /api/features`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FeatureList {
    features: Vec<FeatureView>,
    /// The newest event this list includes (also `X-Event-Cursor`).
    #[schema(value_type = i64)]
    cursor: EventId,
}

/// `GET /api/tracks`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TrackList {
    tracks: Vec<TrackView>,
    /// The newest event this list includes (also `X-Event-Cursor`).
    #[schema(value_type = i64)]
    cursor: EventId,
}

/// `GET /api/spikes`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SpikeList {
    spikes: Vec<SpikeView>,
    /// The newest event this list includes (also `X-Event-Cursor`).
    #[schema(value_type = i64)]
    cursor: EventId,
}

impl WorkItemList {
    pub fn new(kind: Kind, items: &[WorkItem], cursor: EventId) -> Self {
        fn views<V: for<'a> From<&'a WorkItem>>(items: &[WorkItem]) -> Vec<V> {
            items.iter().map(V::from).collect()
        }
        match kind {
            Kind::Feature => WorkItemList::Features(FeatureList {
                features: views(items),
                cursor,
            }),
            Kind::Track => WorkItemList::Tracks(TrackList {
                tracks: views(items),
                cursor,
            }),
            Kind::Spike => WorkItemList::Spikes(SpikeList {
                spikes: views(items),
                cursor,
            }),
        }
    }
}

/// `GET /api/{collection}/{id}` with `ETag` and `X-Event-Cursor`.
pub async fn get_item(
    state: web::Data<AppState>,
    _identity: Identity,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let kind = kind(&collection)?;
    let id = item_id(&id)?;
    let lookup = id.clone();
    let (cursor, item) = state
        .store
        .read(move |conn| Ok((events::head_id(conn)?, items::load(conn, &lookup)?)))
        .await?;
    let item = item
        .filter(|item| item.kind == kind && !item.deleted)
        .ok_or_else(|| DomainError::NotFound(format!("{} {id}", kind.singular())))?;
    Ok(snapshot(
        cursor,
        Some(item.version),
        &WorkItemView::from(&item),
    ))
}

/// `PATCH /api/{collection}/{id}` → `{kind}_updated` (+ `status_changed`).
///
/// A partial update: the fields given change. Nothing is published when
/// nothing changed.
pub async fn patch_item(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<Value>,
) -> Result<HttpResponse, ApiError> {
    let fields = ItemFields::parse(kind(&path.0)?, &object(body.value)?, &[])?;
    let command = ItemCommand::Update(fields);
    change_item(
        &req,
        &state,
        &identity,
        &body.raw,
        path.into_inner(),
        command,
        StatusCode::OK,
    )
    .await
}

/// `DELETE /api/{collection}/{id}` → `{kind}_deleted`; the item becomes a tombstone.
pub async fn delete_item(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let command = ItemCommand::Delete;
    change_item(
        &req,
        &state,
        &identity,
        b"",
        path.into_inner(),
        command,
        StatusCode::OK,
    )
    .await
}

/// A status change. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"new_status": "done"}))]
pub struct StatusRequest {
    #[schema(value_type = crate::domain::work_items::Status)]
    new_status: Option<String>,
}

fn parse_status(request: &StatusRequest) -> Result<Status, ApiError> {
    let status = request
        .new_status
        .as_deref()
        .ok_or_else(|| DomainError::validation("new_status", "is required"))?;
    Ok(Status::parse("new_status", status)?)
}

/// `POST /api/{collection}/{id}/status` → `status_changed` (nothing when unchanged).
pub async fn set_status(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<StatusRequest>,
) -> Result<HttpResponse, ApiError> {
    let command = ItemCommand::SetStatus(parse_status(&body.value)?);
    change_item(
        &req,
        &state,
        &identity,
        &body.raw,
        path.into_inner(),
        command,
        StatusCode::OK,
    )
    .await
}

/// A link to another live work item (of any collection). Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"linked_feature_id": "feat-2", "link_type": "depends_on"}))]
pub struct LinkRequest {
    /// The linked item's id; not the item's own.
    #[schema(value_type = String)]
    linked_feature_id: Option<String>,
    #[schema(value_type = crate::domain::work_items::LinkType)]
    link_type: Option<String>,
}

fn parse_link(request: &LinkRequest, own_id: &ResourceId) -> Result<Link, ApiError> {
    let linked = request
        .linked_feature_id
        .as_deref()
        .ok_or_else(|| DomainError::validation("linked_feature_id", "is required"))?;
    let linked_id = ResourceId::parse("linked_feature_id", linked)?;
    if linked_id == *own_id {
        return Err(
            DomainError::validation("linked_feature_id", "an item cannot link to itself").into(),
        );
    }
    let link_type = request
        .link_type
        .as_deref()
        .ok_or_else(|| DomainError::validation("link_type", "is required"))?;
    Ok(Link {
        linked_id,
        link_type: LinkType::parse("link_type", link_type)?,
    })
}

/// `POST /api/{collection}/{id}/links` → `link_added` (nothing when it exists).
pub async fn add_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<LinkRequest>,
) -> Result<HttpResponse, ApiError> {
    let command = ItemCommand::Link(parse_link(&body.value, &item_id(&path.1)?)?);
    change_item(
        &req,
        &state,
        &identity,
        &body.raw,
        path.into_inner(),
        command,
        StatusCode::CREATED,
    )
    .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveLinkQuery {
    /// Only the link of this type; without it every link to `linked_id` goes.
    #[param(value_type = crate::domain::work_items::LinkType, required = false)]
    link_type: Option<String>,
}

/// `DELETE /api/{collection}/{id}/links/{linked_id}?link_type=…` → `link_removed`.
/// Without `link_type`, every link to `linked_id` goes.
pub async fn remove_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String, String)>,
    query: super::Query<RemoveLinkQuery>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id, linked_id) = path.into_inner();
    let command = ItemCommand::Unlink {
        linked_id: ResourceId::parse("linked_id", &linked_id)?,
        link_type: query
            .link_type
            .as_deref()
            .map(|t| LinkType::parse("link_type", t))
            .transpose()?,
    };
    change_item(
        &req,
        &state,
        &identity,
        b"",
        (collection, id),
        command,
        StatusCode::OK,
    )
    .await
}

/// A comment; its author is the caller's agent. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentRequest {
    /// Not blank; at most 100000 characters.
    #[schema(value_type = String, min_length = 1, max_length = 100000)]
    comment_text: Option<String>,
}

/// `POST /api/{collection}/{id}/comments` → 201 and `comment_added`.
pub async fn add_comment(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<CommentRequest>,
) -> Result<HttpResponse, ApiError> {
    let text = crate::domain::work_items::comment_text(body.value.comment_text.clone())?;
    let command = ItemCommand::Comment(text);
    change_item(
        &req,
        &state,
        &identity,
        &body.raw,
        path.into_inner(),
        command,
        StatusCode::CREATED,
    )
    .await
}

// ----- the compatibility broadcast API -----

/// The compatibility answer: `{success, event_id, clients_notified, timestamp}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = BroadcastResult)]
pub struct BroadcastView {
    /// Always `true`.
    success: bool,
    /// The first event published; `null` when nothing changed.
    #[schema(required = true, value_type = Option<i64>)]
    event_id: Option<EventId>,
    /// How many streams the first event was handed to (0 in a replayed answer).
    clients_notified: usize,
    #[schema(value_type = String, format = DateTime)]
    timestamp: Timestamp,
}

/// Runs `command` on the item, creating it first (title = its id) when
/// missing. The stored answer says `clients_notified: 0` (a replay notifies
/// nobody); a fresh answer gets the real count of the first event.
async fn broadcast(
    req: &HttpRequest,
    state: &AppState,
    identity: &Identity,
    raw: &[u8],
    (collection, id): (String, String),
    command: ItemCommand,
) -> Result<HttpResponse, ApiError> {
    let kind = kind(&collection)?;
    let id = item_id(&id)?;
    let context = WriteContext::new(req, identity, raw)?;
    let reply = context
        .run_raw(state, move |tx, actor| {
            let done = use_case::broadcast(tx, actor, kind, id, command)?;
            Ok(Answer::ok(BroadcastView {
                success: true,
                event_id: done.event_id,
                clients_notified: 0,
                timestamp: done.timestamp,
            }))
        })
        .await?;
    Ok(match reply {
        Reply::Fresh(committed) => {
            let mut answer = committed.value;
            answer.view.clients_notified = committed.deliveries.first().copied().unwrap_or(0);
            answer.into_response()
        }
        Reply::Replayed(stored) => replayed(stored),
    })
}

/// `POST /api/broadcast/{collection}/{id}`: update fields → `{kind}_updated`.
///
/// Compatibility API: like `PATCH /api/{collection}/{id}`, but creates the
/// {kind} (title = its id) when it does not exist, takes no `If-Match`, and
/// answers `{success, event_id, clients_notified, timestamp}`. An `id` field
/// in the body is ignored.
pub async fn broadcast_update(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<Value>,
) -> Result<HttpResponse, ApiError> {
    let fields = ItemFields::parse(kind(&path.0)?, &object(body.value)?, &["id"])?;
    let command = ItemCommand::Update(fields);
    broadcast(
        &req,
        &state,
        &identity,
        &body.raw,
        path.into_inner(),
        command,
    )
    .await
}

/// `POST /api/broadcast/{collection}/{id}/status` → `status_changed`.
///
/// Compatibility API: creates the {kind} when it does not exist.
pub async fn broadcast_status(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<StatusRequest>,
) -> Result<HttpResponse, ApiError> {
    let command = ItemCommand::SetStatus(parse_status(&body.value)?);
    broadcast(
        &req,
        &state,
        &identity,
        &body.raw,
        path.into_inner(),
        command,
    )
    .await
}

/// `POST /api/broadcast/{collection}/{id}/links` → `link_added`.
///
/// Compatibility API: creates the {kind} when it does not exist.
pub async fn broadcast_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<LinkRequest>,
) -> Result<HttpResponse, ApiError> {
    let command = ItemCommand::Link(parse_link(&body.value, &item_id(&path.1)?)?);
    broadcast(
        &req,
        &state,
        &identity,
        &body.raw,
        path.into_inner(),
        command,
    )
    .await
}
