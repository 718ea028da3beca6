//! The replay scenario: how fast a stream resuming from `Last-Event-ID: 0`
//! catches up with 10,000 and then 100,000 stored events.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Deserialize;
use tokio::time::{timeout, timeout_at, Instant};

use super::{mib, probe_json, unix_micros, REQUEST_TIMEOUT};
use crate::http::{HttpConn, SseConn};
use crate::server::{CpuMeter, ServerProcess};
use crate::stats::RunFigures;
use switchboard::client::sse::SseMessage;

/// Events per `POST /api/events/batch`.
const BATCH: usize = 1000;

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
