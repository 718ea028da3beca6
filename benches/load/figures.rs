//! What each scenario reports: every figure's key, label and precision, and
//! the target it is held to. The measurements fill them in by key.

use crate::stats::{figure, goal, Figure, Target};

const OTHER_CPU: &str = "other CPU: kernel, other processes (cores)";

/// The figures of the scenarios that publish probes and count deliveries.
pub fn delivery_figures(p99_target: Option<f64>) -> Vec<Figure> {
    let p99 = match p99_target {
        Some(limit) => goal("p99_ms", "latency p99 (ms)", 2, Target::AtMost(limit)),
        None => figure("p99_ms", "latency p99 (ms)", 2),
    };
    vec![
        figure("p50_ms", "latency p50 (ms)", 2),
        p99,
        figure("max_ms", "latency max (ms)", 2),
        figure("published", "events published (2xx)", 0),
        figure("publish_rate", "publish rate (events/s)", 0),
        figure("publish_errors", "publish errors", 0),
        figure("publish_rtt_p50_ms", "publish round trip p50 (ms)", 2),
        figure("publish_rtt_p99_ms", "publish round trip p99 (ms)", 2),
        figure("deliveries_expected", "deliveries expected", 0),
        figure("delivery_rate", "deliveries/s (all streams)", 0),
        goal("loss", "loss (deliveries)", 0, Target::AtMost(0.0)),
        goal("duplicates", "duplicates", 0, Target::AtMost(0.0)),
        figure("order_violations", "out-of-order ids", 0),
        figure("unexpected", "unexpected events", 0),
        figure("stream_errors", "streams ended early", 0),
        figure("server_cpu", "server CPU (cores)", 2),
        figure("writer_cpu", "server writer thread CPU (cores)", 2),
        figure("bench_cpu", "bench CPU (cores)", 2),
        figure("other_cpu", OTHER_CPU, 2),
        figure("server_rss_mib", "server RSS (MiB)", 1),
    ]
}

/// The flood scenario's figures: the accepted publish rate is its target.
pub fn flood_figures() -> Vec<Figure> {
    let mut figures = vec![goal(
        "publish_rate",
        "accepted publishes/s (2xx)",
        0,
        Target::AtLeast(15_000.0),
    )];
    figures.extend(
        delivery_figures(None)
            .into_iter()
            .filter(|f| f.key != "publish_rate"),
    );
    figures
}

/// The idle scenario's figures: memory per open stream is its target.
pub fn idle_figures() -> Vec<Figure> {
    vec![
        figure("streams_opened", "streams opened", 0),
        figure("open_errors", "open errors", 0),
        figure("open_rate", "streams opened/s", 0),
        figure("rss_before_mib", "server RSS before (MiB)", 1),
        figure("rss_open_mib", "server RSS, streams open (MiB)", 1),
        goal(
            "rss_per_stream_kib",
            "server RSS per stream (KiB)",
            2,
            Target::AtMost(10.0),
        ),
        figure("bench_rss_mib", "bench RSS, streams open (MiB)", 1),
        figure("other_cpu", OTHER_CPU, 2),
    ]
}

/// The replay scenario's figures: catch-up speed is its target.
pub fn replay_figures() -> Vec<Figure> {
    vec![
        goal(
            "replay_10k_rate",
            "replay 10k (events/s)",
            0,
            Target::AtLeast(100_000.0),
        ),
        figure("replay_10k_ms", "replay 10k, time to last (ms)", 1),
        goal(
            "replay_100k_rate",
            "replay 100k (events/s)",
            0,
            Target::AtLeast(100_000.0),
        ),
        figure("replay_100k_ms", "replay 100k, time to last (ms)", 1),
        goal("loss", "events missing", 0, Target::AtMost(0.0)),
        figure("order_violations", "out-of-order ids", 0),
        figure("batch_publish_rate", "batch publish (events/s)", 0),
        figure("server_rss_mib", "server RSS (MiB)", 1),
        figure("other_cpu", OTHER_CPU, 2),
    ]
}

/// The deltas scenario's figures: no delta may be lost.
pub fn deltas_figures() -> Vec<Figure> {
    vec![
        figure("deltas_1_rate", "1 conversation (deltas/s)", 0),
        figure(
            "delta_rtt_p50_ms",
            "1 conversation, delta round trip p50 (ms)",
            2,
        ),
        figure(
            "delta_rtt_p99_ms",
            "1 conversation, delta round trip p99 (ms)",
            2,
        ),
        figure(
            "deltas_100_rate",
            "100 conversations (deltas/s, all together)",
            0,
        ),
        goal(
            "text_mismatches",
            "messages whose stored text lost a delta",
            0,
            Target::AtMost(0.0),
        ),
    ]
}
