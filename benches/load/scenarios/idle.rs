//! The idle scenario: server memory per open stream that receives nothing.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use super::{mib, REQUEST_TIMEOUT, STREAM_PATH};
use crate::http::SseConn;
use crate::server::{rss_kib, CpuMeter, ServerProcess};
use crate::stats::RunFigures;
use switchboard::client::sse::SseMessage;

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
