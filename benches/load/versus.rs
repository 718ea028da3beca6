//! switchboard side by side with nchan (nginx's pub/sub module, C, in
//! memory), same client, same parameters, same run: `--nchan host:port`
//! (../shared/peers/nchan/start.sh runs it on 127.0.0.1:8081). Every run
//! measures a fresh switchboard server and then nchan on a fresh channel;
//! the report gives each figure's median and the ratio switchboard/nchan.
//! switchboard runs with `--rate-limit 0` and every publish durable.
//!
//! - `vs-flood`: 8 sequential publishers as fast as answered, 10 subscribers.
//! - `vs-fanout`: 100 subscribers × 1,000 events/s (delivery p99).
//! - `vs-fanout-1000`: 1,000 subscribers × 100 events/s (delivery p99).
//! - `vs-fanout-1000-fast`: 1,000 subscribers × 1,000 events/s
//!   (deliveries/s over all streams).
//! - `vs-idle`: `--idle-streams` idle streams, server RSS growth per stream.
//! - `vs-replay`: 10,000 events published one by one, then read back by one
//!   stream resuming from just before the first: replayed events/s.
//!
//! The delivery scenarios also give each side's CPU time per accepted
//! publish, the server's (nchan: master and workers) and the load
//! generator's, from the first publish until the last deliveries had 2 s
//! to arrive: on two shared cores, what one side spends the other cannot.
//!
//! The probe is `{"sent_us":…,"seq":…}`: switchboard wraps it in its event
//! JSON, nchan sends it as is; the subscriber finds it in either.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at};

use crate::http::{HttpConn, SseConn};
use crate::server::{own_cpu_seconds, process_cpu_seconds, rss_kib, ServerProcess, TempRoot};
use crate::stats::{median, summarise};
use crate::BenchArgs;
use switchboard::client::sse::SseMessage;

/// nginx's pid file where ../shared/peers/nchan/start.sh starts nchan.
const NCHAN_PID_FILE: &str = "/tmp/peers/nchan/nginx.pid";
/// How long one request, or opening one stream, may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Events `vs-replay` publishes and reads back (nchan keeps 20,000).
const REPLAY_EVENTS: u64 = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versus {
    Flood,
    Fanout,
    Fanout1000,
    Fanout1000Fast,
    Idle,
    Replay,
}

impl Versus {
    pub fn name(self) -> &'static str {
        match self {
            Versus::Flood => "vs-flood",
            Versus::Fanout => "vs-fanout",
            Versus::Fanout1000 => "vs-fanout-1000",
            Versus::Fanout1000Fast => "vs-fanout-1000-fast",
            Versus::Idle => "vs-idle",
            Versus::Replay => "vs-replay",
        }
    }

    /// What the scenario does, for the title of its table.
    fn about(self, args: &BenchArgs) -> String {
        let secs = args.duration.as_secs_f64();
        match self {
            Versus::Flood => {
                format!("8 sequential publishers as fast as answered, 10 subscribers, {secs} s")
            }
            Versus::Fanout => format!("100 subscribers × 1,000 events/s, {secs} s"),
            Versus::Fanout1000 => format!("1,000 subscribers × 100 events/s, {secs} s"),
            Versus::Fanout1000Fast => {
                format!("1,000 subscribers × 1,000 events/s, {secs} s; key figure: deliveries/s")
            }
            Versus::Idle => format!(
                "{} idle streams, server VmRSS growth per stream (nchan: nginx master + workers, \
                 not restarted between runs)",
                args.idle_streams
            ),
            Versus::Replay => format!(
                "{REPLAY_EVENTS} events published one by one, then replayed to one resuming stream"
            ),
        }
    }
}

/// Where a target publishes and subscribes.
#[derive(Clone, Copy)]
enum Target {
    /// The run's server, and its process for its memory.
    Switchboard {
        addr: SocketAddr,
        pid: u32,
    },
    Nchan(SocketAddr),
}

impl Target {
    fn addr(self) -> SocketAddr {
        match self {
            Target::Switchboard { addr, .. } | Target::Nchan(addr) => addr,
        }
    }

    fn publish_path(self, channel: &str) -> String {
        match self {
            Target::Switchboard { .. } => format!("/api/channels/{channel}/events"),
            Target::Nchan(_) => format!("/pub?id={channel}"),
        }
    }

    fn body(self, probe: &str) -> String {
        match self {
            Target::Switchboard { .. } => format!(r#"{{"type":"tick","data":{probe}}}"#),
            Target::Nchan(_) => probe.to_owned(),
        }
    }

    /// A live-only subscription (a `Last-Event-ID` header wins over
    /// switchboard's `replay=0`).
    fn subscribe_path(self, channel: &str) -> String {
        match self {
            Target::Switchboard { .. } => format!("/api/stream?channels={channel}&replay=0"),
            Target::Nchan(_) => format!("/sub/{channel}"),
        }
    }

    /// The `Last-Event-ID` that resumes just before the event whose publish
    /// was answered with `answer`.
    fn id_before(self, answer: &[u8]) -> anyhow::Result<String> {
        match self {
            Target::Switchboard { .. } => {
                let event: serde_json::Value =
                    serde_json::from_slice(answer).context("reading the publish answer")?;
                let id = event["id"]
                    .as_i64()
                    .filter(|id| *id > 0)
                    .context("no event id in the publish answer")?;
                Ok((id - 1).to_string())
            }
            Target::Nchan(_) => {
                // nchan answers a publish (without `Accept: application/json`)
                // in plain text ending `last message id: 1732233445:0`:
                // seconds, then the index within that second. Checked with
                // curl against nchan 1.3.6: `Last-Event-ID: 1732233445:0`
                // resumes after that message, `1732233444:0` (an earlier
                // second) or `0:0` from the channel's first message, a bare
                // `0` with nothing.
                let text = std::str::from_utf8(answer).context("the publish answer")?;
                let id = text
                    .lines()
                    .find_map(|line| line.strip_prefix("last message id:"))
                    .map(str::trim)
                    .with_context(|| format!("no message id in the publish answer {text:?}"))?;
                let (secs, index) = id
                    .split_once(':')
                    .with_context(|| format!("bad nchan message id {id:?}"))?;
                let secs: u64 = secs.parse().context("nchan message id")?;
                let index: u64 = index.parse().context("nchan message id")?;
                Ok(match index.checked_sub(1) {
                    Some(before) => format!("{secs}:{before}"),
                    None => format!("{}:0", secs.saturating_sub(1)),
                })
            }
        }
    }

    /// The server's processes: switchboard's one, or nchan's nginx master
    /// and workers (its children).
    fn pids(self) -> anyhow::Result<Vec<u32>> {
        match self {
            Target::Switchboard { pid, .. } => Ok(vec![pid]),
            Target::Nchan(_) => nchan_pids(),
        }
    }

    /// Resident memory of the server, in KiB.
    fn rss_kib(self) -> anyhow::Result<u64> {
        self.pids()?.into_iter().map(rss_kib).sum()
    }

    /// CPU time (user + system) the server's processes have used so far, in
    /// seconds.
    fn cpu_seconds(self) -> anyhow::Result<f64> {
        Ok(self.pids()?.into_iter().map(process_cpu_seconds).sum())
    }
}

/// nchan's nginx: the master (from its pid file) and its children.
fn nchan_pids() -> anyhow::Result<Vec<u32>> {
    let master: u32 = std::fs::read_to_string(NCHAN_PID_FILE)
        .with_context(|| format!("reading {NCHAN_PID_FILE}"))?
        .trim()
        .parse()
        .with_context(|| format!("{NCHAN_PID_FILE} holds no pid"))?;
    Ok(with_children(master))
}

/// `pid` and its children (nginx's master and its workers, say).
pub(crate) fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return pids;
    };
    for entry in procs.flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if parent_pid(child) == Some(pid) {
            pids.push(child);
        }
    }
    pids
}

/// The parent of a process, from `/proc/PID/stat` (None once it is gone).
pub(crate) fn parent_pid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields start after its `)`.
    stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The number after `key` (such as `"seq":`), wherever it sits in the data.
fn number_after(data: &str, key: &str) -> Option<u64> {
    let at = data.find(key)? + key.len();
    let digits: String = data[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Which way a figure is better.
#[derive(Clone, Copy)]
pub(crate) enum Better {
    Higher,
    Lower,
    /// Neither: a figure that describes the run (a count, a packing).
    Neither,
}

impl Better {
    /// `higher`, `lower` or `neither`, for the reports.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Better::Higher => "higher",
            Better::Lower => "lower",
            Better::Neither => "neither",
        }
    }
}

/// A figure of the report: its name, which way is better, and how to read
/// it from a run's result `R`.
pub(crate) struct Column<R> {
    pub(crate) name: &'static str,
    pub(crate) better: Better,
    pub(crate) value: fn(&R) -> f64,
}

/// The figures of one run of a delivery scenario.
struct Deliveries {
    /// Accepted publishes/s.
    accepted: f64,
    /// Delivery latency p99 (ms).
    p99_ms: f64,
    /// The share of expected deliveries that arrived.
    delivered: f64,
    /// Deliveries/s over all streams, from the first publish to the last
    /// delivery.
    rate: f64,
    /// The server's CPU time per accepted publish (µs), its deliveries
    /// included: from the first publish until 2 s after the last.
    server_us: f64,
    /// The load generator's CPU time per accepted publish (µs) over the
    /// same span: publishing and reading what arrived.
    bench_us: f64,
}

const DELIVERY_COLUMNS: [Column<Deliveries>; 6] = [
    Column {
        name: "accepted publishes/s",
        better: Better::Higher,
        value: |r| r.accepted,
    },
    Column {
        name: "delivery p99 ms",
        better: Better::Lower,
        value: |r| r.p99_ms,
    },
    Column {
        name: "deliveries arrived",
        better: Better::Higher,
        value: |r| r.delivered,
    },
    Column {
        name: "deliveries/s",
        better: Better::Higher,
        value: |r| r.rate,
    },
    Column {
        name: "server CPU µs/publish",
        better: Better::Lower,
        value: |r| r.server_us,
    },
    Column {
        name: "bench CPU µs/publish",
        better: Better::Lower,
        value: |r| r.bench_us,
    },
];

/// The publish load of a delivery scenario.
#[derive(Clone, Copy)]
struct Load {
    subscribers: usize,
    publishers: usize,
    /// Events/s of the (single) paced publisher; `None` floods.
    rate: Option<u64>,
}

/// One run of a delivery scenario: `load.subscribers` live streams, then
/// `load.publishers` publishing probes for `duration`.
async fn deliveries(
    load: Load,
    target: Target,
    channel: &str,
    duration: Duration,
) -> anyhow::Result<Deliveries> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..load.subscribers {
        let mut conn = SseConn::open(
            target.addr(),
            &target.subscribe_path(channel),
            "",
            64 * 1024,
        )
        .await?;
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let mut last_us = 0;
            let mut messages = Vec::new();
            while conn.read_until(&stop, &mut messages).await {
                let now = now_us();
                for message in &messages {
                    if let SseMessage::Event(event) = message {
                        if let Some(sent) = number_after(&event.data, "\"sent_us\":") {
                            latencies.push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
                            last_us = now;
                        }
                    }
                }
            }
            (latencies, last_us)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seq = Arc::new(AtomicU64::new(0));
    let (server_cpu, bench_cpu) = (target.cpu_seconds()?, own_cpu_seconds());
    let started_us = now_us();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for p in 0..load.publishers {
        let (seq, path) = (seq.clone(), target.publish_path(channel));
        tasks.push(tokio::spawn(async move {
            let mut conn = HttpConn::connect(target.addr()).await?;
            let mut ok = 0u64;
            let interval = load.rate.map(|r| Duration::from_micros(1_000_000 / r));
            let mut n = 0u32;
            while Instant::now() < deadline {
                if let Some(interval) = interval {
                    tokio::time::sleep_until((started + interval * n).into()).await;
                    n += 1;
                }
                let s = seq.fetch_add(1, Ordering::Relaxed);
                let probe = format!(r#"{{"sent_us":{},"seq":{s},"p":{p}}}"#, now_us());
                let r = conn
                    .send("POST", &path, Some(target.body(&probe).as_bytes()))
                    .await?;
                anyhow::ensure!(r.is_success(), "publish: {}", r.status);
                ok += 1;
            }
            Ok::<u64, anyhow::Error>(ok)
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    // Let the last deliveries arrive.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per_publish = |seconds: f64| seconds * 1e6 / accepted.max(1) as f64;
    let server_us = per_publish(target.cpu_seconds()? - server_cpu);
    let bench_us = per_publish(own_cpu_seconds() - bench_cpu);
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    let mut last_us = started_us;
    for reader in readers {
        let (latencies, last) = reader.await?;
        all.extend(latencies);
        last_us = last_us.max(last);
    }
    let expected = accepted as f64 * load.subscribers as f64;
    anyhow::ensure!(!all.is_empty(), "no deliveries");
    let delivered = all.len() as f64 / expected;
    let delivering = (last_us - started_us) as f64 / 1e6;
    Ok(Deliveries {
        accepted: accepted as f64 / elapsed,
        rate: all.len() as f64 / delivering.max(1e-6),
        p99_ms: summarise(&mut all).p99_ms,
        delivered,
        server_us,
        bench_us,
    })
}

/// How long after its idle streams closed a server's memory is measured
/// again (switchboard looks every 2 s whether many closed).
const CLOSED_WAIT: Duration = Duration::from_secs(5);

/// The figures of one run of `vs-idle`.
struct Idle {
    opened: f64,
    per_stream_kib: f64,
    /// Resident memory some seconds after the streams closed, over what it
    /// was before they opened.
    closed_over_before: f64,
}

const IDLE_COLUMNS: [Column<Idle>; 3] = [
    Column {
        name: "RSS per stream KiB",
        better: Better::Lower,
        value: |r| r.per_stream_kib,
    },
    Column {
        name: "streams opened",
        better: Better::Higher,
        value: |r| r.opened,
    },
    Column {
        name: "RSS closed / before",
        better: Better::Lower,
        value: |r| r.closed_over_before,
    },
];

/// When an idle stream counts as open: once its head (200
/// `text/event-stream`) has arrived, and with `Some(first)` once a message
/// `first` accepts has too.
pub(crate) type OpenedBy = Option<fn(&SseMessage) -> bool>;

/// Opens one stream (`GET path` on `addr`) that will stay idle and keeps
/// only its socket, once it is open as `opened_by` says.
pub(crate) async fn open_idle(
    addr: SocketAddr,
    path: &str,
    opened_by: OpenedBy,
) -> anyhow::Result<TcpStream> {
    let open = async {
        let mut conn = SseConn::open(addr, path, "", 1024).await?;
        if let Some(first) = opened_by {
            let mut messages = Vec::new();
            while !messages.iter().any(first) {
                messages.clear();
                conn.read_some(&mut messages).await?;
            }
        }
        Ok::<_, io::Error>(conn.into_socket())
    };
    Ok(timeout(REQUEST_TIMEOUT, open)
        .await
        .context("opening a stream timed out")??)
}

/// Opens `count` idle streams of `path`, `parallel` at a time, for at most
/// 120 s; reports how many could not be opened.
pub(crate) async fn open_many(
    addr: SocketAddr,
    path: &str,
    opened_by: OpenedBy,
    count: usize,
    parallel: usize,
) -> Vec<TcpStream> {
    let results: Vec<anyhow::Result<TcpStream>> = futures_util::stream::iter(0..count)
        .map(|_| open_idle(addr, path, opened_by))
        .buffer_unordered(parallel)
        .take_until(tokio::time::sleep(Duration::from_secs(120)))
        .collect()
        .await;
    let mut open = Vec::with_capacity(results.len());
    let mut first_error = None;
    for result in results {
        match result {
            Ok(stream) => open.push(stream),
            Err(err) => {
                first_error.get_or_insert(err);
            }
        }
    }
    if open.len() < count {
        let first = first_error.map_or("timed out".to_owned(), |e| format!("{e:#}"));
        eprintln!(
            "  {} stream(s) could not be opened; first: {first}",
            count - open.len()
        );
    }
    open
}

/// Opens `count` idle streams of `channel` on `target`: on switchboard a
/// stream is open once its first frame, `retry:`, has arrived (nchan may
/// send a `: hi` comment, or nothing, after its head).
async fn open_channel(
    target: Target,
    channel: &str,
    count: usize,
    parallel: usize,
) -> Vec<TcpStream> {
    let opened_by: OpenedBy = match target {
        Target::Switchboard { .. } => Some(|m| matches!(m, SseMessage::Retry(_))),
        Target::Nchan(_) => None,
    };
    let path = target.subscribe_path(channel);
    open_many(target.addr(), &path, opened_by, count, parallel).await
}

/// Server memory per idle stream: resident memory after opening `count`
/// streams minus before, divided by the streams opened; and whether it comes
/// back: resident memory `CLOSED_WAIT` after they all closed, over before.
async fn idle(target: Target, channel: &str, count: usize) -> anyhow::Result<Idle> {
    // Warm up: the first streams pay for lazily built structures.
    drop(open_channel(target, channel, 64, 64).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.rss_kib()?;
    let open = open_channel(target, channel, count, 256).await;
    anyhow::ensure!(!open.is_empty(), "no stream could be opened");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = target.rss_kib()?;
    let opened = open.len() as f64;
    drop(open);
    tokio::time::sleep(CLOSED_WAIT).await;
    let closed = target.rss_kib()?;
    Ok(Idle {
        opened,
        per_stream_kib: after.saturating_sub(before) as f64 / opened,
        closed_over_before: closed as f64 / before.max(1) as f64,
    })
}

/// The figures of one run of `vs-replay`.
struct Replay {
    /// Sequential publishes/s while filling the channel.
    fill_rate: f64,
    /// Events/s from opening the resuming stream to its last event.
    rate: f64,
}

const REPLAY_COLUMNS: [Column<Replay>; 2] = [
    Column {
        name: "replayed events/s",
        better: Better::Higher,
        value: |r| r.rate,
    },
    Column {
        name: "fill publishes/s",
        better: Better::Higher,
        value: |r| r.fill_rate,
    },
];

/// Publishes `REPLAY_EVENTS` events one by one, then opens one stream
/// resuming just before the first and reads until all of them arrived, in
/// order and each once.
async fn replay(target: Target, channel: &str) -> anyhow::Result<Replay> {
    let mut conn = HttpConn::connect(target.addr()).await?;
    let path = target.publish_path(channel);
    let mut resume = None;
    let started = Instant::now();
    for seq in 0..REPLAY_EVENTS {
        let body = target.body(&format!(r#"{{"replay_seq":{seq}}}"#));
        let r = timeout(
            REQUEST_TIMEOUT,
            conn.send("POST", &path, Some(body.as_bytes())),
        )
        .await
        .context("a publish timed out")??;
        anyhow::ensure!(r.is_success(), "publish: {}", r.status);
        if resume.is_none() {
            resume = Some(target.id_before(&r.body)?);
        }
    }
    let fill = started.elapsed();
    let resume = resume.context("nothing was published")?;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut stream = timeout_at(
        deadline.into(),
        SseConn::open(
            target.addr(),
            &target.subscribe_path(channel),
            &format!("Last-Event-ID: {resume}\r\n"),
            256 * 1024,
        ),
    )
    .await
    .context("opening the replay stream timed out")??;
    let mut messages = Vec::new();
    let mut next = 0;
    while next < REPLAY_EVENTS {
        timeout_at(deadline.into(), stream.read_some(&mut messages))
            .await
            .with_context(|| format!("replay stalled: {next} events after 60 s"))?
            .context("reading the replay")?;
        for message in messages.drain(..) {
            let SseMessage::Event(event) = message else {
                continue;
            };
            anyhow::ensure!(
                event.event != "resync",
                "the server answered resync: {}",
                event.data
            );
            let seq = number_after(&event.data, "\"replay_seq\":")
                .with_context(|| format!("an event without replay_seq: {}", event.data))?;
            anyhow::ensure!(
                seq == next,
                "replay event {seq} where {next} was due (missing, repeated or out of order)"
            );
            next += 1;
        }
    }
    Ok(Replay {
        fill_rate: REPLAY_EVENTS as f64 / fill.as_secs_f64(),
        rate: REPLAY_EVENTS as f64 / started.elapsed().as_secs_f64(),
    })
}

/// Runs `kind` `args.runs` times against a fresh switchboard and nchan,
/// alternating, and prints the medians and ratios.
pub async fn run(
    kind: Versus,
    args: &BenchArgs,
    server_bin: &Path,
    root: &TempRoot,
) -> anyhow::Result<()> {
    let Some(nchan) = args.nchan else {
        eprintln!("note: {} needs --nchan host:port; skipping it", kind.name());
        return Ok(());
    };
    let vs = Comparison {
        kind,
        args,
        server_bin,
        root,
        nchan,
    };
    let load = match kind {
        Versus::Flood => Load {
            subscribers: 10,
            publishers: 8,
            rate: None,
        },
        Versus::Fanout => Load {
            subscribers: 100,
            publishers: 1,
            rate: Some(1000),
        },
        Versus::Fanout1000 => Load {
            subscribers: 1000,
            publishers: 1,
            rate: Some(100),
        },
        Versus::Fanout1000Fast => Load {
            subscribers: 1000,
            publishers: 1,
            rate: Some(1000),
        },
        Versus::Idle => {
            let streams = args.idle_streams as usize;
            return vs
                .compare(&IDLE_COLUMNS, async |target, channel| {
                    idle(target, channel, streams).await
                })
                .await;
        }
        Versus::Replay => {
            return vs
                .compare(&REPLAY_COLUMNS, async |target, channel| {
                    replay(target, channel).await
                })
                .await;
        }
    };
    let duration = args.duration;
    vs.compare(&DELIVERY_COLUMNS, async |target, channel| {
        deliveries(load, target, channel, duration).await
    })
    .await
}

/// One side-by-side scenario and what its runs need.
struct Comparison<'a> {
    kind: Versus,
    args: &'a BenchArgs,
    server_bin: &'a Path,
    root: &'a TempRoot,
    nchan: SocketAddr,
}

impl Comparison<'_> {
    /// Measures `args.runs` times, each time a fresh switchboard server and
    /// then nchan on a fresh channel, and reports `columns` of the results.
    async fn compare<R>(
        &self,
        columns: &[Column<R>],
        measure: impl AsyncFn(Target, &str) -> anyhow::Result<R>,
    ) -> anyhow::Result<()> {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for run in 0..self.args.runs {
            let label = format!("{}-{run}", self.kind.name());
            let server =
                ServerProcess::start(self.server_bin, self.root.path(), &label, self.args, None)
                    .await?;
            let target = Target::Switchboard {
                addr: server.addr,
                pid: server.pid(),
            };
            let result = measure(target, "bench").await;
            server.stop();
            ours.push(result?);
            let channel = format!("bench-{run}-{}", now_us());
            theirs.push(measure(Target::Nchan(self.nchan), &channel).await?);
        }
        self.report(columns, &ours, &theirs);
        Ok(())
    }

    /// Prints each figure's median for both and the ratio switchboard/nchan
    /// (whichever way the figure is better), or with `--json` one line with
    /// every run's figures.
    fn report<R>(&self, columns: &[Column<R>], ours: &[R], theirs: &[R]) {
        let (kind, args) = (self.kind, self.args);
        if args.json {
            let mut line = serde_json::Map::new();
            line.insert("scenario".into(), kind.name().into());
            for column in columns {
                line.insert(
                    column.name.into(),
                    serde_json::json!({
                        "better": column.better.word(),
                        "switchboard": ours.iter().map(column.value).collect::<Vec<_>>(),
                        "nchan": theirs.iter().map(column.value).collect::<Vec<_>>(),
                    }),
                );
            }
            println!("{}", serde_json::Value::Object(line));
            return;
        }
        let pick = |runs: &[R], f: fn(&R) -> f64| {
            median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
        };
        println!(
            "\n{} — {}, medians of {} runs; ratio = switchboard / nchan",
            kind.name(),
            kind.about(args),
            args.runs
        );
        println!(
            "  {:<22} {:>12} {:>12} {:>8}  better",
            "figure", "switchboard", "nchan", "ratio"
        );
        for column in columns {
            let (a, b) = (pick(ours, column.value), pick(theirs, column.value));
            println!(
                "  {:<22} {a:>12.2} {b:>12.2} {:>8.2}  {}",
                column.name,
                a / b,
                column.better.word()
            );
        }
    }
}
