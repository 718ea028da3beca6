//! Every bad input gets its status, its code and the contract's error shape,
//! leaks nothing about the internals, and changes nothing.

use std::time::Duration;

use reqwest::header::HeaderValue;
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{assert_leaks_nothing, expect_error, spawn_app, spawn_app_with, TestApp};

const QUIET: Duration = Duration::from_millis(300);

/// Nothing was stored, and a stream opened at the start saw nothing.
async fn assert_nothing_changed(app: &TestApp, watcher: &mut crate::helpers::SseStream) {
    assert!(app.all_events().await.is_empty(), "the log changed");
    assert_eq!(app.head_id().await, 0);
    watcher.assert_quiet(QUIET).await;
}

fn raw(app: &TestApp, path: &str, content_type: &str, body: &str) -> reqwest::RequestBuilder {
    app.post(path)
        .header("Content-Type", content_type)
        .body(body.to_owned())
}

async fn a_body_that_is_not_json_is_refused_with_400_invalid_json() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    for path in ["/api/channels/global/events", "/api/events/batch"] {
        for body in [
            "not json",
            "",
            "{",
            r#"{"type": "note"} trailing"#,
            r#"{"events": [{"channel": "global", "type": "note"}"#,
            // Broken JSON whose first field is unknown, or of the wrong type,
            // is still broken JSON.
            r#"{"type":"#,
            r#"{"type": 5, "#,
            r#"{"events": 5"#,
        ] {
            let response = raw(&app, path, "application/json", body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let text = response.text().await.unwrap();
            let code = serde_json::from_str::<Value>(&text).unwrap()["error"]["code"].clone();
            assert_eq!(
                (status, code),
                (400, json!("invalid_json")),
                "POST {path} with {body:?} → {text}"
            );
            assert_leaks_nothing(&text);
        }
    }
    assert_nothing_changed(&app, &mut watcher).await;
}

async fn a_body_with_another_content_type_is_refused_with_415() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    let publish = r#"{"type": "note"}"#;
    let batch = r#"{"events": [{"channel": "global", "type": "note"}]}"#;
    for (path, body) in [
        ("/api/channels/global/events", publish),
        ("/api/events/batch", batch),
    ] {
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "text/json",
        ] {
            let response = raw(&app, path, content_type, body).send().await.unwrap();
            expect_error(response, 415, "unsupported_media_type").await;
        }
    }
    assert_nothing_changed(&app, &mut watcher).await;

    let response = raw(
        &app,
        "/api/channels/global/events",
        "application/json; charset=utf-8",
        publish,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
}

async fn a_body_over_the_limit_is_refused_with_413() {
    let app = spawn_app_with(|a| a.max_body = 1024).await;
    let mut watcher = app.stream("replay=0", &[]).await;
    let big = json!({"type": "note", "data": {"pad": "x".repeat(2000)}}).to_string();
    let response = raw(
        &app,
        "/api/channels/global/events",
        "application/json",
        &big,
    )
    .send()
    .await
    .unwrap();
    let body = expect_error(response, 413, "payload_too_large").await;
    assert_eq!(body["error"]["details"]["limit"], 1024);

    // Without Content-Length (chunked), the limit holds while reading.
    let chunks: Vec<Result<String, std::io::Error>> = big
        .as_bytes()
        .chunks(100)
        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
        .collect();
    let response = app
        .post("/api/channels/global/events")
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    expect_error(response, 413, "payload_too_large").await;

    let batch = json!({"events": (0..40).map(|_| json!({"channel": "global", "type": "note"})).collect::<Vec<_>>()});
    let response = app
        .post("/api/events/batch")
        .json(&batch)
        .send()
        .await
        .unwrap();
    expect_error(response, 413, "payload_too_large").await;
    assert_nothing_changed(&app, &mut watcher).await;

    let fits = json!({"type": "note", "data": {"pad": "x".repeat(900)}}).to_string();
    assert!(fits.len() <= 1024);
    let response = raw(
        &app,
        "/api/channels/global/events",
        "application/json",
        &fits,
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 201);
}

fn bad_identities() -> Vec<HeaderValue> {
    vec![
        HeaderValue::from_static("has space"),
        HeaderValue::from_str(&"a".repeat(129)).unwrap(),
        HeaderValue::from_static(""),
        HeaderValue::from_static("a/b"),
        HeaderValue::from_bytes("café".as_bytes()).unwrap(),
    ]
}

async fn malformed_identity_headers_are_refused_with_400() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    for header in ["X-Agent-ID", "X-Session-ID"] {
        for value in bad_identities() {
            let requests = [
                app.post("/api/channels/global/events")
                    .json(&json!({"type": "note"})),
                app.post("/api/events/batch")
                    .json(&json!({"events": [{"channel": "global", "type": "note"}]})),
                app.get("/api/stream"),
                app.get("/api/events"),
                app.get("/api/events/1"),
            ];
            for request in requests {
                let response = request.header(header, value.clone()).send().await.unwrap();
                let body = expect_error(response, 400, "bad_request").await;
                assert!(
                    body["error"]["message"].as_str().unwrap().contains(header),
                    "the message names {header}: {body}"
                );
            }
        }
    }
    // The same rules for the query parameters of EventSource clients.
    for query in [
        "session_id=has%20space",
        "agent_id=has%20space",
        &format!("session_id={}", "a".repeat(129)),
        "session_id=a%2Fb",
    ] {
        let response = app.stream_response(query, &[]).await;
        expect_error(response, 400, "bad_request").await;
    }
    assert_nothing_changed(&app, &mut watcher).await;

    // 128 characters is the longest accepted.
    let longest = "a".repeat(128);
    let response = app
        .post("/api/channels/global/events")
        .header("X-Agent-ID", &longest)
        .header("X-Session-ID", &longest)
        .json(&json!({"type": "note"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

async fn an_invalid_channel_in_the_path_is_refused_with_400() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    let too_long = "c".repeat(201);
    for channel in ["bad%20name", "a*b", "caf%C3%A9", "a%21", too_long.as_str()] {
        let response = raw(
            &app,
            &format!("/api/channels/{channel}/events"),
            "application/json",
            r#"{"type": "note"}"#,
        )
        .send()
        .await
        .unwrap();
        expect_error(response, 400, "bad_request").await;
    }
    assert_nothing_changed(&app, &mut watcher).await;
    let longest = "c".repeat(200);
    let stored = app.publish(&longest, "note", json!({}), None).await;
    assert_eq!(stored["channel"], longest);
}

async fn an_invalid_field_is_refused_with_422_naming_the_field() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    let long_type = "t".repeat(65);
    let cases = [
        (json!({"type": "has space"}), "type"),
        (json!({"type": ""}), "type"),
        (json!({"type": long_type}), "type"),
        (json!({"type": "naïve"}), "type"),
        (json!({"data": {}}), "type"),
        (json!({"type": 5}), "type"),
        (json!({"type": "note", "resource_id": "a b"}), "resource_id"),
        (
            json!({"type": "note", "resource_type": ""}),
            "resource_type",
        ),
        (json!({"type": "note", "payload": {}}), "payload"),
    ];
    for (body, field) in cases {
        let response = app
            .post("/api/channels/global/events")
            .json(&body)
            .send()
            .await
            .unwrap();
        let error = expect_error(response, 422, "validation_failed").await;
        assert_eq!(error["error"]["details"]["field"], field, "for {body}");
    }
    assert_nothing_changed(&app, &mut watcher).await;
}

async fn an_unknown_route_is_404_and_a_wrong_method_is_405() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    for (method, path) in [
        (Method::GET, "/nope"),
        (Method::GET, "/api/nope"),
        (Method::GET, "/api"),
        (Method::POST, "/api/channels/global"),
        (Method::POST, "/api/channels/global/events/extra"),
        (Method::GET, "/api/events/1/extra"),
    ] {
        let response = app
            .client
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        expect_error(response, 404, "not_found").await;
    }
    for (method, path) in [
        (Method::GET, "/api/channels/global/events"),
        (Method::DELETE, "/api/events"),
        (Method::POST, "/api/events"),
        (Method::PUT, "/api/events/1"),
        (Method::POST, "/api/events/1"),
        (Method::POST, "/api/stream"),
        (Method::GET, "/api/events/batch"),
        (Method::DELETE, "/api/events/batch"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .header("Content-Type", "application/json")
            .body(r#"{"type": "note", "events": []}"#)
            .send()
            .await
            .unwrap();
        expect_error(response, 405, "method_not_allowed").await;
    }
    assert_nothing_changed(&app, &mut watcher).await;
}

async fn a_405_answer_names_the_allowed_methods() {
    let app = spawn_app().await;
    for (method, path, allowed) in [
        (Method::GET, "/api/channels/global/events", "POST"),
        (Method::DELETE, "/api/events", "GET"),
        (Method::POST, "/api/stream", "GET"),
    ] {
        let response = app
            .client
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        let allow = response
            .headers()
            .get("allow")
            .unwrap_or_else(|| panic!("405 for {path} without an Allow header (RFC 9110 §15.5.6)"));
        assert!(allow.to_str().unwrap().contains(allowed), "{allow:?}");
    }
}

async fn a_malformed_last_event_id_is_refused_with_400() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    for value in ["abc", "-1", "1.5", "99999999999999999999", "0x10"] {
        let response = app
            .stream_response("", &[("Last-Event-ID", value), ("X-Session-ID", "s")])
            .await;
        expect_error(response, 400, "bad_request").await;
        let response = app
            .stream_response(&format!("last_event_id={value}&session_id=s"), &[])
            .await;
        expect_error(response, 400, "bad_request").await;
    }
    // A refused stream never joined: no presence event either.
    assert_nothing_changed(&app, &mut watcher).await;
}

async fn stream_parameters_out_of_range_are_refused_with_422() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    for (query, field) in [
        ("replay=5000", "replay"),
        ("replay=1001", "replay"),
        ("replay=-1", "replay"),
        ("replay=abc", "replay"),
        ("include_own=maybe", "include_own"),
        ("channels=bad%20name", "channels"),
        ("channels=a*b", "channels"),
        ("resource_ids=bad%21", "resource_ids"),
    ] {
        let response = app
            .stream_response(&format!("{query}&session_id=s"), &[])
            .await;
        let body = expect_error(response, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["field"], field, "{query}");
    }
    assert_nothing_changed(&app, &mut watcher).await;
    let response = app.stream_response("replay=1000", &[]).await;
    assert_eq!(response.status(), 200);
}

async fn an_invalid_idempotency_key_is_refused_with_400() {
    let app = spawn_app().await;
    for key in [
        HeaderValue::from_static(""),
        HeaderValue::from_str(&"k".repeat(256)).unwrap(),
        HeaderValue::from_static("has space"),
    ] {
        let response = app
            .post("/api/channels/global/events")
            .header("Idempotency-Key", key)
            .json(&json!({"type": "note"}))
            .send()
            .await
            .unwrap();
        expect_error(response, 400, "bad_request").await;
    }
    assert!(app.all_events().await.is_empty());
}

async fn health_and_readiness_answer_200() {
    let app = spawn_app().await;
    let response = app.get("/healthz").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    let response = app.get("/readyz").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"status": "ready", "head_id": 0})
    );
    app.publish("global", "note", json!({}), None).await;
    let ready: Value = app
        .get("/readyz")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["head_id"], 1);
}

async fn odd_inputs_never_leak_internals() {
    let app = spawn_app().await;
    let probes = [
        app.get("/api/events?after=99999999999999999999"),
        app.get("/api/events/99999999999999999999"),
        app.get("/api/events?channels=%27%3B%20DROP%20TABLE%20events%3B--"),
        app.get("/api/events?type=%27%20OR%201%3D1"),
        app.get("/api/stream?last_event_id=%27"),
        app.post("/api/channels/global/events")
            .header("Content-Type", "application/json")
            .body("\u{0}\u{1}"),
    ];
    for probe in probes {
        let response = probe.send().await.unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
        let text = response.text().await.unwrap();
        assert_leaks_nothing(&text);
        let body: Value = serde_json::from_str(&text).unwrap();
        assert!(body["error"]["code"].is_string(), "{body}");
    }
    // An SQL-looking resource id is just a value.
    let (status, events) = {
        let response = app
            .get("/api/events?resource_id=%27%20OR%201%3D1")
            .send()
            .await
            .unwrap();
        (response.status(), response.json::<Value>().await.unwrap())
    };
    assert_eq!(status, 200);
    assert_eq!(events["events"], json!([]));
}

/// Words that only a Rust programmer would understand: none may reach a
/// client's error message.
fn assert_plain_words(body: &Value) {
    let message = body["error"]["message"].as_str().expect("message");
    for word in [
        "struct",
        "i64",
        "u64",
        "ChannelName(",
        "deserialize",
        "Request",
        "Query",
        "expected",
        "line 1",
    ] {
        assert!(!message.contains(word), "{word:?} in the message: {body}");
    }
}

async fn a_reserved_channel_is_named_in_plain_words() {
    let app = spawn_app().await;
    let response = app
        .post("/api/channels/features/events")
        .json(&json!({"type": "note"}))
        .send()
        .await
        .unwrap();
    let body = expect_error(response, 403, "forbidden").await;
    assert_plain_words(&body);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("`features`"), "{body}");
}

async fn a_body_of_the_wrong_shape_is_refused_naming_the_field_and_what_is_allowed() {
    let app = spawn_app().await;
    let mut watcher = app.stream("replay=0", &[]).await;
    let publish = "/api/channels/global/events";
    let cases = [
        (publish, json!([]), "body", "must be a JSON object"),
        (publish, json!("note"), "body", "must be a JSON object"),
        (
            publish,
            json!({"type": "note", "foo": 1}),
            "foo",
            "allowed: type, data, resource_type, resource_id",
        ),
        (publish, json!({"type": 5}), "type", "must be a string"),
        (publish, json!({"type": ["a"]}), "type", "must be a string"),
        (
            "/api/events/batch",
            json!({"events": {}}),
            "events",
            "must be an array",
        ),
        (
            "/api/events/batch",
            json!({"events": [5]}),
            "events[0]",
            "must be an object",
        ),
        (
            "/api/files/f1/lock",
            json!({"ttl_seconds": -1}),
            "ttl_seconds",
            "must be a non-negative integer",
        ),
        (
            "/api/files/f1/lock",
            json!({"ttl_seconds": "60"}),
            "ttl_seconds",
            "must be a non-negative integer",
        ),
    ];
    for (path, body, field, says) in cases {
        let response = app.post(path).json(&body).send().await.unwrap();
        let error = expect_error(response, 422, "validation_failed").await;
        assert_eq!(error["error"]["details"]["field"], field, "{path} {body}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{path} {body}: {error}");
        assert!(message.contains(says), "{path} {body}: {error}");
        assert_plain_words(&error);
    }
    assert_nothing_changed(&app, &mut watcher).await;
}

async fn a_query_or_path_value_that_does_not_parse_names_the_parameter() {
    let app = spawn_app().await;
    for (path, field, says) in [
        (
            "/api/events?after=x",
            "after",
            "query parameter `after` must be a non-negative integer (an event id)",
        ),
        ("/api/events?before=1.5", "before", "`before` must be"),
        (
            "/api/events?limit=abc",
            "limit",
            "`limit` must be an integer",
        ),
        ("/api/events?limit=", "limit", "`limit` must be an integer"),
        (
            "/api/events?after=99999999999999999999",
            "after",
            "`after` must be",
        ),
        ("/api/events?order=sideways", "order", "asc, desc"),
        (
            "/api/events?foo=1",
            "foo",
            "unknown query parameter `foo`; allowed:",
        ),
        (
            "/api/features?updated_since_id=x",
            "updated_since_id",
            "`updated_since_id` must be",
        ),
        ("/api/sync?cursor=x", "cursor", "`cursor` must be"),
        (
            "/api/conversations/sync?full=maybe",
            "full",
            "`full` must be true or false",
        ),
        (
            "/api/events/abc",
            "id",
            "path segment `id` must be a non-negative integer (an event id)",
        ),
        (
            "/api/files/f1/versions/abc",
            "n",
            "path segment `n` must be",
        ),
    ] {
        let response = app.get(path).send().await.unwrap();
        let body = expect_error(response, 400, "bad_request").await;
        assert_eq!(body["error"]["details"]["field"], field, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{path}: {body}");
        assert_plain_words(&body);
    }
}

async fn negative_ids_cursors_and_limits_are_refused_with_422_naming_the_field() {
    let app = spawn_app().await;
    app.publish("global", "note", json!({}), None).await;
    for (path, field) in [
        ("/api/events?after=-5", "after"),
        ("/api/events?before=-1", "before"),
        ("/api/events?limit=-5", "limit"),
        ("/api/events/-5", "id"),
        ("/api/features?updated_since_id=-1", "updated_since_id"),
        ("/api/sync?cursor=-1", "cursor"),
        ("/api/conversations/sync?cursor=-1", "cursor"),
        ("/api/conversations/c1/messages?limit=-1", "limit"),
        ("/api/files/f1/versions/-1", "n"),
        ("/api/files/f1/versions/0", "n"),
    ] {
        let response = app.get(path).send().await.unwrap();
        let body = expect_error(response, 422, "validation_failed").await;
        assert_eq!(body["error"]["details"]["field"], field, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{path}: {body}");
        assert_plain_words(&body);
    }
    // Zero is a cursor like any other.
    let response = app.get("/api/events?after=0").send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// The documented limit of the error shape: a request head over 128 KiB is
/// refused by actix-http's parser before switchboard sees it (431, empty
/// body; docs/api.md). One just under the limit is served.
#[tokio::test]
async fn a_request_head_over_128_kib_gets_a_bare_431_from_the_http_parser() {
    let app = spawn_app().await;
    let response = app
        .get("/healthz")
        .header("X-Pad", "a".repeat(120_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = app
        .get("/healthz")
        .header("X-Pad", "a".repeat(200_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 431);
    assert_eq!(response.text().await.unwrap(), "");
}

crate::on_both_backends!(
    a_body_that_is_not_json_is_refused_with_400_invalid_json,
    a_body_with_another_content_type_is_refused_with_415,
    a_body_over_the_limit_is_refused_with_413,
    malformed_identity_headers_are_refused_with_400,
    an_invalid_channel_in_the_path_is_refused_with_400,
    an_invalid_field_is_refused_with_422_naming_the_field,
    an_unknown_route_is_404_and_a_wrong_method_is_405,
    a_405_answer_names_the_allowed_methods,
    a_malformed_last_event_id_is_refused_with_400,
    stream_parameters_out_of_range_are_refused_with_422,
    an_invalid_idempotency_key_is_refused_with_400,
    health_and_readiness_answer_200,
    odd_inputs_never_leak_internals,
    a_reserved_channel_is_named_in_plain_words,
    a_body_of_the_wrong_shape_is_refused_naming_the_field_and_what_is_allowed,
    a_query_or_path_value_that_does_not_parse_names_the_parameter,
    negative_ids_cursors_and_limits_are_refused_with_422_naming_the_field,
);
