//! `GET /api/sync?cursor=N&collections=…`: every resource changed after event
//! N, tombstones of deleted ones, and the new cursor. Everything is read in
//! one snapshot, so the cursor and the data agree exactly. The answer comes
//! from the resources' rows (each remembers the id of its last event), not
//! from the log: it stays exact however old the cursor is.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{AppState, Identity};
use crate::domain::work_items::{Kind, WorkItem};
use crate::domain::{DomainError, EventId, ResourceId, Timestamp};
use crate::http::error::ApiError;
use crate::store::{conversations, events, files, work_items};
use crate::views::{ConversationView, FeatureView, FileMetadataView, SpikeView, TrackView};

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

/// A deleted resource.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tombstone {
    #[schema(value_type = String)]
    id: ResourceId,
    version: i64,
    #[schema(value_type = String, format = DateTime)]
    deleted_at: Timestamp,
}

/// The resources of one collection changed after the cursor.
#[derive(Debug, Serialize, ToSchema)]
pub struct Changes<V> {
    changed: Vec<V>,
    /// For files, `id` is the `stable_id`.
    deleted: Vec<Tombstone>,
}

impl<V> Changes<V> {
    /// Splits `rows` into live ones (their views) and tombstones.
    fn of<R>(
        rows: Vec<R>,
        deleted: impl Fn(&R) -> bool,
        view: impl Fn(&R) -> V,
        tombstone: impl Fn(R) -> Tombstone,
    ) -> Self {
        let (gone, live): (Vec<R>, Vec<R>) = rows.into_iter().partition(|r| deleted(r));
        Changes {
            changed: live.iter().map(view).collect(),
            deleted: gone.into_iter().map(tombstone).collect(),
        }
    }
}

/// One section per requested collection.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct SyncCollections {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    features: Option<Changes<FeatureView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    tracks: Option<Changes<TrackView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    spikes: Option<Changes<SpikeView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    files: Option<Changes<FileMetadataView>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false)]
    conversations: Option<Changes<ConversationView>>,
}

/// `GET /api/sync`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SyncResponse {
    /// The newest event this answer includes (also `X-Event-Cursor`): pass it
    /// as `cursor` next time, or stream from it with `Last-Event-ID`.
    #[schema(value_type = i64)]
    cursor: EventId,
    /// `true` when the request's cursor was 0 (everything).
    full: bool,
    collections: SyncCollections,
    #[schema(value_type = String, format = DateTime)]
    server_time: Timestamp,
}

fn item_changes<V: for<'a> From<&'a WorkItem>>(rows: Vec<WorkItem>) -> Option<Changes<V>> {
    Some(Changes::of(
        rows,
        |i| i.deleted,
        |i| V::from(i),
        |i| Tombstone {
            id: i.id,
            version: i.version,
            deleted_at: i.updated_at,
        },
    ))
}

/// `GET /api/sync?cursor=N&collections=…`: every resource changed after event
/// `N`, tombstones of deleted ones, and the new cursor.
#[utoipa::path(
    get,
    path = "/api/sync",
    tag = "sync",
    params(SyncQuery, super::described::IdentityHeaders),
    responses(
        (status = 200, description = "The changes, one section per collection asked for", body = SyncResponse, headers(("X-Event-Cursor" = i64, description = "The newest event the answer includes"))),
        super::described::Errors,
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
    let wanted = wanted_collections(query.collections.as_deref(), &caller)?;
    let now = Timestamp::now();
    let (head, collections) = state
        .store
        .read(move |conn| {
            let head = events::head_id(conn)?;
            Ok((head, read_changes(conn, &wanted, after, now)?))
        })
        .await?;
    if after > head {
        return Err(DomainError::validation(
            "cursor",
            format!("is ahead of the log's head ({head}); sync from 0"),
        )
        .into());
    }
    let answer = SyncResponse {
        cursor: head,
        full: after == EventId::ZERO,
        collections,
        server_time: now,
    };
    Ok(super::answer::snapshot(head, None, &answer))
}

/// The collections asked for (all the caller may read when none are named);
/// 422 for an unknown name, 403 for one the token may not read.
fn wanted_collections(
    list: Option<&str>,
    caller: &crate::auth::Principal,
) -> Result<Vec<Collection>, ApiError> {
    let wanted: Vec<Collection> = match list.filter(|c| !c.trim().is_empty()) {
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
    Ok(wanted)
}

/// Every resource of `wanted` changed after `after`, in one read snapshot.
fn read_changes(
    conn: &mut crate::store::DbConn,
    wanted: &[Collection],
    after: EventId,
    now: Timestamp,
) -> Result<SyncCollections, crate::store::StoreError> {
    let mut out = SyncCollections::default();
    for collection in wanted.iter().copied() {
        match collection {
            Collection::WorkItems(kind) => {
                let rows = work_items::changed_since(conn, kind, after)?;
                match kind {
                    Kind::Feature => out.features = item_changes(rows),
                    Kind::Track => out.tracks = item_changes(rows),
                    Kind::Spike => out.spikes = item_changes(rows),
                }
            }
            Collection::Files => {
                let rows = files::changed_since(conn, after)?;
                out.files = Some(Changes::of(
                    rows,
                    |f| f.deleted,
                    |f| FileMetadataView::at(f, now),
                    |f| Tombstone {
                        id: f.stable_id,
                        version: f.version,
                        deleted_at: f.updated_at,
                    },
                ));
            }
            Collection::Conversations => {
                let rows = conversations::changed_since(conn, after)?;
                out.conversations = Some(Changes::of(
                    rows,
                    |c| c.deleted,
                    |c| ConversationView::from(c),
                    |c| Tombstone {
                        id: c.id,
                        version: c.version,
                        deleted_at: c.updated_at,
                    },
                ));
            }
        }
    }
    Ok(out)
}
