//! The measurements. Each takes a freshly started server and returns the
//! figures of one run; every wait has a deadline.
//!
//! `deliveries` (fan-out, flood, scale-out) drives the probe `subscriber`s
//! and `publisher`s; `idle` and `replay` measure on their own. This file
//! holds what they share: the stream they open, the deadlines, the probe.

mod deliveries;
mod idle;
mod publisher;
mod replay;
mod subscriber;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use deliveries::{deliveries, Load};
pub use idle::idle;
pub use publisher::{flood_publisher, Credential, PublisherReport, PUBLISH_PATH};
pub use replay::replay;

/// The subscription of every measuring stream: live only, one channel.
const STREAM_PATH: &str = "/api/stream?channels=bench&replay=0";
/// How long subscribers may take to connect (first `retry:` frame).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Wall-clock time in microseconds since the Unix epoch: the publisher
/// stamps it into the payload, the subscriber subtracts it on receipt.
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn probe_json(seq: u64, sent_us: u64) -> String {
    format!(r#"{{"sent_us":{sent_us},"seq":{seq}}}"#)
}
