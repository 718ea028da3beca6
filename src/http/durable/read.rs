//! `GET /v1/stream/{path}` without SSE: a catch-up read from an offset
//! (page by page up to the tail when it is larger than one page) and a
//! long-poll that waits at the tail for the next append. What a read may
//! see and which messages follow an offset are the app's
//! (`app::durable_read`); where an answer ends, its ETag and cursor the
//! domain's. Here: the query, the wait, and the answer's headers and body.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;

use super::tails::Hit as Kept;
use super::watch::Watch;
use super::{answer, header_str, now_ms, sse, store_failure, text, visible};
use crate::app::durable_read;
use crate::domain::durable::{self as rules, Message, Stream};
use crate::http::AppState;

/// The query of a read: `offset` (once), `live`, `cursor`.
struct ReadQuery {
    offset: Option<String>,
    live: Option<String>,
    cursor: Option<String>,
}

impl ReadQuery {
    fn long_poll(&self) -> bool {
        self.live.as_deref() == Some("long-poll")
    }

    fn cursor(&self) -> String {
        rules::cursor(self.cursor.as_deref(), now_ms())
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

/// A stream and one page of it: its messages after an offset, and whether
/// more follow.
type Read = (Stream, Vec<Message>, bool);

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
    let stream = match visible(&state, &path).await {
        Ok(stream) => stream,
        Err(response) => return response,
    };
    if stream.slides() {
        state.durable.touch(&path);
    }
    if query.live.as_deref() == Some("sse") {
        let ends = state.auth.end_of(&crate::http::principal(&req));
        let offset = stream.start(query.offset.as_deref());
        return sse::sse(&state, stream, offset, query.cursor.clone(), ends);
    }
    let long_poll = query.long_poll();
    if query.offset.as_deref() == Some("now") && !long_poll {
        return at_tail(&stream);
    }
    let start = stream.start(query.offset.as_deref());
    if !long_poll {
        if let Some(kept) = state.durable.kept(&stream, &start) {
            return answer_kept(&req, &query, &start, &stream, kept);
        }
    }
    let mut watch = long_poll.then(|| Watch::new(&state, &path));
    let (messages, more) = match load(&state, &stream, &start).await {
        Ok(page) => page,
        Err(response) => return response,
    };
    let mut read = (stream, messages, more);
    if let Some(watch) = watch.as_mut() {
        if read.1.is_empty() && start == read.0.tail {
            read = match wait_for_append(&state, &query, watch, read.0, &start).await {
                Ok(read) => read,
                Err(response) => return response,
            };
        }
    }
    drop(watch);
    answer_read(&req, &state, &query, &start, read)
}

/// `offset=now` without long-poll: nothing, at the tail.
fn at_tail(stream: &Stream) -> HttpResponse {
    let mut r = answer(StatusCode::OK);
    r.insert_header(("Stream-Next-Offset", stream.tail.clone()))
        .insert_header(("Stream-Up-To-Date", "true"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::CONTENT_TYPE, stream.content_type.clone()));
    if stream.closed {
        r.insert_header(("Stream-Closed", "true"));
    }
    let body: &'static [u8] = if stream.is_json() { b"[]" } else { b"" };
    r.body(body)
}

/// A long-poll at the tail: reads again whenever the hub brings an event
/// of the stream, until messages follow `start` (`Ok`), or answers 204 when
/// the stream is closed, the long-poll period passes or the server stops.
async fn wait_for_append(
    state: &AppState,
    query: &ReadQuery,
    watch: &mut Watch,
    mut stream: Stream,
    start: &str,
) -> Result<Read, HttpResponse> {
    let deadline = tokio::time::Instant::now() + state.durable.long_poll;
    loop {
        if stream.closed {
            return Err(answer(StatusCode::NO_CONTENT)
                .insert_header(("Stream-Next-Offset", stream.tail.clone()))
                .insert_header(("Stream-Up-To-Date", "true"))
                .insert_header(("Stream-Closed", "true"))
                .finish());
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let woke = !left.is_zero() && watch.changed(left).await;
        let stopping = watch.stopping();
        stream = visible(state, &stream.path).await?;
        let (messages, more) = load(state, &stream, start).await?;
        if !messages.is_empty() {
            return Ok((stream, messages, more));
        }
        if stopping || (!woke && tokio::time::Instant::now() >= deadline) {
            let mut r = answer(StatusCode::NO_CONTENT);
            r.insert_header(("Stream-Next-Offset", start.to_owned()))
                .insert_header(("Stream-Up-To-Date", "true"))
                .insert_header(("Stream-Cursor", query.cursor()));
            if stream.closed {
                r.insert_header(("Stream-Closed", "true"));
            }
            return Err(r.finish());
        }
    }
}

/// The answer to a read from `start`: 304 when `If-None-Match` matches its
/// ETag, else its headers and body — a catch-up read answers the whole
/// range up to the tail, in pages read one at a time, so a client that
/// reads once (`live: false`) gets all of it.
fn answer_read(
    req: &HttpRequest,
    state: &web::Data<AppState>,
    query: &ReadQuery,
    start: &str,
    (stream, mut messages, more): Read,
) -> HttpResponse {
    let whole = !query.long_poll() && more;
    messages.retain(|m| m.offset <= stream.tail);
    let last = messages.last().map(|m| m.offset.as_str());
    let mut r = match read_head(req, query, start, &stream, last, more, whole) {
        Ok(r) => r,
        Err(not_modified) => return not_modified,
    };
    if whole {
        return r.streaming(CatchUp::new(state.clone(), stream, messages).into_body());
    }
    r.body(render(&stream, &messages))
}

/// The answer to a catch-up read that the stream's recent messages in
/// memory hold up to its tail ([`super::Durable::kept`]).
fn answer_kept(
    req: &HttpRequest,
    query: &ReadQuery,
    start: &str,
    stream: &Stream,
    kept: Kept,
) -> HttpResponse {
    let mut r = match read_head(
        req,
        query,
        start,
        stream,
        kept.last.as_deref(),
        false,
        false,
    ) {
        Ok(r) => r,
        Err(not_modified) => return not_modified,
    };
    let (open, close): (&'static [u8], &'static [u8]) = if stream.is_json() {
        (b"[", b"]")
    } else {
        (b"", b"")
    };
    let size = open.len() + kept.parts.iter().map(Bytes::len).sum::<usize>() + close.len();
    let parts = std::iter::once(Bytes::from_static(open))
        .chain(kept.parts)
        .chain(std::iter::once(Bytes::from_static(close)))
        .filter(|part| !part.is_empty())
        .map(Ok::<_, std::convert::Infallible>);
    r.body(actix_web::body::SizedStream::new(
        size as u64,
        futures_util::stream::iter(parts),
    ))
}

/// The head of a read's answer from `start` whose messages end with
/// `last` (`more`: the page left more; `whole`: a catch-up sent to the
/// tail), or `Err` with 304 when `If-None-Match` matches its ETag.
fn read_head(
    req: &HttpRequest,
    query: &ReadQuery,
    start: &str,
    stream: &Stream,
    last: Option<&str>,
    more: bool,
    whole: bool,
) -> Result<actix_web::HttpResponseBuilder, HttpResponse> {
    let end = stream.position(start, last, more, whole);
    let tag = rules::etag(
        &stream.path,
        query.offset.as_deref().unwrap_or("-1"),
        &end.next,
        end.at_end,
    );
    if header_str(req, "if-none-match") == Some(tag.as_str()) {
        return Err(answer(StatusCode::NOT_MODIFIED)
            .insert_header((header::ETAG, tag))
            .finish());
    }
    let mut r = answer(StatusCode::OK);
    r.insert_header((header::CONTENT_TYPE, stream.content_type.clone()))
        .insert_header(("Stream-Next-Offset", end.next))
        .insert_header((header::ETAG, tag));
    if query.long_poll() {
        r.insert_header(("Stream-Cursor", query.cursor()));
    }
    if end.up_to_date {
        r.insert_header(("Stream-Up-To-Date", "true"));
    }
    if end.at_end {
        r.insert_header(("Stream-Closed", "true"));
    }
    Ok(r)
}

/// One page of the stream after `after`.
async fn load(
    state: &AppState,
    stream: &Stream,
    after: &str,
) -> Result<(Vec<Message>, bool), HttpResponse> {
    let stream = stream.clone();
    let after = after.to_owned();
    state
        .store
        .read(move |conn| durable_read::read_page(conn, &stream, &after))
        .await
        .map_err(store_failure)
}

/// The body of messages: JSON mode answers one array.
fn render(stream: &Stream, messages: &[Message]) -> Vec<u8> {
    if stream.is_json() {
        return rules::json_array(messages.iter().map(|m| m.data.as_slice()));
    }
    let mut out = Vec::with_capacity(messages.iter().map(|m| m.data.len()).sum());
    for m in messages {
        out.extend_from_slice(&m.data);
    }
    out
}

/// A catch-up answer larger than one page: the pages up to the stream's
/// tail (as it was when the read began), each read from the database when
/// the one before has been handed to the connection, so memory stays at
/// about one page whatever the stream's size. In JSON mode the pages'
/// values make one array.
struct CatchUp {
    state: web::Data<AppState>,
    stream: Stream,
    page: Option<Vec<Message>>,
    json: bool,
    /// Whether a JSON value has been written (the next one needs a comma).
    any: bool,
    after: String,
    finished: bool,
}

impl CatchUp {
    fn new(state: web::Data<AppState>, stream: Stream, first: Vec<Message>) -> CatchUp {
        CatchUp {
            json: stream.is_json(),
            after: first.last().map(|m| m.offset.clone()).unwrap_or_default(),
            state,
            stream,
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
            return render(&self.stream, page);
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
        let (stream, after) = (self.stream.clone(), self.after.clone());
        let read = self
            .state
            .store
            .read(move |conn| durable_read::read_page(conn, &stream, &after))
            .await;
        let (mut page, more) = match read {
            Ok(read) => read,
            Err(err) => {
                tracing::warn!(path = %self.stream.path, error = %err, "catch-up read failed; the answer is cut");
                self.finished = true;
                return Some(Err(std::io::Error::other(err.to_string())));
            }
        };
        page.retain(|m| m.offset <= self.stream.tail);
        let last = page.last().map(|m| m.offset.clone());
        let done = !more || last.is_none() || last.as_deref() == Some(self.stream.tail.as_str());
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
