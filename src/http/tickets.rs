//! `POST /api/stream-tickets`: a single-use stand-in for the caller's
//! credential, for `EventSource`, which cannot send headers.

use actix_web::{web, HttpRequest, HttpResponse};

use super::{principal, AppState, Identity};
use crate::domain::{DomainError, Timestamp};
use crate::http::error::ApiError;

/// `POST /api/stream-tickets` → `{ticket, expires_at}`: a single-use stand-in
/// for the caller's credential, for `EventSource` (`?ticket=`): it opens a
/// stream and nothing else, valid 30 s (`--ticket-ttl`) and never past the
/// credential's own end, and only while that credential is still valid.
#[utoipa::path(
    post,
    path = "/api/stream-tickets",
    tag = "stream",
    params(super::described::IdentityHeaders),
    responses(
        (status = 201, description = "A ticket that opens one stream as the caller", body = StreamTicket),
        (status = 400, description = "`bad_request`: the server is open (no tokens file), so streams need no ticket; or a malformed identity header", body = crate::http::error::ErrorBody),
    ),
)]
pub async fn issue_ticket(
    req: HttpRequest,
    state: web::Data<AppState>,
    _identity: Identity,
) -> Result<HttpResponse, ApiError> {
    if state.auth.is_open() {
        return Err(
            DomainError::BadRequest("the server is open: streams need no ticket".into()).into(),
        );
    }
    let (ticket, lifetime) = state.auth.issue_ticket(principal(&req));
    let expires_at =
        Timestamp::now().plus(chrono::Duration::from_std(lifetime).unwrap_or_default());
    Ok(HttpResponse::Created().json(StreamTicket { ticket, expires_at }))
}

/// `POST /api/stream-tickets`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct StreamTicket {
    /// Single use: open the stream with `?ticket=<it>`.
    ticket: String,
    #[schema(value_type = String, format = DateTime)]
    expires_at: Timestamp,
}
