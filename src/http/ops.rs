//! Operations: `/metrics`, `/api/stats`, `/api/sessions`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{AppState, Identity};
use crate::error::ApiError;
use crate::store::events;

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

/// `GET /api/sessions` — sessions with an open stream on this server.
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
pub async fn sessions(state: web::Data<AppState>, _identity: Identity) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "sessions": state.hub.sessions() }))
}
