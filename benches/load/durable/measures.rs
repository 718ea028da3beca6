//! The measurement of one run of each `ds-*` scenario against one target,
//! and the figures its report shows.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use switchboard::client::sse::SseMessage;

use super::readers::{marker, Readers};
use super::{create, post, DsTarget, REQUEST_TIMEOUT};
use crate::http::HttpConn;
use crate::stats::summarise;
use crate::versus::{open_many, Better, Column, OpenedBy};

/// `ds-append`: producers on `APPEND_STREAMS` streams, bytes per append.
const PRODUCERS: usize = 16;
const APPEND_STREAMS: usize = 4;
const APPEND_BYTES: usize = 256;
/// `ds-fanout`: SSE readers of one stream, and appends/s.
const FANOUT_READERS: usize = 100;
const FANOUT_RATE: u64 = 1000;
/// `ds-flood`: appenders as fast as answered on one stream, SSE readers.
const FLOOD_APPENDERS: usize = 8;
const FLOOD_READERS: usize = 10;
/// `ds-catchup`: JSON messages of `CATCHUP_MESSAGE_BYTES` each, appended
/// one per request over `CATCHUP_CONNECTIONS` connections: switchboard
/// stores a POSTed array as one message (one offset), so appending batches
/// would leave it far fewer messages to read back than a server that keeps
/// each value apart.
const CATCHUP_MESSAGES: u64 = 100_000;
const CATCHUP_MESSAGE_BYTES: usize = 77;
const CATCHUP_CONNECTIONS: usize = 16;

/// `ds-append`'s title.
pub fn append_about(secs: f64) -> String {
    format!(
        "{PRODUCERS} producers on {APPEND_STREAMS} streams, {APPEND_BYTES}-byte appends as fast as answered, {secs} s"
    )
}

/// `ds-fanout`'s title.
pub fn fanout_about(secs: f64) -> String {
    format!("{FANOUT_READERS} SSE readers of one stream × {FANOUT_RATE} appends/s for {secs} s")
}

/// `ds-flood`'s title.
pub fn flood_about(secs: f64) -> String {
    format!(
        "{FLOOD_APPENDERS} appenders on one stream as fast as answered for {secs} s, {FLOOD_READERS} SSE readers"
    )
}

/// `ds-catchup`'s title.
pub fn catchup_about() -> String {
    format!(
        "a catch-up read from offset -1 of {CATCHUP_MESSAGES} JSON messages of {CATCHUP_MESSAGE_BYTES} bytes ({:.1} MB), appended one per request",
        (CATCHUP_MESSAGES as usize * CATCHUP_MESSAGE_BYTES) as f64 / 1e6
    )
}

/// `ds-idle`'s title.
pub fn idle_about(readers: u64) -> String {
    format!(
        "{readers} idle SSE readers of one stream, server RSS growth per reader (a peer is not restarted between runs)"
    )
}

/// The figures of one run of `ds-append`.
pub struct Append {
    /// Answered appends/s.
    rate: f64,
    /// The server's CPU time per answered append (µs).
    server_us: f64,
}

pub const APPEND_COLUMNS: [Column<Append>; 2] = [
    Column {
        name: "appends/s",
        better: Better::Higher,
        value: |r| r.rate,
    },
    Column {
        name: "server CPU µs/append",
        better: Better::Lower,
        value: |r| r.server_us,
    },
];

/// Appends/s of `PRODUCERS` connections appending as fast as answered.
pub async fn append(target: DsTarget, prefix: &str, duration: Duration) -> anyhow::Result<Append> {
    let paths: Vec<String> = (0..APPEND_STREAMS)
        .map(|i| format!("/v1/stream/{prefix}-a{i}"))
        .collect();
    for path in &paths {
        create(target.addr, path, "application/octet-stream").await?;
    }
    let cpu = target.cpu_seconds();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let path = paths[p % APPEND_STREAMS].clone();
        let body = move |_| vec![b'x'; APPEND_BYTES];
        let appending = append_until(
            target.addr,
            path,
            "application/octet-stream",
            deadline,
            body,
        );
        tasks.push(tokio::spawn(appending));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Append {
        rate: total as f64 / elapsed,
        server_us: (target.cpu_seconds() - cpu) * 1e6 / total.max(1) as f64,
    })
}

/// One connection appending `body(seq)` to `path` as fast as answered until
/// `deadline`; the appends answered.
async fn append_until(
    addr: SocketAddr,
    path: String,
    content_type: &'static str,
    deadline: Instant,
    body: impl Fn(u64) -> Vec<u8>,
) -> anyhow::Result<u64> {
    let mut conn = HttpConn::connect(addr).await?;
    let mut done = 0u64;
    while Instant::now() < deadline {
        post(&mut conn, &path, content_type, &body(done)).await?;
        done += 1;
    }
    Ok(done)
}

/// The figures of one run of `ds-fanout` or `ds-flood`.
pub struct Deliveries {
    /// Answered appends/s.
    appends: f64,
    /// Delivery latency p99 (ms), over every marker at every reader.
    p99_ms: f64,
    /// Markers that arrived, over all readers.
    arrived: f64,
    /// Answered appends × readers.
    expected: f64,
    /// The server's CPU time per marker that arrived (µs), from the first
    /// append until the deliveries drained.
    server_us: f64,
    /// Markers per SSE data event: above 1 when the server packs appends.
    packing: f64,
}

/// `ds-fanout`'s figures, the issue's first.
pub const FANOUT_COLUMNS: [Column<Deliveries>; 7] = [
    P99_COLUMN,
    CPU_COLUMN,
    ARRIVED_COLUMN,
    EXPECTED_COLUMN,
    LOST_COLUMN,
    APPENDS_COLUMN,
    PACKING_COLUMN,
];

/// `ds-flood`'s figures, the issue's first.
pub const FLOOD_COLUMNS: [Column<Deliveries>; 7] = [
    APPENDS_COLUMN,
    LOST_COLUMN,
    CPU_COLUMN,
    ARRIVED_COLUMN,
    EXPECTED_COLUMN,
    P99_COLUMN,
    PACKING_COLUMN,
];

const APPENDS_COLUMN: Column<Deliveries> = Column {
    name: "appends/s",
    better: Better::Higher,
    value: |r| r.appends,
};
const P99_COLUMN: Column<Deliveries> = Column {
    name: "delivery p99 ms",
    better: Better::Lower,
    value: |r| r.p99_ms,
};
const CPU_COLUMN: Column<Deliveries> = Column {
    name: "server CPU µs/delivery",
    better: Better::Lower,
    value: |r| r.server_us,
};
const ARRIVED_COLUMN: Column<Deliveries> = Column {
    name: "deliveries arrived",
    better: Better::Higher,
    value: |r| r.arrived,
};
const EXPECTED_COLUMN: Column<Deliveries> = Column {
    name: "deliveries expected",
    better: Better::Neither,
    value: |r| r.expected,
};
const LOST_COLUMN: Column<Deliveries> = Column {
    name: "deliveries lost",
    better: Better::Lower,
    value: |r| r.expected - r.arrived,
};
const PACKING_COLUMN: Column<Deliveries> = Column {
    name: "appends per data event",
    better: Better::Neither,
    value: |r| r.packing,
};

/// `FANOUT_READERS` SSE readers of one stream, then one connection
/// appending `FANOUT_RATE` markers a second for `duration`.
pub async fn fanout(
    target: DsTarget,
    prefix: &str,
    duration: Duration,
) -> anyhow::Result<Deliveries> {
    let path = format!("/v1/stream/{prefix}-f");
    create(target.addr, &path, "text/plain").await?;
    let readers = Readers::open(target.addr, &path, FANOUT_READERS, 1).await?;
    let cpu = target.cpu_seconds();
    let started = Instant::now();
    let mut conn = HttpConn::connect(target.addr).await?;
    let interval = Duration::from_micros(1_000_000 / FANOUT_RATE);
    let mut sent = 0u64;
    while started.elapsed() < duration {
        tokio::time::sleep_until((started + interval * sent as u32).into()).await;
        post(&mut conn, &path, "text/plain", marker(0, sent).as_bytes()).await?;
        sent += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    delivered(&target, readers, cpu, sent, FANOUT_READERS, elapsed).await
}

/// `FLOOD_READERS` SSE readers of one stream, then `FLOOD_APPENDERS`
/// connections appending markers as fast as answered for `duration`.
pub async fn flood(
    target: DsTarget,
    prefix: &str,
    duration: Duration,
) -> anyhow::Result<Deliveries> {
    let path = format!("/v1/stream/{prefix}-x");
    create(target.addr, &path, "text/plain").await?;
    let readers = Readers::open(target.addr, &path, FLOOD_READERS, FLOOD_APPENDERS).await?;
    let cpu = target.cpu_seconds();
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for a in 0..FLOOD_APPENDERS {
        let body = move |seq| marker(a, seq).into_bytes();
        let appending = append_until(target.addr, path.clone(), "text/plain", deadline, body);
        tasks.push(tokio::spawn(appending));
    }
    let mut appended = 0;
    for task in tasks {
        appended += task.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    delivered(&target, readers, cpu, appended, FLOOD_READERS, elapsed).await
}

/// Once `appended` appends were answered in `elapsed` s: waits for the
/// deliveries to `count` readers to drain, reads the server's CPU time
/// since `cpu`, and stops the readers.
async fn delivered(
    target: &DsTarget,
    readers: Readers,
    cpu: f64,
    appended: u64,
    count: usize,
    elapsed: f64,
) -> anyhow::Result<Deliveries> {
    let expected = appended * count as u64;
    readers.drain(expected).await;
    let used = target.cpu_seconds() - cpu;
    let mut reading = readers.finish().await?;
    let arrived = reading.latencies.len();
    anyhow::ensure!(arrived > 0, "no deliveries");
    Ok(Deliveries {
        appends: appended as f64 / elapsed,
        p99_ms: summarise(&mut reading.latencies).p99_ms,
        arrived: arrived as f64,
        expected: expected as f64,
        server_us: used * 1e6 / arrived as f64,
        packing: arrived as f64 / reading.events.max(1) as f64,
    })
}

/// The figures of one run of `ds-catchup`.
pub struct Catchup {
    /// Messages/s of the catch-up read, from its first request to its last
    /// answer.
    rate: f64,
    /// MB/s of the same read (the JSON arrays' bytes).
    mb_per_s: f64,
    /// Requests the read took.
    requests: f64,
    /// Appends/s while filling the stream.
    fill_rate: f64,
}

pub const CATCHUP_COLUMNS: [Column<Catchup>; 4] = [
    Column {
        name: "messages/s",
        better: Better::Higher,
        value: |r| r.rate,
    },
    Column {
        name: "MB/s",
        better: Better::Higher,
        value: |r| r.mb_per_s,
    },
    Column {
        name: "read requests",
        better: Better::Neither,
        value: |r| r.requests,
    },
    Column {
        name: "fill appends/s",
        better: Better::Higher,
        value: |r| r.fill_rate,
    },
];

/// Fills a JSON stream with `CATCHUP_MESSAGES` messages, then reads it from
/// its start, following `Stream-Next-Offset` until `Stream-Up-To-Date`;
/// the messages in the answers are counted once the read is over.
pub async fn catchup(target: DsTarget, prefix: &str) -> anyhow::Result<Catchup> {
    let path = format!("/v1/stream/{prefix}-c");
    create(target.addr, &path, "application/json").await?;
    let started = Instant::now();
    fill(target.addr, &path).await?;
    let fill_rate = CATCHUP_MESSAGES as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    let bodies = read_all(target.addr, &path).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let mut messages = 0;
    for body in &bodies {
        let values: Vec<serde::de::IgnoredAny> =
            serde_json::from_slice(body).context("a catch-up answer is not a JSON array")?;
        messages += values.len() as u64;
    }
    anyhow::ensure!(
        messages == CATCHUP_MESSAGES,
        "read {messages} of {CATCHUP_MESSAGES} messages"
    );
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    Ok(Catchup {
        rate: messages as f64 / elapsed,
        mb_per_s: bytes as f64 / 1e6 / elapsed,
        requests: bodies.len() as f64,
        fill_rate,
    })
}

/// Message `seq` of the catch-up stream: `{"seq":42,"text":"xx…"}`,
/// `CATCHUP_MESSAGE_BYTES` long.
fn json_message(seq: u64) -> String {
    let head = format!(r#"{{"seq":{seq},"text":""#);
    let pad = CATCHUP_MESSAGE_BYTES.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(pad))
}

/// Appends the catch-up messages, one per request, over
/// `CATCHUP_CONNECTIONS` connections.
async fn fill(addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for c in 0..CATCHUP_CONNECTIONS as u64 {
        let path = path.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut conn = HttpConn::connect(addr).await?;
            let mut seq = c;
            while seq < CATCHUP_MESSAGES {
                let body = json_message(seq);
                post(&mut conn, &path, "application/json", body.as_bytes()).await?;
                seq += CATCHUP_CONNECTIONS as u64;
            }
            Ok::<(), anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// The bodies of a read of `path` from its start to where it is up to date.
async fn read_all(addr: SocketAddr, path: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut conn = HttpConn::connect(addr).await?;
    let mut offset = "-1".to_owned();
    let mut bodies = Vec::new();
    loop {
        let url = format!("{path}?offset={offset}");
        let r = tokio::time::timeout(REQUEST_TIMEOUT, conn.send("GET", &url, None))
            .await
            .with_context(|| format!("GET {url} timed out"))??;
        anyhow::ensure!(r.is_success(), "GET {url}: {}", r.status);
        bodies.push(r.body);
        let next = r.next_offset.context("no Stream-Next-Offset")?;
        if r.up_to_date || next == offset {
            return Ok(bodies);
        }
        offset = next;
    }
}

/// The figures of one run of `ds-idle`.
pub struct Idle {
    /// Server RSS growth per reader opened (KiB).
    per_reader_kib: f64,
    /// Readers opened.
    opened: f64,
    /// Server RSS before they opened (MiB).
    before_mib: f64,
}

pub const IDLE_COLUMNS: [Column<Idle>; 3] = [
    Column {
        name: "RSS per reader KiB",
        better: Better::Lower,
        value: |r| r.per_reader_kib,
    },
    Column {
        name: "readers opened",
        better: Better::Higher,
        value: |r| r.opened,
    },
    Column {
        name: "RSS before MiB",
        better: Better::Lower,
        value: |r| r.before_mib,
    },
];

/// Server memory per idle SSE reader: resident memory after opening `count`
/// readers of one stream (each open once its first event, a control event,
/// arrived) minus before, divided by the readers opened.
pub async fn idle(target: DsTarget, prefix: &str, count: usize) -> anyhow::Result<Idle> {
    let path = format!("/v1/stream/{prefix}-i");
    create(target.addr, &path, "text/plain").await?;
    let live = format!("{path}?offset=now&live=sse");
    let first_event: OpenedBy = Some(|m| matches!(m, SseMessage::Event(_)));
    // Warm up: the first readers pay for lazily built structures.
    drop(open_many(target.addr, &live, first_event, 64, 64).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = target.rss_kib();
    let open = open_many(target.addr, &live, first_event, count, 256).await;
    anyhow::ensure!(!open.is_empty(), "no reader could be opened");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = target.rss_kib();
    let opened = open.len() as f64;
    drop(open);
    Ok(Idle {
        per_reader_kib: (after - before) / opened,
        opened,
        before_mib: before / 1024.0,
    })
}
