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

#[tokio::test]
async fn a_failing_command_prints_one_line_without_a_backtrace() {
    let output = tokio::process::Command::new(BIN)
        .args(["migrate", "--database", "/nonexistent/dir/x.db"])
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    assert!(
        lines[0].starts_with("switchboard: cannot migrate /nonexistent/dir/x.db: "),
        "{stderr}"
    );
    assert!(!stderr.contains("backtrace"), "{stderr}");
    assert!(!stderr.contains("Error:"), "{stderr}");
}

async fn next_log_line<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
) -> Option<String> {
    tokio::time::timeout(crate::helpers::DEADLINE, lines.next_line())
        .await
        .expect("a log line in time")
        .unwrap()
}

/// The server log: one line per request, also for client errors (no WARN
/// line with a debug dump beside it); the line carries the error code.
#[tokio::test]
async fn a_client_error_is_one_log_line_carrying_its_code() {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
        .arg("--database")
        .arg(dir.path().join("log.db"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line: String = next_log_line(&mut lines).await.expect("listening");
        if line.contains("switchboard listening") {
            let entry: Value = serde_json::from_str(&line).unwrap();
            break entry["port"].as_u64().unwrap();
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let answers = [
        client.get(format!("{base}/api/nope")).send().await.unwrap(),
        client
            .get(format!("{base}/api/events?after=x"))
            .send()
            .await
            .unwrap(),
        client
            .post(format!("{base}/api/channels/global/events"))
            .json(&json!([]))
            .send()
            .await
            .unwrap(),
        client.get(format!("{base}/healthz")).send().await.unwrap(),
    ];
    let statuses: Vec<u16> = answers.iter().map(|a| a.status().as_u16()).collect();
    assert_eq!(statuses, [404, 400, 422, 200]);
    let mut logged = Vec::new();
    loop {
        let line = next_log_line(&mut lines).await.expect("the request lines");
        let entry: Value = serde_json::from_str(&line).unwrap();
        let done = line.contains("/healthz");
        assert!(
            !matches!(entry["level"].as_str(), Some("WARN" | "ERROR")),
            "{entry}"
        );
        // Start-up lines of the HTTP server may still come: only lines
        // logged inside a request count.
        if entry["span"]["request_id"].is_string() {
            logged.push(entry);
        }
        if done {
            break;
        }
    }
    assert_eq!(logged.len(), 4, "one line per request: {logged:#?}");
    for entry in &logged {
        assert_eq!(entry["level"], "INFO", "{entry}");
        assert_eq!(entry["message"], "request answered", "{entry}");
    }
    let codes: Vec<&Value> = logged.iter().map(|e| &e["span"]["error"]).collect();
    assert_eq!(
        codes,
        [
            &json!("not_found"),
            &json!("bad_request"),
            &json!("validation_failed"),
            &Value::Null
        ]
    );
}

crate::on_both_backends!(
    tail_resumes_across_a_server_restart_without_a_duplicate,
    publish_prints_the_stored_event_and_fails_clearly_on_bad_input,
);

/// Runs `switchboard subscriptions ARGS` against `app`: its exit status,
/// stdout parsed as JSON (null when empty) and stderr.
async fn subscriptions(app: &crate::helpers::TestApp, args: &[&str]) -> (bool, Value, String) {
    let output = tokio::process::Command::new(BIN)
        .args(["subscriptions", "--url", &app.address])
        .args(args)
        .env_remove("SWITCHBOARD_TOKEN")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let json = if stdout.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    };
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), json, stderr)
}

#[tokio::test]
async fn subscriptions_are_made_claimed_acked_and_deleted_from_the_command_line() {
    let app = spawn_app().await;
    let (done, made, _) = subscriptions(
        &app,
        &[
            "create",
            "builds",
            "--channel",
            "jobs/*",
            "--type",
            "queued",
            "--start",
            "beginning",
        ],
    )
    .await;
    assert!(done);
    assert_eq!(made["kind"], "pull");
    assert_eq!(made["types"], json!(["queued"]));
    for kind in ["queued", "started", "queued"] {
        let r = app
            .post("/api/channels/jobs%2Fa/events")
            .json(&json!({ "type": kind }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let (done, claimed, _) =
        subscriptions(&app, &["claim", "builds", "--max", "5", "--worker", "cron"]).await;
    assert!(done);
    let ids: Vec<i64> = claimed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 3], "only the queued events");
    assert_eq!(claimed["claim"]["worker"], "cron");
    let claim = claimed["claim"]["id"].as_str().unwrap().to_owned();
    let (done, acked, _) = subscriptions(&app, &["ack", "builds", &claim]).await;
    assert!(done);
    assert_eq!(acked, json!({ "acked": 2, "acked_through": 3 }));
    let (done, listed, _) = subscriptions(&app, &["list"]).await;
    assert!(done);
    assert_eq!(listed["subscriptions"][0]["delivered"], 2);

    // Refusals: the server's error, a non-zero exit, nothing changed.
    let (done, _, stderr) = subscriptions(
        &app,
        &[
            "create",
            "hook",
            "--channel",
            "jobs/*",
            "--webhook",
            "http://10.0.0.1/hook",
        ],
    )
    .await;
    assert!(!done);
    assert!(stderr.contains("webhook.url"), "{stderr}");
    let (done, _, stderr) = subscriptions(&app, &["ack", "builds", &claim]).await;
    assert!(!done);
    assert!(stderr.contains("claim_lost"), "{stderr}");
    let (done, deleted, _) = subscriptions(&app, &["delete", "builds"]).await;
    assert!(done);
    assert_eq!(deleted, Value::Null);
    let (done, listed, _) = subscriptions(&app, &["list"]).await;
    assert!(done);
    assert_eq!(listed, json!({ "subscriptions": [] }));
}
