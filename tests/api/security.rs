//! Tokens, scopes, tickets, open-mode binding and limits.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";
const FEATURES: &str = "features-token-0123456789";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A tokens file in its own temp dir (kept alive by the returned guard).
fn tokens_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[tokens]]
token = "{ADMIN}"
agent_id = "claude-1"
read = ["*"]
write = ["*"]

[[tokens]]
token_sha256 = "{}"
agent_id = "watcher"
read = ["*"]
write = []

[[tokens]]
token = "{FEATURES}"
agent_id = "feature-bot"
read = ["features"]
write = ["features"]
"#,
            sha256_hex(READER)
        ),
    )
    .unwrap();
    (dir, path)
}

async fn secured(
    configure: impl FnOnce(&mut switchboard::config::ServeArgs),
) -> (TestApp, tempfile::TempDir) {
    let (dir, path) = tokens_file();
    let app = spawn_app_with(|a| {
        a.tokens = Some(path);
        configure(a);
    })
    .await;
    (app, dir)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn every_route_without_a_token_is_refused_with_401() {
    let (app, _dir) = secured(|_| {}).await;
    let routes = [
        ("GET", "/api/stream"),
        ("GET", "/api/events"),
        ("GET", "/api/events/1"),
        ("POST", "/api/channels/global/events"),
        ("POST", "/api/events/batch"),
        ("GET", "/api/features"),
        ("POST", "/api/features"),
        ("GET", "/api/features/f1"),
        ("PATCH", "/api/features/f1"),
        ("DELETE", "/api/features/f1"),
        ("POST", "/api/features/f1/status"),
        ("POST", "/api/features/f1/links"),
        ("DELETE", "/api/features/f1/links/f2"),
        ("POST", "/api/features/f1/comments"),
        ("GET", "/api/tracks"),
        ("GET", "/api/spikes"),
        ("POST", "/api/broadcast/features/f1"),
        ("POST", "/api/broadcast/features/f1/status"),
        ("POST", "/api/broadcast/features/f1/links"),
        ("GET", "/api/sync"),
        ("GET", "/api/files"),
        ("POST", "/api/files"),
        ("GET", "/api/files/a"),
        ("PUT", "/api/files/a"),
        ("DELETE", "/api/files/a"),
        ("POST", "/api/files/delete"),
        ("POST", "/api/files/a/lock"),
        ("DELETE", "/api/files/a/lock"),
        ("GET", "/api/files/a/versions"),
        ("GET", "/api/files/a/versions/1"),
        ("GET", "/api/conversations"),
        ("POST", "/api/conversations"),
        ("GET", "/api/conversations/sync"),
        ("GET", "/api/conversations/c"),
        ("PATCH", "/api/conversations/c"),
        ("DELETE", "/api/conversations/c"),
        ("GET", "/api/conversations/c/messages"),
        ("POST", "/api/conversations/c/messages"),
        ("POST", "/api/conversations/c/messages/m/delta"),
        ("POST", "/api/conversations/c/messages/m/complete"),
        ("GET", "/api/stats"),
        ("GET", "/api/sessions"),
        ("POST", "/api/stream-tickets"),
        ("GET", "/metrics"),
    ];
    for (method, path) in routes {
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .header("Content-Type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path}");
        assert!(response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
        // A wrong token is refused the same way.
        let response = app
            .client
            .request(method.parse().unwrap(), app.url(path))
            .header("Authorization", "Bearer not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{method} {path} with a wrong token");
    }
    for public in ["/healthz", "/readyz", "/", "/client.js", "/client.d.ts"] {
        assert_eq!(
            app.get(public).send().await.unwrap().status(),
            200,
            "{public}"
        );
    }
    assert!(
        app.all_events_as(ADMIN).await.is_empty(),
        "nothing was written"
    );
}

async fn a_token_acts_as_its_agent_and_a_different_agent_id_is_forbidden() {
    let (app, _dir) = secured(|_| {}).await;
    let response = app
        .post("/api/channels/global/events")
        .header("Authorization", bearer(ADMIN))
        .header("X-Agent-ID", "someone-else")
        .json(&json!({"type": "note"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "forbidden");
    let stored: Value = app
        .post("/api/channels/global/events")
        .header("Authorization", bearer(ADMIN))
        .json(&json!({"type": "note"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["agent_id"], "claude-1", "the token names the agent");
}

async fn a_read_only_token_reads_but_cannot_publish() {
    let (app, _dir) = secured(|_| {}).await;
    let response = app
        .post("/api/channels/global/events")
        .header("Authorization", bearer(READER))
        .json(&json!({"type": "note"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = app
        .post("/api/features")
        .header("Authorization", bearer(READER))
        .json(&json!({"title": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = app
        .post("/api/events/batch")
        .header("Authorization", bearer(READER))
        .json(&json!({"events": [{"channel": "global", "type": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let response = app
        .get("/api/events")
        .header("Authorization", bearer(READER))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(app.all_events_as(ADMIN).await.is_empty());
}

async fn a_token_limited_to_features_sees_no_files_events_live_or_replayed() {
    let (app, _dir) = secured(|_| {}).await;
    let admin = |path: &str| app.post(path).header("Authorization", bearer(ADMIN));
    admin("/api/features")
        .json(&json!({"id": "f-before", "title": "a"}))
        .send()
        .await
        .unwrap();
    admin("/api/files")
        .json(&json!({"stable_id": "secret", "name": "s", "content": "x"}))
        .send()
        .await
        .unwrap();

    // Replayed: only features.
    let response = app
        .get("/api/stream?channels=*&last_event_id=0")
        .header("Authorization", bearer(FEATURES))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = crate::helpers::SseStream::new(response);
    let first = stream.next_event().await;
    assert_eq!(first.event, "feature_created");

    // Live: only features.
    admin("/api/files")
        .json(&json!({"stable_id": "secret2", "name": "s", "content": "x"}))
        .send()
        .await
        .unwrap();
    admin("/api/features")
        .json(&json!({"id": "f-after", "title": "b"}))
        .send()
        .await
        .unwrap();
    let next = stream.next_event().await;
    assert_eq!(next.event, "feature_created");
    assert_eq!(next.json().unwrap()["resource_id"], "f-after");
    stream.assert_quiet(Duration::from_millis(300)).await;

    // History and reads are narrowed too.
    let log: Value = app
        .get("/api/events")
        .header("Authorization", bearer(FEATURES))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["channel"] == "features"),
        "{log}"
    );
    assert_eq!(log["events"].as_array().unwrap().len(), 2);
    for path in [
        "/api/files",
        "/api/files/secret",
        "/api/sync?collections=files",
    ] {
        let response = app
            .get(path)
            .header("Authorization", bearer(FEATURES))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{path}");
    }
    let sync: Value = app
        .get("/api/sync")
        .header("Authorization", bearer(FEATURES))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(sync["collections"].get("files").is_none());
    assert_eq!(
        sync["collections"]["features"]["changed"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

async fn a_stream_ticket_works_once_and_expires() {
    let (app, _dir) = secured(|a| a.ticket_ttl = Duration::from_millis(400)).await;
    let ticket = |app: &TestApp| {
        let request = app
            .post("/api/stream-tickets")
            .header("Authorization", bearer(ADMIN));
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 201);
            let body: Value = response.json().await.unwrap();
            assert!(body["expires_at"].as_str().unwrap().ends_with('Z'));
            body["ticket"].as_str().unwrap().to_owned()
        }
    };
    let first = ticket(&app).await;
    let response = app
        .get(&format!("/api/stream?ticket={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let again = app
        .get(&format!("/api/stream?ticket={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401, "a ticket is single use");

    let late = ticket(&app).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let expired = app
        .get(&format!("/api/stream?ticket={late}"))
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 401, "an expired ticket is refused");

    // The token also works as access_token or as the cookie.
    let response = app
        .get(&format!("/api/events?access_token={READER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .get("/api/events")
        .header("Cookie", format!("switchboard_token={READER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn writes_over_the_agents_rate_get_429_with_retry_after() {
    let app = spawn_app_with(|a| a.rate_limit = 5).await;
    let mut limited = None;
    for i in 0..30 {
        let response = app
            .post("/api/channels/global/events")
            .header("X-Agent-ID", "hasty")
            .json(&json!({"type": "note", "data": {"i": i}}))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("the 11th write in a burst is refused");
    assert!(
        response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // Another agent is not slowed, and reads are not limited.
    let other = app
        .post("/api/channels/global/events")
        .header("X-Agent-ID", "patient")
        .json(&json!({"type": "note"}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 201);
    assert_eq!(
        app.get("/api/events")
            .header("X-Agent-ID", "hasty")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

async fn streams_beyond_the_maximum_get_503_with_retry_after() {
    let app = spawn_app_with(|a| a.max_streams = 2).await;
    let _a = app.stream("replay=0", &[]).await;
    let _b = app.stream("replay=0", &[]).await;
    let response = app.get("/api/stream?replay=0").send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
}

async fn open_mode_refuses_a_public_address_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("open.db");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--bind",
            "0.0.0.0:0",
            "--database",
            db.to_str().unwrap(),
        ])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--tokens") && stderr.contains("--allow-open"),
        "{stderr}"
    );
}

crate::on_both_backends!(
    every_route_without_a_token_is_refused_with_401,
    a_token_acts_as_its_agent_and_a_different_agent_id_is_forbidden,
    a_read_only_token_reads_but_cannot_publish,
    a_token_limited_to_features_sees_no_files_events_live_or_replayed,
    a_stream_ticket_works_once_and_expires,
    writes_over_the_agents_rate_get_429_with_retry_after,
    streams_beyond_the_maximum_get_503_with_retry_after,
    open_mode_refuses_a_public_address_unless_told,
);
