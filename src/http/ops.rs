//! Operations: `/metrics`, `/api/stats`, `/api/sessions`, `/openapi.json`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::{AppState, Identity};
use crate::domain::EventId;
use crate::domain::Timestamp;
use crate::http::error::ApiError;
use crate::hub::SessionInfo;
use crate::store::{events, presence};

/// `GET /metrics` — Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((
        status = 200,
        description = "Request latency by route, commit batches, streams, deliveries, database size",
        content_type = "text/plain; version=0.0.4; charset=utf-8",
        body = String,
    )),
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    match state.store.read(crate::app::subscriptions::list).await {
        Ok(subscriptions) => {
            let gauges: Vec<crate::metrics::SubscriptionGauges<'_>> = subscriptions
                .iter()
                .map(|s| crate::metrics::SubscriptionGauges {
                    id: &s.row.id,
                    kind: s.kind.as_str(),
                    acked_through: s.row.acked_through,
                    delivered: s.row.delivered,
                    failures: s.row.failures,
                    claims: s.claims.len(),
                })
                .collect();
            crate::metrics::record_subscriptions(&gauges);
        }
        Err(err) => tracing::warn!(error = %err, "metrics: cannot read the subscriptions"),
    }
    let body = crate::metrics::render(&state.hub, state.database.sqlite_path());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}

/// `GET /api/stats`
///
/// Connected clients, active sessions, streams per channel pattern, the log's
/// head and oldest id, events written, deliveries, uptime.
#[utoipa::path(
    get,
    path = "/api/stats",
    tag = "operations",
    params(super::described::IdentityHeaders),
    responses(
        (status = 200, description = "Server statistics", body = Stats),
        (status = 400, response = super::described::BadRequest),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn stats(
    state: web::Data<AppState>,
    _identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let position = state.store.read(events::position).await?;
    let hub = &state.hub;
    let per_pattern: BTreeMap<String, usize> = hub.streams_per_pattern().into_iter().collect();
    Ok(HttpResponse::Ok().json(Stats {
        connected_clients: hub.stream_count(),
        active_sessions: hub.sessions().len(),
        streams_per_pattern: per_pattern,
        head_id: position.head_id,
        oldest_id: position.oldest_id,
        pruned_through: position.pruned_through,
        events_written: hub.counters.events_published.load(Ordering::Relaxed),
        deliveries: hub.counters.deliveries.load(Ordering::Relaxed),
        lagging_streams: hub.counters.lagged.load(Ordering::Relaxed),
        uptime_seconds: state.started.elapsed().as_secs(),
    }))
}

/// `GET /api/stats`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Stats {
    /// Open streams on this server.
    connected_clients: usize,
    /// Sessions with at least one open stream.
    active_sessions: usize,
    /// Open streams per subscribed channel pattern.
    streams_per_pattern: BTreeMap<String, usize>,
    /// The highest event id ever written (0 for a new log).
    #[schema(value_type = i64)]
    head_id: EventId,
    /// The oldest id the log still holds (`head_id + 1` when it is empty).
    #[schema(value_type = i64)]
    oldest_id: EventId,
    /// Retention may have deleted every id up to this one.
    #[schema(value_type = i64)]
    pruned_through: EventId,
    /// Events published since the server started.
    events_written: u64,
    /// Events sent to streams since the server started.
    deliveries: u64,
    /// Times a stream fell behind and caught up from the log.
    lagging_streams: u64,
    /// Seconds since the server started.
    uptime_seconds: u64,
}

/// `GET /api/sessions`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Sessions {
    /// `node` (SQLite: this server's sessions) or `cluster` (PostgreSQL:
    /// every node's).
    #[schema(pattern = "^(node|cluster)$")]
    scope: &'static str,
    /// With PostgreSQL: the id of the node that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    node_id: Option<String>,
    sessions: Vec<ClusterSession>,
}

/// `GET /api/sessions` — sessions with an open stream: on this server with
/// SQLite, on every node sharing the database with PostgreSQL.
#[utoipa::path(
    get,
    path = "/api/sessions",
    tag = "operations",
    params(super::described::IdentityHeaders),
    responses(
        (status = 200, description = "Sessions with an open stream", body = Sessions),
        (status = 400, response = super::described::BadRequest),
    ),
)]
pub async fn sessions(
    state: web::Data<AppState>,
    _identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let local = state.hub.sessions();
    let Some(node) = state.node.clone() else {
        return Ok(HttpResponse::Ok().json(Sessions {
            scope: "node",
            node_id: None,
            sessions: local.into_iter().map(ClusterSession::local).collect(),
        }));
    };
    // Every node's sessions: this node's from its hub (exact), the others'
    // from the shared table (refreshed with each heartbeat).
    let timeout = chrono::Duration::from_std(node.timeout).unwrap_or_default();
    let cutoff = Timestamp::now().minus(timeout);
    let rows = state
        .store
        .read(move |conn| presence::live_rows(conn, cutoff))
        .await?;
    let mut merged: BTreeMap<String, ClusterSession> = BTreeMap::new();
    let local_rows = local.into_iter().map(|s| ClusterSession {
        nodes: Some(vec![node.node_id.clone()]),
        ..ClusterSession::local(s)
    });
    let mut other_rows = Vec::with_capacity(rows.len());
    for row in rows.into_iter().filter(|row| row.node_id != node.node_id) {
        other_rows.push(ClusterSession {
            connected_at: row.connected_at()?,
            session_id: row.session_id,
            agent_id: row.agent_id,
            connections: row.connections.max(0) as u64,
            channels: serde_json::from_str(&row.channels).unwrap_or_default(),
            nodes: Some(vec![row.node_id]),
        });
    }
    for session in local_rows.chain(other_rows) {
        match merged.get_mut(&session.session_id) {
            None => {
                merged.insert(session.session_id.clone(), session);
            }
            Some(known) => known.absorb(session),
        }
    }
    Ok(HttpResponse::Ok().json(Sessions {
        scope: "cluster",
        node_id: Some(node.node_id),
        sessions: merged.into_values().collect(),
    }))
}

/// A session with an open stream; with PostgreSQL, over every node it has
/// streams on.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SessionInfo)]
pub struct ClusterSession {
    session_id: String,
    agent_id: String,
    /// Its open streams.
    connections: u64,
    /// The channel patterns its streams subscribe to.
    channels: Vec<String>,
    /// When its first open stream opened (RFC 3339, microseconds).
    #[schema(value_type = String, format = DateTime)]
    connected_at: Timestamp,
    /// With PostgreSQL: the nodes it has streams on.
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<Vec<String>>,
}

impl ClusterSession {
    fn local(session: SessionInfo) -> Self {
        ClusterSession {
            session_id: session.session_id,
            agent_id: session.agent_id,
            connections: session.connections as u64,
            channels: session.channels,
            connected_at: session.connected_at,
            nodes: None,
        }
    }

    fn absorb(&mut self, other: ClusterSession) {
        self.connections += other.connections;
        for channel in other.channels {
            if !self.channels.contains(&channel) {
                self.channels.push(channel);
            }
        }
        if other.connected_at < self.connected_at {
            self.connected_at = other.connected_at;
        }
        if let (Some(nodes), Some(more)) = (&mut self.nodes, other.nodes) {
            nodes.extend(more);
        }
    }
}

/// The OpenAPI document, built on first use (`openapi::document`); given
/// to the handler so that the document, built from the handlers, is not
/// imported by one.
pub struct ApiDocument(pub fn() -> &'static str);

/// `GET /openapi.json`: the OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses(
        (status = 200, description = "This OpenAPI 3.1 document", content_type = "application/json", body = Object),
    )
)]
pub async fn openapi_json(document: web::Data<ApiDocument>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body((document.0)())
}
