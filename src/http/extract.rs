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

use super::body::{BodyRefused, BODY_TIMEOUT};
use super::AppState;
use crate::domain::{AgentId, DomainError, EventId, IdempotencyKey, SessionId};
use crate::http::error::ApiError;
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

fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.is_empty() {
        // An empty body is `null`: fine where the body is optional.
        return serde_json::from_slice(b"null")
            .map_err(|_| ApiError::InvalidJson("the body is empty".into()));
    }
    // Nesting before anything parses: free-form values are kept raw, and a
    // reader elsewhere may not parse what serde_json takes.
    crate::domain::check_depth(raw)?;
    // Syntax first, so broken JSON is always 400 `invalid_json`, whatever
    // field error the typed parse would have met on the way.
    // Its position ("at line 1 column 5") helps to find a syntax error.
    serde_json::from_slice::<serde::de::IgnoredAny>(raw)
        .map_err(|err| ApiError::InvalidJson(err.to_string()))?;
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        let (field, message) = body_field_error(&path, without_position(&message));
        ApiError::Domain(DomainError::Validation { field, message })
    })
}

/// serde_json ends its messages with " at line L column C".
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => message,
    }
}

/// The field a body error is about (`events[0].type`, `body` for the whole
/// body) and what is wrong with it, in the client's words.
fn body_field_error(path: &str, message: &str) -> (String, String) {
    let at_root = matches!(path, "." | "" | "?");
    let problem = SerdeProblem::read(message);
    match problem {
        // The path of an unknown field already ends with its name.
        SerdeProblem::UnknownField { allowed, .. } => (
            if at_root {
                unknown_name(message).unwrap_or("body").to_owned()
            } else {
                path.to_owned()
            },
            format!("is not a known field; allowed: {allowed}"),
        ),
        SerdeProblem::MissingField(name) => (
            if at_root {
                name
            } else {
                format!("{path}.{name}")
            },
            "is required".to_owned(),
        ),
        _ if at_root => ("body".to_owned(), "must be a JSON object".to_owned()),
        problem => (path.to_owned(), problem.predicate()),
    }
}

fn unknown_name(message: &str) -> Option<&str> {
    message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
}

/// What serde said went wrong, read from its message (serde's wording is
/// stable: `serde::de::Error`'s provided methods and the standard parse
/// errors). Each is put again in the client's words: never a Rust type name.
#[derive(Debug, PartialEq)]
enum SerdeProblem {
    /// "must be …": what the value must be.
    Expected(String),
    OneOf(String),
    UnknownField {
        allowed: String,
    },
    MissingField(String),
    Duplicate,
    /// A message of ours (a `Deserialize` impl of a domain type).
    Other(String),
}

impl SerdeProblem {
    fn read(message: &str) -> Self {
        let message = without_position(message);
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let expected = rest.split_once(", ").map(|(_, e)| e).unwrap_or("");
            return SerdeProblem::UnknownField {
                allowed: listed_names(expected).unwrap_or_else(|| "none".to_owned()),
            };
        }
        if let Some(rest) = message.strip_prefix("unknown variant `") {
            let expected = rest.split_once(", ").map(|(_, e)| e).unwrap_or("");
            return match listed_names(expected) {
                Some(names) => SerdeProblem::OneOf(names),
                None => SerdeProblem::Expected("a known value".to_owned()),
            };
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            return SerdeProblem::MissingField(rest.trim_end_matches('`').to_owned());
        }
        if message.starts_with("duplicate field `") {
            return SerdeProblem::Duplicate;
        }
        for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
            if let Some(rest) = message.strip_prefix(prefix) {
                let expected = rest.rsplit_once(", expected ").map(|(_, e)| e);
                return SerdeProblem::Expected(
                    expected.map_or("a valid value".to_owned(), human_expectation),
                );
            }
        }
        match message {
            "invalid digit found in string"
            | "cannot parse integer from empty string"
            | "number too large to fit in target type"
            | "number too small to fit in target type" => {
                SerdeProblem::Expected("an integer".to_owned())
            }
            "provided string was not `true` or `false`" => {
                SerdeProblem::Expected("true or false".to_owned())
            }
            "invalid float literal" => SerdeProblem::Expected("a number".to_owned()),
            other => SerdeProblem::Other(other.to_owned()),
        }
    }

    /// "must be …", "is given twice", …: follows the field's name.
    fn predicate(&self) -> String {
        match self {
            SerdeProblem::Expected(what) => format!("must be {what}"),
            SerdeProblem::OneOf(names) => format!("must be one of: {names}"),
            SerdeProblem::UnknownField { allowed } => {
                format!("is not a known field; allowed: {allowed}")
            }
            SerdeProblem::MissingField(name) => format!("needs the field `{name}`"),
            SerdeProblem::Duplicate => "is given twice".to_owned(),
            SerdeProblem::Other(message) => format!("is invalid: {message}"),
        }
    }
}

/// "one of `a`, `b`" or "`a` or `b`" or "`a`" → "a, b"; "there are no …" → None.
fn listed_names(expected: &str) -> Option<String> {
    let names: Vec<&str> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|name| !name.starts_with('_'))
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// serde's "expected …" text for a value, without Rust's names.
fn human_expectation(expected: &str) -> String {
    let expected = expected.trim();
    let text = match expected {
        "a string" | "a borrowed string" | "a character" | "a char" => "a string",
        "a boolean" => "true or false",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer",
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer",
        "f32" | "f64" => "a number",
        "a sequence" => "an array",
        "a map" => "an object",
        "unit" => "null",
        _ if expected.starts_with("struct ") => "an object",
        _ if expected.starts_with("a tuple") || expected.starts_with("tuple") => "an array",
        _ if expected.starts_with("a sequence") => "an array",
        _ if expected.starts_with("a string") => "a string",
        _ => "a valid value",
    };
    text.to_owned()
}

/// A query string, deserialized with the contract's errors: a value that
/// does not parse is 400 `bad_request` naming the parameter and what it
/// must be (`details.field`); an unknown parameter names the allowed ones.
/// A drop-in for `web::Query` (same `Deref` and `into_inner`).
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> Query<T> {
    pub fn from_query(query: &str) -> Result<Self, ApiError> {
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|err| {
                let path = err.path().to_string();
                let message = err.into_inner().to_string();
                parameter_error("query parameter", &path, &message)
            })
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Query::from_query(req.query_string()))
    }
}

/// What an integer parameter means, by its name, for the error message.
fn integer_meaning(name: &str) -> Option<&'static str> {
    match name {
        "id" | "after" | "before" | "cursor" | "updated_since_id" | "last_event_id" => {
            Some("a non-negative integer (an event id)")
        }
        "limit" => Some("an integer (the page size)"),
        "n" => Some("a positive integer (a version number)"),
        _ => None,
    }
}

/// A query parameter or path segment (`kind`) named `name` failed with
/// serde's `message`: 400 `bad_request` with a sentence about it.
fn parameter_error(kind: &str, name: &str, message: &str) -> ApiError {
    let problem = SerdeProblem::read(message);
    let (field, predicate) = match &problem {
        SerdeProblem::UnknownField { allowed } => {
            let field = unknown_name(message).unwrap_or(name).to_owned();
            return ApiError::BadParameter {
                message: format!("unknown {kind} `{field}`; allowed: {allowed}"),
                field,
            };
        }
        SerdeProblem::MissingField(missing) => (missing.clone(), "is required".to_owned()),
        SerdeProblem::Expected(what) if what.contains("integer") => (
            name.to_owned(),
            format!("must be {}", integer_meaning(name).unwrap_or(what)),
        ),
        problem => (name.to_owned(), problem.predicate()),
    };
    ApiError::BadParameter {
        message: format!("{kind} `{field}` {predicate}"),
        field,
    }
}

/// The error of a path segment that does not parse (`web::PathConfig`).
/// actix's error names the value and the Rust type, not the segment: the
/// segment is found by its value among the matched ones.
pub fn path_error(err: actix_web::error::PathError, req: &HttpRequest) -> actix_web::Error {
    let message = err.to_string();
    let segment = req
        .match_info()
        .iter()
        .find(|(_, value)| message.contains(&format!("\"{value}\"")))
        .map(|(name, _)| name.to_owned());
    let is_integer = ["to a i", "to a u"].iter().any(|t| message.contains(t));
    match segment {
        Some(name) => {
            let what = match integer_meaning(&name) {
                Some(meaning) if is_integer => meaning,
                _ if is_integer => "an integer",
                _ => "a valid value",
            };
            ApiError::BadParameter {
                message: format!("path segment `{name}` must be {what}"),
                field: name,
            }
        }
        None => ApiError::bad_request("the path has a segment that is not valid here"),
    }
    .into()
}

/// The error of a query string that `web::Query` could not read (kept for
/// any extractor still on actix's; `Query` above names the parameter).
pub fn query_error(_: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("the query string is not valid for this resource").into()
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
mod tests {
    use super::*;

    #[test]
    fn serde_messages_are_put_in_the_clients_words() {
        let cases = [
            (
                "invalid type: integer `5`, expected a string",
                "must be a string",
            ),
            (
                "invalid value: integer `-5`, expected u64",
                "must be a non-negative integer",
            ),
            (
                "invalid type: string \"x\", expected i64",
                "must be an integer",
            ),
            ("invalid type: map, expected a sequence", "must be an array"),
            (
                "invalid length 0, expected struct PublishRequest with 4 elements",
                "must be an object",
            ),
            (
                "unknown variant `x`, expected `asc` or `desc`",
                "must be one of: asc, desc",
            ),
            (
                "unknown variant `x`, expected one of `a`, `b`, `c`",
                "must be one of: a, b, c",
            ),
            ("invalid digit found in string", "must be an integer"),
            ("duplicate field `after`", "is given twice"),
            (
                "unknown field `foo`, expected one of `type`, `data`, `_session_id`",
                "is not a known field; allowed: type, data",
            ),
            (
                "unknown field `foo`, there are no fields",
                "is not a known field; allowed: none",
            ),
        ];
        for (serde, ours) in cases {
            assert_eq!(SerdeProblem::read(serde).predicate(), ours, "{serde}");
        }
    }

    #[test]
    fn a_body_error_names_the_field() {
        assert_eq!(
            body_field_error(
                ".",
                "invalid type: sequence, expected struct PublishRequest"
            ),
            ("body".to_owned(), "must be a JSON object".to_owned())
        );
        assert_eq!(
            body_field_error(".", "missing field `events`"),
            ("events".to_owned(), "is required".to_owned())
        );
        assert_eq!(
            body_field_error("events[0]", "missing field `channel`"),
            ("events[0].channel".to_owned(), "is required".to_owned())
        );
        assert_eq!(
            body_field_error(
                "ttl_seconds",
                "invalid value: integer `-1`, expected u64 at line 1 column 18"
            ),
            (
                "ttl_seconds".to_owned(),
                "must be a non-negative integer".to_owned()
            )
        );
    }

    #[test]
    fn a_query_error_names_the_parameter_and_what_it_must_be() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Q {
            after: Option<i64>,
            full: Option<bool>,
        }
        let message = |query: &str| match Query::<Q>::from_query(query) {
            Ok(_) => panic!("{query} was accepted"),
            Err(err) => err.to_string(),
        };
        assert_eq!(
            message("after=x"),
            "query parameter `after` must be a non-negative integer (an event id)"
        );
        assert_eq!(
            message("full=maybe"),
            "query parameter `full` must be true or false"
        );
        assert_eq!(
            message("foo=1"),
            "unknown query parameter `foo`; allowed: after, full"
        );
        assert!(Query::<Q>::from_query("after=5&full=true").is_ok());
    }
}
