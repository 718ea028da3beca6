//! Generic publish, batches and `Idempotency-Key`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::{expect_error, ids, spawn_app, stored_ids, TestApp};

const QUIET: Duration = Duration::from_millis(300);

/// Asserts `RFC 3339 UTC with microseconds`, e.g. `2026-11-21T12:00:00.123456Z`,
/// and that the time is now (give or take a minute).
fn assert_timestamp(value: &Value) {
    let text = value.as_str().expect("timestamp is a string");
    assert_eq!(text.len(), 27, "{text}");
    assert!(text.ends_with('Z'), "{text}");
    assert_eq!(&text[19..20], ".", "{text}");
    assert!(text[20..26].bytes().all(|b| b.is_ascii_digit()), "{text}");
    let time = chrono::DateTime::parse_from_rfc3339(text).expect("RFC 3339");
    let age = chrono::Utc::now().signed_duration_since(time);
    assert!(age.num_seconds().abs() < 60, "{text} is not now");
}

async fn post_event(app: &TestApp, channel: &str, body: &str) -> reqwest::Response {
    app.post(&format!("/api/channels/{channel}/events"))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

async fn publishing_returns_201_with_the_stored_event() {
    let app = spawn_app().await;
    let mut watcher = app.stream("channels=global", &[]).await;
    let response = app
        .post("/api/channels/global/events")
        .header("X-Agent-ID", "claude-1")
        .header("X-Session-ID", "sess-1")
        .json(&json!({
            "type": "note",
            "data": {"text": "hi", "list": [1, 2.5, null, true]},
            "resource_type": "doc",
            "resource_id": "doc-1"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let event: Value = response.json().await.unwrap();

    let id = event["id"].as_i64().expect("numeric id");
    assert!(id > 0);
    assert_eq!(event.as_object().unwrap().len(), 9, "{event}");
    assert_eq!(event["channel"], "global");
    assert_eq!(event["type"], "note");
    assert_eq!(event["resource_type"], "doc");
    assert_eq!(event["resource_id"], "doc-1");
    assert_eq!(event["agent_id"], "claude-1");
    assert_eq!(event["session_id"], "sess-1");
    assert_timestamp(&event["timestamp"]);
    assert_eq!(
        event["payload"],
        json!({"text": "hi", "list": [1, 2.5, null, true]})
    );

    // The log and the stream hold exactly this event.
    let fetched: Value = app
        .get(&format!("/api/events/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, event);
    let streamed = watcher.next_event().await;
    assert_eq!(streamed.event, "note");
    assert_eq!(streamed.id_number(), Some(id));
    assert_eq!(streamed.json().unwrap(), event);
    assert_eq!(app.all_events().await, vec![event]);
}

async fn an_event_without_identity_headers_is_anonymous_and_without_session() {
    let app = spawn_app().await;
    let response = post_event(&app, "global", r#"{"type": "note"}"#).await;
    assert_eq!(response.status(), 201);
    let event: Value = response.json().await.unwrap();
    assert_eq!(event["agent_id"], "anonymous");
    assert_eq!(event["session_id"], Value::Null);
    assert_eq!(event["resource_type"], Value::Null);
    assert_eq!(event["resource_id"], Value::Null);
    assert_eq!(event["payload"], json!({}), "data defaults to {{}}");
}

async fn a_channel_with_a_slash_is_reached_as_is_or_percent_encoded() {
    let app = spawn_app().await;
    let mut stream = app.stream("channels=agents/*&replay=0", &[]).await;
    let response = post_event(&app, "agents/review", r#"{"type": "wake"}"#).await;
    assert_eq!(response.status(), 201);
    let event: Value = response.json().await.unwrap();
    assert_eq!(event["channel"], "agents/review");
    let encoded = post_event(&app, "agents%2Freview", r#"{"type": "wake"}"#).await;
    assert_eq!(encoded.status(), 201);
    let deep = post_event(&app, "agents/review/urgent", r#"{"type": "wake"}"#).await;
    assert_eq!(deep.status(), 201);
    let streamed = stream.take_events(3).await;
    let channels: Vec<String> = streamed
        .iter()
        .map(|e| e.json().unwrap()["channel"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        channels,
        ["agents/review", "agents/review", "agents/review/urgent"]
    );
    let listed = app.get_json("/api/events?channels=agents/review").await;
    assert_eq!(listed["events"].as_array().unwrap().len(), 2);
}

async fn the_payload_is_sent_back_exactly_as_it_was_received() {
    // docs/api.md: `data` "is stored and sent back byte for byte as it was
    // received (after JSON validation)".
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    let data = r#"{"z": 1, "a": [true, null], "s": "caf\u00e9 \"quoted\""}"#;
    let expected = format!(r#""payload":{data}"#);
    let response = post_event(
        &app,
        "global",
        &format!(r#"{{"type": "note", "data": {data}}}"#),
    )
    .await;
    assert_eq!(response.status(), 201);
    let created = response.text().await.unwrap();
    let id = serde_json::from_str::<Value>(&created).unwrap()["id"]
        .as_i64()
        .unwrap();

    let fetched = app
        .get(&format!("/api/events/{id}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        fetched.contains(&expected),
        "GET changed the payload: {fetched}"
    );
    let streamed = watcher.next_event().await;
    assert!(
        streamed.data.contains(&expected),
        "the stream changed the payload: {}",
        streamed.data
    );
    assert!(
        created.contains(&expected),
        "the 201 answer changed the payload: {created}"
    );

    for data in [json!([1, 2]), json!("text"), json!(42), json!(null)] {
        let stored = app.publish("global", "note", data.clone(), None).await;
        assert_eq!(stored["payload"], data);
    }
}

/// `1e999999` is valid JSON that no f64 holds. The payload is kept as the
/// text it was sent as, so it is stored and sent back exactly, never turned
/// into a 500 or silently rounded.
async fn a_number_no_float_can_hold_is_stored_and_sent_back_exactly() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    let single = post_event(
        &app,
        "global",
        r#"{"type": "note", "data": {"big": 1e999999}}"#,
    )
    .await;
    let batch = app
        .post("/api/events/batch")
        .header("Content-Type", "application/json")
        .body(r#"{"events": [{"channel": "global", "type": "note", "data": [1e999999]}]}"#)
        .send()
        .await
        .unwrap();
    for (response, expected) in [
        (single, r#""payload":{"big": 1e999999}"#),
        (batch, r#""payload":[1e999999]"#),
    ] {
        assert_eq!(response.status(), 201);
        let text = response.text().await.unwrap();
        assert!(text.contains(expected), "{text}");
    }
    let log = app
        .get("/api/events")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(log.contains(r#""payload":{"big": 1e999999}"#), "{log}");
    let first = watcher.next_event().await;
    assert!(first.data.contains("1e999999"), "{}", first.data);
}

async fn publishing_on_a_built_in_channel_is_forbidden() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    for channel in [
        "features",
        "tracks",
        "spikes",
        "files",
        "conversations",
        "conversation:abc",
        "presence",
    ] {
        let response = post_event(&app, channel, r#"{"type": "note", "data": {}}"#).await;
        expect_error(response, 403, "forbidden").await;
        let batch = app
            .post("/api/events/batch")
            .json(&json!({"events": [
                {"channel": "global", "type": "note"},
                {"channel": channel, "type": "note"}
            ]}))
            .send()
            .await
            .unwrap();
        expect_error(batch, 403, "forbidden").await;
    }
    assert!(app.all_events().await.is_empty());
    assert_eq!(app.head_id().await, 0);
    watcher.assert_quiet(QUIET).await;

    // Channels that only look alike are the client's.
    for channel in ["global", "conversation", "features2", "my-files"] {
        let response = post_event(&app, channel, r#"{"type": "note"}"#).await;
        assert_eq!(response.status(), 201, "{channel}");
    }
}

async fn a_batch_is_stored_in_order_with_consecutive_ids() {
    let app = spawn_app().await;
    app.publish("global", "first", json!({}), None).await;
    let mut watcher = app.stream("replay=0", &[]).await;
    let items = vec![
        json!({"channel": "global", "type": "a", "data": {"n": 1}}),
        json!({"channel": "chat:1", "type": "b", "data": {"n": 2}, "resource_type": "doc", "resource_id": "doc-1"}),
        json!({"channel": "global", "type": "c", "data": [3]}),
        json!({"channel": "team/x", "type": "d"}),
        json!({"channel": "chat:1", "type": "e", "data": {"n": 5}}),
    ];
    let response = app
        .post("/api/events/batch")
        .header("X-Agent-ID", "batcher")
        .header("X-Session-ID", "batch-session")
        .json(&json!({ "events": items }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let stored = body["events"].as_array().unwrap().clone();
    assert_eq!(stored.len(), 5);
    let first = stored[0]["id"].as_i64().unwrap();
    assert_eq!(stored_ids(&stored), (first..first + 5).collect::<Vec<_>>());
    for (event, item) in stored.iter().zip(&items) {
        assert_eq!(event["channel"], item["channel"]);
        assert_eq!(event["type"], item["type"]);
        assert_eq!(
            event["payload"],
            item.get("data").cloned().unwrap_or(json!({}))
        );
        assert_eq!(
            event["resource_id"],
            item.get("resource_id").cloned().unwrap_or(Value::Null)
        );
        assert_eq!(event["agent_id"], "batcher");
        assert_eq!(event["session_id"], "batch-session");
        assert_timestamp(&event["timestamp"]);
    }
    assert_eq!(ids(&watcher.take_events(5).await), stored_ids(&stored));
    watcher.assert_quiet(QUIET).await;
    assert_eq!(app.all_events().await[1..], stored[..]);
}

async fn a_batch_with_one_invalid_event_stores_and_streams_nothing() {
    let app = spawn_app().await;
    app.publish("global", "before", json!({}), None).await;
    let head = app.head_id().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    let good = json!({"channel": "global", "type": "note", "data": {}});
    let cases = [
        (
            json!({"channel": "global", "type": "not valid!"}),
            2,
            "type",
        ),
        (json!({"channel": "global"}), 2, "type"),
        (
            json!({"channel": "bad channel", "type": "note"}),
            1,
            "channel",
        ),
        (json!({"type": "note"}), 0, "channel"),
        (
            json!({"channel": "global", "type": "note", "resource_id": "r".repeat(65)}),
            3,
            "resource_id",
        ),
        (
            json!({"channel": "global", "type": "note", "resource_type": "a b"}),
            4,
            "resource_type",
        ),
    ];
    for (bad, position, field) in cases {
        let mut events = vec![good.clone(); 5];
        events[position] = bad;
        let response = app
            .post("/api/events/batch")
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        let body = expect_error(response, 422, "validation_failed").await;
        assert_eq!(
            body["error"]["details"]["field"],
            format!("events[{position}].{field}")
        );
    }
    assert_eq!(app.head_id().await, head);
    assert_eq!(app.all_events().await.len(), 1);
    watcher.assert_quiet(QUIET).await;
}

async fn a_batch_item_with_a_wrongly_typed_or_unknown_field_is_named_by_its_place() {
    let app = spawn_app().await;
    let good = json!({"channel": "global", "type": "note"});
    for (bad, position, field) in [
        (json!({"channel": "global", "type": 5}), 2, "type"),
        (json!({"channel": ["global"], "type": "note"}), 1, "channel"),
        (
            json!({"channel": "global", "type": "note", "payload": {}}),
            3,
            "payload",
        ),
    ] {
        let mut events = vec![good.clone(); 4];
        events[position] = bad;
        let response = app
            .post("/api/events/batch")
            .json(&json!({ "events": events }))
            .send()
            .await
            .unwrap();
        let body = expect_error(response, 422, "validation_failed").await;
        assert_eq!(
            body["error"]["details"]["field"],
            format!("events[{position}].{field}"),
            "{body}"
        );
    }
    assert!(app.all_events().await.is_empty());
}

async fn a_batch_holds_one_to_a_thousand_events() {
    let app = spawn_app().await;
    let item = json!({"channel": "global", "type": "t"});
    for size in [0, 1001] {
        let response = app
            .post("/api/events/batch")
            .json(&json!({ "events": vec![item.clone(); size] }))
            .send()
            .await
            .unwrap();
        let body = expect_error(response, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["field"], "events", "{size}");
    }
    let response = app
        .post("/api/events/batch")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    expect_error(response, 422, "validation_failed").await;
    assert_eq!(app.head_id().await, 0);

    let stored = app.publish_batch(vec![item.clone(); 1000]).await;
    assert_eq!(stored_ids(&stored), (1..=1000).collect::<Vec<_>>());
    assert_eq!(app.all_events().await.len(), 1000);
}

async fn post_with_key(
    app: &TestApp,
    agent: &str,
    key: &str,
    channel: &str,
    body: &str,
) -> (u16, Option<String>, String) {
    let response = app
        .post(&format!("/api/channels/{channel}/events"))
        .header("Content-Type", "application/json")
        .header("X-Agent-ID", agent)
        .header("Idempotency-Key", key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, replayed, response.text().await.unwrap())
}

async fn a_retry_with_the_same_idempotency_key_returns_the_first_answer_and_publishes_nothing() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    let body = r#"{"type": "note", "data": {"n": 1}}"#;
    let (status, replayed, first) = post_with_key(&app, "agent-1", "key-1", "global", body).await;
    assert_eq!(status, 201);
    assert_eq!(replayed, None);
    for _ in 0..3 {
        let (status, replayed, again) =
            post_with_key(&app, "agent-1", "key-1", "global", body).await;
        assert_eq!(status, 201);
        assert_eq!(again, first, "a retry gets the first body");
        assert_eq!(replayed.as_deref(), Some("true"));
    }
    let stored: Value = serde_json::from_str(&first).unwrap();
    assert_eq!(app.all_events().await, vec![stored.clone()]);
    assert_eq!(ids(&watcher.take_events(1).await), stored_ids(&[stored]));
    watcher.assert_quiet(QUIET).await;

    // The key is remembered across a restart.
    let app = app.restart().await;
    let (status, _, again) = post_with_key(&app, "agent-1", "key-1", "global", body).await;
    assert_eq!((status, again), (201, first));
    assert_eq!(app.all_events().await.len(), 1);
}

async fn an_idempotency_key_reused_for_another_request_is_refused() {
    let app = spawn_app().await;
    let body = r#"{"type": "note", "data": {"n": 1}}"#;
    let (status, _, first) = post_with_key(&app, "agent-1", "key-1", "global", body).await;
    assert_eq!(status, 201);

    for (channel, other) in [
        ("global", r#"{"type": "note", "data": {"n": 2}}"#),
        ("elsewhere", body),
    ] {
        let response = app
            .post(&format!("/api/channels/{channel}/events"))
            .header("Content-Type", "application/json")
            .header("X-Agent-ID", "agent-1")
            .header("Idempotency-Key", "key-1")
            .body(other)
            .send()
            .await
            .unwrap();
        expect_error(response, 422, "idempotency_key_reused").await;
    }
    assert_eq!(app.all_events().await.len(), 1);
    // The first answer is still the one a true retry gets.
    let (_, _, again) = post_with_key(&app, "agent-1", "key-1", "global", body).await;
    assert_eq!(again, first);
}

async fn an_idempotency_key_belongs_to_one_agent() {
    let app = spawn_app().await;
    let body = r#"{"type": "note"}"#;
    let (status_a, _, a) = post_with_key(&app, "agent-a", "shared", "global", body).await;
    let (status_b, replayed_b, b) = post_with_key(&app, "agent-b", "shared", "global", body).await;
    assert_eq!((status_a, status_b), (201, 201));
    assert_eq!(replayed_b, None);
    let a: Value = serde_json::from_str(&a).unwrap();
    let b: Value = serde_json::from_str(&b).unwrap();
    assert_ne!(a["id"], b["id"]);
    assert_eq!(b["agent_id"], "agent-b");
    assert_eq!(app.all_events().await.len(), 2);
}

async fn concurrent_retries_with_one_idempotency_key_publish_once() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    let requests = (0..16).map(|_| {
        app.post("/api/channels/global/events")
            .header("X-Agent-ID", "agent-1")
            .header("Idempotency-Key", "race-key")
            .json(&json!({"type": "note", "data": {"n": 1}}))
            .send()
    });
    let answers = futures_util::future::join_all(requests).await;
    let mut bodies = Vec::new();
    for answer in answers {
        let response = answer.unwrap();
        assert_eq!(response.status(), 201);
        bodies.push(response.text().await.unwrap());
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]), "{bodies:?}");
    let events = app.all_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(ids(&watcher.take_events(1).await), stored_ids(&events));
    watcher.assert_quiet(QUIET).await;
}

async fn a_batch_retried_with_its_idempotency_key_publishes_nothing_new() {
    let app = spawn_app().await;
    let body = json!({"events": [
        {"channel": "global", "type": "a"},
        {"channel": "global", "type": "b"}
    ]});
    let mut answers = Vec::new();
    for _ in 0..2 {
        let response = app
            .post("/api/events/batch")
            .header("Idempotency-Key", "batch-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        answers.push(response.text().await.unwrap());
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(app.all_events().await.len(), 2);
}

async fn a_failed_request_does_not_use_up_its_idempotency_key() {
    let app = spawn_app().await;
    let (status, _, _) = post_with_key(
        &app,
        "agent-1",
        "key-1",
        "global",
        r#"{"type": "bad type"}"#,
    )
    .await;
    assert_eq!(status, 422);
    let (status, _, _) =
        post_with_key(&app, "agent-1", "key-1", "presence", r#"{"type": "x"}"#).await;
    assert_eq!(status, 403);
    assert!(app.all_events().await.is_empty());
    let (status, replayed, _) =
        post_with_key(&app, "agent-1", "key-1", "global", r#"{"type": "good"}"#).await;
    assert_eq!((status, replayed), (201, None));
    assert_eq!(app.all_events().await.len(), 1);
}

crate::on_both_backends!(
    publishing_returns_201_with_the_stored_event,
    an_event_without_identity_headers_is_anonymous_and_without_session,
    a_channel_with_a_slash_is_reached_as_is_or_percent_encoded,
    the_payload_is_sent_back_exactly_as_it_was_received,
    a_number_no_float_can_hold_is_stored_and_sent_back_exactly,
    publishing_on_a_built_in_channel_is_forbidden,
    a_batch_is_stored_in_order_with_consecutive_ids,
    a_batch_with_one_invalid_event_stores_and_streams_nothing,
    a_batch_item_with_a_wrongly_typed_or_unknown_field_is_named_by_its_place,
    a_batch_holds_one_to_a_thousand_events,
    a_retry_with_the_same_idempotency_key_returns_the_first_answer_and_publishes_nothing,
    an_idempotency_key_reused_for_another_request_is_refused,
    an_idempotency_key_belongs_to_one_agent,
    concurrent_retries_with_one_idempotency_key_publish_once,
    a_batch_retried_with_its_idempotency_key_publishes_nothing_new,
    a_failed_request_does_not_use_up_its_idempotency_key,
);
