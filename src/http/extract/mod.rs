//! Extractors: the caller's identity (headers, or query parameters for
//! `EventSource`, which cannot set headers), JSON bodies with the contract's
//! errors, and the `Idempotency-Key` claim. How a refused body, query
//! parameter or path segment is worded lives in the submodules: `json` and
//! `params` parse, `structured` records what serde was told went wrong and
//! `errors` puts that in the client's words.

mod errors;
mod json;
mod params;
mod structured;

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpMessage, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::body::{BodyRefused, BODY_TIMEOUT};
use super::AppState;
use crate::auth::Principal;
use crate::domain::{AgentId, DomainError, EventId, IdempotencyKey, SessionId};
use crate::http::error::ApiError;
use crate::store::IdempotencyClaim;
use errors::integer_meaning;
use json::parse_json;
pub use params::{path_error, query_error, Query};

/// The caller as the gate found it (open mode: everything).
pub fn principal(req: &HttpRequest) -> Principal {
    req.extensions()
        .get::<Principal>()
        .cloned()
        .unwrap_or_else(Principal::open)
}

/// Who acts: `X-Agent-ID` (default `anonymous`) and `X-Session-ID`.
#[derive(Debug, Clone)]
pub struct Identity {
    pub agent_id: AgentId,
    pub session_id: Option<SessionId>,
}

/// A query parameter's value, percent-decoded.
pub(crate) fn query_param(req: &HttpRequest, name: &str) -> Option<String> {
    web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .ok()?
        .into_inner()
        .into_iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

fn header_or_query(
    req: &HttpRequest,
    header_name: &str,
    query_name: &str,
) -> Result<Option<String>, ApiError> {
    match req.headers().get(header_name) {
        Some(value) => value
            .to_str()
            .map(|v| Some(v.to_owned()))
            .map_err(|_| ApiError::bad_request(format!("{header_name} must be ASCII"))),
        None => Ok(query_param(req, query_name)),
    }
}

impl Identity {
    pub fn from_request_parts(req: &HttpRequest) -> Result<Self, ApiError> {
        let bad = |_: &str, err: DomainError| ApiError::bad_request(err.to_string());
        // A token names its agent (the gate checked that X-Agent-ID agrees).
        let token_agent = {
            use actix_web::HttpMessage;
            req.extensions()
                .get::<crate::auth::Principal>()
                .and_then(|p| p.agent_id.clone())
        };
        let agent_id = match (token_agent, header_or_query(req, "X-Agent-ID", "agent_id")?) {
            (Some(agent), _) => agent,
            (None, Some(value)) => {
                AgentId::parse("X-Agent-ID", &value).map_err(|e| bad("X-Agent-ID", e))?
            }
            (None, None) => AgentId::anonymous(),
        };
        let session_id = header_or_query(req, "X-Session-ID", "session_id")?
            .map(|value| {
                SessionId::parse("X-Session-ID", &value).map_err(|e| bad("X-Session-ID", e))
            })
            .transpose()?;
        Ok(Identity {
            agent_id,
            session_id,
        })
    }

    /// The `Idempotency-Key` claim of a POST, if the header is present.
    pub fn idempotency_claim(
        &self,
        req: &HttpRequest,
        body: &[u8],
    ) -> Result<Option<IdempotencyClaim>, ApiError> {
        let Some(value) = req.headers().get("Idempotency-Key") else {
            return Ok(None);
        };
        let key = value
            .to_str()
            .ok()
            .and_then(|v| IdempotencyKey::parse("Idempotency-Key", v).ok())
            .ok_or_else(|| {
                ApiError::bad_request("Idempotency-Key must be 1 to 255 visible ASCII characters")
            })?;
        Ok(Some(IdempotencyClaim::new(
            self.agent_id.clone(),
            key,
            req.method().as_str(),
            req.path(),
            body,
        )))
    }
}

impl FromRequest for Identity {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Identity::from_request_parts(req))
    }
}

/// A JSON body: the parsed value and the exact bytes (for idempotency).
/// Missing `Content-Type` is read as JSON; another type is 415; a body over
/// the limit is 413 before it is read in full; one nested deeper than
/// `MAX_JSON_DEPTH` is 422 naming the field.
pub struct JsonBody<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: DeserializeOwned + 'static> FromRequest for JsonBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limit = req
            .app_data::<web::Data<AppState>>()
            .map(|state| state.max_body)
            .unwrap_or(1024 * 1024);
        let content_type_ok = match req.headers().get(header::CONTENT_TYPE) {
            None => true,
            Some(value) => value
                .to_str()
                .map(|v| {
                    let essence = v
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase();
                    essence == "application/json" || essence.ends_with("+json")
                })
                .unwrap_or(false),
        };
        let declared_length = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if !content_type_ok {
                return Err(ApiError::UnsupportedMediaType {
                    expected: "application/json",
                });
            }
            let raw = read_body(&mut payload, limit, declared_length).await?;
            let value = parse_json(&raw)?;
            Ok(JsonBody { value, raw })
        })
    }
}

/// The whole body, refused with 413 as soon as it is known to pass `limit`,
/// with 408 when it does not arrive in time and with 503 when too many
/// requests wait for theirs (`body.rs`).
pub async fn read_body(
    payload: &mut (impl futures_util::Stream<Item = Result<Bytes, actix_web::error::PayloadError>>
              + Unpin),
    limit: usize,
    declared_length: Option<usize>,
) -> Result<Bytes, ApiError> {
    if declared_length.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| match BodyRefused::of(&err) {
            Some(BodyRefused::TimedOut) => ApiError::RequestTimeout {
                seconds: BODY_TIMEOUT.as_secs(),
            },
            Some(BodyRefused::TooManyWaiting) => ApiError::TooManyWaitingBodies,
            None => ApiError::bad_request(format!("could not read the body: {err}")),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// An event id or cursor that a query string or path gave as a number:
/// negative → 422 naming the field.
pub fn event_id(field: &str, value: Option<i64>) -> Result<Option<EventId>, ApiError> {
    Ok(value.map(|v| EventId::checked(field, v)).transpose()?)
}

/// The `cursor` of the sync endpoints, refused in the words they have
/// always used.
pub fn sync_cursor(value: Option<i64>) -> Result<Option<EventId>, ApiError> {
    value
        .map(|v| {
            EventId::checked("cursor", v).map_err(|_| {
                DomainError::validation("cursor", "must be a non-negative event id").into()
            })
        })
        .transpose()
}

/// A number that counts from 1 (a version number): 422 naming the field
/// when it is 0 or negative.
pub fn positive(field: &str, value: i64) -> Result<i64, ApiError> {
    if value < 1 {
        return Err(DomainError::validation(
            field,
            format!(
                "must be {}",
                integer_meaning(field).unwrap_or("a positive integer")
            ),
        )
        .into());
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
