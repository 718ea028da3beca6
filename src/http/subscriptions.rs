//! Subscriptions on channels (`/api/subscriptions`): webhooks that wake
//! workers that are not running, and pull subscriptions that worker pools
//! claim from. Each handler parses, checks the caller may read every
//! channel the subscription takes (else 404, as if it did not exist, or
//! 403 when making or changing one), runs one use case of
//! `app::subscriptions`, and renders the view. Delivery itself is
//! `app::deliveries`.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use super::answer::{Answer, WriteContext};
use super::{AppState, Identity, JsonBody};
use crate::app::subscriptions::{self as use_case, Acked, ClaimAsk, ClaimOutcome, Subscription};
use crate::domain::subscription::{Kind, Spec, SubscriptionRequest, MAX_BATCH, MAX_LEASE_SECONDS};
use crate::domain::{ChannelPattern, DomainError, Event, EventId, SubscriptionId};
use crate::http::error::ApiError;
use crate::store::subscriptions::ClaimRow;
use crate::store::Reply;

/// The longest a claim waits for events to arrive (`wait_seconds`).
const MAX_WAIT_SECONDS: i64 = 30;

fn ms_to_time(ms: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A webhook target.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    url: String,
}

/// A claim a worker holds.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClaimView {
    /// Name it to ack or release the claim.
    id: String,
    /// The claim holds the subscription's events from `first_id` to `last_id`.
    first_id: i64,
    last_id: i64,
    /// How many events.
    size: i64,
    #[schema(required = true)]
    worker: Option<String>,
    /// After this instant the events go to the next worker that claims.
    #[schema(value_type = String, format = DateTime)]
    lease_expires_at: Option<String>,
}

impl From<&ClaimRow> for ClaimView {
    fn from(claim: &ClaimRow) -> Self {
        ClaimView {
            id: claim.id.clone(),
            first_id: claim.first_id,
            last_id: claim.last_id,
            size: claim.size,
            worker: claim.worker.clone(),
            lease_expires_at: ms_to_time(claim.lease_expires_ms),
        }
    }
}

/// A subscription, its cursor and how its delivery goes.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionView {
    id: String,
    /// `webhook` or `pull`.
    kind: &'static str,
    channels: Vec<String>,
    /// `null`: every type.
    #[schema(required = true)]
    types: Option<Vec<String>>,
    /// The webhook target; `null` for a pull subscription.
    #[schema(required = true)]
    webhook: Option<WebhookView>,
    #[schema(required = true)]
    description: Option<String>,
    batch_size: i64,
    lease_seconds: i64,
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
    created_by: String,
    /// Every matching event up to this id is acknowledged.
    acked_through: i64,
    /// The newest event id of the log, to compare with `acked_through`.
    head_id: i64,
    /// Events acknowledged since the subscription was made.
    delivered: i64,
    /// Webhook: `delivering` (nothing failed since the last success) or
    /// `retrying`; pull: `claimable`.
    state: &'static str,
    /// Webhook: failed attempts since the last success.
    failures: i64,
    #[schema(required = true)]
    last_error: Option<String>,
    /// Webhook: no attempt before this instant (`null`: due now).
    #[schema(required = true, value_type = Option<String>, format = DateTime)]
    next_attempt_at: Option<String>,
    #[schema(required = true, value_type = Option<String>, format = DateTime)]
    last_success_at: Option<String>,
    /// Pull: the claims workers hold now.
    claims: Vec<ClaimView>,
}

impl SubscriptionView {
    fn new(s: Subscription, head_id: i64) -> Self {
        let row = s.row;
        let state = match (s.kind, row.failures) {
            (Kind::Pull, _) => "claimable",
            (Kind::Webhook, 0) => "delivering",
            (Kind::Webhook, _) => "retrying",
        };
        SubscriptionView {
            kind: s.kind.as_str(),
            channels: s
                .selection
                .channels
                .iter()
                .map(ToString::to_string)
                .collect(),
            types: s
                .selection
                .types
                .map(|types| types.into_iter().map(|t| t.into_string()).collect()),
            webhook: row.webhook_url.map(|url| WebhookView { url }),
            description: row.description,
            batch_size: row.batch_size,
            lease_seconds: row.lease_ms / 1000,
            created_at: row.created_at,
            created_by: row.created_by,
            acked_through: row.acked_through,
            head_id,
            delivered: row.delivered,
            state,
            failures: row.failures,
            last_error: row.last_error,
            next_attempt_at: (row.next_attempt_ms > 0)
                .then(|| ms_to_time(row.next_attempt_ms))
                .flatten(),
            last_success_at: row.last_success_at,
            claims: s.claims.iter().map(ClaimView::from).collect(),
            id: row.id,
        }
    }
}

/// `GET /api/subscriptions`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SubscriptionList {
    subscriptions: Vec<SubscriptionView>,
}

fn subscription_id(raw: &str) -> Result<SubscriptionId, ApiError> {
    SubscriptionId::parse("id", raw).map_err(|e| ApiError::BadParameter {
        field: "id".into(),
        message: format!("path parameter `id`: {e}"),
    })
}

/// The caller's read scope (`None`: every channel).
fn read_scope(req: &HttpRequest) -> Option<Vec<ChannelPattern>> {
    super::principal(req).read.restriction()
}

fn not_found(id: &str) -> ApiError {
    DomainError::NotFound(format!("subscription {id}")).into()
}

/// A subscription the caller may see, or 404.
async fn visible(
    req: &HttpRequest,
    state: &AppState,
    id: &SubscriptionId,
) -> Result<Subscription, ApiError> {
    let key = id.as_str().to_owned();
    let found = state.store.read(move |c| use_case::load(c, &key)).await?;
    match found {
        Some(s) if s.selection.readable_within(read_scope(req).as_deref()) => Ok(s),
        _ => Err(not_found(id.as_str())),
    }
}

/// `PUT /api/subscriptions/{id}` → 201 made, 200 changed (its cursors kept).
#[utoipa::path(
    put,
    path = "/api/subscriptions/{id}",
    operation_id = "put_channel_subscription",
    tag = "subscriptions",
    params(
        ("id" = String, Path, description = "1–64 characters of `[A-Za-z0-9_.-]`", example = "ci-review"),
        super::described::IdentityHeaders,
        super::described::IdempotencyHeader,
    ),
    request_body = SubscriptionRequest,
    responses(
        (status = 201, description = "Made", body = SubscriptionView),
        (status = 200, description = "Changed; the cursors are kept", body = SubscriptionView),
        (status = 403, response = super::described::Forbidden),
        (status = 409, description = "`conflict`: it exists with the other kind", body = crate::http::error::ErrorBody),
        super::described::Errors,
        super::described::BodyErrors,
    ),
)]
pub async fn put_subscription(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
    body: JsonBody<SubscriptionRequest>,
) -> Result<HttpResponse, ApiError> {
    let id = subscription_id(&id)?;
    let spec = Spec::parse(&body.value, &state.subscriptions.policy)?;
    if !spec.selection.readable_within(read_scope(&req).as_deref()) {
        return Err(DomainError::Forbidden(
            "this token may not read every channel the subscription names".into(),
        )
        .into());
    }
    let context = WriteContext::new(&req, &identity, &body.raw)?;
    let owner = identity.agent_id.clone();
    let scope = read_scope(&req);
    let head = state.hub.head_id().get();
    let answer = context
        .run(&state, move |tx, _| {
            let (subscription, created) = use_case::put(tx, &id, spec, &owner, scope.as_deref())?;
            let view = SubscriptionView::new(subscription, head);
            Ok(if created {
                Answer::created(view)
            } else {
                Answer::ok(view)
            })
        })
        .await;
    state.deliveries.poke();
    answer
}

/// `GET /api/subscriptions`: those whose channels the caller may read.
#[utoipa::path(
    get,
    path = "/api/subscriptions",
    tag = "subscriptions",
    params(super::described::IdentityHeaders),
    responses(
        (status = 200, description = "Every subscription the caller may see, by id", body = SubscriptionList),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn list_subscriptions(
    req: HttpRequest,
    state: web::Data<AppState>,
    _identity: Identity,
) -> Result<HttpResponse, ApiError> {
    let all = state.store.read(use_case::list).await?;
    let scope = read_scope(&req);
    let head = state.hub.head_id().get();
    let subscriptions = all
        .into_iter()
        .filter(|s| s.selection.readable_within(scope.as_deref()))
        .map(|s| SubscriptionView::new(s, head))
        .collect();
    Ok(HttpResponse::Ok().json(SubscriptionList { subscriptions }))
}

/// `GET /api/subscriptions/{id}`.
#[utoipa::path(
    get,
    path = "/api/subscriptions/{id}",
    operation_id = "get_channel_subscription",
    tag = "subscriptions",
    params(("id" = String, Path, description = "1–64 characters of `[A-Za-z0-9_.-]`"), super::described::IdentityHeaders),
    responses(
        (status = 200, description = "The subscription", body = SubscriptionView),
        (status = 400, response = super::described::BadRequest),
        (status = 404, response = super::described::NotFound),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn get_subscription(
    req: HttpRequest,
    state: web::Data<AppState>,
    _identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = subscription_id(&id)?;
    let found = visible(&req, &state, &id).await?;
    Ok(HttpResponse::Ok().json(SubscriptionView::new(found, state.hub.head_id().get())))
}

/// `DELETE /api/subscriptions/{id}` → 204; its claims end with it.
#[utoipa::path(
    delete,
    path = "/api/subscriptions/{id}",
    operation_id = "delete_channel_subscription",
    tag = "subscriptions",
    params(("id" = String, Path, description = "1–64 characters of `[A-Za-z0-9_.-]`"), super::described::IdentityHeaders, super::described::IdempotencyHeader),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, response = super::described::BadRequest),
        (status = 404, response = super::described::NotFound),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn delete_subscription(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = subscription_id(&id)?;
    visible(&req, &state, &id).await?;
    let answer = WriteContext::new(&req, &identity, &[])?
        .run(&state, move |tx, _| {
            use_case::delete(tx, id.as_str())?;
            Ok(Answer::<()>::no_content())
        })
        .await;
    state.deliveries.poke();
    answer
}

/// `POST /api/subscriptions/{id}/retry`: a webhook that is waiting to retry
/// tries now (after its receiver was fixed).
#[utoipa::path(
    post,
    path = "/api/subscriptions/{id}/retry",
    tag = "subscriptions",
    params(("id" = String, Path, description = "1–64 characters of `[A-Za-z0-9_.-]`"), super::described::IdentityHeaders, super::described::IdempotencyHeader),
    responses(
        (status = 200, description = "The subscription; its next attempt is due now", body = SubscriptionView),
        (status = 400, response = super::described::BadRequest),
        (status = 404, response = super::described::NotFound),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn retry_subscription(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = subscription_id(&id)?;
    visible(&req, &state, &id).await?;
    let head = state.hub.head_id().get();
    let answer = WriteContext::new(&req, &identity, &[])?
        .run(&state, move |tx, _| {
            let changed = use_case::retry(tx, id.as_str())?;
            Ok(Answer::ok(SubscriptionView::new(changed, head)))
        })
        .await;
    state.deliveries.poke();
    answer
}

/// The body of a claim; every field may be left out (also the body).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Who claims, for people reading the claims (1–128 characters).
    #[schema(max_length = 128)]
    worker: Option<String>,
    /// At most this many events: 1–1000, default the subscription's `batch_size`.
    #[schema(minimum = 1, maximum = 1000)]
    max: Option<i64>,
    /// The lease: 1–3600 s, default the subscription's `lease_seconds`.
    #[schema(minimum = 1, maximum = 3600)]
    lease_seconds: Option<i64>,
    /// When nothing is claimable, wait up to this long for events: 0–30 s, default 0.
    #[schema(minimum = 0, maximum = 30)]
    wait_seconds: Option<i64>,
}

/// A claim and its events.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ClaimAnswer {
    /// `null` when nothing was claimable (then `events` is empty).
    #[schema(required = true)]
    claim: Option<ClaimView>,
    events: Vec<Event>,
    /// Nothing claimed: how far the claim looked (not sent).
    #[serde(skip)]
    #[schema(ignore)]
    looked_through: Option<EventId>,
}

fn in_range(field: &str, value: Option<i64>, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
    match value {
        Some(v) if !(min..=max).contains(&v) => {
            Err(DomainError::validation(field, format!("must be between {min} and {max}")).into())
        }
        other => Ok(other),
    }
}

fn claim_ask(request: ClaimRequest) -> Result<(ClaimAsk, i64), ApiError> {
    if let Some(worker) = &request.worker {
        if worker.is_empty() || worker.chars().count() > 128 {
            return Err(DomainError::validation("worker", "must be 1 to 128 characters").into());
        }
    }
    let ask = ClaimAsk {
        worker: request.worker,
        max: in_range("max", request.max, 1, MAX_BATCH)?,
        lease_ms: in_range("lease_seconds", request.lease_seconds, 1, MAX_LEASE_SECONDS)?
            .map(|s| s * 1000),
    };
    let wait = in_range("wait_seconds", request.wait_seconds, 0, MAX_WAIT_SECONDS)?.unwrap_or(0);
    Ok((ask, wait))
}

/// `POST /api/subscriptions/{id}/claims`: the next events nobody holds (a
/// lapsed claim's first), under a lease; no event is held by two claims.
#[utoipa::path(
    post,
    path = "/api/subscriptions/{id}/claims",
    tag = "subscriptions",
    params(("id" = String, Path, description = "1–64 characters of `[A-Za-z0-9_.-]`"), super::described::IdentityHeaders, super::described::IdempotencyHeader),
    request_body(content = Option<ClaimRequest>, description = "Optional"),
    responses(
        (status = 200, description = "A claim and its events, or `claim: null` when nothing is claimable", body = ClaimAnswer),
        (status = 404, response = super::described::NotFound),
        (status = 409, description = "`wrong_kind`: a webhook subscription", body = crate::http::error::ErrorBody),
        super::described::Errors,
        super::described::BodyErrors,
    ),
)]
pub async fn claim_events(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    id: web::Path<String>,
    mut body: JsonBody<Option<ClaimRequest>>,
) -> Result<HttpResponse, ApiError> {
    let id = subscription_id(&id)?;
    let (ask, wait) = claim_ask(body.value.take().unwrap_or_default())?;
    visible(&req, &state, &id).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait as u64);
    let mut shutdown = state.hub.shutdown_signal();
    let mut scanned_to: Option<EventId> = None;
    loop {
        let seen = state.hub.head_id();
        let (key, ask) = (id.as_str().to_owned(), ask.clone());
        let now = chrono::Utc::now().timestamp_millis();
        // With an Idempotency-Key a claim is remembered, an empty answer is
        // not: a repeat after a lost answer gets the same claim, a repeat
        // after "nothing" looks again.
        let reply = WriteContext::new(&req, &identity, &body.raw)?
            .run_raw(&state, move |tx, _| {
                Ok(match use_case::claim(tx, &key, ask, now)? {
                    ClaimOutcome::Claimed(claimed) => Answer::ok(ClaimAnswer {
                        claim: Some(ClaimView::from(&claimed.claim)),
                        events: claimed.events,
                        looked_through: None,
                    }),
                    ClaimOutcome::Nothing { looked_through } => Answer::ok(ClaimAnswer {
                        claim: None,
                        events: Vec::new(),
                        looked_through: Some(looked_through),
                    })
                    .forgotten(),
                })
            })
            .await?;
        let looked_through = match reply {
            Reply::Replayed(stored) => return Ok(super::answer::replayed(stored)),
            Reply::Fresh(committed) => match committed.value.view.looked_through {
                None => return Ok(committed.value.into_response()),
                Some(through) => through,
            },
        };
        // One claim looks through a bounded number of events (a rare type
        // must not hold the writer): when it stopped short of the head and
        // got further than the last one, look on at once, in a new
        // transaction, instead of answering that nothing is claimable.
        let further = scanned_to.is_none_or(|before| looked_through > before);
        scanned_to = Some(looked_through);
        if looked_through < seen && further && !*shutdown.borrow() {
            continue;
        }
        if tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            return Ok(HttpResponse::Ok().json(ClaimAnswer {
                claim: None,
                events: Vec::new(),
                looked_through: None,
            }));
        }
        // Claim again when the log grows (or a lease may have lapsed).
        let grown = async {
            while state.hub.head_id() == seen {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            _ = grown => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn claim_params(path: (String, String)) -> Result<(SubscriptionId, String), ApiError> {
    let (id, claim) = path;
    Ok((subscription_id(&id)?, claim))
}

/// `POST /api/subscriptions/{id}/claims/{claim}/ack`: the claim's events
/// are done; 409 `claim_lost` when its lease ended and it went to another
/// worker.
#[utoipa::path(
    post,
    path = "/api/subscriptions/{id}/claims/{claim}/ack",
    tag = "subscriptions",
    params(
        ("id" = String, Path, description = "1–64 characters of `[A-Za-z0-9_.-]`"),
        ("claim" = String, Path, description = "The claim's id"),
        super::described::IdentityHeaders,
        super::described::IdempotencyHeader,
    ),
    responses(
        (status = 200, description = "Acknowledged", body = Acked),
        (status = 400, response = super::described::BadRequest),
        (status = 404, response = super::described::NotFound),
        (status = 409, description = "`claim_lost` or `wrong_kind`", body = crate::http::error::ErrorBody),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn ack_claim(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, claim) = claim_params(path.into_inner())?;
    visible(&req, &state, &id).await?;
    WriteContext::new(&req, &identity, &[])?
        .run(&state, move |tx, _| {
            let acked: Acked = use_case::ack(tx, id.as_str(), &claim)?;
            Ok(Answer::ok(acked))
        })
        .await
}

/// `POST /api/subscriptions/{id}/claims/{claim}/release` → 204: the
/// claim's events go to the next worker at once.
#[utoipa::path(
    post,
    path = "/api/subscriptions/{id}/claims/{claim}/release",
    tag = "subscriptions",
    params(
        ("id" = String, Path, description = "1–64 characters of `[A-Za-z0-9_.-]`"),
        ("claim" = String, Path, description = "The claim's id"),
        super::described::IdentityHeaders,
        super::described::IdempotencyHeader,
    ),
    responses(
        (status = 204, description = "Released"),
        (status = 400, response = super::described::BadRequest),
        (status = 404, response = super::described::NotFound),
        (status = 409, description = "`claim_lost` or `wrong_kind`", body = crate::http::error::ErrorBody),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn release_claim(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, claim) = claim_params(path.into_inner())?;
    visible(&req, &state, &id).await?;
    WriteContext::new(&req, &identity, &[])?
        .run(&state, move |tx, _| {
            use_case::release(tx, id.as_str(), &claim)?;
            Ok(Answer::<()>::no_content())
        })
        .await
}

/// `GET /api/webhook-keys`: the Ed25519 keys webhooks are signed with (the
/// same as Durable Streams' `__ds/jwks.json`).
#[utoipa::path(
    get,
    path = "/api/webhook-keys",
    tag = "subscriptions",
    params(super::described::IdentityHeaders),
    responses(
        (status = 200, description = "A JWK set (`application/jwk-set+json`)"),
        (status = 400, response = super::described::BadRequest),
    ),
)]
pub async fn webhook_keys(state: web::Data<AppState>, _identity: Identity) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/jwk-set+json")
        .insert_header(("cache-control", "public, max-age=300"))
        .body(state.subscriptions.signer.jwks().to_string())
}
