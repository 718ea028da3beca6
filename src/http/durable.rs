//! Durable Streams at `/v1/stream/{path}` (the upstream protocol, checked by
//! its conformance suite 0.3.6): `PUT` create or fork, `POST` append or
//! close, `GET` catch-up / long-poll / SSE, `HEAD`, `DELETE`, `OPTIONS`.
//! Writes are jobs of the writer (`app::durable`); live reads register with
//! the hub on the stream's channel first, then read the database, and read
//! again whenever the hub brings an event of that stream — so a reader on
//! one node sees appends made on another. Answers are the protocol's: plain
//! text errors and its headers, with the browser security headers on all.

// The helpers' error is the early answer itself (a whole response).
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use base64::Engine;
use bytes::Bytes;
use futures_util::FutureExt as _;

use super::AppState;
use crate::app::durable::{self as use_case, Append, Appended, Create, Refusal};
use crate::auth::EndOfCredential;
use crate::domain::durable::{self as rules, ZERO_OFFSET};
use crate::domain::{ChannelPattern, StreamFilter, Timestamp};
use crate::error::ApiError;
use crate::hub::{FrameQueue, Framing, Hub, SubscriberId};
use crate::store::durable::{self as rows, Message, StreamRow};

/// The most bytes one catch-up read answers.
const CHUNK: usize = 4 * 1024 * 1024;
const EXPOSE: &str = "Stream-Next-Offset, Stream-Cursor, Stream-Up-To-Date, Stream-Closed, Producer-Epoch, Producer-Seq, Producer-Expected-Seq, Producer-Received-Seq, etag, content-type, content-encoding, vary, location";
const ALLOW_HEADERS: &str = "content-type, authorization, Stream-Seq, Stream-TTL, Stream-Expires-At, Stream-Closed, Producer-Id, Producer-Epoch, Producer-Seq, Stream-Forked-From, Stream-Fork-Offset, Stream-Fork-Sub-Offset, If-None-Match";

/// Settings, per-node read times (the sliding TTL of reads), and the last
/// read of each followed stream, shared by its SSE readers.
pub struct Durable {
    pub long_poll: Duration,
    pub max_append: usize,
    touched: Mutex<HashMap<String, i64>>,
    reads: Mutex<HashMap<String, ReadSlot>>,
}

/// The last read of one stream, locked while a reader renews it.
type ReadSlot = Arc<tokio::sync::Mutex<Option<Arc<Snapshot>>>>;

/// One read of a stream: what followed `start`, valid for every event up to
/// `valid_through` (the hub's head when it was read). Offsets never change
/// their bytes, so readers at `start` or at any offset in it may share it.
pub struct Snapshot {
    start: String,
    valid_through: i64,
    row: StreamRow,
    messages: Vec<Message>,
    more: bool,
}

impl Snapshot {
    /// What follows `offset`, if this read covers it.
    fn after(&self, offset: &str) -> Option<(Vec<Message>, bool)> {
        if offset == self.start {
            return Some((self.messages.clone(), self.more));
        }
        let at = self.messages.iter().position(|m| m.offset == offset)?;
        Some((self.messages[at + 1..].to_vec(), self.more))
    }
}

impl Durable {
    pub fn new(long_poll: Duration, max_append: usize) -> Self {
        Durable {
            long_poll,
            max_append,
            touched: Mutex::new(HashMap::new()),
            reads: Mutex::new(HashMap::new()),
        }
    }

    fn touch(&self, path: &str) {
        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        if touched.len() > 100_000 {
            touched.clear();
        }
        touched.insert(path.to_owned(), now_ms());
    }

    fn read_slot(&self, path: &str) -> ReadSlot {
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        if reads.len() > 10_000 {
            reads.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        reads.entry(path.to_owned()).or_default().clone()
    }

    fn touched(&self, path: &str) -> i64 {
        let touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
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
    let content_type = header_str(&req, "content-type")
        .filter(|ct| rules::is_content_type(ct))
        .map(str::to_owned);
    let ttl = header_str(&req, "Stream-TTL");
    let expires = header_str(&req, "Stream-Expires-At");
    if ttl.is_some() && expires.is_some() {
        return text(
            StatusCode::BAD_REQUEST,
            "Cannot specify both Stream-TTL and Stream-Expires-At",
        );
    }
    let ttl_seconds = match ttl {
        None => None,
        Some(value) => match rules::parse_ttl(value) {
            Some(n) => Some(n),
            None => return text(StatusCode::BAD_REQUEST, "Invalid Stream-TTL value"),
        },
    };
    if let Some(at) = expires {
        if chrono::DateTime::parse_from_rfc3339(at).is_err() {
            return text(
                StatusCode::BAD_REQUEST,
                "Invalid Stream-Expires-At timestamp",
            );
        }
    }
    let forked_from = header_str(&req, "Stream-Forked-From").map(str::to_owned);
    let fork_offset = header_str(&req, "Stream-Fork-Offset").map(str::to_owned);
    if fork_offset.as_deref().is_some_and(|o| !rules::is_offset(o)) {
        return text(StatusCode::BAD_REQUEST, "Invalid Stream-Fork-Offset format");
    }
    let fork_sub_offset = match header_str(&req, "Stream-Fork-Sub-Offset") {
        None if req.headers().contains_key("Stream-Fork-Sub-Offset") => {
            return text(
                StatusCode::BAD_REQUEST,
                "Invalid Stream-Fork-Sub-Offset format",
            )
        }
        None => None,
        Some(_) if forked_from.is_none() => {
            return text(
                StatusCode::BAD_REQUEST,
                "Stream-Fork-Sub-Offset requires Stream-Forked-From",
            )
        }
        Some(value) => match rules::parse_ttl(value) {
            Some(n) => Some(n),
            None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "Invalid Stream-Fork-Sub-Offset format",
                )
            }
        },
    };
    let body = match body(&req, &mut payload, state.durable.max_append).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let job = Create {
        touched_ms: state.durable.touched(&path),
        path: path.clone(),
        content_type,
        ttl_seconds,
        expires_at: expires.map(str::to_owned),
        closed: closed_header(&req),
        forked_from,
        fork_offset,
        fork_sub_offset,
        body,
        now_ms: now_ms(),
    };
    let outcome = match state
        .writer
        .write(move |tx| use_case::create(tx, job))
        .await
    {
        Ok(committed) => committed.value,
        Err(err) => return store_failure(err),
    };
    let (row, new) = match outcome {
        Ok(done) => done,
        Err(refusal) => return refused(refusal),
    };
    let mut r = answer(if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    });
    r.insert_header((header::CONTENT_TYPE, row.content_type.clone()))
        .insert_header(("Stream-Next-Offset", row.tail.clone()));
    if new {
        let info = req.connection_info();
        r.insert_header((
            header::LOCATION,
            format!("{}://{}{}", info.scheme(), info.host(), path),
        ));
    }
    if row.closed {
        r.insert_header(("Stream-Closed", "true"));
    }
    r.finish()
}

/// The stream a read may see: 404 when absent or expired, 410 when deleted
/// while forks still read it.
async fn readable(state: &AppState, path: &str) -> Result<StreamRow, HttpResponse> {
    let owned = path.to_owned();
    let row = state
        .store
        .read(move |conn| rows::get(conn, &owned))
        .await
        .map_err(store_failure)?;
    let Some(row) = row else {
        return Err(text(StatusCode::NOT_FOUND, "Stream not found"));
    };
    if row.soft_deleted {
        return Err(text(StatusCode::GONE, "Stream is gone"));
    }
    if use_case::expired(&row, now_ms(), state.durable.touched(path)) {
        return Err(if row.ref_count > 0 {
            text(StatusCode::GONE, "Stream is gone")
        } else {
            text(StatusCode::NOT_FOUND, "Stream not found")
        });
    }
    Ok(row)
}

/// `HEAD /v1/stream/{path}`: the stream's metadata (does not renew its TTL).
#[utoipa::path(head, path = "/v1/stream/{path}", tag = "durable-streams",
    params(("path" = String, Path, description = "The stream's path")),
    responses((status = 200, description = "`Stream-Next-Offset`, `Content-Type`, `Stream-TTL`, `Stream-Expires-At`, `Stream-Closed`"),
        (status = 404, description = "No such stream"), (status = 410, description = "Deleted, still read by forks")))]
pub async fn head(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let path = req.path().to_owned();
    let row = match readable(&state, &path).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    let mut r = answer(StatusCode::OK);
    r.insert_header(("Stream-Next-Offset", row.tail.clone()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_TYPE, row.content_type.clone()))
        .insert_header((header::ETAG, etag(&path, "-1", &row.tail, row.closed)));
    if row.closed {
        r.insert_header(("Stream-Closed", "true"));
    }
    if let Some(ttl) = row.ttl_seconds {
        r.insert_header(("Stream-TTL", ttl.to_string()));
    }
    if let Some(at) = &row.expires_at {
        r.insert_header(("Stream-Expires-At", at.clone()));
    }
    r.finish()
}

fn etag(path: &str, start: &str, end: &str, closed: bool) -> String {
    let id = base64::engine::general_purpose::STANDARD.encode(path.as_bytes());
    format!("\"{id}:{start}:{end}{}\"", if closed { ":c" } else { "" })
}

/// The stream's messages after `after`: inherited ones first (a fork reads
/// its source up to the fork offset), then its own; at most `max` bytes.
fn read_messages(
    conn: &mut crate::store::DbConn,
    row: &StreamRow,
    after: &str,
    max: usize,
) -> Result<(Vec<Message>, bool), crate::store::StoreError> {
    let mut out = Vec::new();
    if let (Some(source), Some(fork_offset)) = (&row.forked_from, &row.fork_offset) {
        if after < fork_offset.as_str() {
            inherited(conn, source, after, fork_offset, &mut out)?;
        }
    }
    let size: usize = out.iter().map(|m| m.data.len()).sum();
    if !out.is_empty() && size >= max.min(CHUNK) {
        // The inherited range goes on (or the fork's own data follows).
        return Ok((out, true));
    }
    let (own, more) = rows::messages(
        conn,
        &row.path,
        after,
        None,
        max.saturating_sub(size).max(1),
    )?;
    out.extend(own);
    Ok((out, more))
}

/// A source's messages in `(after, cap]`, its own source's first.
fn inherited(
    conn: &mut crate::store::DbConn,
    path: &str,
    after: &str,
    cap: &str,
    out: &mut Vec<Message>,
) -> Result<(), crate::store::StoreError> {
    let Some(source) = rows::get(conn, path)? else {
        return Ok(());
    };
    if let (Some(parent), Some(fork_offset)) = (&source.forked_from, &source.fork_offset) {
        if after < fork_offset.as_str() {
            let upto = if fork_offset.as_str() < cap {
                fork_offset.as_str()
            } else {
                cap
            };
            inherited(conn, parent, after, upto, out)?;
        }
    }
    let have: usize = out.iter().map(|m| m.data.len()).sum();
    if have >= CHUNK {
        return Ok(());
    }
    let (own, _) = rows::messages(conn, path, after, Some(cap), CHUNK - have)?;
    out.extend(own);
    Ok(())
}

/// The body of messages: JSON mode answers one array.
fn render(row: &StreamRow, messages: &[Message]) -> Vec<u8> {
    if rules::is_json(&row.content_type) {
        return rules::json_array(messages.iter().map(|m| m.data.as_slice()));
    }
    let mut out = Vec::with_capacity(messages.iter().map(|m| m.data.len()).sum());
    for m in messages {
        out.extend_from_slice(&m.data);
    }
    out
}

/// `Stream-Cursor`: a 20-second interval number, moved ahead of a client's
/// own when it echoes the current one (collapsing keys for CDNs).
fn cursor(client: Option<&str>) -> String {
    const EPOCH_MS: i64 = 1_728_432_000_000; // 2024-10-09
    let current = (now_ms() - EPOCH_MS) / 20_000;
    match client.and_then(|c| c.parse::<i64>().ok()) {
        Some(theirs) if theirs >= current => {
            use rand::Rng;
            let jitter: i64 = rand::rng().random_range(1..=180);
            (theirs + jitter).to_string()
        }
        _ => current.to_string(),
    }
}

/// A hub registration on a stream's channel, removed when dropped.
struct Watch {
    hub: Arc<Hub>,
    id: SubscriberId,
    queue: Arc<FrameQueue>,
    /// The newest event of the stream this watch has seen.
    seen: i64,
    /// The server is stopping: long-polls answer and SSE reads end, cleanly,
    /// as native streams do.
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Watch {
    fn new(state: &AppState, path: &str) -> Watch {
        let filter = StreamFilter {
            patterns: vec![ChannelPattern::Exact(use_case::channel(path))],
            resource_ids: None,
            exclude_session: None,
            allowed: None,
            mercure: None,
        };
        let reg = state
            .hub
            .subscribe(filter, Framing::Plain, None, Timestamp::now());
        Watch {
            hub: state.hub.clone(),
            id: reg.id,
            seen: reg.head_id.get(),
            queue: reg.queue,
            shutdown: state.hub.shutdown_signal(),
        }
    }

    /// Whether the server is stopping.
    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Waits until something happens on the stream (true) or `limit` passes.
    async fn changed(&mut self, limit: Duration) -> bool {
        if self.queue.is_lagged() {
            self.hub.clear_lag(self.id);
            return true;
        }
        let woke = tokio::select! {
            ready = tokio::time::timeout(limit, self.queue.ready()) => ready.is_ok(),
            _ = self.shutdown.wait_for(|stopping| *stopping) => false,
        };
        while let Some(frame) = self.queue.try_recv() {
            self.seen = self.seen.max(frame.id.get());
        }
        woke
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}

/// The query of a read: `offset` (once), `live`, `cursor`.
struct ReadQuery {
    offset: Option<String>,
    live: Option<String>,
    cursor: Option<String>,
}

impl ReadQuery {
    /// The offset a read starts after: `-1` (or none) is the start, `now` the tail.
    fn start(&self, row: &StreamRow) -> String {
        match self.offset.as_deref() {
            None | Some("-1") => ZERO_OFFSET.to_owned(),
            Some("now") => row.tail.clone(),
            Some(o) => o.to_owned(),
        }
    }
}

fn read_query(req: &HttpRequest) -> Result<ReadQuery, HttpResponse> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let offsets: Vec<&String> = pairs
        .iter()
        .filter(|(k, _)| k == "offset")
        .map(|(_, v)| v)
        .collect();
    if offsets.len() > 1 {
        return Err(text(
            StatusCode::BAD_REQUEST,
            "Multiple offset parameters not allowed",
        ));
    }
    let offset = offsets.first().map(|o| o.to_string());
    if let Some(o) = &offset {
        if o.is_empty() {
            return Err(text(StatusCode::BAD_REQUEST, "Empty offset parameter"));
        }
        if !(o == "-1" || o == "now" || rules::is_offset(o)) {
            return Err(text(StatusCode::BAD_REQUEST, "Invalid offset format"));
        }
    }
    let live = pairs
        .iter()
        .find(|(k, _)| k == "live")
        .map(|(_, v)| v.clone());
    if let Some(mode) = &live {
        if mode != "long-poll" && mode != "sse" {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "live must be long-poll or sse",
            ));
        }
        if offset.is_none() {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "Live modes require the offset parameter",
            ));
        }
    }
    let cursor = pairs
        .iter()
        .find(|(k, _)| k == "cursor")
        .map(|(_, v)| v.clone());
    Ok(ReadQuery {
        offset,
        live,
        cursor,
    })
}

/// `GET /v1/stream/{path}?offset=…[&live=long-poll|sse]`: reads from an
/// offset; long-poll waits for the next append; SSE follows.
#[utoipa::path(get, path = "/v1/stream/{path}", tag = "durable-streams",
    params(("path" = String, Path, description = "The stream's path"),
        ("offset" = Option<String>, Query, description = "`-1` (the start), `now` (the tail) or an offset"),
        ("live" = Option<String>, Query, description = "`long-poll` or `sse`"),
        ("cursor" = Option<String>, Query, description = "The last `Stream-Cursor`")),
    responses((status = 200, description = "Bytes from the offset (JSON mode: an array); `Stream-Next-Offset`, `Stream-Up-To-Date`, `Stream-Closed`, `ETag`"),
        (status = 204, description = "Long-poll timed out, or the stream is closed at its tail"),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 400, description = "A bad parameter", body = String),
        (status = 404, description = "No such stream", body = String),
        (status = 410, description = "Deleted, still read by forks", body = String)))]
pub async fn read(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let path = req.path().to_owned();
    let query = match read_query(&req) {
        Ok(q) => q,
        Err(response) => return response,
    };
    let row = match readable(&state, &path).await {
        Ok(row) => row,
        Err(response) => return response,
    };
    if row.ttl_seconds.is_some() {
        state.durable.touch(&path);
    }
    if query.live.as_deref() == Some("sse") {
        let ends = state.auth.end_of(&super::principal(&req));
        return sse(&state, row, &query, ends).await;
    }
    let long_poll = query.live.as_deref() == Some("long-poll");
    if query.offset.as_deref() == Some("now") && !long_poll {
        let mut r = answer(StatusCode::OK);
        r.insert_header(("Stream-Next-Offset", row.tail.clone()))
            .insert_header(("Stream-Up-To-Date", "true"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .insert_header((header::CONTENT_TYPE, row.content_type.clone()));
        if row.closed {
            r.insert_header(("Stream-Closed", "true"));
        }
        let body: &'static [u8] = if rules::is_json(&row.content_type) {
            b"[]"
        } else {
            b""
        };
        return r.body(body);
    }
    let start = query.start(&row);
    let mut watch = long_poll.then(|| Watch::new(&state, &path));
    let mut row = row;
    let (mut messages, mut more) = match load(&state, &row, &start).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    if long_poll && messages.is_empty() && start == row.tail {
        let deadline = tokio::time::Instant::now() + state.durable.long_poll;
        loop {
            if row.closed {
                return answer(StatusCode::NO_CONTENT)
                    .insert_header(("Stream-Next-Offset", row.tail.clone()))
                    .insert_header(("Stream-Up-To-Date", "true"))
                    .insert_header(("Stream-Closed", "true"))
                    .finish();
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let woke = match watch.as_mut() {
                Some(w) if !left.is_zero() => w.changed(left).await,
                _ => false,
            };
            let stopping = watch.as_ref().is_some_and(Watch::stopping);
            row = match readable(&state, &path).await {
                Ok(row) => row,
                Err(response) => return response,
            };
            (messages, more) = match load(&state, &row, &start).await {
                Ok(read) => read,
                Err(response) => return response,
            };
            if !messages.is_empty() {
                break;
            }
            if stopping || (!woke && tokio::time::Instant::now() >= deadline) {
                let mut r = answer(StatusCode::NO_CONTENT);
                r.insert_header(("Stream-Next-Offset", start.clone()))
                    .insert_header(("Stream-Up-To-Date", "true"))
                    .insert_header(("Stream-Cursor", cursor(query.cursor.as_deref())));
                if row.closed {
                    r.insert_header(("Stream-Closed", "true"));
                }
                return r.finish();
            }
        }
    }
    drop(watch);
    // A catch-up read answers the whole range up to the tail, in pages read
    // one at a time: a client that reads once (`live: false`) gets all of it.
    let whole = !long_poll && more;
    messages.retain(|m| m.offset <= row.tail);
    let next = match messages.last() {
        _ if whole => row.tail.clone(),
        Some(last) => last.offset.clone(),
        None if start > row.tail => start.clone(),
        None => row.tail.clone(),
    };
    let up_to_date = whole || !more;
    let at_end = row.closed && next == row.tail && up_to_date;
    let tag = etag(
        &path,
        query.offset.as_deref().unwrap_or("-1"),
        &next,
        at_end,
    );
    if header_str(&req, "if-none-match") == Some(tag.as_str()) {
        return answer(StatusCode::NOT_MODIFIED)
            .insert_header((header::ETAG, tag))
            .finish();
    }
    let mut r = answer(StatusCode::OK);
    r.insert_header((header::CONTENT_TYPE, row.content_type.clone()))
        .insert_header(("Stream-Next-Offset", next))
        .insert_header((header::ETAG, tag));
    if long_poll {
        r.insert_header(("Stream-Cursor", cursor(query.cursor.as_deref())));
    }
    if up_to_date {
        r.insert_header(("Stream-Up-To-Date", "true"));
    }
    if at_end {
        r.insert_header(("Stream-Closed", "true"));
    }
    if whole {
        return r.streaming(CatchUp::new(state.clone(), row, messages).into_body());
    }
    r.body(render(&row, &messages))
}

/// A catch-up answer larger than one page: the pages up to the stream's
/// tail (as it was when the read began), each read from the database when
/// the one before has been handed to the connection, so memory stays at
/// about one page whatever the stream's size. In JSON mode the pages'
/// values make one array.
struct CatchUp {
    state: web::Data<AppState>,
    row: StreamRow,
    page: Option<Vec<Message>>,
    json: bool,
    /// Whether a JSON value has been written (the next one needs a comma).
    any: bool,
    after: String,
    finished: bool,
}

impl CatchUp {
    fn new(state: web::Data<AppState>, row: StreamRow, first: Vec<Message>) -> CatchUp {
        CatchUp {
            json: rules::is_json(&row.content_type),
            after: first.last().map(|m| m.offset.clone()).unwrap_or_default(),
            state,
            row,
            page: Some(first),
            any: false,
            finished: false,
        }
    }

    fn into_body(self) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::unfold(self, |mut catch_up| async move {
            let chunk = catch_up.next().await?;
            Some((chunk, catch_up))
        })
    }

    fn render(&mut self, page: &[Message], opening: bool) -> Vec<u8> {
        if !self.json {
            return render(&self.row, page);
        }
        let array = rules::json_array(page.iter().map(|m| m.data.as_slice()));
        let values = &array[1..array.len() - 1];
        let mut out = Vec::with_capacity(values.len() + 2);
        if opening {
            out.push(b'[');
        }
        if !values.is_empty() {
            if self.any {
                out.push(b',');
            }
            out.extend_from_slice(values);
            self.any = true;
        }
        out
    }

    /// The next chunk; an error cuts the connection (no chunked
    /// terminator), so that the client never takes a short answer for the
    /// whole range its headers announced.
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.finished {
            return None;
        }
        if let Some(first) = self.page.take() {
            return Some(Ok(Bytes::from(self.render(&first, true))));
        }
        let (row, after) = (self.row.clone(), self.after.clone());
        let read = self
            .state
            .store
            .read(move |conn| read_messages(conn, &row, &after, CHUNK))
            .await;
        let (mut page, more) = match read {
            Ok(read) => read,
            Err(err) => {
                tracing::warn!(path = %self.row.path, error = %err, "catch-up read failed; the answer is cut");
                self.finished = true;
                return Some(Err(std::io::Error::other(err.to_string())));
            }
        };
        page.retain(|m| m.offset <= self.row.tail);
        let last = page.last().map(|m| m.offset.clone());
        let done = !more || last.is_none() || last.as_deref() == Some(self.row.tail.as_str());
        if let Some(last) = last {
            self.after = last;
        }
        let mut out = self.render(&page, false);
        if done {
            self.finished = true;
            if self.json {
                out.push(b']');
            }
        }
        Some(Ok(Bytes::from(out)))
    }
}

async fn load(
    state: &AppState,
    row: &StreamRow,
    after: &str,
) -> Result<(Vec<Message>, bool), HttpResponse> {
    let row = row.clone();
    let after = after.to_owned();
    state
        .store
        .read(move |conn| read_messages(conn, &row, &after, CHUNK))
        .await
        .map_err(store_failure)
}

/// `data:` lines of one payload (split at line breaks).
fn sse_data(payload: &str) -> String {
    let mut out = String::with_capacity(payload.len() + 16);
    for line in payload.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
        out.push_str("data:");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// One SSE connection's state.
struct Follow {
    state: web::Data<AppState>,
    path: String,
    offset: String,
    base64: bool,
    client_cursor: Option<String>,
    watch: Watch,
    done: bool,
    waiting: bool,
    /// The reader's credential ending (a JWT's `exp`, a revoked token):
    /// the answer ends, and the client reconnects with a fresh one.
    ends: Option<EndOfCredential>,
}

impl Follow {
    /// Whether the reader's credential has ended.
    fn credential_ended(&mut self) -> bool {
        let ended = self
            .ends
            .as_mut()
            .is_some_and(|end| end.as_mut().now_or_never().is_some());
        if ended {
            self.ends = None;
            self.done = true;
        }
        ended
    }

    /// The stream's row and what follows this reader's offset: from the
    /// last read of the stream when it covers the offset and every event
    /// this reader was woken by, else from one new read (the others wait
    /// for it rather than read too).
    async fn shared_read(&self) -> Option<(StreamRow, Vec<Message>, bool)> {
        let slot = self.state.durable.read_slot(&self.path);
        let mut last = slot.lock().await;
        if let Some(snapshot) = last.as_ref() {
            if snapshot.valid_through >= self.watch.seen {
                if let Some((messages, more)) = snapshot.after(&self.offset) {
                    return Some((snapshot.row.clone(), messages, more));
                }
            }
        }
        let (path, after) = (self.path.clone(), self.offset.clone());
        let now = now_ms();
        let touched = self.state.durable.touched(&path);
        let valid_through = self.state.hub.head_id().get();
        let read = self
            .state
            .store
            .read(move |conn| {
                let Some(row) = rows::get(conn, &path)? else {
                    return Ok(None);
                };
                if row.soft_deleted || use_case::expired(&row, now, touched) {
                    return Ok(None);
                }
                let (messages, more) = read_messages(conn, &row, &after, CHUNK)?;
                Ok(Some((row, messages, more)))
            })
            .await
            .ok()??;
        *last = Some(Arc::new(Snapshot {
            start: self.offset.clone(),
            valid_through,
            row: read.0.clone(),
            messages: read.1.clone(),
            more: read.2,
        }));
        Some(read)
    }

    fn control(&self, offset: &str, closed: bool, up_to_date: bool) -> String {
        let mut control = serde_json::json!({ "streamNextOffset": offset });
        if closed {
            // A closed stream at its tail is up to date as well.
            control["streamClosed"] = true.into();
            control["upToDate"] = true.into();
        } else {
            control["streamCursor"] = cursor(self.client_cursor.as_deref()).into();
            if up_to_date {
                control["upToDate"] = true.into();
            }
        }
        format!("event: control\n{}", sse_data(&control.to_string()))
    }

    /// The next chunk of the SSE body, or `None` to end it.
    async fn next(&mut self) -> Option<Bytes> {
        if self.done || self.credential_ended() || self.watch.stopping() {
            return None;
        }
        if self.waiting {
            let long_poll = self.state.durable.long_poll;
            let woke = match self.ends.as_mut() {
                Some(end) => tokio::select! {
                    woke = self.watch.changed(long_poll) => woke,
                    _ = end.as_mut() => {
                        self.ends = None;
                        self.done = true;
                        return None;
                    }
                },
                None => self.watch.changed(long_poll).await,
            };
            if self.watch.stopping() {
                self.done = true;
                return None;
            }
            self.waiting = false;
            // A connected reader keeps a stream with a sliding TTL alive.
            self.state.durable.touch(&self.path);
            if !woke {
                let row = readable(&self.state, &self.path).await.ok();
                let Some(row) = row else {
                    self.done = true;
                    return None;
                };
                if row.closed && row.tail == self.offset {
                    self.done = true;
                    return Some(Bytes::from(self.control(&self.offset, true, true)));
                }
                self.waiting = true;
                return Some(Bytes::from(self.control(&self.offset, false, true)));
            }
        }
        // Readers of one stream woken by one append share one read.
        let Some((row, messages, more)) = self.shared_read().await else {
            self.done = true;
            return None;
        };
        if row.ttl_seconds.is_some() {
            self.state.durable.touch(&self.path);
        }
        let mut out = String::new();
        let count = messages.len();
        // Every data event is followed by its control event.
        for (i, message) in messages.iter().enumerate() {
            let payload = if self.base64 {
                base64::engine::general_purpose::STANDARD.encode(&message.data)
            } else if rules::is_json(&row.content_type) {
                String::from_utf8_lossy(&rules::json_array(std::iter::once(
                    message.data.as_slice(),
                )))
                .into_owned()
            } else {
                String::from_utf8_lossy(&message.data).into_owned()
            };
            out.push_str("event: data\n");
            out.push_str(&sse_data(&payload));
            self.offset.clone_from(&message.offset);
            let last = i + 1 == count && !more;
            let closed = last && row.closed && self.offset == row.tail;
            out.push_str(&self.control(&self.offset, closed, last));
            if closed {
                self.done = true;
                return Some(Bytes::from(out));
            }
        }
        if messages.is_empty() {
            if self.offset < row.tail
                && self.offset.as_str() >= row.fork_offset.as_deref().unwrap_or("")
            {
                // An offset between messages: go on from the tail.
                self.offset.clone_from(&row.tail);
            }
            let closed = row.closed && self.offset >= row.tail;
            out.push_str(&self.control(&self.offset, closed, true));
            if closed {
                self.done = true;
                return Some(Bytes::from(out));
            }
        }
        if !more {
            self.waiting = true;
        }
        Some(Bytes::from(out))
    }
}

async fn sse(
    state: &web::Data<AppState>,
    row: StreamRow,
    query: &ReadQuery,
    ends: Option<EndOfCredential>,
) -> HttpResponse {
    let offset = query.start(&row);
    let base64 = !rules::is_text(&row.content_type);
    let follow = Follow {
        watch: Watch::new(state, &row.path),
        state: state.clone(),
        path: row.path.clone(),
        offset,
        base64,
        client_cursor: query.cursor.clone(),
        done: false,
        waiting: false,
        ends,
    };
    let body = futures_util::stream::unfold(follow, |mut follow| async move {
        let chunk = follow.next().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), follow))
    });
    let mut r = answer(StatusCode::OK);
    r.content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .insert_header(header::ContentEncoding::Identity);
    if base64 {
        r.insert_header(("stream-sse-data-encoding", "base64"));
    }
    r.streaming(body)
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
    let outcome = match state
        .writer
        .write(move |tx| use_case::append(tx, job))
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
    let outcome = match state
        .writer
        .write(move |tx| use_case::delete(tx, &path, now, touched))
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
