//! Features, tracks and spikes (`/api/{features|tracks|spikes}`), their
//! compatibility twins under `/api/broadcast/…`, and `/api/sync`.
//!
//! Every change runs as one writer job: load the item, check `If-Match`,
//! apply the domain rule, append its events, write the row with the id of its
//! last event. The answer carries `ETag: "<version>"`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::events::{committed_response, versioned_response};
use super::{AppState, Identity, JsonBody};
use crate::domain::work_items::{
    self as rules, Comment, IfMatch, ItemChange, ItemFields, Kind, Link, LinkType, Status, WorkItem,
};
use crate::domain::{AgentId, DomainError, ResourceId, SessionId};
use crate::error::ApiError;
use crate::store::work_items::{self as items, ListFilter};
use crate::store::{events, Committed, Outcome, StoreError, Tx};

fn kind(collection: &str) -> Result<Kind, ApiError> {
    Kind::from_collection(collection).ok_or(ApiError::RouteNotFound)
}

fn item_id(id: &str) -> Result<String, ApiError> {
    Ok(ResourceId::parse("id", id)?.into_string())
}

pub(super) fn if_match(req: &HttpRequest) -> Result<Option<IfMatch>, ApiError> {
    req.headers()
        .get(header::IF_MATCH)
        .map(|value| {
            let value = value
                .to_str()
                .map_err(|_| ApiError::bad_request("If-Match must be an ETag like \"3\""))?;
            Ok(IfMatch::parse(value)?)
        })
        .transpose()
}

fn object(value: Value) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(DomainError::validation("body", "must be a JSON object").into()),
    }
}

/// Who acts, as the writer jobs need it.
#[derive(Clone)]
struct Actor {
    agent: AgentId,
    session: Option<SessionId>,
}

impl From<&Identity> for Actor {
    fn from(identity: &Identity) -> Self {
        Actor {
            agent: identity.agent_id.clone(),
            session: identity.session_id.clone(),
        }
    }
}

/// Appends the events of `changes` and writes the item's row. Returns the
/// appended events' ids and timestamps.
fn record(
    tx: &mut Tx<'_>,
    item: &WorkItem,
    changes: &[ItemChange],
    actor: &Actor,
) -> Result<Vec<(i64, String)>, StoreError> {
    let mut appended = Vec::with_capacity(changes.len());
    for change in changes {
        let event = rules::item_event(item, change, &actor.agent, actor.session.as_ref())?;
        let stored = tx.append(&event)?;
        appended.push((stored.id, stored.timestamp.clone()));
    }
    if let Some((last, _)) = appended.last() {
        items::save(tx.conn(), item, *last)?;
    }
    Ok(appended)
}

/// The live item `id` of `kind`, or 404.
fn load_live(tx: &mut Tx<'_>, kind: Kind, id: &str) -> Result<WorkItem, StoreError> {
    items::load(tx.conn(), id)?
        .filter(|item| item.kind == kind && !item.deleted)
        .ok_or_else(|| DomainError::NotFound(format!("{} {id}", kind.singular())).into())
}

/// A live item of any kind (a link target), or a validation error on `field`.
fn require_target(
    tx: &mut Tx<'_>,
    field: &str,
    id: &str,
    want: Option<Kind>,
) -> Result<(), StoreError> {
    let found = items::load(tx.conn(), id)?.filter(|item| !item.deleted);
    match (found, want) {
        (Some(item), Some(kind)) if item.kind != kind => Err(DomainError::validation(
            field,
            format!(
                "{id} is a {}, not a {}",
                item.kind.singular(),
                kind.singular()
            ),
        )
        .into()),
        (Some(_), _) => Ok(()),
        (None, _) => Err(DomainError::validation(field, format!("no work item {id}")).into()),
    }
}

fn check_track(tx: &mut Tx<'_>, fields: &ItemFields) -> Result<(), StoreError> {
    match &fields.track_id {
        Some(Some(track)) => require_target(tx, "track_id", track, Some(Kind::Track)),
        _ => Ok(()),
    }
}

fn updated_changes(changed: Vec<&'static str>, old_status: Status) -> Vec<ItemChange> {
    if changed.is_empty() {
        return Vec::new();
    }
    let status_changed = changed.contains(&"status");
    let mut changes = vec![ItemChange::Updated { changed }];
    if status_changed {
        changes.push(ItemChange::StatusChanged {
            old: Some(old_status),
        });
    }
    changes
}

// ----- the REST surface -----

/// `POST /api/{collection}` → 201 and `{kind}_created`.
#[utoipa::path(
    post,
    path = "/api/{collection}",
    tag = "{collection}",
    operation_id = "create_{kind}",
    params(super::openapi::IdentityHeaders, super::openapi::IdempotencyHeader),
    request_body(content = ref("#/components/schemas/{Kind}Create")),
    responses(
        (status = 201, description = "The new {kind}", body = ref("#/components/schemas/{Kind}"), headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 409, description = "`already_exists`: a live work item has this id", body = super::openapi::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn create_item(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    collection: web::Path<String>,
    body: JsonBody<Value>,
) -> Result<HttpResponse, ApiError> {
    let kind = kind(&collection)?;
    let claim = identity.idempotency_claim(&req, &body.raw)?;
    let map = object(body.value)?;
    let id = match map.get("id") {
        None | Some(Value::Null) => rules::new_id(kind.id_prefix()),
        Some(Value::String(id)) => item_id(id)?,
        Some(_) => return Err(DomainError::validation("id", "must be a string").into()),
    };
    let fields = ItemFields::parse(kind, &map, &["id"])?;
    if fields.title.is_none() {
        return Err(DomainError::validation("title", "is required").into());
    }
    let actor = Actor::from(&identity);
    let committed = state
        .writer
        .write(claim, move |tx| {
            let previous = items::load(tx.conn(), &id)?;
            if let Some(existing) = previous.as_ref().filter(|item| !item.deleted) {
                return Err(DomainError::Conflict {
                    code: "already_exists",
                    message: format!("{id} already exists as a {}", existing.kind.singular()),
                    details: json!({ "id": id }),
                }
                .into());
            }
            check_track(tx, &fields)?;
            let now = tx.now().to_owned();
            let item = rules::create_item(kind, id, fields, previous.as_ref(), &actor.agent, &now)?;
            record(tx, &item, &[ItemChange::Created], &actor)?;
            Ok(Outcome::new(201, item.to_json()))
        })
        .await?;
    Ok(versioned_response(committed))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only items with this status.
    #[param(value_type = super::openapi::WorkItemStatus, required = false)]
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
#[utoipa::path(
    get,
    path = "/api/{collection}",
    tag = "{collection}",
    operation_id = "list_{collection}",
    params(ListQuery, super::openapi::IdentityHeaders),
    responses(
        (status = 200, description = "The live {collection}", body = ref("#/components/schemas/{Kind}List"), headers(("X-Event-Cursor" = i64, description = "The newest event the list includes"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
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
        updated_since_id: super::extract::non_negative("updated_since_id", query.updated_since_id)?,
    };
    let (cursor, list) = state
        .store
        .read(move |conn| Ok((events::head_id(conn)?, items::list(conn, kind, &filter)?)))
        .await?;
    let list: Vec<Value> = list.iter().map(WorkItem::to_json).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("X-Event-Cursor", cursor.to_string()))
        .json(json!({ kind.collection(): list, "cursor": cursor })))
}

/// `GET /api/{collection}/{id}` with `ETag` and `X-Event-Cursor`.
#[utoipa::path(
    get,
    path = "/api/{collection}/{id}",
    tag = "{collection}",
    operation_id = "get_{kind}",
    params(("id" = String, Path, description = "The {kind}'s id"), super::openapi::IdentityHeaders),
    responses(
        (
            status = 200,
            description = "The {kind}",
            body = ref("#/components/schemas/{Kind}"),
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
    Ok(HttpResponse::Ok()
        .insert_header(("X-Event-Cursor", cursor.to_string()))
        .insert_header((header::ETAG, format!("\"{}\"", item.version)))
        .json(item.to_json()))
}

/// Runs `op` on the live item in one writer job, after `If-Match`.
async fn change_item<F>(
    state: &AppState,
    identity: &Identity,
    req: &HttpRequest,
    raw: &[u8],
    kind: Kind,
    id: String,
    op: F,
) -> Result<Committed, ApiError>
where
    F: FnOnce(&mut Tx<'_>, &mut WorkItem, &Actor) -> Result<(u16, Vec<ItemChange>), StoreError>
        + Send
        + 'static,
{
    let claim = identity.idempotency_claim(req, raw)?;
    let precondition = if_match(req)?;
    let actor = Actor::from(identity);
    Ok(state
        .writer
        .write(claim, move |tx| {
            let mut item = load_live(tx, kind, &id)?;
            if let Some(precondition) = precondition {
                precondition.check(&item)?;
            }
            let (status, changes) = op(tx, &mut item, &actor)?;
            record(tx, &item, &changes, &actor)?;
            let body = if item.deleted {
                json!({ "id": item.id, "version": item.version, "deleted": true })
            } else {
                item.to_json()
            };
            Ok(Outcome::new(status, body))
        })
        .await?)
}

/// `PATCH /api/{collection}/{id}` → `{kind}_updated` (+ `status_changed`).
///
/// A partial update: the fields given change. Nothing is published when
/// nothing changed.
#[utoipa::path(
    patch,
    path = "/api/{collection}/{id}",
    tag = "{collection}",
    operation_id = "update_{kind}",
    params(("id" = String, Path, description = "The {kind}'s id"), super::openapi::IdentityHeaders, super::openapi::IfMatchHeader, super::openapi::IdempotencyHeader),
    request_body(content = ref("#/components/schemas/{Kind}Patch")),
    responses(
        (status = 200, description = "The {kind} as it is now", body = ref("#/components/schemas/{Kind}"), headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn patch_item(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<Value>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let kind = kind(&collection)?;
    let fields = ItemFields::parse(kind, &object(body.value)?, &[])?;
    let committed = change_item(
        &state,
        &identity,
        &req,
        &body.raw,
        kind,
        item_id(&id)?,
        move |tx, item, actor| {
            check_track(tx, &fields)?;
            let old_status = item.status;
            let now = tx.now().to_owned();
            let changed = rules::update_item(item, fields, &actor.agent, &now);
            Ok((200, updated_changes(changed, old_status)))
        },
    )
    .await?;
    Ok(versioned_response(committed))
}

/// `DELETE /api/{collection}/{id}` → `{kind}_deleted`; the item becomes a tombstone.
#[utoipa::path(
    delete,
    path = "/api/{collection}/{id}",
    tag = "{collection}",
    operation_id = "delete_{kind}",
    params(("id" = String, Path, description = "The {kind}'s id"), super::openapi::IdentityHeaders, super::openapi::IfMatchHeader, super::openapi::IdempotencyHeader),
    responses(
        (status = 200, description = "The tombstone", body = super::openapi::DeletedResource, headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn delete_item(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let kind = kind(&collection)?;
    let committed = change_item(
        &state,
        &identity,
        &req,
        b"",
        kind,
        item_id(&id)?,
        move |tx, item, actor| {
            items::delete_children(tx.conn(), &item.id)?;
            let now = tx.now().to_owned();
            rules::delete_item(item, &actor.agent, &now);
            Ok((200, vec![ItemChange::Deleted]))
        },
    )
    .await?;
    Ok(versioned_response(committed))
}

/// A status change. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"new_status": "done"}))]
pub struct StatusRequest {
    #[schema(value_type = super::openapi::WorkItemStatus)]
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
#[utoipa::path(
    post,
    path = "/api/{collection}/{id}/status",
    tag = "{collection}",
    operation_id = "set_{kind}_status",
    params(("id" = String, Path, description = "The {kind}'s id"), super::openapi::IdentityHeaders, super::openapi::IfMatchHeader, super::openapi::IdempotencyHeader),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "The {kind} as it is now", body = ref("#/components/schemas/{Kind}"), headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn set_status(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<StatusRequest>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let kind = kind(&collection)?;
    let status = parse_status(&body.value)?;
    let committed = change_item(
        &state,
        &identity,
        &req,
        &body.raw,
        kind,
        item_id(&id)?,
        move |tx, item, actor| {
            let now = tx.now().to_owned();
            Ok((200, status_changes(item, status, &actor.agent, &now)))
        },
    )
    .await?;
    Ok(versioned_response(committed))
}

fn status_changes(
    item: &mut WorkItem,
    status: Status,
    agent: &AgentId,
    now: &str,
) -> Vec<ItemChange> {
    if item.status == status {
        return Vec::new();
    }
    let old = rules::change_status(item, status, agent, now);
    vec![ItemChange::StatusChanged { old: Some(old) }]
}

/// A link to another live work item (of any collection). Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"linked_feature_id": "feat-2", "link_type": "depends_on"}))]
pub struct LinkRequest {
    /// The linked item's id; not the item's own.
    #[schema(value_type = String)]
    linked_feature_id: Option<String>,
    #[schema(value_type = super::openapi::LinkType)]
    link_type: Option<String>,
}

fn parse_link(request: &LinkRequest, own_id: &str) -> Result<Link, ApiError> {
    let linked = request
        .linked_feature_id
        .as_deref()
        .ok_or_else(|| DomainError::validation("linked_feature_id", "is required"))?;
    let linked_id = ResourceId::parse("linked_feature_id", linked)?.into_string();
    if linked_id == own_id {
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

fn link_changes(
    tx: &mut Tx<'_>,
    item: &mut WorkItem,
    link: Link,
    actor: &Actor,
) -> Result<Vec<ItemChange>, StoreError> {
    require_target(tx, "linked_feature_id", &link.linked_id, None)?;
    let now = tx.now().to_owned();
    if !rules::add_link(item, link.clone(), &actor.agent, &now) {
        return Ok(Vec::new());
    }
    items::insert_link(tx.conn(), &item.id, &link, actor.agent.as_str(), &now)?;
    Ok(vec![ItemChange::LinkAdded(link)])
}

/// `POST /api/{collection}/{id}/links` → `link_added` (nothing when it exists).
#[utoipa::path(
    post,
    path = "/api/{collection}/{id}/links",
    tag = "{collection}",
    operation_id = "add_{kind}_link",
    params(("id" = String, Path, description = "The {kind}'s id"), super::openapi::IdentityHeaders, super::openapi::IfMatchHeader, super::openapi::IdempotencyHeader),
    request_body = LinkRequest,
    responses(
        (status = 201, description = "The {kind} with the link (also when it already had it)", body = ref("#/components/schemas/{Kind}"), headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn add_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<LinkRequest>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let kind = kind(&collection)?;
    let id = item_id(&id)?;
    let link = parse_link(&body.value, &id)?;
    let committed = change_item(
        &state,
        &identity,
        &req,
        &body.raw,
        kind,
        id,
        move |tx, item, actor| Ok((201, link_changes(tx, item, link, actor)?)),
    )
    .await?;
    Ok(versioned_response(committed))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveLinkQuery {
    /// Only the link of this type; without it every link to `linked_id` goes.
    #[param(value_type = super::openapi::LinkType, required = false)]
    link_type: Option<String>,
}

/// `DELETE /api/{collection}/{id}/links/{linked_id}?link_type=…` → `link_removed`.
/// Without `link_type`, every link to `linked_id` goes.
#[utoipa::path(
    delete,
    path = "/api/{collection}/{id}/links/{linked_id}",
    tag = "{collection}",
    operation_id = "remove_{kind}_link",
    params(
        ("id" = String, Path, description = "The {kind}'s id"),
        ("linked_id" = String, Path, description = "The linked item's id"),
        RemoveLinkQuery,
        super::openapi::IdentityHeaders,
        super::openapi::IfMatchHeader,
        super::openapi::IdempotencyHeader,
    ),
    responses(
        (status = 200, description = "The {kind} without the link", body = ref("#/components/schemas/{Kind}"), headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn remove_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String, String)>,
    query: super::Query<RemoveLinkQuery>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id, linked_id) = path.into_inner();
    let kind = kind(&collection)?;
    let linked_id = ResourceId::parse("linked_id", &linked_id)?.into_string();
    let link_type = query
        .link_type
        .as_deref()
        .map(|t| LinkType::parse("link_type", t))
        .transpose()?;
    let committed = change_item(
        &state,
        &identity,
        &req,
        b"",
        kind,
        item_id(&id)?,
        move |tx, item, actor| {
            let doomed: Vec<Link> = item
                .links
                .iter()
                .filter(|l| l.linked_id == linked_id && link_type.is_none_or(|t| t == l.link_type))
                .cloned()
                .collect();
            if doomed.is_empty() {
                return Err(
                    DomainError::NotFound(format!("link from {} to {linked_id}", item.id)).into(),
                );
            }
            let now = tx.now().to_owned();
            let mut changes = Vec::new();
            for link in doomed {
                rules::remove_link(item, &link, &actor.agent, &now);
                items::delete_link(tx.conn(), &item.id, &link)?;
                changes.push(ItemChange::LinkRemoved(link));
            }
            Ok((200, changes))
        },
    )
    .await?;
    Ok(versioned_response(committed))
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
#[utoipa::path(
    post,
    path = "/api/{collection}/{id}/comments",
    tag = "{collection}",
    operation_id = "add_{kind}_comment",
    params(("id" = String, Path, description = "The {kind}'s id"), super::openapi::IdentityHeaders, super::openapi::IfMatchHeader, super::openapi::IdempotencyHeader),
    request_body = CommentRequest,
    responses(
        (status = 201, description = "The {kind} with the comment", body = ref("#/components/schemas/{Kind}"), headers(("ETag" = String, description = "`\"<version>\"`"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 404, response = super::openapi::NotFound),
        (status = 412, response = super::openapi::PreconditionFailed),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn add_comment(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<CommentRequest>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let kind = kind(&collection)?;
    let text = body
        .value
        .comment_text
        .clone()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            DomainError::validation("comment_text", "is required and must not be empty")
        })?;
    if text.chars().count() > 100_000 {
        return Err(
            DomainError::validation("comment_text", "must be at most 100000 characters").into(),
        );
    }
    let committed = change_item(
        &state,
        &identity,
        &req,
        &body.raw,
        kind,
        item_id(&id)?,
        move |tx, item, actor| {
            let now = tx.now().to_owned();
            let comment = Comment {
                id: rules::new_id("cmt-"),
                comment_text: text,
                author: actor.agent.as_str().to_owned(),
                created_at: now.clone(),
            };
            items::insert_comment(tx.conn(), &item.id, &comment)?;
            rules::add_comment(item, comment.clone(), &actor.agent, &now);
            Ok((201, vec![ItemChange::CommentAdded(comment)]))
        },
    )
    .await?;
    Ok(versioned_response(committed))
}

// ----- the compatibility broadcast API -----

/// The compatibility answer: `{success, event_id, clients_notified, timestamp}`.
/// The job stores it with `clients_notified: 0` (a replayed answer notifies
/// nobody); a fresh answer gets the real count of the first event.
fn broadcast_outcome(appended: &[(i64, String)], now: &str) -> Outcome {
    let (event_id, timestamp) = match appended.first() {
        Some((id, ts)) => (Some(*id), ts.clone()),
        None => (None, now.to_owned()),
    };
    Outcome::new(
        200,
        json!({
            "success": true,
            "event_id": event_id,
            "clients_notified": 0,
            "timestamp": timestamp,
        }),
    )
}

fn broadcast_response(committed: Committed) -> HttpResponse {
    if committed.replayed {
        return committed_response(committed);
    }
    let notified = committed.deliveries.first().copied().unwrap_or(0);
    let mut body: Value = serde_json::from_str(&committed.body).unwrap_or_else(|_| json!({}));
    body["clients_notified"] = json!(notified);
    HttpResponse::Ok().json(body)
}

/// Runs `op` on the item, creating it first (title = its id) when missing.
async fn broadcast<F>(
    req: &HttpRequest,
    state: &AppState,
    identity: &Identity,
    raw: &[u8],
    kind: Kind,
    id: String,
    op: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(&mut Tx<'_>, &mut WorkItem, &Actor) -> Result<Vec<ItemChange>, StoreError>
        + Send
        + 'static,
{
    let claim = identity.idempotency_claim(req, raw)?;
    let actor = Actor::from(identity);
    let committed = state
        .writer
        .write(claim, move |tx| {
            let now = tx.now().to_owned();
            let (mut item, is_new) = match items::load(tx.conn(), &id)? {
                Some(item) if !item.deleted && item.kind == kind => (item, false),
                Some(item) if !item.deleted => {
                    return Err(DomainError::Conflict {
                        code: "conflict",
                        message: format!(
                            "{id} is a {}, not a {}",
                            item.kind.singular(),
                            kind.singular()
                        ),
                        details: json!({ "id": id }),
                    }
                    .into())
                }
                previous => {
                    let fields = ItemFields {
                        title: Some(id.clone()),
                        ..Default::default()
                    };
                    let item = rules::create_item(
                        kind,
                        id.clone(),
                        fields,
                        previous.as_ref(),
                        &actor.agent,
                        &now,
                    )?;
                    // Stored now so that links can refer to it; `record` rewrites it.
                    items::save(tx.conn(), &item, 0)?;
                    (item, true)
                }
            };
            let created_version = item.version;
            let mut changes = op(tx, &mut item, &actor)?;
            if is_new {
                // Creating the item and changing it are one version.
                item.version = created_version;
                for change in &mut changes {
                    if let ItemChange::StatusChanged { old } = change {
                        *old = None;
                    }
                }
                if changes.is_empty() {
                    changes.push(ItemChange::Updated {
                        changed: Vec::new(),
                    });
                }
            }
            let appended = record(tx, &item, &changes, &actor)?;
            Ok(broadcast_outcome(&appended, &now))
        })
        .await?;
    Ok(broadcast_response(committed))
}

/// `POST /api/broadcast/{collection}/{id}`: update fields → `{kind}_updated`.
///
/// Compatibility API: like `PATCH /api/{collection}/{id}`, but creates the
/// {kind} (title = its id) when it does not exist, takes no `If-Match`, and
/// answers `{success, event_id, clients_notified, timestamp}`. An `id` field
/// in the body is ignored.
#[utoipa::path(
    post,
    path = "/api/broadcast/{collection}/{id}",
    tag = "broadcast",
    operation_id = "broadcast_{kind}_update",
    params(("id" = String, Path, description = "The {kind}'s id"), super::openapi::IdentityHeaders, super::openapi::IdempotencyHeader),
    request_body(content = ref("#/components/schemas/{Kind}Patch")),
    responses(
        (status = 200, description = "Done; the {kind} was created first when it did not exist", body = super::openapi::BroadcastResult),
        (status = 400, response = super::openapi::BadRequest),
        (status = 409, description = "`conflict`: the id belongs to a live item of another collection", body = super::openapi::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn broadcast_update(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<Value>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let kind = kind(&collection)?;
    let fields = ItemFields::parse(kind, &object(body.value)?, &["id"])?;
    broadcast(
        &req,
        &state,
        &identity,
        &body.raw,
        kind,
        item_id(&id)?,
        move |tx, item, actor| {
            check_track(tx, &fields)?;
            let old_status = item.status;
            let now = tx.now().to_owned();
            let changed = rules::update_item(item, fields, &actor.agent, &now);
            Ok(updated_changes(changed, old_status))
        },
    )
    .await
}

/// `POST /api/broadcast/{collection}/{id}/status` → `status_changed`.
///
/// Compatibility API: creates the {kind} when it does not exist.
#[utoipa::path(
    post,
    path = "/api/broadcast/{collection}/{id}/status",
    tag = "broadcast",
    operation_id = "broadcast_{kind}_status",
    params(("id" = String, Path, description = "The {kind}'s id"), super::openapi::IdentityHeaders, super::openapi::IdempotencyHeader),
    request_body = StatusRequest,
    responses(
        (status = 200, description = "Done; the {kind} was created first when it did not exist", body = super::openapi::BroadcastResult),
        (status = 400, response = super::openapi::BadRequest),
        (status = 409, description = "`conflict`: the id belongs to a live item of another collection", body = super::openapi::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn broadcast_status(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<StatusRequest>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let kind = kind(&collection)?;
    let status = parse_status(&body.value)?;
    broadcast(
        &req,
        &state,
        &identity,
        &body.raw,
        kind,
        item_id(&id)?,
        move |tx, item, actor| {
            let now = tx.now().to_owned();
            Ok(status_changes(item, status, &actor.agent, &now))
        },
    )
    .await
}

/// `POST /api/broadcast/{collection}/{id}/links` → `link_added`.
///
/// Compatibility API: creates the {kind} when it does not exist.
#[utoipa::path(
    post,
    path = "/api/broadcast/{collection}/{id}/links",
    tag = "broadcast",
    operation_id = "broadcast_{kind}_link",
    params(("id" = String, Path, description = "The {kind}'s id"), super::openapi::IdentityHeaders, super::openapi::IdempotencyHeader),
    request_body = LinkRequest,
    responses(
        (status = 200, description = "Done; the {kind} was created first when it did not exist", body = super::openapi::BroadcastResult),
        (status = 400, response = super::openapi::BadRequest),
        (status = 409, description = "`conflict`: the id belongs to a live item of another collection", body = super::openapi::ErrorBody),
        (status = 413, response = super::openapi::PayloadTooLarge),
        (status = 415, response = super::openapi::UnsupportedMediaType),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn broadcast_link(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
    body: JsonBody<LinkRequest>,
) -> Result<HttpResponse, ApiError> {
    let (collection, id) = path.into_inner();
    let kind = kind(&collection)?;
    let id = item_id(&id)?;
    let link = parse_link(&body.value, &id)?;
    broadcast(
        &req,
        &state,
        &identity,
        &body.raw,
        kind,
        id,
        move |tx, item, actor| link_changes(tx, item, link, actor),
    )
    .await
}
