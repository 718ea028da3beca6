//! Operations: metrics, stats and sessions.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

/// Parses the Prometheus text format strictly enough to catch a broken
/// exposition: every sample line is `name{labels} value`, every value a number.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let kind = rest.split_whitespace().nth(1).expect("a type");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "{line}"
                );
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unclosed labels: {line}");
        }
        samples.insert(series.to_owned(), value);
    }
    samples
}

async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let response = app.get("/metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    parse_prometheus(&response.text().await.unwrap())
}

fn value(samples: &HashMap<String, f64>, name: &str) -> f64 {
    *samples
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_the_counters_move() {
    let app = spawn_app().await;
    let before = scrape(&app).await;
    let mut stream = app
        .stream("channels=global&replay=0", &[("X-Session-ID", "watcher")])
        .await;
    for i in 0..3 {
        app.publish("global", "tick", json!({"i": i}), Some("writer"))
            .await;
    }
    stream.take_events(3).await;
    let after = scrape(&app).await;
    assert!(
        value(&after, "switchboard_events_written_total")
            >= value(&before, "switchboard_events_written_total") + 3.0
    );
    assert!(
        value(&after, "switchboard_deliveries_total")
            >= value(&before, "switchboard_deliveries_total") + 3.0
    );
    assert!(value(&after, "switchboard_open_streams") >= 1.0);
    assert!(value(&after, "switchboard_database_bytes") > 0.0);
    let publishes = after
        .iter()
        .filter(|(series, _)| {
            series.starts_with("switchboard_http_request_duration_seconds_count")
                && series.contains("route=\"/api/channels/{channel}/events\"")
        })
        .map(|(_, v)| *v)
        .sum::<f64>();
    assert!(
        publishes >= 3.0,
        "request latency is recorded by route pattern"
    );
    assert!(after
        .keys()
        .any(|k| k.starts_with("switchboard_writer_commit_seconds_bucket")));
    assert!(after
        .keys()
        .any(|k| k.starts_with("switchboard_writer_batch_requests_bucket")));
}

#[tokio::test]
async fn stats_and_sessions_describe_the_open_streams() {
    let app = spawn_app().await;
    let _a = app
        .stream(
            "channels=features,files&replay=0",
            &[("X-Session-ID", "tab-1"), ("X-Agent-ID", "alice")],
        )
        .await;
    let _b = app
        .stream(
            "channels=features&replay=0",
            &[("X-Session-ID", "tab-1"), ("X-Agent-ID", "alice")],
        )
        .await;
    let _c = app
        .stream("channels=conversation:*&replay=0&session_id=tab-2", &[])
        .await;
    let stats: Value = app
        .get("/api/stats")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["connected_clients"], 3);
    assert_eq!(stats["active_sessions"], 2);
    assert_eq!(stats["streams_per_pattern"]["features"], 2);
    assert_eq!(stats["streams_per_pattern"]["files"], 1);
    assert_eq!(stats["streams_per_pattern"]["conversation:*"], 1);
    assert!(stats["head_id"].as_i64().unwrap() >= 0);
    assert!(stats["uptime_seconds"].is_u64());

    let sessions: Value = app
        .get("/api/sessions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = sessions["sessions"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["session_id"], "tab-1");
    assert_eq!(list[0]["agent_id"], "alice");
    assert_eq!(list[0]["connections"], 2);
    assert_eq!(list[0]["channels"], json!(["features", "files"]));
    assert!(list[0]["connected_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(list[1]["session_id"], "tab-2");
}
