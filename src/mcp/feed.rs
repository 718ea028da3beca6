//! What `wait_for_events` reads: the events of *other* sessions after this
//! process's cursor, exactly once and in id order.
//!
//! The events come from the log (`GET /api/events`), so nothing is skipped
//! or repeated whatever happens to connections; the cursor moves only past
//! events returned (or passed over: this session's own, and presence unless
//! asked for). A stream held open for the process's life (which also shows
//! this agent in presence) only wakes a waiting call when something
//! arrives; a waiting call also looks at the log once a second, so a missed
//! wake-up costs at most that.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use super::api::{Api, ApiFailure, Call};
use crate::client::sse::{SseMessage, SseParser};

/// The largest page read from the log at once.
const PAGE: usize = 500;

/// What one wait asks for.
pub struct WaitFor {
    pub since: Option<i64>,
    pub timeout: Duration,
    pub channels: Option<String>,
    pub include_presence: bool,
    pub limit: usize,
}

/// What one wait found.
pub struct Found {
    pub events: Vec<Value>,
    /// The cursor after this call: the next call starts after it.
    pub cursor: i64,
    /// More events were there than `limit`: call again at once.
    pub more: bool,
}

pub struct Feed {
    api: Api,
    cursor: Mutex<i64>,
    wake: Arc<Notify>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl Feed {
    /// Starts after event `start` and opens the wake-up stream.
    pub fn start(api: Api, start: i64) -> Feed {
        let wake = Arc::new(Notify::new());
        let watcher = tokio::spawn(watch(api.clone(), wake.clone()));
        Feed {
            api,
            cursor: Mutex::new(start),
            wake,
            watcher,
        }
    }

    /// The events after the cursor (or `since`), waiting up to `timeout`
    /// for the first one. Calls are served one at a time.
    pub async fn wait(&self, ask: WaitFor) -> Result<Found, ApiFailure> {
        let mut cursor = self.cursor.lock().await;
        if let Some(since) = ask.since {
            if since < 0 {
                return Err(ApiFailure::invalid(
                    "since",
                    "must be an event id, 0 or more",
                ));
            }
            *cursor = since;
        }
        let deadline = Instant::now() + ask.timeout;
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            match self.read(&mut cursor, &ask).await {
                Ok(found) if !found.events.is_empty() => return Ok(found),
                Ok(_) => {}
                // The server is away (a restart): keep waiting for it.
                Err(failure) if failure.status == 0 || failure.status >= 500 => {
                    if Instant::now() >= deadline {
                        return Err(failure);
                    }
                }
                Err(failure) => return Err(failure),
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Found {
                    events: Vec::new(),
                    cursor: *cursor,
                    more: false,
                });
            }
            let tick = (deadline - now).min(Duration::from_secs(1));
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }

    /// Reads the log after `cursor`, moving it past what is returned or
    /// passed over; at most `ask.limit` events.
    async fn read(&self, committed: &mut i64, ask: &WaitFor) -> Result<Found, ApiFailure> {
        // Moved for good only when the read succeeds as a whole.
        let mut position = *committed;
        let cursor = &mut position;
        let mut events = Vec::new();
        loop {
            let page = self
                .api
                .send(
                    Call::get("/api/events")
                        .query("after", Some(*cursor))
                        .query("limit", Some(PAGE))
                        .query("channels", ask.channels.as_deref()),
                )
                .await?;
            let batch = page.body["events"].as_array().cloned().unwrap_or_default();
            let full = batch.len() == PAGE;
            let count = batch.len();
            for (at, event) in batch.into_iter().enumerate() {
                let id = event["id"].as_i64().unwrap_or(*cursor);
                let own = event["session_id"].as_str() == Some(self.api.session_id.as_str());
                let presence = event["channel"] == "presence" && !ask.include_presence;
                if !own && !presence {
                    events.push(event);
                }
                *cursor = id;
                if events.len() == ask.limit {
                    *committed = *cursor;
                    return Ok(Found {
                        events,
                        cursor: *cursor,
                        more: full || at + 1 < count,
                    });
                }
            }
            if !full {
                *committed = *cursor;
                return Ok(Found {
                    events,
                    cursor: *cursor,
                    more: false,
                });
            }
        }
    }
}

/// Holds `GET /api/stream` open (live only, this session's events left out)
/// and wakes waiting calls on every event and on every (re)connect.
async fn watch(api: Api, wake: Arc<Notify>) {
    let mut retry = Duration::from_millis(500);
    loop {
        let request = api
            .request(Method::GET, "/api/stream")
            .query(&[("channels", "*"), ("replay", "0")]);
        if let Ok(response) = request.send().await {
            if response.status().is_success() {
                retry = Duration::from_millis(500);
                wake.notify_waiters();
                let mut body = response.bytes_stream();
                let mut parser = SseParser::new();
                let mut messages = Vec::new();
                while let Some(Ok(chunk)) = body.next().await {
                    messages.clear();
                    parser.feed(&chunk, &mut messages);
                    if messages.iter().any(|m| matches!(m, SseMessage::Event(_))) {
                        wake.notify_waiters();
                    }
                }
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(Duration::from_secs(5));
    }
}
