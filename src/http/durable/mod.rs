//! Durable Streams at `/v1/stream/{path}` (the upstream protocol, checked by
//! its conformance suite 0.3.6): `PUT` create or fork, `POST` append or
//! close, `GET` catch-up / long-poll / SSE, `HEAD`, `DELETE`, `OPTIONS`.
//! Writes are jobs of the writer (`app::durable`); live reads register with
//! the hub on the stream's channel first, then read the database, and read
//! again whenever the hub brings an event of that stream — so a reader on
//! one node sees appends made on another. Answers are the protocol's: plain
//! text errors and its headers, with the browser security headers on all.
//!
//! Here: the writes, `HEAD` and the answers they share. `read.rs` answers a
//! `GET` (catch-up, long-poll), `sse.rs` follows a stream over SSE,
//! `watch.rs` is a live reader's hub registration. Which stream a read may
//! see and which messages follow an offset (fork inheritance) are
//! `app::durable_read`'s; the read model's rules (`Stream`: visibility,
//! expiry, where an answer ends; ETags, cursors) `domain::durable`'s.

// The helpers' error is the early answer itself (a whole response).
#![allow(clippy::result_large_err)]

mod read;
mod sse;
mod tails;
mod watch;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};

// The GET handler and its OpenAPI operation (utoipa's `__path_` item), as
// `durable::read` for the route table.
pub use read::{__path_read, read};

use sse::ReadSlot;
use tails::Tails;

use super::AppState;
use crate::app::durable::{self as use_case, Append, Appended, Create, Fresh, Refusal};
use crate::app::durable_read;
use crate::domain::durable::{self as rules, Stream};
use crate::http::error::ApiError;
use crate::sync::LockExt;

const EXPOSE: &str = "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Producer-Epoch, Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, etag, content-type, content-encoding, vary, location";
const ALLOW_HEADERS: &str = "content-type, authorization, Stream-Seq, Stream-TTL, Stream-Expires-At, Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, Stream-Forked-From, Stream-Fork-Offset, Stream-Fork-Sub-Offset, If-None-Match";

/// Settings, per-node read times (the sliding TTL of reads), the last
/// read of each followed stream, shared by its SSE readers, and (on SQLite)
/// the streams' recent messages for catch-up reads.
pub struct Durable {
    pub long_poll: Duration,
    pub max_append: usize,
    touched: Mutex<HashMap<String, i64>>,
    reads: Mutex<HashMap<String, ReadSlot>>,
    tails: Option<Tails>,
}

impl Durable {
    /// `single_writer`: every write to the streams passes this node's
    /// writer (SQLite), so it may keep their recent messages ([`Tails`]).
    pub fn new(long_poll: Duration, max_append: usize, single_writer: bool) -> Self {
        Durable {
            long_poll,
            max_append,
            touched: Mutex::new(HashMap::new()),
            reads: Mutex::new(HashMap::new()),
            tails: single_writer.then(Tails::default),
        }
    }

    /// What follows `after` in `stream` up to its tail (as read from the
    /// database), when the messages kept in memory hold all of it.
    fn kept(&self, stream: &Stream, after: &str) -> Option<tails::Hit> {
        if stream.fork().is_some() {
            return None;
        }
        self.tails.as_ref()?.read(&stream.path, after, &stream.tail)
    }

    /// A stream was created (or created again) or removed: what was kept
    /// of it goes. Runs after the commit, on the writer's thread.
    fn forget(&self, path: &str) {
        if let Some(tails) = &self.tails {
            tails.forget(path);
        }
    }

    fn touch(&self, path: &str) {
        let mut touched = self.touched.locked();
        if touched.len() > 100_000 {
            touched.clear();
        }
        touched.insert(path.to_owned(), now_ms());
    }

    fn read_slot(&self, path: &str) -> ReadSlot {
        let mut reads = self.reads.locked();
        if reads.len() > 10_000 {
            reads.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        reads.entry(path.to_owned()).or_default().clone()
    }

    /// Leaves a committed append for the readers of its stream, so that
    /// those it wakes need not read it back from the database: the
    /// stream's last read grows by the message, or a read of it alone
    /// replaces it. Runs on the writer's thread after the commit and before
    /// the hub wakes anyone (`Tx::after_commit`). Only a followed stream
    /// has a slot. On SQLite it also keeps the message with the stream's
    /// recent ones ([`Tails`]).
    fn seed(&self, fresh: Fresh) {
        if let (Some(tails), None) = (&self.tails, fresh.stream.fork()) {
            let message = &fresh.message;
            let json = fresh.stream.is_json();
            tails.append(
                &fresh.stream.path,
                json,
                &fresh.after,
                message.offset.clone(),
                &message.data,
            );
        }
        let slot = {
            let reads = self.reads.locked();
            match reads.get(&fresh.stream.path) {
                Some(slot) => Arc::clone(slot),
                None => return,
            }
        };
        slot.seed(fresh);
    }

    fn touched(&self, path: &str) -> i64 {
        let touched = self.touched.locked();
        touched.get(path).copied().unwrap_or(0)
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A response with the headers every answer carries.
fn answer(status: StatusCode) -> HttpResponseBuilder {
    let mut r = HttpResponse::build(status);
    r.insert_header(("x-content-type-options", "nosniff"))
        .insert_header(("cross-origin-resource-policy", "cross-origin"))
        .insert_header(("access-control-allow-origin", "*"))
        .insert_header(("access-control-expose-headers", EXPOSE));
    r
}

fn text(status: StatusCode, body: &str) -> HttpResponse {
    answer(status)
        .content_type("text/plain; charset=utf-8")
        .body(body.to_owned())
}

fn refused(refusal: Refusal) -> HttpResponse {
    match refusal {
        Refusal::NotFound(why) => text(StatusCode::NOT_FOUND, why),
        Refusal::Gone => text(StatusCode::GONE, "Stream is gone"),
        Refusal::Conflict(why) => text(StatusCode::CONFLICT, why),
        Refusal::BadRequest(why) => text(StatusCode::BAD_REQUEST, why),
        Refusal::Closed { tail } => answer(StatusCode::CONFLICT)
            .insert_header(("Stream-Closed", "true"))
            .insert_header(("Stream-Next-Offset", tail))
            .content_type("text/plain; charset=utf-8")
            .body("Stream is closed"),
        Refusal::StaleEpoch { current } => answer(StatusCode::FORBIDDEN)
            .insert_header(("Producer-Epoch", current.to_string()))
            .content_type("text/plain; charset=utf-8")
            .body("Stale producer epoch"),
        Refusal::InvalidEpochSeq => text(
            StatusCode::BAD_REQUEST,
            "New epoch must start with sequence 0",
        ),
        Refusal::Gap { expected, received } => answer(StatusCode::CONFLICT)
            .insert_header(("Producer-Expected-Seq", expected.to_string()))
            .insert_header(("Producer-Received-Seq", received.to_string()))
            .content_type("text/plain; charset=utf-8")
            .body("Producer sequence gap"),
    }
}

fn header_str<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// `Stream-Closed` counts only as `true` (any case).
fn closed_header(req: &HttpRequest) -> bool {
    header_str(req, "Stream-Closed").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

async fn body(
    req: &HttpRequest,
    payload: &mut web::Payload,
    limit: usize,
) -> Result<Vec<u8>, HttpResponse> {
    let declared = header_str(req, "content-length").and_then(|v| v.parse().ok());
    match super::extract::read_body(payload, limit, declared).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(ApiError::PayloadTooLarge { .. }) => {
            Err(text(StatusCode::PAYLOAD_TOO_LARGE, "Body too large"))
        }
        // A body that did not arrive: the same answer as on every route
        // (408, or 503 with Retry-After), and the connection closes.
        Err(err @ (ApiError::RequestTimeout { .. } | ApiError::TooManyWaitingBodies)) => {
            use actix_web::ResponseError;
            Err(err.error_response())
        }
        Err(_) => Err(text(StatusCode::BAD_REQUEST, "Could not read the body")),
    }
}

fn store_failure(err: impl Into<ApiError>) -> HttpResponse {
    let err: ApiError = err.into();
    match err {
        ApiError::Domain(crate::domain::DomainError::BadRequest(why)) => {
            text(StatusCode::BAD_REQUEST, &why)
        }
        other => {
            use actix_web::ResponseError;
            other.error_response()
        }
    }
}

/// `OPTIONS /v1/stream/{path}`: the CORS preflight.
#[utoipa::path(options, path = "/v1/stream/{path}", tag = "durable-streams",
    params(("path" = String, Path, description = "The stream's path")),
    responses((status = 204, description = "CORS preflight")))]
pub async fn options() -> HttpResponse {
    answer(StatusCode::NO_CONTENT)
        .insert_header((
            "access-control-allow-methods",
            "GET, POST, PUT, DELETE, HEAD, OPTIONS",
        ))
        .insert_header(("access-control-allow-headers", ALLOW_HEADERS))
        .finish()
}

/// `PUT /v1/stream/{path}`: creates a stream (or a fork), idempotently.
#[utoipa::path(put, path = "/v1/stream/{path}", tag = "durable-streams",
    params(("path" = String, Path, description = "The stream's path")),
    request_body(content = String, content_type = "application/octet-stream", description = "Initial content"),
    responses(
        (status = 201, description = "Created; `Location`, `Stream-Next-Offset`"),
        (status = 200, description = "It existed with the same configuration"),
        (status = 400, description = "A bad header", body = String),
        (status = 404, description = "The fork's source does not exist", body = String),
        (status = 409, description = "It exists with another configuration", body = String),
        (status = 413, description = "The body is too large", body = String),
    ))]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    mut payload: web::Payload,
) -> HttpResponse {
    let path = req.path().to_owned();
    let headers = match create_headers(&req) {
        Ok(headers) => headers,
        Err(response) => return response,
    };
    let body = match body(&req, &mut payload, state.durable.max_append).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let job = Create {
        touched_ms: state.durable.touched(&path),
        path: path.clone(),
        content_type: headers.content_type,
        ttl_seconds: headers.ttl_seconds,
        expires_at: headers.expires_at,
        closed: closed_header(&req),
        forked_from: headers.forked_from,
        fork_offset: headers.fork_offset,
        fork_sub_offset: headers.fork_sub_offset,
        body,
        now_ms: now_ms(),
    };
    let (kept, created_path) = (state.clone(), path.clone());
    let outcome = match state
        .writer
        .write(move |tx| {
            let outcome = use_case::create(tx, job)?;
            tx.after_commit(move || kept.durable.forget(&created_path));
            Ok(outcome)
        })
        .await
    {
        Ok(committed) => committed.value,
        Err(err) => return store_failure(err),
    };
    match outcome {
        Ok((stream, new)) => created(&req, &path, &stream, new),
        Err(refusal) => refused(refusal),
    }
}

/// What a `PUT`'s headers ask for, checked.
struct CreateHeaders {
    content_type: Option<String>,
    ttl_seconds: Option<i64>,
    expires_at: Option<String>,
    forked_from: Option<String>,
    fork_offset: Option<String>,
    fork_sub_offset: Option<i64>,
}

fn create_headers(req: &HttpRequest) -> Result<CreateHeaders, HttpResponse> {
    let bad = |why: &str| text(StatusCode::BAD_REQUEST, why);
    let content_type = header_str(req, "content-type")
        .filter(|ct| rules::is_content_type(ct))
        .map(str::to_owned);
    let ttl = header_str(req, "Stream-TTL");
    let expires = header_str(req, "Stream-Expires-At");
    if ttl.is_some() && expires.is_some() {
        return Err(bad("Cannot specify both Stream-TTL and Stream-Expires-At"));
    }
    let ttl_seconds = match ttl {
        None => None,
        Some(value) => {
            Some(rules::parse_ttl(value).ok_or_else(|| bad("Invalid Stream-TTL value"))?)
        }
    };
    if let Some(at) = expires {
        if chrono::DateTime::parse_from_rfc3339(at).is_err() {
            return Err(bad("Invalid Stream-Expires-At timestamp"));
        }
    }
    let forked_from = header_str(req, "Stream-Forked-From").map(str::to_owned);
    let fork_offset = header_str(req, "Stream-Fork-Offset").map(str::to_owned);
    if fork_offset.as_deref().is_some_and(|o| !rules::is_offset(o)) {
        return Err(bad("Invalid Stream-Fork-Offset format"));
    }
    let fork_sub_offset = match header_str(req, "Stream-Fork-Sub-Offset") {
        None if req.headers().contains_key("Stream-Fork-Sub-Offset") => {
            return Err(bad("Invalid Stream-Fork-Sub-Offset format"))
        }
        None => None,
        Some(_) if forked_from.is_none() => {
            return Err(bad("Stream-Fork-Sub-Offset requires Stream-Forked-From"))
        }
        Some(value) => Some(
            rules::parse_ttl(value).ok_or_else(|| bad("Invalid Stream-Fork-Sub-Offset format"))?,
        ),
    };
    Ok(CreateHeaders {
        content_type,
        ttl_seconds,
        expires_at: expires.map(str::to_owned),
        forked_from,
        fork_offset,
        fork_sub_offset,
    })
}

/// A `PUT`'s answer: 201 with `Location` when it created the stream, 200
/// when it existed alike.
fn created(req: &HttpRequest, path: &str, stream: &Stream, new: bool) -> HttpResponse {
    let mut r = answer(if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    });
    r.insert_header((header::CONTENT_TYPE, stream.content_type.clone()))
        .insert_header(("Stream-Next-Offset", stream.tail.clone()));
    if new {
        let info = req.connection_info();
        r.insert_header((
            header::LOCATION,
            format!("{}://{}{}", info.scheme(), info.host(), path),
        ));
    }
    if stream.closed {
        r.insert_header(("Stream-Closed", "true"));
    }
    r.finish()
}

/// The stream a read may see (`app::durable_read::visible`), or the
/// answer why not: 404 when absent or expired, 410 when deleted while forks
/// still read it.
async fn visible(state: &AppState, path: &str) -> Result<Stream, HttpResponse> {
    let owned = path.to_owned();
    let (now, touched) = (now_ms(), state.durable.touched(path));
    state
        .store
        .read(move |conn| durable_read::visible(conn, &owned, now, touched))
        .await
        .map_err(store_failure)?
        .map_err(refused)
}

/// `HEAD /v1/stream/{path}`: the stream's metadata (does not renew its TTL).
#[utoipa::path(head, path = "/v1/stream/{path}", tag = "durable-streams",
    params(("path" = String, Path, description = "The stream's path")),
    responses((status = 200, description = "`Stream-Next-Offset`, `Content-Type`, `Stream-TTL`, `Stream-Expires-At`, `Stream-Closed`"),
        (status = 404, description = "No such stream"), (status = 410, description = "Deleted, still read by forks")))]
pub async fn head(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let path = req.path().to_owned();
    let stream = match visible(&state, &path).await {
        Ok(stream) => stream,
        Err(response) => return response,
    };
    let mut r = answer(StatusCode::OK);
    r.insert_header(("Stream-Next-Offset", stream.tail.clone()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_TYPE, stream.content_type.clone()))
        .insert_header((
            header::ETAG,
            rules::etag(&path, "-1", &stream.tail, stream.closed),
        ));
    if stream.closed {
        r.insert_header(("Stream-Closed", "true"));
    }
    if let Some(ttl) = stream.ttl_seconds {
        r.insert_header(("Stream-TTL", ttl.to_string()));
    }
    if let Some(at) = &stream.expires_at {
        r.insert_header(("Stream-Expires-At", at.clone()));
    }
    r.finish()
}

/// Producer headers: all three or none.
fn producer(req: &HttpRequest) -> Result<Option<(String, i64, i64)>, HttpResponse> {
    let id = header_str(req, "Producer-Id");
    let epoch = header_str(req, "Producer-Epoch");
    let seq = header_str(req, "Producer-Seq");
    match (id, epoch, seq) {
        (None, None, None) => Ok(None),
        (Some(id), Some(epoch), Some(seq)) => {
            if id.is_empty() {
                return Err(text(StatusCode::BAD_REQUEST, "Invalid Producer-Id: must not be empty"));
            }
            let epoch = rules::parse_count(epoch)
                .ok_or_else(|| text(StatusCode::BAD_REQUEST, "Invalid Producer-Epoch: must be a non-negative integer"))?;
            let seq = rules::parse_count(seq)
                .ok_or_else(|| text(StatusCode::BAD_REQUEST, "Invalid Producer-Seq: must be a non-negative integer"))?;
            Ok(Some((id.to_owned(), epoch, seq)))
        }
        _ => Err(text(
            StatusCode::BAD_REQUEST,
            "All producer headers (Producer-Id, Producer-Epoch, Producer-Seq) must be provided together",
        )),
    }
}

/// `POST /v1/stream/{path}`: appends (and closes with `Stream-Closed: true`).
#[utoipa::path(post, path = "/v1/stream/{path}", tag = "durable-streams",
    params(("path" = String, Path, description = "The stream's path")),
    request_body(content = String, content_type = "application/octet-stream", description = "The bytes to append (the stream's content type)"),
    responses((status = 204, description = "Appended; `Stream-Next-Offset`. A stale producer epoch answers 403 with `Producer-Epoch` (plain text)"),
        (status = 200, description = "Appended by an idempotent producer"),
        (status = 400, description = "A bad header or body", body = String),
        (status = 404, description = "No such stream", body = String),
        (status = 409, description = "Closed, another content type, a sequence conflict or gap", body = String),
        (status = 410, description = "Deleted, still read by forks", body = String),
        (status = 413, description = "The body is too large", body = String)))]
pub async fn append(
    req: HttpRequest,
    state: web::Data<AppState>,
    mut payload: web::Payload,
) -> HttpResponse {
    let path = req.path().to_owned();
    let producer = match producer(&req) {
        Ok(p) => p,
        Err(response) => return response,
    };
    let close = closed_header(&req);
    let body = match body(&req, &mut payload, state.durable.max_append).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let content_type = header_str(&req, "content-type").map(str::to_owned);
    if body.is_empty() && !close {
        return text(StatusCode::BAD_REQUEST, "Empty body");
    }
    if !body.is_empty() && content_type.is_none() {
        return text(StatusCode::BAD_REQUEST, "Content-Type header is required");
    }
    let had_body = !body.is_empty();
    let job = Append {
        touched_ms: state.durable.touched(&path),
        path,
        content_type,
        body,
        seq: header_str(&req, "Stream-Seq").map(str::to_owned),
        producer: producer.clone(),
        close,
        now_ms: now_ms(),
    };
    let readers = state.clone();
    let outcome = match state
        .writer
        .write(move |tx| {
            let mut outcome = use_case::append(tx, job)?;
            if let Some(fresh) = outcome.as_mut().ok().and_then(|done| done.fresh.take()) {
                tx.after_commit(move || readers.durable.seed(fresh));
            }
            Ok(outcome)
        })
        .await
    {
        Ok(committed) => committed.value,
        Err(err) => return store_failure(err),
    };
    let done: Appended = match outcome {
        Ok(done) => done,
        Err(refusal) => return refused(refusal),
    };
    // A producer's accepted append answers 200; a close without a body,
    // a duplicate and a plain append answer 204.
    let status = if producer.is_some() && done.duplicate.is_none() && had_body {
        StatusCode::OK
    } else {
        StatusCode::NO_CONTENT
    };
    let mut r = answer(status);
    r.insert_header(("Stream-Next-Offset", done.tail.clone()));
    if let Some((_, epoch, seq)) = &producer {
        r.insert_header(("Producer-Epoch", epoch.to_string()))
            .insert_header(("Producer-Seq", done.duplicate.unwrap_or(*seq).to_string()));
    }
    if done.closed {
        r.insert_header(("Stream-Closed", "true"));
    }
    r.finish()
}

/// `DELETE /v1/stream/{path}`
#[utoipa::path(delete, path = "/v1/stream/{path}", tag = "durable-streams",
    params(("path" = String, Path, description = "The stream's path")),
    responses((status = 204, description = "Deleted"), (status = 404, description = "No such stream", body = String),
        (status = 410, description = "Deleted already, still read by forks", body = String)))]
pub async fn delete(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let path = req.path().to_owned();
    let touched = state.durable.touched(&path);
    let now = now_ms();
    let kept = state.clone();
    let outcome = match state
        .writer
        .write(move |tx| {
            let outcome = use_case::delete(tx, &path, now, touched)?;
            tx.after_commit(move || kept.durable.forget(&path));
            Ok(outcome)
        })
        .await
    {
        Ok(committed) => committed.value,
        Err(err) => return store_failure(err),
    };
    match outcome {
        Ok(()) => answer(StatusCode::NO_CONTENT).finish(),
        Err(refusal) => refused(refusal),
    }
}
