//! Features, tracks and spikes: persisted, versioned, broadcast to every
//! other session, with If-Match, links, comments, the compatibility API and
//! the exact snapshot → stream hand-over.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, SseStream, TestApp};

const QUIET: Duration = Duration::from_millis(300);

/// Sends a request as session A (agent claude-1) and returns status, headers and body.
async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("X-Agent-ID", "claude-1")
        .header("X-Session-ID", "sess-a");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    send(app, reqwest::Method::POST, path, Some(body), &[]).await
}

async fn watchers(app: &TestApp, channels: &str) -> (SseStream, SseStream) {
    let b = app
        .stream(
            &format!("channels={channels}&replay=0"),
            &[("X-Session-ID", "sess-b")],
        )
        .await;
    let a = app
        .stream(
            &format!("channels={channels}&replay=0"),
            &[("X-Session-ID", "sess-a")],
        )
        .await;
    (a, b)
}

fn assert_validation(status: u16, body: &Value, field: &str) {
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed", "{body}");
    assert_eq!(body["error"]["details"]["field"], field, "{body}");
}

async fn every_write_by_one_session_reaches_the_other_with_its_type_and_payload() {
    let app = spawn_app().await;
    let (mut a, mut b) = watchers(&app, "features,tracks,spikes").await;

    let (status, headers, track) = post(
        &app,
        "/api/tracks",
        json!({"id": "trk-auth", "title": "Auth"}),
    )
    .await;
    assert_eq!(status, 201, "{track}");
    assert_eq!(headers["etag"], "\"1\"");
    let event = b.next_event().await;
    assert_eq!(event.event, "track_created");
    let data = event.json().unwrap();
    assert_eq!(data["channel"], "tracks");
    assert_eq!(data["resource_type"], "track");
    assert_eq!(data["resource_id"], "trk-auth");
    assert_eq!(data["agent_id"], "claude-1");
    assert_eq!(data["payload"], track);

    let (status, _, feature) = post(
        &app,
        "/api/features",
        json!({"title": "Login", "priority": "high", "tags": ["ui"], "track_id": "trk-auth"}),
    )
    .await;
    assert_eq!(status, 201, "{feature}");
    let id = feature["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("feat-"), "{id}");
    assert_eq!(feature["status"], "todo");
    assert_eq!(feature["version"], 1);
    assert_eq!(feature["created_by"], "claude-1");
    let event = b.next_event().await;
    assert_eq!(event.event, "feature_created");
    assert_eq!(event.json().unwrap()["payload"], feature);

    // A PATCH that changes the status: feature_updated, then status_changed.
    let (status, headers, patched) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/features/{id}"),
        Some(json!({"status": "in_progress", "description": "OAuth"})),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(patched["version"], 2);
    let updated = b.next_event().await;
    assert_eq!(updated.event, "feature_updated");
    let payload = updated.json().unwrap()["payload"].clone();
    assert_eq!(payload["status"], "in_progress");
    assert_eq!(payload["changed"], json!(["status", "description"]));
    let changed = b.next_event().await;
    assert_eq!(changed.event, "status_changed");
    assert_eq!(
        changed.json().unwrap()["payload"],
        json!({"id": id, "old_status": "todo", "new_status": "in_progress", "version": 2})
    );

    let (status, _, _) = post(
        &app,
        &format!("/api/features/{id}/status"),
        json!({"new_status": "blocked"}),
    )
    .await;
    assert_eq!(status, 200);
    let event = b.next_event().await;
    assert_eq!(event.event, "status_changed");
    assert_eq!(
        event.json().unwrap()["payload"]["old_status"],
        "in_progress"
    );
    assert_eq!(event.json().unwrap()["payload"]["version"], 3);

    let (status, _, spike) = post(
        &app,
        "/api/spikes",
        json!({"id": "spk-1", "title": "Try OAuth", "findings": "works"}),
    )
    .await;
    assert_eq!(status, 201, "{spike}");
    assert_eq!(spike["findings"], "works");
    assert_eq!(b.next_event().await.event, "spike_created");

    let (status, _, linked) = post(
        &app,
        &format!("/api/features/{id}/links"),
        json!({"linked_feature_id": "spk-1", "link_type": "depends_on"}),
    )
    .await;
    assert_eq!(status, 201, "{linked}");
    assert_eq!(
        linked["links"],
        json!([{"linked_feature_id": "spk-1", "link_type": "depends_on"}])
    );
    let event = b.next_event().await;
    assert_eq!(event.event, "link_added");
    assert_eq!(
        event.json().unwrap()["payload"],
        json!({"id": id, "linked_feature_id": "spk-1", "link_type": "depends_on", "version": 4})
    );

    let (status, _, commented) = post(
        &app,
        &format!("/api/features/{id}/comments"),
        json!({"comment_text": "on it"}),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(commented["comments"][0]["comment_text"], "on it");
    assert_eq!(commented["comments"][0]["author"], "claude-1");
    let event = b.next_event().await;
    assert_eq!(event.event, "comment_added");
    let payload = event.json().unwrap()["payload"].clone();
    assert_eq!(payload["comment_text"], "on it");
    assert_eq!(payload["author"], "claude-1");
    assert_eq!(payload["comment_id"], commented["comments"][0]["id"]);
    assert_eq!(payload["version"], 5);

    let (status, _, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/features/{id}/links/spk-1?link_type=depends_on"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let event = b.next_event().await;
    assert_eq!(event.event, "link_removed");
    assert_eq!(event.json().unwrap()["payload"]["version"], 6);

    let (status, _, gone) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/features/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(gone, json!({"id": id, "version": 7, "deleted": true}));
    let event = b.next_event().await;
    assert_eq!(event.event, "feature_deleted");
    assert_eq!(
        event.json().unwrap()["payload"],
        json!({"id": id, "version": 7})
    );
    let (status, _, body) = send(
        &app,
        reqwest::Method::GET,
        &format!("/api/features/{id}"),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");

    // The author's own session heard none of it.
    a.assert_quiet(QUIET).await;
    b.assert_quiet(QUIET).await;
}

async fn a_stale_if_match_is_refused_with_the_current_item_and_changes_nothing() {
    let app = spawn_app().await;
    post(&app, "/api/features", json!({"id": "feat-x", "title": "X"})).await;
    let (_, _, v2) = send(
        &app,
        reqwest::Method::PATCH,
        "/api/features/feat-x",
        Some(json!({"title": "X2"})),
        &[("If-Match", "\"1\"")],
    )
    .await;
    assert_eq!(v2["version"], 2);
    let (_, mut b) = watchers(&app, "features").await;

    for (method, path, body) in [
        (
            reqwest::Method::PATCH,
            "/api/features/feat-x",
            Some(json!({"title": "stale"})),
        ),
        (
            reqwest::Method::POST,
            "/api/features/feat-x/status",
            Some(json!({"new_status": "done"})),
        ),
        (reqwest::Method::DELETE, "/api/features/feat-x", None),
    ] {
        let (status, _, body) = send(&app, method, path, body, &[("If-Match", "\"1\"")]).await;
        assert_eq!(status, 412, "{body}");
        assert_eq!(body["error"]["code"], "precondition_failed");
        assert_eq!(body["error"]["details"]["current"]["version"], 2);
        assert_eq!(body["error"]["details"]["current"]["title"], "X2");
    }
    b.assert_quiet(QUIET).await;
    let (status, headers, item) = send(
        &app,
        reqwest::Method::GET,
        "/api/features/feat-x",
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers["etag"], "\"2\"");
    assert_eq!(item["title"], "X2");

    // The right version passes; without If-Match the last write wins.
    let (status, _, _) = send(
        &app,
        reqwest::Method::PATCH,
        "/api/features/feat-x",
        Some(json!({"title": "X3"})),
        &[("If-Match", "\"2\"")],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, item) = send(
        &app,
        reqwest::Method::PATCH,
        "/api/features/feat-x",
        Some(json!({"title": "X4"})),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(item["version"], 4);
}

async fn invalid_fields_are_refused_with_the_field_named_and_nothing_written() {
    let app = spawn_app().await;
    post(
        &app,
        "/api/features",
        json!({"id": "feat-ok", "title": "ok"}),
    )
    .await;
    let (_, mut b) = watchers(&app, "features,tracks,spikes").await;
    let item_events = |events: Vec<Value>| {
        events
            .into_iter()
            .filter(|e| e["channel"] != "presence")
            .count()
    };
    let before = item_events(app.all_events().await);

    let cases = [
        (
            "/api/features",
            json!({"title": "t", "status": "finished"}),
            "status",
        ),
        (
            "/api/features",
            json!({"title": "t", "priority": "urgent"}),
            "priority",
        ),
        (
            "/api/features",
            json!({"id": "has space", "title": "t"}),
            "id",
        ),
        ("/api/features", json!({"title": ""}), "title"),
        ("/api/features", json!({"status": "todo"}), "title"),
        ("/api/features", json!({"title": "t", "tags": "ui"}), "tags"),
        (
            "/api/features",
            json!({"title": "t", "track_id": "trk-missing"}),
            "track_id",
        ),
        (
            "/api/tracks",
            json!({"title": "t", "priority": "high"}),
            "priority",
        ),
        (
            "/api/features/feat-ok/status",
            json!({"new_status": "finished"}),
            "new_status",
        ),
        (
            "/api/features/feat-ok/links",
            json!({"linked_feature_id": "feat-nope", "link_type": "blocks"}),
            "linked_feature_id",
        ),
        (
            "/api/features/feat-ok/links",
            json!({"linked_feature_id": "feat-ok", "link_type": "blocks"}),
            "linked_feature_id",
        ),
        (
            "/api/features/feat-ok/links",
            json!({"linked_feature_id": "feat-ok2", "link_type": "likes"}),
            "link_type",
        ),
        (
            "/api/features/feat-ok/comments",
            json!({"comment_text": "  "}),
            "comment_text",
        ),
    ];
    for (path, body, field) in cases {
        let (status, _, answer) = post(&app, path, body.clone()).await;
        assert_validation(status, &answer, field);
    }
    let (status, _, answer) = send(
        &app,
        reqwest::Method::PATCH,
        "/api/features/feat-ok",
        Some(json!({"priority": "urgent"})),
        &[],
    )
    .await;
    assert_validation(status, &answer, "priority");

    b.assert_quiet(QUIET).await;
    assert_eq!(item_events(app.all_events().await), before);
    let (_, _, list) = send(&app, reqwest::Method::GET, "/api/features", None, &[]).await;
    assert_eq!(list["features"].as_array().unwrap().len(), 1);
    let (_, _, item) = send(
        &app,
        reqwest::Method::GET,
        "/api/features/feat-ok",
        None,
        &[],
    )
    .await;
    assert_eq!(item["version"], 1);

    let (status, _, answer) = post(
        &app,
        "/api/features",
        json!({"id": "feat-ok", "title": "again"}),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(answer["error"]["code"], "already_exists");
}

async fn lists_filter_by_status_track_tag_and_last_change() {
    let app = spawn_app().await;
    post(&app, "/api/tracks", json!({"id": "trk-1", "title": "T"})).await;
    post(
        &app,
        "/api/features",
        json!({"id": "f1", "title": "a", "tags": ["ui"], "track_id": "trk-1"}),
    )
    .await;
    post(
        &app,
        "/api/features",
        json!({"id": "f2", "title": "b", "status": "done"}),
    )
    .await;
    let (_, headers, all) = send(&app, reqwest::Method::GET, "/api/features", None, &[]).await;
    let cursor: i64 = headers["x-event-cursor"].to_str().unwrap().parse().unwrap();
    assert_eq!(all["cursor"], cursor);
    assert_eq!(all["features"].as_array().unwrap().len(), 2);
    post(
        &app,
        "/api/features",
        json!({"id": "f3", "title": "c", "tags": ["ui", "api"]}),
    )
    .await;

    let ids = |body: &Value| -> Vec<String> {
        body["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, _, body) = send(
        &app,
        reqwest::Method::GET,
        "/api/features?status=done",
        None,
        &[],
    )
    .await;
    assert_eq!(ids(&body), ["f2"]);
    let (_, _, body) = send(
        &app,
        reqwest::Method::GET,
        "/api/features?track_id=trk-1",
        None,
        &[],
    )
    .await;
    assert_eq!(ids(&body), ["f1"]);
    let (_, _, body) = send(
        &app,
        reqwest::Method::GET,
        "/api/features?tag=ui",
        None,
        &[],
    )
    .await;
    assert_eq!(ids(&body), ["f1", "f3"]);
    let (_, _, body) = send(
        &app,
        reqwest::Method::GET,
        &format!("/api/features?updated_since_id={cursor}"),
        None,
        &[],
    )
    .await;
    assert_eq!(ids(&body), ["f3"]);
    let (status, _, body) = send(
        &app,
        reqwest::Method::GET,
        "/api/features?status=nope",
        None,
        &[],
    )
    .await;
    assert_validation(status, &body, "status");
}

async fn the_compatibility_broadcast_api_creates_missing_items_and_emits_the_documented_types() {
    let app = spawn_app().await;
    let (mut a, mut b) = watchers(&app, "features,spikes").await;
    let _c = app
        .stream("channels=features&replay=0", &[("X-Session-ID", "sess-c")])
        .await;

    let (status, _, answer) = post(
        &app,
        "/api/broadcast/features/feat-legacy",
        json!({"title": "Legacy", "status": "in_progress"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], true);
    assert_eq!(
        answer["clients_notified"], 2,
        "sessions b and c, not a: {answer}"
    );
    let updated = b.next_event().await;
    assert_eq!(updated.event, "feature_updated");
    assert_eq!(answer["event_id"].as_i64(), updated.id_number());
    assert_eq!(answer["timestamp"], updated.json().unwrap()["timestamp"]);
    let payload = updated.json().unwrap()["payload"].clone();
    assert_eq!(payload["title"], "Legacy");
    assert_eq!(payload["version"], 1);
    let status_event = b.next_event().await;
    assert_eq!(status_event.event, "status_changed");
    assert_eq!(
        status_event.json().unwrap()["payload"]["new_status"],
        "in_progress"
    );

    let (status, _, answer) = post(
        &app,
        "/api/broadcast/features/feat-legacy/status",
        json!({"new_status": "done"}),
    )
    .await;
    assert_eq!(status, 200);
    let event = b.next_event().await;
    assert_eq!(event.event, "status_changed");
    assert_eq!(answer["event_id"].as_i64(), event.id_number());
    assert_eq!(
        event.json().unwrap()["payload"]["old_status"],
        "in_progress"
    );

    // Status on a missing item creates it with that status.
    let (status, _, _) = post(
        &app,
        "/api/broadcast/spikes/spk-new/status",
        json!({"new_status": "blocked"}),
    )
    .await;
    assert_eq!(status, 200);
    let event = b.next_event().await;
    assert_eq!(event.event, "status_changed");
    assert_eq!(event.json().unwrap()["payload"]["old_status"], Value::Null);
    let (_, _, spike) = send(&app, reqwest::Method::GET, "/api/spikes/spk-new", None, &[]).await;
    assert_eq!(spike["status"], "blocked");
    assert_eq!(spike["title"], "spk-new");

    let (status, _, answer) = post(
        &app,
        "/api/broadcast/features/feat-other/links",
        json!({"linked_feature_id": "feat-legacy", "link_type": "blocks"}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let event = b.next_event().await;
    assert_eq!(event.event, "link_added");
    assert_eq!(event.json().unwrap()["payload"]["id"], "feat-other");
    let (_, _, other) = send(
        &app,
        reqwest::Method::GET,
        "/api/features/feat-other",
        None,
        &[],
    )
    .await;
    assert_eq!(
        other["links"],
        json!([{"linked_feature_id": "feat-legacy", "link_type": "blocks"}])
    );

    let (status, _, answer) = post(
        &app,
        "/api/broadcast/features/feat-x/status",
        json!({"new_status": "later"}),
    )
    .await;
    assert_validation(status, &answer, "new_status");
    a.assert_quiet(QUIET).await;
}

async fn sync_returns_changes_and_tombstones_after_a_cursor() {
    let app = spawn_app().await;
    post(&app, "/api/features", json!({"id": "f1", "title": "one"})).await;
    post(&app, "/api/features", json!({"id": "f2", "title": "two"})).await;
    let (status, headers, full) = send(&app, reqwest::Method::GET, "/api/sync", None, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(full["full"], true);
    assert_eq!(
        full["collections"]["features"]["changed"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let cursor = full["cursor"].as_i64().unwrap();
    assert_eq!(
        headers["x-event-cursor"].to_str().unwrap(),
        cursor.to_string()
    );

    send(
        &app,
        reqwest::Method::PATCH,
        "/api/features/f1",
        Some(json!({"title": "uno"})),
        &[],
    )
    .await;
    send(&app, reqwest::Method::DELETE, "/api/features/f2", None, &[]).await;
    post(&app, "/api/tracks", json!({"id": "t1", "title": "track"})).await;
    let (_, _, delta) = send(
        &app,
        reqwest::Method::GET,
        &format!("/api/sync?cursor={cursor}&collections=features"),
        None,
        &[],
    )
    .await;
    assert_eq!(delta["full"], false);
    let changed = delta["collections"]["features"]["changed"]
        .as_array()
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0]["title"], "uno");
    assert_eq!(delta["collections"]["features"]["deleted"][0]["id"], "f2");
    assert_eq!(delta["collections"]["features"]["deleted"][0]["version"], 2);
    assert!(delta["collections"].get("tracks").is_none());
    let (status, _, body) = send(
        &app,
        reqwest::Method::GET,
        "/api/sync?collections=widgets",
        None,
        &[],
    )
    .await;
    assert_validation(status, &body, "collections");
}

/// Applies one work-item event to a client's copy, by version.
fn apply(state: &mut BTreeMap<String, Value>, event: &Value) {
    let payload = &event["payload"];
    let id = payload["id"].as_str().unwrap().to_owned();
    let version = payload["version"].as_i64().unwrap();
    match event["type"].as_str().unwrap() {
        "feature_created" | "feature_updated" => {
            let mut item = payload.clone();
            item.as_object_mut().unwrap().remove("changed");
            state.insert(id, item);
        }
        "feature_deleted" => {
            state.remove(&id);
        }
        "status_changed" => {
            let item = state.get_mut(&id).expect("status of a known item");
            item["status"] = payload["new_status"].clone();
            item["version"] = json!(version);
        }
        other => panic!("unexpected event {other}"),
    }
}

async fn a_snapshot_plus_its_cursor_plus_the_stream_ends_with_exactly_the_server_state() {
    let app = spawn_app().await;
    for i in 0..20 {
        post(
            &app,
            "/api/features",
            json!({"id": format!("f{i}"), "title": format!("item {i}")}),
        )
        .await;
    }
    // A writer keeps changing things while the client takes its snapshot.
    let writer_app = reqwest::Client::new();
    let base = app.address.clone();
    let writer = tokio::spawn(async move {
        for round in 0..60 {
            let i = round % 25;
            let url = format!("{base}/api/features/f{i}");
            let result = match round % 3 {
                0 => {
                    writer_app
                        .patch(&url)
                        .json(&json!({"title": format!("r{round}")}))
                        .header("X-Session-ID", "sess-w")
                        .send()
                        .await
                }
                1 => {
                    writer_app
                        .post(format!("{url}/status"))
                        .json(&json!({"new_status": "in_progress"}))
                        .header("X-Session-ID", "sess-w")
                        .send()
                        .await
                }
                _ => {
                    writer_app
                        .post(format!("{base}/api/features"))
                        .json(&json!({"id": format!("g{round}"), "title": "new"}))
                        .header("X-Session-ID", "sess-w")
                        .send()
                        .await
                }
            };
            result.unwrap();
            if round == 40 {
                writer_app
                    .delete(format!("{base}/api/features/f3"))
                    .header("X-Session-ID", "sess-w")
                    .send()
                    .await
                    .unwrap();
            }
        }
    });

    tokio::time::sleep(Duration::from_millis(20)).await;
    let response = app.get("/api/features").send().await.unwrap();
    let cursor = response.headers()["x-event-cursor"]
        .to_str()
        .unwrap()
        .to_owned();
    let snapshot: Value = response.json().await.unwrap();
    let mut state: BTreeMap<String, Value> = snapshot["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["id"].as_str().unwrap().to_owned(), item.clone()))
        .collect();
    let mut stream = app
        .stream(
            "channels=features",
            &[("X-Session-ID", "sess-client"), ("Last-Event-ID", &cursor)],
        )
        .await;
    writer.await.unwrap();

    // Drain until the stream has caught up with the newest event it can
    // get: the log's last `features` event. The log's head may be another
    // channel's (opening the stream records `session_joined` on `presence`,
    // last when the writer finished first).
    let head = app
        .all_events()
        .await
        .iter()
        .rev()
        .find(|event| event["channel"] == "features")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let mut last = cursor.parse::<i64>().unwrap();
    while last < head {
        let event = stream.next_event().await;
        let id = event.id_number().unwrap();
        assert!(id > last, "ids increase: {id} after {last}");
        last = id;
        apply(&mut state, &event.json().unwrap());
    }

    let (_, _, server) = send(&app, reqwest::Method::GET, "/api/features", None, &[]).await;
    let server: BTreeMap<String, Value> = server["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| (item["id"].as_str().unwrap().to_owned(), item.clone()))
        .collect();
    assert_eq!(state.len(), server.len());
    for (id, item) in &server {
        let mine = state.get(id).unwrap_or_else(|| panic!("client lacks {id}"));
        assert_eq!(mine["version"], item["version"], "{id}");
        assert_eq!(mine["title"], item["title"], "{id}");
        assert_eq!(mine["status"], item["status"], "{id}");
    }
}

crate::on_both_backends!(
    every_write_by_one_session_reaches_the_other_with_its_type_and_payload,
    a_stale_if_match_is_refused_with_the_current_item_and_changes_nothing,
    invalid_fields_are_refused_with_the_field_named_and_nothing_written,
    lists_filter_by_status_track_tag_and_last_change,
    the_compatibility_broadcast_api_creates_missing_items_and_emits_the_documented_types,
    sync_returns_changes_and_tombstones_after_a_cursor,
    a_snapshot_plus_its_cursor_plus_the_stream_ends_with_exactly_the_server_state,
);
