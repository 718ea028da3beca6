//! Extractors: the caller's identity (headers, or query parameters for
//! `EventSource`, which cannot set headers), JSON bodies with the contract's
//! errors, and the `Idempotency-Key` claim.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{web, FromRequest, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::AppState;
use crate::domain::{AgentId, DomainError, IdempotencyKey, SessionId};
use crate::error::ApiError;
use crate::store::IdempotencyClaim;

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
/// the limit is 413 before it is read in full.
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
                return Err(ApiError::UnsupportedMediaType);
            }
            if declared_length.is_some_and(|n| n > limit) {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk
                    .map_err(|e| ApiError::bad_request(format!("could not read the body: {e}")))?;
                if body.len() + chunk.len() > limit {
                    return Err(ApiError::PayloadTooLarge { limit });
                }
                body.extend_from_slice(&chunk);
            }
            let raw = body.freeze();
            let value = parse_json(&raw)?;
            Ok(JsonBody { value, raw })
        })
    }
}

fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.is_empty() {
        // An empty body is `null`: fine where the body is optional.
        return serde_json::from_slice(b"null")
            .map_err(|_| ApiError::InvalidJson("the body is empty".into()));
    }
    // Syntax first, so broken JSON is always 400 `invalid_json`, whatever
    // field error the typed parse would have met on the way.
    serde_json::from_slice::<serde::de::IgnoredAny>(raw)
        .map_err(|err| ApiError::InvalidJson(err.to_string()))?;
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.to_string();
        // "unknown field `x`, expected …": the field is x, inside `path`.
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (unknown, path.as_str()) {
            // The path of an unknown field already ends with its name.
            (Some(name), "." | "") => name.to_owned(),
            (Some(_), path) => path.to_owned(),
            (None, "." | "") => message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
                .unwrap_or("body")
                .to_owned(),
            (None, path) => path.to_owned(),
        };
        ApiError::Domain(DomainError::Validation { field, message })
    })
}
