//! The gate every request passes: authentication (token, JWT, the app's
//! authorize callback, ticket, cookie; all resolve to one `Principal`), the
//! `X-Agent-ID` check, the route's channel scope, and the per-agent write
//! rate. What a request needs comes from the route table (`routes.rs`), for
//! the route the router will give it to; a route the table does not declare is
//! refused (the gate fails closed). Handlers that serve many channels at once
//! (the stream, the log, batches, sync) narrow their answers with the caller's
//! `Principal`.

use std::num::NonZeroU32;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::extract::query_param;
use super::routes::{routes, Demand};
use super::AppState;
use tracing_actix_web::RootSpan;

use crate::auth::{Auth, AuthError, Principal};
use crate::domain::DomainError;
use crate::http::error::ApiError;

/// Writes per second per agent; `None` when unlimited.
pub struct WriteLimiter(Option<DefaultKeyedRateLimiter<String>>);

impl WriteLimiter {
    pub fn new(per_second: u32) -> Self {
        WriteLimiter(NonZeroU32::new(per_second).map(|rate| {
            let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst))
        }))
    }

    fn check(&self, agent: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.0 else {
            return Ok(());
        };
        limiter.check_key(&agent.to_owned()).map_err(|not_until| {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            ApiError::RateLimited {
                retry_after: wait.as_secs().max(1),
            }
        })
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Unauthorized(why) => ApiError::Unauthorized(why),
            AuthError::Forbidden(why) => DomainError::Forbidden(why).into(),
            AuthError::Unavailable(why) => ApiError::AuthorityUnavailable(why),
        }
    }
}

/// Finds the caller: `Authorization: Bearer`, then `?ticket=` (on a
/// stream only), then `?access_token=`, then the `switchboard_token`
/// cookie; with an authorize callback, the request's own credentials (its
/// session cookie) when it carries none of these.
async fn principal_of(
    req: &ServiceRequest,
    auth: &Auth,
    opens_stream: bool,
) -> Result<Principal, ApiError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(value) = req.headers().get(header::AUTHORIZATION) {
        let bearer = value.to_str().ok().and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
        return match bearer {
            Some(token) => Ok(auth.authenticate(token.trim(), header).await?),
            // Another scheme (Basic, a session scheme of the app's) is the
            // app's to judge, when it judges.
            None if auth.has_callback() => Ok(auth.authorize(header).await?),
            None => Err(ApiError::Unauthorized(
                "use Authorization: Bearer <token>".to_owned(),
            )),
        };
    }
    if let Some(ticket) = query_param(req.request(), "ticket") {
        if !opens_stream {
            return Err(ApiError::Unauthorized(
                "a stream ticket opens a stream (GET /api/stream) and nothing else; send the token"
                    .to_owned(),
            ));
        }
        return Ok(auth.redeem_ticket(&ticket)?);
    }
    if let Some(token) = query_param(req.request(), "access_token") {
        return Ok(auth.authenticate(&token, |_| None).await?);
    }
    if let Some(cookie) = req.cookie("switchboard_token") {
        return Ok(auth.authenticate(cookie.value(), |_| None).await?);
    }
    Ok(auth.authorize(header).await?)
}

/// Who the request log names: the authenticated agent, or in open mode the
/// agent the request claims (there is no other).
fn log_agent(req: &ServiceRequest, agent: &str) {
    if let Some(span) = req.extensions().get::<RootSpan>() {
        span.record("agent_id", agent.chars().take(128).collect::<String>());
    }
}

fn claimed_agent(req: &ServiceRequest) -> Option<String> {
    req.headers()
        .get("X-Agent-ID")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(req.request(), "agent_id"))
}

async fn gate(req: &ServiceRequest, state: &AppState) -> Result<(), ApiError> {
    let route = super::middleware::matched_route(req.request());
    let demand = routes().demand(req.method(), route.as_deref(), req.uri());
    if demand == Demand::Refused {
        return Err(DomainError::Forbidden(
            "no route declares what this request needs, so it is refused".to_owned(),
        )
        .into());
    }
    if state.auth.is_open() {
        if let Some(claimed) = claimed_agent(req) {
            log_agent(req, &claimed);
        }
        req.extensions_mut().insert(Principal::open());
    } else if demand != Demand::Nothing {
        let principal = principal_of(req, &state.auth, demand == Demand::Stream).await?;
        if let Some(agent) = &principal.agent_id {
            log_agent(req, agent.as_str());
            if let Some(claimed) = claimed_agent(req) {
                if claimed != agent.as_str() {
                    return Err(DomainError::Forbidden(format!(
                        "this token acts as {agent}, not {claimed}"
                    ))
                    .into());
                }
            }
        }
        let refused = match demand {
            Demand::Read(channel) if !principal.read.allows(&channel) => Some(("read", channel)),
            Demand::Write(channel) if !principal.write.allows(&channel) => Some(("write", channel)),
            _ => None,
        };
        if let Some((what, channel)) = refused {
            return Err(
                DomainError::Forbidden(format!("this token may not {what} {channel}")).into(),
            );
        }
        req.extensions_mut().insert(principal);
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let agent = match req
            .extensions()
            .get::<Principal>()
            .and_then(|p| p.agent_id.clone())
        {
            Some(agent) => agent.into_string(),
            None => req
                .headers()
                .get("X-Agent-ID")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("anonymous")
                .to_owned(),
        };
        state.limiter.check(&agent)?;
    }
    Ok(())
}

pub async fn authenticate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<AppState>>().cloned() else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    };
    if let Err(error) = gate(&req, &state).await {
        // The answer carries no error object for the request log to read:
        // record its code here.
        if let Some(span) = req.extensions().get::<RootSpan>() {
            span.record("error", error.code());
        }
        let response = error.error_response();
        return Ok(req.into_response(response).map_into_right_body());
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_left_body)
}
