//! The probe publishers: each sends `POST /api/channels/bench/events` on one
//! keep-alive connection, stamping every probe with its real send time, with
//! the credential it is given (none by default).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{timeout, timeout_at, Instant, MissedTickBehavior};

use super::{probe_json, unix_micros, REQUEST_TIMEOUT};
use crate::http::HttpConn;
use crate::stats::SeqSet;

pub const PUBLISH_PATH: &str = "/api/channels/bench/events";

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

/// What a publisher sends in `Authorization`.
#[derive(Debug, Clone)]
pub enum Credential {
    /// Nothing: an open server.
    None,
    /// The same bearer token on every request.
    Bearer(Arc<str>),
    /// A different bearer token on every request: the next one of a pool
    /// shared by all publishers, from the start again after the last.
    Pool {
        tokens: Arc<Vec<String>>,
        next: Arc<AtomicUsize>,
    },
}

impl Credential {
    /// Sets the connection's bearer for its next request.
    fn apply(&self, conn: &mut HttpConn) {
        match self {
            Credential::None => {}
            Credential::Bearer(token) => conn.set_bearer(Some(token)),
            Credential::Pool { tokens, next } => {
                let i = next.fetch_add(1, Ordering::Relaxed) % tokens.len().max(1);
                conn.set_bearer(tokens.get(i).map(String::as_str));
            }
        }
    }

    /// Whether every request needs a credential of its own.
    fn per_request(&self) -> bool {
        matches!(self, Credential::Pool { .. })
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

/// Publishes back to back on one keep-alive connection until `until`, each
/// request with `credential`.
pub async fn flood_publisher(
    addr: SocketAddr,
    seqs: Arc<AtomicU64>,
    until: Instant,
    credential: Credential,
) -> PublisherReport {
    let mut report = PublisherReport::default();
    let mut conn = match HttpConn::connect(addr).await {
        Ok(conn) => conn,
        Err(err) => {
            report.fail(format!("connect: {err}"));
            return report;
        }
    };
    credential.apply(&mut conn);
    let per_request = credential.per_request();
    while Instant::now() < until {
        let errors = report.errors;
        if per_request {
            credential.apply(&mut conn);
        }
        publish_one(&mut conn, &seqs, &mut report).await;
        if report.errors > errors {
            // Do not spin on a server that refuses.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    report
}
