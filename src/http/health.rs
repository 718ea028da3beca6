//! `/healthz` (the process answers) and `/readyz` (the database answers).

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::AppState;
use crate::domain::EventId;
use crate::http::error::ApiError;
use crate::store::events;

/// `GET /healthz`: the process answers.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process runs", body = Health, example = json!({"status": "ok"}))),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// `GET /healthz`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    #[schema(example = "ok")]
    status: &'static str,
}

/// `GET /readyz`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// Always `ready`.
    #[schema(example = "ready")]
    status: &'static str,
    /// The id of the newest event (0 for a new log).
    #[schema(value_type = i64)]
    head_id: EventId,
}

/// `GET /readyz`: the database answers and takes writes. 503 within a few
/// seconds when it does not: no primary is reachable (PostgreSQL during a
/// failover, a node cut off), or the node reached a standby.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers and takes writes", body = Readiness, example = json!({"status": "ready", "head_id": 42})),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (head_id, writable) = state
        .store
        .read(|conn| Ok((events::head_id(conn)?, events::takes_writes(conn)?)))
        .await?;
    if !writable {
        return Err(ApiError::Unavailable(
            "the database is a read-only standby: this node cannot write".into(),
        ));
    }
    Ok(HttpResponse::Ok().json(Readiness {
        status: "ready",
        head_id,
    }))
}
