//! The Durable Streams subscription API (`/v1/stream/__ds/…`): parses each
//! request, runs one use case of `app::ds_subscriptions` through the writer,
//! hands the webhook wakes it made to delivery, and renders the protocol's
//! JSON (errors as `{"error": {"code", "message"}}`). No rule lives here.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::json;

use super::AppState;
use crate::app::ds_claims::{self as claims, AckRequest, WithWakes};
use crate::app::ds_subscriptions::{self as use_case, Refusal, StreamInfo, Subscription};
use crate::domain::ds_subscription::{percent_decode, Config, ConfigRequest};
use crate::http::error::ApiError;
use crate::store::StoreError;

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn json_answer(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("access-control-allow-origin", "*"))
        .insert_header(("cache-control", "no-store"))
        .json(body)
}

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    json_answer(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

fn refused(refusal: Refusal) -> HttpResponse {
    use StatusCode as S;
    match refusal {
        Refusal::Invalid(message) => error(S::BAD_REQUEST, "INVALID_REQUEST", message),
        Refusal::NotFound => error(
            S::NOT_FOUND,
            "SUBSCRIPTION_NOT_FOUND",
            "Subscription not found",
        ),
        Refusal::AlreadyExists => error(
            S::CONFLICT,
            "SUBSCRIPTION_ALREADY_EXISTS",
            "Subscription already exists with different configuration",
        ),
        Refusal::UrlRejected(message) => error(S::BAD_REQUEST, "WEBHOOK_URL_REJECTED", message),
        Refusal::TokenInvalid => error(S::UNAUTHORIZED, "TOKEN_INVALID", "Token invalid"),
        Refusal::Fenced => error(S::CONFLICT, "FENCED", "Wake generation is stale"),
        Refusal::AlreadyClaimed { holder, generation } => json_answer(
            S::CONFLICT,
            &json!({"error": {
                "code": "ALREADY_CLAIMED",
                "message": "The wake is claimed by another worker",
                "current_holder": holder,
                "generation": generation,
            }}),
        ),
        Refusal::NoPendingWork => error(
            S::CONFLICT,
            "NO_PENDING_WORK",
            "Subscription has no pending work",
        ),
        Refusal::InvalidOffset(message) => error(S::CONFLICT, "INVALID_OFFSET", message),
    }
}

fn failed(err: StoreError) -> HttpResponse {
    use actix_web::ResponseError;
    ApiError::from(err).error_response()
}

fn parse<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, Refusal> {
    if body.is_empty() {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|_| Refusal::Invalid("Invalid JSON body"))
}

/// The bearer token of a callback, ack or release.
fn bearer(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

fn id_of(req: &HttpRequest) -> String {
    req.match_info().get("id").unwrap_or_default().to_owned()
}

#[derive(Serialize)]
struct Signing {
    alg: &'static str,
    kid: String,
    jwks_url: String,
}

#[derive(Serialize)]
struct Webhook {
    url: String,
    signing: Signing,
}

#[derive(Serialize)]
struct LinkView<'a> {
    path: &'a str,
    link_type: &'a str,
    acked_offset: &'a str,
}

#[derive(Serialize)]
struct SubscriptionView<'a> {
    id: &'a str,
    subscription_id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pattern: Option<&'a str>,
    streams: Vec<LinkView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<Webhook>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wake_stream: Option<&'a str>,
    lease_ttl_ms: i64,
    created_at: &'a str,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
}

fn render(state: &AppState, sub: &Subscription) -> serde_json::Value {
    let row = &sub.row;
    let view = SubscriptionView {
        id: &row.id,
        subscription_id: &row.id,
        kind: &row.kind,
        pattern: row.pattern.as_deref(),
        streams: sub
            .streams
            .iter()
            .map(|s: &StreamInfo| LinkView {
                path: &s.path,
                link_type: s.link_type,
                acked_offset: &s.acked_offset,
            })
            .collect(),
        webhook: row.webhook_url.as_ref().map(|url| Webhook {
            url: url.clone(),
            signing: Signing {
                alg: "ed25519",
                kid: state.subscriptions.signer.kid().to_owned(),
                jwks_url: state.subscriptions.jwks_url(),
            },
        }),
        wake_stream: row.wake_stream.as_deref(),
        lease_ttl_ms: row.lease_ttl_ms,
        created_at: &row.created_at,
        status: "active",
        description: row.description.as_deref(),
    };
    serde_json::to_value(view).unwrap_or_default()
}

/// Answers a use case that may have made webhook wakes: delivers them.
fn delivered<T>(state: &AppState, outcome: WithWakes<T>) -> Result<T, Refusal> {
    let (answer, wakes) = outcome;
    state.subscriptions.deliver_all(wakes);
    answer
}

/// `GET /v1/stream/__ds/jwks.json`: the keys that sign webhooks.
#[utoipa::path(get, path = "/v1/stream/__ds/jwks.json", tag = "durable-streams",
    responses((status = 200, description = "The Ed25519 public keys (`application/jwk-set+json`)")))]
pub async fn get_jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("access-control-allow-origin", "*"))
        .content_type("application/jwk-set+json")
        .body(state.subscriptions.signer.jwks().to_string())
}

/// `PUT /v1/stream/__ds/subscriptions/{id}`: creates or confirms.
#[utoipa::path(put, path = "/v1/stream/__ds/subscriptions/{id}", tag = "durable-streams",
    params(("id" = String, Path, description = "The subscription's id")),
    request_body(content = Object, description = "`type`, `pattern` and/or `streams`, `webhook.url` or `wake_stream`, `lease_ttl_ms`, `description`"),
    responses((status = 201, description = "Created"), (status = 200, description = "Confirmed: the same configuration"),
        (status = 400, description = "Invalid request or webhook URL"), (status = 409, description = "Exists with another configuration")))]
pub async fn put_subscription(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let request: ConfigRequest = match parse(&body) {
        Ok(request) => request,
        Err(refusal) => return refused(refusal),
    };
    let config = match Config::parse(request) {
        Ok(config) => config,
        Err(message) => return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message),
    };
    let (id, allow) = (id_of(&req), state.subscriptions.policy.clone());
    match state
        .writer
        .write(move |tx| use_case::create(tx, id, config, &allow, now_ms()))
        .await
    {
        Ok(committed) => match committed.value {
            Ok((sub, created)) => json_answer(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &render(&state, &sub),
            ),
            Err(refusal) => refused(refusal),
        },
        Err(err) => failed(err),
    }
}

/// `GET /v1/stream/__ds/subscriptions/{id}`.
#[utoipa::path(get, path = "/v1/stream/__ds/subscriptions/{id}", tag = "durable-streams",
    params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 200, description = "The subscription and its streams' acked offsets"), (status = 404, description = "No such subscription")))]
pub async fn get_subscription(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let id = id_of(&req);
    match state
        .store
        .read(move |conn| use_case::load(conn, &id))
        .await
    {
        Ok(Some(sub)) => json_answer(StatusCode::OK, &render(&state, &sub)),
        Ok(None) => refused(Refusal::NotFound),
        Err(err) => failed(err),
    }
}

/// `DELETE /v1/stream/__ds/subscriptions/{id}`.
#[utoipa::path(delete, path = "/v1/stream/__ds/subscriptions/{id}", tag = "durable-streams",
    params(("id" = String, Path, description = "The subscription's id")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such subscription")))]
pub async fn delete_subscription(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let id = id_of(&req);
    match state.writer.write(move |tx| use_case::delete(tx, id)).await {
        Ok(committed) if committed.value => HttpResponse::NoContent().finish(),
        Ok(_) => refused(Refusal::NotFound),
        Err(err) => failed(err),
    }
}

#[derive(Default, serde::Deserialize)]
struct AddStreams {
    #[serde(default)]
    streams: Vec<String>,
}

/// `POST /v1/stream/__ds/subscriptions/{id}/streams`: follows more streams.
#[utoipa::path(post, path = "/v1/stream/__ds/subscriptions/{id}/streams", tag = "durable-streams",
    params(("id" = String, Path, description = "The subscription's id")),
    request_body(content = Object, description = "`{\"streams\": [path, …]}`"),
    responses((status = 204, description = "Added"), (status = 400, description = "Invalid request"), (status = 404, description = "No such subscription")))]
pub async fn add_subscription_streams(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let request: AddStreams = match parse(&body) {
        Ok(request) => request,
        Err(refusal) => return refused(refusal),
    };
    if request.streams.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "streams must be a non-empty array",
        );
    }
    let id = id_of(&req);
    match state
        .writer
        .write(move |tx| use_case::add_streams(tx, id, request.streams))
        .await
    {
        Ok(committed) if committed.value => HttpResponse::NoContent().finish(),
        Ok(_) => refused(Refusal::NotFound),
        Err(err) => failed(err),
    }
}

/// `DELETE /v1/stream/__ds/subscriptions/{id}/streams/{stream}`: stops
/// following a stream added by name (`stream` percent-encoded).
#[utoipa::path(delete, path = "/v1/stream/__ds/subscriptions/{id}/streams/{stream}", tag = "durable-streams",
    params(("id" = String, Path, description = "The subscription's id"),
        ("stream" = String, Path, description = "The stream's path, percent-encoded")),
    responses((status = 204, description = "Removed"), (status = 404, description = "No such subscription")))]
pub async fn remove_subscription_stream(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> HttpResponse {
    let raw = req.match_info().get("stream").unwrap_or_default();
    let Some(stream) = percent_decode(raw) else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "Invalid stream path",
        );
    };
    let id = id_of(&req);
    match state
        .writer
        .write(move |tx| use_case::remove_stream(tx, id, stream))
        .await
    {
        Ok(committed) if committed.value => HttpResponse::NoContent().finish(),
        Ok(_) => refused(Refusal::NotFound),
        Err(err) => failed(err),
    }
}

async fn ack(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
    pull: bool,
) -> HttpResponse {
    let token = bearer(&req);
    let request: AckRequest = match parse(&body) {
        Ok(request) => request,
        Err(refusal) => return refused(refusal),
    };
    let id = id_of(&req);
    match state
        .writer
        .write(move |tx| claims::ack(tx, id, token, request, pull, now_ms()))
        .await
    {
        Ok(committed) => match delivered(&state, committed.value) {
            Ok(next_wake) => {
                json_answer(StatusCode::OK, &json!({"ok": true, "next_wake": next_wake}))
            }
            Err(refusal) => refused(refusal),
        },
        Err(err) => failed(err),
    }
}

/// `POST …/{id}/callback`: a webhook consumer acks offsets (and says `done`).
#[utoipa::path(post, path = "/v1/stream/__ds/subscriptions/{id}/callback", tag = "durable-streams",
    params(("id" = String, Path, description = "The subscription's id")),
    request_body(content = Object, description = "`wake_id`, `generation`, `acks: [{stream, offset}]`, `done`"),
    responses((status = 200, description = "`{ok, next_wake}`"), (status = 404, description = "No such subscription"), (status = 409, description = "Fenced, or an invalid offset")))]
pub async fn subscription_callback(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    ack(req, state, body, false).await
}

/// `POST …/{id}/ack`: a pull-wake worker acks offsets (and says `done`).
#[utoipa::path(post, path = "/v1/stream/__ds/subscriptions/{id}/ack", tag = "durable-streams",
    params(("id" = String, Path, description = "The subscription's id")),
    request_body(content = Object, description = "`wake_id`, `generation`, `acks: [{stream, offset}]`, `done`"),
    responses((status = 200, description = "`{ok, next_wake}`"), (status = 404, description = "No such subscription"), (status = 409, description = "Fenced, or an invalid offset")))]
pub async fn ack_subscription(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    ack(req, state, body, true).await
}

#[derive(Default, serde::Deserialize)]
struct ClaimRequest {
    worker: Option<String>,
}

/// `POST …/{id}/claim`: a pull-wake worker claims the wake.
#[utoipa::path(post, path = "/v1/stream/__ds/subscriptions/{id}/claim", tag = "durable-streams",
    params(("id" = String, Path, description = "The subscription's id")),
    request_body(content = Object, description = "`{\"worker\": name}`"),
    responses((status = 200, description = "`{wake_id, generation, token, streams, lease_ttl_ms}`"), (status = 400, description = "Invalid request"),
        (status = 404, description = "No such subscription"), (status = 409, description = "Claimed already, or no pending work")))]
pub async fn claim_subscription(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let request: ClaimRequest = match parse(&body) {
        Ok(request) => request,
        Err(refusal) => return refused(refusal),
    };
    let Some(worker) = request.worker.filter(|w| !w.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "worker is required",
        );
    };
    let id = id_of(&req);
    match state
        .writer
        .write(move |tx| claims::claim(tx, id, worker, now_ms()))
        .await
    {
        Ok(committed) => match committed.value {
            Ok(claimed) => json_answer(
                StatusCode::OK,
                &json!({
                    "wake_id": claimed.wake_id,
                    "generation": claimed.generation,
                    "token": claimed.token,
                    "streams": claimed.streams,
                    "lease_ttl_ms": claimed.lease_ttl_ms,
                }),
            ),
            Err(refusal) => refused(refusal),
        },
        Err(err) => failed(err),
    }
}

/// `POST …/{id}/release`: a pull-wake worker gives its claim back.
#[utoipa::path(post, path = "/v1/stream/__ds/subscriptions/{id}/release", tag = "durable-streams",
    params(("id" = String, Path, description = "The subscription's id")),
    request_body(content = Object, description = "`wake_id`, `generation`"),
    responses((status = 204, description = "Released"), (status = 404, description = "No such subscription"), (status = 409, description = "Fenced")))]
pub async fn release_subscription(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> HttpResponse {
    let token = bearer(&req);
    let request: AckRequest = match parse(&body) {
        Ok(request) => request,
        Err(refusal) => return refused(refusal),
    };
    let id = id_of(&req);
    match state
        .writer
        .write(move |tx| claims::release(tx, id, token, request, now_ms()))
        .await
    {
        Ok(committed) => match delivered(&state, committed.value) {
            Ok(()) => HttpResponse::NoContent().finish(),
            Err(refusal) => refused(refusal),
        },
        Err(err) => failed(err),
    }
}
