//! switchboard side by side with nchan (nginx's pub/sub module, C, in
//! memory), same client, same parameters, same run: `--nchan host:port`
//! (../shared/peers/nchan/start.sh runs it on 127.0.0.1:8081). Scenarios
//! `vs-flood` (8 sequential publishers, 10 subscribers: accepted/s and
//! delivery p99) and `vs-fanout` (100 subscribers × 1,000 events/s: delivery
//! p99). switchboard runs with `--rate-limit 0` and every publish durable.
//!
//! The probe is `{"sent_us":…,"seq":…}`: switchboard wraps it in its event
//! JSON, nchan sends it as is; the subscriber finds it in either.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::{HttpConn, SseConn};
use crate::server::{ServerProcess, TempRoot};
use crate::stats::{median, summarise};
use crate::BenchArgs;
use switchboard::cli::sse::SseMessage;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versus {
    Flood,
    Fanout,
}

impl Versus {
    pub fn name(self) -> &'static str {
        match self {
            Versus::Flood => "vs-flood",
            Versus::Fanout => "vs-fanout",
        }
    }
}

/// Where a target publishes and subscribes.
#[derive(Clone, Copy)]
enum Target {
    Switchboard(SocketAddr),
    Nchan(SocketAddr),
}

impl Target {
    fn addr(self) -> SocketAddr {
        match self {
            Target::Switchboard(a) | Target::Nchan(a) => a,
        }
    }

    fn publish_path(self, channel: &str) -> String {
        match self {
            Target::Switchboard(_) => format!("/api/channels/{channel}/events"),
            Target::Nchan(_) => format!("/pub?id={channel}"),
        }
    }

    fn body(self, probe: &str) -> String {
        match self {
            Target::Switchboard(_) => format!(r#"{{"type":"tick","data":{probe}}}"#),
            Target::Nchan(_) => probe.to_owned(),
        }
    }

    fn subscribe_path(self, channel: &str) -> String {
        match self {
            Target::Switchboard(_) => format!("/api/stream?channels={channel}&replay=0"),
            Target::Nchan(_) => format!("/sub/{channel}"),
        }
    }
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The probe's send time, wherever it sits in the data.
fn sent_us(data: &str) -> Option<u64> {
    let at = data.find("\"sent_us\":")? + 10;
    let digits: String = data[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// A figure of the report: its name and how to read it from a run.
type Column = (&'static str, fn(&Run) -> f64);

/// The figures of one run: accepted publishes/s, delivery p99 (ms), and the
/// share of expected deliveries that arrived.
struct Run {
    accepted: f64,
    p99_ms: f64,
    delivered: f64,
}

async fn run_once(
    kind: Versus,
    target: Target,
    channel: &str,
    duration: Duration,
) -> anyhow::Result<Run> {
    let (subscribers, publishers, rate) = match kind {
        Versus::Flood => (10usize, 8usize, None),
        Versus::Fanout => (100, 1, Some(1000u64)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..subscribers {
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
            let mut messages = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                messages.clear();
                match tokio::time::timeout(
                    Duration::from_millis(200),
                    conn.read_some(&mut messages),
                )
                .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break,
                    Err(_) => continue,
                }
                let now = now_us();
                for message in &messages {
                    if let SseMessage::Event(event) = message {
                        if let Some(sent) = sent_us(&event.data) {
                            latencies.push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
                        }
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seq = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let (seq, path) = (seq.clone(), target.publish_path(channel));
        tasks.push(tokio::spawn(async move {
            let mut conn = HttpConn::connect(target.addr()).await?;
            let mut ok = 0u64;
            let interval = rate.map(|r| Duration::from_micros(1_000_000 / r));
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
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.await?);
    }
    let expected = accepted as f64 * subscribers as f64;
    anyhow::ensure!(!all.is_empty(), "no deliveries");
    let delivered = all.len() as f64 / expected;
    Ok(Run {
        accepted: accepted as f64 / elapsed,
        p99_ms: summarise(&mut all).p99_ms,
        delivered,
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
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for run in 0..args.runs {
        let label = format!("{}-{run}", kind.name());
        let server =
            ServerProcess::start(server_bin, root.path(), &label, &args.server_log, None).await?;
        let result = run_once(
            kind,
            Target::Switchboard(server.addr),
            "bench",
            args.duration,
        )
        .await;
        server.stop();
        ours.push(result?);
        theirs.push(
            run_once(
                kind,
                Target::Nchan(nchan),
                &format!("bench-{run}-{}", now_us()),
                args.duration,
            )
            .await?,
        );
    }
    let pick = |runs: &[Run], f: fn(&Run) -> f64| {
        median(&runs.iter().map(f).collect::<Vec<_>>()).unwrap_or(f64::NAN)
    };
    let rows: [Column; 3] = [
        ("accepted publishes/s", |r| r.accepted),
        ("delivery p99 ms", |r| r.p99_ms),
        ("deliveries arrived", |r| r.delivered),
    ];
    if args.json {
        let mut line = serde_json::Map::new();
        line.insert("scenario".into(), kind.name().into());
        for (name, f) in rows {
            line.insert(
                name.into(),
                serde_json::json!({
                    "switchboard": ours.iter().map(f).collect::<Vec<_>>(),
                    "nchan": theirs.iter().map(f).collect::<Vec<_>>(),
                }),
            );
        }
        println!("{}", serde_json::Value::Object(line));
        return Ok(());
    }
    let about = match kind {
        Versus::Flood => "8 sequential publishers as fast as answered, 10 subscribers",
        Versus::Fanout => "100 subscribers × 1,000 events/s",
    };
    println!(
        "\n{} — {about}, {} s, medians of {} runs",
        kind.name(),
        args.duration.as_secs(),
        args.runs
    );
    println!(
        "  {:<22} {:>12} {:>12} {:>8}",
        "figure", "switchboard", "nchan", "ratio"
    );
    for (name, f) in rows {
        let (a, b) = (pick(&ours, f), pick(&theirs, f));
        println!("  {name:<22} {a:>12.2} {b:>12.2} {:>8.2}", a / b);
    }
    Ok(())
}
