//! SSE readers of one Durable Stream (`?offset=now&live=sse`), counting the
//! appends that reach them. Every append carries a marker
//! `|appender:seq:sent_us|`; a server may pack several appends into one
//! `data` event (the crates.io server does when they are already there),
//! so every marker in every data event counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio::time::timeout;

use super::{now_us, REQUEST_TIMEOUT};
use crate::http::SseConn;
use switchboard::client::sse::SseMessage;

/// After the last append: how long deliveries may stop before the readers
/// count as drained, and how long they may take at most.
const DRAIN_QUIET: Duration = Duration::from_secs(1);
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// The marker of one append: which appender, its sequence number, and the
/// wall-clock time (µs) just before it was sent.
pub fn marker(appender: usize, seq: u64) -> String {
    format!("|{appender}:{seq}:{}|", now_us())
}

/// The markers `(appender, seq, sent_us)` in one data event's payload.
fn markers(data: &str) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
    data.split('|').filter_map(|part| {
        let mut fields = part.trim().split(':');
        let appender = fields.next()?.parse().ok()?;
        let seq = fields.next()?.parse().ok()?;
        let sent = fields.next()?.parse().ok()?;
        Some((appender, seq, sent))
    })
}

/// What one reader saw.
#[derive(Debug, Default)]
pub struct Reading {
    /// Delivery latency of every marker that arrived (µs).
    pub latencies: Vec<u32>,
    /// Markers out of their appender's sequence: after a gap, repeated or
    /// reordered (each appender's appends are answered one after another,
    /// so one stream must hold them in order).
    pub irregular: u64,
    /// Data events that held at least one marker.
    pub events: u64,
}

/// The readers of one stream.
pub struct Readers {
    stop: Arc<AtomicBool>,
    /// Markers arrived over all readers.
    arrived: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<Reading>>,
}

impl Readers {
    /// Opens `count` readers of `path` from now on, each open once its first
    /// event (the control event both servers send first) has arrived;
    /// markers of `appenders` appenders are checked for their order.
    pub async fn open(
        addr: SocketAddr,
        path: &str,
        count: usize,
        appenders: usize,
    ) -> anyhow::Result<Self> {
        let mut readers = Readers {
            stop: Arc::new(AtomicBool::new(false)),
            arrived: Arc::new(AtomicU64::new(0)),
            tasks: Vec::with_capacity(count),
        };
        let live = format!("{path}?offset=now&live=sse");
        for _ in 0..count {
            let conn = timeout(REQUEST_TIMEOUT, open_one(addr, &live))
                .await
                .context("opening an SSE reader timed out")??;
            let (stop, arrived) = (readers.stop.clone(), readers.arrived.clone());
            readers
                .tasks
                .push(tokio::spawn(read(conn, stop, arrived, vec![0; appenders])));
        }
        Ok(readers)
    }

    /// Markers arrived so far, over all readers.
    pub fn arrived(&self) -> u64 {
        self.arrived.load(Ordering::Relaxed)
    }

    /// Waits until `expected` markers arrived, or none did for
    /// `DRAIN_QUIET`, for at most `DRAIN_LIMIT`.
    pub async fn drain(&self, expected: u64) {
        let limit = Instant::now() + DRAIN_LIMIT;
        let (mut seen, mut moved) = (self.arrived(), Instant::now());
        while seen < expected && moved.elapsed() < DRAIN_QUIET && Instant::now() < limit {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.arrived();
            if now != seen {
                (seen, moved) = (now, Instant::now());
            }
        }
    }

    /// Stops the readers; what they all saw.
    pub async fn finish(self) -> anyhow::Result<Reading> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Reading::default();
        for task in self.tasks {
            let reading = task.await?;
            all.latencies.extend(reading.latencies);
            all.irregular += reading.irregular;
            all.events += reading.events;
        }
        if all.irregular > 0 {
            eprintln!(
                "  {} marker(s) arrived out of sequence (gaps, repeats or reordering)",
                all.irregular
            );
        }
        Ok(all)
    }
}

/// Opens one reader and reads until its first event.
async fn open_one(addr: SocketAddr, live: &str) -> anyhow::Result<SseConn> {
    let mut conn = SseConn::open(addr, live, "", 64 * 1024).await?;
    let mut messages = Vec::new();
    while !messages.iter().any(|m| matches!(m, SseMessage::Event(_))) {
        messages.clear();
        conn.read_some(&mut messages).await?;
    }
    Ok(conn)
}

/// One reader until `stop`: the latency of each marker of each data event,
/// counted into `arrived`; `next` is each appender's next sequence number.
async fn read(
    mut conn: SseConn,
    stop: Arc<AtomicBool>,
    arrived: Arc<AtomicU64>,
    mut next: Vec<u64>,
) -> Reading {
    let mut reading = Reading::default();
    let mut messages = Vec::new();
    while conn.read_until(&stop, &mut messages).await {
        let now = now_us();
        let before = reading.latencies.len();
        for message in &messages {
            let SseMessage::Event(event) = message else {
                continue;
            };
            if event.event != "data" {
                continue;
            }
            let mut found = false;
            for (appender, seq, sent) in markers(&event.data) {
                found = true;
                let latency = now.saturating_sub(sent).min(u64::from(u32::MAX));
                reading.latencies.push(latency as u32);
                if let Some(due) = next.get_mut(appender) {
                    reading.irregular += u64::from(seq != *due);
                    *due = seq + 1;
                }
            }
            reading.events += u64::from(found);
        }
        let got = reading.latencies.len() - before;
        arrived.fetch_add(got as u64, Ordering::Relaxed);
    }
    reading
}
