//! `/client.js` offline: writes made while the server cannot be reached
//! wait in the outbox (IndexedDB), show at once as pending in live views,
//! survive a reload, and reach the server in order, each once, when it is
//! back; a refused one is rolled back and reported; a cancelled one is never
//! sent. Chromium goes offline through DevTools' network emulation (what
//! Playwright's `setOffline` does) or the server is stopped.
//!
//! The app page comes from an origin of its own (`AppOrigin`), apart from
//! the switchboard server, as an installed app's would: it stays up while
//! the server is stopped, and its answers may be cached, so a page loaded
//! again while offline comes from the browser's cache.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::browser::{require_browser, Driver, Page};
use crate::helpers::{events_at, spawn_app_with, TestApp};

/// The app's page: empty, the tests load `/client.js` into it.
const APP_PAGE: &str = r#"<!doctype html><meta charset="utf-8"><link rel="icon" href="data:,"><title>offline app</title>"#;
const CLIENT_JS: &str = include_str!("../../src/http/assets/client.js");

/// A static origin serving the app page and a copy of `/client.js`, both
/// cacheable for an hour.
struct AppOrigin {
    origin: String,
}

impl AppOrigin {
    fn start() -> AppOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || answer(stream));
            }
        });
        AppOrigin { origin }
    }

    fn page(&self) -> String {
        format!("{}/", self.origin)
    }
}

fn answer(mut stream: TcpStream) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut header = String::new();
    while reader
        .read_line(&mut header)
        .map(|n| n > 2)
        .unwrap_or(false)
    {
        header.clear();
    }
    let (status, content_type, body) = match request_line.split_whitespace().nth(1) {
        Some("/") => ("200 OK", "text/html; charset=utf-8", APP_PAGE),
        Some("/client.js") => ("200 OK", "text/javascript; charset=utf-8", CLIENT_JS),
        _ => ("404 Not Found", "text/plain", "not found"),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: max-age=3600\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A server that lets the app's origin call it (CORS).
async fn spawn_for(origin: &AppOrigin) -> TestApp {
    let allowed = origin.origin.clone();
    spawn_app_with(|a| a.cors_origins = vec![allowed]).await
}

/// Loads `/client.js` into the page (a fresh document) and makes `sb`
/// (agent `offline-page`) with `features` live, recording what the outbox
/// reports; then runs `more`. Answers where the outbox is kept and how many
/// writes it holds once loaded.
async fn start_client(page: &Page, server: &str, more: &str) -> Value {
    page.run(&format!(
        "const m = await import('/client.js');
         window.sb = new m.Switchboard({{ url: '{server}', agentId: 'offline-page' }});
         window.features = sb.live('features');
         window.rejected = []; window.sentKinds = []; window.cancelled = []; window.reasons = [];
         sb.on('outbox:rejected', ({{ write, error }}) => rejected.push({{ kind: write.kind, id: write.resourceId,
           outbox: write.id, status: error.status, code: error.code, current: error.details.current ?? null }}));
         sb.on('outbox:sent', ({{ write }}) => sentKinds.push(write.kind));
         sb.on('outbox:cancelled', ({{ write }}) => cancelled.push(write.id));
         features.on('change', (c) => reasons.push(c.reason));
         {more}
         await sb.outbox.ready;
         return {{ storage: sb.outbox.storage, queued: sb.outbox.size, session: sb.sessionId, online: sb.online }};"
    ))
    .await
}

/// What the outbox holds, as the app sees it.
const OUTBOX: &str =
    "return sb.outbox.list().map((w) => ({ id: w.id, key: w.idempotencyKey, method: w.method, \
                      path: w.path, ifMatch: w.ifMatch, kind: w.kind, resource: w.resourceId }));";
const PAGE_ITEMS: &str = "return Object.fromEntries([...features.items]);";

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

async fn wait_for_empty_outbox(page: &Page, within: Duration) {
    wait_until("the outbox to be sent", within, || async {
        page.eval("return sb.outbox.size === 0").await == Value::Bool(true)
    })
    .await;
}

/// The items of a collection as the server lists them, by id.
async fn server_items(app: &TestApp, collection: &str) -> Value {
    let list = app.get_json(&format!("/api/{collection}")).await;
    let mut by_id = serde_json::Map::new();
    for item in list[collection].as_array().expect("a list") {
        by_id.insert(item["id"].as_str().unwrap().to_owned(), item.clone());
    }
    Value::Object(by_id)
}

/// Waits until the page's `features.items` equal the server's list.
async fn wait_for_items_equal_to_the_server(page: &Page, app: &TestApp) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let expected = server_items(app, "features").await;
        let held = page.eval(PAGE_ITEMS).await;
        if held == expected {
            return expected;
        }
        assert!(
            Instant::now() < deadline,
            "the page's items never equalled the server's:\npage:   {held}\nserver: {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The events on `channels` after `after`, as (type, resource id).
async fn events_after(app: &TestApp, after: i64, channels: &str) -> Vec<Value> {
    events_at(&app.client, &app.address, &format!("channels={channels}"))
        .await
        .into_iter()
        .filter(|e| e["id"].as_i64().unwrap() > after)
        .collect()
}

fn kinds(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["resource_id"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

async fn create_feature(app: &TestApp, id: &str, title: &str) {
    let r = app
        .post("/api/features")
        .json(&json!({ "id": id, "title": title }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// 20 writes: creates (two with ids of their own, two with ids the client
/// makes), updates with `If-Match` from the version held (a shared item
/// changed again while earlier writes to it wait), status changes, comments,
/// and updates of items created offline. Answers, per write, whether it
/// resolved as pending, its outbox id and its item's id.
const TWENTY_WRITES: &str = r#"
  const statuses = ["in_progress", "blocked", "done", "blocked"];
  const made = [];
  for (let i = 0; i < 20; i++) {
    const shared = `shared-${i % 3}`;
    let r;
    switch (i % 5) {
      case 0: r = await sb.features.create(i % 10 === 0 ? { id: `offline-${i}`, title: `made offline ${i}` } : { title: `made offline ${i}` }); break;
      case 1: r = await sb.features.update(shared, { title: `renamed offline ${i}` }); break;
      case 2: r = await sb.features.setStatus(shared, statuses[Math.floor(i / 5)]); break;
      case 3: r = await sb.features.comment(shared, `said offline ${i} ✓`); break;
      default: r = await sb.features.update(made[i - 4].id, { priority: "high" });
    }
    made.push({ pending: r._pending === true, outbox: r._outboxId, id: r.id });
  }
  return made;
"#;

/// The events the 20 writes must produce, in order, given the ids of what
/// they changed.
fn expected_events(ids: &[String]) -> Vec<(String, String)> {
    (0..20)
        .map(|i| {
            let shared = format!("shared-{}", i % 3);
            let (kind, id) = match i % 5 {
                0 => ("feature_created", ids[i].clone()),
                1 => ("feature_updated", shared),
                2 => ("status_changed", shared),
                3 => ("comment_added", shared),
                _ => ("feature_updated", ids[i - 4].clone()),
            };
            (kind.to_owned(), id)
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn twenty_writes_made_offline_survive_a_reload_and_reach_the_server_once_each_in_order() {
    require_browser();
    let origin = AppOrigin::start();
    let app = spawn_for(&origin).await;
    for i in 0..3 {
        create_feature(&app, &format!("shared-{i}"), &format!("shared {i}")).await;
    }
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let page = driver.page(profile.path()).await;
    page.open(&origin.page()).await;
    let started = start_client(&page, &app.address, "await features.ready;").await;
    assert_eq!(started["storage"], "indexeddb");
    assert_eq!(started["queued"], 0);
    let session = started["session"].as_str().unwrap().to_owned();
    let head = app.head_id().await;

    page.set_offline(true).await;
    let made = page.run(TWENTY_WRITES).await;
    let made = made.as_array().unwrap();
    assert_eq!(made.len(), 20);
    assert!(
        made.iter().all(|m| m["pending"] == true),
        "every write resolved as pending: {made:?}"
    );
    let ids: Vec<String> = made
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids[0], "offline-0");
    assert!(
        ids[5].starts_with("feat-") && ids[15].starts_with("feat-") && ids[5] != ids[15],
        "ids made by the client as the server makes them: {ids:?}"
    );
    assert_eq!(page.eval("return sb.online").await, false);
    let queued = page.eval(OUTBOX).await;
    let queued_list = queued.as_array().unwrap();
    assert_eq!(queued_list.len(), 20);
    let outbox_ids: Vec<&Value> = made.iter().map(|m| &m["outbox"]).collect();
    let listed_ids: Vec<&Value> = queued_list.iter().map(|w| &w["id"]).collect();
    assert_eq!(listed_ids, outbox_ids, "the outbox lists them in order");
    let mut keys: Vec<&str> = queued_list
        .iter()
        .map(|w| w["key"].as_str().unwrap())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!(
        keys.len(),
        20,
        "each write has an idempotency key of its own"
    );
    // Updates carry If-Match with the version held: 1, for each shared item,
    // also for the update of shared-0 queued behind a comment on it. Sent,
    // it goes with the version the comment was answered with (else 412).
    assert_eq!(queued_list[1]["ifMatch"], 1);
    assert_eq!(queued_list[6]["ifMatch"], 1);

    // The live collection shows every change at once, as pending.
    let shown = page
        .eval(&format!(
            "const f = (id) => features.items.get(id);
             return {{ made5: f('{}'), shared0: f('shared-0'), shared1: f('shared-1'), shared2: f('shared-2'),
                      held0: features.version('shared-0') }};",
            ids[5]
        ))
        .await;
    assert_eq!(shown["made5"]["_pending"], true);
    assert_eq!(shown["made5"]["title"], "made offline 5");
    assert_eq!(shown["made5"]["priority"], "high", "its own pending update");
    assert_eq!(shown["shared0"]["_pending"], true);
    assert_eq!(shown["shared0"]["title"], "renamed offline 6");
    assert_eq!(shown["shared0"]["status"], "done");
    let comments: Vec<&str> = shown["shared0"]["comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["comment_text"].as_str().unwrap())
        .collect();
    assert_eq!(comments, ["said offline 3 ✓", "said offline 18 ✓"]);
    assert_eq!(shown["shared1"]["title"], "renamed offline 16");
    assert_eq!(shown["shared2"]["status"], "blocked");
    assert_eq!(
        shown["held0"], 1,
        "version() is the server's, pending writes aside"
    );
    assert_eq!(
        events_after(&app, head, "features").await,
        Vec::<Value>::new(),
        "nothing reached the server"
    );

    // A new document, still offline: the page comes from the browser's cache.
    page.open(&origin.page()).await;
    assert_eq!(
        page.eval("return [window.sb === undefined, navigator.onLine]")
            .await,
        json!([true, false])
    );
    let restarted = start_client(&page, &app.address, "").await;
    assert_eq!(restarted["storage"], "indexeddb");
    assert_eq!(restarted["session"], session.as_str());
    assert_eq!(
        page.eval(OUTBOX).await,
        queued,
        "the outbox survived the reload"
    );
    let pending_creates = page
        .eval(
            "return [...features.items.values()].filter((f) => f._pending).map((f) => f.id).sort()",
        )
        .await;
    let mut created = vec![
        ids[0].clone(),
        ids[5].clone(),
        ids[10].clone(),
        ids[15].clone(),
    ];
    created.sort();
    assert_eq!(pending_creates, json!(created));
    assert_eq!(
        events_after(&app, head, "features").await,
        Vec::<Value>::new(),
        "nothing reached the server"
    );

    page.set_offline(false).await;
    wait_for_empty_outbox(&page, Duration::from_secs(20)).await;
    let events = events_after(&app, head, "features").await;
    assert_eq!(
        kinds(&events),
        expected_events(&ids),
        "each write once, in order"
    );
    for event in &events {
        assert_eq!(event["agent_id"], "offline-page");
        assert_eq!(event["session_id"], session.as_str());
    }
    assert_eq!(events[0]["payload"]["title"], "made offline 0");
    assert_eq!(events[2]["payload"]["new_status"], "in_progress");
    assert_eq!(events[3]["payload"]["comment_text"], "said offline 3 ✓");
    assert_eq!(events[16]["payload"]["title"], "renamed offline 16");
    assert_eq!(events[17]["payload"]["new_status"], "blocked");
    assert_eq!(page.eval("return window.rejected").await, json!([]));
    assert_eq!(
        page.eval("return window.sentKinds.length").await,
        20,
        "the reloaded page sent all 20"
    );
    assert_eq!(page.eval("return sb.online").await, true);

    let items = wait_for_items_equal_to_the_server(&page, &app).await;
    assert_eq!(items.as_object().unwrap().len(), 3 + 4);
    assert_eq!(items["shared-0"]["version"], 5);
    assert_eq!(items[ids[15].as_str()]["priority"], "high");
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn writes_queued_while_the_server_is_down_are_sent_once_it_is_back_also_after_a_reload() {
    require_browser();
    let origin = AppOrigin::start();
    let mut app = spawn_for(&origin).await;
    let port = app.port;
    create_feature(&app, "shared-0", "shared 0").await;
    let r = app
        .post("/api/conversations")
        .json(&json!({ "id": "chat", "title": "Chat" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let page = driver.page(profile.path()).await;
    page.open(&origin.page()).await;
    let chat = "window.chat = sb.conversation('chat');";
    start_client(
        &page,
        &app.address,
        &format!("{chat} await features.ready; await chat.ready;"),
    )
    .await;
    let head = app.head_id().await;

    app.stop().await;
    let made = page
        .run(
            "const made = [];
             made.push(await sb.features.create({ id: 'while-down', title: 'made while the server was down' }));
             made.push(await sb.features.update('shared-0', { title: 'renamed while down' }));
             made.push(await chat.send({ role: 'user', content: 'sent while the server was down' }));
             made.push(await sb.publish('notes', 'note', { n: 1 }));
             made.push(await sb.features.comment('shared-0', 'said while down'));
             const last = chat.messages[chat.messages.length - 1];
             return { pending: made.map((r) => r._pending === true), online: sb.online,
                      message: { id: made[2].id, content: last.content, pending: last._pending ?? false, sameId: last.id === made[2].id },
                      shared: features.items.get('shared-0').title };",
        )
        .await;
    assert_eq!(made["pending"], json!([true, true, true, true, true]));
    assert_eq!(made["online"], false);
    assert_eq!(made["message"]["content"], "sent while the server was down");
    assert_eq!(made["message"]["pending"], true);
    assert_eq!(made["message"]["sameId"], true);
    assert_eq!(made["shared"], "renamed while down");
    let message_id = made["message"]["id"].as_str().unwrap().to_owned();
    assert!(message_id.starts_with("msg-"), "{message_id}");
    let queued = page.eval(OUTBOX).await;
    assert_eq!(queued.as_array().unwrap().len(), 5);

    // Loaded again while the server is down: the writes are still there.
    page.open(&origin.page()).await;
    let restarted = start_client(&page, &app.address, chat).await;
    assert_eq!(restarted["queued"], 5);
    assert_eq!(page.eval(OUTBOX).await, queued);
    assert_eq!(
        page.eval("return chat.messages.map((m) => [m.content, m._pending ?? false])")
            .await,
        json!([["sent while the server was down", true]]),
        "a pending message shows before the conversation could be read"
    );

    let allowed = origin.origin.clone();
    let app = app
        .restart_with(|a| {
            a.bind = format!("127.0.0.1:{port}");
            a.cors_origins = vec![allowed];
        })
        .await;
    // Backoff between attempts reaches 5 s while the server is away.
    wait_for_empty_outbox(&page, Duration::from_secs(30)).await;
    let events = events_after(&app, head, "features,notes,conversation:chat").await;
    assert_eq!(
        kinds(&events),
        [
            ("feature_created", "while-down"),
            ("feature_updated", "shared-0"),
            ("message_created", message_id.as_str()),
            ("note", ""),
            ("comment_added", "shared-0"),
        ]
        .map(|(t, id)| (t.to_owned(), id.to_owned())),
        "each write once, in order"
    );
    assert_eq!(events[3]["payload"], json!({ "n": 1 }));
    assert_eq!(
        events[2]["payload"]["content"],
        "sent while the server was down"
    );
    wait_for_items_equal_to_the_server(&page, &app).await;
    let messages = app.get_json("/api/conversations/chat/messages").await;
    assert_eq!(messages["total_count"], 1);
    let expected: Vec<Value> = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| json!([m["id"], m["content"], m["status"], false]))
        .collect();
    assert_eq!(expected[0][0], message_id.as_str());
    let expected = Value::Array(expected);
    wait_until(
        "the chat to match the server",
        Duration::from_secs(10),
        || async {
            page.eval(
                "return chat.messages.map((m) => [m.id, m.content, m.status, m._pending ?? false])",
            )
            .await
                == expected
        },
    )
    .await;
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_queued_update_with_a_stale_if_match_is_rolled_back_in_items_and_reported() {
    require_browser();
    let origin = AppOrigin::start();
    let app = spawn_for(&origin).await;
    create_feature(&app, "contested", "original").await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let page = driver.page(profile.path()).await;
    page.open(&origin.page()).await;
    start_client(&page, &app.address, "await features.ready;").await;
    let head = app.head_id().await;

    page.set_offline(true).await;
    let queued = page
        .run(
            "window.mine = await sb.features.update('contested', { title: 'mine' });
             window.after = await sb.features.create({ id: 'after-the-conflict', title: 'queued after it' });
             window.settled = sb.outbox.sent(mine._outboxId).then(() => 'sent', (e) => e.code);
             const shown = features.items.get('contested');
             return { ifMatch: sb.outbox.list()[0].ifMatch, title: shown.title, pending: shown._pending,
                      version: features.version('contested') };",
        )
        .await;
    assert_eq!(
        queued,
        json!({ "ifMatch": 1, "title": "mine", "pending": true, "version": 1 })
    );

    // Another client changes the item meanwhile.
    let r = app
        .client
        .patch(app.url("/api/features/contested"))
        .header("X-Agent-ID", "bob")
        .json(&json!({ "title": "theirs" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    page.set_offline(false).await;
    wait_for_empty_outbox(&page, Duration::from_secs(20)).await;
    let rejected = page.eval("return window.rejected").await;
    let outbox_id = page.eval("return mine._outboxId").await;
    assert_eq!(rejected.as_array().unwrap().len(), 1, "{rejected}");
    let refusal = &rejected[0];
    assert_eq!(refusal["kind"], "update");
    assert_eq!(refusal["id"], "contested");
    assert_eq!(refusal["outbox"], outbox_id);
    assert_eq!(refusal["status"], 412);
    assert_eq!(refusal["code"], "precondition_failed");
    assert_eq!(refusal["current"]["title"], "theirs");
    assert_eq!(refusal["current"]["version"], 2);
    assert_eq!(
        page.run("return await settled;").await,
        "precondition_failed",
        "outbox.sent() rejects with the refusal"
    );
    // Rolled back: the page shows the server's item, not its own change.
    let contested = page.eval("return features.items.get('contested')").await;
    assert_eq!(contested["title"], "theirs");
    assert_eq!(contested["version"], 2);
    assert!(contested.get("_pending").is_none(), "{contested}");
    let reasons = page.eval("return window.reasons").await;
    assert!(
        reasons.as_array().unwrap().contains(&json!("outbox")),
        "{reasons}"
    );

    // The outbox went on with the write after it.
    let events = events_after(&app, head, "features").await;
    assert_eq!(
        kinds(&events),
        [
            ("feature_updated", "contested"),
            ("feature_created", "after-the-conflict"),
        ]
        .map(|(t, id)| (t.to_owned(), id.to_owned()))
    );
    assert_eq!(events[0]["agent_id"], "bob");
    assert_eq!(events[1]["agent_id"], "offline-page");
    let items = wait_for_items_equal_to_the_server(&page, &app).await;
    assert_eq!(items["contested"]["title"], "theirs");
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_write_cancelled_while_offline_is_never_sent() {
    require_browser();
    let origin = AppOrigin::start();
    let app = spawn_for(&origin).await;
    create_feature(&app, "shared-0", "shared 0").await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let page = driver.page(profile.path()).await;
    page.open(&origin.page()).await;
    start_client(&page, &app.address, "await features.ready;").await;
    let head = app.head_id().await;

    page.set_offline(true).await;
    let made = page
        .run(
            "window.lists = 0; sb.outbox.subscribe(() => lists++);
             const kept = await sb.features.create({ id: 'kept', title: 'kept' });
             const dropped = await sb.features.create({ id: 'cancelled', title: 'cancelled' });
             const comment = await sb.features.comment('shared-0', 'kept comment');
             const status = await sb.features.setStatus('shared-0', 'done');
             const before = { cancelled: features.items.has('cancelled'), status: features.items.get('shared-0').status };
             const answers = [await sb.outbox.cancel(dropped._outboxId), await sb.outbox.cancel(status._outboxId),
                              await sb.outbox.cancel(dropped._outboxId), await sb.outbox.cancel('ob-no-such-write')];
             return { ids: [kept._outboxId, dropped._outboxId, comment._outboxId, status._outboxId], answers, before,
                      after: { cancelled: features.items.has('cancelled'), status: features.items.get('shared-0').status,
                               comments: features.items.get('shared-0').comments.map((c) => c.comment_text) },
                      listed: sb.outbox.list().map((w) => w.id), lists };",
        )
        .await;
    let ids = &made["ids"];
    assert_eq!(made["answers"], json!([true, true, false, false]));
    assert_eq!(
        made["before"],
        json!({ "cancelled": true, "status": "done" })
    );
    assert_eq!(
        made["after"],
        json!({ "cancelled": false, "status": "todo", "comments": ["kept comment"] }),
        "cancelled writes leave the items"
    );
    assert_eq!(made["listed"], json!([ids[0], ids[2]]));
    assert!(
        made["lists"].as_i64().unwrap() >= 6,
        "subscribe heard each change: {made}"
    );
    assert_eq!(
        page.eval("return window.cancelled").await,
        json!([ids[1], ids[3]])
    );

    // The cancellation is kept: a new document does not bring them back.
    page.open(&origin.page()).await;
    let restarted = start_client(&page, &app.address, "").await;
    assert_eq!(restarted["queued"], 2);
    assert_eq!(
        page.eval("return sb.outbox.list().map((w) => w.id)").await,
        json!([ids[0], ids[2]])
    );

    page.set_offline(false).await;
    wait_for_empty_outbox(&page, Duration::from_secs(20)).await;
    let events = events_after(&app, head, "features").await;
    assert_eq!(
        kinds(&events),
        [("feature_created", "kept"), ("comment_added", "shared-0")]
            .map(|(t, id)| (t.to_owned(), id.to_owned()))
    );
    let missing = app.get("/api/features/cancelled").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let shared = app.get_json("/api/features/shared-0").await;
    assert_eq!(shared["status"], "todo");
    wait_for_items_equal_to_the_server(&page, &app).await;
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn without_indexeddb_the_outbox_is_kept_in_memory_and_still_sends() {
    require_browser();
    let origin = AppOrigin::start();
    let app = spawn_for(&origin).await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let page = driver.page(profile.path()).await;
    page.open(&origin.page()).await;
    page.run("Object.defineProperty(window, 'indexedDB', { value: undefined, configurable: true }); return true;")
        .await;
    let started = start_client(&page, &app.address, "await features.ready;").await;
    assert_eq!(started["storage"], "memory");
    let head = app.head_id().await;

    page.set_offline(true).await;
    let made = page
        .run(
            "const r = await sb.features.create({ id: 'in-memory', title: 'kept in memory' });
             return [r._pending, sb.outbox.size, features.items.get('in-memory')._pending];",
        )
        .await;
    assert_eq!(made, json!([true, 1, true]));
    page.set_offline(false).await;
    wait_for_empty_outbox(&page, Duration::from_secs(20)).await;
    let events = events_after(&app, head, "features").await;
    assert_eq!(
        kinds(&events),
        [("feature_created".to_owned(), "in-memory".to_owned())]
    );
    wait_for_items_equal_to_the_server(&page, &app).await;
    page.close().await;
}

#[tokio::test]
#[ignore = "needs Chromium: install Debian's chromium and chromium-driver and run with --include-ignored"]
async fn a_write_queued_in_an_offline_tab_is_sent_once_by_another_tab_of_the_same_outbox() {
    require_browser();
    let origin = AppOrigin::start();
    let app = spawn_for(&origin).await;
    let driver = Driver::start().await;
    let profile = tempfile::tempdir().unwrap();
    let page = driver.page(profile.path()).await;
    page.open(&origin.page()).await;
    let a = start_client(&page, &app.address, "await features.ready;").await;
    let tab_a = page.window().await;
    let tab_b = page.new_tab().await;
    page.switch_to(&tab_b).await;
    page.open(&origin.page()).await;
    let b = start_client(&page, &app.address, "await features.ready;").await;
    assert_ne!(a["session"], b["session"], "each tab has its own session");
    let head = app.head_id().await;

    // Only tab A goes offline; tab B shares its outbox and can reach the server.
    page.switch_to(&tab_a).await;
    page.set_offline(true).await;
    let made = page
        .run(
            "const r = await sb.features.create({ id: 'from-a', title: 'made in an offline tab' });
             return [r._pending, navigator.onLine];",
        )
        .await;
    assert_eq!(made, json!([true, false]));

    page.switch_to(&tab_b).await;
    wait_until("tab B to send it", Duration::from_secs(20), || async {
        page.eval("const f = features.items.get('from-a'); return f !== undefined && !f._pending && sb.outbox.size === 0")
            .await
            == Value::Bool(true)
    })
    .await;
    assert_eq!(
        page.eval("return window.sentKinds").await,
        json!(["create"])
    );

    // Tab A, still offline, learnt the outcome from tab B.
    page.switch_to(&tab_a).await;
    wait_until("tab A to hear of it", Duration::from_secs(10), || async {
        page.eval("return sb.outbox.size === 0 && window.sentKinds.length === 1")
            .await
            == Value::Bool(true)
    })
    .await;
    let shown = page
        .eval("return [navigator.onLine, features.items.get('from-a')]")
        .await;
    assert_eq!(shown[0], false);
    assert_eq!(shown[1]["title"], "made in an offline tab");
    assert_eq!(shown[1]["version"], 1);
    assert!(shown[1].get("_pending").is_none(), "{shown}");

    // Back online, tab A sends nothing more.
    page.set_offline(false).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events = events_after(&app, head, "features").await;
    assert_eq!(
        kinds(&events),
        [("feature_created".to_owned(), "from-a".to_owned())],
        "sent once"
    );
    assert_eq!(
        events[0]["session_id"], a["session"],
        "with the session of the tab that made it"
    );
    assert_eq!(page.eval("return window.rejected").await, json!([]));
    page.close().await;
}
