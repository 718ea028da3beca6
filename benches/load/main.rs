//! The load benchmark, a cargo bench target outside the server library. For
//! every run of every scenario it starts the release `switchboard` binary as
//! a server in a separate process (fresh database, free loopback port),
//! drives it over real HTTP and SSE from a tokio runtime in this process, and
//! reports per scenario the median of the runs against its target.
//!
//! ```text
//! cargo bench --bench load -- [--scenario fanout-100,idle] [--runs 3] [--json]
//! ```
//!
//! `cargo bench` builds the `switchboard` binary with the bench (same
//! profile) and the bench starts that one, so it always measures the
//! current code; `--server-bin` names another binary.
//!
//! Latency is measured per delivery at every subscriber: the time the frame
//! was read minus the publisher's send time stamped into the payload
//! (`{"sent_us": <unix µs>, "seq": N}`). Loss is counted per subscriber
//! against the set of probes the server answered 2xx for.

mod auth;
mod deltas;
mod durable;
mod figures;
mod http;
mod scenarios;
mod server;
mod stats;
mod versus;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Parser, ValueEnum};

use figures::{delivery_figures, deltas_figures, flood_figures, idle_figures, replay_figures};
use scenarios::Load;
use server::{raise_fd_limit, server_binary, wait_for_quiet, ServerProcess, TempRoot};
use stats::{Figure, RunFigures, ScenarioReport};
use switchboard::config::parse_duration;
use switchboard::store::scratch::ScratchDatabase;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 100 subscribers × 1,000 events/s.
    #[value(name = "fanout-100")]
    Fanout100,
    /// 1,000 subscribers × 100 events/s.
    #[value(name = "fanout-1000")]
    Fanout1000,
    /// 8 publishers as fast as they are answered, 10 subscribers.
    Flood,
    /// Server memory per idle stream.
    Idle,
    /// Catch-up speed of a stream resuming from `Last-Event-ID: 0`.
    Replay,
    /// Streaming-message deltas/s: one conversation, then 100 at once.
    Deltas,
    /// Server CPU per accepted publish for each credential mode: open, a
    /// token, HS256 and RS256 JWTs (remembered), a fresh RS256 JWT each time.
    Auth,
    /// Scale-out: 1 node on PostgreSQL, 300 subscribers × 500 events/s.
    #[value(name = "nodes-1")]
    Nodes1,
    /// The same load spread over 2 nodes sharing one PostgreSQL database.
    #[value(name = "nodes-2")]
    Nodes2,
    /// The same load spread over 3 nodes sharing one PostgreSQL database.
    #[value(name = "nodes-3")]
    Nodes3,
    /// Writes as fast as they are answered, 1 node on PostgreSQL.
    #[value(name = "nodes-flood-1")]
    NodesFlood1,
    /// The nodes-flood load on one node on the embedded SQLite: the figure
    /// nodes-flood-1 (PostgreSQL) is compared to, in the same invocation.
    #[value(name = "nodes-flood-sqlite")]
    NodesFloodSqlite,
    /// The same publishers spread over 3 nodes on one database.
    #[value(name = "nodes-flood-3")]
    NodesFlood3,
    /// Durable Streams appends/s, 16 producers (and each `--ds-peer`).
    #[value(name = "ds-append")]
    DsAppend,
    /// Durable Streams SSE fan-out, 100 readers × 1,000 appends/s: delivery
    /// p99 and server CPU per delivery (and each `--ds-peer`).
    #[value(name = "ds-fanout")]
    DsFanout,
    /// Durable Streams, 8 appenders on one stream as fast as answered, 10
    /// SSE readers: appends/s, deliveries lost, server CPU per delivery.
    #[value(name = "ds-flood")]
    DsFlood,
    /// Durable Streams catch-up read of 100,000 JSON messages, messages/s
    /// (and each `--ds-peer`).
    #[value(name = "ds-catchup")]
    DsCatchup,
    /// Durable Streams, `--idle-streams` idle SSE readers: server RSS per
    /// reader (and each `--ds-peer`).
    #[value(name = "ds-idle")]
    DsIdle,
    /// switchboard and nchan (`--nchan`), 8 publishers flooding, 10 subscribers.
    #[value(name = "vs-flood")]
    VsFlood,
    /// switchboard and nchan (`--nchan`), 100 subscribers × 1,000 events/s.
    #[value(name = "vs-fanout")]
    VsFanout,
    /// switchboard and nchan (`--nchan`), 1,000 subscribers × 100 events/s.
    #[value(name = "vs-fanout-1000")]
    VsFanout1000,
    /// switchboard and nchan (`--nchan`), 1,000 subscribers × 1,000 events/s.
    #[value(name = "vs-fanout-1000-fast")]
    VsFanout1000Fast,
    /// switchboard and nchan (`--nchan`), server memory per idle stream.
    #[value(name = "vs-idle")]
    VsIdle,
    /// switchboard and nchan (`--nchan`), catch-up speed of a resuming stream.
    #[value(name = "vs-replay")]
    VsReplay,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "cargo bench --bench load --",
    about = "The load benchmark: starts the switchboard server (built with the bench) for every run and measures it."
)]
pub struct BenchArgs {
    /// Scenarios to run (comma-separated or repeated); all by default.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenario: Vec<Scenario>,
    /// Runs per scenario; the report gives each figure's median.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub runs: u32,
    /// How long the fan-out and flood scenarios publish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Streams the idle scenario opens (vs-idle: to each target).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=50_000))]
    pub idle_streams: u64,
    /// A PostgreSQL server for the `nodes-*` scenarios (each run creates and
    /// drops a database of its own there), e.g. postgres://postgres@127.0.0.1:5432/test.
    /// Without it those scenarios are skipped.
    #[arg(long, env = "SWITCHBOARD_BENCH_POSTGRES")]
    pub postgres: Option<String>,
    /// A Durable Streams server to run the ds-* scenarios against too, in the
    /// same run: `name=host:port` (repeat for several), e.g.
    /// `ds-rust=127.0.0.1:8084` (see docs/benchmarks.md).
    #[arg(long, value_parser = durable::parse_peer)]
    pub ds_peer: Vec<(String, std::net::SocketAddr)>,
    /// nchan for the vs-* scenarios, e.g. 127.0.0.1:8081 (see docs/benchmarks.md).
    #[arg(long)]
    pub nchan: Option<std::net::SocketAddr>,
    /// Print one JSON line per scenario instead of the tables.
    #[arg(long)]
    pub json: bool,
    /// Publishers of the flood scenario (the target is defined for 8).
    #[arg(long, default_value_t = 8, hide = true, value_parser = clap::value_parser!(u16).range(1..=512))]
    pub flood_publishers: u16,
    /// `--sqlite-synchronous` of the servers on SQLite: `normal` (the
    /// default) or `full` (the WAL flushed at every commit, as PostgreSQL
    /// does: compare `nodes-flood-1` with `nodes-flood-sqlite` at equal
    /// durability).
    #[arg(long, default_value = "normal", value_parser = ["normal", "full"])]
    pub sqlite_synchronous: String,
    /// `RUST_LOG` of the servers (for diagnosis; logging costs time).
    #[arg(long, default_value = "warn", hide = true)]
    pub server_log: String,
    /// Keep the temporary directory (databases, server logs) and print it.
    #[arg(long, hide = true)]
    pub keep_dir: bool,
    /// The server binary to measure; by default the `switchboard` that
    /// `cargo bench` built with the bench (`target/release/switchboard`).
    #[arg(long, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,
    /// Set by `cargo bench`; without it (`cargo test --benches`) nothing runs.
    #[arg(long, hide = true)]
    pub bench: bool,
}

const FLOOD_SUBSCRIBERS: usize = 10;
/// The scale-out scenarios' load, the same whatever the number of nodes.
const NODES_SUBSCRIBERS: usize = 300;
const NODES_RATE: u64 = 300;
const NODES_FLOOD_PUBLISHERS: usize = 24;
/// How long to wait before a run for the machine to calm down.
const QUIET_WAIT: Duration = Duration::from_secs(10);

impl Scenario {
    const ALL: [Scenario; 24] = [
        Scenario::Fanout100,
        Scenario::Fanout1000,
        Scenario::Flood,
        Scenario::Idle,
        Scenario::Replay,
        Scenario::Deltas,
        Scenario::Auth,
        Scenario::Nodes1,
        Scenario::Nodes2,
        Scenario::Nodes3,
        Scenario::NodesFlood1,
        Scenario::NodesFloodSqlite,
        Scenario::NodesFlood3,
        Scenario::DsAppend,
        Scenario::DsFanout,
        Scenario::DsFlood,
        Scenario::DsCatchup,
        Scenario::DsIdle,
        Scenario::VsFlood,
        Scenario::VsFanout,
        Scenario::VsFanout1000,
        Scenario::VsFanout1000Fast,
        Scenario::VsIdle,
        Scenario::VsReplay,
    ];

    /// The side-by-side scenarios with nchan (`versus.rs`).
    fn versus(self) -> Option<versus::Versus> {
        match self {
            Scenario::VsFlood => Some(versus::Versus::Flood),
            Scenario::VsFanout => Some(versus::Versus::Fanout),
            Scenario::VsFanout1000 => Some(versus::Versus::Fanout1000),
            Scenario::VsFanout1000Fast => Some(versus::Versus::Fanout1000Fast),
            Scenario::VsIdle => Some(versus::Versus::Idle),
            Scenario::VsReplay => Some(versus::Versus::Replay),
            _ => None,
        }
    }

    /// The Durable Streams scenarios, run against every target (`durable.rs`).
    fn durable(self) -> Option<durable::DsScenario> {
        match self {
            Scenario::DsAppend => Some(durable::DsScenario::Append),
            Scenario::DsFanout => Some(durable::DsScenario::Fanout),
            Scenario::DsFlood => Some(durable::DsScenario::Flood),
            Scenario::DsCatchup => Some(durable::DsScenario::Catchup),
            Scenario::DsIdle => Some(durable::DsScenario::Idle),
            _ => None,
        }
    }

    /// Nodes on a shared PostgreSQL database, for the scale-out scenarios.
    fn nodes(self) -> Option<usize> {
        match self {
            Scenario::Nodes1 => Some(1),
            Scenario::Nodes2 => Some(2),
            Scenario::Nodes3 => Some(3),
            Scenario::NodesFlood1 => Some(1),
            Scenario::NodesFlood3 => Some(3),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scenario::Fanout100 => "fanout-100",
            Scenario::Fanout1000 => "fanout-1000",
            Scenario::Flood => "flood",
            Scenario::Idle => "idle",
            Scenario::Replay => "replay",
            Scenario::Deltas => "deltas",
            Scenario::Auth => auth::NAME,
            Scenario::Nodes1 => "nodes-1",
            Scenario::Nodes2 => "nodes-2",
            Scenario::Nodes3 => "nodes-3",
            Scenario::NodesFlood1 => "nodes-flood-1",
            Scenario::NodesFloodSqlite => "nodes-flood-sqlite",
            Scenario::NodesFlood3 => "nodes-flood-3",
            // Named once, by the Durable Streams module.
            Scenario::DsAppend
            | Scenario::DsFanout
            | Scenario::DsFlood
            | Scenario::DsCatchup
            | Scenario::DsIdle => self.durable().expect("a ds-* scenario").name(),
            // Named once, by the side-by-side module.
            Scenario::VsFlood
            | Scenario::VsFanout
            | Scenario::VsFanout1000
            | Scenario::VsFanout1000Fast
            | Scenario::VsIdle
            | Scenario::VsReplay => self.versus().expect("a vs-* scenario").name(),
        }
    }

    fn about(self, args: &BenchArgs) -> String {
        let secs = args.duration.as_secs_f64();
        match self {
            Scenario::Fanout100 => format!("100 subscribers × 1,000 events/s for {secs} s"),
            Scenario::Fanout1000 => format!("1,000 subscribers × 100 events/s for {secs} s"),
            Scenario::Flood => format!(
                "{} sequential keep-alive publishers for {secs} s, {FLOOD_SUBSCRIBERS} subscribers",
                args.flood_publishers
            ),
            Scenario::Idle => format!("{} idle streams, server VmRSS", args.idle_streams),
            Scenario::Replay => {
                "10,000 then 100,000 events replayed to Last-Event-ID: 0".to_owned()
            }
            Scenario::Deltas => format!(
                "message deltas for {secs} s from 1 client on 1 conversation, then {secs} s from 100 clients on 100"
            ),
            Scenario::Auth => auth::about(args),
            Scenario::Nodes1 | Scenario::Nodes2 | Scenario::Nodes3 => format!(
                "{} node(s) on one PostgreSQL database: {NODES_SUBSCRIBERS} subscribers × {NODES_RATE} events/s for {secs} s, spread over the nodes",
                self.nodes().unwrap_or(1)
            ),
            Scenario::NodesFlood1 | Scenario::NodesFlood3 => format!(
                "{} node(s) on one PostgreSQL database: {NODES_FLOOD_PUBLISHERS} sequential publishers for {secs} s, spread over the nodes, {FLOOD_SUBSCRIBERS} subscribers",
                self.nodes().unwrap_or(1)
            ),
            Scenario::NodesFloodSqlite => format!(
                "1 node on the embedded SQLite: {NODES_FLOOD_PUBLISHERS} sequential publishers for {secs} s, {FLOOD_SUBSCRIBERS} subscribers"
            ),
            Scenario::DsAppend
            | Scenario::DsFanout
            | Scenario::DsFlood
            | Scenario::DsCatchup
            | Scenario::DsIdle => "Durable Streams, see durable.rs".to_owned(),
            Scenario::VsFlood
            | Scenario::VsFanout
            | Scenario::VsFanout1000
            | Scenario::VsFanout1000Fast
            | Scenario::VsIdle
            | Scenario::VsReplay => "side by side with nchan, see versus.rs".to_owned(),
        }
    }

    fn figures(self) -> Vec<Figure> {
        match self {
            Scenario::Fanout100 => delivery_figures(Some(10.0)),
            Scenario::Fanout1000 => delivery_figures(Some(25.0)),
            Scenario::Flood => flood_figures(),
            Scenario::Idle => idle_figures(),
            Scenario::Replay => replay_figures(),
            Scenario::Deltas => deltas_figures(),
            Scenario::Auth => auth::figures(),
            Scenario::Nodes1
            | Scenario::Nodes2
            | Scenario::Nodes3
            | Scenario::NodesFlood1
            | Scenario::NodesFloodSqlite
            | Scenario::NodesFlood3 => delivery_figures(None),
            Scenario::DsAppend
            | Scenario::DsFanout
            | Scenario::DsFlood
            | Scenario::DsCatchup
            | Scenario::DsIdle
            | Scenario::VsFlood
            | Scenario::VsFanout
            | Scenario::VsFanout1000
            | Scenario::VsFanout1000Fast
            | Scenario::VsIdle
            | Scenario::VsReplay => Vec::new(),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = BenchArgs::parse();
    if !args.bench {
        // `cargo test --benches` runs bench targets without `--bench`: the
        // load benchmark takes minutes, so there it only proves it builds.
        eprintln!("the load benchmark runs with `cargo bench --bench load`; skipping");
        return Ok(());
    }
    run(&args)
}

fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let finished = runtime.block_on(async {
        // On Ctrl-C or SIGTERM the measurement is dropped: that kills the
        // server of the run and removes the temporary directory.
        tokio::select! {
            result = run_all(args) => Some(result),
            signal = interrupted() => {
                eprintln!("bench interrupted by {signal}; its server is stopped");
                None
            }
        }
    });
    match finished {
        Some(result) => result,
        None => std::process::exit(130),
    }
}

async fn interrupted() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            return tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = tokio::signal::ctrl_c() => "SIGINT",
            };
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!("{cores} cores ({model}), shared by the server and the load generator")
}

async fn run_all(args: &BenchArgs) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; measure with `cargo bench --bench load`");
    }
    anyhow::ensure!(
        !args.duration.is_zero() && args.duration <= Duration::from_secs(600),
        "--duration must be more than 0 and at most 10m"
    );
    let scenarios = chosen_scenarios(args)?;
    let wanted_fds = args.idle_streams + 2048;
    let fds = raise_fd_limit(wanted_fds);
    if fds < wanted_fds {
        eprintln!(
            "warning: the open-file limit is {fds}, below the {wanted_fds} the idle scenario needs"
        );
    }
    let server = server_binary(args.server_bin.as_deref())?;
    let root = TempRoot::create(args.keep_dir)?;
    eprintln!(
        "load benchmark of {}: {} run(s) per scenario; machine: {}",
        server.display(),
        args.runs,
        machine()
    );
    let started = Instant::now();
    let mut missed = Vec::new();
    for scenario in scenarios {
        if let Some(ds) = scenario.durable() {
            durable::run(ds, args, &server, &root).await?;
            continue;
        }
        if let Some(kind) = scenario.versus() {
            versus::run(kind, args, &server, &root).await?;
            continue;
        }
        let report = match scenario {
            // One run starts a server per credential mode, with credentials
            // made once for all the runs.
            Scenario::Auth => auth::run(args, &server, &root).await?,
            _ => run_scenario(scenario, args, &server, &root).await,
        };
        if args.json {
            println!("{}", report.json_line());
        } else {
            print!("{}", report.table());
        }
        if !report.all_met() {
            missed.push(scenario.name());
        }
    }
    let summary = if missed.is_empty() {
        "every target met".to_owned()
    } else {
        format!("targets not met in: {}", missed.join(", "))
    };
    eprintln!(
        "bench finished in {:.0} s: {summary}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The scenarios `--scenario` names, in their canonical order; all of them
/// by default, less the `nodes-*` ones when there is no `--postgres`.
fn chosen_scenarios(args: &BenchArgs) -> anyhow::Result<Vec<Scenario>> {
    Ok(if args.scenario.is_empty() {
        if args.postgres.is_none() {
            eprintln!("note: the nodes-* scenarios need --postgres URL; skipping them");
        }
        Scenario::ALL
            .into_iter()
            .filter(|s| s.nodes().is_none() || args.postgres.is_some())
            .collect()
    } else {
        anyhow::ensure!(
            args.postgres.is_some() || args.scenario.iter().all(|s| s.nodes().is_none()),
            "the nodes-* scenarios need --postgres URL (a PostgreSQL server where the bench may create databases)"
        );
        Scenario::ALL
            .into_iter()
            .filter(|s| args.scenario.contains(s))
            .collect()
    })
}

/// Every run of one scenario, each after the machine has calmed down; a
/// failed run is reported and kept as such.
async fn run_scenario(
    scenario: Scenario,
    args: &BenchArgs,
    server: &Path,
    root: &TempRoot,
) -> ScenarioReport {
    let mut runs = Vec::new();
    for run in 1..=args.runs {
        let busy = wait_for_quiet(QUIET_WAIT).await;
        if busy > 0.2 {
            eprintln!("  the machine is busy ({busy:.2} cores used by others); measuring anyway");
        }
        let run_started = Instant::now();
        eprintln!("{}: run {run}/{} …", scenario.name(), args.runs);
        let result = run_once(scenario, args, server, root, run).await;
        match &result {
            Ok(_) => eprintln!(
                "{}: run {run} done in {:.1} s",
                scenario.name(),
                run_started.elapsed().as_secs_f64()
            ),
            Err(err) => eprintln!("{}: run {run} failed: {err:#}", scenario.name()),
        }
        runs.push(result.map_err(|e| format!("{e:#}")));
    }
    ScenarioReport {
        name: scenario.name(),
        about: scenario.about(args),
        figures: scenario.figures(),
        runs,
    }
}

/// One run: a fresh server and database, the measurement, the server killed.
async fn run_once(
    scenario: Scenario,
    args: &BenchArgs,
    server: &Path,
    root: &TempRoot,
    run: u32,
) -> anyhow::Result<RunFigures> {
    let label = format!("{}-{run}", scenario.name());
    let database = match (scenario.nodes(), &args.postgres) {
        (None, _) => None,
        (Some(_), Some(admin_url)) => {
            let name = format!("switchboard_bench_{}_{}", std::process::id(), label)
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "_");
            Some(ScratchDatabase::create(admin_url, &name).await?)
        }
        (Some(_), None) => bail!("{} needs --postgres URL", scenario.name()),
    };
    let result = match start_servers(scenario, args, server, root, &label, database.as_ref()).await
    {
        Ok(mut servers) => {
            let result = measure(scenario, args, &mut servers).await;
            for server in servers {
                let logged = server.log_lines();
                if logged > 0 {
                    eprintln!("  the server logged {logged} warning/error line(s)");
                }
                server.stop();
            }
            result
        }
        Err(err) => Err(err),
    };
    if let Some(database) = database {
        if let Err(err) = database.drop_database().await {
            eprintln!("  could not drop the run's database: {err}");
        }
    }
    result
}

/// A fresh server on its own SQLite file, or the scenario's nodes on the
/// run's PostgreSQL database.
async fn start_servers(
    scenario: Scenario,
    args: &BenchArgs,
    server_bin: &Path,
    root: &TempRoot,
    label: &str,
    database: Option<&ScratchDatabase>,
) -> anyhow::Result<Vec<ServerProcess>> {
    let url = database.map(|d| d.url.as_str());
    let mut servers = Vec::new();
    for node in 0..scenario.nodes().unwrap_or(1) {
        let label = match url {
            Some(_) => format!("{label}-node{node}"),
            None => label.to_owned(),
        };
        let mut server = ServerProcess::start(server_bin, root.path(), &label, args, url).await?;
        server.keep_dir = args.keep_dir;
        servers.push(server);
    }
    Ok(servers)
}

/// The scenario's measurement; the single-server scenarios use the first.
async fn measure(
    scenario: Scenario,
    args: &BenchArgs,
    servers: &mut [ServerProcess],
) -> anyhow::Result<RunFigures> {
    let duration = args.duration;
    match scenario {
        Scenario::Fanout100 => {
            scenarios::deliveries(servers, 100, Load::Paced { rate: 1000 }, duration).await
        }
        Scenario::Fanout1000 => {
            scenarios::deliveries(servers, 1000, Load::Paced { rate: 100 }, duration).await
        }
        Scenario::Flood => {
            let load = Load::Flood {
                publishers: usize::from(args.flood_publishers),
            };
            scenarios::deliveries(servers, FLOOD_SUBSCRIBERS, load, duration).await
        }
        Scenario::Idle => scenarios::idle(&mut servers[0], args.idle_streams as usize).await,
        Scenario::Replay => scenarios::replay(&mut servers[0]).await,
        Scenario::Deltas => deltas::deltas(&mut servers[0], duration).await,
        Scenario::Nodes1 | Scenario::Nodes2 | Scenario::Nodes3 => {
            let load = Load::Paced { rate: NODES_RATE };
            scenarios::deliveries(servers, NODES_SUBSCRIBERS, load, duration).await
        }
        Scenario::NodesFlood1 | Scenario::NodesFloodSqlite | Scenario::NodesFlood3 => {
            let load = Load::Flood {
                publishers: NODES_FLOOD_PUBLISHERS,
            };
            scenarios::deliveries(servers, FLOOD_SUBSCRIBERS, load, duration).await
        }
        Scenario::Auth
        | Scenario::DsAppend
        | Scenario::DsFanout
        | Scenario::DsFlood
        | Scenario::DsCatchup
        | Scenario::DsIdle
        | Scenario::VsFlood
        | Scenario::VsFanout
        | Scenario::VsFanout1000
        | Scenario::VsFanout1000Fast
        | Scenario::VsIdle
        | Scenario::VsReplay => {
            anyhow::bail!("the auth, ds-* and vs-* scenarios are measured by their own modules")
        }
    }
}
