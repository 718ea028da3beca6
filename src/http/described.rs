//! What utoipa can only describe by deriving on a type: the headers and
//! query parameters the extractors read themselves (`Identity`, `If-Match`,
//! `Idempotency-Key`, `Last-Event-ID`), and the reusable error responses,
//! each an `ErrorBody` with the status its code implies. These types are
//! never built; they exist to be named in `#[utoipa::path]` annotations.
//! The errors almost every route answers come in two bundles, so an
//! annotation lists only what is particular to its route: [`Errors`] (400,
//! 422, 503) and, for a route that reads a body, [`BodyErrors`] (413, 415).

#![allow(dead_code)]

use std::collections::BTreeMap;

use utoipa::openapi::{Ref, RefOr, Response};
use utoipa::{IntoParams, IntoResponses, ToResponse};

use crate::http::error::ErrorBody;

// ----- parameters -----

/// The identity headers every `/api` route reads.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdentityHeaders {
    /// Who acts (`claude-1`, `alice`): 1–128 characters of `[A-Za-z0-9._:@-]`.
    /// Missing → `anonymous`; malformed → 400. `EventSource` clients may send
    /// the query parameter `agent_id` instead.
    #[param(rename = "X-Agent-ID", value_type = String, required = false, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:@-]+$", example = "claude-1")]
    agent_id: Option<String>,
    /// Which client session acts (a tab, an agent run): 1–128 characters of
    /// `[A-Za-z0-9._:@-]`. Events carry it, and the session's own streams do
    /// not receive them back. Missing → the change reaches every session.
    #[param(rename = "X-Session-ID", value_type = String, required = false, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:@-]+$", example = "sess-1")]
    session_id: Option<String>,
}

/// `Idempotency-Key`, read by every write.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyHeader {
    /// 1–255 visible ASCII characters. A retry with the same key from the same
    /// agent within 24 h gets the first answer (with `Idempotent-Replayed:
    /// true`) and publishes nothing; the same key with another request → 422
    /// `idempotency_key_reused`.
    #[param(rename = "Idempotency-Key", value_type = String, required = false, min_length = 1, max_length = 255)]
    key: Option<String>,
}

/// The identity of an `EventSource`, which cannot send headers: the stream
/// also reads these query parameters (a header wins).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamIdentityQuery {
    /// The subscriber's session, as `X-Session-ID`: events of this session
    /// are not sent back (unless `include_own=true`).
    #[param(value_type = String, required = false, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:@-]+$")]
    session_id: Option<String>,
    /// The subscriber's agent, as `X-Agent-ID` (for presence).
    #[param(value_type = String, required = false, min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:@-]+$")]
    agent_id: Option<String>,
}

/// `Last-Event-ID`, sent by `EventSource` when it reconnects.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct LastEventIdHeader {
    /// Resume: every matching event with a larger id, then live. Empty means
    /// no cursor; it wins over `last_event_id`.
    #[param(rename = "Last-Event-ID", value_type = i64, required = false, minimum = 0)]
    last_event_id: Option<String>,
}

/// `If-Match`, read by writes to a versioned resource.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IfMatchHeader {
    /// The version the change applies to, as its ETag (`"3"`, `W/"3"`) or `*`.
    /// Another version → 412 `precondition_failed` with the current resource
    /// in `details.current`. Without it the last write wins.
    #[param(rename = "If-Match", value_type = String, required = false, example = "\"3\"")]
    if_match: Option<String>,
}

// ----- errors -----

/// 400 `bad_request` (a malformed identity header, path segment, query
/// string, `If-Match`, `Last-Event-ID` or `Idempotency-Key`) or `invalid_json`
/// (the body is not JSON).
#[derive(ToResponse)]
#[response(example = json!({"error": {"code": "bad_request", "message": "X-Agent-ID: may only contain letters, digits and . _ : @ -", "details": {}}}))]
pub struct BadRequest(ErrorBody);

/// 401 `unauthorized`: a tokens file is in use and the request carries no
/// valid token (or ticket); `WWW-Authenticate: Bearer`.
#[derive(ToResponse)]
#[response(
    headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"switchboard\"`")),
    example = json!({"error": {"code": "unauthorized", "message": "a token is required", "details": {}}})
)]
pub struct Unauthorized(ErrorBody);

/// 403 `forbidden`: the token may not read or write this channel, or
/// `X-Agent-ID` names another agent than the token's; publishing on a channel
/// written only by the server.
#[derive(ToResponse)]
#[response(example = json!({"error": {"code": "forbidden", "message": "channel \"features\" is written only by the server; publish on another channel", "details": {}}}))]
pub struct Forbidden(ErrorBody);

/// 404 `not_found`: no such resource.
#[derive(ToResponse)]
#[response(example = json!({"error": {"code": "not_found", "message": "feature feat-1 not found", "details": {}}}))]
pub struct NotFound(ErrorBody);

/// 412 `precondition_failed`: `If-Match` names another version;
/// `details.current` is the resource as it is now.
#[derive(ToResponse)]
#[response(example = json!({"error": {"code": "precondition_failed", "message": "the resource has changed", "details": {"current": {"id": "feat-1", "version": 4}}}}))]
pub struct PreconditionFailed(ErrorBody);

/// 413 `payload_too_large`: the body is over the limit (`details.limit`
/// bytes, 1 MiB by default).
#[derive(ToResponse)]
#[response(example = json!({"error": {"code": "payload_too_large", "message": "the body is larger than 1048576 bytes", "details": {"limit": 1048576}}}))]
pub struct PayloadTooLarge(ErrorBody);

/// 415 `unsupported_media_type`: the body's `Content-Type` is not
/// `application/json` (or `…+json`). A body without `Content-Type` is read as
/// JSON.
#[derive(ToResponse)]
#[response(example = json!({"error": {"code": "unsupported_media_type", "message": "send the body as JSON with Content-Type: application/json", "details": {}}}))]
pub struct UnsupportedMediaType(ErrorBody);

/// 422 `validation_failed` (`details.field` names the field) or
/// `idempotency_key_reused` (the key was used with another request).
#[derive(ToResponse)]
#[response(example = json!({"error": {"code": "validation_failed", "message": "limit: must be 1 to 1000", "details": {"field": "limit"}}}))]
pub struct ValidationFailed(ErrorBody);

/// 429 `rate_limited`: this agent writes faster than `--rate-limit` allows;
/// retry after `Retry-After` seconds.
#[derive(ToResponse)]
#[response(
    headers(("Retry-After" = i64, description = "Seconds to wait before retrying")),
    example = json!({"error": {"code": "rate_limited", "message": "too many writes; retry after 1 s", "details": {}}})
)]
pub struct RateLimited(ErrorBody);

/// 503 `unavailable`: the database cannot take the request now; retry after
/// `Retry-After` seconds.
#[derive(ToResponse)]
#[response(
    headers(("Retry-After" = i64, description = "Seconds to wait before retrying (1)")),
    example = json!({"error": {"code": "unavailable", "message": "the service is temporarily unavailable", "details": {}}})
)]
pub struct Unavailable(ErrorBody);

// ----- bundles -----

/// References to the named responses, under their status codes.
fn bundle(responses: &[(&str, &str)]) -> BTreeMap<String, RefOr<Response>> {
    responses
        .iter()
        .map(|(status, name)| {
            let reference = RefOr::Ref(Ref::from_response_name(*name));
            ((*status).to_owned(), reference)
        })
        .collect()
}

/// What any `/api` route may answer: 400 [`BadRequest`], 422
/// [`ValidationFailed`], 503 [`Unavailable`].
pub struct Errors;

impl IntoResponses for Errors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        bundle(&[
            ("400", "BadRequest"),
            ("422", "ValidationFailed"),
            ("503", "Unavailable"),
        ])
    }
}

/// What a route that reads a body may also answer: 413
/// [`PayloadTooLarge`], 415 [`UnsupportedMediaType`].
pub struct BodyErrors;

impl IntoResponses for BodyErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        bundle(&[("413", "PayloadTooLarge"), ("415", "UnsupportedMediaType")])
    }
}
