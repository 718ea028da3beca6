//! Durable Streams scenarios, run in one invocation with the same client
//! against switchboard (started per run, fresh database) and against the
//! peers given with `--ds-peer name=host:port` (already running, e.g. the
//! scripts in ../shared/peers: the crates.io `durable-streams-server` in its
//! file-durable mode and the Node reference server, file-backed). Each run
//! uses fresh stream names; the report gives each target's median and the
//! ratio of switchboard to each peer.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::http::{HttpConn, SseConn};
use crate::server::{ServerProcess, TempRoot};
use crate::stats::{median, summarise};
use crate::BenchArgs;
use switchboard::client::sse::SseMessage;

/// Producers of `ds-append` (on `APPEND_STREAMS` streams).
const PRODUCERS: usize = 16;
const APPEND_STREAMS: usize = 4;
const APPEND_BYTES: usize = 256;
/// Readers and rate of `ds-fanout`.
const READERS: usize = 100;
const FANOUT_RATE: u64 = 200;
/// `ds-catchup`: 100 appends of 1 MiB.
const CATCHUP_APPENDS: usize = 100;
const CATCHUP_APPEND: usize = 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DsScenario {
    Append,
    Fanout,
    Catchup,
}

impl DsScenario {
    pub fn name(self) -> &'static str {
        match self {
            DsScenario::Append => "ds-append",
            DsScenario::Fanout => "ds-fanout",
            DsScenario::Catchup => "ds-catchup",
        }
    }

    fn about(self, duration: Duration) -> String {
        let secs = duration.as_secs();
        match self {
            DsScenario::Append => format!(
                "{PRODUCERS} producers on {APPEND_STREAMS} streams, {APPEND_BYTES}-byte appends as fast as answered, {secs} s"
            ),
            DsScenario::Fanout => format!(
                "{READERS} SSE readers of one stream, {FANOUT_RATE} appends/s for {secs} s"
            ),
            DsScenario::Catchup => format!(
                "a catch-up read of {} MB ({CATCHUP_APPENDS} appends of 1 MiB)",
                CATCHUP_APPENDS * CATCHUP_APPEND / 1_000_000
            ),
        }
    }

    /// The figure it reports, and whether more is better.
    fn figure(self) -> (&'static str, bool) {
        match self {
            DsScenario::Append => ("appends/s", true),
            DsScenario::Fanout => ("delivery p99 ms", false),
            DsScenario::Catchup => ("MB/s", true),
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

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Runs `scenario` `args.runs` times against every target; prints the table.
pub async fn run(
    scenario: DsScenario,
    args: &BenchArgs,
    server_bin: &Path,
    root: &TempRoot,
) -> anyhow::Result<()> {
    let mut results: Vec<(String, Vec<f64>)> = vec![("switchboard".into(), Vec::new())];
    for (name, _) in &args.ds_peer {
        results.push((name.clone(), Vec::new()));
    }
    for run in 0..args.runs {
        // Targets take turns inside each run, so drift hits all alike.
        let label = format!("{}-{run}", scenario.name());
        let server = ServerProcess::start(server_bin, root.path(), &label, args, None).await?;
        let value = measure(scenario, server.addr, &format!("sb-{label}"), args.duration).await;
        server.stop();
        results[0]
            .1
            .push(value.with_context(|| format!("switchboard, {label}"))?);
        for (i, (name, addr)) in args.ds_peer.iter().enumerate() {
            let stream = format!("{name}-{label}-{}", now_us());
            let value = measure(scenario, *addr, &stream, args.duration).await;
            results[i + 1]
                .1
                .push(value.with_context(|| format!("{name}, {label}"))?);
        }
    }
    let (unit, more_is_better) = scenario.figure();
    let medians: Vec<(String, f64)> = results
        .iter()
        .map(|(name, values)| (name.clone(), median(values).unwrap_or(f64::NAN)))
        .collect();
    let ours = medians[0].1;
    if args.json {
        let line = serde_json::json!({
            "scenario": scenario.name(),
            "figure": unit,
            "runs": results.iter().map(|(n, v)| (n.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
            "medians": medians.iter().map(|(n, v)| (n.clone(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        println!("{line}");
        return Ok(());
    }
    println!("\n{} — {}", scenario.name(), scenario.about(args.duration));
    println!("  {:<14} {:>14}   runs", "target", format!("median {unit}"));
    for (name, values) in &results {
        let runs: Vec<String> = values.iter().map(|v| format!("{v:.1}")).collect();
        println!(
            "  {name:<14} {:>14.1}   {}",
            median(values).unwrap_or(f64::NAN),
            runs.join(", ")
        );
    }
    for (name, value) in &medians[1..] {
        let ratio = ours / value;
        let better = if more_is_better {
            ratio >= 1.0
        } else {
            ratio <= 1.0
        };
        println!(
            "  switchboard / {name}: {ratio:.2}{}",
            if better {
                " (switchboard ahead)"
            } else {
                " (switchboard behind)"
            }
        );
    }
    Ok(())
}

async fn measure(
    scenario: DsScenario,
    addr: SocketAddr,
    prefix: &str,
    duration: Duration,
) -> anyhow::Result<f64> {
    match scenario {
        DsScenario::Append => append(addr, prefix, duration).await,
        DsScenario::Fanout => fanout(addr, prefix, duration).await,
        DsScenario::Catchup => catchup(addr, prefix).await,
    }
}

async fn create(addr: SocketAddr, path: &str, content_type: &str) -> anyhow::Result<()> {
    let mut conn = HttpConn::connect(addr).await?;
    let r = conn.send_typed("PUT", path, content_type, None).await?;
    anyhow::ensure!(r.is_success(), "PUT {path}: {}", r.status);
    Ok(())
}

/// Appends/s of `PRODUCERS` connections appending as fast as answered.
async fn append(addr: SocketAddr, prefix: &str, duration: Duration) -> anyhow::Result<f64> {
    let paths: Vec<String> = (0..APPEND_STREAMS)
        .map(|i| format!("/v1/stream/{prefix}-a{i}"))
        .collect();
    for path in &paths {
        create(addr, path, "application/octet-stream").await?;
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let path = paths[p % APPEND_STREAMS].clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = HttpConn::connect(addr).await?;
            let body = vec![b'x'; APPEND_BYTES];
            let mut done = 0u64;
            while Instant::now() < deadline {
                let r = conn
                    .send_typed("POST", &path, "application/octet-stream", Some(&body))
                    .await?;
                anyhow::ensure!(r.is_success(), "POST {path}: {}", r.status);
                done += 1;
            }
            Ok::<u64, anyhow::Error>(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// The p99 delivery latency (ms) to `READERS` SSE readers.
async fn fanout(addr: SocketAddr, prefix: &str, duration: Duration) -> anyhow::Result<f64> {
    let path = format!("/v1/stream/{prefix}-f");
    create(addr, &path, "text/plain").await?;
    let mut readers = Vec::new();
    let stop_at = Instant::now() + duration + Duration::from_secs(3);
    for _ in 0..READERS {
        let mut conn =
            SseConn::open(addr, &format!("{path}?offset=now&live=sse"), "", 64 * 1024).await?;
        readers.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let mut messages = Vec::new();
            while Instant::now() < stop_at {
                messages.clear();
                match tokio::time::timeout(
                    Duration::from_millis(500),
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
                        if event.event != "data" {
                            continue;
                        }
                        // One data event may hold several appends: |sent_us|…
                        for part in event.data.split('|').filter(|p| !p.is_empty()) {
                            if let Ok(sent) = part.trim().parse::<u64>() {
                                latencies
                                    .push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
                            }
                        }
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut conn = HttpConn::connect(addr).await?;
    let interval = Duration::from_micros(1_000_000 / FANOUT_RATE);
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < duration {
        let due = start + interval * sent as u32;
        tokio::time::sleep_until(due.into()).await;
        let body = format!("|{}|", now_us());
        let r = conn
            .send_typed("POST", &path, "text/plain", Some(body.as_bytes()))
            .await?;
        anyhow::ensure!(r.is_success(), "POST {path}: {}", r.status);
        sent += 1;
    }
    let mut all = Vec::new();
    for reader in readers {
        all.extend(reader.await?);
    }
    anyhow::ensure!(!all.is_empty(), "no deliveries");
    let expected = sent as usize * READERS;
    anyhow::ensure!(
        all.len() * 100 >= expected * 99,
        "only {} of {expected} deliveries arrived",
        all.len()
    );
    Ok(summarise(&mut all).p99_ms)
}

/// MB/s of reading a 100 MB stream from its start.
async fn catchup(addr: SocketAddr, prefix: &str) -> anyhow::Result<f64> {
    let path = format!("/v1/stream/{prefix}-c");
    create(addr, &path, "application/octet-stream").await?;
    let mut conn = HttpConn::connect(addr).await?;
    let chunk: Vec<u8> = (0..CATCHUP_APPEND).map(|i| (i % 251) as u8).collect();
    for _ in 0..CATCHUP_APPENDS {
        let r = conn
            .send_typed("POST", &path, "application/octet-stream", Some(&chunk))
            .await?;
        anyhow::ensure!(r.is_success(), "POST {path}: {}", r.status);
    }
    let started = Instant::now();
    let mut offset = "-1".to_owned();
    let mut bytes = 0usize;
    loop {
        let r = conn
            .send("GET", &format!("{path}?offset={offset}"), None)
            .await?;
        anyhow::ensure!(r.is_success(), "GET {path}: {}", r.status);
        bytes += r.body.len();
        let next = r.next_offset.context("no Stream-Next-Offset")?;
        if r.up_to_date || next == offset {
            break;
        }
        offset = next;
    }
    anyhow::ensure!(
        bytes == CATCHUP_APPENDS * CATCHUP_APPEND,
        "read {bytes} bytes"
    );
    Ok(bytes as f64 / 1_000_000.0 / started.elapsed().as_secs_f64())
}
