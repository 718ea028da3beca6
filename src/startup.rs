//! Building the application: migrations, the read pool, the hub, the writer,
//! retention, and the HTTP server bound to its port (0 in tests) before
//! `build` returns.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use chrono::Utc;
use tokio::sync::watch;
use tracing_actix_web::TracingLogger;

use crate::auth::Auth;
use crate::config::ServeArgs;
use crate::domain::{format_timestamp, presence_event, PresenceChange};
use crate::http::{self, AppState, StreamSettings};
use crate::hub::{Hub, PresenceSink, SessionInfo};
use crate::store::{
    self, events, open_pool, run_migrations, Store, StoreError, Tx, WeakWriter, Writer,
    WriterConfig,
};
use crate::telemetry::RequestSpan;

/// The group commit's limits. On PostgreSQL each request of a batch is a
/// subtransaction (its savepoint); past 64 of them in one transaction the
/// server's per-backend cache of subtransaction ids overflows and every
/// other session's snapshot gets slower, so batches stay within it.
fn writer_config(url: &store::DatabaseUrl) -> WriterConfig {
    let mut config = WriterConfig::default();
    if url.is_postgres() {
        config.max_batch = 64;
    }
    config
}

/// Events deleted per retention transaction.
const PRUNE_BATCH: i64 = 1000;

pub struct Application {
    port: u16,
    server: Server,
    stopper: Stopper,
    writer_thread: std::thread::JoinHandle<()>,
    /// With PostgreSQL: this node, removed from the shared tables on stop.
    farewell: Option<(Node, Writer)>,
}

/// Stops the server the way SIGTERM does: streams end at once (clients resume
/// elsewhere with `Last-Event-ID`), requests in flight finish.
#[derive(Clone)]
pub struct Stopper {
    hub: Arc<Hub>,
    handle: ServerHandle,
}

impl Stopper {
    pub async fn stop(&self) {
        self.hub.shut_down();
        self.handle.stop(true).await;
    }
}

impl Application {
    pub async fn build(args: ServeArgs) -> anyhow::Result<Self> {
        let auth = Arc::new(
            match &args.tokens {
                Some(path) => {
                    Auth::from_file(path).map_err(|e| anyhow::anyhow!("--tokens: {e}"))?
                }
                None => Auth::open(),
            }
            .with_ticket_lifetime(args.ticket_ttl),
        );
        let listener = TcpListener::bind(&args.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.bind))?;
        let address = listener.local_addr()?;
        if auth.is_open() && !address.ip().is_loopback() && !args.allow_open {
            anyhow::bail!(
                "refusing to serve {address} without authentication: anyone who can reach it could read \
                 and write everything. Give --tokens FILE (see docs/security.md), bind a loopback address \
                 (--bind 127.0.0.1:8000), or say --allow-open if this network is trusted."
            );
        }
        let url = args.db.database.clone();
        let applied = run_migrations(&url)?;
        if !applied.is_empty() {
            tracing::info!(migrations = ?applied, database = %url, "migrations applied");
        }
        let store = Store::new(open_pool(&url, args.read_pool)?);
        crate::metrics::install();
        let head_id = store.read(events::head_id).await?;
        let hub = Arc::new(Hub::new(head_id, args.stream_queue));
        let publisher = hub.clone();
        // With a shared database, commits this node cannot publish directly
        // (another node's events came between) are read from the log.
        let follower_wake = Arc::new(tokio::sync::Notify::new());
        let wake = follower_wake.clone();
        let (writer, writer_thread) = Writer::start(
            &url,
            writer_config(&url),
            Arc::new(move |before, committed| match before {
                None => publisher.publish(committed),
                Some(before) => publisher
                    .publish_after(before, committed)
                    .unwrap_or_else(|| {
                        wake.notify_one();
                        vec![0; committed.len()]
                    }),
            }),
        )?;
        if let store::DatabaseUrl::Postgres { url } = &url {
            crate::follow::spawn(
                url.clone(),
                store.clone(),
                hub.clone(),
                follower_wake,
                hub.shutdown_signal(),
            );
        }

        let node = match &url {
            store::DatabaseUrl::Postgres { .. } => {
                let node = Node::new();
                node.register(&writer, &hub).await?;
                spawn_heartbeat(node.clone(), writer.clone(), hub.clone(), args.node_timeout);
                let recorder = node.clone();
                hub.set_presence_sink(presence_sink(writer.downgrade(), move |change, session| {
                    recorder.record_presence(change, session)
                }));
                Some(node)
            }
            store::DatabaseUrl::Sqlite { .. } => {
                hub.set_presence_sink(presence_sink(writer.downgrade(), record_presence_event));
                None
            }
        };
        spawn_retention(writer.clone(), args.retention, hub.shutdown_signal());
        spawn_lock_sweeper(writer.clone(), hub.shutdown_signal());
        if !url.is_postgres() {
            spawn_checkpointer(store.clone(), hub.shutdown_signal());
        }
        if !auth.is_open() {
            spawn_token_reloader(auth.clone(), hub.shutdown_signal());
        }

        let port = address.port();
        // With PostgreSQL, a handle to remove this node from the shared
        // tables once the server has stopped.
        let farewell = node.clone().map(|node| (node, writer.clone()));
        let state = web::Data::new(AppState {
            store,
            writer,
            hub: hub.clone(),
            streams: StreamSettings {
                replay_count: args.replay_count,
                replay_window: args.replay_window,
                keepalive: args.keepalive,
                retry: args.retry,
            },
            max_body: args.max_body,
            lock_ttl: args.lock_ttl,
            started: Instant::now(),
            database: url.clone(),
            node: node.as_ref().map(|n| crate::http::NodeInfo {
                node_id: n.id.clone(),
                timeout: args.node_timeout,
            }),
            auth: auth.clone(),
            limiter: http::WriteLimiter::new(args.rate_limit),
            max_streams: args.max_streams,
        });
        let cors_origins = args.cors_origins.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(http::authenticate))
                .wrap(actix_web::middleware::Condition::new(
                    !cors_origins.is_empty(),
                    cors(&cors_origins),
                ))
                .wrap(actix_web::middleware::from_fn(measure_request))
                .wrap(TracingLogger::<RequestSpan>::new())
                .app_data(state.clone())
                .configure(http::configure)
        })
        .listen(listener)?
        .backlog(4096)
        .disable_signals()
        .shutdown_timeout(2);
        if let Some(workers) = args.workers {
            server = server.workers(workers);
        }
        let server = server.run();
        let stopper = Stopper {
            hub,
            handle: server.handle(),
        };
        tracing::info!(address = %args.bind, port, database = %url, head_id = head_id.get(), "switchboard listening");
        Ok(Application {
            port,
            server,
            stopper,
            writer_thread,
            farewell,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Serves until SIGTERM or SIGINT, then shuts down gracefully.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let stopper = self.stopper.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: ending streams, finishing requests");
            stopper.stop().await;
        });
        self.run().await
    }

    /// Serves until stopped through a `Stopper` (tests), then waits for the
    /// writer to finish what was queued, so the database is released.
    pub async fn run(self) -> std::io::Result<()> {
        let result = self.server.await;
        self.stopper.hub.shut_down();
        if let Some((node, writer)) = self.farewell {
            node.leave(&writer).await;
        }
        let thread = self.writer_thread;
        let joined = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::task::spawn_blocking(move || thread.join()),
        )
        .await;
        if joined.is_err() {
            tracing::warn!("the writer did not stop within 5 s");
        }
        result
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Prunes expired events at start and then every minute (or sooner for short
/// retentions), in small transactions through the writer.
fn spawn_retention(writer: Writer, retention: Duration, mut shutdown: watch::Receiver<bool>) {
    let period = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Ok(age) = chrono::Duration::from_std(retention) else {
                return;
            };
            let cutoff = crate::domain::Timestamp::now().minus(age);
            match store::prune_with(&writer, cutoff, PRUNE_BATCH).await {
                Ok(0) => {}
                Ok(pruned) => tracing::info!(pruned, "retention pruned events"),
                Err(err) => tracing::warn!(error = %err, "retention failed; will retry"),
            }
        }
    });
}

/// How often expired file locks are looked for: a lease is released at most
/// this long after it runs out.
const LOCK_SWEEP_PERIOD: Duration = Duration::from_millis(250);

/// How often the WAL is checkpointed beside the writer.
const CHECKPOINT_PERIOD: Duration = Duration::from_secs(1);

/// Checkpoints the WAL from a pooled connection, so commits never stall on
/// one (see `store::checkpoint`).
fn spawn_checkpointer(store: Store, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(CHECKPOINT_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let pool = store.pool().clone();
            let done = crate::telemetry::spawn_blocking_in_span(move || {
                let mut conn = pool.get()?;
                store::checkpoint(&mut conn)
            })
            .await;
            if let Ok(Err(err)) = done {
                tracing::warn!(error = %err, "checkpoint failed; will retry");
            }
        }
    });
}

/// Releases file locks whose lease ran out, announcing `lock_released`.
fn spawn_lock_sweeper(writer: Writer, mut shutdown: watch::Receiver<bool>) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(LOCK_SWEEP_PERIOD);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(err) = crate::app::files::sweep_expired_locks(&writer).await {
                tracing::warn!(error = %err, "lock sweep failed; will retry");
            }
        }
    });
}

/// Presence changes become writer jobs made by `record` (events on one
/// server, shared rows with several). The hub reports them under its lock
/// and the writer's queue keeps their order; queueing never blocks. Presence
/// is best effort: if the writer's queue is full the change is logged and
/// not recorded.
fn presence_sink<J>(
    writer: WeakWriter,
    record: impl Fn(PresenceChange, &SessionInfo) -> J + Send + Sync + 'static,
) -> PresenceSink
where
    J: FnOnce(&mut Tx<'_>) -> Result<(), StoreError> + Send + 'static,
{
    Box::new(move |change: PresenceChange, session: &SessionInfo| {
        let Some(writer) = writer.upgrade() else {
            return; // shutting down
        };
        if !writer.write_detached(record(change, session)) {
            tracing::warn!(session_id = %session.session_id, ?change, "presence not recorded: the writer is busy");
        }
    })
}

/// Presence on one server: a `session_joined` / `session_left` event.
fn record_presence_event(
    change: PresenceChange,
    session: &SessionInfo,
) -> impl FnOnce(&mut Tx<'_>) -> Result<(), StoreError> + Send + 'static {
    let connections = match change {
        PresenceChange::Joined => session.connections,
        PresenceChange::Left => 0,
    };
    let event = presence_event(change, &session.session_id, &session.agent_id, connections);
    move |tx| {
        tx.append(&event?)?;
        Ok(())
    }
}

/// Records each request's latency by route pattern (not by raw path, so ids
/// do not explode the label set).
async fn measure_request(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    crate::metrics::record_request(
        &route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    Ok(response)
}

/// CORS for the configured browser origins; none (same-origin only) by default.
fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allowed_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allowed_headers([
            actix_web::http::header::AUTHORIZATION,
            actix_web::http::header::CONTENT_TYPE,
            actix_web::http::header::IF_MATCH,
        ])
        .allowed_header("X-Agent-ID")
        .allowed_header("X-Session-ID")
        .allowed_header("Idempotency-Key")
        .allowed_header("Last-Event-ID")
        .expose_headers(["ETag", "X-Event-Cursor", "Retry-After"])
        .supports_credentials()
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}

/// Reloads the tokens file on SIGHUP; a broken file keeps the old tokens.
fn spawn_token_reloader(auth: Arc<Auth>, mut shutdown: watch::Receiver<bool>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        loop {
            tokio::select! {
                _ = hangups.recv() => match auth.reload() {
                    Ok(count) => tracing::info!(tokens = count, "tokens reloaded"),
                    Err(err) => tracing::error!(error = %err, "tokens not reloaded; the old ones stay"),
                },
                _ = shutdown.changed() => return,
            }
        }
    });
}

/// This process as one of several nodes on a shared PostgreSQL database: its
/// id, its heartbeat, and presence kept in the shared tables.
#[derive(Clone)]
struct Node {
    id: String,
    started_at: String,
}

impl Node {
    fn new() -> Self {
        Node {
            id: format!("{:016x}", rand::random::<u64>()),
            started_at: format_timestamp(Utc::now()),
        }
    }

    fn rows(&self, sessions: &[SessionInfo]) -> Vec<store::presence::PresenceRow> {
        sessions.iter().map(|s| self.row(s)).collect()
    }

    fn row(&self, session: &SessionInfo) -> store::presence::PresenceRow {
        store::presence::PresenceRow {
            node_id: self.id.clone(),
            session_id: session.session_id.clone(),
            agent_id: session.agent_id.clone(),
            connections: session.connections as i64,
            channels: serde_json::to_string(&session.channels).unwrap_or_else(|_| "[]".into()),
            connected_at: session.connected_at.clone(),
        }
    }

    async fn register(&self, writer: &Writer, hub: &Hub) -> anyhow::Result<()> {
        self.beat(writer, hub, None).await?;
        tracing::info!(node_id = %self.id, "joined the nodes sharing this database");
        Ok(())
    }

    /// Refreshes this node's heartbeat and, with `timeout`, removes nodes
    /// whose heartbeat is older than that.
    async fn beat(
        &self,
        writer: &Writer,
        hub: &Hub,
        timeout: Option<Duration>,
    ) -> Result<(), store::StoreError> {
        let node = self.clone();
        let rows = self.rows(&hub.sessions());
        writer
            .write(move |tx| {
                store::presence::heartbeat(tx, &node.id, &node.started_at, &rows)?;
                if let Some(timeout) = timeout.and_then(|t| chrono::Duration::from_std(t).ok()) {
                    let cutoff = tx.now().minus(timeout).to_string();
                    let gone = store::presence::remove_nodes(tx, &cutoff, None)?;
                    if gone > 0 {
                        tracing::warn!(
                            nodes = gone,
                            "removed nodes that stopped heart-beating; their sessions left"
                        );
                    }
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Removes this node and its sessions (on a graceful stop).
    async fn leave(&self, writer: &Writer) {
        let id = self.id.clone();
        let done = writer
            .write(move |tx| {
                store::presence::remove_nodes(tx, "", Some(&id))?;
                Ok(())
            })
            .await;
        if let Err(err) = done {
            tracing::warn!(error = %err, "could not remove this node; the others will after its timeout");
        }
    }

    /// Presence through the shared tables: a session joins with its first
    /// stream on any node and leaves with its last on all of them.
    fn record_presence(
        &self,
        change: PresenceChange,
        session: &SessionInfo,
    ) -> impl FnOnce(&mut Tx<'_>) -> Result<(), StoreError> + Send + 'static {
        let row = self.row(session);
        move |tx| {
            match change {
                PresenceChange::Joined => store::presence::joined(tx, row)?,
                PresenceChange::Left => {
                    store::presence::left(tx, &row.node_id, &row.session_id, &row.agent_id)?
                }
            }
            Ok(())
        }
    }
}

/// Refreshes the heartbeat five times per node timeout and removes nodes
/// that stopped.
fn spawn_heartbeat(node: Node, writer: Writer, hub: Arc<Hub>, timeout: Duration) {
    let mut shutdown = hub.shutdown_signal();
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(timeout / 5);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            if let Err(err) = node.beat(&writer, &hub, Some(timeout)).await {
                tracing::warn!(error = %err, "heartbeat failed; will retry");
            }
        }
    });
}
