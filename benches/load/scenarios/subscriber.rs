//! A measuring stream: it reads the probes the publishers stamped and
//! records latency, loss, duplicates and order until told to stop.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use serde::Deserialize;
use tokio::sync::watch;
use tokio::time::timeout;

use super::{unix_micros, CONNECT_TIMEOUT, STREAM_PATH};
use crate::http::SseConn;
use crate::stats::SeqSet;
use switchboard::client::sse::{SseEvent, SseMessage};

/// The part of a delivered event the bench reads: the probe it published.
#[derive(Deserialize)]
struct WireEvent {
    payload: Probe,
}

#[derive(Deserialize)]
struct Probe {
    sent_us: u64,
    seq: u64,
}

#[derive(Default)]
pub struct SubscriberReport {
    pub latencies_us: Vec<u32>,
    pub received: SeqSet,
    pub duplicates: u64,
    /// Events whose id was not above the previous one.
    pub order_violations: u64,
    /// Events that carried no probe (none are expected on the channel).
    pub foreign: u64,
    pub error: Option<String>,
}

impl SubscriberReport {
    /// Records one event read at `now` (µs); true when it was a probe not
    /// received before.
    fn record(&mut self, event: &SseEvent, now: u64, last_id: &mut i64) -> bool {
        if let Some(id) = event.id_number() {
            if id <= *last_id {
                self.order_violations += 1;
            }
            *last_id = (*last_id).max(id);
        }
        let Ok(wire) = serde_json::from_str::<WireEvent>(&event.data) else {
            self.foreign += 1;
            return false;
        };
        if self.received.insert(wire.payload.seq) {
            let latency = now.saturating_sub(wire.payload.sent_us);
            self.latencies_us
                .push(latency.min(u64::from(u32::MAX)) as u32);
            true
        } else {
            self.duplicates += 1;
            false
        }
    }
}

/// Shared by a scenario's subscribers.
#[derive(Clone)]
pub struct SubscriberShared {
    /// The nodes; subscriber `i` connects to `addrs[i % len]`.
    pub addrs: Arc<Vec<SocketAddr>>,
    pub connected: Arc<AtomicUsize>,
    /// Distinct probes received, summed over subscribers.
    pub progress: Arc<AtomicU64>,
    pub stop: watch::Receiver<bool>,
}

/// One measuring stream: records, per delivered probe, receive time minus
/// the publisher's stamp, until told to stop.
pub async fn subscriber(
    shared: SubscriberShared,
    index: usize,
    expected: usize,
) -> SubscriberReport {
    let addr = shared.addrs[index % shared.addrs.len()];
    let mut report = SubscriberReport {
        latencies_us: Vec::with_capacity(expected),
        ..Default::default()
    };
    let mut stop = shared.stop;
    let opened = tokio::select! {
        _ = stop.changed() => return report,
        opened = timeout(CONNECT_TIMEOUT, SseConn::open(addr, STREAM_PATH, "", 16 * 1024)) => opened,
    };
    let mut conn = match opened {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            report.error = Some(format!("connect: {err}"));
            return report;
        }
        Err(_) => {
            report.error = Some("connect: timed out".into());
            return report;
        }
    };
    let mut connected = false;
    let mut last_id = 0i64;
    let mut messages = Vec::new();
    // One stop future for the whole loop, not a new one per read.
    let stopped = stop.changed();
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            read = conn.read_some(&mut messages) => {
                if let Err(err) = read {
                    report.error = Some(err.to_string());
                    break;
                }
            }
        }
        let now = unix_micros();
        let mut fresh = 0;
        for message in messages.drain(..) {
            match message {
                SseMessage::Retry(_) => {
                    if !connected {
                        connected = true;
                        shared.connected.fetch_add(1, Ordering::SeqCst);
                    }
                }
                SseMessage::Comment(_) => {}
                SseMessage::Event(event) => {
                    if report.record(&event, now, &mut last_id) {
                        fresh += 1;
                    }
                }
            }
        }
        if fresh > 0 {
            shared.progress.fetch_add(fresh, Ordering::Relaxed);
        }
    }
    report
}
