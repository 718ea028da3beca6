//! `switchboard tail`: print events as JSON lines, reconnecting and resuming
//! with `Last-Event-ID` after any disconnect or server restart, so nothing is
//! missed or printed twice.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use futures_util::StreamExt;

use crate::client::sse::{SseEvent, SseMessage, SseParser};
use crate::domain::EventId;

#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// The server's base URL.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Comma-separated channel patterns.
    #[arg(long, default_value = "*")]
    pub channels: String,
    /// This client's session: events it originated are not shown.
    #[arg(long, env = "SWITCHBOARD_SESSION_ID")]
    pub session_id: Option<String>,
    /// The agent this session belongs to, shown in its presence events.
    #[arg(long, env = "SWITCHBOARD_AGENT_ID")]
    pub agent_id: Option<String>,
    /// Start after this event id (default: the server's recent replay).
    #[arg(long, value_parser = |text: &str| EventId::parse("--last-event-id", text))]
    pub last_event_id: Option<EventId>,
    /// Recent events to show first when there is no cursor (0 for none).
    #[arg(long)]
    pub replay: Option<usize>,
    /// Comma-separated resource ids to filter on.
    #[arg(long)]
    pub resource_ids: Option<String>,
    /// Also show this session's own events.
    #[arg(long)]
    pub include_own: bool,
    /// Stop after printing this many events.
    #[arg(long)]
    pub max_events: Option<u64>,
}

/// Why one connection ended.
enum Ended {
    Done,
    Retry(Duration),
}

pub fn run(args: &TailArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(tail(args))
}

async fn tail(args: &TailArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let mut last = args.last_event_id;
    let mut printed = 0u64;
    let mut retry = Duration::from_secs(1);
    loop {
        match connect_once(&client, args, &mut last, &mut printed, &mut retry).await {
            Ok(Ended::Done) => return Ok(()),
            Ok(Ended::Retry(wait)) => tokio::time::sleep(wait).await,
            Err(err) => return Err(err),
        }
    }
}

/// One connection: open the stream after `last`, print what arrives, and
/// say whether to stop or to reconnect (and after how long).
async fn connect_once(
    client: &reqwest::Client,
    args: &TailArgs,
    last: &mut Option<EventId>,
    printed: &mut u64,
    retry: &mut Duration,
) -> anyhow::Result<Ended> {
    let response = match stream_request(client, args, *last).send().await {
        Ok(response) => response,
        Err(err) => {
            eprintln!("switchboard tail: cannot connect ({err}); retrying in {retry:?}");
            return Ok(Ended::Retry(*retry));
        }
    };
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        if status.is_client_error() && status.as_u16() != 429 {
            anyhow::bail!("the server refused the stream: {status} {body}");
        }
        eprintln!("switchboard tail: {status}; retrying in {retry:?}");
        return Ok(Ended::Retry(*retry));
    }
    let mut body = response.bytes_stream();
    let mut parser = SseParser::new();
    let mut messages = Vec::new();
    let stdout = std::io::stdout();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else { break };
        messages.clear();
        parser.feed(&chunk, &mut messages);
        let mut out = stdout.lock();
        for message in messages.drain(..) {
            match message {
                SseMessage::Retry(ms) => *retry = Duration::from_millis(ms.clamp(100, 60_000)),
                SseMessage::Comment(_) => {}
                SseMessage::Event(event) => {
                    if print_event(&mut out, &event, args, last, printed)? {
                        out.flush()?;
                        return Ok(Ended::Done);
                    }
                }
            }
        }
        out.flush()?;
    }
    eprintln!(
        "switchboard tail: stream ended; resuming after {} in {retry:?}",
        last.map_or("the start".into(), |id| id.to_string())
    );
    Ok(Ended::Retry(*retry))
}

/// `GET /api/stream` with the arguments' filters, resuming after `last`.
fn stream_request(
    client: &reqwest::Client,
    args: &TailArgs,
    last: Option<EventId>,
) -> reqwest::RequestBuilder {
    let mut query: Vec<(&str, String)> = vec![("channels", args.channels.clone())];
    if let Some(session) = &args.session_id {
        query.push(("session_id", session.clone()));
    }
    if let Some(agent) = &args.agent_id {
        query.push(("agent_id", agent.clone()));
    }
    if let Some(replay) = args.replay {
        query.push(("replay", replay.to_string()));
    }
    if let Some(ids) = &args.resource_ids {
        query.push(("resource_ids", ids.clone()));
    }
    if args.include_own {
        query.push(("include_own", "true".into()));
    }
    let mut request = client
        .get(format!("{}/api/stream", args.url.trim_end_matches('/')))
        .query(&query);
    if let Some(id) = last {
        request = request.header("Last-Event-ID", id.to_string());
    }
    request
}

/// Prints one event as a JSON line, unless it is at or below `last` (already
/// printed before a reconnect); a `resync` is always printed, as a line of
/// its own with a note on stderr. Moves `last`; true once `--max-events`
/// events are printed.
fn print_event(
    out: &mut impl Write,
    event: &SseEvent,
    args: &TailArgs,
    last: &mut Option<EventId>,
    printed: &mut u64,
) -> std::io::Result<bool> {
    let id = event.event_id();
    if let (Some(id), Some(seen)) = (id, *last) {
        if id <= seen && event.event != "resync" {
            return Ok(false); // already printed
        }
    }
    if event.event == "resync" {
        eprintln!(
            "switchboard tail: resync ({}); refetch your state",
            event.data
        );
        writeln!(
            out,
            "{{\"type\":\"resync\",\"id\":{},\"payload\":{}}}",
            id.unwrap_or(EventId::ZERO),
            event.data
        )?;
    } else {
        writeln!(out, "{}", event.data)?;
        *printed += 1;
    }
    if id.is_some() {
        *last = id;
    }
    Ok(args.max_events.is_some_and(|max| *printed >= max))
}
