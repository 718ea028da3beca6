//! Test harness: a real server on port 0 with a temporary SQLite file, a real
//! HTTP client, and an SSE reader with deadlines (a missing event fails fast).

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use switchboard::cli::sse::{SseEvent, SseMessage, SseParser};
use switchboard::config::ServeArgs;
use switchboard::startup::{Application, Stopper};
use switchboard::store::DatabaseUrl;
use tempfile::TempDir;

/// How long a test waits for something that should happen.
pub const DEADLINE: Duration = Duration::from_secs(10);

pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db_path: PathBuf,
    pub client: reqwest::Client,
    stopper: Stopper,
    dir: TempDir,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server; `configure` may change any setting before it starts.
pub async fn spawn_app_with(configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    start_in(dir, configure).await
}

async fn start_in(dir: TempDir, configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        switchboard::telemetry::init(switchboard::config::LogFormat::Text);
    }
    let db_path = dir.path().join("switchboard.db");
    let url = DatabaseUrl::parse(db_path.to_str().expect("utf-8 path")).expect("db url");
    let mut args = ServeArgs::for_tests(url);
    configure(&mut args);
    let app = Application::build(args).await.expect("server starts");
    let port = app.port();
    let stopper = app.stopper();
    let task = tokio::spawn(app.run());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db_path,
        client: reqwest::Client::new(),
        stopper,
        dir,
        task,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Stops the server gracefully and starts a new one on the same database
    /// (a new port), with the same settings plus `configure`.
    pub async fn restart_with(self, configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
        self.stopper.stop().await;
        let _ = self.task.await;
        start_in(self.dir, configure).await
    }

    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    /// Publishes one event as `session` (if any) and returns the stored event.
    pub async fn publish(
        &self,
        channel: &str,
        event_type: &str,
        data: Value,
        session: Option<&str>,
    ) -> Value {
        let mut request = self
            .post(&format!("/api/channels/{channel}/events"))
            .header("X-Agent-ID", "tester")
            .json(&json!({ "type": event_type, "data": data }));
        if let Some(session) = session {
            request = request.header("X-Session-ID", session);
        }
        let response = request.send().await.expect("publish request");
        assert_eq!(response.status(), 201, "publish should be created");
        response.json().await.expect("publish body")
    }

    /// Opens `GET /api/stream?{query}` with extra headers.
    pub async fn stream(&self, query: &str, headers: &[(&str, &str)]) -> SseStream {
        let mut request = self.get(&format!("/api/stream?{query}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("stream request");
        assert_eq!(response.status(), 200, "stream should open");
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        SseStream::new(response)
    }

    /// Every event in the log, oldest first, through the history API.
    pub async fn all_events(&self) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page: Value = self
                .get(&format!("/api/events?after={after}&limit=1000"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let events = page["events"].as_array().unwrap().clone();
            all.extend(events);
            match page["next_cursor"].as_i64() {
                Some(next) => after = next,
                None => return all,
            }
        }
    }
}

/// An open SSE response, parsed as it arrives.
pub struct SseStream {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: SseParser,
    ready: std::collections::VecDeque<SseMessage>,
    pub ended: bool,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> Self {
        SseStream {
            body: Box::pin(response.bytes_stream()),
            parser: SseParser::new(),
            ready: Default::default(),
            ended: false,
        }
    }

    /// The next message (event, retry or comment) within `within`.
    pub async fn next_message(&mut self, within: Duration) -> Option<SseMessage> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Some(message);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => self.ended = true,
                Ok(Some(Ok(chunk))) => {
                    let mut out = Vec::new();
                    self.parser.feed(&chunk, &mut out);
                    self.ready.extend(out);
                }
            }
        }
    }

    /// The next event within `within`, skipping comments and `retry:`.
    pub async fn next_event_within(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_message(left).await? {
                SseMessage::Event(event) => return Some(event),
                _ => continue,
            }
        }
    }

    /// The next event; fails the test if none comes before the deadline.
    pub async fn next_event(&mut self) -> SseEvent {
        self.next_event_within(DEADLINE)
            .await
            .expect("an event should arrive before the deadline")
    }

    /// Exactly `n` events.
    pub async fn take_events(&mut self, n: usize) -> Vec<SseEvent> {
        let mut events = Vec::with_capacity(n);
        while events.len() < n {
            events.push(self.next_event().await);
        }
        events
    }

    /// Asserts that no event arrives within `within`.
    pub async fn assert_quiet(&mut self, within: Duration) {
        if let Some(event) = self.next_event_within(within).await {
            panic!("expected no event, got {event:?}");
        }
    }
}
