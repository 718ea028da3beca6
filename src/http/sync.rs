//! `GET /api/sync?cursor=N&collections=…`: every resource changed after event
//! N, tombstones of deleted ones, and the new cursor. Everything is read in
//! one snapshot, so the cursor and the data agree exactly. The answer comes
//! from the resources' rows (each remembers the id of its last event), not
//! from the log: it stays exact however old the cursor is.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{AppState, Identity};
use crate::domain::views::{ConversationView, FileMetadataView, WorkItemView};
use crate::domain::work_items::{Kind, WorkItem};
use crate::domain::{DomainError, EventId, Timestamp};
use crate::error::ApiError;
use crate::store::{conversations, events, files, work_items};

/// A collection `/api/sync` can report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    WorkItems(Kind),
    Files,
    Conversations,
}

const NAMES: &str = "features, tracks, spikes, files, conversations";

impl Collection {
    fn all() -> Vec<Collection> {
        let mut all: Vec<Collection> = Kind::ALL.into_iter().map(Collection::WorkItems).collect();
        all.push(Collection::Files);
        all.push(Collection::Conversations);
        all
    }

    fn parse(name: &str) -> Option<Collection> {
        match name {
            "files" => Some(Collection::Files),
            "conversations" => Some(Collection::Conversations),
            other => Kind::from_collection(other).map(Collection::WorkItems),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Collection::WorkItems(kind) => kind.collection(),
            Collection::Files => "files",
            Collection::Conversations => "conversations",
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SyncQuery {
    /// Every resource changed after this event id; default 0 (everything).
    /// Ahead of the log's head → 422.
    #[param(value_type = i64, required = false, minimum = 0)]
    cursor: Option<i64>,
    /// Comma-separated: `features`, `tracks`, `spikes`, `files`,
    /// `conversations`; default all.
    #[param(value_type = String, required = false, example = "features,files")]
    collections: Option<String>,
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

/// `{"changed": [...], "deleted": [{id, version, deleted_at}]}`
fn changes<V: serde::Serialize>(live: Vec<V>, deleted: Vec<(String, i64, Timestamp)>) -> Value {
    json!({
        "changed": live,
        "deleted": deleted
            .into_iter()
            .map(|(id, version, at)| json!({ "id": id, "version": version, "deleted_at": at }))
            .collect::<Vec<_>>(),
    })
}

/// `GET /api/sync?cursor=N&collections=…`: every resource changed after event
/// `N`, tombstones of deleted ones, and the new cursor.
#[utoipa::path(
    get,
    path = "/api/sync",
    tag = "sync",
    params(SyncQuery, super::openapi::IdentityHeaders),
    responses(
        (status = 200, description = "The changes, one section per collection asked for", body = super::openapi::SyncResponse, headers(("X-Event-Cursor" = i64, description = "The newest event the answer includes"))),
        (status = 400, response = super::openapi::BadRequest),
        (status = 422, response = super::openapi::ValidationFailed),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn sync(
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    _identity: Identity,
    query: super::Query<SyncQuery>,
) -> Result<HttpResponse, ApiError> {
    let caller = super::principal(&req);
    let query = query.into_inner();
    let after = super::extract::sync_cursor(query.cursor)?.unwrap_or(EventId::ZERO);
    let wanted: Vec<Collection> = match query
        .collections
        .as_deref()
        .filter(|c| !c.trim().is_empty())
    {
        // Without a list: every collection this caller may read.
        None => Collection::all()
            .into_iter()
            .filter(|c| caller.read.allows(c.name()))
            .collect(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(|c| {
                Collection::parse(c).ok_or_else(|| {
                    DomainError::validation(
                        "collections",
                        format!("unknown collection `{c}`; known: {NAMES}"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    if let Some(denied) = wanted.iter().find(|c| !caller.read.allows(c.name())) {
        return Err(
            DomainError::Forbidden(format!("this token may not read {}", denied.name())).into(),
        );
    }
    let now = Timestamp::now();
    let (head, sections) = state
        .store
        .read(move |conn| {
            let head = events::head_id(conn)?;
            let mut sections = Vec::new();
            for collection in wanted {
                let section = match collection {
                    Collection::WorkItems(kind) => {
                        let (deleted, live): (Vec<WorkItem>, Vec<WorkItem>) =
                            work_items::changed_since(conn, kind, after)?
                                .into_iter()
                                .partition(|i| i.deleted);
                        changes(
                            live.iter().map(WorkItemView::from).collect(),
                            deleted
                                .into_iter()
                                .map(|i| (i.id, i.version, i.updated_at))
                                .collect(),
                        )
                    }
                    Collection::Files => {
                        let (deleted, live): (Vec<_>, Vec<_>) = files::changed_since(conn, after)?
                            .into_iter()
                            .partition(|f| f.deleted);
                        changes(
                            live.iter().map(|f| FileMetadataView::at(f, now)).collect(),
                            deleted
                                .into_iter()
                                .map(|f| (f.stable_id, f.version, f.updated_at))
                                .collect(),
                        )
                    }
                    Collection::Conversations => {
                        let (deleted, live): (Vec<_>, Vec<_>) =
                            conversations::changed_since(conn, after)?
                                .into_iter()
                                .partition(|c| c.deleted);
                        changes(
                            live.iter().map(ConversationView::from).collect(),
                            deleted
                                .into_iter()
                                .map(|c| (c.id, c.version, c.updated_at))
                                .collect(),
                        )
                    }
                };
                sections.push((collection.name(), section));
            }
            Ok((head, sections))
        })
        .await?;
    if after > head {
        return Err(DomainError::validation(
            "cursor",
            format!("is ahead of the log's head ({head}); sync from 0"),
        )
        .into());
    }
    let collections: Map<String, Value> = sections
        .into_iter()
        .map(|(name, section)| (name.to_owned(), section))
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header(("X-Event-Cursor", head.to_string()))
        .json(json!({
            "cursor": head,
            "full": after == EventId::ZERO,
            "collections": collections,
            "server_time": now,
        })))
}
