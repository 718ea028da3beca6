//! Middleware wrapped around every route: request metrics and CORS. The
//! authentication gate is `auth::authenticate`, the request log
//! `telemetry::RequestSpan`. Nothing here changes an answer's body.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;

/// Records each request's latency by route pattern (not by raw path, so ids
/// do not explode the label set).
pub async fn measure_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    crate::metrics::record_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    Ok(response)
}

/// CORS for the configured browser origins; none (same-origin only) by default.
pub fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .allowed_header("X-Agent-ID")
        .allowed_header("X-Session-ID")
        .allowed_header("Idempotency-Key")
        .allowed_header("Last-Event-ID")
        .expose_headers(["ETag", "X-Event-Cursor", "Retry-After"])
        .supports_credentials()
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}
