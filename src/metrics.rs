//! Prometheus metrics (`GET /metrics`). Counters and histograms are recorded
//! where things happen (requests, commits); gauges that describe the present
//! (open streams, sessions, database size) are read when scraped.
//!
//! The recorder is global to the process and installed once.

use std::sync::atomic::Ordering;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::hub::Hub;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0];

/// Installs the recorder (once) and returns its handle.
pub fn install() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("switchboard_writer_batch_requests".into()),
                        &BATCH_BUCKETS,
                    )
                })
                .map(PrometheusBuilder::build_recorder);
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    // Another recorder may be installed already (an embedding program).
                    metrics::set_global_recorder(recorder).ok()?;
                    describe();
                    Some(handle)
                }
                Err(err) => {
                    tracing::warn!(error = %err, "metrics disabled");
                    None
                }
            }
        })
        .as_ref()
}

fn describe() {
    metrics::describe_histogram!(
        "switchboard_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "Time to answer a request (for streams: to send the headers), by route"
    );
    metrics::describe_histogram!(
        "switchboard_writer_batch_requests",
        "Requests committed per group commit"
    );
    metrics::describe_histogram!(
        "switchboard_writer_commit_seconds",
        metrics::Unit::Seconds,
        "Time of one group commit, from BEGIN to COMMIT"
    );
    metrics::describe_counter!(
        "switchboard_events_written_total",
        "Events appended to the log"
    );
    metrics::describe_counter!("switchboard_deliveries_total", "Frames handed to streams");
    metrics::describe_counter!(
        "switchboard_lagging_streams_total",
        "Times a stream's queue overflowed and it fell back to the log"
    );
    metrics::describe_gauge!("switchboard_open_streams", "Open SSE streams");
    metrics::describe_gauge!(
        "switchboard_active_sessions",
        "Sessions with at least one open stream"
    );
    metrics::describe_gauge!("switchboard_head_event_id", "The newest event id");
    metrics::describe_gauge!(
        "switchboard_database_bytes",
        "Size of the database file and its WAL"
    );
    metrics::describe_counter!(
        "switchboard_database_reconnects_total",
        "New connections the writer opened after losing one (a restart, a failover)"
    );
    metrics::describe_gauge!(
        "switchboard_database_writable",
        "1 while the last group commit succeeded, 0 since one failed"
    );
    metrics::describe_counter!(
        "switchboard_database_unavailable_seconds_total",
        "Seconds (rounded up) from a failed group commit to the next that succeeded"
    );
    metrics::describe_counter!(
        "switchboard_failover_lost_ranges_total",
        "Failovers that lost events this node had published (its streams resynced)"
    );
    metrics::describe_counter!(
        "switchboard_webhook_requests_total",
        "Webhook requests of subscriptions on channels sent by this node, by result (ok: 2xx)"
    );
    metrics::describe_gauge!(
        "switchboard_subscription_acked_through",
        "The id every matching event up to which a subscription has acknowledged"
    );
    metrics::describe_gauge!(
        "switchboard_subscription_delivered_events",
        "Events a subscription has had acknowledged since it was made (all nodes)"
    );
    metrics::describe_gauge!(
        "switchboard_subscription_failures",
        "A webhook subscription's failed attempts since its last success"
    );
    metrics::describe_gauge!(
        "switchboard_subscription_claims",
        "Claims a pull subscription's workers hold"
    );
}

/// A subscription's state, as `/metrics` reports it (read from the
/// database, so every node reports the same).
pub struct SubscriptionGauges<'a> {
    pub id: &'a str,
    pub kind: &'static str,
    pub acked_through: i64,
    pub delivered: i64,
    pub failures: i64,
    pub claims: usize,
}

/// Sets the gauges of every subscription.
pub fn record_subscriptions(subscriptions: &[SubscriptionGauges<'_>]) {
    for s in subscriptions {
        let labels = [
            ("subscription", s.id.to_owned()),
            ("kind", s.kind.to_owned()),
        ];
        metrics::gauge!("switchboard_subscription_acked_through", &labels)
            .set(s.acked_through as f64);
        metrics::gauge!("switchboard_subscription_delivered_events", &labels)
            .set(s.delivered as f64);
        metrics::gauge!("switchboard_subscription_failures", &labels).set(s.failures as f64);
        metrics::gauge!("switchboard_subscription_claims", &labels).set(s.claims as f64);
    }
}

/// One answered request.
pub fn record_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    metrics::histogram!(
        "switchboard_http_request_duration_seconds",
        "route" => route.to_owned(),
        "method" => method.to_owned(),
        "status" => status.to_string(),
    )
    .record(elapsed.as_secs_f64());
}

/// The writer opened a new connection after losing one.
pub fn record_reconnect() {
    metrics::counter!("switchboard_database_reconnects_total").increment(1);
}

/// A batch could not commit: the database is gone (a primary down, no
/// network, a full disk) until one commits again.
pub fn record_database_down() {
    metrics::gauge!("switchboard_database_writable").set(0.0);
}

/// A batch committed after `down_for` without.
pub fn record_database_back(down_for: Duration) {
    metrics::gauge!("switchboard_database_writable").set(1.0);
    metrics::counter!("switchboard_database_unavailable_seconds_total")
        .increment((down_for.as_millis() as u64).div_ceil(1000));
}

/// One group commit.
pub fn record_commit(requests: usize, elapsed: Duration) {
    metrics::histogram!("switchboard_writer_batch_requests").record(requests as f64);
    metrics::histogram!("switchboard_writer_commit_seconds").record(elapsed.as_secs_f64());
}

/// The text of `/metrics`: gauges are set from the hub and the disk first.
pub fn render(hub: &Hub, sqlite_file: Option<&std::path::Path>) -> String {
    let Some(handle) = install() else {
        return String::new();
    };
    let counters = &hub.counters;
    metrics::counter!("switchboard_events_written_total")
        .absolute(counters.events_published.load(Ordering::Relaxed));
    metrics::counter!("switchboard_deliveries_total")
        .absolute(counters.deliveries.load(Ordering::Relaxed));
    metrics::counter!("switchboard_lagging_streams_total")
        .absolute(counters.lagged.load(Ordering::Relaxed));
    metrics::gauge!("switchboard_open_streams").set(hub.stream_count() as f64);
    metrics::gauge!("switchboard_active_sessions").set(hub.sessions().len() as f64);
    metrics::gauge!("switchboard_head_event_id").set(hub.head_id().get() as f64);
    let Some(database) = sqlite_file else {
        return handle.render();
    };
    let size: u64 = ["", "-wal"]
        .iter()
        .filter_map(|suffix| {
            let mut path = database.as_os_str().to_owned();
            path.push(suffix);
            std::fs::metadata(path).ok()
        })
        .map(|m| m.len())
        .sum();
    metrics::gauge!("switchboard_database_bytes").set(size as f64);
    handle.render()
}
