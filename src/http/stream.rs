//! `GET /api/stream`: one Server-Sent-Events stream per client session.
//!
//! The hand-over that loses nothing and repeats nothing:
//! 1. Register with the hub first. From then on every matching event above
//!    the registration's `head_id` is queued for this stream.
//! 2. Send what the client missed from the log: the events after its cursor
//!    up to `head_id` (in pages), or, without a cursor, the recent replay.
//! 3. Go live: send queued frames, skipping any id not above the cursor.
//!
//! The cursor (the last id sent) only grows, so the stream sends events in id
//! order, each at most once. If the queue overflowed (a slow client), the hub
//! stopped queueing at the first frame that did not fit; the stream drains
//! what was queued, asks the hub for the current head (`clear_lag`) and reads
//! the gap from the log: step 2 again. A stalled client costs the server a
//! bounded queue, never a blocked publisher.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::{AppState, Identity};
use crate::domain::{ChannelPattern, DomainError, EventId, ResourceId, StreamFilter, Timestamp};
use crate::http::error::ApiError;
use crate::hub::{Framing, StreamOwner};

mod keepalive;
mod log_stream;
pub(in crate::http) use log_stream::{sse_response_with, LogStream};

/// The most events `replay=N` may ask for.
pub const MAX_REPLAY: usize = 1000;
/// The most resource ids one stream may filter on.
const MAX_RESOURCE_IDS: usize = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Comma-separated channel patterns (`features`, `conversation:*`, `*`);
    /// default `*`.
    #[param(value_type = String, required = false, example = "features,conversation:*")]
    channels: Option<String>,
    /// Comma-separated filter on the events' `resource_id` (at most 100).
    #[param(value_type = String, required = false)]
    resource_ids: Option<String>,
    /// Resume after this event id, as `Last-Event-ID` does (the header wins).
    /// Empty means no cursor.
    #[param(value_type = i64, required = false, minimum = 0)]
    last_event_id: Option<String>,
    /// Without a cursor: how many recent matching events to send first
    /// (default 50, only those inside the replay window, 5 min by default);
    /// `0` for none.
    #[param(value_type = u32, required = false, minimum = 0, maximum = 1000)]
    replay: Option<String>,
    /// `true` (or `1`) also sends the subscriber's own session's events.
    #[param(value_type = bool, required = false)]
    include_own: Option<String>,
    /// `true` (or `1`) leaves out the `event:` line, so that every event
    /// reaches `EventSource.onmessage` (the type is in the JSON).
    #[param(value_type = bool, required = false)]
    plain: Option<String>,
}

/// Where a new stream starts.
#[derive(Debug, Clone, Copy)]
pub(super) enum Start {
    /// After this id (`Last-Event-ID`).
    After(EventId),
    /// With the `n` most recent matching events inside the replay window.
    Recent(usize),
}

fn parse_bool(field: &str, value: Option<&str>) -> Result<bool, ApiError> {
    match value {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(_) => Err(DomainError::validation(field, "must be true or false").into()),
    }
}

/// A malformed cursor is a 400 here (not the 422 of a query's `after`):
/// the stream has always answered so, and `EventSource` clients rely on it.
fn parse_cursor(field: &str, value: &str) -> Result<EventId, ApiError> {
    EventId::parse(field, value.trim())
        .map_err(|_| ApiError::bad_request(format!("{field} must be a non-negative event id")))
}

fn parse_start(
    req: &HttpRequest,
    query: &StreamQuery,
    default_replay: usize,
) -> Result<Start, ApiError> {
    if let Some(value) = req.headers().get("Last-Event-ID") {
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("Last-Event-ID must be an event id"))?;
        // EventSource sends an empty Last-Event-ID before it has seen an id.
        if !value.trim().is_empty() {
            return Ok(Start::After(parse_cursor("Last-Event-ID", value)?));
        }
    }
    if let Some(value) = query.last_event_id.as_deref().filter(|v| !v.is_empty()) {
        return Ok(Start::After(parse_cursor("last_event_id", value)?));
    }
    let replay = match query.replay.as_deref() {
        None => default_replay,
        Some(value) => value
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= MAX_REPLAY)
            .ok_or_else(|| {
                DomainError::validation("replay", format!("must be 0 to {MAX_REPLAY}"))
            })?,
    };
    Ok(Start::Recent(replay))
}

fn parse_filter(
    query: &StreamQuery,
    identity: &Identity,
    include_own: bool,
    allowed: Option<Vec<ChannelPattern>>,
) -> Result<StreamFilter, ApiError> {
    let patterns = ChannelPattern::parse_list("channels", query.channels.as_deref())?;
    let resource_ids = match query
        .resource_ids
        .as_deref()
        .filter(|v| !v.trim().is_empty())
    {
        None => None,
        Some(list) => {
            let ids: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|id| !id.is_empty())
                .map(|id| ResourceId::parse("resource_ids", id).map(ResourceId::into_string))
                .collect::<Result<_, _>>()?;
            if ids.len() > MAX_RESOURCE_IDS {
                return Err(DomainError::validation(
                    "resource_ids",
                    format!("at most {MAX_RESOURCE_IDS} ids"),
                )
                .into());
            }
            Some(ids)
        }
    };
    Ok(StreamFilter {
        patterns,
        resource_ids,
        exclude_session: identity
            .session_id
            .as_ref()
            .filter(|_| !include_own)
            .map(|s| s.as_str().to_owned()),
        allowed,
        mercure: None,
    })
}

/// `GET /api/stream`
///
/// One Server-Sent-Events stream. Each event arrives as `id: <id>`,
/// `event: <type>` and `data: <the Event as JSON>`; the stream starts with
/// `retry: <ms>` and sends `: keep-alive` comments. Events arrive in id order,
/// with no gap and no duplicate, across replay, live and reconnects with
/// `Last-Event-ID`. A cursor older than the log (pruned) or newer than its
/// head first gets `event: resync` with
/// `{"reason": "cursor_expired" | "cursor_ahead" | "failover", "head_id",
/// "oldest_id"}` (`failover`: the cursor names events a PostgreSQL primary
/// answered and lost in a failover to an asynchronous standby).
/// Opening the first stream of a session publishes `session_joined` on
/// `presence`; closing its last publishes `session_left`. A stream opened
/// with a credential that ends (a JWT's `exp`, an authorize answer's
/// lifetime, a token removed from the tokens file) ends then, after a last
/// `event: reauthenticate` with `{"reason": "expired" | "revoked",
/// "message"}` and no id: get a fresh credential and resume with
/// `Last-Event-ID`.
#[utoipa::path(
    get,
    path = "/api/stream",
    tag = "stream",
    params(
        StreamQuery,
        super::described::StreamIdentityQuery,
        super::described::LastEventIdHeader,
        super::described::IdentityHeaders,
    ),
    responses(
        (
            status = 200,
            description = "An endless `text/event-stream`; `Cache-Control: no-cache`, `X-Accel-Buffering: no`",
            content_type = "text/event-stream",
            body = String,
            example = json!("retry: 2000\n\nid: 1234\nevent: note\ndata: {\"id\":1234,\"channel\":\"global\",\"type\":\"note\",\"resource_type\":null,\"resource_id\":null,\"agent_id\":\"alice\",\"session_id\":null,\"timestamp\":\"2026-11-21T12:00:00.123456Z\",\"payload\":{}}\n\n"),
        ),
        (status = 400, response = super::described::BadRequest),
        (status = 422, response = super::described::ValidationFailed),
        (status = 503, response = super::described::Unavailable),
    ),
)]
pub async fn open_stream(
    req: HttpRequest,
    state: web::Data<AppState>,
    identity: Identity,
    query: super::Query<StreamQuery>,
) -> Result<HttpResponse, ApiError> {
    let include_own = parse_bool("include_own", query.include_own.as_deref())?;
    let caller = super::principal(&req);
    let framing = if parse_bool("plain", query.plain.as_deref())? {
        Framing::Plain
    } else {
        Framing::Named
    };
    let filter = Arc::new(parse_filter(
        &query,
        &identity,
        include_own,
        caller.read.restriction(),
    )?);
    if state.hub.stream_count() >= state.max_streams {
        return Err(ApiError::Unavailable(format!(
            "{} streams are open, the most this server takes",
            state.max_streams
        )));
    }
    let start = parse_start(&req, &query, state.streams.replay_count)?;

    let owner = identity.session_id.as_ref().map(|session| StreamOwner {
        session_id: session.as_str().to_owned(),
        agent_id: identity.agent_id.as_str().to_owned(),
    });
    let registration = state
        .hub
        .subscribe(filter.clone(), framing, owner, Timestamp::now());
    tracing::info!(
        subscriber = registration.id,
        session_id = identity.session_id.as_ref().map(|s| s.as_str()),
        channels = ?filter.patterns.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "stream opened"
    );

    let stream = LogStream::new(&state, registration, filter, framing, start)
        .ends_with(state.auth.end_of(&caller));
    Ok(sse_response(stream))
}

/// The endless `text/event-stream` answer that sends what `stream` produces.
fn sse_response(stream: LogStream) -> HttpResponse {
    sse_response_with(stream, HttpResponse::Ok())
}
