//! Operations: `/metrics`, `/api/stats`, `/api/sessions`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{AppState, Identity};
use crate::domain::format_timestamp;
use crate::error::ApiError;
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
    params(super::openapi::IdentityHeaders),
    responses(
        (status = 200, description = "Server statistics", body = super::openapi::Stats),
        (status = 400, response = super::openapi::BadRequest),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn stats(
    state: web::Data<AppState>,
    _identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let position = state.store.read(events::position).await?;
    let hub = &state.hub;
    let per_pattern: BTreeMap<String, usize> = hub.streams_per_pattern().into_iter().collect();
    Ok(HttpResponse::Ok().json(json!({
        "connected_clients": hub.stream_count(),
        "active_sessions": hub.sessions().len(),
        "streams_per_pattern": per_pattern,
        "head_id": position.head_id,
        "oldest_id": position.oldest_id,
        "pruned_through": position.pruned_through,
        "events_written": hub.counters.events_published.load(Ordering::Relaxed),
        "deliveries": hub.counters.deliveries.load(Ordering::Relaxed),
        "lagging_streams": hub.counters.lagged.load(Ordering::Relaxed),
        "uptime_seconds": state.started.elapsed().as_secs(),
    })))
}

/// `GET /api/sessions` — sessions with an open stream: on this server with
/// SQLite, on every node sharing the database with PostgreSQL.
#[utoipa::path(
    get,
    path = "/api/sessions",
    tag = "operations",
    params(super::openapi::IdentityHeaders),
    responses(
        (status = 200, description = "Sessions with an open stream", body = super::openapi::Sessions),
        (status = 400, response = super::openapi::BadRequest),
    ),
)]
pub async fn sessions(
    state: web::Data<AppState>,
    _identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let local = state.hub.sessions();
    let Some(node) = state.node.clone() else {
        return Ok(HttpResponse::Ok().json(json!({ "scope": "node", "sessions": local })));
    };
    // Every node's sessions: this node's from its hub (exact), the others'
    // from the shared table (refreshed with each heartbeat).
    let timeout = chrono::Duration::from_std(node.timeout).unwrap_or_default();
    let cutoff = format_timestamp(chrono::Utc::now() - timeout);
    let rows = state
        .store
        .read(move |conn| presence::live_rows(conn, &cutoff))
        .await?;
    let mut merged: BTreeMap<String, ClusterSession> = BTreeMap::new();
    let local_rows = local.into_iter().map(|s| ClusterSession {
        session_id: s.session_id,
        agent_id: s.agent_id,
        connections: s.connections as u64,
        channels: s.channels,
        connected_at: s.connected_at,
        nodes: vec![node.node_id.clone()],
    });
    let other_rows = rows
        .into_iter()
        .filter(|row| row.node_id != node.node_id)
        .map(|row| ClusterSession {
            session_id: row.session_id,
            agent_id: row.agent_id,
            connections: row.connections.max(0) as u64,
            channels: serde_json::from_str(&row.channels).unwrap_or_default(),
            connected_at: row.connected_at,
            nodes: vec![row.node_id],
        });
    for session in local_rows.chain(other_rows) {
        match merged.get_mut(&session.session_id) {
            None => {
                merged.insert(session.session_id.clone(), session);
            }
            Some(known) => known.absorb(session),
        }
    }
    Ok(HttpResponse::Ok().json(json!({
        "scope": "cluster",
        "node_id": node.node_id,
        "sessions": merged.into_values().collect::<Vec<_>>(),
    })))
}

/// One session over every node it has streams on.
#[derive(serde::Serialize)]
struct ClusterSession {
    session_id: String,
    agent_id: String,
    connections: u64,
    channels: Vec<String>,
    connected_at: String,
    nodes: Vec<String>,
}

impl ClusterSession {
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
        self.nodes.extend(other.nodes);
    }
}
