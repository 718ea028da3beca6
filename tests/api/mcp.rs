//! `switchboard mcp`: the real binary started by the MCP SDK's own client
//! (child-process transport, stdio), against a real server on port 0.

use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, TestApp};

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

type Agent = RunningService<RoleClient, ()>;

/// Starts `switchboard mcp` for `agent` against `app` (plus `extra` flags).
async fn agent(app: &TestApp, agent: &str, extra: &[&str]) -> Agent {
    let server = app.url("");
    let transport = TokioChildProcess::new(tokio::process::Command::new(BIN).configure(|cmd| {
        cmd.arg("mcp")
            .arg("--server")
            .arg(&server)
            .arg("--agent-id")
            .arg(agent)
            .args(extra)
            .env_remove("SWITCHBOARD_TOKEN")
            .env_remove("SWITCHBOARD_SESSION_ID");
    }))
    .expect("switchboard mcp starts");
    ().serve(transport).await.expect("the MCP handshake")
}

async fn call(agent: &Agent, tool: &str, arguments: Value) -> CallToolResult {
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    agent
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| match c {
            ContentBlock::Text(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The structured result of a tool that succeeded.
async fn ok(agent: &Agent, tool: &str, arguments: Value) -> Value {
    let result = call(agent, tool, arguments).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} failed: {}",
        text(&result)
    );
    assert!(!text(&result).is_empty(), "{tool} has readable text");
    result.structured_content.expect("a structured result")
}

/// The API error of a tool that failed.
async fn tool_error(agent: &Agent, tool: &str, arguments: Value) -> (Value, String) {
    let result = call(agent, tool, arguments).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} should fail: {}",
        text(&result)
    );
    let error = result
        .structured_content
        .clone()
        .expect("the error as JSON")["error"]
        .clone();
    (error, text(&result))
}

fn types_and_agents(events: &Value) -> Vec<(String, String)> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["agent_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn tools_list_has_every_tool_with_an_input_schema() {
    let app = spawn_app().await;
    let a = agent(&app, "agent-a", &[]).await;
    let tools = a.list_all_tools().await.unwrap();
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    for expected in [
        "list_work_items",
        "get_work_item",
        "create_work_item",
        "update_work_item",
        "set_status",
        "link_work_items",
        "comment",
        "unlink_work_items",
        "delete_work_item",
        "list_files",
        "read_file",
        "create_file",
        "lock_file",
        "release_file",
        "save_file",
        "publish",
        "wait_for_events",
        "who_is_here",
        "list_subscriptions",
        "create_subscription",
        "delete_subscription",
        "claim_events",
        "ack_claim",
        "release_claim",
    ] {
        let tool = tools
            .iter()
            .find(|t| t.name == expected)
            .unwrap_or_else(|| panic!("{expected} is missing from {names:?}"));
        assert_eq!(
            tool.input_schema.get("type"),
            Some(&json!("object")),
            "{expected}"
        );
        assert!(
            tool.description.as_ref().is_some_and(|d| d.len() > 20),
            "{expected} has a description an agent can act on"
        );
    }
    let create = tools.iter().find(|t| t.name == "create_work_item").unwrap();
    let properties = create.input_schema["properties"].as_object().unwrap();
    assert!(properties.contains_key("kind") && properties.contains_key("title"));
    let required = create.input_schema["required"].as_array().unwrap();
    assert!(required.contains(&json!("kind")) && required.contains(&json!("title")));
    // The schema's bounds are the documented ones (1–3600 s).
    let lock = tools.iter().find(|t| t.name == "lock_file").unwrap();
    let ttl = &lock.input_schema["properties"]["ttl_seconds"];
    assert_eq!(ttl["minimum"], 1, "{ttl}");
    assert_eq!(ttl["maximum"], 3600, "{ttl}");
    a.cancel().await.unwrap();
}

#[tokio::test]
async fn a_bad_argument_is_a_structured_tool_error_and_changes_nothing() {
    let app = spawn_app().await;
    let a = agent(&app, "agent-a", &[]).await;
    let (error, message) = tool_error(
        &a,
        "create_work_item",
        json!({ "kind": "bug", "title": "Not a kind" }),
    )
    .await;
    assert_eq!(error["code"], "invalid_arguments");
    assert_eq!(error["details"]["tool"], "create_work_item");
    assert!(
        message.contains("create_work_item") && message.contains("bug"),
        "names the tool and the bad value: {message}"
    );
    assert!(
        !message.starts_with("failed to deserialize"),
        "in the tool's words, not serde's prefix: {message}"
    );
    let features = app.get_json("/api/features").await;
    assert_eq!(
        features.to_string().matches("Not a kind").count(),
        0,
        "nothing was written: {features}"
    );
    a.cancel().await.unwrap();
}

#[tokio::test]
async fn two_agents_coordinate_on_a_feature_and_a_file() {
    let app = spawn_app().await;
    let r = app
        .post("/api/files")
        .json(&json!({ "stable_id": "notes", "name": "notes.md", "content": "v1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let a = agent(&app, "agent-a", &[]).await;
    let b = agent(&app, "agent-b", &[]).await;

    // B's own writes never come back to it.
    ok(
        &b,
        "create_work_item",
        json!({ "kind": "feature", "id": "b-own", "title": "B's" }),
    )
    .await;
    ok(
        &b,
        "publish",
        json!({ "channel": "global", "type": "b_note", "data": { "x": 1 } }),
    )
    .await;

    let created = ok(
        &a,
        "create_work_item",
        json!({ "kind": "feature", "id": "login", "title": "Login page", "priority": "high" }),
    )
    .await;
    assert_eq!(created["id"], "login");
    assert_eq!(created["created_by"], "agent-a");
    let claimed = ok(
        &a,
        "set_status",
        json!({ "kind": "feature", "id": "login", "status": "in_progress" }),
    )
    .await;
    assert_eq!(claimed["status"], "in_progress");
    let lock = ok(
        &a,
        "lock_file",
        json!({ "stable_id": "notes", "ttl_seconds": 30 }),
    )
    .await;
    assert_eq!(lock["locked_by"], "agent-a");

    let (error, message) = tool_error(&b, "lock_file", json!({ "stable_id": "notes" })).await;
    assert_eq!(error["code"], "lock_held");
    assert_eq!(error["status"], 409);
    assert_eq!(error["details"]["locked_by"], "agent-a");
    assert!(message.contains("agent-a"), "names the holder: {message}");
    assert!(
        message.contains(lock["expires_at"].as_str().unwrap()),
        "says when the lease ends: {message}"
    );

    let saved = ok(
        &a,
        "save_file",
        json!({ "stable_id": "notes", "content": "v2 by A", "expected_version": 1 }),
    )
    .await;
    assert_eq!(saved["version"], 2);
    ok(&a, "release_file", json!({ "stable_id": "notes" })).await;

    let seen = ok(&b, "wait_for_events", json!({ "timeout_seconds": 5 })).await;
    assert_eq!(
        types_and_agents(&seen["events"]),
        [
            "feature_created",
            "status_changed",
            "lock_acquired",
            "file_saved",
            "lock_released"
        ]
        .map(|t| (t.to_owned(), "agent-a".to_owned())),
        "A's changes, in order, each once, none of B's: {}",
        seen["events"]
    );
    let again = ok(&b, "wait_for_events", json!({ "timeout_seconds": 1 })).await;
    assert_eq!(again["events"], json!([]), "nothing twice");

    let mine = ok(
        &b,
        "lock_file",
        json!({ "stable_id": "notes", "ttl_seconds": 30 }),
    )
    .await;
    assert_eq!(mine["locked_by"], "agent-b");
    let file = ok(&b, "read_file", json!({ "stable_id": "notes" })).await;
    assert_eq!(file["content"], "v2 by A");
    let board = ok(
        &b,
        "list_work_items",
        json!({ "kind": "feature", "status": "in_progress" }),
    )
    .await;
    assert_eq!(board["items"].as_array().unwrap().len(), 1);
    let here = ok(&b, "who_is_here", json!({})).await;
    let agents: Vec<&str> = here["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["agent_id"].as_str().unwrap())
        .collect();
    assert!(
        agents.contains(&"agent-a") && agents.contains(&"agent-b"),
        "{agents:?}"
    );

    // A process that ends releases the locks it holds.
    b.cancel().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let file: Value = app
            .get("/api/files/notes")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if file["locked_by"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B's lock released at exit: {file}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.cancel().await.unwrap();
}

#[tokio::test]
async fn wait_for_events_times_out_empty_and_ends_early_when_something_happens() {
    let app = spawn_app().await;
    let b = agent(&app, "agent-b", &[]).await;
    let started = Instant::now();
    let nothing = ok(&b, "wait_for_events", json!({ "timeout_seconds": 1 })).await;
    assert_eq!(nothing["events"], json!([]));
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited its timeout"
    );

    let waiting = {
        let peer = b.peer().clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = peer
                .call_tool(
                    CallToolRequestParams::new("wait_for_events").with_arguments(
                        json!({ "timeout_seconds": 30 })
                            .as_object()
                            .unwrap()
                            .clone(),
                    ),
                )
                .await
                .unwrap();
            (started.elapsed(), result)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let event = app
        .publish("global", "deploy", json!({ "n": 1 }), Some("ci"))
        .await;
    let (took, result) = waiting.await.unwrap();
    assert!(took < Duration::from_secs(5), "ended early: {took:?}");
    let events = &result.structured_content.unwrap()["events"];
    assert_eq!(events.as_array().unwrap().len(), 1);
    assert_eq!(events[0]["id"], event["id"]);
    assert_eq!(events[0]["payload"]["n"], 1);
    b.cancel().await.unwrap();
}

#[tokio::test]
async fn a_server_restart_during_a_wait_loses_and_repeats_nothing() {
    let app = spawn_app().await;
    let port = app.port;
    let b = agent(&app, "agent-b", &[]).await;
    let before = app
        .publish("global", "before", json!({ "n": 0 }), Some("ci"))
        .await;
    let first = ok(&b, "wait_for_events", json!({ "timeout_seconds": 5 })).await;
    assert_eq!(first["events"][0]["id"], before["id"]);

    let waiting = {
        let peer = b.peer().clone();
        tokio::spawn(async move {
            peer.call_tool(
                CallToolRequestParams::new("wait_for_events").with_arguments(
                    json!({ "timeout_seconds": 30 })
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            )
            .await
            .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app = app
        .restart_with(|args| args.bind = format!("127.0.0.1:{port}"))
        .await;
    let mut published = Vec::new();
    for n in 1..=3 {
        let event = app
            .publish("global", "after", json!({ "n": n }), Some("ci"))
            .await;
        published.push(event["id"].clone());
    }
    let during = waiting.await.unwrap().structured_content.unwrap();
    let mut seen: Vec<Value> = during["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].clone())
        .collect();
    // The wait may have ended at the first event: the rest come next.
    while seen.len() < published.len() {
        let more = ok(&b, "wait_for_events", json!({ "timeout_seconds": 5 })).await;
        let ids: Vec<Value> = more["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].clone())
            .collect();
        assert!(!ids.is_empty(), "the rest arrive: {seen:?}");
        seen.extend(ids);
    }
    assert_eq!(seen, published, "each event once, in order");
    let after = ok(&b, "wait_for_events", json!({ "timeout_seconds": 1 })).await;
    assert_eq!(after["events"], json!([]));
    b.cancel().await.unwrap();
}

#[tokio::test]
async fn token_mode_a_read_only_token_cannot_publish_and_bad_settings_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        r#"
[[tokens]]
token = "reader-secret"
agent_id = "reader"
read = ["*"]
write = []
"#,
    )
    .unwrap();
    let app = spawn_app_with(|a| a.tokens = Some(tokens.clone())).await;
    let reader = agent(&app, "reader", &["--token", "reader-secret"]).await;
    let list = ok(&reader, "list_work_items", json!({ "kind": "feature" })).await;
    assert_eq!(list["items"], json!([]));
    let (error, message) = tool_error(
        &reader,
        "publish",
        json!({ "channel": "global", "type": "note", "data": {} }),
    )
    .await;
    assert_eq!(error["code"], "forbidden", "{message}");
    assert_eq!(error["status"], 403);
    reader.cancel().await.unwrap();

    // A wrong token and an unreachable server end the process at once, saying why.
    let run = |args: Vec<String>| {
        std::process::Command::new(BIN)
            .arg("mcp")
            .args(args)
            .env_remove("SWITCHBOARD_TOKEN")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };
    let wrong = run(vec![
        "--server".into(),
        app.url(""),
        "--token".into(),
        "nope".into(),
    ]);
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("refused the token"), "{stderr}");
    assert!(
        !stderr.contains("nope"),
        "the token is not echoed: {stderr}"
    );
    let nobody = run(vec!["--server".into(), "http://127.0.0.1:9".into()]);
    assert!(!nobody.status.success());
    let stderr = String::from_utf8_lossy(&nobody.stderr);
    assert!(
        stderr.contains("cannot reach the switchboard server at http://127.0.0.1:9"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_agent_makes_a_pull_subscription_claims_its_events_and_acks_them() {
    let app = spawn_app().await;
    let a = agent(&app, "agent-a", &["--session-id", "reviewer-1"]).await;
    let made = ok(
        &a,
        "create_subscription",
        json!({ "id": "reviews", "channels": ["agents/*"], "types": ["review_requested"] }),
    )
    .await;
    assert_eq!(made["kind"], "pull");
    assert_eq!(made["channels"], json!(["agents/*"]));
    let nothing = ok(&a, "claim_events", json!({ "id": "reviews" })).await;
    assert_eq!(nothing["claim"], Value::Null);
    for (channel, kind) in [
        ("agents/review", "review_requested"),
        ("agents/review", "chatter"),
        ("other", "review_requested"),
        ("agents/x", "review_requested"),
    ] {
        let path = format!("/api/channels/{channel}/events");
        let r = app
            .post(&path)
            .json(&json!({ "type": kind }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let claimed = ok(&a, "claim_events", json!({ "id": "reviews", "max": 10 })).await;
    let events = claimed["events"].as_array().unwrap();
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["channel"].as_str().unwrap(), e["type"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("agents/review", "review_requested"),
            ("agents/x", "review_requested")
        ]
    );
    assert_eq!(claimed["claim"]["worker"], "reviewer-1");
    let claim = claimed["claim"]["id"].as_str().unwrap().to_owned();
    let acked = ok(&a, "ack_claim", json!({ "id": "reviews", "claim": claim })).await;
    assert_eq!(acked["acked"], 2);
    let (error, _) = tool_error(&a, "ack_claim", json!({ "id": "reviews", "claim": claim })).await;
    assert_eq!(error["code"], "claim_lost");
    assert_eq!(error["status"], 409);
    let listed = ok(&a, "list_subscriptions", json!({})).await;
    assert_eq!(listed["subscriptions"][0]["delivered"], 2);
    ok(&a, "delete_subscription", json!({ "id": "reviews" })).await;
    let (error, _) = tool_error(&a, "claim_events", json!({ "id": "reviews" })).await;
    assert_eq!(error["code"], "not_found");
    a.cancel().await.unwrap();
}

/// A rule lives in one place: REST and MCP get the same error from it (a
/// blank comment, a save without the lock, a work item without a title).
#[tokio::test]
async fn rules_answer_the_same_error_over_rest_and_mcp() {
    let app = spawn_app().await;
    let a = agent(&app, "agent-a", &["--session-id", "rules-1"]).await;
    ok(
        &a,
        "create_work_item",
        json!({ "kind": "feature", "id": "f-rules", "title": "Rules" }),
    )
    .await;
    ok(
        &a,
        "create_file",
        json!({ "stable_id": "notes", "name": "notes.md", "content": "x" }),
    )
    .await;

    // A blank comment.
    let rest = app
        .post("/api/features/f-rules/comments")
        .json(&json!({ "comment_text": "   " }))
        .send()
        .await
        .unwrap();
    let rest = crate::helpers::expect_error(rest, 422, "validation_failed").await;
    assert_eq!(rest["error"]["details"]["field"], "comment_text");
    let (mcp, _) = tool_error(
        &a,
        "comment",
        json!({ "kind": "feature", "id": "f-rules", "text": "   " }),
    )
    .await;
    assert_eq!(mcp["code"], "validation_failed");
    assert_eq!(mcp["details"]["field"], "comment_text");
    assert_eq!(mcp["message"], rest["error"]["message"]);

    // A save without the lock.
    let rest = app
        .client
        .put(app.url("/api/files/notes"))
        .header("X-Session-ID", "someone-else")
        .json(&json!({ "content": "y" }))
        .send()
        .await
        .unwrap();
    let rest = crate::helpers::expect_error(rest, 409, "lock_required").await;
    let (mcp, _) = tool_error(
        &a,
        "save_file",
        json!({ "stable_id": "notes", "content": "y" }),
    )
    .await;
    assert_eq!(mcp["code"], "lock_required");
    assert_eq!(mcp["message"], rest["error"]["message"]);
    assert_eq!(mcp["message"], "acquire the lock of notes first");

    // A lease out of range (domain::files::LockRequest).
    let rest = app
        .post("/api/files/notes/lock")
        .header("X-Session-ID", "rules-rest")
        .json(&json!({ "ttl_seconds": 0 }))
        .send()
        .await
        .unwrap();
    let rest = crate::helpers::expect_error(rest, 422, "validation_failed").await;
    assert_eq!(rest["error"]["details"]["field"], "ttl_seconds");
    let (mcp, _) = tool_error(
        &a,
        "lock_file",
        json!({ "stable_id": "notes", "ttl_seconds": 0 }),
    )
    .await;
    assert_eq!(mcp["code"], "validation_failed");
    assert_eq!(mcp["details"]["field"], "ttl_seconds");
    assert_eq!(mcp["message"], rest["error"]["message"]);
    // A lock for no session, the same rule: REST only, for MCP always
    // names its session.
    let rest = app
        .post("/api/files/notes/lock")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let rest = crate::helpers::expect_error(rest, 400, "bad_request").await;
    assert_eq!(
        rest["error"]["message"],
        "a lock is held by a session: the request names none"
    );
    assert_eq!(
        app.get_json("/api/files/notes").await["locked_by"],
        Value::Null
    );

    // A publish on a channel only the server writes (domain::event).
    let rest = app
        .post("/api/channels/features/events")
        .json(&json!({ "type": "x", "data": {} }))
        .send()
        .await
        .unwrap();
    let rest = crate::helpers::expect_error(rest, 403, "forbidden").await;
    let (mcp, _) = tool_error(
        &a,
        "publish",
        json!({ "channel": "features", "type": "x", "data": {} }),
    )
    .await;
    assert_eq!(mcp["code"], "forbidden");
    assert_eq!(mcp["message"], rest["error"]["message"]);

    // A work item without a title: the domain's rule, through REST.
    let rest = app
        .post("/api/features")
        .json(&json!({ "id": "f-untitled" }))
        .send()
        .await
        .unwrap();
    let rest = crate::helpers::expect_error(rest, 422, "validation_failed").await;
    assert_eq!(rest["error"]["details"]["field"], "title");
    assert_eq!(
        app.get_json("/api/features").await["features"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    a.cancel().await.unwrap();
}
