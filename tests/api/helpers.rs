//! Test harness: a real server on port 0 with a temporary SQLite file, a real
//! HTTP client, and an SSE reader with deadlines (a missing event fails fast).

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};
use switchboard::client::sse::{SseEvent, SseMessage, SseParser};
use switchboard::config::ServeArgs;
use switchboard::startup::{Application, Stopper};
use switchboard::store::scratch::ScratchDatabase;
use switchboard::store::DatabaseUrl;
use tempfile::TempDir;

/// How long a test waits for something that should happen.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// How long a stopped server may take to finish.
pub const STOP_DEADLINE: Duration = Duration::from_secs(15);

/// A server running on a thread and runtime of its own, as `switchboard
/// serve` runs: a server that does not shut down fails the test that stops
/// it instead of hanging the test's runtime.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub db_path: PathBuf,
    /// What `--database` says for this server (a path or a PostgreSQL URL).
    pub database: String,
    pub client: reqwest::Client,
    stopper: Stopper,
    /// The server's runtime, to stop it from `Drop`.
    runtime: tokio::runtime::Handle,
    /// Resolves when `Application::run` has returned.
    finished: Option<tokio::sync::oneshot::Receiver<std::io::Result<()>>>,
    dir: Option<TempDir>,
    /// The PostgreSQL database this server uses (dropped with the last user).
    postgres: Option<std::sync::Arc<PgDatabase>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let stopper = self.stopper.clone();
        self.runtime.spawn(async move { stopper.stop().await });
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server; `configure` may change any setting before it starts.
pub async fn spawn_app_with(configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let postgres = match BACKEND.try_with(|b| *b) {
        Ok(Backend::Postgres) => Some(std::sync::Arc::new(PgDatabase::create().await)),
        Err(_) => None,
    };
    start_in(dir, postgres, configure).await
}

/// Starts another server (another node) on the same PostgreSQL database.
pub async fn spawn_node(database: &std::sync::Arc<PgDatabase>) -> TestApp {
    spawn_node_with(database, |_| {}).await
}

pub async fn spawn_node_with(
    database: &std::sync::Arc<PgDatabase>,
    configure: impl FnOnce(&mut ServeArgs),
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    start_in(dir, Some(database.clone()), configure).await
}

async fn start_in(
    dir: TempDir,
    postgres: Option<std::sync::Arc<PgDatabase>>,
    configure: impl FnOnce(&mut ServeArgs),
) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        switchboard::telemetry::init(switchboard::config::LogFormat::Text);
    }
    let db_path = dir.path().join("switchboard.db");
    let database = match &postgres {
        Some(pg) => pg.url.clone(),
        None => db_path.to_str().expect("utf-8 path").to_owned(),
    };
    let url = DatabaseUrl::parse(&database).expect("db url");
    let mut args = ServeArgs::for_tests(url);
    if postgres.is_some() {
        args.read_pool = TEST_READ_POOL;
    }
    configure(&mut args);
    let (started, on_start) = tokio::sync::oneshot::channel();
    let (finished, on_finish) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("test-server".into())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let app = match Application::build(args).await {
                    Ok(app) => app,
                    Err(err) => {
                        let _ = started.send(Err(format!("{err:#}")));
                        return;
                    }
                };
                let ready = (app.port(), app.stopper(), tokio::runtime::Handle::current());
                let _ = started.send(Ok(ready));
                let _ = finished.send(app.run().await);
            })
        })
        .expect("a thread for the server");
    let (port, stopper, runtime) = on_start
        .await
        .expect("the server thread reports")
        .unwrap_or_else(|err| panic!("server starts: {err}"));
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        db_path,
        database,
        client: reqwest::Client::new(),
        stopper,
        runtime,
        finished: Some(on_finish),
        dir: Some(dir),
        postgres,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A cheap handle that can publish from other tasks.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            client: self.client.clone(),
            address: self.address.clone(),
        }
    }

    /// Publishes a batch (`[{channel, type, data, …}, …]`) and returns the
    /// stored events.
    pub async fn publish_batch(&self, events: Vec<Value>) -> Vec<Value> {
        self.publisher().publish_batch(events).await
    }

    /// The log's head id, as `X-Event-Cursor` reports it.
    pub async fn head_id(&self) -> i64 {
        let response = self.get("/api/events?limit=1").send().await.unwrap();
        assert_eq!(response.status(), 200);
        response.headers()["x-event-cursor"]
            .to_str()
            .unwrap()
            .parse()
            .expect("X-Event-Cursor is an id")
    }

    /// The ids of every event in the log on `channel`, oldest first.
    pub async fn ids_on(&self, channel: &str) -> Vec<i64> {
        self.all_events()
            .await
            .iter()
            .filter(|e| e["channel"] == channel)
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    }

    /// Runs the real `switchboard prune` against this server's database,
    /// while the server runs.
    pub async fn prune_with_cli(&self, retention: &str) {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .arg("prune")
            .arg("--database")
            .arg(&self.database)
            .arg("--retention")
            .arg(retention)
            .output()
            .await
            .expect("switchboard prune runs");
        assert!(
            output.status.success(),
            "switchboard prune failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Opens `GET /api/stream?{query}` and returns the raw response.
    pub async fn stream_response(
        &self,
        query: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self.get(&format!("/api/stream?{query}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("stream request")
    }

    /// Stops the server gracefully and starts a new one on the same database
    /// (a new port), with the same settings plus `configure`.
    pub async fn restart_with(mut self, configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
        self.stop().await;
        let dir = self.dir.take().expect("the temp dir");
        start_in(dir, self.postgres.take(), configure).await
    }

    /// Stops the server gracefully; fails the test if it does not finish
    /// within `STOP_DEADLINE`.
    pub async fn stop(&mut self) {
        self.stopper.stop().await;
        if let Some(finished) = self.finished.take() {
            let result = tokio::time::timeout(STOP_DEADLINE, finished)
                .await
                .unwrap_or_else(|_| {
                    panic!("the server did not finish within {STOP_DEADLINE:?} of being stopped")
                });
            if let Ok(result) = result {
                result.expect("the server ran without an I/O error");
            }
        }
    }

    pub async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Every event in the log, read with `token`.
    pub async fn all_events_as(&self, token: &str) -> Vec<Value> {
        let page: Value = self
            .get("/api/events?limit=1000")
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        page["events"].as_array().unwrap().clone()
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    /// `GET path` answered with JSON (any status), as a value.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).send().await.unwrap().json().await.unwrap()
    }

    /// Publishes one event as `session` (if any) and returns the stored event.
    pub async fn publish(
        &self,
        channel: &str,
        event_type: &str,
        data: Value,
        session: Option<&str>,
    ) -> Value {
        self.publisher()
            .publish(channel, event_type, data, session)
            .await
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
        events_at(&self.client, &self.address, "").await
    }
}

/// Every stored event matching `filter` (a query string such as
/// `channels=x`, or empty), oldest first, read from the server at `base`
/// a page at a time.
pub async fn events_at(client: &reqwest::Client, base: &str, filter: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page: Value = client
            .get(format!(
                "{base}/api/events?after={after}&limit=1000&{filter}"
            ))
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

/// Publishes `{writer, n}` for n = 0, 1, … on `channel` at `base`, as agent
/// `writer-{writer}`, one after another, until the server stops answering
/// 201 (it was killed) or `until` has passed. Returns the acknowledged events
/// as (id, data).
pub async fn write_until_refused(
    base: String,
    channel: &'static str,
    writer: usize,
    until: std::time::Instant,
) -> Vec<(i64, Value)> {
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    for n in 0.. {
        let data = json!({ "writer": writer, "n": n });
        let sent = client
            .post(format!("{base}/api/channels/{channel}/events"))
            .header("X-Agent-ID", format!("writer-{writer}"))
            .json(&json!({ "type": "write", "data": data }))
            .send()
            .await;
        match sent {
            Ok(response) if response.status() == 201 => {
                let Ok(event) = response.json::<Value>().await else {
                    break;
                };
                acked.push((event["id"].as_i64().unwrap(), data));
            }
            _ => break, // the server is gone: what was not acknowledged may be lost
        }
        if std::time::Instant::now() > until {
            break;
        }
    }
    acked
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

/// Publishes through the HTTP API; `Clone` and `Send`, for concurrent writers.
#[derive(Clone)]
pub struct Publisher {
    client: reqwest::Client,
    address: String,
}

impl Publisher {
    /// Publishes one event as `session` (if any) and returns the stored event.
    pub async fn publish(
        &self,
        channel: &str,
        event_type: &str,
        data: Value,
        session: Option<&str>,
    ) -> Value {
        let mut request = self
            .client
            .post(format!("{}/api/channels/{channel}/events", self.address))
            .header("X-Agent-ID", "tester")
            .json(&json!({ "type": event_type, "data": data }));
        if let Some(session) = session {
            request = request.header("X-Session-ID", session);
        }
        let response = request.send().await.expect("publish request");
        assert_eq!(response.status(), 201, "publish should be created");
        response.json().await.expect("publish body")
    }

    /// Publishes a batch and returns the stored events.
    pub async fn publish_batch(&self, events: Vec<Value>) -> Vec<Value> {
        let count = events.len();
        let response = self
            .client
            .post(format!("{}/api/events/batch", self.address))
            .header("X-Agent-ID", "tester")
            .json(&json!({ "events": events }))
            .send()
            .await
            .expect("batch request");
        assert_eq!(response.status(), 201, "batch should be created");
        let body: Value = response.json().await.expect("batch body");
        let stored = body["events"].as_array().expect("events").clone();
        assert_eq!(stored.len(), count);
        stored
    }
}

/// Asserts that `response` is an error with `status`, `code` and the
/// contract's shape, and returns its body.
pub async fn expect_error(response: reqwest::Response, status: u16, code: &str) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.expect("error body");
    assert_eq!(actual, status, "status of an error answer; body: {text}");
    let body: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {text:?}"));
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error object in {body}"));
    assert_eq!(error.len(), 3, "error has code, message, details: {body}");
    assert_eq!(body["error"]["code"], code, "error code in {body}");
    let message = body["error"]["message"].as_str().expect("message");
    assert!(!message.is_empty(), "an error has a message: {body}");
    assert!(body["error"]["details"].is_object(), "details: {body}");
    assert_leaks_nothing(&text);
    body
}

/// No answer ever shows SQL, the ORM, a panic or a backtrace.
pub fn assert_leaks_nothing(text: &str) {
    for word in [
        "SQL",
        "sql",
        "diesel",
        "panicked",
        "backtrace",
        "src/",
        ".rs:",
    ] {
        assert!(!text.contains(word), "the answer leaks {word:?}: {text}");
    }
}

/// The numeric ids of `events`.
pub fn ids(events: &[SseEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e.id_number().expect("an event has a numeric id"))
        .collect()
}

/// The `id` fields of stored events.
pub fn stored_ids(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

/// Which database a test's servers use when not the default SQLite file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
}

tokio::task_local! {
    /// Set by `on_postgres`: `spawn_app*` then starts servers on a fresh
    /// PostgreSQL database instead of a temporary SQLite file.
    pub static BACKEND: Backend;
}

/// The variable naming the PostgreSQL server the PostgreSQL tests use, e.g.
/// `postgres://postgres@127.0.0.1:5432/test` (each test creates and drops a
/// database of its own there).
pub const POSTGRES_ENV: &str = "SWITCHBOARD_TEST_POSTGRES";

/// The PostgreSQL admin URL. A PostgreSQL test reaches this only when it was
/// asked for (`--include-ignored` or `--ignored`), so a missing server is a
/// failure with the way to fix it, never a silent pass.
pub fn postgres_admin_url() -> String {
    match std::env::var(POSTGRES_ENV) {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "this PostgreSQL test was asked to run but {POSTGRES_ENV} is not set: \
             set {POSTGRES_ENV}=postgres://USER@HOST:PORT/DB (a server where the user \
             may create databases), or leave out --include-ignored / --ignored"
        ),
    }
}

/// Runs a test body with every server on PostgreSQL; fails when no
/// PostgreSQL is configured (see `postgres_admin_url`).
pub async fn on_postgres<F: std::future::Future<Output = ()>>(test: F) {
    postgres_admin_url();
    BACKEND.scope(Backend::Postgres, test).await
}

/// A database created for one test on the configured PostgreSQL server and
/// dropped (with any connection left) when the test is done with it.
pub struct PgDatabase {
    scratch: ScratchDatabase,
    /// Held while the database exists (see `PG_DATABASES`).
    _slot: tokio::sync::SemaphorePermit<'static>,
}

/// At most this many test databases exist at once, so that a machine running
/// many tests in parallel stays under PostgreSQL's connection limit (100 by
/// default; a test server holds `TEST_READ_POOL` + 2 connections per node).
static PG_DATABASES: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// The read pool of test servers on PostgreSQL.
pub const TEST_READ_POOL: u32 = 3;

static NEXT_DATABASE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl PgDatabase {
    pub async fn create() -> PgDatabase {
        let admin_url = postgres_admin_url();
        let slot = PG_DATABASES
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let name = format!(
            "switchboard_test_{}_{}",
            std::process::id(),
            NEXT_DATABASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let scratch = ScratchDatabase::create(&admin_url, &name)
            .await
            .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={admin_url}: {e}"));
        PgDatabase {
            scratch,
            _slot: slot,
        }
    }
}

impl std::ops::Deref for PgDatabase {
    type Target = ScratchDatabase;

    fn deref(&self) -> &ScratchDatabase {
        &self.scratch
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let scratch = self.scratch.clone();
        // Drop may run inside a runtime: use a thread with one of its own.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(scratch.drop_database())
        })
        .join();
    }
}

/// Turns each listed `async fn` into two tests: `sqlite::NAME` on a temporary
/// SQLite file and `postgres::NAME` on a fresh PostgreSQL database. The
/// PostgreSQL one is `#[ignore]`d, so a plain `cargo test` reports it as
/// ignored with the reason; it runs with `--include-ignored`, and then fails
/// unless `SWITCHBOARD_TEST_POSTGRES` names a server. (`#[ignore = …]` takes
/// a literal only: `tests/api/scale_out.rs` repeats the same reason.)
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name().await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL: set SWITCHBOARD_TEST_POSTGRES=postgres://… and run with --include-ignored"]
                async fn $name() {
                    $crate::helpers::on_postgres(super::$name()).await
                }
            )*
        }
    };
}
