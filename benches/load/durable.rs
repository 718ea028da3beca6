//! Durable Streams scenarios, run in one invocation with the same client
//! against switchboard (started per run, fresh database) and against the
//! peers given with `--ds-peer name=host:port` (already running, e.g. the
//! scripts in ../shared/peers: the crates.io `durable-streams-server` in its
//! file-fast or file-durable mode and the Node reference server,
//! file-backed). Each run uses fresh stream names; the report gives each
//! target's median of every figure, its runs, and the ratio of switchboard
//! to each peer.
//!
//! - `ds-append`: 16 producers on 4 streams, appends/s.
//! - `ds-fanout`: 100 SSE readers × 1,000 appends/s: delivery p99, server
//!   CPU per delivery, deliveries arrived of those expected.
//! - `ds-flood`: 8 appenders on one stream as fast as answered, 10 SSE
//!   readers: appends/s, deliveries lost, server CPU per delivery.
//! - `ds-catchup`: a catch-up read of 100,000 JSON messages (~7.7 MB):
//!   messages/s.
//! - `ds-idle`: `--idle-streams` idle SSE readers: server RSS per reader.
//!
//! A server's CPU time and memory are read from `/proc`: switchboard's
//! process, and for a peer the processes holding the socket that listens on
//! its port, with their children. A peer whose processes cannot be seen
//! (another user's, another namespace) has those figures as n/a.

mod measures;
mod readers;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::http::{HttpConn, Response};
use crate::server::{listening_pids, process_cpu_seconds, rss_kib, ServerProcess, TempRoot};
use crate::stats::median;
use crate::versus::{with_children, Column};
use crate::BenchArgs;
use measures::{
    append, catchup, fanout, flood, idle, APPEND_COLUMNS, CATCHUP_COLUMNS, FANOUT_COLUMNS,
    FLOOD_COLUMNS, IDLE_COLUMNS,
};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The Durable Streams scenarios (`ds-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsScenario {
    Append,
    Fanout,
    Flood,
    Catchup,
    Idle,
}

impl DsScenario {
    /// The scenario's `--scenario` name.
    pub fn name(self) -> &'static str {
        match self {
            DsScenario::Append => "ds-append",
            DsScenario::Fanout => "ds-fanout",
            DsScenario::Flood => "ds-flood",
            DsScenario::Catchup => "ds-catchup",
            DsScenario::Idle => "ds-idle",
        }
    }

    /// What the scenario does, for the title of its table.
    fn about(self, args: &BenchArgs) -> String {
        let secs = args.duration.as_secs_f64();
        match self {
            DsScenario::Append => measures::append_about(secs),
            DsScenario::Fanout => measures::fanout_about(secs),
            DsScenario::Flood => measures::flood_about(secs),
            DsScenario::Catchup => measures::catchup_about(),
            DsScenario::Idle => measures::idle_about(args.idle_streams),
        }
    }
}

/// A peer: `name=host:port`.
pub fn parse_peer(text: &str) -> Result<(String, SocketAddr), String> {
    let (name, addr) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: give a peer as name=host:port"))?;
    let addr = addr
        .parse()
        .map_err(|e| format!("{text:?}: {addr} is not host:port ({e})"))?;
    Ok((name.to_owned(), addr))
}

/// Wall-clock time in microseconds since the Unix epoch.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A server one run measures: where it answers, and its processes.
#[derive(Debug, Clone)]
pub struct DsTarget {
    addr: SocketAddr,
    /// The server's processes; empty when they could not be found.
    pids: Vec<u32>,
}

impl DsTarget {
    /// A peer known by its address: the processes listening on its port and
    /// their children.
    fn peer(name: &str, addr: SocketAddr) -> Self {
        let mut pids: Vec<u32> = listening_pids(addr.port())
            .into_iter()
            .flat_map(with_children)
            .collect();
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            eprintln!(
                "  {name}: no process seen listening on port {}; its CPU and memory are n/a",
                addr.port()
            );
        }
        DsTarget { addr, pids }
    }

    /// CPU time (user + system) the server's processes have used so far, in
    /// seconds; NaN when they are unknown.
    fn cpu_seconds(&self) -> f64 {
        if self.pids.is_empty() {
            return f64::NAN;
        }
        self.pids.iter().copied().map(process_cpu_seconds).sum()
    }

    /// Resident memory of the server's processes, in KiB; NaN when unknown.
    fn rss_kib(&self) -> f64 {
        if self.pids.is_empty() {
            return f64::NAN;
        }
        let kib: anyhow::Result<u64> = self.pids.iter().copied().map(rss_kib).sum();
        kib.map_or(f64::NAN, |k| k as f64)
    }
}

/// Creates the stream `path` with `content_type`.
async fn create(addr: SocketAddr, path: &str, content_type: &str) -> anyhow::Result<()> {
    let mut conn = HttpConn::connect(addr).await?;
    let r = conn.send_typed("PUT", path, content_type, None).await?;
    anyhow::ensure!(r.is_success(), "PUT {path}: {}", r.status);
    Ok(())
}

/// Appends `body` to `path`: a 2xx answer, within `REQUEST_TIMEOUT`.
async fn post(
    conn: &mut HttpConn,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> anyhow::Result<Response> {
    let r = tokio::time::timeout(
        REQUEST_TIMEOUT,
        conn.send_typed("POST", path, content_type, Some(body)),
    )
    .await
    .with_context(|| format!("POST {path} timed out"))??;
    anyhow::ensure!(r.is_success(), "POST {path}: {}", r.status);
    Ok(r)
}

/// Runs `scenario` `args.runs` times against every target; prints the table
/// (or, with `--json`, one line).
pub async fn run(
    scenario: DsScenario,
    args: &BenchArgs,
    server_bin: &Path,
    root: &TempRoot,
) -> anyhow::Result<()> {
    let ds = Comparison {
        scenario,
        args,
        server_bin,
        root,
    };
    let duration = args.duration;
    match scenario {
        DsScenario::Append => {
            ds.compare(&APPEND_COLUMNS, async |t, s| append(t, s, duration).await)
                .await
        }
        DsScenario::Fanout => {
            ds.compare(&FANOUT_COLUMNS, async |t, s| fanout(t, s, duration).await)
                .await
        }
        DsScenario::Flood => {
            ds.compare(&FLOOD_COLUMNS, async |t, s| flood(t, s, duration).await)
                .await
        }
        DsScenario::Catchup => {
            ds.compare(&CATCHUP_COLUMNS, async |t, s| catchup(t, s).await)
                .await
        }
        DsScenario::Idle => {
            let readers = args.idle_streams as usize;
            ds.compare(&IDLE_COLUMNS, async |t, s| idle(t, s, readers).await)
                .await
        }
    }
}

/// One scenario and what its runs need.
struct Comparison<'a> {
    scenario: DsScenario,
    args: &'a BenchArgs,
    server_bin: &'a Path,
    root: &'a TempRoot,
}

/// Each target's name and the results of its runs.
type Results<R> = Vec<(String, Vec<R>)>;

impl Comparison<'_> {
    /// Measures `args.runs` times, each time a fresh switchboard server and
    /// then every peer on fresh streams (targets take turns inside each run,
    /// so drift hits all alike), and reports `columns` of the results.
    async fn compare<R>(
        &self,
        columns: &[Column<R>],
        measure: impl AsyncFn(DsTarget, &str) -> anyhow::Result<R>,
    ) -> anyhow::Result<()> {
        let args = self.args;
        let mut results: Results<R> = vec![("switchboard".into(), Vec::new())];
        for (name, _) in &args.ds_peer {
            results.push((name.clone(), Vec::new()));
        }
        for run in 0..args.runs {
            let label = format!("{}-{run}", self.scenario.name());
            eprintln!("{label}: switchboard …");
            let server =
                ServerProcess::start(self.server_bin, self.root.path(), &label, args, None).await?;
            let target = DsTarget {
                addr: server.addr,
                pids: vec![server.pid()],
            };
            let value = measure(target, &format!("sb-{label}")).await;
            server.stop();
            results[0]
                .1
                .push(value.with_context(|| format!("switchboard, {label}"))?);
            for (i, (name, addr)) in args.ds_peer.iter().enumerate() {
                eprintln!("{label}: {name} …");
                let stream = format!("{name}-{label}-{}", now_us());
                let value = measure(DsTarget::peer(name, *addr), &stream).await;
                results[i + 1]
                    .1
                    .push(value.with_context(|| format!("{name}, {label}"))?);
            }
        }
        if args.json {
            println!("{}", self.json_line(columns, &results));
        } else {
            print!("{}", self.table(columns, &results));
        }
        Ok(())
    }

    /// One JSON line: per figure which way is better, and per target its
    /// median and runs, and the ratio of switchboard to each peer (NaN,
    /// unknown, is `null`).
    fn json_line<R>(&self, columns: &[Column<R>], results: &Results<R>) -> serde_json::Value {
        let mut line = serde_json::Map::new();
        line.insert("scenario".into(), self.scenario.name().into());
        line.insert("about".into(), self.scenario.about(self.args).into());
        line.insert(
            "targets".into(),
            results.iter().map(|(name, _)| name.clone()).collect(),
        );
        for column in columns {
            let medians = medians(column, results);
            let mut figure = serde_json::Map::new();
            figure.insert("better".into(), column.better.word().into());
            let mut median_of = serde_json::Map::new();
            let mut runs_of = serde_json::Map::new();
            for ((name, runs), median) in results.iter().zip(&medians) {
                median_of.insert(name.clone(), serde_json::json!(median));
                let values: Vec<f64> = runs.iter().map(column.value).collect();
                runs_of.insert(name.clone(), serde_json::json!(values));
            }
            let ratios: serde_json::Map<String, serde_json::Value> = results[1..]
                .iter()
                .zip(&medians[1..])
                .map(|((name, _), m)| (name.clone(), serde_json::json!(medians[0] / m)))
                .collect();
            figure.insert("median".into(), median_of.into());
            figure.insert("runs".into(), runs_of.into());
            figure.insert("switchboard / peer".into(), ratios.into());
            line.insert(column.name.into(), figure.into());
        }
        serde_json::Value::Object(line)
    }

    /// The table: one row per figure with each target's median, the ratio
    /// switchboard / peer for each peer, and the runs behind the medians.
    fn table<R>(&self, columns: &[Column<R>], results: &Results<R>) -> String {
        use std::fmt::Write as _;
        let args = self.args;
        let mut out = format!(
            "\n{} — {}; medians of {} run(s), ratio = switchboard / peer\n",
            self.scenario.name(),
            self.scenario.about(args),
            args.runs
        );
        let _ = write!(out, "  {:<24} {:<7}", "figure", "better");
        for (name, _) in results {
            let _ = write!(out, " {name:>12}");
        }
        for (name, _) in &results[1..] {
            let _ = write!(out, " {:>12}", format!("÷ {name}"));
        }
        out.push_str("   runs\n");
        for column in columns {
            let medians = medians(column, results);
            let _ = write!(out, "  {:<24} {:<7}", column.name, column.better.word());
            for median in &medians {
                let _ = write!(out, " {:>12}", number(*median));
            }
            for median in &medians[1..] {
                let _ = write!(out, " {:>12}", ratio(medians[0], *median));
            }
            let runs: Vec<String> = results
                .iter()
                .map(|(_, runs)| {
                    let values: Vec<String> =
                        runs.iter().map(|r| number((column.value)(r))).collect();
                    values.join(", ")
                })
                .collect();
            let _ = writeln!(out, "   {}", runs.join(" | "));
        }
        out
    }
}

/// Each target's median of `column` (NaN without a value).
fn medians<R>(column: &Column<R>, results: &Results<R>) -> Vec<f64> {
    results
        .iter()
        .map(|(_, runs)| {
            let values: Vec<f64> = runs.iter().map(column.value).collect();
            median(&values).unwrap_or(f64::NAN)
        })
        .collect()
}

/// A figure for the table: n/a when unknown, whole above 1,000.
fn number(value: f64) -> String {
    if !value.is_finite() {
        "n/a".to_owned()
    } else if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// `ours / theirs` for the table: n/a when either is unknown or both are 0.
fn ratio(ours: f64, theirs: f64) -> String {
    let ratio = ours / theirs;
    if ratio.is_finite() {
        format!("{ratio:.2}")
    } else {
        "n/a".to_owned()
    }
}
