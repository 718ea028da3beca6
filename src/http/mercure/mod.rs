//! The Mercure hub at `/.well-known/mercure` (draft-dunglas-mercure-07, the
//! protocol of the 0.x hubs): subscribe (`GET`, SSE), publish (`POST`, a
//! form), and the active-subscriptions API. Every update is an event in the
//! log (`app::mercure`), so it is durable, resumable by its id across
//! restarts, visible in `/api/events`, and delivered across nodes like any
//! event; the stream is the native one (`stream.rs`) with Mercure framing and
//! a per-subscriber topic filter. On when `--mercure-publisher-jwt-key` is
//! given; see docs/mercure.md.

mod auth;
mod publish;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::stream::{sse_response_with, LogStream, Start};
use super::AppState;
use crate::app;
use crate::app::Actor;
use crate::config::MercureArgs;
use crate::domain::mercure::{
    self as rules, new_update_id, subscription_topic, Selector, SubscriberFilter, Update,
};
use crate::domain::{AgentId, ChannelPattern, DomainError, StreamFilter};
use crate::http::error::ApiError;
use crate::hub::Framing;
use crate::store::{self, events};
use crate::sync::LockExt;
use auth::{Grant, Keys};
pub use publish::{__path_publish, publish};

/// The hub's path.
pub const HUB_PATH: &str = "/.well-known/mercure";
const CONTEXT: &str = "https://mercure.rocks/";

/// One active subscription (per node: each node lists its own subscribers).
#[derive(Debug, Clone)]
struct Active {
    topic: String,
    subscriber: String,
    payload: Option<Value>,
}

impl Active {
    fn document(&self, active: bool) -> Value {
        let mut doc = json!({
            "id": subscription_topic(&self.topic, &self.subscriber),
            "type": "Subscription",
            "topic": self.topic,
            "subscriber": self.subscriber,
            "active": active,
        });
        if let Some(payload) = &self.payload {
            doc["payload"] = payload.clone();
        }
        doc
    }
}

/// The hub's settings and its active subscriptions.
pub struct Mercure {
    keys: Keys,
    anonymous: bool,
    subscriptions: bool,
    active: Mutex<Vec<Active>>,
}

impl Mercure {
    pub fn from_args(args: &MercureArgs) -> anyhow::Result<Option<Arc<Mercure>>> {
        Ok(Keys::from_args(args)?.map(|keys| {
            Arc::new(Mercure {
                keys,
                anonymous: args.mercure_anonymous,
                subscriptions: args.mercure_subscriptions,
                active: Mutex::new(Vec::new()),
            })
        }))
    }

    fn active(&self) -> std::sync::MutexGuard<'_, Vec<Active>> {
        self.active.locked()
    }
}

fn hub(state: &AppState) -> Result<&Arc<Mercure>, ApiError> {
    state.mercure.as_ref().ok_or(ApiError::Disabled(
        "the Mercure hub is off: start switchboard with --mercure-publisher-jwt-key",
    ))
}

/// `Link: <…/.well-known/mercure>; rel="mercure"`, the discovery header.
fn link(req: &HttpRequest) -> (header::HeaderName, String) {
    let info = req.connection_info();
    (
        header::LINK,
        format!(
            "<{}://{}{HUB_PATH}>; rel=\"mercure\"",
            info.scheme(),
            info.host()
        ),
    )
}

/// Values of a repeated query or form field.
fn all(pairs: &[(String, String)], name: &str) -> Vec<String> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
        .collect()
}

fn pairs(text: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(text)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `GET /.well-known/mercure?topic=…`: a Server-Sent-Events stream of the
/// updates whose topics match a selector (private ones only with a token
/// allowing one of their topics), resuming after `Last-Event-ID` or
/// `lastEventID` (the header wins; `earliest` for all the history).
#[utoipa::path(
    get,
    path = "/.well-known/mercure",
    tag = "mercure",
    params(
        ("topic" = Vec<String>, Query, description = "Topic selectors: `*`, a topic, or an RFC 6570 URI template; repeat for several"),
        ("lastEventID" = Option<String>, Query, description = "Resume after this update id (`earliest` for all the history); `Last-Event-ID` wins"),
        ("authorization" = Option<String>, Query, description = "The subscriber's JWT, when neither the header nor the cookie can carry it"),
    ),
    responses(
        (status = 200, description = "`text/event-stream` of updates: `id` (the update's id), `event`, `retry`, `data` lines. `Last-Event-ID` header: the id before the first update sent, or `earliest`", content_type = "text/event-stream", body = String),
        (status = 400, response = super::described::BadRequest),
        (status = 401, response = super::described::Unauthorized),
        (status = 404, response = super::described::NotFound),
    ),
)]
pub async fn subscribe(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mercure = hub(&state)?.clone();
    let query = pairs(req.query_string().as_bytes());
    let topics = all(&query, "topic");
    if topics.is_empty() {
        return Err(ApiError::bad_request(
            "give at least one `topic` query parameter (a topic selector)",
        ));
    }
    let grant = subscriber_grant(&mercure, &req)?;
    if state.hub.stream_count() >= state.max_streams {
        return Err(ApiError::Unavailable("too many streams are open".into()));
    }
    let asked = asked_resume(&req, &query);
    let (start, preceding) = resume(&state, asked, grant.subscribe.clone()).await?;

    let filter = std::sync::Arc::new(topic_filter(&topics, &grant));
    let registration = state.hub.subscribe(
        filter.clone(),
        Framing::Mercure,
        None,
        crate::domain::Timestamp::now(),
    );
    let mut stream = LogStream::new(&state, registration, filter, Framing::Mercure, start);
    if let Some(exp) = grant.expires {
        stream = stream.expires_at(instant_of(exp));
    }
    if mercure.subscriptions {
        stream = list_active(&state, &mercure, &topics, grant.payload.as_ref(), stream).await?;
    }
    let mut response = HttpResponse::Ok();
    response.insert_header(link(&req));
    if let Some(preceding) = preceding {
        response.insert_header(("Last-Event-ID", preceding));
    }
    Ok(sse_response_with(stream, response))
}

/// The subscriber's token's grant: an empty one for an anonymous
/// subscriber, who is refused unless the hub takes them.
fn subscriber_grant(mercure: &Mercure, req: &HttpRequest) -> Result<Grant, ApiError> {
    let grant = mercure.keys.subscriber(req)?;
    if grant.is_none() && !mercure.anonymous {
        return Err(ApiError::Unauthorized(
            "a subscriber JWT is required (Authorization header, mercureAuthorization cookie or authorization query parameter); this hub does not take anonymous subscribers".into(),
        ));
    }
    Ok(grant.unwrap_or_default())
}

/// The update id to resume after: the `Last-Event-ID` header, else the
/// `lastEventID` query parameter (blank ones ignored).
fn asked_resume(req: &HttpRequest, query: &[(String, String)]) -> Option<String> {
    req.headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| {
            all(query, "lastEventID")
                .into_iter()
                .find(|v| !v.trim().is_empty())
        })
}

/// The hub's updates (public and private) whose topics match a selector in
/// `topics`, private ones only when the grant's `mercure.subscribe` allows.
fn topic_filter(topics: &[String], grant: &Grant) -> StreamFilter {
    StreamFilter {
        patterns: vec![
            ChannelPattern::Exact(rules::PUBLIC_CHANNEL.into()),
            ChannelPattern::Exact(rules::PRIVATE_CHANNEL.into()),
        ],
        resource_ids: None,
        exclude_session: None,
        allowed: None,
        mercure: Some(Arc::new(SubscriberFilter {
            selectors: topics.iter().map(|t| Selector::new(t)).collect(),
            authorized: grant.subscribe.clone(),
        })),
    }
}

/// Lists the stream's subscriptions (one per topic, under a new subscriber
/// id) as active and announces them; when the stream closes they leave the
/// list and are announced inactive.
async fn list_active(
    state: &web::Data<AppState>,
    mercure: &Arc<Mercure>,
    topics: &[String],
    payload: Option<&Value>,
    stream: LogStream,
) -> Result<LogStream, ApiError> {
    let subscriber = new_update_id();
    let subs: Vec<Active> = topics
        .iter()
        .map(|topic| Active {
            topic: topic.clone(),
            subscriber: subscriber.clone(),
            payload: payload.cloned(),
        })
        .collect();
    mercure.active().extend(subs.iter().cloned());
    announce(state, &subs, true).await?;
    let state = state.clone();
    let hub = mercure.clone();
    Ok(stream.on_close(move || {
        hub.active().retain(|a| a.subscriber != subscriber);
        for sub in &subs {
            let update = subscription_update(sub, false);
            state.writer.write_detached(move |tx| {
                app::mercure::publish(tx, &hub_actor(), &update).map(|_| ())
            });
        }
    }))
}

/// An `Instant` for a JWT's `exp` (seconds since the epoch).
fn instant_of(exp: u64) -> Instant {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Instant::now() + Duration::from_secs(exp).saturating_sub(now)
}

/// Where a subscriber starts, and the `Last-Event-ID` response header: the
/// id asked for when the log still has what follows it, else `earliest` (the
/// whole history is sent: an unknown id never leaves a silent gap).
///
/// The id of an update the subscriber may not receive (a private one,
/// with `authorized` covering none of its topics) counts as unknown: were
/// it honoured, the header and the updates sent would tell an anonymous
/// subscriber which private ids exist.
async fn resume(
    state: &AppState,
    asked: Option<String>,
    authorized: Vec<Selector>,
) -> Result<(Start, Option<String>), ApiError> {
    let Some(asked) = asked else {
        return Ok((Start::Recent(0), None));
    };
    let (found, pruned) = state
        .store
        .read(move |conn| {
            let event = match asked.as_str() {
                "earliest" => None,
                asked => store::mercure::find(conn, asked)?,
            };
            let found = match event {
                Some(id) => events::find(conn, id)?
                    .as_ref()
                    .and_then(Update::from_event)
                    .filter(|update| rules::may_receive(&authorized, update))
                    .map(|_| (asked, id)),
                None => None,
            };
            Ok((found, events::pruned_through(conn)?))
        })
        .await?;
    Ok(match found {
        Some((asked, id)) if id >= pruned => (Start::After(id), Some(asked)),
        _ => (Start::After(pruned), Some("earliest".into())),
    })
}

/// The agent shown for hub-made updates (subscription events).
fn hub_actor() -> Actor {
    Actor::new(AgentId::server(), None)
}

fn subscription_update(sub: &Active, active: bool) -> Update {
    let mut doc = sub.document(active);
    doc["@context"] = json!(CONTEXT);
    Update {
        topics: vec![subscription_topic(&sub.topic, &sub.subscriber)],
        data: doc.to_string(),
        private: true,
        id: new_update_id(),
        event_type: None,
        retry: None,
    }
}

/// Publishes a subscription event per subscription, `active` or not.
async fn announce(state: &AppState, subs: &[Active], active: bool) -> Result<(), ApiError> {
    let updates: Vec<Update> = subs
        .iter()
        .map(|s| subscription_update(s, active))
        .collect();
    state
        .writer
        .write(move |tx| {
            for update in &updates {
                app::mercure::publish(tx, &hub_actor(), update)?;
            }
            Ok(())
        })
        .await?;
    Ok(())
}

/// The subscriptions API: who is subscribed (on this node), authorized by a
/// subscriber JWT whose `mercure.subscribe` matches the requested path.
async fn subscriptions_answer(
    req: &HttpRequest,
    state: &AppState,
    topic: Option<&str>,
    subscriber: Option<&str>,
) -> Result<HttpResponse, ApiError> {
    let mercure = hub(state)?;
    if !mercure.subscriptions {
        return Err(ApiError::Disabled(
            "the subscriptions API is off: start switchboard with --mercure-subscriptions",
        ));
    }
    let grant = mercure.keys.subscriber(req)?.ok_or_else(|| {
        ApiError::Unauthorized("the subscriptions API needs a subscriber JWT".into())
    })?;
    let path = req.uri().path().to_owned();
    let decoded = percent_decode(&path);
    let allowed = [path.as_str(), decoded.as_str()];
    if !grant
        .subscribe
        .iter()
        .any(|s| allowed.iter().any(|p| s.matches(p)))
    {
        return Err(DomainError::Forbidden(format!(
            "mercure.subscribe of the JWT does not cover {path}"
        ))
        .into());
    }
    let last = state
        .store
        .read(store::mercure::last_update_id)
        .await?
        .unwrap_or_else(|| "earliest".into());
    let active: Vec<Active> = mercure
        .active()
        .iter()
        .filter(|a| topic.is_none_or(|t| a.topic == t))
        .filter(|a| subscriber.is_none_or(|s| a.subscriber == s))
        .cloned()
        .collect();
    let mut doc = if subscriber.is_some() {
        let Some(one) = active.first() else {
            return Err(DomainError::NotFound("subscription".into()).into());
        };
        one.document(true)
    } else {
        json!({
            "id": path,
            "type": "Subscriptions",
            "subscriptions": active.iter().map(|a| a.document(true)).collect::<Vec<_>>(),
        })
    };
    doc["@context"] = json!(CONTEXT);
    doc["lastEventID"] = json!(last);
    Ok(HttpResponse::Ok()
        .insert_header(link(req))
        .insert_header((header::CACHE_CONTROL, "must-revalidate"))
        .content_type("application/ld+json")
        .body(doc.to_string()))
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// `GET /.well-known/mercure/subscriptions`
#[utoipa::path(
    get,
    path = "/.well-known/mercure/subscriptions",
    tag = "mercure",
    responses(
        (status = 200, description = "`application/ld+json`: `{@context, id, type: Subscriptions, lastEventID, subscriptions}`", content_type = "application/ld+json", body = Object),
        (status = 401, response = super::described::Unauthorized),
        (status = 403, response = super::described::Forbidden),
        (status = 404, response = super::described::NotFound),
    ),
)]
pub async fn subscriptions(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    subscriptions_answer(&req, &state, None, None).await
}

/// `GET /.well-known/mercure/subscriptions/{topic}`
#[utoipa::path(
    get,
    path = "/.well-known/mercure/subscriptions/{topic}",
    tag = "mercure",
    params(("topic" = String, Path, description = "A topic selector, percent-encoded")),
    responses(
        (status = 200, description = "The subscriptions with this topic selector", content_type = "application/ld+json", body = Object),
        (status = 401, response = super::described::Unauthorized),
        (status = 403, response = super::described::Forbidden),
        (status = 404, response = super::described::NotFound),
    ),
)]
pub async fn topic_subscriptions(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    subscriptions_answer(&req, &state, Some(&path), None).await
}

/// `GET /.well-known/mercure/subscriptions/{topic}/{subscriber}`
#[utoipa::path(
    get,
    path = "/.well-known/mercure/subscriptions/{topic}/{subscriber}",
    tag = "mercure",
    params(
        ("topic" = String, Path, description = "A topic selector, percent-encoded"),
        ("subscriber" = String, Path, description = "The subscriber's id, percent-encoded"),
    ),
    responses(
        (status = 200, description = "One subscription", content_type = "application/ld+json", body = Object),
        (status = 401, response = super::described::Unauthorized),
        (status = 403, response = super::described::Forbidden),
        (status = 404, response = super::described::NotFound),
    ),
)]
pub async fn subscription(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (topic, subscriber) = path.into_inner();
    subscriptions_answer(&req, &state, Some(&topic), Some(&subscriber)).await
}
