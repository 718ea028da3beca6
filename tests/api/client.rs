//! The official browser client, `/client.js`: how it is served, and what a
//! page built only on it sees in a real browser (see `browser.rs`) — live
//! collections across a restart, lock leases, streaming messages for a late
//! joiner, and token mode through stream tickets.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::browser::{require_browser, Driver, Page};
use crate::helpers::{spawn_app, spawn_app_with, TestApp};

#[tokio::test]
async fn client_js_is_a_public_cacheable_es_module_with_its_types() {
    let app = spawn_app().await;
    let response = app.get("/client.js").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(
        headers["content-type"].to_str().unwrap(),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(headers["cache-control"].to_str().unwrap(), "no-cache");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert!(
        etag.starts_with('"') && etag.len() > 10,
        "a strong ETag: {etag}"
    );
    let body = response.text().await.unwrap();
    assert!(body.contains("export class Switchboard"), "the module");
    assert!(body.contains("export class SwitchboardError"));
    assert!(
        !body.lines().any(|l| l.starts_with("import ")),
        "no dependencies"
    );

    let again = app
        .get("/client.js")
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304, "the browser's copy is current");
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.text().await.unwrap().is_empty());
    let stale = app
        .get("/client.js")
        .header("If-None-Match", "\"something-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);

    let types = app.get("/client.d.ts").send().await.unwrap();
    assert_eq!(types.status(), 200);
    assert!(types.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/typescript"));
    let types = types.text().await.unwrap();
    for name in [
        "class Switchboard",
        "class SwitchboardError",
        "LiveCollection",
        "Lease",
    ] {
        assert!(types.contains(name), "the declarations name {name}");
    }

    let page = app.get("/").send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers().contains_key("etag"));
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"from "/client.js""#),
        "the dashboard uses the client"
    );
    assert!(
        html.contains(r#"rel="icon""#),
        "no request for /favicon.ico"
    );
}

/// A browser page on the server's origin that has loaded `/client.js` as
/// `window.Switchboard` and made `window.sb` with `options` (a JS object).
async fn client_page(
    driver: &Driver,
    profile: &std::path::Path,
    app: &TestApp,
    options: &str,
) -> Page {
    let page = driver.page(profile).await;
    page.open(&app.url("/healthz")).await;
    page.run(&format!(
        "const m = await import('/client.js');
         window.Switchboard = m.Switchboard; window.SwitchboardError = m.SwitchboardError;
         window.sb = new m.Switchboard({options});
         return true;"
    ))
    .await;
    page
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The items of a collection as the server lists them, by id.
async fn server_items(app: &TestApp, collection: &str) -> Value {
    let list: Value = app
        .get(&format!("/api/{collection}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let items = list
        .as_object()
        .and_then(|o| o.get(collection).or_else(|| o.get("items")))
        .cloned()
        .unwrap_or(list);
    let mut by_id = serde_json::Map::new();
    for item in items.as_array().expect("a list") {
        by_id.insert(item["id"].as_str().unwrap().to_owned(), item.clone());
    }
    Value::Object(by_id)
}

const PAGE_ITEMS: &str = "return Object.fromEntries([...window.features.items].sort());";

/// 50 changes by one page, each retried with its own idempotency key until
/// it is answered (the server restarts meanwhile: a change that cannot reach
/// it waits in the outbox, a 503 is tried again here). Its own items are
/// updated with `If-Match` from the live collection; the shared ones get
/// statuses and comments from both pages.
const WRITER: &str = r#"
  const me = sb.agentId;
  window.written = 0; window.failures = [];
  sb.on('outbox:rejected', ({ write, error }) => window.failures.push(`${write.kind} ${write.resourceId}: ${error.code} ${error.message}`));
  (async () => {
    const statuses = ["todo", "in_progress", "blocked", "done"];
    const mine = [];
    for (let i = 0; i < 50; i++) {
      const key = `${me}-change-${i}`;
      for (let attempt = 0; ; attempt++) {
        try {
          if (i % 5 === 0) {
            const made = await sb.features.create({ id: `${me}-${i}`, title: `${me} ${i}` }, { idempotencyKey: key });
            mine.push(made.id);
          } else if (i % 5 === 1) {
            await sb.features.update(mine[mine.length - 1], { title: `${me} ${i} renamed`, priority: "high" }, { idempotencyKey: key });
          } else if (i % 5 === 2) {
            await sb.features.setStatus(`shared-${i % 3}`, statuses[i % 4], { idempotencyKey: key });
          } else if (i % 5 === 3) {
            await sb.features.comment(`shared-${i % 3}`, `${me} says ${i} — ✓`, { idempotencyKey: key });
          } else {
            await sb.features.link(mine[mine.length - 1], `shared-${i % 3}`, "depends_on", { idempotencyKey: key });
          }
          break;
        } catch (e) {
          if (e.code !== "network_error" && e.status !== 503 && e.status !== 0) { window.failures.push(`${i}: ${e.code} ${e.message}`); break; }
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      window.written = i + 1;
      await new Promise((r) => setTimeout(r, 40));
    }
  })();
  return true;
"#;

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn two_pages_keep_live_features_equal_to_the_server_across_a_restart() {
    require_browser();
    let app = spawn_app().await;
    let port = app.port;
    for i in 0..3 {
        let r = app
            .post("/api/features")
            .json(&json!({ "id": format!("shared-{i}"), "title": format!("shared {i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let mut pages = Vec::new();
    for name in ["one", "two"] {
        let page = client_page(
            &driver,
            &profiles.path().join(name),
            &app,
            &format!("{{ agentId: 'page-{name}' }}"),
        )
        .await;
        let start = page
            .run(
                "window.features = sb.live('features'); await features.ready;
                 window.applied = [];
                 features.on('change', (c) => { if (c.event) applied.push(c.event.id); });
                 return features.cursor;",
            )
            .await;
        assert_eq!(
            page.eval(PAGE_ITEMS).await,
            server_items(&app, "features").await,
            "the snapshot"
        );
        pages.push((page, start.as_i64().unwrap()));
    }
    for (page, _) in &pages {
        page.run(WRITER).await;
    }
    // Restart the server on the same port once both pages are midway.
    for (page, _) in &pages {
        page.wait_for("20 changes", "return window.written >= 20")
            .await;
    }
    let app = app
        .restart_with(|args| args.bind = format!("127.0.0.1:{port}"))
        .await;
    for (page, _) in &pages {
        page.wait_for("all 50 changes", "return window.written === 50")
            .await;
        page.wait_for("the outbox to be sent", "return sb.outbox.size === 0")
            .await;
        assert_eq!(page.eval("return window.failures").await, json!([]));
    }
    let expected = server_items(&app, "features").await;
    assert_eq!(expected.as_object().unwrap().len(), 3 + 2 * 10);
    for (page, start) in &pages {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let held = page.eval(PAGE_ITEMS).await;
            if held == expected {
                break;
            }
            if Instant::now() > deadline {
                let debug = page
                    .eval("return { status: sb.status, cursor: features.cursor, subs: [...sb._hub.subs].map(s => [s.channels, s.lastEventId, s._waiting]), pos: sb._hub.position }")
                    .await;
                for (id, item) in expected.as_object().unwrap() {
                    assert_eq!(&held[id], item, "item {id} held by the page ({debug})");
                }
                assert_eq!(held, expected, "{debug}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Every event of the collection after the snapshot, each once, in order.
        let log: Value = app
            .get(&format!(
                "/api/events?channels=features&after={start}&limit=1000"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let log_ids: Vec<i64> = log["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect();
        assert!(
            log_ids.len() >= 60,
            "at least 60 of the 100 changes publish (a status already set and a link already there publish nothing): {}",
            log_ids.len()
        );
        let applied: Vec<i64> =
            serde_json::from_value(page.eval("return window.applied").await).unwrap();
        assert_eq!(applied, log_ids, "each event applied once, in id order");
    }
    for (page, _) in pages {
        page.close().await;
    }
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_lease_renews_itself_names_its_holder_and_is_released_when_the_page_closes() {
    require_browser();
    let app = spawn_app().await;
    let r = app
        .post("/api/files")
        .json(&json!({ "stable_id": "notes", "name": "notes.md", "content": "v1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let editor = client_page(
        &driver,
        &profiles.path().join("editor"),
        &app,
        "{ agentId: 'alice' }",
    )
    .await;
    let other = client_page(
        &driver,
        &profiles.path().join("other"),
        &app,
        "{ agentId: 'bob' }",
    )
    .await;
    let session = editor.eval("return sb.sessionId").await;

    let lease = editor
        .run(
            "window.lost = [];
             window.lease = await sb.files.lock('notes', { ttlSeconds: 2, onLost: (l) => lost.push(l.reason) });
             return { held: lease.held, expires: lease.lock.expires_at };",
        )
        .await;
    assert_eq!(lease["held"], true);

    // Held for 6 s, three times its lease: the server sees it held throughout.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let file: Value = app
            .get("/api/files/notes")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(file["locked_by"], "alice", "still held: {file}");
        assert_eq!(file["lock_session_id"], session);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(editor.eval("return window.lost").await, json!([]));

    let refused = other
        .run(
            "try { await sb.files.lock('notes', { ttlSeconds: 2 }); return 'locked'; }
             catch (e) { return { isError: e instanceof SwitchboardError, name: e.name, status: e.status,
                                  code: e.code, message: e.message, details: e.details }; }",
        )
        .await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert_eq!(refused["name"], "SwitchboardError");
    assert_eq!(refused["status"], 409);
    assert_eq!(refused["code"], "lock_held");
    assert_eq!(refused["details"]["locked_by"], "alice");
    assert!(
        refused["message"].as_str().unwrap().contains("alice"),
        "{refused}"
    );

    // The holder saves with the lease and If-Match; then the tab is closed.
    let saved = editor.run("return await lease.save('v2');").await;
    assert_eq!(saved["version"], 2);
    let file: Value = app
        .get("/api/files/notes")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(file["content"], "v2");
    let closed_at = Instant::now();
    editor.close_window().await;
    wait_until(
        "the lock to be released",
        Duration::from_secs(5),
        || async {
            let file: Value = app
                .get("/api/files/notes")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            file["locked_by"].is_null()
        },
    )
    .await;
    assert!(
        closed_at.elapsed() < Duration::from_millis(1500),
        "released within a second of closing: {:?}",
        closed_at.elapsed()
    );
    let released: Value = app
        .get("/api/events?channels=files&type=lock_released")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let reasons: Vec<&str> = released["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["released"], "released by the page, not by expiry");
    let taken = other
        .run("const l = await sb.files.lock('notes', { ttlSeconds: 2 }); await l.release(); return l.lock.locked_by;")
        .await;
    assert_eq!(taken, "bob");
    other.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_late_joiner_sees_the_same_streamed_text_as_an_early_one() {
    require_browser();
    let app = spawn_app().await;
    let r = app
        .post("/api/conversations")
        .json(&json!({ "id": "chat", "title": "Chat" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = app
        .post("/api/conversations/chat/messages")
        .json(&json!({ "id": "answer", "role": "assistant", "status": "streaming" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    let watch = "window.chat = sb.conversation('chat'); await chat.ready;
                 window.lengths = [];
                 chat.on('change', () => { const m = chat.message('answer'); if (m) lengths.push(m.content.length); });
                 return chat.messages.length;";
    let early = client_page(&driver, &profiles.path().join("early"), &app, "{}").await;
    assert_eq!(early.run(watch).await, 1);

    let pieces: Vec<String> = (0..60)
        .map(|i| match i % 4 {
            0 => format!("{i}é "),
            1 => "😀".to_owned(),
            2 => "中文".to_owned(),
            _ => format!("👩‍💻{i}\n"),
        })
        .collect();
    let mut late = None;
    for (i, piece) in pieces.iter().enumerate() {
        if i == 30 {
            let page = client_page(&driver, &profiles.path().join("late"), &app, "{}").await;
            assert_eq!(page.run(watch).await, 1);
            late = Some(page);
        }
        let r = app
            .post("/api/conversations/chat/messages/answer/delta")
            .json(&json!({ "text": piece }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let r = app
        .post("/api/conversations/chat/messages/answer/complete")
        .json(&json!({ "usage": { "input_tokens": 12, "output_tokens": 60 } }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let expected: String = pieces.concat();
    let messages: Value = app
        .get("/api/conversations/chat/messages")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(messages["messages"][0]["content"], expected.as_str());
    for page in [&early, late.as_ref().unwrap()] {
        page.wait_for(
            "the completed message",
            "return chat.message('answer')?.status === 'complete'",
        )
        .await;
        assert_eq!(
            page.eval("return chat.message('answer').content").await,
            expected.as_str()
        );
        assert_eq!(
            page.eval("return chat.conversation.output_tokens").await,
            60
        );
    }
    // The early page saw the message grow, delta by delta.
    let lengths: Vec<u64> = serde_json::from_value(early.eval("return lengths").await).unwrap();
    assert!(lengths.windows(2).all(|w| w[0] <= w[1]), "{lengths:?}");
    assert!(
        lengths.len() >= 60,
        "one change per delta at least: {}",
        lengths.len()
    );
    early.close().await;
    late.unwrap().close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn in_token_mode_a_page_streams_through_tickets_across_a_restart() {
    require_browser();
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        r#"
[[tokens]]
token = "page-secret-token"
agent_id = "page"
read = ["*"]
write = ["*"]

[[tokens]]
token = "script-secret-token"
agent_id = "script"
read = ["*"]
write = ["*"]
"#,
    )
    .unwrap();
    let app = spawn_app_with(|a| a.tokens = Some(tokens.clone())).await;
    let port = app.port;
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    // The token comes from a function, as a page that refreshes it would do.
    let page = client_page(
        &driver,
        &profiles.path().join("page"),
        &app,
        "{ token: async () => { window.tokenCalls = (window.tokenCalls || 0) + 1; return 'page-secret-token'; } }",
    )
    .await;
    page.run(
        "window.got = []; window.errors = []; sb.on('error', (e) => errors.push(`${e.status} ${e.code} ${e.message}`));
         const sub = sb.subscribe({ channels: 'news' }, (e) => got.push(e.type === 'resync' ? 'resync' : e.payload.n));
         await sub.ready;
         await new Promise((r) => { const t = setInterval(() => { if (sb.status === 'live') { clearInterval(t); r(); } }, 50); });
         return true;",
    )
    .await;
    let publish = |app: &TestApp, n: i64| {
        app.post("/api/channels/news/events")
            .bearer_auth("script-secret-token")
            .json(&json!({ "type": "story", "data": { "n": n } }))
            .send()
    };
    for n in 0..3 {
        assert_eq!(publish(&app, n).await.unwrap().status(), 201);
    }
    page.wait_for("the first three", "return window.got.length === 3")
        .await;
    let before = page
        .eval("return window.tokenCalls")
        .await
        .as_i64()
        .unwrap();
    let app = app
        .restart_with(|args| {
            args.bind = format!("127.0.0.1:{port}");
            args.tokens = Some(tokens.clone());
        })
        .await;
    for n in 3..6 {
        assert_eq!(publish(&app, n).await.unwrap().status(), 201);
    }
    page.wait_for("all six", "return window.got.length >= 6")
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        page.eval("return window.got").await,
        json!([0, 1, 2, 3, 4, 5])
    );
    // The reconnect fetched a fresh ticket (with the token of the moment).
    let after = page
        .eval("return window.tokenCalls")
        .await
        .as_i64()
        .unwrap();
    assert!(
        after > before,
        "a ticket fetched for the reconnect: {before} → {after}"
    );
    let own = page
        .run("const e = await sb.publish('news', 'mine', { n: 99 }); return e.agent_id;")
        .await;
    assert_eq!(own, "page", "writes carry the bearer token");
    page.close().await;
}

/// An HS256 JWT for `agent` that expires `seconds` from now, with `extra`
/// claims.
pub fn jwt(secret: &str, agent: &str, seconds: u64, extra: Value) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + seconds;
    let mut claims = json!({ "sub": agent, "exp": exp, "aud": "authenticated" });
    if let (Some(claims), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
        claims.extend(extra.clone());
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_page_whose_jwt_expires_resumes_with_a_fresh_one_without_loss_or_duplicate() {
    require_browser();
    const SECRET: &str = "a-supabase-like-project-jwt-secret-0123456789";
    let app = spawn_app_with(|a| {
        a.identity.jwt_secret = Some(SECRET.to_owned());
        a.identity.jwt_audiences = vec!["authenticated".into()];
        a.identity.jwt_leeway = Duration::ZERO;
        a.identity.jwt_read = vec!["news".into()];
    })
    .await;
    let writer = jwt(
        SECRET,
        "script",
        600,
        json!({ "switchboard": { "write": ["news"] } }),
    );
    let driver = Driver::start().await;
    let profiles = tempfile::tempdir().unwrap();
    // The page asks for its token each time, as a page on a provider SDK
    // does; the test plays the SDK and refreshes it.
    let page = client_page(
        &driver,
        &profiles.path().join("page"),
        &app,
        "{ token: async () => { window.tokenCalls = (window.tokenCalls || 0) + 1; return window.jwt; } }",
    )
    .await;
    let short = jwt(SECRET, "reader", 3, json!({}));
    page.run(&format!(
        "window.jwt = '{short}'; window.got = []; window.errors = [];
         sb.on('error', (e) => errors.push(`${{e.status}} ${{e.code}} ${{e.message}}`));
         const sub = sb.subscribe({{ channels: 'news' }}, (e) => got.push(e.type === 'resync' ? 'resync' : e.payload.n));
         await sub.ready;
         await new Promise((r) => {{ const t = setInterval(() => {{ if (sb.status === 'live') {{ clearInterval(t); r(); }} }}, 50); }});
         return true;"
    ))
    .await;
    let opened_with = page
        .eval("return window.tokenCalls")
        .await
        .as_i64()
        .unwrap();
    // The SDK refreshes the token; the open stream still runs on the old one
    // until it expires.
    let fresh = jwt(SECRET, "reader", 600, json!({}));
    page.run(&format!("window.jwt = '{fresh}'; return true;"))
        .await;
    // Publish before, through and after the stream's JWT's expiry.
    let started = Instant::now();
    let mut published = 0;
    while started.elapsed() < Duration::from_secs(6) {
        let answer = app
            .post("/api/channels/news/events")
            .bearer_auth(&writer)
            .json(&json!({ "type": "story", "data": { "n": published } }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        published += 1;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    page.wait_for(
        "every event",
        &format!("return window.got.length >= {published}"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expected: Vec<i64> = (0..published).collect();
    assert_eq!(page.eval("return window.got").await, json!(expected));
    assert_eq!(page.eval("return window.errors").await, json!([]));
    // The stream ended at the expiry and the client reconnected with the
    // token of the moment (a fresh ticket).
    let after = page
        .eval("return window.tokenCalls")
        .await
        .as_i64()
        .unwrap();
    assert!(
        after > opened_with,
        "a reconnect after the expiry: {opened_with} → {after}"
    );
    page.close().await;
}
