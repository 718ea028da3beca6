//! The probe publishers: each sends `POST /api/channels/bench/events` on one
//! keep-alive connection, stamping every probe with its real send time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout, timeout_at, Instant, MissedTickBehavior};

use super::{probe_json, unix_micros, REQUEST_TIMEOUT};
use crate::http::HttpConn;
use crate::stats::SeqSet;

const PUBLISH_PATH: &str = "/api/channels/bench/events";

#[derive(Default)]
pub struct PublisherReport {
    /// Sequence numbers answered with 2xx.
    pub ok: SeqSet,
    /// Round-trip time of every successful publish, in µs.
    pub rtts_us: Vec<u32>,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl PublisherReport {
    fn fail(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }

    pub fn merge(&mut self, other: PublisherReport) {
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
pub async fn paced_publisher(
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
pub async fn flood_publisher(
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
