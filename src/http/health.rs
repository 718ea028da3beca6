//! `/healthz` (the process answers) and `/readyz` (the database answers).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::error::ApiError;
use crate::store::events;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let head_id = state.store.read(events::head_id).await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready", "head_id": head_id })))
}
