//! Building the application, as a list of named steps: the tokens, the
//! listener (bound before `build` returns, port 0 in tests), the database and
//! its migrations, the hub, the writer and the follower, cluster membership,
//! the background tasks, and the HTTP server.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::{from_fn, Condition};
use actix_web::{web, App};
use tokio::sync::watch;
use tracing_actix_web::TracingLogger;

use crate::auth::{Auth, AuthSettings, CallbackSettings, JwtSettings};
use crate::config::ServeArgs;
use crate::domain::{Event, EventId};
use crate::http::middleware::RequestSpan;
use crate::http::{self, middleware, AppState, StreamSettings};
use crate::hub::Hub;
use crate::node::cluster::{self, Node};
use crate::node::periodic::spawn_periodic;
use crate::store::{
    self, events, open_pool, run_migrations, CommitListener, DatabaseUrl, Store, Writer,
    WriterConfig,
};

/// Events deleted per retention transaction.
const PRUNE_BATCH: i64 = 1000;

/// How often expired file locks are looked for: a lease is released at most
/// this long after it runs out.
const LOCK_SWEEP_PERIOD: Duration = Duration::from_millis(250);

/// How often the WAL is checkpointed beside the writer.
const CHECKPOINT_PERIOD: Duration = Duration::from_secs(1);

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
        let auth = load_auth(&args).await?;
        let mercure = http::Mercure::from_args(&args.mercure)?;
        let listener = bind(&args, &auth)?;
        let url = args.db.url();
        let store = open_store(&url, args.read_pool)?;
        crate::metrics::install();
        let head_id = store.read(events::head_id).await?;
        let hub = Arc::new(Hub::new(head_id, args.stream_queue));
        let (writer, writer_thread) = start_writer(&url, &store, &hub)?;
        let node = join_cluster(&url, &writer, &hub, args.node_timeout).await?;
        spawn_background_tasks(&args, &store, &writer, &hub, &auth);
        let subscriptions = crate::app::ds_wakes::Wakes::start(
            writer.clone(),
            store.clone(),
            public_url(&args, &listener)?,
            args.webhook_policy(),
        )
        .await?;
        subscriptions.spawn_driver(hub.clone());
        let deliveries = crate::app::deliveries::Deliveries::new(
            node.as_ref()
                .map_or_else(|| "local".to_owned(), |n| n.id().to_owned()),
            writer.clone(),
            store.clone(),
            hub.clone(),
            subscriptions.signer.clone(),
            subscriptions.client.clone(),
        );
        deliveries.spawn();
        let auth_sources = match auth.sources() {
            sources if sources.is_empty() => "open".to_owned(),
            sources => sources.join(","),
        };
        let port = listener.local_addr()?.port();
        let state = app_state(
            &args,
            store,
            writer.clone(),
            hub.clone(),
            node.as_ref(),
            auth,
            Protocols {
                mercure,
                subscriptions,
                deliveries,
            },
        );
        let server = start_http_server(listener, state, &args)?;
        tracing::info!(
            address = %args.bind,
            port,
            database = %url,
            sqlite_synchronous = url.sqlite_synchronous().map(tracing::field::display),
            head_id = head_id.get(),
            auth = %auth_sources,
            "switchboard listening"
        );
        Ok(Application {
            port,
            stopper: Stopper {
                hub,
                handle: server.handle(),
            },
            server,
            writer_thread,
            farewell: node.map(|node| (node, writer)),
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

/// The credential sources (tokens file, JWTs, authorize callback), or open
/// mode without any; a JWKS is fetched once before the first request.
async fn load_auth(args: &ServeArgs) -> anyhow::Result<Arc<Auth>> {
    let id = &args.identity;
    let settings = AuthSettings {
        tokens: args.tokens.clone(),
        jwt: JwtSettings {
            secret: id.jwt_secret.clone(),
            keys: id.jwt_keys.clone(),
            jwks_url: id.jwt_jwks_url.clone(),
            issuer: id.jwt_issuer.clone(),
            audiences: id.jwt_audiences.clone(),
            leeway: id.jwt_leeway,
            agent_claim: id.jwt_agent_claim.clone(),
            scopes_claim: id.jwt_scopes_claim.clone(),
            default_read: id.jwt_read.clone(),
            default_write: id.jwt_write.clone(),
        },
        callback: id.authorize_url.clone().map(|url| CallbackSettings {
            url,
            headers: id.authorize_headers.clone(),
            timeout: id.authorize_timeout,
            lifetime: id.authorize_ttl,
            capacity: id.authorize_cache.max(1),
        }),
        ticket_lifetime: Some(args.ticket_ttl),
    };
    let auth = Auth::new(settings).map_err(|e| anyhow::anyhow!(e))?;
    auth.start().await;
    Ok(Arc::new(auth))
}

/// Binds the listening socket, refusing open mode on a reachable address
/// unless told the network is trusted.
fn bind(args: &ServeArgs, auth: &Auth) -> anyhow::Result<TcpListener> {
    let listener = TcpListener::bind(&args.bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.bind))?;
    let address = listener.local_addr()?;
    if auth.is_open() && !address.ip().is_loopback() && !args.allow_open {
        anyhow::bail!(
            "refusing to serve {address} without authentication: anyone who can reach it could read \
             and write everything. Give --tokens FILE, --jwt-* or --authorize-url (see docs/security.md), bind a loopback address \
             (--bind 127.0.0.1:8000), or say --allow-open if this network is trusted."
        );
    }
    Ok(listener)
}

/// Applies the migrations and opens the read pool.
/// Blocking threads per HTTP worker beyond the read pool's connections
/// (for the rest of the blocking work: memory return, shutdown joins).
const BLOCKING_SPARE: usize = 4;

fn open_store(url: &DatabaseUrl, read_pool: u32) -> anyhow::Result<Store> {
    let applied = run_migrations(url)?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, database = %url, "migrations applied");
    }
    let store = Store::new(open_pool(url, read_pool)?);
    Ok(if url.is_postgres() {
        store.with_deadline(crate::store::READ_DEADLINE)
    } else {
        store
    })
}

/// The group commit's limits. On PostgreSQL each request of a batch is a
/// subtransaction (its savepoint); past 64 of them in one transaction the
/// server's per-backend cache of subtransaction ids overflows and every
/// other session's snapshot gets slower, so batches stay within it.
fn writer_config(url: &DatabaseUrl) -> WriterConfig {
    let mut config = WriterConfig::default();
    if url.is_postgres() {
        config.max_batch = 64;
        // A write is answered (503 at worst) within this, also when the
        // network to the database is gone.
        config.deadline = Some(std::time::Duration::from_secs(5));
    }
    config
}

/// Starts the writer, publishing its commits to the hub. With a shared
/// database, commits this node cannot publish directly (another node's
/// events came between) are read from the log by the follower.
fn start_writer(
    url: &DatabaseUrl,
    store: &Store,
    hub: &Arc<Hub>,
) -> anyhow::Result<(Writer, std::thread::JoinHandle<()>)> {
    let prompts = Arc::new(crate::node::follow::Prompts::default());
    let started = Writer::start(
        url,
        writer_config(url),
        Arc::new(NodePublisher {
            hub: hub.clone(),
            prompts: prompts.clone(),
        }),
    )?;
    if let DatabaseUrl::Postgres { url } = url {
        crate::node::follow::spawn(
            url.clone(),
            store.clone(),
            hub.clone(),
            prompts,
            hub.shutdown_signal(),
        );
    }
    Ok(started)
}

/// Hands the writer's commits to the hub; on PostgreSQL, tells the follower
/// which commit is the node's own and which it must read from the log.
struct NodePublisher {
    hub: Arc<Hub>,
    prompts: Arc<crate::node::follow::Prompts>,
}

impl CommitListener for NodePublisher {
    fn committed(&self, before: Option<EventId>, events: &[&Event]) -> Vec<usize> {
        let Some(before) = before else {
            return self.hub.publish(events);
        };
        let published = self.hub.publish_after(before, events);
        self.prompts.settled(published.is_none());
        published.unwrap_or_else(|| vec![0; events.len()])
    }

    fn committing(&self, last: EventId) {
        self.prompts.committing(last);
    }

    fn commit_failed(&self) {
        self.prompts.settled(true);
    }
}

/// With PostgreSQL this process becomes a node of the cluster (heartbeat,
/// shared presence rows); alone on SQLite, presence is recorded as events.
async fn join_cluster(
    url: &DatabaseUrl,
    writer: &Writer,
    hub: &Arc<Hub>,
    node_timeout: Duration,
) -> anyhow::Result<Option<Node>> {
    if url.is_postgres() {
        Ok(Some(Node::join(writer, hub, node_timeout).await?))
    } else {
        cluster::record_presence_as_events(writer, hub);
        Ok(None)
    }
}

/// Retention, the lock sweeper, the WAL checkpointer (SQLite), giving
/// memory back after streams closed, and the tokens reloader (with a tokens
/// file); all end when the hub shuts down.
fn spawn_background_tasks(
    args: &ServeArgs,
    store: &Store,
    writer: &Writer,
    hub: &Arc<Hub>,
    auth: &Arc<Auth>,
) {
    spawn_retention(writer.clone(), args.retention, hub.shutdown_signal());
    let (sweeper, reads) = (writer.clone(), store.clone());
    spawn_periodic(
        "lock sweep",
        LOCK_SWEEP_PERIOD,
        hub.shutdown_signal(),
        move || {
            let (writer, reads) = (sweeper.clone(), reads.clone());
            async move {
                crate::app::files::sweep_expired_locks(&reads, &writer)
                    .await
                    .map(|_| ())
            }
        },
    );
    if !args.db.database.is_postgres() {
        spawn_checkpointer(store.clone(), hub.shutdown_signal());
    }
    crate::node::memory::spawn_memory_return(Arc::clone(hub));
    if args.tokens.is_some() {
        spawn_token_reloader(auth.clone(), hub.shutdown_signal());
    }
}

/// Prunes expired events at start and then every minute (or sooner for short
/// retentions), in small transactions through the writer.
fn spawn_retention(writer: Writer, retention: Duration, shutdown: watch::Receiver<bool>) {
    let Ok(age) = chrono::Duration::from_std(retention) else {
        return;
    };
    let period = (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    spawn_periodic("retention", period, shutdown, move || {
        let writer = writer.clone();
        async move {
            let cutoff = crate::domain::Timestamp::now().minus(age);
            let pruned = store::prune_with(&writer, cutoff, PRUNE_BATCH).await?;
            if pruned > 0 {
                tracing::info!(pruned, "retention pruned events");
            }
            Ok::<_, store::StoreError>(())
        }
    });
}

/// Checkpoints the WAL from a pooled connection, so commits never stall on
/// one (see `store::checkpoint`).
fn spawn_checkpointer(store: Store, shutdown: watch::Receiver<bool>) {
    spawn_periodic("checkpoint", CHECKPOINT_PERIOD, shutdown, move || {
        let pool = store.pool().clone();
        async move {
            crate::telemetry::spawn_blocking_in_span(move || {
                let mut conn = pool.get()?;
                store::checkpoint(&mut conn)
            })
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
        }
    });
}

/// Reloads the tokens file on SIGHUP (not on a timer); a broken file keeps
/// the old tokens.
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

/// The state of the protocols served beside the native API.
struct Protocols {
    mercure: Option<Arc<http::Mercure>>,
    subscriptions: Arc<crate::app::ds_wakes::Wakes>,
    deliveries: Arc<crate::app::deliveries::Deliveries>,
}

/// Everything a handler can reach.
fn app_state(
    args: &ServeArgs,
    store: Store,
    writer: Writer,
    hub: Arc<Hub>,
    node: Option<&Node>,
    auth: Arc<Auth>,
    protocols: Protocols,
) -> web::Data<AppState> {
    let Protocols {
        mercure,
        subscriptions,
        deliveries,
    } = protocols;
    web::Data::new(AppState {
        store,
        writer,
        hub,
        streams: StreamSettings {
            replay_count: args.replay_count,
            replay_window: args.replay_window,
            keepalive: args.keepalive,
            retry: args.retry,
        },
        max_body: args.max_body,
        lock_ttl: args.lock_ttl,
        started: Instant::now(),
        database: args.db.url(),
        node: node.map(|n| http::NodeInfo {
            node_id: n.id().to_owned(),
            timeout: args.node_timeout,
        }),
        auth,
        limiter: http::WriteLimiter::new(args.rate_limit),
        max_streams: args.max_streams,
        mercure,
        durable: Arc::new(http::Durable::new(
            args.durable_streams_long_poll,
            args.durable_streams_max_append,
            !args.db.url().is_postgres(),
        )),
        subscriptions,
        deliveries,
        cors_origins: args.cors_origins.clone(),
    })
}

/// Where Durable Streams subscriptions say this server is.
fn public_url(args: &ServeArgs, listener: &TcpListener) -> anyhow::Result<String> {
    if let Some(url) = &args.durable_streams_public_url {
        return Ok(url.clone());
    }
    let mut address = listener.local_addr()?;
    if address.ip().is_unspecified() {
        address.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(format!("http://{address}"))
}

/// The routes behind their middleware (outermost last: the request log, the
/// metrics, CORS, then the authentication gate), served on the listener.
fn start_http_server(
    listener: TcpListener,
    state: web::Data<AppState>,
    args: &ServeArgs,
) -> anyhow::Result<Server> {
    let cors_origins = args.cors_origins.clone();
    let app = move || {
        App::new()
            .wrap(from_fn(http::authenticate))
            .wrap(Condition::new(
                !cors_origins.is_empty(),
                middleware::cors(&cors_origins),
            ))
            .wrap(from_fn(middleware::measure_request))
            .wrap(TracingLogger::<RequestSpan>::new())
            .app_data(state.clone())
            .configure(http::configure)
    };
    let local = listener.local_addr()?;
    let streams = http::stream_targets();
    let builder = Server::build();
    let shutdown = builder.graceful_shutdown_signal();
    let mut server = builder
        .listen("switchboard", listener, move || {
            http::serve_connections(app(), local, shutdown.clone(), streams.clone())
        })?
        .disable_signals()
        .shutdown_timeout(2)
        // Blocking work on a worker is mostly reads waiting for one of the
        // pool's connections: more threads than connections only wait,
        // and each keeps its own allocator pages (10,000 streams opening
        // at once would start hundreds).
        .worker_max_blocking_threads(args.read_pool as usize + BLOCKING_SPARE);
    if let Some(workers) = args.workers {
        server = server.workers(workers);
    }
    Ok(server.run())
}
