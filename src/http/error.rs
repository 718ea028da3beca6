//! The error strategy.
//!
//! - `domain::DomainError`: the client asked for something the rules forbid
//!   (validation, not found, conflicts). Raised in handlers and in writer jobs.
//! - `store::StoreError`: the database failed, or a writer job rejected its
//!   change with a `DomainError` (`StoreError::Rejected`).
//! - `ApiError` (here): what the client sees, always
//!   `{"error": {"code", "message", "details"}}` with the contract's status.
//!   Both errors above convert into it. A storage fault becomes 503
//!   `unavailable` or 500 `internal`; its cause is logged, never sent.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde_json::{json, Value};

use crate::domain::DomainError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A query parameter or path segment that does not parse: 400
    /// `bad_request` naming it in `details.field`. The message is a whole
    /// sentence ("query parameter `after` must be …").
    #[error("{message}")]
    BadParameter { field: String, message: String },
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("send the body with Content-Type: {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("no route for this path")]
    RouteNotFound,
    /// A part of the server it was started without (the Mercure hub, …):
    /// 404 `not_found`, with a whole sentence naming the option that turns
    /// it on.
    #[error("{0}")]
    Disabled(&'static str),
    #[error("method not allowed; this resource answers {allow}")]
    MethodNotAllowed { allow: &'static str },
    /// No valid credential: 401 with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// Too many writes from this agent.
    #[error("too many writes; retry after {retry_after} s")]
    RateLimited { retry_after: u64 },
    /// The database cannot take the request now; the client may retry.
    #[error("the service is temporarily unavailable")]
    Unavailable(String),
    /// The authority that vouches for credentials (the app's authorize
    /// callback) could not be asked: refused, fail closed (503).
    #[error("{0}")]
    AuthorityUnavailable(String),
    /// The body did not arrive in time (`http::body`): 408, and the
    /// connection is closed.
    #[error("the request body did not arrive within {seconds} s")]
    RequestTimeout { seconds: u64 },
    /// Too many requests wait for their bodies at once (`http::body`): 503
    /// `unavailable` with `Retry-After`, and the connection is closed. Not
    /// logged: it is what a flood of stalled bodies looks like.
    #[error("too many requests are waiting for their bodies; retry after 1 s")]
    TooManyWaitingBodies,
    /// Anything else: logged with its cause, answered without it.
    #[error("internal error")]
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Rejected(domain) => ApiError::Domain(domain),
            StoreError::Unavailable(cause) => ApiError::Unavailable(cause),
            StoreError::Pool(cause) => ApiError::Unavailable(cause.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::Domain(DomainError::BadRequest(message.into()))
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Domain(domain) => match domain {
                DomainError::Validation { .. } => "validation_failed",
                DomainError::BadRequest(_) => "bad_request",
                DomainError::NotFound(_) => "not_found",
                DomainError::Forbidden(_) => "forbidden",
                DomainError::IdempotencyKeyReused => "idempotency_key_reused",
                DomainError::Conflict { code, .. } => code,
                DomainError::PreconditionFailed { .. } => "precondition_failed",
            },
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::BadParameter { .. } => "bad_request",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::RouteNotFound | ApiError::Disabled(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Unavailable(_)
            | ApiError::AuthorityUnavailable(_)
            | ApiError::TooManyWaitingBodies => "unavailable",
            ApiError::RequestTimeout { .. } => "request_timeout",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Internal(_) => "internal",
        }
    }

    fn details(&self) -> Value {
        match self {
            ApiError::Domain(DomainError::Validation { field, .. })
            | ApiError::BadParameter { field, .. } => json!({ "field": field }),
            ApiError::Domain(DomainError::Conflict { details, .. }) => details.clone(),
            ApiError::Domain(DomainError::PreconditionFailed { current }) => {
                json!({ "current": current })
            }
            ApiError::PayloadTooLarge { limit } => json!({ "limit": limit }),
            _ => json!({}),
        }
    }

    /// The JSON body of this error.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                details: self.details(),
            },
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Domain(domain) => match domain {
                DomainError::Validation { .. } | DomainError::IdempotencyKeyReused => {
                    StatusCode::UNPROCESSABLE_ENTITY
                }
                DomainError::BadRequest(_) => StatusCode::BAD_REQUEST,
                DomainError::NotFound(_) => StatusCode::NOT_FOUND,
                DomainError::Forbidden(_) => StatusCode::FORBIDDEN,
                DomainError::Conflict { .. } => StatusCode::CONFLICT,
                DomainError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            },
            ApiError::InvalidJson(_) | ApiError::BadParameter { .. } => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RouteNotFound | ApiError::Disabled(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable(_)
            | ApiError::AuthorityUnavailable(_)
            | ApiError::TooManyWaitingBodies => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            ApiError::Unavailable(cause) => tracing::warn!(cause = %cause, "storage unavailable"),
            ApiError::Internal(cause) => tracing::error!(cause = %cause, "internal error"),
            _ => {}
        }
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unavailable(_) | ApiError::AuthorityUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            // The rest of the body may still come, or never: the connection
            // cannot carry another request.
            ApiError::TooManyWaitingBodies => {
                response.insert_header((header::RETRY_AFTER, "1"));
                response.force_close();
            }
            ApiError::RequestTimeout { .. } => {
                response.force_close();
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, *allow));
            }
            ApiError::Unauthorized(_) => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"switchboard\""));
            }
            ApiError::RateLimited { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            _ => {}
        }
        response.json(self.body())
    }
}

/// Every error has this shape, with the status its code implies.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"error": {"code": "validation_failed", "message": "type: must be 1 to 64 characters long", "details": {"field": "type"}}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable code: `bad_request`, `invalid_json` (400), `forbidden` (403),
    /// `unauthorized` (401), `not_found` (404), `method_not_allowed` (405),
    /// `request_timeout` (408: the body did not arrive in time), `conflict`,
    /// `already_exists`, `lock_held`, `lock_required` (409),
    /// `precondition_failed` (412), `payload_too_large` (413),
    /// `unsupported_media_type` (415), `validation_failed`,
    /// `idempotency_key_reused` (422), `rate_limited` (429), `internal` (500),
    /// `unavailable` (503).
    #[schema(example = "validation_failed")]
    pub code: &'static str,
    /// Human readable; never a backtrace or SQL.
    pub message: String,
    /// More about the error (`{}` when nothing): `field` for
    /// `validation_failed` and `bad_request` about a parameter, `current` for
    /// `precondition_failed`, `limit` for `payload_too_large`, the
    /// conflicting ids for the 409 codes (`locked_by`, `lock_session_id`,
    /// `lock_expires_at` for `lock_held`).
    #[schema(value_type = Object)]
    pub details: Value,
}
