//! The command line as a user runs it: `tail` resumes across a server restart
//! without a duplicate; `publish` publishes one event.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::spawn_app;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

async fn tail_resumes_across_a_server_restart_without_a_duplicate() {
    let app = spawn_app().await;
    let port = app.port;
    let tail = tokio::process::Command::new(BIN)
        .args([
            "tail",
            "--url",
            &app.address,
            "--channels",
            "global",
            "--last-event-id",
            "0",
            "--max-events",
            "10",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("tail starts");
    let mut published = Vec::new();
    for i in 0..5 {
        published.push(
            app.publish("global", "before", json!({ "i": i }), Some("writer"))
                .await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    // Let tail receive a few, then restart the server under it (same port).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app = app
        .restart_with(|a| a.bind = format!("127.0.0.1:{port}"))
        .await;
    for i in 0..5 {
        published.push(
            app.publish("global", "after", json!({ "i": i }), Some("writer"))
                .await["id"]
                .as_i64()
                .unwrap(),
        );
    }
    let output = tokio::time::timeout(Duration::from_secs(30), tail.wait_with_output())
        .await
        .expect("tail prints 10 events and exits")
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON event per line"))
        .collect();
    let ids: Vec<i64> = lines.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(
        ids, published,
        "every event once, in order, across the restart"
    );
    assert_eq!(lines[0]["type"], "before");
    assert_eq!(lines[9]["type"], "after");
    assert_eq!(lines[9]["payload"], json!({ "i": 4 }));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("resuming after"),
        "tail reconnected: {stderr}"
    );
}

async fn publish_prints_the_stored_event_and_fails_clearly_on_bad_input() {
    let app = spawn_app().await;
    let output = tokio::process::Command::new(BIN)
        .args([
            "publish",
            "--url",
            &app.address,
            "--agent-id",
            "cli",
            "--session-id",
            "term-1",
            "global",
            "note",
            r#"{"text": "hi"}"#,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let event: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(event["channel"], "global");
    assert_eq!(event["type"], "note");
    assert_eq!(event["agent_id"], "cli");
    assert_eq!(event["session_id"], "term-1");
    assert_eq!(event["payload"], json!({"text": "hi"}));
    assert_eq!(app.all_events().await.len(), 1);

    for args in [
        vec!["global", "note", "{not json"],
        vec!["features", "note", "{}"],
    ] {
        let output = tokio::process::Command::new(BIN)
            .args(["publish", "--url", &app.address])
            .args(&args)
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(!output.stderr.is_empty());
    }
    let forbidden = tokio::process::Command::new(BIN)
        .args(["publish", "--url", &app.address, "features", "note"])
        .output()
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&forbidden.stderr).contains("forbidden"));
    assert_eq!(
        app.all_events().await.len(),
        1,
        "nothing else was published"
    );
}

crate::on_both_backends!(
    tail_resumes_across_a_server_restart_without_a_duplicate,
    publish_prints_the_stored_event_and_fails_clearly_on_bad_input,
);
