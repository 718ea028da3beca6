//! Conversations: the list in sync across sessions, streaming messages that a
//! late joiner reproduces byte for byte, token totals, and the sync endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{spawn_app, SseStream, TestApp};

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    session: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .client
        .request(method, app.url(path))
        .header("X-Agent-ID", "chat-app")
        .header("X-Session-ID", session);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(app: &TestApp, path: &str, session: &str, body: Value) -> Value {
    let (status, answer) = call(app, reqwest::Method::POST, path, session, Some(body)).await;
    assert!((200..300).contains(&status), "{path}: {status} {answer}");
    answer
}

/// A client's copy of the conversation list, kept by applying events by version.
#[derive(Default)]
struct ListCopy {
    items: BTreeMap<String, Value>,
    /// Versions of deleted conversations, so a late `created` is not a ghost.
    tombstones: BTreeMap<String, i64>,
    last_event_id: i64,
}

impl ListCopy {
    async fn load(app: &TestApp) -> ListCopy {
        let response = app.get("/api/conversations").send().await.unwrap();
        let cursor: i64 = response.headers()["x-event-cursor"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body: Value = response.json().await.unwrap();
        let items = body["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["id"].as_str().unwrap().to_owned(), c.clone()))
            .collect();
        ListCopy {
            items,
            tombstones: BTreeMap::new(),
            last_event_id: cursor,
        }
    }

    fn apply(&mut self, event: &Value) {
        let id = event["id"].as_i64().unwrap();
        assert!(
            id > self.last_event_id,
            "duplicate or out of order: {id} after {}",
            self.last_event_id
        );
        self.last_event_id = id;
        let payload = &event["payload"];
        let key = payload["id"].as_str().unwrap().to_owned();
        match event["type"].as_str().unwrap() {
            "conversation_created" | "conversation_updated" => self.upsert(payload),
            "conversation_deleted" => self.delete(&key, payload["version"].as_i64().unwrap()),
            other => panic!("unexpected {other}"),
        }
    }

    fn upsert(&mut self, summary: &Value) {
        let key = summary["id"].as_str().unwrap().to_owned();
        let version = summary["version"].as_i64().unwrap();
        let newer = self
            .items
            .get(&key)
            .is_none_or(|c| c["version"].as_i64().unwrap() < version)
            && self
                .tombstones
                .get(&key)
                .is_none_or(|deleted| *deleted < version);
        if newer {
            self.items.insert(key, summary.clone());
        }
    }

    fn delete(&mut self, key: &str, version: i64) {
        self.items.remove(key);
        self.tombstones.insert(key.to_owned(), version);
    }

    async fn drain(&mut self, stream: &mut SseStream, until: i64) {
        while self.last_event_id < until {
            let event = stream.next_event().await;
            self.apply(&event.json().unwrap());
        }
    }

    /// A session applies its own write from the answer it got.
    fn apply_own(&mut self, answer: &Value) {
        if answer["deleted"] == true {
            self.delete(
                answer["id"].as_str().unwrap(),
                answer["version"].as_i64().unwrap(),
            );
        } else {
            self.upsert(answer);
        }
    }

    fn summary(&self) -> Vec<(String, i64, String)> {
        self.items
            .values()
            .map(|c| {
                (
                    c["id"].as_str().unwrap().to_owned(),
                    c["version"].as_i64().unwrap(),
                    c["title"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// The newest event on `conversations` that `session` should receive (its
/// own are not sent to it: it applies its own writes from their answers).
async fn head_for(app: &TestApp, session: &str) -> i64 {
    app.all_events()
        .await
        .iter()
        .filter(|e| e["channel"] == "conversations" && e["session_id"] != session)
        .map(|e| e["id"].as_i64().unwrap())
        .max()
        .unwrap_or(0)
}

async fn the_list_agrees_across_three_sessions_through_deletes_and_reconnects() {
    let app = spawn_app().await;
    post(
        &app,
        "/api/conversations",
        "a",
        json!({"id": "c0", "title": "Before"}),
    )
    .await;

    let mut copies = Vec::new();
    let mut streams = Vec::new();
    for session in ["a", "b", "c"] {
        let copy = ListCopy::load(&app).await;
        let cursor = copy.last_event_id.to_string();
        let stream = app
            .stream(
                "channels=conversations",
                &[("X-Session-ID", session), ("Last-Event-ID", &cursor)],
            )
            .await;
        copies.push(copy);
        streams.push(stream);
    }

    let sessions = ["a", "b", "c"];
    for i in 1..=3 {
        let answer = post(
            &app,
            "/api/conversations",
            "b",
            json!({"id": format!("c{i}"), "title": format!("Chat {i}")}),
        )
        .await;
        copies[1].apply_own(&answer);
    }
    // Session b drops its stream mid-way…
    copies[1]
        .drain(&mut streams[1], head_for(&app, "b").await)
        .await;
    let resume_from = copies[1].last_event_id.to_string();
    drop(streams.remove(1));

    let writes: [(usize, reqwest::Method, &str, Option<Value>); 3] = [
        (
            2,
            reqwest::Method::PATCH,
            "/api/conversations/c1",
            Some(json!({"title": "Renamed"})),
        ),
        (0, reqwest::Method::DELETE, "/api/conversations/c2", None),
        (2, reqwest::Method::DELETE, "/api/conversations/c0", None),
    ];
    for (who, method, path, body) in writes {
        let (status, answer) = call(&app, method, path, sessions[who], body).await;
        assert_eq!(status, 200, "{answer}");
        copies[who].apply_own(&answer);
    }
    // A message changes the summary too (message_count), announced to all.
    post(
        &app,
        "/api/conversations/c3/messages",
        "w",
        json!({"role": "user", "content": "hi"}),
    )
    .await;

    // …and comes back with Last-Event-ID.
    let resumed = app
        .stream(
            "channels=conversations",
            &[("X-Session-ID", "b"), ("Last-Event-ID", &resume_from)],
        )
        .await;
    streams.insert(1, resumed);

    let server = ListCopy::load(&app).await.summary();
    assert_eq!(
        server
            .iter()
            .map(|(id, _, title)| (id.as_str(), title.as_str()))
            .collect::<Vec<_>>(),
        [("c1", "Renamed"), ("c3", "Chat 3")]
    );
    for (i, (copy, stream)) in copies.iter_mut().zip(streams.iter_mut()).enumerate() {
        copy.drain(stream, head_for(&app, sessions[i]).await).await;
        assert_eq!(
            copy.summary(),
            server,
            "session {}: no stale, duplicate or ghost rows",
            sessions[i]
        );
        stream.assert_quiet(Duration::from_millis(200)).await;
    }
    let c3 = &copies[0].items["c3"];
    assert_eq!(c3["message_count"], 1);
}

/// The text a client builds from `message_created` and `message_delta`,
/// checking each delta's offset against what it has.
fn apply_message_event(text: &mut String, event: &Value) {
    let payload = &event["payload"];
    match event["type"].as_str().unwrap() {
        "message_created" => *text = payload["content"].as_str().unwrap().to_owned(),
        "message_delta" => {
            assert_eq!(
                payload["offset"].as_i64().unwrap(),
                text.encode_utf16().count() as i64,
                "offset = what I have"
            );
            text.push_str(payload["text"].as_str().unwrap());
        }
        "message_completed" => assert_eq!(payload["content"].as_str().unwrap(), text),
        _ => {}
    }
}

async fn a_late_joiner_mid_stream_ends_with_the_same_text_and_tokens() {
    let app = spawn_app().await;
    post(
        &app,
        "/api/conversations",
        "writer",
        json!({"id": "chat", "title": "Chat"}),
    )
    .await;
    post(
        &app,
        "/api/conversations/chat/messages",
        "writer",
        json!({"id": "q1", "role": "user", "content": "Why?", "usage": {"input_tokens": 4, "output_tokens": 0}}),
    )
    .await;
    let mut early = app
        .stream(
            "channels=conversation:chat&replay=0",
            &[("X-Session-ID", "early")],
        )
        .await;
    let created = post(
        &app,
        "/api/conversations/chat/messages",
        "writer",
        json!({"id": "a1", "role": "assistant", "content": "Be", "status": "streaming"}),
    )
    .await;
    assert_eq!(created["status"], "streaming");

    let pieces: Vec<String> = (0..60).map(|i| format!("cause {i} é😀 ")).collect();
    let mut late_state = None;
    for (i, piece) in pieces.iter().enumerate() {
        let answer = post(
            &app,
            "/api/conversations/chat/messages/a1/delta",
            "writer",
            json!({"text": piece}),
        )
        .await;
        assert_eq!(answer["message_id"], "a1");
        if i == 25 {
            // The late joiner opens the conversation now: text so far + cursor.
            let response = app
                .get("/api/conversations/chat/messages")
                .send()
                .await
                .unwrap();
            let cursor = response.headers()["x-event-cursor"]
                .to_str()
                .unwrap()
                .to_owned();
            let page: Value = response.json().await.unwrap();
            assert_eq!(page["cursor"].to_string(), cursor);
            assert_eq!(page["total_count"], 2);
            let streaming = page["messages"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(streaming["status"], "streaming");
            let stream = app
                .stream(
                    "channels=conversation:chat",
                    &[("X-Session-ID", "late"), ("Last-Event-ID", &cursor)],
                )
                .await;
            late_state = Some((streaming["content"].as_str().unwrap().to_owned(), stream));
        }
    }
    let done = post(
        &app,
        "/api/conversations/chat/messages/a1/complete",
        "writer",
        json!({"usage": {"input_tokens": 10, "output_tokens": 321}}),
    )
    .await;
    assert_eq!(done["status"], "complete");
    assert_eq!(
        done["usage"],
        json!({"input_tokens": 10, "output_tokens": 321})
    );
    let expected: String = std::iter::once("Be".to_owned())
        .chain(pieces.iter().cloned())
        .collect();
    assert_eq!(done["content"], expected.as_str());

    let (mut late_text, mut late) = late_state.unwrap();
    let mut early_text = String::new();
    for (text, stream) in [(&mut early_text, &mut early), (&mut late_text, &mut late)] {
        let mut tokens = None;
        loop {
            let event = stream.next_event().await.json().unwrap();
            apply_message_event(text, &event);
            if event["type"] == "tokens_updated" {
                tokens = Some(event["payload"].clone());
            }
            if event["type"] == "tokens_updated" {
                break;
            }
        }
        assert_eq!(
            tokens.unwrap(),
            json!({"conversation_id": "chat", "input_tokens": 14, "output_tokens": 321})
        );
    }
    assert_eq!(early_text.as_bytes(), expected.as_bytes());
    assert_eq!(late_text.as_bytes(), expected.as_bytes());

    let (_, summary) = call(
        &app,
        reqwest::Method::GET,
        "/api/conversations/chat",
        "x",
        None,
    )
    .await;
    assert_eq!(
        (
            summary["input_tokens"].as_i64(),
            summary["output_tokens"].as_i64()
        ),
        (Some(14), Some(321))
    );
    assert_eq!(summary["message_count"], 2);
}

async fn polling_with_a_cursor_never_misses_a_concurrent_update() {
    let app = spawn_app().await;
    for i in 0..5 {
        post(
            &app,
            "/api/conversations",
            "w",
            json!({"id": format!("p{i}"), "title": "t0"}),
        )
        .await;
    }
    let client = reqwest::Client::new();
    let base = app.address.clone();
    let writer = tokio::spawn(async move {
        for round in 1..=80 {
            let id = format!("p{}", round % 5);
            client
                .patch(format!("{base}/api/conversations/{id}"))
                .header("X-Session-ID", "w")
                .json(&json!({"title": format!("t{round}")}))
                .send()
                .await
                .unwrap();
            if round == 50 {
                client
                    .delete(format!("{base}/api/conversations/p4"))
                    .send()
                    .await
                    .unwrap();
            }
        }
    });

    let mut copy: BTreeMap<String, Value> = BTreeMap::new();
    let mut cursor = 0;
    let mut polls = 0;
    loop {
        let finished = writer.is_finished();
        let (_, answer) = call(
            &app,
            reqwest::Method::GET,
            &format!("/api/conversations/sync?cursor={cursor}"),
            "poller",
            None,
        )
        .await;
        polls += 1;
        assert_eq!(answer["is_full_sync"], false);
        for c in answer["conversations"].as_array().unwrap() {
            copy.insert(c["id"].as_str().unwrap().to_owned(), c.clone());
        }
        for id in answer["deleted_ids"].as_array().unwrap() {
            copy.remove(id.as_str().unwrap());
        }
        cursor = answer["cursor"].as_i64().unwrap();
        if finished {
            break;
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    assert!(polls > 3, "the poller ran while writes went on");
    let (_, full) = call(
        &app,
        reqwest::Method::GET,
        "/api/conversations/sync?full=true",
        "poller",
        None,
    )
    .await;
    assert_eq!(full["is_full_sync"], true);
    let server: BTreeMap<String, Value> = full["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_owned(), c.clone()))
        .collect();
    assert_eq!(copy, server);
    assert!(!copy.contains_key("p4"));
}

async fn polling_with_since_returns_what_changed_after_the_last_server_time() {
    let app = spawn_app().await;
    post(
        &app,
        "/api/conversations",
        "w",
        json!({"id": "s1", "title": "one"}),
    )
    .await;
    let (_, first) = call(
        &app,
        reqwest::Method::GET,
        "/api/conversations/sync",
        "p",
        None,
    )
    .await;
    assert_eq!(first["is_full_sync"], true);
    assert_eq!(first["conversations"].as_array().unwrap().len(), 1);
    let since = first["server_time"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(5)).await;
    post(
        &app,
        "/api/conversations",
        "w",
        json!({"id": "s2", "title": "two"}),
    )
    .await;
    call(
        &app,
        reqwest::Method::DELETE,
        "/api/conversations/s1",
        "w",
        None,
    )
    .await;
    let (status, next) = call(
        &app,
        reqwest::Method::GET,
        &format!(
            "/api/conversations/sync?since={}",
            since.replace('+', "%2B")
        ),
        "p",
        None,
    )
    .await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["is_full_sync"], false);
    let ids: Vec<&str> = next["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["s2"]);
    assert_eq!(next["deleted_ids"], json!(["s1"]));
    let (status, bad) = call(
        &app,
        reqwest::Method::GET,
        "/api/conversations/sync?since=yesterday",
        "p",
        None,
    )
    .await;
    assert_eq!(
        (status, bad["error"]["details"]["field"].as_str()),
        (422, Some("since"))
    );
    let (status, ahead) = call(
        &app,
        reqwest::Method::GET,
        "/api/conversations/sync?cursor=999999",
        "p",
        None,
    )
    .await;
    assert_eq!(
        (status, ahead["error"]["details"]["field"].as_str()),
        (422, Some("cursor"))
    );
}

async fn unread_count_is_the_server_message_count_minus_what_was_seen() {
    let app = spawn_app().await;
    post(
        &app,
        "/api/conversations",
        "w",
        json!({"id": "u", "title": "Unread"}),
    )
    .await;
    for i in 0..3 {
        post(
            &app,
            "/api/conversations/u/messages",
            "w",
            json!({"role": "user", "content": format!("m{i}")}),
        )
        .await;
    }
    // The reader has seen everything so far.
    let (_, page) = call(
        &app,
        reqwest::Method::GET,
        "/api/conversations/u/messages",
        "reader",
        None,
    )
    .await;
    let seen = page["messages"].as_array().unwrap().len() as i64;
    assert_eq!(seen, 3);
    let cursor = page["cursor"].as_i64().unwrap().to_string();
    let mut list = app
        .stream(
            "channels=conversations",
            &[("X-Session-ID", "reader"), ("Last-Event-ID", &cursor)],
        )
        .await;
    for i in 3..5 {
        post(
            &app,
            "/api/conversations/u/messages",
            "w",
            json!({"role": "assistant", "content": format!("m{i}")}),
        )
        .await;
    }
    let mut count = 0;
    for _ in 0..2 {
        let event = list.next_event().await.json().unwrap();
        assert_eq!(event["type"], "conversation_updated");
        count = event["payload"]["message_count"].as_i64().unwrap();
    }
    assert_eq!(count - seen, 2);
    let (_, summary) = call(
        &app,
        reqwest::Method::GET,
        "/api/conversations/u",
        "reader",
        None,
    )
    .await;
    assert_eq!(summary["message_count"].as_i64().unwrap() - seen, 2);

    // Pages go back in time with next_before.
    let (_, newest) = call(
        &app,
        reqwest::Method::GET,
        "/api/conversations/u/messages?limit=2",
        "reader",
        None,
    )
    .await;
    let contents: Vec<&str> = newest["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m3", "m4"]);
    assert_eq!(newest["total_count"], 5);
    let before = newest["next_before"].as_str().unwrap();
    let (_, older) = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/conversations/u/messages?limit=2&before={before}"),
        "reader",
        None,
    )
    .await;
    let contents: Vec<&str> = older["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["m1", "m2"]);
    let before = older["next_before"].as_str().unwrap();
    let (_, oldest) = call(
        &app,
        reqwest::Method::GET,
        &format!("/api/conversations/u/messages?limit=2&before={before}"),
        "reader",
        None,
    )
    .await;
    assert_eq!(oldest["messages"].as_array().unwrap().len(), 1);
    assert_eq!(oldest["next_before"], Value::Null);
}

async fn streaming_rules_and_bad_input_are_enforced() {
    let app = spawn_app().await;
    post(
        &app,
        "/api/conversations",
        "w",
        json!({"id": "r", "title": "Rules"}),
    )
    .await;
    post(
        &app,
        "/api/conversations/r/messages",
        "w",
        json!({"id": "done", "role": "user", "content": "x"}),
    )
    .await;
    post(
        &app,
        "/api/conversations/r/messages",
        "w",
        json!({"id": "live", "role": "assistant", "status": "streaming"}),
    )
    .await;

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "/api/conversations/r/messages/done/delta",
            json!({"text": "more"}),
            409,
            "conflict",
        ),
        (
            "/api/conversations/r/messages/nope/delta",
            json!({"text": "more"}),
            404,
            "not_found",
        ),
        (
            "/api/conversations/r/messages/live/delta",
            json!({"text": ""}),
            422,
            "validation_failed",
        ),
        (
            "/api/conversations/r/messages",
            json!({"role": "robot"}),
            422,
            "validation_failed",
        ),
        (
            "/api/conversations/r/messages",
            json!({"role": "user", "usage": {"input_tokens": -1}}),
            422,
            "validation_failed",
        ),
        (
            "/api/conversations/r/messages",
            json!({"id": "done", "role": "user"}),
            409,
            "already_exists",
        ),
        (
            "/api/conversations/missing/messages",
            json!({"role": "user"}),
            404,
            "not_found",
        ),
        (
            "/api/conversations",
            json!({"title": ""}),
            422,
            "validation_failed",
        ),
        (
            "/api/conversations/r/messages/done/complete",
            json!({}),
            409,
            "conflict",
        ),
    ];
    for (path, body, status, code) in cases {
        let (got, answer) = call(&app, reqwest::Method::POST, path, "w", Some(body)).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {answer}"
        );
    }
    let (_, page) = call(
        &app,
        reqwest::Method::GET,
        "/api/conversations/r/messages",
        "w",
        None,
    )
    .await;
    assert_eq!(page["total_count"], 2);
    assert_eq!(page["messages"][1]["content"], "");

    // Completing without usage is allowed once; the totals stay.
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/api/conversations/r/messages/live/complete",
        "w",
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(
        &app,
        reqwest::Method::POST,
        "/api/conversations/r/messages/live/complete",
        "w",
        None,
    )
    .await;
    assert_eq!(status, 409);
}

crate::on_both_backends!(
    the_list_agrees_across_three_sessions_through_deletes_and_reconnects,
    a_late_joiner_mid_stream_ends_with_the_same_text_and_tokens,
    polling_with_a_cursor_never_misses_a_concurrent_update,
    polling_with_since_returns_what_changed_after_the_last_server_time,
    unread_count_is_the_server_message_count_minus_what_was_seen,
    streaming_rules_and_bad_input_are_enforced,
);
