//! `GET /openapi.json`: an OpenAPI 3.1 document that lists exactly the routes
//! the server answers, whose references resolve, and whose schemas describe
//! the answers the server really sends.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

/// Every (method, path template) that `src/http/mod.rs` registers, with the
/// work-item collections (`{collection:features|tracks|spikes}`) written out.
fn server_routes() -> BTreeSet<(String, String)> {
    let mut routes: Vec<(&str, String)> = [
        ("get", "/"),
        ("get", "/client.js"),
        ("get", "/client.d.ts"),
        ("get", "/v1/stream/{path}"),
        ("head", "/v1/stream/{path}"),
        ("put", "/v1/stream/{path}"),
        ("post", "/v1/stream/{path}"),
        ("delete", "/v1/stream/{path}"),
        ("options", "/v1/stream/{path}"),
        ("get", "/v1/stream/__ds/jwks.json"),
        ("put", "/v1/stream/__ds/subscriptions/{id}"),
        ("get", "/v1/stream/__ds/subscriptions/{id}"),
        ("delete", "/v1/stream/__ds/subscriptions/{id}"),
        ("post", "/v1/stream/__ds/subscriptions/{id}/streams"),
        (
            "delete",
            "/v1/stream/__ds/subscriptions/{id}/streams/{stream}",
        ),
        ("post", "/v1/stream/__ds/subscriptions/{id}/claim"),
        ("post", "/v1/stream/__ds/subscriptions/{id}/callback"),
        ("post", "/v1/stream/__ds/subscriptions/{id}/ack"),
        ("post", "/v1/stream/__ds/subscriptions/{id}/release"),
        ("get", "/.well-known/mercure"),
        ("post", "/.well-known/mercure"),
        ("get", "/.well-known/mercure/subscriptions"),
        ("get", "/.well-known/mercure/subscriptions/{topic}"),
        (
            "get",
            "/.well-known/mercure/subscriptions/{topic}/{subscriber}",
        ),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
        ("get", "/api/stats"),
        ("get", "/api/sessions"),
        ("post", "/api/stream-tickets"),
        ("get", "/api/stream"),
        ("post", "/api/channels/{channel}/events"),
        ("post", "/api/events/batch"),
        ("get", "/api/events"),
        ("get", "/api/events/{id}"),
        ("get", "/api/files"),
        ("post", "/api/files"),
        ("post", "/api/files/delete"),
        ("get", "/api/files/{id}"),
        ("put", "/api/files/{id}"),
        ("delete", "/api/files/{id}"),
        ("post", "/api/files/{id}/lock"),
        ("delete", "/api/files/{id}/lock"),
        ("get", "/api/files/{id}/versions"),
        ("get", "/api/files/{id}/versions/{n}"),
        ("get", "/api/conversations"),
        ("post", "/api/conversations"),
        ("get", "/api/conversations/sync"),
        ("get", "/api/conversations/{id}"),
        ("patch", "/api/conversations/{id}"),
        ("delete", "/api/conversations/{id}"),
        ("get", "/api/conversations/{id}/messages"),
        ("post", "/api/conversations/{id}/messages"),
        (
            "post",
            "/api/conversations/{id}/messages/{message_id}/delta",
        ),
        (
            "post",
            "/api/conversations/{id}/messages/{message_id}/complete",
        ),
        ("get", "/api/sync"),
        ("get", "/api/subscriptions"),
        ("get", "/api/subscriptions/{id}"),
        ("put", "/api/subscriptions/{id}"),
        ("delete", "/api/subscriptions/{id}"),
        ("post", "/api/subscriptions/{id}/retry"),
        ("post", "/api/subscriptions/{id}/claims"),
        ("post", "/api/subscriptions/{id}/claims/{claim}/ack"),
        ("post", "/api/subscriptions/{id}/claims/{claim}/release"),
        ("get", "/api/webhook-keys"),
    ]
    .into_iter()
    .map(|(method, path)| (method, path.to_owned()))
    .collect();
    for collection in ["features", "tracks", "spikes"] {
        for (method, template) in [
            ("post", "/api/broadcast/{c}/{id}"),
            ("post", "/api/broadcast/{c}/{id}/status"),
            ("post", "/api/broadcast/{c}/{id}/links"),
            ("get", "/api/{c}"),
            ("post", "/api/{c}"),
            ("get", "/api/{c}/{id}"),
            ("patch", "/api/{c}/{id}"),
            ("delete", "/api/{c}/{id}"),
            ("post", "/api/{c}/{id}/status"),
            ("post", "/api/{c}/{id}/links"),
            ("delete", "/api/{c}/{id}/links/{linked_id}"),
            ("post", "/api/{c}/{id}/comments"),
        ] {
            routes.push((method, template.replace("{c}", collection)));
        }
    }
    let count = routes.len();
    let routes: BTreeSet<(String, String)> = routes
        .into_iter()
        .map(|(method, path)| (method.to_owned(), path))
        .collect();
    assert_eq!(routes.len(), count, "the route list has a duplicate");
    routes
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

async fn fetch_document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    response.json().await.expect("/openapi.json is JSON")
}

/// The (method, path) of every operation in the document.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .expect("paths is an object")
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .expect("a path item is an object")
                .keys()
                .filter(|key| METHODS.contains(&key.as_str()))
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect()
}

/// A concrete path for a template: `1` for every `{…}` segment (a channel
/// name for `{channel}`).
fn concrete(template: &str) -> String {
    template
        .split('/')
        .map(|segment| match segment {
            "{channel}" => "global",
            s if s.starts_with('{') => "1",
            s => s,
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn openapi_json_is_an_openapi_3_1_document() {
    let app = spawn_app().await;
    let doc = fetch_document(&app).await;
    let version = doc["openapi"].as_str().expect("openapi is a string");
    assert!(version.starts_with("3.1."), "openapi: {version}");
    assert_eq!(doc["info"]["title"], "switchboard");
    assert!(doc["info"]["version"].is_string());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
}

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_server_registers() {
    let app = spawn_app().await;
    let doc = fetch_document(&app).await;
    let documented = documented(&doc);
    let routes = server_routes();
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the document: {undocumented:?}"
    );
    let unknown: Vec<_> = documented.difference(&routes).collect();
    assert!(
        unknown.is_empty(),
        "documented routes the server lacks: {unknown:?}"
    );
    assert_eq!(documented.len(), 102);
}

#[tokio::test]
async fn every_documented_path_is_answered_by_the_router() {
    let app = spawn_app().await;
    let doc = fetch_document(&app).await;
    let paths = doc["paths"].as_object().unwrap();
    for (template, item) in paths {
        let path = concrete(template);
        // Without parameters a GET may fail validation or find nothing, but
        // never fall through to the router's "no route".
        let response = app.get(&path).send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        if template == "/api/stream" {
            assert_eq!(status, 200);
            assert!(content_type.starts_with("text/event-stream"));
            drop(response);
            continue;
        }
        let body = response.text().await.unwrap();
        assert!(
            !body.contains("no route for this path"),
            "GET {path} (documented as {template}) is unknown to the router: {status} {body}"
        );
        if item.get("get").is_none() {
            assert_eq!(status, 405, "GET {path} is not documented: {body}");
        }
        // Under /api every resource names its methods in `Allow` on a 405:
        // they are exactly the documented ones.
        if template.starts_with("/api/") {
            let response = app
                .client
                .request(Method::from_bytes(b"PROBE").unwrap(), app.url(&path))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 405, "PROBE {path}");
            let allowed: BTreeSet<String> = response.headers()["allow"]
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_ascii_lowercase())
                .collect();
            let listed: BTreeSet<String> = item
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            assert_eq!(allowed, listed, "the methods of {template}");
        }
    }
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(inner, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, out)),
        _ => {}
    }
}

fn resolve<'a>(doc: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("{reference} is not local"));
    doc.pointer(pointer)
        .unwrap_or_else(|| panic!("{reference} does not resolve"))
}

#[tokio::test]
async fn operations_are_complete_and_every_reference_resolves() {
    let app = spawn_app().await;
    let doc = fetch_document(&app).await;
    let mut targets = Vec::new();
    refs(&doc, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        assert!(resolve(&doc, target).is_object(), "{target}");
    }
    let mut operation_ids = BTreeSet::new();
    for (method, path) in documented(&doc) {
        let operation = &doc["paths"][&path][&method];
        let id = operation["operationId"].as_str().expect("an operationId");
        assert!(
            operation_ids.insert(id.to_owned()),
            "duplicate operationId {id}"
        );
        assert!(
            !path.contains("{collection}") && !id.contains('{'),
            "an unexpanded template: {method} {path} ({id})"
        );
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{method} {path} documents no success"
        );
        // Path parameters are declared.
        let declared: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .map(|params| {
                params
                    .iter()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        assert_eq!(declared, in_template, "path parameters of {method} {path}");
        // Every error answers the shared error schema (Durable Streams
        // answers its protocol's plain-text errors; the gate's are JSON).
        for (status, response) in responses {
            let gate = ["401", "403", "429"].contains(&status.as_str());
            if path.starts_with("/v1/stream/") && !gate {
                continue;
            }
            if status.starts_with('4') || status.starts_with('5') {
                let response = match response.get("$ref") {
                    Some(target) => resolve(&doc, target.as_str().unwrap()),
                    None => response,
                };
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
        // Identity headers on the API, Idempotency-Key on every write.
        let headers: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .map(|params| {
                params
                    .iter()
                    .filter(|p| p["in"] == "header")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        if path.starts_with("/api/") {
            assert!(headers.contains("X-Agent-ID"), "{method} {path}");
            assert!(headers.contains("X-Session-ID"), "{method} {path}");
            // A ticket is no write: it changes nothing and publishes nothing.
            if method != "get" && path != "/api/stream-tickets" {
                assert!(headers.contains("Idempotency-Key"), "{method} {path}");
            }
        }
    }
    let stream = &doc["paths"]["/api/stream"]["get"];
    assert!(stream["responses"]["200"]["content"]["text/event-stream"].is_object());
    let stream_headers: Vec<&Value> = stream["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert!(stream_headers.contains(&&json!("Last-Event-ID")));
    let patch = &doc["paths"]["/api/features/{id}"]["patch"]["parameters"];
    assert!(patch
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "If-Match"));
}

// ----- the documented schemas describe the real answers -----

/// Checks `value` against `schema` (the subset of JSON Schema the document
/// uses); pushes what does not match to `errors`.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        return check(doc, resolve(doc, target), value, at, errors);
    }
    if let Some(branches) = schema.get("oneOf").and_then(Value::as_array) {
        let fits = branches.iter().any(|branch| {
            let mut inner = Vec::new();
            check(doc, branch, value, at, &mut inner);
            inner.is_empty()
        });
        if !fits {
            errors.push(format!("{at}: {value} fits no branch of {schema}"));
        }
        return;
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        if !choices.contains(value) {
            errors.push(format!("{at}: {value} is not one of {choices:?}"));
        }
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let fits = types.iter().any(|t| match *t {
            "null" => value.is_null(),
            "string" => value.is_string(),
            "integer" => value.is_i64() || value.is_u64(),
            "number" => value.is_number(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            "object" => value.is_object(),
            _ => false,
        });
        if !fits {
            errors.push(format!("{at}: {value} is not {types:?}"));
            return;
        }
    }
    if let Some(map) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(properties) = properties {
            for (key, inner) in map {
                match properties.get(key) {
                    Some(property) => check(doc, property, inner, &format!("{at}.{key}"), errors),
                    None => errors.push(format!("{at}: undocumented field {key:?}")),
                }
            }
        }
        if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
            for (key, inner) in map {
                check(doc, additional, inner, &format!("{at}.{key}"), errors);
            }
        }
        for required in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !map.contains_key(required.as_str().unwrap()) {
                errors.push(format!("{at}: missing required field {required}"));
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, item) in list.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"), errors);
        }
    }
}

/// The documented path template a concrete path is routed to: the one whose
/// segments match, preferring literal segments (as the router does).
fn template_of<'a>(doc: &'a Value, path: &str) -> &'a str {
    let path = path.split('?').next().unwrap();
    let segments: Vec<&str> = path.split('/').collect();
    doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|template| {
            let parts: Vec<&str> = template.split('/').collect();
            let fits = parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(part, segment)| part.starts_with('{') || part == segment);
            fits.then(|| {
                (
                    parts.iter().filter(|p| !p.starts_with('{')).count(),
                    template,
                )
            })
        })
        .max()
        .map(|(_, template)| template.as_str())
        .unwrap_or_else(|| panic!("no documented path matches {path}"))
}

/// Sends requests and checks each answer against the document: its status
/// must be documented for the operation, its body must fit that schema.
struct Checker<'a> {
    app: &'a TestApp,
    doc: &'a Value,
}

impl Checker<'_> {
    async fn call(
        &self,
        headers: &[(&str, &str)],
        method: &str,
        path: &str,
        body: Option<Value>,
        expected: u16,
    ) -> Value {
        let verb = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let mut request = self.app.client.request(verb, self.app.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = &body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, expected, "{method} {path}: {text}");
        let template = template_of(self.doc, path);
        let operation = &self.doc["paths"][template][method];
        assert!(
            operation.is_object(),
            "{method} {template} is not documented"
        );
        let mut documented = &operation["responses"][status.to_string()];
        assert!(
            documented.is_object(),
            "{method} {template} answered {status}, which is not documented: {text}"
        );
        if let Some(target) = documented.get("$ref").and_then(Value::as_str) {
            documented = resolve(self.doc, target);
        }
        let value: Value = serde_json::from_str(&text).expect("a JSON answer");
        let schema = &documented["content"]["application/json"]["schema"];
        assert!(
            schema.is_object(),
            "{method} {template} {status}: no JSON schema"
        );
        let mut errors = Vec::new();
        check(self.doc, schema, &value, "body", &mut errors);
        assert!(
            errors.is_empty(),
            "{method} {path} → {status} does not fit the document:\n{}\n{text}",
            errors.join("\n")
        );
        value
    }
}

#[tokio::test]
async fn real_answers_fit_their_documented_schemas_and_statuses() {
    let app = spawn_app().await;
    let doc = fetch_document(&app).await;
    let c = Checker {
        app: &app,
        doc: &doc,
    };
    let me: &[(&str, &str)] = &[("X-Agent-ID", "alice"), ("X-Session-ID", "alice-1")];

    // Operations.
    c.call(&[], "get", "/healthz", None, 200).await;
    c.call(&[], "get", "/readyz", None, 200).await;
    c.call(me, "get", "/api/stats", None, 200).await;
    c.call(me, "get", "/api/sessions", None, 200).await;
    // An open server needs no ticket.
    c.call(me, "post", "/api/stream-tickets", None, 400).await;

    // Events.
    let note = json!({"type": "note", "data": {"n": 1}, "resource_id": "doc-1"});
    c.call(me, "post", "/api/channels/global/events", Some(note), 201)
        .await;
    let reserved = Some(json!({"type": "note"}));
    c.call(me, "post", "/api/channels/features/events", reserved, 403)
        .await;
    let no_type = Some(json!({"data": {}}));
    c.call(me, "post", "/api/channels/global/events", no_type, 422)
        .await;
    let batch =
        json!({"events": [{"channel": "global", "type": "a"}, {"channel": "x", "type": "b"}]});
    c.call(me, "post", "/api/events/batch", Some(batch), 201)
        .await;
    c.call(me, "get", "/api/events?limit=2", None, 200).await;
    c.call(me, "get", "/api/events?limit=0", None, 422).await;
    c.call(me, "get", "/api/events?bogus=1", None, 400).await;
    c.call(me, "get", "/api/events/1", None, 200).await;
    c.call(me, "get", "/api/events/999999", None, 404).await;
    let bad_agent = &[("X-Agent-ID", "not valid")];
    c.call(bad_agent, "get", "/api/events/1", None, 400).await;

    // Work items.
    let track = json!({"id": "trk-1", "title": "Track"});
    c.call(me, "post", "/api/tracks", Some(track.clone()), 201)
        .await;
    c.call(me, "post", "/api/tracks", Some(track), 409).await;
    let feature = json!({"id": "feat-1", "title": "F", "priority": "high", "tags": ["x"], "track_id": "trk-1"});
    c.call(me, "post", "/api/features", Some(feature), 201)
        .await;
    let spike = json!({"id": "spk-1", "title": "S", "findings": "none yet"});
    c.call(me, "post", "/api/spikes", Some(spike), 201).await;
    for collection in ["features", "tracks", "spikes"] {
        c.call(me, "get", &format!("/api/{collection}"), None, 200)
            .await;
    }
    c.call(me, "get", "/api/features/feat-1", None, 200).await;
    c.call(me, "get", "/api/tracks/trk-1", None, 200).await;
    c.call(me, "get", "/api/spikes/spk-1", None, 200).await;
    c.call(me, "get", "/api/features/nope", None, 404).await;
    let patch = json!({"status": "in_progress", "description": null});
    c.call(
        me,
        "patch",
        "/api/features/feat-1",
        Some(patch.clone()),
        200,
    )
    .await;
    let stale = &[("If-Match", "\"99\"")];
    c.call(stale, "patch", "/api/features/feat-1", Some(patch), 412)
        .await;
    let not_a_field = Some(json!({"findings": "features have none"}));
    c.call(me, "patch", "/api/features/feat-1", not_a_field, 422)
        .await;
    let status = Some(json!({"new_status": "done"}));
    c.call(me, "post", "/api/features/feat-1/status", status, 200)
        .await;
    let link = json!({"linked_feature_id": "trk-1", "link_type": "part_of"});
    let links = "/api/features/feat-1/links";
    c.call(me, "post", links, Some(link.clone()), 201).await;
    let unlink = "/api/features/feat-1/links/trk-1?link_type=part_of";
    c.call(me, "delete", unlink, None, 200).await;
    c.call(me, "delete", unlink, None, 404).await;
    let comment = Some(json!({"comment_text": "looks good"}));
    c.call(me, "post", "/api/features/feat-1/comments", comment, 201)
        .await;
    let update = Some(json!({"title": "Made by broadcast", "priority": "low"}));
    c.call(me, "post", "/api/broadcast/features/feat-2", update, 200)
        .await;
    let status = Some(json!({"new_status": "blocked"}));
    c.call(
        me,
        "post",
        "/api/broadcast/features/feat-2/status",
        status,
        200,
    )
    .await;
    let path = "/api/broadcast/features/feat-2/links";
    c.call(me, "post", path, Some(link), 200).await;
    let wrong_kind = Some(json!({"title": "x"}));
    c.call(me, "post", "/api/broadcast/features/trk-1", wrong_kind, 409)
        .await;
    c.call(me, "delete", "/api/features/feat-1", None, 200)
        .await;

    // Files and locks.
    let file = json!({"stable_id": "f1", "name": "plan.md", "content": "v1", "label": "draft"});
    c.call(me, "post", "/api/files", Some(file), 201).await;
    c.call(me, "get", "/api/files", None, 200).await;
    c.call(me, "get", "/api/files/f1", None, 200).await;
    let save = json!({"content": "v2"});
    c.call(me, "put", "/api/files/f1", Some(save.clone()), 409)
        .await;
    let ttl = Some(json!({"ttl_seconds": 30}));
    c.call(me, "post", "/api/files/f1/lock", ttl, 200).await;
    let bob: &[(&str, &str)] = &[("X-Agent-ID", "bob"), ("X-Session-ID", "bob-1")];
    c.call(bob, "post", "/api/files/f1/lock", None, 409).await;
    c.call(me, "put", "/api/files/f1", Some(save), 200).await;
    c.call(me, "get", "/api/files/f1/versions", None, 200).await;
    c.call(me, "get", "/api/files/f1/versions/1", None, 200)
        .await;
    c.call(me, "get", "/api/files/f1/versions/9", None, 404)
        .await;
    c.call(me, "delete", "/api/files/f1/lock", None, 200).await;
    c.call(me, "delete", "/api/files/f1/lock", None, 409).await;
    c.call(me, "post", "/api/files/f1/lock", None, 200).await;
    c.call(me, "delete", "/api/files/f1", None, 200).await;
    let file = json!({"stable_id": "f2", "name": "b.md", "content": ""});
    c.call(me, "post", "/api/files", Some(file), 201).await;
    c.call(me, "post", "/api/files/f2/lock", None, 200).await;
    let doomed = Some(json!({"stable_ids": ["f2"]}));
    c.call(me, "post", "/api/files/delete", doomed, 200).await;

    // Conversations.
    let conversation = json!({"id": "c1", "title": "Chat"});
    c.call(me, "post", "/api/conversations", Some(conversation), 201)
        .await;
    c.call(me, "get", "/api/conversations", None, 200).await;
    c.call(me, "get", "/api/conversations/c1", None, 200).await;
    let rename = Some(json!({"title": "Renamed"}));
    c.call(me, "patch", "/api/conversations/c1", rename, 200)
        .await;
    let messages = "/api/conversations/c1/messages";
    let complete =
        json!({"id": "m1", "role": "user", "content": "hi", "usage": {"input_tokens": 3}});
    c.call(me, "post", messages, Some(complete), 201).await;
    let streaming = json!({"id": "m2", "role": "assistant", "status": "streaming"});
    c.call(me, "post", messages, Some(streaming), 201).await;
    let delta = "/api/conversations/c1/messages/m2/delta";
    c.call(me, "post", delta, Some(json!({"text": "Hel"})), 200)
        .await;
    let page = c.call(
        me,
        "get",
        "/api/conversations/c1/messages?limit=1",
        None,
        200,
    );
    assert_eq!(page.await["next_before"], "m2");
    let done = "/api/conversations/c1/messages/m2/complete";
    let usage = json!({"usage": {"input_tokens": 1, "output_tokens": 2}});
    c.call(me, "post", done, Some(usage), 200).await;
    c.call(me, "post", done, None, 409).await;
    c.call(me, "post", delta, Some(json!({"text": "lo"})), 409)
        .await;
    c.call(me, "get", "/api/conversations/sync?cursor=0", None, 200)
        .await;
    c.call(
        me,
        "get",
        "/api/conversations/sync?since=yesterday",
        None,
        422,
    )
    .await;
    c.call(me, "delete", "/api/conversations/c1", None, 200)
        .await;

    // Sync.
    c.call(me, "get", "/api/sync", None, 200).await;
    let some = "/api/sync?cursor=3&collections=features,files";
    c.call(me, "get", some, None, 200).await;
    c.call(me, "get", "/api/sync?collections=nope", None, 422)
        .await;

    // A body that is not JSON by its Content-Type.
    let response = app
        .post("/api/conversations")
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    assert!(doc["paths"]["/api/conversations"]["post"]["responses"]["415"].is_object());
}

// ----- the gate -----

const ADMIN: &str = "openapi-admin-token-0123456789";
const FEATURES: &str = "openapi-features-token-0123456789";

/// A server with a tokens file: an admin token and one that may only read
/// and write `features`.
async fn secured() -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[tokens]]
token = "{ADMIN}"
agent_id = "admin"
read = ["*"]
write = ["*"]

[[tokens]]
token = "{FEATURES}"
agent_id = "feature-bot"
read = ["features"]
write = ["features"]
"#
        ),
    )
    .unwrap();
    let app = spawn_app_with(|a| a.tokens = Some(path)).await;
    (app, dir)
}

#[tokio::test]
async fn the_documented_security_is_what_the_gate_does() {
    let (app, _dir) = secured().await;
    let doc = fetch_document(&app).await;
    for (method, template) in documented(&doc) {
        let operation = &doc["paths"][&template][&method];
        let security = operation["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {template} has no security"));
        let public = security == &vec![json!({})];
        let path = concrete(&template);
        let verb = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
        let response = app
            .client
            .request(verb, app.url(&path))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        if public {
            assert_ne!(status, 401, "{method} {path} is documented as public");
            continue;
        }
        assert_eq!(status, 401, "{method} {path} needs a token");
        assert!(response.headers().contains_key("www-authenticate"));
        let responses = &operation["responses"];
        assert!(responses["401"].is_object(), "{method} {template}");
        assert!(responses["403"].is_object(), "{method} {template}");
        assert!(
            security.contains(&json!({"bearer": []})),
            "{method} {template}"
        );
        if method != "get" && method != "head" {
            assert!(responses["429"].is_object(), "{method} {template}");
        }
    }
    for scheme in ["bearer", "access_token", "cookie", "ticket"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }

    let c = Checker {
        app: &app,
        doc: &doc,
    };
    let admin = format!("Bearer {ADMIN}");
    let bot = format!("Bearer {FEATURES}");
    let as_admin: &[(&str, &str)] = &[("Authorization", &admin)];
    let as_bot: &[(&str, &str)] = &[("Authorization", &bot)];
    c.call(as_admin, "post", "/api/stream-tickets", None, 201)
        .await;
    c.call(as_bot, "get", "/api/features", None, 200).await;
    c.call(as_bot, "get", "/api/files", None, 403).await;
    c.call(as_bot, "get", "/api/sync?collections=files", None, 403)
        .await;
    let not_me: &[(&str, &str)] = &[("Authorization", &bot), ("X-Agent-ID", "alice")];
    c.call(not_me, "get", "/api/features", None, 403).await;
    c.call(&[], "get", "/metrics", None, 401).await;
}

#[tokio::test]
async fn a_write_over_the_rate_gets_a_documented_429() {
    let app = spawn_app_with(|a| a.rate_limit = 1).await;
    let doc = fetch_document(&app).await;
    let c = Checker {
        app: &app,
        doc: &doc,
    };
    let note = || Some(json!({"type": "note"}));
    let path = "/api/channels/global/events";
    // The burst is twice the rate.
    c.call(&[], "post", path, note(), 201).await;
    c.call(&[], "post", path, note(), 201).await;
    let body = c.call(&[], "post", path, note(), 429).await;
    assert_eq!(body["error"]["code"], "rate_limited");
}
