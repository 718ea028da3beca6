//! Middleware wrapped around every route: request metrics, CORS and the
//! request log (`RequestSpan`: one line per request). The authentication
//! gate is `auth::authenticate`. Nothing here changes an answer's body.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;

use crate::http::error::ApiError;

/// The route pattern the router gives a request to (`None`: no route),
/// found once per request and kept in its extensions. actix-web answers
/// `match_pattern` by walking its whole resource map, a regex per resource,
/// each time it is asked; the request log, the gate and the metrics all ask.
#[derive(Clone)]
struct MatchedRoute(Option<std::rc::Rc<str>>);

pub fn matched_route(request: &actix_web::HttpRequest) -> Option<std::rc::Rc<str>> {
    use actix_web::HttpMessage;
    if let Some(MatchedRoute(route)) = request.extensions().get::<MatchedRoute>() {
        return route.clone();
    }
    let route: Option<std::rc::Rc<str>> = request.match_pattern().map(Into::into);
    request.extensions_mut().insert(MatchedRoute(route.clone()));
    route
}

/// A routed pattern as the route table declares it (`{channel}`, not the
/// regular expression that lets it hold `/`).
fn declared(pattern: &str) -> &str {
    super::routes::routes()
        .declared_path(pattern)
        .unwrap_or(pattern)
}

/// Records each request's latency by route pattern (not by raw path, so ids
/// do not explode the label set).
pub async fn measure_request(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let response = next.call(req).await?;
    let route = matched_route(response.request());
    crate::metrics::record_request(
        route.as_deref().map_or("unmatched", declared),
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
        .expose_headers([
            "ETag",
            "X-Event-Cursor",
            "Retry-After",
            "Last-Event-ID",
            "Link",
        ])
        .supports_credentials()
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// The span of every request, and its one log line. It carries the request
/// id, the route pattern (never the raw query string, which may hold a
/// token), who acts (the agent the gate authenticated, and the session), the status and, for an error
/// answer, its `error` code. A client error adds no other line (the
/// middleware's own error event is turned off in `Cargo.toml`); a server
/// error logs its cause once more, at ERROR, where it is raised
/// (`ApiError::error_response`).
pub struct RequestSpan;

fn header_or_query(request: &actix_web::dev::ServiceRequest, header: &str, query: &str) -> String {
    let value = match request.headers().get(header).and_then(|v| v.to_str().ok()) {
        Some(value) => value.to_owned(),
        None => super::query_param(request.request(), query).unwrap_or_default(),
    };
    value.chars().take(128).collect()
}

impl tracing_actix_web::RootSpanBuilder for RequestSpan {
    fn on_request_start(request: &actix_web::dev::ServiceRequest) -> tracing::Span {
        use actix_web::HttpMessage;
        let request_id = request
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .map(ToString::to_string)
            .unwrap_or_default();
        let route = matched_route(request.request());
        let route = route.as_deref().map(declared);
        tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %request.method(),
            route = %route.unwrap_or(request.path()),
            // Filled in by the gate: the authenticated agent, never merely
            // the one a request claims (in open mode there is no other).
            agent_id = tracing::field::Empty,
            session_id = %header_or_query(request, "X-Session-ID", "session_id"),
            status = tracing::field::Empty,
            error = tracing::field::Empty,
        )
    }

    fn on_request_end<B: actix_web::body::MessageBody>(
        span: tracing::Span,
        outcome: &Result<actix_web::dev::ServiceResponse<B>, actix_web::Error>,
    ) {
        let (status, error) = match outcome {
            Ok(response) => (response.status().as_u16(), response.response().error()),
            Err(error) => (
                error.as_response_error().status_code().as_u16(),
                Some(error),
            ),
        };
        span.record("status", status);
        if let Some(code) = error.and_then(|e| e.as_error::<ApiError>()) {
            span.record("error", code.code());
        }
        span.in_scope(|| {
            if status >= 500 {
                tracing::warn!("request answered");
            } else {
                tracing::info!("request answered");
            }
        });
    }
}
