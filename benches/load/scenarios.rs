//! The measurements. Each takes a freshly started server and returns the
//! figures of one run; every wait has a deadline.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant, MissedTickBehavior};

use super::http::{HttpConn, SseConn};
use super::server::{rss_kib, CpuMeter, ServerProcess};
use super::stats::{summarise, RunFigures, SeqSet};
use switchboard::cli::sse::SseMessage;

/// The subscription of every measuring stream: live only, one channel.
const STREAM_PATH: &str = "/api/stream?channels=bench&replay=0";
const PUBLISH_PATH: &str = "/api/channels/bench/events";
/// How long subscribers may take to connect (first `retry:` frame).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long after the last publish the deliveries may still arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most events one paced publisher task sends per second.
const RATE_PER_PUBLISHER: u64 = 50;
/// Events per `POST /api/events/batch`.
const BATCH: usize = 1000;

/// Wall-clock time in microseconds since the Unix epoch: the publisher
/// stamps it into the payload, the subscriber subtracts it on receipt.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The part of a delivered event the bench reads: the probe it published.
#[derive(Deserialize)]
struct WireEvent {
    payload: Probe,
}

#[derive(Deserialize)]
struct Probe {
    sent_us: u64,
    seq: u64,
}

fn probe_json(seq: u64, sent_us: u64) -> String {
    format!(r#"{{"sent_us":{sent_us},"seq":{seq}}}"#)
}

/// Waits until `done()` or the deadline; true when done.
async fn wait_until(deadline: Instant, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------- subscribers

#[derive(Default)]
struct SubscriberReport {
    latencies_us: Vec<u32>,
    received: SeqSet,
    duplicates: u64,
    /// Events whose id was not above the previous one.
    order_violations: u64,
    /// Events that carried no probe (none are expected on the channel).
    foreign: u64,
    error: Option<String>,
}

/// Shared by a scenario's subscribers.
#[derive(Clone)]
struct SubscriberShared {
    /// The nodes; subscriber `i` connects to `addrs[i % len]`.
    addrs: Arc<Vec<SocketAddr>>,
    connected: Arc<AtomicUsize>,
    /// Distinct probes received, summed over subscribers.
    progress: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
}

/// One measuring stream: records, per delivered probe, receive time minus
/// the publisher's stamp, until told to stop.
async fn subscriber(shared: SubscriberShared, index: usize, expected: usize) -> SubscriberReport {
    let addr = shared.addrs[index % shared.addrs.len()];
    let mut report = SubscriberReport {
        latencies_us: Vec::with_capacity(expected),
        ..Default::default()
    };
    let mut stop = shared.stop;
    let opened = tokio::select! {
        _ = stop.changed() => return report,
        opened = timeout(CONNECT_TIMEOUT, SseConn::open(addr, STREAM_PATH, "", 16 * 1024)) => opened,
    };
    let mut conn = match opened {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            report.error = Some(format!("connect: {err}"));
            return report;
        }
        Err(_) => {
            report.error = Some("connect: timed out".into());
            return report;
        }
    };
    let mut connected = false;
    let mut last_id = 0i64;
    let mut messages = Vec::new();
    // One stop future for the whole loop, not a new one per read.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            read = conn.read_some(&mut messages) => {
                if let Err(err) = read {
                    report.error = Some(err.to_string());
                    break;
                }
            }
        }
        let now = unix_micros();
        let mut fresh = 0;
        for message in messages.drain(..) {
            match message {
                SseMessage::Retry(_) => {
                    if !connected {
                        connected = true;
                        shared.connected.fetch_add(1, Ordering::SeqCst);
                    }
                }
                SseMessage::Comment(_) => {}
                SseMessage::Event(event) => {
                    if let Some(id) = event.id_number() {
                        if id <= last_id {
                            report.order_violations += 1;
                        }
                        last_id = last_id.max(id);
                    }
                    let Ok(wire) = serde_json::from_str::<WireEvent>(&event.data) else {
                        report.foreign += 1;
                        continue;
                    };
                    if report.received.insert(wire.payload.seq) {
                        fresh += 1;
                        let latency = now.saturating_sub(wire.payload.sent_us);
                        report
                            .latencies_us
                            .push(latency.min(u64::from(u32::MAX)) as u32);
                    } else {
                        report.duplicates += 1;
                    }
                }
            }
        }
        if fresh > 0 {
            shared.progress.fetch_add(fresh, Ordering::Relaxed);
        }
    }
    report
}

// ----------------------------------------------------------------- publishers

#[derive(Default)]
struct PublisherReport {
    /// Sequence numbers answered with 2xx.
    ok: SeqSet,
    /// Round-trip time of every successful publish, in µs.
    rtts_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
}

impl PublisherReport {
    fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }

    fn merge(&mut self, other: PublisherReport) {
        self.ok.union_with(&other.ok);
        self.rtts_us.extend_from_slice(&other.rtts_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Publishes one probe, stamped with its real send time.
async fn publish_one(conn: &mut HttpConn, seqs: &AtomicU64, report: &mut PublisherReport) {
    let seq = seqs.fetch_add(1, Ordering::Relaxed);
    let sent_us = unix_micros();
    let body = format!(r#"{{"type":"tick","data":{}}}"#, probe_json(seq, sent_us));
    match timeout(
        REQUEST_TIMEOUT,
        conn.send("POST", PUBLISH_PATH, Some(body.as_bytes())),
    )
    .await
    {
        Ok(Ok(response)) if response.is_success() => {
            report.ok.insert(seq);
            let rtt = unix_micros().saturating_sub(sent_us);
            report.rtts_us.push(rtt.min(u64::from(u32::MAX)) as u32);
        }
        Ok(Ok(response)) => report.fail(format!(
            "status {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        )),
        Ok(Err(err)) => report.fail(err.to_string()),
        Err(_) => {
            conn.reset();
            report.fail("publish timed out".into());
        }
    }
}

/// Publishes `count` probes, one per tick of `period` from `start`, and stops
/// at `stop_at` whatever is left. Late ticks are sent at once (burst), so the
/// rate holds on average; each probe carries the time it was really sent.
async fn paced_publisher(
    addr: SocketAddr,
    seqs: Arc<AtomicU64>,
    count: u64,
    period: Duration,
    start: Instant,
    stop_at: Instant,
) -> PublisherReport {
    let mut report = PublisherReport::default();
    let mut conn = match HttpConn::connect(addr).await {
        Ok(conn) => conn,
        Err(err) => {
            report.fail(format!("connect: {err}"));
            return report;
        }
    };
    let mut ticker = tokio::time::interval_at(start, period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    for _ in 0..count {
        if timeout_at(stop_at, ticker.tick()).await.is_err() {
            break;
        }
        publish_one(&mut conn, &seqs, &mut report).await;
    }
    report
}

/// Publishes back to back on one keep-alive connection until `until`.
async fn flood_publisher(
    addr: SocketAddr,
    seqs: Arc<AtomicU64>,
    until: Instant,
) -> PublisherReport {
    let mut report = PublisherReport::default();
    let mut conn = match HttpConn::connect(addr).await {
        Ok(conn) => conn,
        Err(err) => {
            report.fail(format!("connect: {err}"));
            return report;
        }
    };
    while Instant::now() < until {
        let errors = report.errors;
        publish_one(&mut conn, &seqs, &mut report).await;
        if report.errors > errors {
            // Do not spin on a server that refuses.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    report
}

// ---------------------------------------------------------- fan-out and flood

/// How the probes are published.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// `rate` events per second in total for the duration.
    Paced { rate: u64 },
    /// `publishers` sequential loops as fast as answers come.
    Flood { publishers: usize },
}

/// `subscribers` streams on `bench`, all connected before the first
/// publish; then the load for `duration`; then the deliveries are counted.
/// With several servers (nodes on one database), subscribers and publishers
/// are spread over them round-robin.
pub async fn deliveries(
    servers: &mut [ServerProcess],
    subscribers: usize,
    load: Load,
    duration: Duration,
) -> anyhow::Result<RunFigures> {
    let addrs: Arc<Vec<SocketAddr>> = Arc::new(servers.iter().map(|s| s.addr).collect());
    let addr_of = |i: usize| addrs[i % addrs.len()];
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = SubscriberShared {
        addrs: addrs.clone(),
        connected: Arc::new(AtomicUsize::new(0)),
        progress: Arc::new(AtomicU64::new(0)),
        stop: stop_rx,
    };
    let expected_each = match load {
        Load::Paced { rate } => (rate as f64 * duration.as_secs_f64()) as usize,
        Load::Flood { .. } => 0,
    };
    let mut subscriber_tasks = JoinSet::new();
    for i in 0..subscribers {
        subscriber_tasks.spawn(subscriber(shared.clone(), i, expected_each));
    }
    let connected = shared.connected.clone();
    let all_connected = wait_until(Instant::now() + CONNECT_TIMEOUT, || {
        connected.load(Ordering::SeqCst) >= subscribers
    })
    .await;
    if !all_connected {
        let _ = stop_tx.send(true);
        let mut first_error = None;
        while let Some(done) = subscriber_tasks.join_next().await {
            if let Ok(report) = done {
                first_error = first_error.or(report.error);
            }
        }
        bail!(
            "only {} of {subscribers} subscribers connected within {CONNECT_TIMEOUT:?} (first error: {})",
            connected.load(Ordering::SeqCst),
            first_error.unwrap_or_else(|| "none".into())
        );
    }
    // Let the last connections settle before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let seqs = Arc::new(AtomicU64::new(0));
    let threads_before = threads_of(servers);
    let cpu = CpuMeter::start(servers);
    let started = Instant::now();
    let mut publisher_tasks = JoinSet::new();
    match load {
        Load::Paced { rate } => {
            let total = expected_each as u64;
            let publishers = rate.div_ceil(RATE_PER_PUBLISHER).max(1);
            let period = Duration::from_secs_f64(publishers as f64 / rate as f64);
            let first_tick = started + Duration::from_millis(10);
            let stop_at = first_tick + duration + Duration::from_secs(10);
            for i in 0..publishers {
                let count = total / publishers + u64::from(i < total % publishers);
                // Stagger the publishers evenly inside one period.
                let start = first_tick + period.mul_f64(i as f64 / publishers as f64);
                publisher_tasks.spawn(paced_publisher(
                    addr_of(i as usize),
                    seqs.clone(),
                    count,
                    period,
                    start,
                    stop_at,
                ));
            }
        }
        Load::Flood { publishers } => {
            let until = started + duration;
            for i in 0..publishers {
                publisher_tasks.spawn(flood_publisher(addr_of(i), seqs.clone(), until));
            }
        }
    }
    let mut published = PublisherReport::default();
    while let Some(done) = publisher_tasks.join_next().await {
        published.merge(done.context("a publisher task failed")?);
    }
    let publish_time = started.elapsed();

    let expected_total = published.ok.len() * subscribers as u64;
    let progress = shared.progress.clone();
    wait_until(Instant::now() + DRAIN_TIMEOUT, || {
        progress.load(Ordering::Relaxed) >= expected_total
    })
    .await;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu.read(servers);
    let mut server_rss = 0;
    for server in servers.iter() {
        server_rss += server.rss_kib()?;
    }
    let threads = thread_load(&threads_before, &threads_of(servers), wall);
    let _ = stop_tx.send(true);

    let mut latencies = Vec::new();
    let (mut loss, mut duplicates, mut order, mut foreign, mut unexpected) = (0, 0, 0, 0, 0);
    let mut stream_errors = 0u64;
    let mut first_stream_error = None;
    while let Some(done) = subscriber_tasks.join_next().await {
        let report = done.context("a subscriber task failed")?;
        loss += published.ok.missing_from(&report.received);
        unexpected += report.received.extra_over(&published.ok);
        duplicates += report.duplicates;
        order += report.order_violations;
        foreign += report.foreign;
        if let Some(err) = report.error {
            stream_errors += 1;
            first_stream_error.get_or_insert(err);
        }
        if latencies.is_empty() {
            latencies = report.latencies_us;
        } else {
            latencies.extend_from_slice(&report.latencies_us);
        }
    }
    for server in servers.iter_mut() {
        server.check_alive()?;
    }
    if let Some(err) = &first_stream_error {
        eprintln!("  {stream_errors} stream(s) ended early; first: {err}");
    }
    if let Some(err) = &published.first_error {
        eprintln!("  {} publish(es) failed; first: {err}", published.errors);
    }
    let summary = summarise(&mut latencies);
    let rtt = summarise(&mut published.rtts_us);
    let busy: Vec<String> = threads
        .iter()
        .filter(|(_, load)| **load >= 0.01)
        .map(|(name, load)| format!("{name} {load:.2}"))
        .collect();
    eprintln!("  server threads (cores): {}", busy.join(", "));
    let writer_cpu = threads
        .iter()
        .filter(|(name, _)| name.starts_with("switchboard-wr"))
        .map(|(_, load)| load)
        .sum::<f64>();

    let mut figures = RunFigures::new();
    figures.insert("p50_ms", summary.p50_ms);
    figures.insert("p99_ms", summary.p99_ms);
    figures.insert("max_ms", summary.max_ms);
    figures.insert("published", published.ok.len() as f64);
    figures.insert(
        "publish_rate",
        published.ok.len() as f64 / publish_time.as_secs_f64(),
    );
    figures.insert("publish_errors", published.errors as f64);
    figures.insert("publish_rtt_p50_ms", rtt.p50_ms);
    figures.insert("publish_rtt_p99_ms", rtt.p99_ms);
    figures.insert("deliveries_expected", expected_total as f64);
    figures.insert(
        "delivery_rate",
        (expected_total - loss) as f64 / publish_time.as_secs_f64(),
    );
    figures.insert("loss", loss as f64);
    figures.insert("duplicates", duplicates as f64);
    figures.insert("order_violations", order as f64);
    figures.insert("unexpected", (unexpected + foreign) as f64);
    figures.insert("stream_errors", stream_errors as f64);
    figures.insert("server_cpu", cpu.server);
    figures.insert("writer_cpu", writer_cpu);
    figures.insert("bench_cpu", cpu.bench);
    figures.insert("other_cpu", cpu.other);
    figures.insert("server_rss_mib", mib(server_rss));
    Ok(figures)
}

/// CPU seconds per thread name, summed over the servers.
fn threads_of(servers: &[ServerProcess]) -> BTreeMap<String, f64> {
    let mut threads = BTreeMap::new();
    for server in servers {
        for (name, cpu) in server.thread_cpu() {
            *threads.entry(name).or_insert(0.0) += cpu;
        }
    }
    threads
}

/// Cores each server thread used between two snapshots `wall` seconds apart.
fn thread_load(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    wall: f64,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(name, cpu)| {
            let start = before.get(name).copied().unwrap_or(0.0);
            (name.clone(), (cpu - start) / wall)
        })
        .collect()
}

// ----------------------------------------------------------------------- idle

/// Opens one stream and reads until its `retry:` frame; keeps only the socket.
async fn open_idle(addr: SocketAddr) -> io::Result<TcpStream> {
    let open = async {
        let mut conn = SseConn::open(addr, STREAM_PATH, "", 1024).await?;
        let mut messages = Vec::new();
        loop {
            conn.read_some(&mut messages).await?;
            if messages.iter().any(|m| matches!(m, SseMessage::Retry(_))) {
                return Ok(conn.into_socket());
            }
            messages.clear();
        }
    };
    timeout(REQUEST_TIMEOUT, open)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "open timed out")))
}

/// Opens `count` streams, `parallel` at a time, stopping at `deadline`.
async fn open_many(
    addr: SocketAddr,
    count: usize,
    parallel: usize,
    deadline: Instant,
) -> (Vec<TcpStream>, u64, Option<String>) {
    let results: Vec<io::Result<TcpStream>> = futures_util::stream::iter(0..count)
        .map(|_| open_idle(addr))
        .buffer_unordered(parallel)
        .take_until(tokio::time::sleep_until(deadline))
        .collect()
        .await;
    let mut open = Vec::with_capacity(results.len());
    let mut errors = (count - results.len()) as u64;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(stream) => open.push(stream),
            Err(err) => {
                errors += 1;
                first_error.get_or_insert(err.to_string());
            }
        }
    }
    (open, errors, first_error)
}

/// Server memory per idle stream: VmRSS after opening `count` streams minus
/// before, divided by the streams opened.
pub async fn idle(server: &mut ServerProcess, count: usize) -> anyhow::Result<RunFigures> {
    let addr = server.addr;
    // Warm up: the first streams pay for lazily built structures.
    let (warm, _, _) = open_many(addr, 64, 64, Instant::now() + Duration::from_secs(20)).await;
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss_kib()?;

    let cpu = CpuMeter::start(std::slice::from_ref(server));
    let started = Instant::now();
    let (open, errors, first_error) =
        open_many(addr, count, 256, started + Duration::from_secs(120)).await;
    let open_time = started.elapsed();
    let cpu = cpu.read(std::slice::from_ref(server));
    if let Some(err) = &first_error {
        eprintln!("  {errors} stream(s) could not be opened; first: {err}");
    }
    if open.is_empty() {
        bail!("no stream could be opened");
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.check_alive()?;
    let after = server.rss_kib()?;
    let bench_rss = rss_kib(std::process::id())?;
    let opened = open.len();
    drop(open);

    let mut figures = RunFigures::new();
    figures.insert("streams_opened", opened as f64);
    figures.insert("open_errors", errors as f64);
    figures.insert("open_rate", opened as f64 / open_time.as_secs_f64());
    figures.insert("rss_before_mib", mib(before));
    figures.insert("rss_open_mib", mib(after));
    figures.insert(
        "rss_per_stream_kib",
        after.saturating_sub(before) as f64 / opened as f64,
    );
    figures.insert("bench_rss_mib", mib(bench_rss));
    figures.insert("other_cpu", cpu.other);
    Ok(figures)
}

// --------------------------------------------------------------------- replay

#[derive(Deserialize)]
struct BatchAnswer {
    events: Vec<StoredId>,
}

#[derive(Deserialize)]
struct StoredId {
    id: i64,
}

/// Publishes `count` probes in batches of 1,000; returns the last id.
async fn publish_batches(conn: &mut HttpConn, first_seq: u64, count: usize) -> anyhow::Result<i64> {
    let mut last_id = 0;
    let mut seq = first_seq;
    let mut left = count;
    while left > 0 {
        let n = left.min(BATCH);
        let sent_us = unix_micros();
        let mut body = String::with_capacity(n * 96 + 16);
        body.push_str(r#"{"events":["#);
        for i in 0..n {
            if i > 0 {
                body.push(',');
            }
            body.push_str(r#"{"channel":"bench","type":"tick","data":"#);
            body.push_str(&probe_json(seq, sent_us));
            body.push('}');
            seq += 1;
        }
        body.push_str("]}");
        let response = timeout(
            REQUEST_TIMEOUT * 3,
            conn.send("POST", "/api/events/batch", Some(body.as_bytes())),
        )
        .await
        .context("a batch publish timed out")??;
        if !response.is_success() {
            bail!(
                "batch publish: status {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        let answer: BatchAnswer =
            serde_json::from_slice(&response.body).context("reading the batch answer")?;
        if answer.events.len() != n {
            bail!("batch of {n} stored {} events", answer.events.len());
        }
        last_id = answer.events.last().map_or(last_id, |e| e.id);
        left -= n;
    }
    Ok(last_id)
}

struct Replay {
    events: u64,
    order_violations: u64,
    elapsed: Duration,
}

/// Opens a stream with `Last-Event-ID: 0` and reads until `last_id`.
async fn measure_replay(addr: SocketAddr, last_id: i64) -> anyhow::Result<Replay> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut conn = timeout_at(
        deadline,
        SseConn::open(
            addr,
            "/api/stream?channels=bench",
            "Last-Event-ID: 0\r\n",
            256 * 1024,
        ),
    )
    .await
    .context("opening the replay stream timed out")??;
    let mut messages = Vec::new();
    let (mut events, mut order_violations, mut prev) = (0u64, 0u64, 0i64);
    while prev < last_id {
        match timeout_at(deadline, conn.read_some(&mut messages)).await {
            Ok(read) => read.context("reading the replay")?,
            Err(_) => bail!("replay stalled: {events} events after 60 s (last id {prev})"),
        }
        for message in messages.drain(..) {
            let SseMessage::Event(event) = message else {
                continue;
            };
            if event.event == "resync" {
                bail!("the server answered resync: {}", event.data);
            }
            let id = event.id_number().context("an event without a numeric id")?;
            if id <= prev {
                order_violations += 1;
            } else {
                events += 1;
                prev = id;
            }
        }
    }
    Ok(Replay {
        events,
        order_violations,
        elapsed: started.elapsed(),
    })
}

/// Replays 10,000 and then 100,000 events to a stream resuming from 0.
pub async fn replay(server: &mut ServerProcess) -> anyhow::Result<RunFigures> {
    let addr = server.addr;
    let mut conn = HttpConn::connect(addr).await?;
    let mut figures = RunFigures::new();
    let mut published = 0usize;
    let mut publish_time = Duration::ZERO;
    let mut loss = 0u64;
    let mut order = 0u64;
    let mut other_cpu = 0f64;
    for (total, rate_key, time_key) in [
        (10_000usize, "replay_10k_rate", "replay_10k_ms"),
        (100_000, "replay_100k_rate", "replay_100k_ms"),
    ] {
        let started = Instant::now();
        let last_id = publish_batches(&mut conn, published as u64, total - published).await?;
        publish_time += started.elapsed();
        published = total;
        let meter = CpuMeter::start(std::slice::from_ref(server));
        let replay = measure_replay(addr, last_id).await?;
        other_cpu = other_cpu.max(meter.read(std::slice::from_ref(server)).other);
        loss += (total as u64).saturating_sub(replay.events);
        order += replay.order_violations;
        figures.insert(
            rate_key,
            replay.events as f64 / replay.elapsed.as_secs_f64(),
        );
        figures.insert(time_key, replay.elapsed.as_secs_f64() * 1000.0);
    }
    server.check_alive()?;
    figures.insert(
        "batch_publish_rate",
        published as f64 / publish_time.as_secs_f64(),
    );
    figures.insert("loss", loss as f64);
    figures.insert("order_violations", order as f64);
    figures.insert("server_rss_mib", mib(server.rss_kib()?));
    figures.insert("other_cpu", other_cpu);
    Ok(figures)
}
