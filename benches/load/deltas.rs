//! The `deltas` scenario: streaming chat messages are many small writes.
//! How many `POST …/delta` per second does one conversation sustain (one
//! client appending as fast as it is answered), and how many do 100
//! conversations sustain together (100 clients, one conversation each)? Each
//! delta is durable before it is answered, so this measures the group commit.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::task::JoinSet;
use tokio::time::{timeout, Instant};

use super::http::HttpConn;
use super::server::ServerProcess;
use super::stats::RunFigures;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const PIECE: &str = "token ";

async fn post(conn: &mut HttpConn, path: &str, body: String) -> anyhow::Result<Vec<u8>> {
    let response = timeout(
        REQUEST_TIMEOUT,
        conn.send("POST", path, Some(body.as_bytes())),
    )
    .await
    .context("a request timed out")??;
    if !response.is_success() {
        bail!(
            "{path}: status {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    Ok(response.body)
}

/// Creates conversation `c{i}` with a streaming message `m{i}`.
async fn prepare(conn: &mut HttpConn, i: usize) -> anyhow::Result<()> {
    post(
        conn,
        "/api/conversations",
        format!(r#"{{"id":"c{i}","title":"bench {i}"}}"#),
    )
    .await?;
    post(
        conn,
        &format!("/api/conversations/c{i}/messages"),
        format!(r#"{{"id":"m{i}","role":"assistant","status":"streaming"}}"#),
    )
    .await?;
    Ok(())
}

/// Appends deltas to `c{i}`/`m{i}` until `until`; returns the round trips.
async fn append_until(addr: SocketAddr, i: usize, until: Instant) -> anyhow::Result<Vec<Duration>> {
    let mut conn = HttpConn::connect(addr).await?;
    let path = format!("/api/conversations/c{i}/messages/m{i}/delta");
    let body = format!(r#"{{"text":"{PIECE}"}}"#);
    let mut rtts = Vec::new();
    while Instant::now() < until {
        let sent = Instant::now();
        post(&mut conn, &path, body.clone()).await?;
        rtts.push(sent.elapsed());
    }
    Ok(rtts)
}

/// The message's text length on the server, to check nothing was lost.
/// The connection may have sat idle past the server's keep-alive: start afresh.
async fn stored_length(conn: &mut HttpConn, i: usize) -> anyhow::Result<usize> {
    conn.reset();
    let response = timeout(
        REQUEST_TIMEOUT,
        conn.send("GET", &format!("/api/conversations/c{i}/messages"), None),
    )
    .await??;
    let page: serde_json::Value = serde_json::from_slice(&response.body)?;
    Ok(page["messages"][0]["content"].as_str().map_or(0, str::len))
}

pub async fn deltas(server: &mut ServerProcess, duration: Duration) -> anyhow::Result<RunFigures> {
    let addr = server.addr;
    let mut conn = HttpConn::connect(addr).await?;
    for i in 0..=100 {
        prepare(&mut conn, i).await?;
    }
    let mut figures = RunFigures::new();

    // One conversation, one client.
    let started = Instant::now();
    let mut rtts = append_until(addr, 0, started + duration).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let single = rtts.len();
    figures.insert("deltas_1_rate", single as f64 / elapsed);
    rtts.sort_unstable();
    figures.insert(
        "delta_rtt_p50_ms",
        rtts[rtts.len() / 2].as_secs_f64() * 1000.0,
    );
    figures.insert(
        "delta_rtt_p99_ms",
        rtts[rtts.len() * 99 / 100].as_secs_f64() * 1000.0,
    );
    let mut mismatched = usize::from(stored_length(&mut conn, 0).await? != single * PIECE.len());

    // 100 conversations, one client each, at once.
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = JoinSet::new();
    for i in 1..=100 {
        tasks.spawn(async move {
            append_until(addr, i, until)
                .await
                .map(|rtts| (i, rtts.len()))
        });
    }
    let mut total = 0;
    let mut per_conversation = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (i, count) = done??;
        total += count;
        per_conversation.push((i, count));
    }
    let elapsed = started.elapsed().as_secs_f64();
    figures.insert("deltas_100_rate", total as f64 / elapsed);
    for (i, count) in per_conversation {
        if stored_length(&mut conn, i).await? != count * PIECE.len() {
            mismatched += 1;
        }
    }
    figures.insert("text_mismatches", mismatched as f64);
    server.check_alive()?;
    Ok(figures)
}
