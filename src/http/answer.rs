//! How handlers answer: `Answer` is a typed view with its status and
//! version (→ `ETag`), the value a writer job returns. The writer stores it
//! (serialised once) for an `Idempotency-Key`; `respond` sends either the
//! fresh answer or the stored one, with the same headers. Nothing parses
//! its own JSON back.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;

use super::{AppState, Identity};
use crate::app::Actor;
use crate::domain::precondition::IfMatch;
use crate::domain::EventId;
use crate::http::error::ApiError;
use crate::store::{self, Reply, StoreError, StoredAnswer, Tx};

/// A view with the status it is sent with and, for a versioned resource,
/// its version (sent as `ETag: "<version>"`).
#[derive(Debug)]
pub struct Answer<V> {
    pub status: StatusCode,
    pub view: V,
    pub version: Option<i64>,
    /// Whether a repeat with the same `Idempotency-Key` gets this answer
    /// again (else it runs again: the request changed nothing).
    pub remembered: bool,
}

impl<V: Serialize> Answer<V> {
    pub fn ok(view: V) -> Self {
        Answer {
            status: StatusCode::OK,
            view,
            version: None,
            remembered: true,
        }
    }

    /// 204 without a body.
    pub fn no_content() -> Answer<()> {
        Answer {
            status: StatusCode::NO_CONTENT,
            ..Answer::ok(())
        }
    }

    /// An answer that changed nothing: a repeat of the request runs again.
    pub fn forgotten(mut self) -> Self {
        self.remembered = false;
        self
    }

    pub fn created(view: V) -> Self {
        Answer {
            status: StatusCode::CREATED,
            ..Answer::ok(view)
        }
    }

    pub fn versioned(mut self, version: i64) -> Self {
        self.version = Some(version);
        self
    }

    fn etag(&self) -> Option<String> {
        self.version.map(|v| format!("\"{v}\""))
    }

    pub fn into_response(self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(etag) = self.etag() {
            response.insert_header((header::ETAG, etag));
        }
        if self.status == StatusCode::NO_CONTENT {
            return response.finish();
        }
        response.json(&self.view)
    }
}

impl<V: Serialize> store::Answer for Answer<V> {
    fn to_stored(&self) -> Result<Option<StoredAnswer>, StoreError> {
        if !self.remembered {
            return Ok(None);
        }
        Ok(Some(StoredAnswer {
            status: self.status.as_u16(),
            body: serde_json::to_string(&self.view)
                .map_err(|e| StoreError::Corrupt(format!("response body: {e}")))?,
            etag: self.etag(),
        }))
    }
}

/// The answer to a write: the fresh one, or the stored one for a repeated
/// `Idempotency-Key` (marked `Idempotent-Replayed: true`).
pub fn respond<V: Serialize>(reply: Reply<Answer<V>>) -> HttpResponse {
    match reply {
        Reply::Fresh(committed) => committed.value.into_response(),
        Reply::Replayed(stored) => replayed(stored),
    }
}

pub fn replayed(stored: StoredAnswer) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    response.insert_header(("Idempotent-Replayed", "true"));
    if let Some(etag) = stored.etag {
        response.insert_header((header::ETAG, etag));
    }
    if status == StatusCode::NO_CONTENT {
        return response.finish();
    }
    response.content_type("application/json").body(stored.body)
}

/// A snapshot's answer: the view with `X-Event-Cursor` (and `ETag` for a
/// versioned resource).
pub fn snapshot<V: Serialize>(cursor: EventId, version: Option<i64>, view: &V) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.insert_header(("X-Event-Cursor", cursor.to_string()));
    if let Some(version) = version {
        response.insert_header((header::ETAG, format!("\"{version}\"")));
    }
    response.json(view)
}

/// What a write needs from its request: who acts, the precondition, and
/// the idempotency claim over the exact body.
pub struct WriteContext {
    pub actor: Actor,
    pub if_match: Option<IfMatch>,
    claim: Option<store::IdempotencyClaim>,
}

impl WriteContext {
    pub fn new(req: &HttpRequest, identity: &Identity, raw: &[u8]) -> Result<Self, ApiError> {
        Ok(WriteContext {
            actor: Actor::new(identity.agent_id.clone(), identity.session_id.clone()),
            if_match: if_match(req)?,
            claim: identity.idempotency_claim(req, raw)?,
        })
    }

    /// Runs `job` through the writer and answers.
    pub async fn run<V, F>(self, state: &AppState, job: F) -> Result<HttpResponse, ApiError>
    where
        V: Serialize + Send + 'static,
        F: FnOnce(&mut Tx<'_>, &Actor) -> Result<Answer<V>, StoreError> + Send + 'static,
    {
        Ok(respond(self.run_raw(state, job).await?))
    }

    /// Like `run`, for answers that add something only a fresh change knows
    /// (the compatibility API's `clients_notified`).
    pub async fn run_raw<V, F>(self, state: &AppState, job: F) -> Result<Reply<Answer<V>>, ApiError>
    where
        V: Serialize + Send + 'static,
        F: FnOnce(&mut Tx<'_>, &Actor) -> Result<Answer<V>, StoreError> + Send + 'static,
    {
        let actor = self.actor;
        Ok(state
            .writer
            .write_idempotent(self.claim, move |tx| job(tx, &actor))
            .await?)
    }
}

/// `If-Match`: `"3"`, `W/"3"`, `3` or `*`.
pub fn if_match(req: &HttpRequest) -> Result<Option<IfMatch>, ApiError> {
    req.headers()
        .get(header::IF_MATCH)
        .map(|value| {
            let value = value
                .to_str()
                .map_err(|_| ApiError::bad_request("If-Match must be an ETag like \"3\""))?;
            Ok(IfMatch::parse(value)?)
        })
        .transpose()
}
