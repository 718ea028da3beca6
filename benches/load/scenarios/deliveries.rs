//! The fan-out, flood and scale-out scenarios: subscribers on `bench`, probes
//! published under a load, every delivery counted at every subscriber.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::publisher::{flood_publisher, paced_publisher, Credential, PublisherReport};
use super::subscriber::{subscriber, SubscriberReport, SubscriberShared};
use super::{mib, CONNECT_TIMEOUT};
use crate::server::{CpuMeter, CpuUse, ServerProcess};
use crate::stats::{summarise, RunFigures, SeqSet};

/// How long after the last publish the deliveries may still arrive.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The most events one paced publisher task sends per second.
const RATE_PER_PUBLISHER: u64 = 50;

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
    let subscriber_tasks =
        connect_subscribers(&shared, subscribers, expected_each, &stop_tx).await?;
    // Let the last connections settle before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let threads_before = threads_of(servers);
    let cpu = CpuMeter::start(servers);
    let started = Instant::now();
    let publisher_tasks = spawn_publishers(&addrs, load, expected_each, duration, started);
    let published = join_publishers(publisher_tasks).await?;
    let publish_time = started.elapsed();

    let expected_total = published.ok.len() * subscribers as u64;
    wait_for_deliveries(&shared.progress, expected_total).await;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu.read(servers);
    let mut server_rss_kib = 0;
    for server in servers.iter() {
        server_rss_kib += server.rss_kib()?;
    }
    let threads = thread_load(&threads_before, &threads_of(servers), wall);
    let _ = stop_tx.send(true);

    let streams = join_subscribers(subscriber_tasks, &published.ok).await?;
    for server in servers.iter_mut() {
        server.check_alive()?;
    }
    let run = DeliveryRun {
        published,
        publish_time,
        expected_total,
        streams,
        cpu,
        threads,
        server_rss_kib,
    };
    run.log_problems();
    Ok(run.into_figures())
}

/// Starts the subscribers and waits until every one has its stream open; if
/// some do not within `CONNECT_TIMEOUT`, stops them all and fails with the
/// first error one met.
async fn connect_subscribers(
    shared: &SubscriberShared,
    subscribers: usize,
    expected_each: usize,
    stop_tx: &watch::Sender<bool>,
) -> anyhow::Result<JoinSet<SubscriberReport>> {
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
    Ok(subscriber_tasks)
}

/// Starts the publishers of `load` from `started`, spread over `addrs`: paced
/// ones share the total evenly and are staggered inside one period.
fn spawn_publishers(
    addrs: &[SocketAddr],
    load: Load,
    expected_each: usize,
    duration: Duration,
    started: Instant,
) -> JoinSet<PublisherReport> {
    let addr_of = |i: usize| addrs[i % addrs.len()];
    let seqs = Arc::new(AtomicU64::new(0));
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
                publisher_tasks.spawn(flood_publisher(
                    addr_of(i),
                    seqs.clone(),
                    until,
                    Credential::None,
                ));
            }
        }
    }
    publisher_tasks
}

/// Waits for every publisher and merges their reports.
async fn join_publishers(
    mut publisher_tasks: JoinSet<PublisherReport>,
) -> anyhow::Result<PublisherReport> {
    let mut published = PublisherReport::default();
    while let Some(done) = publisher_tasks.join_next().await {
        published.merge(done.context("a publisher task failed")?);
    }
    Ok(published)
}

/// Waits until the subscribers received `expected_total` distinct probes in
/// all, or `DRAIN_TIMEOUT` passed.
async fn wait_for_deliveries(progress: &AtomicU64, expected_total: u64) {
    wait_until(Instant::now() + DRAIN_TIMEOUT, || {
        progress.load(Ordering::Relaxed) >= expected_total
    })
    .await;
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

/// What the subscribers saw, summed over them.
#[derive(Default)]
struct StreamTally {
    latencies_us: Vec<u32>,
    loss: u64,
    unexpected: u64,
    duplicates: u64,
    order_violations: u64,
    foreign: u64,
    stream_errors: u64,
    first_stream_error: Option<String>,
}

impl StreamTally {
    /// Adds one subscriber's report, its probes counted against `published`.
    fn add(&mut self, report: SubscriberReport, published: &SeqSet) {
        self.loss += published.missing_from(&report.received);
        self.unexpected += report.received.extra_over(published);
        self.duplicates += report.duplicates;
        self.order_violations += report.order_violations;
        self.foreign += report.foreign;
        if let Some(err) = report.error {
            self.stream_errors += 1;
            self.first_stream_error.get_or_insert(err);
        }
        if self.latencies_us.is_empty() {
            self.latencies_us = report.latencies_us;
        } else {
            self.latencies_us.extend_from_slice(&report.latencies_us);
        }
    }
}

/// Waits for every subscriber (already told to stop) and tallies their
/// reports against the probes answered 2xx.
async fn join_subscribers(
    mut subscriber_tasks: JoinSet<SubscriberReport>,
    published: &SeqSet,
) -> anyhow::Result<StreamTally> {
    let mut streams = StreamTally::default();
    while let Some(done) = subscriber_tasks.join_next().await {
        streams.add(done.context("a subscriber task failed")?, published);
    }
    Ok(streams)
}

/// Everything one delivery run measured, before it becomes figures.
struct DeliveryRun {
    published: PublisherReport,
    publish_time: Duration,
    /// Probes answered 2xx times subscribers.
    expected_total: u64,
    streams: StreamTally,
    cpu: CpuUse,
    /// Cores per server thread name over the run.
    threads: BTreeMap<String, f64>,
    server_rss_kib: u64,
}

impl DeliveryRun {
    /// Tells the operator what went wrong, and which server threads worked.
    fn log_problems(&self) {
        if let Some(err) = &self.streams.first_stream_error {
            let stream_errors = self.streams.stream_errors;
            eprintln!("  {stream_errors} stream(s) ended early; first: {err}");
        }
        if let Some(err) = &self.published.first_error {
            eprintln!(
                "  {} publish(es) failed; first: {err}",
                self.published.errors
            );
        }
        let busy: Vec<String> = self
            .threads
            .iter()
            .filter(|(_, load)| **load >= 0.01)
            .map(|(name, load)| format!("{name} {load:.2}"))
            .collect();
        eprintln!("  server threads (cores): {}", busy.join(", "));
    }

    fn into_figures(mut self) -> RunFigures {
        let summary = summarise(&mut self.streams.latencies_us);
        let rtt = summarise(&mut self.published.rtts_us);
        let writer_cpu = self
            .threads
            .iter()
            .filter(|(name, _)| name.starts_with("switchboard-wr"))
            .map(|(_, load)| load)
            .sum::<f64>();
        let published = self.published.ok.len() as f64;
        let publish_secs = self.publish_time.as_secs_f64();
        let streams = &self.streams;
        let mut figures = RunFigures::new();
        figures.insert("p50_ms", summary.p50_ms);
        figures.insert("p99_ms", summary.p99_ms);
        figures.insert("max_ms", summary.max_ms);
        figures.insert("published", published);
        figures.insert("publish_rate", published / publish_secs);
        figures.insert("publish_errors", self.published.errors as f64);
        figures.insert("publish_rtt_p50_ms", rtt.p50_ms);
        figures.insert("publish_rtt_p99_ms", rtt.p99_ms);
        figures.insert("deliveries_expected", self.expected_total as f64);
        figures.insert(
            "delivery_rate",
            (self.expected_total - streams.loss) as f64 / publish_secs,
        );
        figures.insert("loss", streams.loss as f64);
        figures.insert("duplicates", streams.duplicates as f64);
        figures.insert("order_violations", streams.order_violations as f64);
        figures.insert("unexpected", (streams.unexpected + streams.foreign) as f64);
        figures.insert("stream_errors", streams.stream_errors as f64);
        figures.insert("server_cpu", self.cpu.server);
        figures.insert("writer_cpu", writer_cpu);
        figures.insert("bench_cpu", self.cpu.bench);
        figures.insert("other_cpu", self.cpu.other);
        figures.insert("server_rss_mib", mib(self.server_rss_kib));
        figures
    }
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
