//! `/healthz` (the process answers) and `/readyz` (the database answers).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::error::ApiError;
use crate::store::events;

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process runs", body = super::openapi::Health, example = json!({"status": "ok"}))),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: the database answers.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers", body = super::openapi::Readiness, example = json!({"status": "ready", "head_id": 42})),
        (status = 503, response = super::openapi::Unavailable),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let head_id = state.store.read(events::head_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "head_id": head_id })))
}
