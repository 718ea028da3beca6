//! Files with locks: first-wins editing, leases, saves, versions, deletes,
//! and what watchers see.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{spawn_app, TestApp};

const QUIET: Duration = Duration::from_millis(300);

/// Sends a request as `session` (agent `agent-{session}`) and returns status
/// and body.
pub(crate) async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    session: &str,
    body: Option<Value>,
) -> (u16, Value) {
    call_with(app, method, path, session, body, &[]).await
}

async fn call_with(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    session: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("X-Agent-ID", format!("agent-{session}"))
        .header("X-Session-ID", session);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn create(app: &TestApp, id: &str, content: &str) -> Value {
    let (status, body) = call(
        app,
        reqwest::Method::POST,
        "/api/files",
        "owner",
        Some(json!({"stable_id": id, "name": format!("{id}.md"), "content": content})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body
}

async fn lock(app: &TestApp, id: &str, session: &str, ttl: Option<u64>) -> (u16, Value) {
    let body = ttl.map(|t| json!({ "ttl_seconds": t }));
    call(
        app,
        reqwest::Method::POST,
        &format!("/api/files/{id}/lock"),
        session,
        body,
    )
    .await
}

async fn when_twenty_sessions_race_for_a_free_lock_exactly_one_wins_every_time() {
    let app = spawn_app().await;
    for round in 0..10 {
        let id = format!("race-{round}");
        create(&app, &id, "x").await;
        let attempts = (0..20).map(|i| {
            let app = &app;
            let id = id.clone();
            async move { lock(app, &id, &format!("s{round}-{i}"), None).await }
        });
        let results = futures_util::future::join_all(attempts).await;
        let winners: Vec<&Value> = results
            .iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        let winner = winners[0]["session_id"].as_str().unwrap();
        for (status, body) in results.iter().filter(|(s, _)| *s != 200) {
            assert_eq!(*status, 409, "{body}");
            assert_eq!(body["error"]["code"], "lock_held");
            assert_eq!(body["error"]["details"]["lock_session_id"], winner);
            assert_eq!(
                body["error"]["details"]["locked_by"],
                format!("agent-{winner}")
            );
        }
        let (_, listed) = call(
            &app,
            reqwest::Method::GET,
            &format!("/api/files/{id}"),
            "x",
            None,
        )
        .await;
        assert_eq!(listed["lock_session_id"], winner);
    }
}

async fn a_watcher_sees_the_whole_editing_sequence_in_order_and_the_actor_sees_none() {
    let app = spawn_app().await;
    let mut watcher = app
        .stream("channels=files&replay=0", &[("X-Session-ID", "watcher")])
        .await;
    let mut editor = app
        .stream("channels=files&replay=0", &[("X-Session-ID", "editor")])
        .await;

    let (status, created) = call(
        &app,
        reqwest::Method::POST,
        "/api/files",
        "editor",
        Some(json!({"stable_id": "doc", "name": "doc.md", "content": "v1", "label": "Draft"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(created["version"], 1);
    assert!(created.get("content").is_none(), "metadata only: {created}");
    let (status, derived) = call(
        &app,
        reqwest::Method::POST,
        "/api/files",
        "editor",
        Some(json!({"name": "copy.md", "content": "v1", "derived_from": "doc"})),
    )
    .await;
    assert_eq!(status, 201, "{derived}");
    let copy_id = derived["stable_id"].as_str().unwrap().to_owned();
    assert!(copy_id.starts_with("file-"));

    let (status, acquired) = lock(&app, "doc", "editor", Some(30)).await;
    assert_eq!(status, 200, "{acquired}");
    assert_eq!(acquired["locked_by"], "agent-editor");
    let (status, saved) = call(
        &app,
        reqwest::Method::PUT,
        "/api/files/doc",
        "editor",
        Some(json!({"content": "v2"})),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["version"], 2);
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/files/doc/lock",
        "editor",
        None,
    )
    .await;
    assert_eq!(status, 200);
    lock(&app, "doc", "editor", None).await;
    let (status, deleted) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/files/doc",
        "editor",
        None,
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted, json!({"stable_ids": ["doc"]}));

    let expected = [
        "file_created",
        "file_created",
        "lock_acquired",
        "file_saved",
        "lock_released",
        "lock_acquired",
        "files_deleted",
    ];
    let events = watcher.take_events(expected.len()).await;
    let types: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(types, expected);
    let ids: Vec<i64> = events.iter().map(|e| e.id_number().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for event in &events {
        let data = event.json().unwrap();
        assert_eq!(data["channel"], "files");
        assert!(
            !data["data"].to_string().contains("v2") && data["payload"].get("content").is_none(),
            "no content in events: {data}"
        );
    }
    assert_eq!(events[1].json().unwrap()["payload"]["derived_from"], "doc");
    let acquired_event = events[2].json().unwrap()["payload"].clone();
    assert_eq!(acquired_event["stable_id"], "doc");
    assert_eq!(acquired_event["locked_by"], "agent-editor");
    assert_eq!(acquired_event["session_id"], "editor");
    assert_eq!(acquired_event["expires_at"], acquired["expires_at"]);
    assert_eq!(events[3].json().unwrap()["payload"]["version"], 2);
    assert_eq!(
        events[4].json().unwrap()["payload"],
        json!({"stable_id": "doc", "reason": "released"})
    );
    assert_eq!(
        events[6].json().unwrap()["payload"],
        json!({"stable_ids": ["doc"]})
    );
    editor.assert_quiet(QUIET).await;

    let (status, body) = call(&app, reqwest::Method::GET, "/api/files/doc", "x", None).await;
    assert_eq!(status, 404, "{body}");
}

async fn a_lease_runs_out_and_is_released_with_reason_expired() {
    let app = spawn_app().await;
    create(&app, "lease", "x").await;
    let mut watcher = app
        .stream("channels=files&replay=0", &[("X-Session-ID", "watcher")])
        .await;
    let (status, _) = lock(&app, "lease", "holder", Some(1)).await;
    assert_eq!(status, 200);
    let started = Instant::now();
    assert_eq!(watcher.next_event().await.event, "lock_acquired");
    let released = watcher.next_event().await;
    let waited = started.elapsed();
    assert_eq!(released.event, "lock_released");
    assert_eq!(
        released.json().unwrap()["payload"],
        json!({"stable_id": "lease", "reason": "expired"})
    );
    assert!(
        waited >= Duration::from_millis(700),
        "released too early: {waited:?}"
    );
    assert!(
        waited <= Duration::from_millis(2500),
        "released too late: {waited:?}"
    );

    // The lock is free: another session takes it, the old holder cannot save.
    let (status, _) = lock(&app, "lease", "next", None).await;
    assert_eq!(status, 200);
    let (status, body) = call(
        &app,
        reqwest::Method::PUT,
        "/api/files/lease",
        "holder",
        Some(json!({"content": "late"})),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "lock_required");
}

async fn renewing_a_held_lock_extends_it_without_waking_anyone() {
    let app = spawn_app().await;
    create(&app, "renew", "x").await;
    let mut watcher = app
        .stream("channels=files&replay=0", &[("X-Session-ID", "watcher")])
        .await;
    let (_, first) = lock(&app, "renew", "holder", Some(10)).await;
    assert_eq!(watcher.next_event().await.event, "lock_acquired");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (status, second) = lock(&app, "renew", "holder", Some(60)).await;
    assert_eq!(status, 200);
    assert!(second["expires_at"].as_str().unwrap() > first["expires_at"].as_str().unwrap());
    watcher.assert_quiet(QUIET).await;
    let (_, file) = call(&app, reqwest::Method::GET, "/api/files/renew", "x", None).await;
    assert_eq!(file["lock_expires_at"], second["expires_at"]);
}

async fn a_renewal_without_a_ttl_keeps_the_leases_own_length() {
    let app = spawn_app().await;
    create(&app, "long", "x").await;
    let seconds_left = |lock: &Value| {
        let at =
            chrono::DateTime::parse_from_rfc3339(lock["expires_at"].as_str().unwrap()).unwrap();
        at.signed_duration_since(chrono::Utc::now()).num_seconds()
    };
    let (status, first) = lock(&app, "long", "holder", Some(120)).await;
    assert_eq!(status, 200);
    assert!((115..=120).contains(&seconds_left(&first)), "{first}");
    let (status, renewed) = call(
        &app,
        reqwest::Method::POST,
        "/api/files/long/lock",
        "holder",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        (115..=120).contains(&seconds_left(&renewed)),
        "a 120 s lease renewed with {{}} stays 120 s, not the 60 s default: {renewed}"
    );
    // A new lease without a ttl gets the default (60 s).
    let (status, _) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/files/long/lock",
        "holder",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (_, fresh) = lock(&app, "long", "other", None).await;
    assert!((55..=60).contains(&seconds_left(&fresh)), "{fresh}");
}

async fn only_the_holder_releases_and_saves_or_deletes_without_the_lock_change_nothing() {
    let app = spawn_app().await;
    create(&app, "guarded", "original").await;
    let mut watcher = app
        .stream("channels=files&replay=0", &[("X-Session-ID", "watcher")])
        .await;

    // Nobody holds it: saving or deleting is refused.
    let (status, body) = call(
        &app,
        reqwest::Method::PUT,
        "/api/files/guarded",
        "intruder",
        Some(json!({"content": "evil"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("lock_required"))
    );
    let (status, body) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/files/guarded",
        "intruder",
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("lock_required"))
    );
    let (status, body) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/files/guarded/lock",
        "intruder",
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");

    lock(&app, "guarded", "holder", None).await;
    assert_eq!(watcher.next_event().await.event, "lock_acquired");
    let (status, body) = call(
        &app,
        reqwest::Method::DELETE,
        "/api/files/guarded/lock",
        "intruder",
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("lock_held"))
    );
    assert_eq!(body["error"]["details"]["locked_by"], "agent-holder");
    let (status, _) = call(
        &app,
        reqwest::Method::PUT,
        "/api/files/guarded",
        "intruder",
        Some(json!({"content": "evil"})),
    )
    .await;
    assert_eq!(status, 409);
    let response = app.post("/api/files/guarded/lock").send().await.unwrap();
    assert_eq!(response.status(), 400, "a lock needs a session");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    watcher.assert_quiet(QUIET).await;

    let (_, file) = call(&app, reqwest::Method::GET, "/api/files/guarded", "x", None).await;
    assert_eq!(file["content"], "original");
    assert_eq!(file["version"], 1);

    // A stale If-Match is refused even for the holder.
    let (status, body) = call_with(
        &app,
        reqwest::Method::PUT,
        "/api/files/guarded",
        "holder",
        Some(json!({"content": "new"})),
        &[("If-Match", "\"7\"")],
    )
    .await;
    assert_eq!(status, 412, "{body}");
    assert_eq!(body["error"]["details"]["current"]["version"], 1);
    let (status, _) = call_with(
        &app,
        reqwest::Method::PUT,
        "/api/files/guarded",
        "holder",
        Some(json!({"content": "new"})),
        &[("If-Match", "\"1\"")],
    )
    .await;
    assert_eq!(status, 200);
}

async fn a_bulk_delete_with_one_file_not_locked_by_the_caller_changes_nothing() {
    let app = spawn_app().await;
    for id in ["a", "b", "c"] {
        create(&app, id, id).await;
    }
    lock(&app, "a", "me", None).await;
    lock(&app, "b", "me", None).await;
    lock(&app, "c", "someone-else", None).await;
    let mut watcher = app
        .stream("channels=files&replay=0", &[("X-Session-ID", "watcher")])
        .await;

    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/files/delete",
        "me",
        Some(json!({"stable_ids": ["a", "b", "c"]})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "lock_required");
    assert_eq!(body["error"]["details"]["stable_ids"], json!(["c"]));
    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/files/delete",
        "me",
        Some(json!({"stable_ids": ["a", "nope"]})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    watcher.assert_quiet(QUIET).await;
    let (_, list) = call(&app, reqwest::Method::GET, "/api/files", "x", None).await;
    assert_eq!(list["files"].as_array().unwrap().len(), 3);

    let (status, body) = call(
        &app,
        reqwest::Method::POST,
        "/api/files/delete",
        "me",
        Some(json!({"stable_ids": ["a", "b"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let events = watcher.take_events(2).await;
    assert!(events.iter().all(|e| e.event == "files_deleted"));
    let (_, list) = call(&app, reqwest::Method::GET, "/api/files", "x", None).await;
    let left: Vec<&str> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["stable_id"].as_str().unwrap())
        .collect();
    assert_eq!(left, ["c"]);
    assert_eq!(list["files"][0]["locked_by"], "agent-someone-else");
}

async fn every_save_keeps_a_numbered_version() {
    let app = spawn_app().await;
    create(&app, "hist", "one").await;
    lock(&app, "hist", "me", None).await;
    for content in ["two", "three"] {
        let (status, _) = call(
            &app,
            reqwest::Method::PUT,
            "/api/files/hist",
            "me",
            Some(json!({"content": content})),
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, list) = call(
        &app,
        reqwest::Method::GET,
        "/api/files/hist/versions",
        "x",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let versions: Vec<i64> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    for (n, content) in [(1, "one"), (2, "two"), (3, "three")] {
        let (status, version) = call(
            &app,
            reqwest::Method::GET,
            &format!("/api/files/hist/versions/{n}"),
            "x",
            None,
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(version["content"], content);
        assert_eq!(
            version["saved_by"],
            if n == 1 { "agent-owner" } else { "agent-me" }
        );
    }
    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        "/api/files/hist/versions/9",
        "x",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Snapshots carry the cursor, and /api/sync reports files.
    let response = app.get("/api/files").send().await.unwrap();
    let cursor: i64 = response.headers()["x-event-cursor"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let (_, sync) = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/sync?collections=files&cursor={}", cursor - 1),
        "x",
        None,
    )
    .await;
    assert_eq!(
        sync["collections"]["files"]["changed"][0]["stable_id"],
        "hist"
    );
    assert_eq!(sync["collections"]["files"]["changed"][0]["version"], 3);
}

async fn invalid_file_requests_are_refused_with_the_field_named() {
    let app = spawn_app().await;
    create(&app, "ok", "x").await;
    let cases = [
        (json!({"content": "x"}), "name"),
        (json!({"name": "a"}), "content"),
        (
            json!({"name": "a", "content": "x", "stable_id": "bad id"}),
            "stable_id",
        ),
        (
            json!({"name": "a", "content": "x", "derived_from": "missing"}),
            "derived_from",
        ),
        (json!({"name": "", "content": "x"}), "name"),
    ];
    for (body, field) in cases {
        let (status, answer) =
            call(&app, reqwest::Method::POST, "/api/files", "me", Some(body)).await;
        assert_eq!(status, 422, "{answer}");
        assert_eq!(answer["error"]["details"]["field"], field);
    }
    let (status, answer) = lock(&app, "ok", "me", Some(3601)).await;
    assert_eq!(
        (status, answer["error"]["details"]["field"].as_str()),
        (422, Some("ttl_seconds"))
    );
    let (status, answer) = call(
        &app,
        reqwest::Method::POST,
        "/api/files",
        "me",
        Some(json!({"stable_id": "ok", "name": "a", "content": "x"})),
    )
    .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("already_exists"))
    );
}

crate::on_both_backends!(
    when_twenty_sessions_race_for_a_free_lock_exactly_one_wins_every_time,
    a_watcher_sees_the_whole_editing_sequence_in_order_and_the_actor_sees_none,
    a_lease_runs_out_and_is_released_with_reason_expired,
    renewing_a_held_lock_extends_it_without_waking_anyone,
    a_renewal_without_a_ttl_keeps_the_leases_own_length,
    only_the_holder_releases_and_saves_or_deletes_without_the_lock_change_nothing,
    a_bulk_delete_with_one_file_not_locked_by_the_caller_changes_nothing,
    every_save_keeps_a_numbered_version,
    invalid_file_requests_are_refused_with_the_field_named,
);
