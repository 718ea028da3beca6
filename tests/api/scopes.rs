//! Route scopes, for every operation `/openapi.json` lists (read at run time,
//! so a new route is checked as soon as it is documented): without a token
//! it is refused, except the public ones; a token with no scopes gets 403
//! `forbidden` naming the scope it lacks, except the routes that narrow their
//! answer (which answer, with nothing outside the token's scopes) and the
//! server-wide ones; a token with the other access to the same channel gets
//! 403 too; a token with exactly the needed scope is let through.
//!
//! What each route needs is written here from `docs/security.md`, not read
//! from the server: a documented route this test does not know fails it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{expect_error, spawn_app_with, SseStream, TestApp};

const ADMIN: &str = "admin-token-0123456789";
const NONE: &str = "no-scopes-token-0123456789";

/// The channels a scoped route below may need.
const CHANNELS: [&str; 9] = [
    "durable-streams",
    "features",
    "tracks",
    "spikes",
    "files",
    "conversations",
    "conversation:c1",
    "presence",
    "global",
];

/// What a route needs, according to `docs/security.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// Answered without a token.
    Public,
    /// Any valid token; the answer is about the server, not a channel.
    AnyToken,
    /// Any valid token; the answer is narrowed to the token's scopes.
    Narrowing,
    Read(&'static str),
    Write(&'static str),
}

fn expected(method: &str, template: &str) -> Expect {
    let access = |channel: &'static str| {
        if method == "get" || method == "head" {
            Expect::Read(channel)
        } else {
            Expect::Write(channel)
        }
    };
    let segments: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        [""]
        | ["healthz"]
        | ["readyz"]
        | ["openapi.json"]
        | ["client.js"]
        | ["client.d.ts"]
        | [".well-known", ..] => Expect::Public,
        ["metrics"] | ["api", "stats"] => Expect::AnyToken,
        ["api", "stream" | "stream-tickets" | "events" | "sync"]
        | ["api", "events", "batch" | "{id}"]
        | ["api", "subscriptions", ..] => Expect::Narrowing,
        ["api", "webhook-keys"] => Expect::Public,
        ["api", "sessions"] => Expect::Read("presence"),
        ["api", "channels", "{channel}", "events"] => Expect::Write("global"),
        ["api", "broadcast", "features", ..] => Expect::Write("features"),
        ["api", "broadcast", "tracks", ..] => Expect::Write("tracks"),
        ["api", "broadcast", "spikes", ..] => Expect::Write("spikes"),
        ["api", "features", ..] => access("features"),
        ["api", "tracks", ..] => access("tracks"),
        ["api", "spikes", ..] => access("spikes"),
        ["api", "files", ..] => access("files"),
        ["api", "conversations", "{id}", "messages", ..] => access("conversation:c1"),
        ["api", "conversations", ..] => access("conversations"),
        ["v1", "stream", ..] if method == "options" => Expect::Public,
        // The signing keys, and the calls a wake's own token authorizes.
        ["v1", "stream", "__ds", "jwks.json"]
        | ["v1", "stream", "__ds", "subscriptions", _, "callback" | "ack" | "release"] => {
            Expect::Public
        }
        ["v1", "stream", ..] => access("durable-streams"),
        _ => panic!(
            "{method} {template}: this test does not know what the route needs; \
             add it here and to docs/security.md"
        ),
    }
}

/// A concrete path: conversation `c1` (so `conversation:c1`), channel
/// `global`, other ids that may not exist (404 is fine: it is not 403).
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{channel}" => "global",
            "{id}" => "c1",
            "{n}" => "1",
            s if s.starts_with('{') => "x2",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The token that may only `read` (or only `write`) `channel`.
fn token(access: &str, channel: &str) -> String {
    format!("{access}-{}-token-0123456789", channel.replace(':', "-"))
}

fn tokens_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    let mut text = format!(
        "[[tokens]]\ntoken = \"{ADMIN}\"\nagent_id = \"admin\"\nread = [\"*\"]\nwrite = [\"*\"]\n\n\
         [[tokens]]\ntoken = \"{NONE}\"\nagent_id = \"nobody\"\nread = []\nwrite = []\n"
    );
    for channel in CHANNELS {
        for access in ["read", "write"] {
            text.push_str(&format!(
                "\n[[tokens]]\ntoken = \"{}\"\nagent_id = \"{access}-{}\"\n{access} = [\"{channel}\"]\n",
                token(access, channel),
                channel.replace(':', "-"),
            ));
        }
    }
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every (method, path template) of the document.
async fn operations(app: &TestApp) -> BTreeSet<(String, String)> {
    let response = app.get("/openapi.json").send().await.unwrap();
    assert_eq!(response.status(), 200, "/openapi.json is public");
    let doc: Value = response.json().await.unwrap();
    doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .filter(|key| METHODS.contains(&key.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect()
}

/// `method path` as `token` (none: no credential), with a JSON body `{}` on
/// writes.
async fn call(app: &TestApp, token: Option<&str>, method: &str, path: &str) -> reqwest::Response {
    let verb = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
    let writes = verb != Method::GET;
    let mut request = app.client.request(verb, app.url(path));
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    if writes {
        request = request.json(&json!({}));
    }
    request.send().await.unwrap()
}

async fn forbidden(response: reqwest::Response, message: &str, what: &str) {
    if what.starts_with("head ") {
        // A HEAD answer has no body to read the message from.
        assert_eq!(response.status(), 403, "{what}");
        return;
    }
    let body = expect_error(response, 403, "forbidden").await;
    assert_eq!(body["error"]["message"], message, "{what}");
}

#[tokio::test]
async fn every_documented_route_needs_exactly_its_declared_scope() {
    let (_dir, path) = tokens_file();
    let app = spawn_app_with(|a| a.tokens = Some(path)).await;
    let seeded = seed(&app).await;

    let operations = operations(&app).await;
    let mut narrowing = BTreeSet::new();
    let mut checked = 0;
    for (method, template) in &operations {
        let path = concrete(template);
        let what = format!("{method} {path} (documented as {template})");
        let expect = expected(method, template);
        if expect == Expect::Public {
            // Answered without a token (the Mercure hub, off here, says 404).
            let response = call(&app, None, method, &path).await;
            let status = response.status().as_u16();
            assert!(
                ![401, 403].contains(&status) && status < 500,
                "{what} is public: {status}"
            );
            checked += 1;
            continue;
        }
        let response = call(&app, None, method, &path).await;
        if method == "head" {
            assert_eq!(response.status(), 401, "{what}");
        } else {
            expect_error(response, 401, "unauthorized").await;
        }
        match expect {
            Expect::Public => unreachable!("handled above"),
            Expect::AnyToken => {
                let response = call(&app, Some(NONE), method, &path).await;
                assert_eq!(response.status(), 200, "{what} with a token without scopes");
            }
            Expect::Narrowing => {
                narrowing.insert((method.clone(), template.clone()));
            }
            Expect::Read(channel) | Expect::Write(channel) => {
                let (needed, other) = match expect {
                    Expect::Read(_) => ("read", "write"),
                    _ => ("write", "read"),
                };
                let message = format!("this token may not {needed} {channel}");
                let response = call(&app, Some(NONE), method, &path).await;
                forbidden(response, &message, &format!("{what} without scopes")).await;
                let response = call(&app, Some(&token(other, channel)), method, &path).await;
                forbidden(
                    response,
                    &message,
                    &format!("{what} with {other} {channel}"),
                )
                .await;
                let response = call(&app, Some(&token(needed, channel)), method, &path).await;
                let status = response.status().as_u16();
                let body = response.text().await.unwrap();
                assert!(
                    status != 401 && status != 403,
                    "{what} with {needed} {channel}: {status} {body}"
                );
            }
        }
        checked += 1;
    }
    let expected_narrowing: BTreeSet<(String, String)> = [
        ("get", "/api/stream"),
        ("post", "/api/stream-tickets"),
        ("get", "/api/events"),
        ("get", "/api/events/{id}"),
        ("post", "/api/events/batch"),
        ("get", "/api/sync"),
        ("get", "/api/subscriptions"),
        ("get", "/api/subscriptions/{id}"),
        ("put", "/api/subscriptions/{id}"),
        ("delete", "/api/subscriptions/{id}"),
        ("post", "/api/subscriptions/{id}/retry"),
        ("post", "/api/subscriptions/{id}/claims"),
        ("post", "/api/subscriptions/{id}/claims/{claim}/ack"),
        ("post", "/api/subscriptions/{id}/claims/{claim}/release"),
    ]
    .into_iter()
    .map(|(method, path)| (method.to_owned(), path.to_owned()))
    .collect();
    assert_eq!(narrowing, expected_narrowing, "the narrowing routes");
    narrowing_routes_answer_only_within_the_tokens_scopes(&app, &seeded).await;
    assert_eq!(checked, operations.len());
    assert!(checked >= 70, "{checked} operations documented");
}

/// What `seed` wrote as the admin.
struct Seeded {
    /// The event of the feature `f-seed` (channel `features`).
    feature_event: i64,
}

/// A feature, a file and a `global` event, written by the admin.
async fn seed(app: &TestApp) -> Seeded {
    let admin = format!("Bearer {ADMIN}");
    for (path, body) in [
        ("/api/features", json!({"id": "f-seed", "title": "a"})),
        (
            "/api/files",
            json!({"stable_id": "secret", "name": "s", "content": "x"}),
        ),
        ("/api/channels/global/events", json!({"type": "note"})),
    ] {
        let response = app
            .post(path)
            .header("Authorization", &admin)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "seeding {path}");
    }
    let events = app.all_events_as(ADMIN).await;
    let channels: Vec<&str> = events
        .iter()
        .map(|e| e["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["features", "files", "global"]);
    Seeded {
        feature_event: events[0]["id"].as_i64().unwrap(),
    }
}

async fn narrowing_routes_answer_only_within_the_tokens_scopes(app: &TestApp, seeded: &Seeded) {
    let none = format!("Bearer {NONE}");
    let features = format!("Bearer {}", token("read", "features"));
    let global = format!("Bearer {}", token("write", "global"));
    let get = |path: &str, auth: &str| app.get(path).header("Authorization", auth).send();

    // The log: nothing without scopes; only `features` with read features.
    let page: Value = get("/api/events", &none)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["events"], json!([]), "{page}");
    let page: Value = get("/api/events", &features)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let channels: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["channel"])
        .collect();
    assert!(
        !channels.is_empty() && channels.iter().all(|c| *c == "features"),
        "{page}"
    );

    // One event: hidden (404) outside the token's scopes.
    let path = format!("/api/events/{}", seeded.feature_event);
    expect_error(get(&path, &none).await.unwrap(), 404, "not_found").await;
    let event: Value = get(&path, &features).await.unwrap().json().await.unwrap();
    assert_eq!(event["channel"], "features");

    // Sync: only the collections the token reads.
    let sync: Value = get("/api/sync", &none).await.unwrap().json().await.unwrap();
    assert_eq!(sync["collections"], json!({}), "{sync}");
    let sync: Value = get("/api/sync", &features)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&String> = sync["collections"].as_object().unwrap().keys().collect();
    assert_eq!(names, ["features"], "{sync}");

    // The stream: replays nothing without scopes, features with read features.
    let response = get("/api/stream?channels=*&last_event_id=0", &none)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    SseStream::new(response)
        .assert_quiet(Duration::from_millis(300))
        .await;
    let response = get("/api/stream?channels=*&last_event_id=0", &features)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = SseStream::new(response).next_event().await;
    assert_eq!(first.event, "feature_created");

    // A ticket is issued to any token, and carries only its scopes.
    let response = app
        .post("/api/stream-tickets")
        .header("Authorization", &none)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let ticket: Value = response.json().await.unwrap();
    let ticket = ticket["ticket"].as_str().expect("a ticket");
    let response = app
        .get(&format!(
            "/api/stream?channels=*&last_event_id=0&ticket={ticket}"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    SseStream::new(response)
        .assert_quiet(Duration::from_millis(300))
        .await;

    // A batch reaches the handler with any token (which checks the body:
    // here, that it is empty), and is written only if the token may write
    // every channel in it.
    let batch = |auth: &str, body: Value| {
        app.post("/api/events/batch")
            .header("Authorization", auth)
            .json(&body)
            .send()
    };
    expect_error(
        batch(&none, json!({"events": []})).await.unwrap(),
        422,
        "validation_failed",
    )
    .await;
    let to_global = json!({"events": [{"channel": "global", "type": "note"}]});
    forbidden(
        batch(&none, to_global.clone()).await.unwrap(),
        "this token may not write global",
        "a batch to global without scopes",
    )
    .await;
    let mixed = json!({"events": [
        {"channel": "global", "type": "note"},
        {"channel": "team-a", "type": "note"},
    ]});
    forbidden(
        batch(&global, mixed).await.unwrap(),
        "this token may not write team-a",
        "a batch to global and team-a with write global",
    )
    .await;
    let before = app.all_events_as(ADMIN).await.len();
    let response = batch(&global, to_global).await.unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(app.all_events_as(ADMIN).await.len(), before + 1);
}
