//! Operations: `/metrics`, `/api/stats`, `/api/sessions`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::{AppState, Identity};
use crate::error::ApiError;
use crate::store::events;

/// `GET /metrics` — Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let body = crate::metrics::render(&state.hub, &state.database_path);
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(body)
}

/// `GET /api/stats`
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
pub async fn sessions(state: web::Data<AppState>, _identity: Identity) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "sessions": state.hub.sessions() }))
}
