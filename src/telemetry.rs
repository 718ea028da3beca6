//! Logging: a tracing subscriber writing text or JSON lines to stderr, and a
//! `spawn_blocking` that keeps the caller's span (so database work done on a
//! blocking thread is logged under its request).

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` overrides the default level.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

pub fn spawn_blocking_in_span<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}

/// The span of every request, and its one log line. It carries the request
/// id, the route pattern (never the raw query string, which may hold a
/// token), who acts (agent and session), the status and, for an error
/// answer, its `error` code. A client error adds no other line (the
/// middleware's own error event is turned off in `Cargo.toml`); a server
/// error logs its cause once more, at ERROR, where it is raised
/// (`ApiError::error_response`).
pub struct RequestSpan;

fn header_or_query(request: &actix_web::dev::ServiceRequest, header: &str, query: &str) -> String {
    let value = match request.headers().get(header).and_then(|v| v.to_str().ok()) {
        Some(value) => value.to_owned(),
        None => crate::http::query_param(request.request(), query).unwrap_or_default(),
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
        let route = request
            .match_pattern()
            .unwrap_or_else(|| request.path().to_owned());
        tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %request.method(),
            route = %route,
            agent_id = %header_or_query(request, "X-Agent-ID", "agent_id"),
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
        if let Some(code) = error.and_then(|e| e.as_error::<crate::error::ApiError>()) {
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
