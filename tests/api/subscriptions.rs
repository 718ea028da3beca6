//! Subscriptions on channels (`/api/subscriptions`), black-box: a webhook
//! receiver that is down for 10 s across a server restart still gets every
//! event in order, signed; a types filter; a pool of pull workers with a
//! crashing one; two PostgreSQL nodes that never both deliver one event;
//! and refusals that change nothing (including tokens that may read only
//! some channels).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::helpers::{
    events_at, expect_error, spawn_app_with, spawn_node_with, PgDatabase, TestApp,
};

fn allow_loopback(args: &mut switchboard::config::ServeArgs) {
    args.webhooks_allow_loopback = true;
}

// ---------------------------------------------------------------------------
// A loopback webhook receiver that can stop listening and come back on the
// same port.

/// One webhook request as received.
#[derive(Debug, Clone)]
struct Delivery {
    webhook_id: String,
    signature: String,
    content_type: String,
    body: String,
}

impl Delivery {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("a webhook body is JSON ({e}): {}", self.body))
    }

    fn events(&self) -> Vec<Value> {
        self.json()["events"]
            .as_array()
            .unwrap_or_else(|| panic!("events in {}", self.body))
            .clone()
    }

    fn ids(&self) -> Vec<i64> {
        self.events()
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    }
}

struct Hook {
    url: String,
    address: SocketAddr,
    received: Arc<Mutex<Vec<Delivery>>>,
    accepting: Option<JoinHandle<()>>,
}

impl Hook {
    /// A receiver on 127.0.0.1 that answers 200 to every POST.
    async fn start() -> Hook {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut hook = Hook {
            url: format!("http://{address}/hook"),
            address,
            received: Arc::default(),
            accepting: None,
        };
        hook.listen(listener);
        hook
    }

    fn listen(&mut self, listener: TcpListener) {
        let received = self.received.clone();
        self.accepting = Some(tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(answer(socket, received.clone()));
            }
        }));
    }

    /// Stops listening: the listener is dropped, so connections are refused.
    async fn stop(&mut self) {
        if let Some(task) = self.accepting.take() {
            task.abort();
            let _ = task.await;
        }
        // Nobody listens any more.
        assert!(
            tokio::net::TcpStream::connect(self.address).await.is_err(),
            "the stopped receiver still accepts connections"
        );
    }

    /// Listens again on the same port.
    async fn resume(&mut self) {
        let listener = TcpListener::bind(self.address)
            .await
            .expect("the receiver's port is free again");
        self.listen(listener);
    }

    fn requests(&self) -> Vec<Delivery> {
        self.received.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

/// Reads one HTTP request, records it, answers 200 and closes.
async fn answer(mut socket: tokio::net::TcpStream, received: Arc<Mutex<Vec<Delivery>>>) {
    let mut data = Vec::new();
    let mut buf = [0u8; 16384];
    let (head, body) = loop {
        let n = socket.read(&mut buf).await.unwrap_or(0);
        if n == 0 {
            return;
        }
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_string();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        if data.len() >= end + 4 + length {
            let body =
                String::from_utf8(data[end + 4..end + 4 + length].to_vec()).expect("a UTF-8 body");
            break (head, body);
        }
    };
    let header = |wanted: &str| {
        head.lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case(wanted)
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default()
    };
    assert!(
        head.starts_with("POST /hook "),
        "a POST to the path: {head}"
    );
    received.lock().unwrap().push(Delivery {
        webhook_id: header("webhook-id"),
        signature: header("webhook-signature"),
        content_type: header("content-type"),
        body,
    });
    let reply = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
    let _ = socket.write_all(reply.as_bytes()).await;
    let _ = socket.shutdown().await;
}

/// Checks a delivery's `webhook-signature` with the key set `jwks`.
fn assert_signed(jwks: &Value, delivery: &Delivery) {
    let mut parts = delivery.signature.split(',');
    let t = parts
        .next()
        .and_then(|p| p.strip_prefix("t="))
        .unwrap_or_else(|| panic!("t= in {:?}", delivery.signature));
    let kid = parts
        .next()
        .and_then(|p| p.strip_prefix("kid="))
        .unwrap_or_else(|| panic!("kid= in {:?}", delivery.signature));
    let sig = parts
        .next()
        .and_then(|p| p.strip_prefix("ed25519="))
        .unwrap_or_else(|| panic!("ed25519= in {:?}", delivery.signature));
    let t_secs: i64 = t.parse().expect("t is unix seconds");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - t_secs).abs() < 120, "t={t} is now-ish");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} is in {jwks}"));
    assert_eq!(
        (&key["kty"], &key["crv"]),
        (&json!("OKP"), &json!("Ed25519"))
    );
    let x: [u8; 32] = b64
        .decode(key["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let signature: [u8; 64] = b64.decode(sig).unwrap().try_into().unwrap();
    VerifyingKey::from_bytes(&x)
        .unwrap()
        .verify(
            format!("{t}.{}", delivery.body).as_bytes(),
            &Signature::from_bytes(&signature),
        )
        .unwrap_or_else(|e| panic!("the signature of {} verifies: {e}", delivery.webhook_id));
}

// ---------------------------------------------------------------------------
// Requests.

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = app.client.request(method, app.url(path));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// `call` that must answer `status`; its JSON body (`null` when empty).
async fn expect(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
    status: u16,
) -> Value {
    let response = call(app, method, path, body, token).await;
    let actual = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{method} {path}: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

async fn subscription(app: &TestApp, id: &str) -> Value {
    expect(
        app,
        "GET",
        &format!("/api/subscriptions/{id}"),
        None,
        None,
        200,
    )
    .await
}

async fn listed(app: &TestApp, token: Option<&str>) -> Value {
    expect(app, "GET", "/api/subscriptions", None, token, 200).await
}

/// Polls the subscription until `done` holds; fails after `within`.
async fn wait_for(
    app: &TestApp,
    id: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let s = subscription(app, id).await;
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} within {within:?}: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn keys(app: &TestApp) -> Value {
    let response = app.get("/api/webhook-keys").send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Every stored event by id.
async fn stored_by_id(app: &TestApp) -> HashMap<i64, Value> {
    events_at(&app.client, &app.address, "")
        .await
        .into_iter()
        .map(|e| (e["id"].as_i64().unwrap(), e))
        .collect()
}

fn ids_of(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

/// Checks the webhook requests of subscription `id` against the expected
/// id sequence: every request is a contiguous slice of it that starts right
/// after the previous request's last event or earlier (a redelivery), the
/// requests together hold every expected id, each event is as stored, and
/// the body and headers agree. Returns how many events were delivered again.
fn check_order(
    id: &str,
    requests: &[Delivery],
    expected: &[i64],
    stored: &HashMap<i64, Value>,
) -> usize {
    let position: HashMap<i64, usize> = expected.iter().enumerate().map(|(i, &e)| (e, i)).collect();
    let mut previous_end = 0usize;
    let mut seen = vec![false; expected.len()];
    let mut again = 0;
    for (n, request) in requests.iter().enumerate() {
        assert_eq!(request.content_type, "application/json");
        let body = request.json();
        let events = request.events();
        assert!(!events.is_empty(), "request {n} holds events");
        let ids = ids_of(&events);
        let start = *position.get(&ids[0]).unwrap_or_else(|| {
            panic!(
                "request {n}: event {} is not one the subscription takes: {}",
                ids[0], events[0]
            )
        });
        for (k, event) in events.iter().enumerate() {
            let event_id = ids[k];
            assert_eq!(
                position.get(&event_id),
                Some(&(start + k)),
                "request {n} ({:?}) is not a contiguous slice of the expected ids at {k}: {event}",
                request.webhook_id
            );
            assert_eq!(
                Some(event),
                stored.get(&event_id),
                "event {event_id} is delivered as stored"
            );
            if seen[start + k] {
                again += 1;
            }
            seen[start + k] = true;
        }
        assert!(
            start <= previous_end,
            "request {n} starts at position {start}, after a gap (the previous one ended at {previous_end})"
        );
        previous_end = start + events.len();
        let (first, last) = (ids[0], *ids.last().unwrap());
        assert_eq!(body["subscription"], id);
        assert_eq!(body["cursor"], last, "the cursor is the last id");
        assert_eq!(request.webhook_id, format!("{id}.{first}.{last}"));
    }
    let missing: Vec<i64> = expected
        .iter()
        .zip(&seen)
        .filter(|(_, s)| !**s)
        .map(|(e, _)| *e)
        .collect();
    assert!(missing.is_empty(), "never delivered: {missing:?}");
    again
}

// ---------------------------------------------------------------------------
// 1. A receiver that is down for 10 s while the server restarts.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_10_s_across_a_restart_gets_every_event_in_order_signed() {
    let app = spawn_app_with(allow_loopback).await;
    let mut hook = Hook::start().await;
    let made = expect(
        &app,
        "PUT",
        "/api/subscriptions/jobs-hook",
        Some(json!({"channels": ["jobs/*"], "webhook": {"url": hook.url}, "description": "jobs"})),
        None,
        201,
    )
    .await;
    assert_eq!(made["id"], "jobs-hook");
    assert_eq!(made["kind"], "webhook");
    assert_eq!(made["channels"], json!(["jobs/*"]));
    assert_eq!(made["types"], Value::Null);
    assert_eq!(made["webhook"], json!({"url": hook.url}));
    assert_eq!(made["batch_size"], 100);
    assert_eq!(made["lease_seconds"], 30);
    assert_eq!(made["state"], "delivering");
    assert_eq!(made["failures"], 0);
    assert_eq!(made["delivered"], 0);
    assert_eq!(made["claims"], json!([]));
    let keys_before = keys(&app).await;

    // Channels that look like `jobs/*` but are not, and another channel.
    let others = ["other/x", "jobs", "jobsx/a", "job/a"];
    let mut expected: Vec<i64> = Vec::new();
    let mut not_expected: Vec<i64> = Vec::new();
    let mut n = 0;
    let mut batch = |count: usize, other_every: usize| {
        let mut events = Vec::new();
        for i in 0..count {
            if other_every > 0 && i % other_every == 0 {
                events.push(json!({"channel": others[(i / other_every) % others.len()],
                    "type": "noise", "data": {"n": n}}));
            }
            // The last event of every batch is on `jobs/*`.
            events.push(json!({"channel": format!("jobs/{}", n % 3), "type": "job",
                "data": {"n": n, "text": format!("job number {n}")}}));
            n += 1;
        }
        events
    };
    let sort = |stored: Vec<Value>, expected: &mut Vec<i64>, not_expected: &mut Vec<i64>| {
        for e in stored {
            let id = e["id"].as_i64().unwrap();
            if e["channel"].as_str().unwrap().starts_with("jobs/") {
                expected.push(id);
            } else {
                not_expected.push(id);
            }
        }
    };

    // Some events are delivered while the receiver is up.
    let stored = app.publish_batch(batch(30, 5)).await;
    sort(stored, &mut expected, &mut not_expected);
    let first_part = *expected.last().unwrap();
    wait_for(
        &app,
        "jobs-hook",
        Duration::from_secs(10),
        "the first events are acked",
        |s| s["acked_through"] == first_part,
    )
    .await;
    let before_down = hook.count();
    assert!(before_down >= 1);

    // The receiver goes away; 1,000 events are published around a restart.
    hook.stop().await;
    let down_at = Instant::now();
    for _ in 0..2 {
        let stored = app.publish_batch(batch(250, 50)).await;
        sort(stored, &mut expected, &mut not_expected);
    }
    let failing = wait_for(
        &app,
        "jobs-hook",
        Duration::from_secs(10),
        "a failure is recorded",
        |s| s["failures"].as_i64().unwrap() >= 1,
    )
    .await;
    assert_eq!(failing["state"], "retrying");
    assert!(failing["last_error"].is_string(), "{failing}");
    assert!(failing["next_attempt_at"].is_string(), "{failing}");
    assert_eq!(failing["acked_through"], first_part);

    let app = app.restart_with(allow_loopback).await;
    let after_restart = subscription(&app, "jobs-hook").await;
    assert!(
        after_restart["failures"].as_i64().unwrap() >= 1,
        "the failures survived the restart: {after_restart}"
    );
    assert_eq!(after_restart["acked_through"], first_part);
    for _ in 0..2 {
        let stored = app.publish_batch(batch(250, 50)).await;
        sort(stored, &mut expected, &mut not_expected);
    }
    assert_eq!(expected.len(), 30 + 1000);
    let last = *expected.last().unwrap();
    assert_eq!(app.head_id().await, last);

    let up_at = down_at + Duration::from_secs(10);
    tokio::time::sleep_until(up_at.into()).await;
    assert_eq!(
        hook.count(),
        before_down,
        "nothing arrived while nobody listened"
    );
    hook.resume().await;

    let done = wait_for(
        &app,
        "jobs-hook",
        Duration::from_secs(60),
        "every event is acked",
        |s| s["acked_through"] == last,
    )
    .await;
    // The same key signs after the restart.
    let keys_after = keys(&app).await;
    assert_eq!(keys_after, keys_before, "the same key after the restart");
    let requests = hook.requests();
    for request in &requests {
        assert_signed(&keys_after, request);
    }
    let stored = stored_by_id(&app).await;
    let again = check_order("jobs-hook", &requests, &expected, &stored);
    let delivered: HashSet<i64> = requests.iter().flat_map(Delivery::ids).collect();
    for id in &not_expected {
        assert!(
            !delivered.contains(id),
            "event {id} of another channel arrived"
        );
    }
    assert_eq!(done["failures"], 0, "{done}");
    assert_eq!(done["state"], "delivering");
    assert_eq!(done["last_error"], Value::Null);
    assert_eq!(done["next_attempt_at"], Value::Null);
    assert!(done["last_success_at"].is_string());
    assert_eq!(done["head_id"], last);
    assert_eq!(
        done["delivered"],
        expected.len(),
        "each event is counted once ({again} delivered again)"
    );
    // And nothing more comes.
    let count = hook.count();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(hook.count(), count, "no request after everything was acked");
}

// ---------------------------------------------------------------------------
// 2. Types.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_listed_types_arrive_and_the_cursor_still_reaches_the_head() {
    let app = spawn_app_with(allow_loopback).await;
    let hook = Hook::start().await;
    // Events before the subscription: it starts after the second.
    let early = app
        .publish_batch(vec![
            json!({"channel": "orders/1", "type": "created", "data": {"early": 0}}),
            json!({"channel": "orders/1", "type": "created", "data": {"early": 1}}),
            json!({"channel": "orders/1", "type": "paid", "data": {"early": 2}}),
            json!({"channel": "orders/1", "type": "shipped", "data": {"early": 3}}),
        ])
        .await;
    let start = early[1]["id"].as_i64().unwrap();
    let made = expect(
        &app,
        "PUT",
        "/api/subscriptions/orders",
        Some(
            json!({"channels": ["orders/*"], "types": ["created", "paid"],
            "webhook": {"url": hook.url}, "batch_size": 4, "start": start}),
        ),
        None,
        201,
    )
    .await;
    assert_eq!(made["types"], json!(["created", "paid"]));
    assert_eq!(made["batch_size"], 4);
    assert_eq!(made["acked_through"], start);

    let types = ["created", "shipped", "paid", "note", "cancelled"];
    let mut events = Vec::new();
    for n in 0..40 {
        events.push(
            json!({"channel": format!("orders/{}", n % 2), "type": types[n % types.len()],
            "data": {"n": n}}),
        );
        if n % 7 == 0 {
            events.push(json!({"channel": "invoices/1", "type": "created", "data": {"n": n}}));
        }
    }
    // The last events are not taken: the cursor must still reach the head.
    events.push(json!({"channel": "orders/1", "type": "shipped", "data": {"n": "last"}}));
    events.push(json!({"channel": "other", "type": "paid", "data": {"n": "after"}}));
    let stored = app.publish_batch(events).await;
    let head = stored.last().unwrap()["id"].as_i64().unwrap();
    let expected: Vec<i64> = early[2..]
        .iter()
        .chain(&stored)
        .filter(|e| {
            e["channel"].as_str().unwrap().starts_with("orders/")
                && ["created", "paid"].contains(&e["type"].as_str().unwrap())
        })
        .map(|e| e["id"].as_i64().unwrap())
        .collect();
    assert_eq!(expected.len(), 1 + 16);

    let done = wait_for(
        &app,
        "orders",
        Duration::from_secs(10),
        "the cursor reaches the head",
        |s| s["acked_through"] == head,
    )
    .await;
    let requests = hook.requests();
    let all_stored = stored_by_id(&app).await;
    let again = check_order("orders", &requests, &expected, &all_stored);
    assert_eq!(again, 0, "the receiver always answered 200: nothing twice");
    let sent: Vec<i64> = requests.iter().flat_map(Delivery::ids).collect();
    assert_eq!(
        sent, expected,
        "exactly the created and paid orders, in order"
    );
    assert!(
        requests.iter().all(|r| r.ids().len() <= 4),
        "batches of at most 4"
    );
    assert_eq!(requests.len(), expected.len().div_ceil(4));
    let jwks = keys(&app).await;
    for request in &requests {
        assert_signed(&jwks, request);
    }
    assert_eq!(done["delivered"], expected.len());
    assert_eq!(done["failures"], 0);
    assert_eq!(done["head_id"], head);

    // A change keeps the cursor: only later `shipped` events arrive now.
    let changed = expect(
        &app,
        "PUT",
        "/api/subscriptions/orders",
        Some(
            json!({"channels": ["orders/*"], "types": ["shipped"], "webhook": {"url": hook.url},
            "start": "beginning"}),
        ),
        None,
        200,
    )
    .await;
    assert_eq!(changed["acked_through"], head, "the cursor was kept");
    assert_eq!(changed["types"], json!(["shipped"]));
    assert_eq!(
        changed["batch_size"], 100,
        "a left-out field is its default again"
    );
    let later = app
        .publish_batch(vec![
            json!({"channel": "orders/3", "type": "created", "data": {}}),
            json!({"channel": "orders/3", "type": "shipped", "data": {"later": true}}),
        ])
        .await;
    let shipped = later[1]["id"].as_i64().unwrap();
    wait_for(
        &app,
        "orders",
        Duration::from_secs(10),
        "the shipped order is acked",
        |s| s["acked_through"] == shipped,
    )
    .await;
    let requests = hook.requests();
    let new: Vec<i64> = requests
        .iter()
        .flat_map(Delivery::ids)
        .skip(sent.len())
        .collect();
    assert_eq!(new, vec![shipped]);
}

// ---------------------------------------------------------------------------
// 3. A pool of pull workers and one that crashes.

/// A claim as a worker saw it.
#[derive(Debug, Clone)]
struct Held {
    worker: String,
    claim: String,
    first: i64,
    last: i64,
    events: Vec<Value>,
    /// When the claim's answer arrived, and when its ack was sent (or its
    /// lease ended), in ms since the epoch.
    from_ms: f64,
    until_ms: f64,
}

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

async fn claim(app: &TestApp, id: &str, ask: Value) -> Value {
    expect(
        app,
        "POST",
        &format!("/api/subscriptions/{id}/claims"),
        Some(ask),
        None,
        200,
    )
    .await
}

fn held(worker: &str, answer: &Value) -> Option<Held> {
    let c = answer["claim"].as_object()?;
    let events = answer["events"].as_array().unwrap().clone();
    assert_eq!(c["size"].as_i64().unwrap(), events.len() as i64, "{answer}");
    assert_eq!(c["worker"], worker);
    let ids = ids_of(&events);
    assert_eq!(ids.first(), c["first_id"].as_i64().as_ref(), "{answer}");
    assert_eq!(ids.last(), c["last_id"].as_i64().as_ref(), "{answer}");
    Some(Held {
        worker: worker.to_owned(),
        claim: c["id"].as_str().unwrap().to_owned(),
        first: c["first_id"].as_i64().unwrap(),
        last: c["last_id"].as_i64().unwrap(),
        events,
        from_ms: now_ms(),
        until_ms: f64::INFINITY,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_of_three_workers_drains_a_pull_subscription_and_a_crashed_workers_range_moves_on() {
    let app = Arc::new(spawn_app_with(|_| {}).await);
    let made = expect(
        &app,
        "PUT",
        "/api/subscriptions/pool",
        Some(json!({"channels": ["work/*"], "kind": "pull"})),
        None,
        201,
    )
    .await;
    assert_eq!(
        (&made["kind"], &made["state"]),
        (&json!("pull"), &json!("claimable"))
    );
    assert_eq!(made["webhook"], Value::Null);
    let mut published = Vec::new();
    for part in 0..3 {
        let events = (0..200)
            .map(|i| {
                let n = part * 200 + i;
                json!({"channel": format!("work/{}", n % 4), "type": "task", "data": {"n": n}})
            })
            .collect();
        published.extend(app.publish_batch(events).await);
        // Something the subscription does not take, between its events.
        app.publish("elsewhere", "task", json!({"part": part}), None)
            .await;
    }
    let all: Vec<i64> = ids_of(&published);
    assert_eq!(all.len(), 600);
    let head = app.head_id().await;
    let stored = stored_by_id(&app).await;

    // The crashing worker claims first, with a 1 s lease, and never acks.
    let crashed_answer = claim(
        &app,
        "pool",
        json!({"worker": "crasher", "max": 25, "lease_seconds": 1}),
    )
    .await;
    let mut crashed = held("crasher", &crashed_answer).expect("a claim");
    assert_eq!(ids_of(&crashed.events), all[..25].to_vec());
    let lease_end = chrono::DateTime::parse_from_rfc3339(
        crashed_answer["claim"]["lease_expires_at"]
            .as_str()
            .unwrap(),
    )
    .unwrap()
    .timestamp_millis() as f64;
    assert!(lease_end - crashed.from_ms < 1500.0, "a 1 s lease");
    crashed.until_ms = lease_end;

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut workers = Vec::new();
    for w in 0..3 {
        let app = app.clone();
        workers.push(tokio::spawn(async move {
            let name = format!("worker-{w}");
            let mut mine: Vec<Held> = Vec::new();
            loop {
                assert!(
                    Instant::now() < deadline,
                    "{name} finished before the deadline"
                );
                let answer = claim(&app, "pool", json!({"worker": name, "max": 25})).await;
                let Some(mut h) = held(&name, &answer) else {
                    assert_eq!(answer["events"], json!([]));
                    let s = subscription(&app, "pool").await;
                    if s["claims"] == json!([]) && s["acked_through"] == s["head_id"] {
                        return mine;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                assert!(h.events.len() <= 25);
                h.until_ms = now_ms();
                let acked = expect(
                    &app,
                    "POST",
                    &format!("/api/subscriptions/pool/claims/{}/ack", h.claim),
                    None,
                    None,
                    200,
                )
                .await;
                assert_eq!(acked["acked"], h.events.len(), "{acked}");
                mine.push(h);
            }
        }));
    }
    let mut acked: Vec<Held> = Vec::new();
    for worker in workers {
        acked.extend(worker.await.expect("a worker ran to the end"));
    }

    // Every event once, in claims that each hold a contiguous run.
    let mut ids: Vec<i64> = acked.iter().flat_map(|h| ids_of(&h.events)).collect();
    ids.sort_unstable();
    assert_eq!(ids, all, "the acked claims hold every event exactly once");
    for h in &acked {
        for event in &h.events {
            let id = event["id"].as_i64().unwrap();
            assert_eq!(Some(event), stored.get(&id), "claimed as stored");
        }
        let at = all.iter().position(|&id| id == h.first).unwrap();
        assert_eq!(
            ids_of(&h.events),
            all[at..at + h.events.len()].to_vec(),
            "contiguous"
        );
    }
    // The crashed worker's range went whole to another worker, under a new id.
    let heir: Vec<&Held> = acked
        .iter()
        .filter(|h| (h.first, h.last) == (crashed.first, crashed.last))
        .collect();
    assert_eq!(heir.len(), 1, "one worker took the lapsed range");
    assert_ne!(heir[0].claim, crashed.claim, "under a new claim id");
    assert_ne!(heir[0].worker, "crasher");
    assert_eq!(heir[0].events, crashed.events);
    assert!(
        heir[0].from_ms >= crashed.until_ms,
        "only after the lease ended"
    );
    // No two claims held at once overlap.
    let mut every = acked.clone();
    every.push(crashed.clone());
    for (i, a) in every.iter().enumerate() {
        for b in &every[i + 1..] {
            let at_once = a.from_ms < b.until_ms && b.from_ms < a.until_ms;
            let overlap = a.first <= b.last && b.first <= a.last;
            assert!(
                !(at_once && overlap),
                "{} ({}–{}) and {} ({}–{}) were held at once",
                a.claim,
                a.first,
                a.last,
                b.claim,
                b.first,
                b.last
            );
            if overlap {
                assert_eq!(
                    (a.first, a.last),
                    (b.first, b.last),
                    "ranges are disjoint or the same"
                );
            }
        }
    }

    // The crashed worker's late ack, and an ack twice, are refused.
    let late = call(
        &app,
        "POST",
        &format!("/api/subscriptions/pool/claims/{}/ack", crashed.claim),
        None,
        None,
    )
    .await;
    let body = expect_error(late, 409, "claim_lost").await;
    assert_eq!(body["error"]["details"]["claim"], crashed.claim.as_str());
    let twice = call(
        &app,
        "POST",
        &format!("/api/subscriptions/pool/claims/{}/ack", acked[0].claim),
        None,
        None,
    )
    .await;
    expect_error(twice, 409, "claim_lost").await;

    let done = subscription(&app, "pool").await;
    assert_eq!(done["acked_through"], head, "{done}");
    assert_eq!(done["head_id"], head);
    assert_eq!(done["claims"], json!([]));
    assert_eq!(done["delivered"], 600, "each event counted once");

    // A released claim goes whole to the next claimer under a new id.
    let more = app
        .publish_batch(
            (0..5)
                .map(|n| json!({"channel": "work/9", "type": "task", "data": {"more": n}}))
                .collect(),
        )
        .await;
    let first = claim(&app, "pool", json!({"worker": "a"})).await;
    let first = held("a", &first).unwrap();
    assert_eq!(ids_of(&first.events), ids_of(&more));
    let listed_claim = &subscription(&app, "pool").await["claims"];
    assert_eq!(listed_claim.as_array().unwrap().len(), 1);
    assert_eq!(listed_claim[0]["id"], first.claim.as_str());
    assert_eq!(listed_claim[0]["worker"], "a");
    assert_eq!(listed_claim[0]["size"], 5);
    expect(
        &app,
        "POST",
        &format!("/api/subscriptions/pool/claims/{}/release", first.claim),
        None,
        None,
        204,
    )
    .await;
    let second = claim(&app, "pool", json!({"worker": "b"})).await;
    let second = held("b", &second).unwrap();
    assert_ne!(second.claim, first.claim);
    assert_eq!(second.events, first.events);
    let lost = call(
        &app,
        "POST",
        &format!("/api/subscriptions/pool/claims/{}/ack", first.claim),
        None,
        None,
    )
    .await;
    expect_error(lost, 409, "claim_lost").await;
    let ok = expect(
        &app,
        "POST",
        &format!("/api/subscriptions/pool/claims/{}/ack", second.claim),
        None,
        None,
        200,
    )
    .await;
    assert_eq!(
        ok,
        json!({"acked": 5, "acked_through": more[4]["id"].clone()})
    );
    // Nothing is left: a claim answers `null` (also with no body at all).
    let response = app
        .post("/api/subscriptions/pool/claims")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let empty: Value = response.json().await.unwrap();
    assert_eq!(empty, json!({"claim": null, "events": []}));
}

// ---------------------------------------------------------------------------
// 4. Two PostgreSQL nodes.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set SWITCHBOARD_TEST_POSTGRES=postgres://… and run with --include-ignored"]
async fn two_postgres_nodes_deliver_each_event_of_one_subscription_exactly_once() {
    crate::helpers::on_postgres(async {
        let database = Arc::new(PgDatabase::create().await);
        let a = spawn_node_with(&database, allow_loopback).await;
        let b = spawn_node_with(&database, allow_loopback).await;
        let hook = Hook::start().await;
        expect(
            &a,
            "PUT",
            "/api/subscriptions/both",
            Some(json!({"channels": ["jobs/*"], "webhook": {"url": hook.url}, "batch_size": 20})),
            None,
            201,
        )
        .await;
        // Both nodes know it.
        let seen = subscription(&b, "both").await;
        assert_eq!(seen["webhook"]["url"], hook.url.as_str());
        let mut published = Vec::new();
        for n in 0..300 {
            let node = if n % 2 == 0 { &a } else { &b };
            let event = node
                .publish(&format!("jobs/{}", n % 5), "job", json!({"n": n}), None)
                .await;
            published.push(event["id"].as_i64().unwrap());
            if n % 50 == 0 {
                node.publish("other", "job", json!({"n": n}), None).await;
            }
        }
        let last = *published.last().unwrap();
        let done = wait_for(
            &b,
            "both",
            Duration::from_secs(30),
            "every event is acked",
            |s| s["acked_through"] == last,
        )
        .await;
        // Let any late request arrive before counting.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let requests = hook.requests();
        let stored = stored_by_id(&a).await;
        let again = check_order("both", &requests, &published, &stored);
        let sent: Vec<i64> = requests.iter().flat_map(Delivery::ids).collect();
        assert_eq!(again, 0, "no failure happened, so nothing may arrive twice");
        assert_eq!(sent, published, "every event exactly once, in order");
        let webhook_ids: HashSet<&str> = requests.iter().map(|r| r.webhook_id.as_str()).collect();
        assert_eq!(webhook_ids.len(), requests.len(), "no batch sent twice");
        let jwks = keys(&b).await;
        assert_eq!(jwks, keys(&a).await, "one key on both nodes");
        for request in &requests {
            assert_signed(&jwks, request);
        }
        assert_eq!(done["failures"], 0, "{done}");
        assert_eq!(done["last_error"], Value::Null);
        assert_eq!(done["delivered"], 300);
        let on_a = subscription(&a, "both").await;
        assert_eq!(on_a["acked_through"], last);
    })
    .await
}

// ---------------------------------------------------------------------------
// 5. Refusals.

/// A request that is refused: method, path, body, status, code, and the
/// field the error names.
type Refusal<'a> = (
    &'a str,
    String,
    Option<Value>,
    u16,
    &'a str,
    Option<&'a str>,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_change_nothing() {
    let app = spawn_app_with(|_| {}).await;
    assert_eq!(listed(&app, None).await, json!({"subscriptions": []}));
    expect(
        &app,
        "PUT",
        "/api/subscriptions/p1",
        Some(json!({"channels": ["jobs/*"]})),
        None,
        201,
    )
    .await;
    expect(&app, "PUT", "/api/subscriptions/w1",
        Some(json!({"channels": ["jobs/*"], "webhook": {"url": "https://hooks.example.com/switchboard"}})),
        None, 201).await;
    let before = listed(&app, None).await;
    let ids: Vec<&str> = before["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["p1", "w1"]);
    assert_eq!(before["subscriptions"][0]["kind"], "pull");

    let long = "a".repeat(65);
    let webhook = |url: &str| json!({"channels": ["jobs/*"], "webhook": {"url": url}});
    let refusals: Vec<Refusal> = vec![
        (
            "PUT",
            "/api/subscriptions/w2".into(),
            Some(webhook("http://10.0.0.1/")),
            422,
            "validation_failed",
            Some("webhook.url"),
        ),
        (
            "PUT",
            "/api/subscriptions/w2".into(),
            Some(webhook("http://192.168.1.5/hook")),
            422,
            "validation_failed",
            Some("webhook.url"),
        ),
        (
            "PUT",
            "/api/subscriptions/w2".into(),
            Some(webhook("http://169.254.169.254/")),
            422,
            "validation_failed",
            Some("webhook.url"),
        ),
        (
            "PUT",
            "/api/subscriptions/w2".into(),
            Some(webhook("http://127.0.0.1:9/hook")),
            422,
            "validation_failed",
            Some("webhook.url"),
        ),
        (
            "PUT",
            "/api/subscriptions/w2".into(),
            Some(webhook("http://localhost:9/hook")),
            422,
            "validation_failed",
            Some("webhook.url"),
        ),
        (
            "PUT",
            "/api/subscriptions/w2".into(),
            Some(webhook("http://[::1]:9/")),
            422,
            "validation_failed",
            Some("webhook.url"),
        ),
        (
            "PUT",
            "/api/subscriptions/w2".into(),
            Some(webhook("ftp://hooks.example.com/")),
            422,
            "validation_failed",
            Some("webhook.url"),
        ),
        (
            "PUT",
            "/api/subscriptions/a%20b".into(),
            Some(json!({"channels": ["jobs/*"]})),
            400,
            "bad_request",
            Some("id"),
        ),
        (
            "PUT",
            format!("/api/subscriptions/{long}"),
            Some(json!({"channels": ["jobs/*"]})),
            400,
            "bad_request",
            Some("id"),
        ),
        (
            "GET",
            format!("/api/subscriptions/{long}"),
            None,
            400,
            "bad_request",
            Some("id"),
        ),
        (
            "PUT",
            "/api/subscriptions/p2".into(),
            Some(json!({"channels": ["jobs/*"], "colour": "red"})),
            422,
            "validation_failed",
            Some("colour"),
        ),
        (
            "PUT",
            "/api/subscriptions/p2".into(),
            Some(json!({"channels": []})),
            422,
            "validation_failed",
            Some("channels"),
        ),
        (
            "PUT",
            "/api/subscriptions/p2".into(),
            Some(json!({"kind": "pull"})),
            422,
            "validation_failed",
            Some("channels"),
        ),
        (
            "PUT",
            "/api/subscriptions/p2".into(),
            Some(json!({"channels": ["jobs/*"], "batch_size": 0})),
            422,
            "validation_failed",
            Some("batch_size"),
        ),
        (
            "PUT",
            "/api/subscriptions/p2".into(),
            Some(json!({"channels": ["jobs/*"], "batch_size": 1001})),
            422,
            "validation_failed",
            Some("batch_size"),
        ),
        (
            "PUT",
            "/api/subscriptions/p2".into(),
            Some(json!({"channels": ["jobs/*"], "lease_seconds": 3601})),
            422,
            "validation_failed",
            Some("lease_seconds"),
        ),
        (
            "PUT",
            "/api/subscriptions/p2".into(),
            Some(json!({"channels": ["jobs/*"], "start": 1_000_000})),
            422,
            "validation_failed",
            Some("start"),
        ),
        (
            "PUT",
            "/api/subscriptions/p2".into(),
            Some(json!({"channels": ["jobs/*"], "start": "yesterday"})),
            422,
            "validation_failed",
            Some("start"),
        ),
        (
            "PUT",
            "/api/subscriptions/p2".into(),
            Some(json!({"channels": ["jobs/*"], "kind": "push"})),
            422,
            "validation_failed",
            Some("kind"),
        ),
        (
            "PUT",
            "/api/subscriptions/p2".into(),
            Some(json!({"channels": ["jobs/*"], "kind": "webhook"})),
            422,
            "validation_failed",
            Some("webhook"),
        ),
        (
            "PUT",
            "/api/subscriptions/p2".into(),
            Some(
                json!({"channels": ["jobs/*"], "kind": "pull", "webhook": {"url": "https://hooks.example.com/"}}),
            ),
            422,
            "validation_failed",
            Some("webhook"),
        ),
        (
            "GET",
            "/api/subscriptions/nope".into(),
            None,
            404,
            "not_found",
            None,
        ),
        (
            "DELETE",
            "/api/subscriptions/nope".into(),
            None,
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            "/api/subscriptions/nope/claims".into(),
            Some(json!({})),
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            "/api/subscriptions/nope/retry".into(),
            None,
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            "/api/subscriptions/nope/claims/c_x/ack".into(),
            None,
            404,
            "not_found",
            None,
        ),
        (
            "POST",
            "/api/subscriptions/w1/claims".into(),
            Some(json!({"worker": "w"})),
            409,
            "wrong_kind",
            None,
        ),
        (
            "POST",
            "/api/subscriptions/p1/claims".into(),
            Some(json!({"max": 0})),
            422,
            "validation_failed",
            Some("max"),
        ),
        (
            "POST",
            "/api/subscriptions/p1/claims".into(),
            Some(json!({"wait_seconds": 31})),
            422,
            "validation_failed",
            Some("wait_seconds"),
        ),
        (
            "POST",
            "/api/subscriptions/p1/claims".into(),
            Some(json!({"lease_seconds": 0})),
            422,
            "validation_failed",
            Some("lease_seconds"),
        ),
        (
            "POST",
            "/api/subscriptions/p1/claims/c_unknown/ack".into(),
            None,
            409,
            "claim_lost",
            None,
        ),
        (
            "POST",
            "/api/subscriptions/p1/claims/c_unknown/release".into(),
            None,
            409,
            "claim_lost",
            None,
        ),
        (
            "PUT",
            "/api/subscriptions/p1".into(),
            Some(webhook("https://hooks.example.com/switchboard")),
            409,
            "conflict",
            None,
        ),
        (
            "PUT",
            "/api/subscriptions/w1".into(),
            Some(json!({"channels": ["jobs/*"], "kind": "pull"})),
            409,
            "conflict",
            None,
        ),
    ];
    for (method, path, body, status, code, field) in refusals {
        let response = call(&app, method, &path, body.clone(), None).await;
        let error = expect_error(response, status, code).await;
        if let Some(field) = field {
            assert_eq!(
                error["error"]["details"]["field"], field,
                "{method} {path} {body:?}: {error}"
            );
        }
        assert_eq!(
            listed(&app, None).await,
            before,
            "{method} {path} {body:?} changed nothing"
        );
    }
    let conflict = call(
        &app,
        "PUT",
        "/api/subscriptions/w1",
        Some(json!({"channels": ["jobs/*"]})),
        None,
    )
    .await;
    let body = expect_error(conflict, 409, "conflict").await;
    assert_eq!(body["error"]["details"]["kind"], "webhook");
    assert_eq!(listed(&app, None).await, before);
    expect(&app, "GET", "/api/subscriptions/nope", None, None, 404).await;

    // Deleting one removes it, once.
    expect(&app, "DELETE", "/api/subscriptions/p1", None, None, 204).await;
    let response = call(&app, "DELETE", "/api/subscriptions/p1", None, None).await;
    expect_error(response, 404, "not_found").await;
    let after = listed(&app, None).await;
    assert_eq!(after["subscriptions"].as_array().unwrap().len(), 1);
    assert_eq!(after["subscriptions"][0], before["subscriptions"][1]);
}

const ADMIN: &str = "admin-token-0123456789abcdef";
const TEAM_A: &str = "team-a-token-0123456789abcdef";
const TEAM_B: &str = "team-b-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_sees_and_makes_only_subscriptions_on_channels_it_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokens.toml");
    std::fs::write(
        &path,
        format!(
            "[[tokens]]\ntoken = \"{ADMIN}\"\nagent_id = \"admin\"\nread = [\"*\"]\nwrite = [\"*\"]\n\n\
             [[tokens]]\ntoken = \"{TEAM_A}\"\nagent_id = \"team-a\"\nread = [\"team-a:*\"]\nwrite = [\"team-a:*\"]\n\n\
             [[tokens]]\ntoken = \"{TEAM_B}\"\nagent_id = \"team-b\"\nread = [\"team-b:*\"]\nwrite = [\"team-b:*\"]\n"
        ),
    )
    .unwrap();
    let app = spawn_app_with(|a| a.tokens = Some(path)).await;
    let put = |id: &str, channels: Value| {
        (
            format!("/api/subscriptions/{id}"),
            Some(json!({"channels": channels, "kind": "pull"})),
        )
    };

    let (p, body) = put("b-sub", json!(["team-b:*"]));
    let b_sub = expect(&app, "PUT", &p, body, Some(TEAM_B), 201).await;
    assert_eq!(b_sub["created_by"], "team-b");
    let (p, body) = put("a-sub", json!(["team-a:jobs"]));
    expect(&app, "PUT", &p, body, Some(TEAM_A), 201).await;
    let everything = listed(&app, Some(ADMIN)).await;
    assert_eq!(everything["subscriptions"].as_array().unwrap().len(), 2);

    for channels in [
        json!(["*"]),
        json!(["team-b:x"]),
        json!(["team-a:*", "team-b:x"]),
        json!(["team-*"]),
    ] {
        let (p, body) = put("a-more", channels.clone());
        let response = call(&app, "PUT", &p, body, Some(TEAM_A)).await;
        expect_error(response, 403, "forbidden").await;
        assert_eq!(
            listed(&app, Some(ADMIN)).await,
            everything,
            "{channels} made nothing"
        );
    }

    // Team A sees only its own.
    let mine = listed(&app, Some(TEAM_A)).await;
    let ids: Vec<&str> = mine["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a-sub"]);
    let theirs = listed(&app, Some(TEAM_B)).await;
    let ids: Vec<&str> = theirs["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b-sub"]);
    for (method, path, body) in [
        ("GET", "/api/subscriptions/b-sub", None),
        ("DELETE", "/api/subscriptions/b-sub", None),
        ("POST", "/api/subscriptions/b-sub/retry", None),
        ("POST", "/api/subscriptions/b-sub/claims", Some(json!({}))),
        ("POST", "/api/subscriptions/b-sub/claims/c_x/ack", None),
    ] {
        let response = call(&app, method, path, body, Some(TEAM_A)).await;
        expect_error(response, 404, "not_found").await;
        assert_eq!(
            listed(&app, Some(ADMIN)).await,
            everything,
            "{method} {path} changed nothing"
        );
    }
    // Nor may team A take team B's subscription over by naming its own
    // channels (2b04c62 answered 200 and replaced b-sub's channels).
    let (p, body) = put("b-sub", json!(["team-a:x"]));
    let response = call(&app, "PUT", &p, body, Some(TEAM_A)).await;
    expect_error(response, 403, "forbidden").await;
    assert_eq!(
        listed(&app, Some(ADMIN)).await,
        everything,
        "b-sub is unchanged"
    );
}

// ---------------------------------------------------------------------------
// A rare type behind many other events.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_finds_a_rare_type_behind_many_events_of_other_types() {
    let app = spawn_app_with(|_| {}).await;
    expect(
        &app,
        "PUT",
        "/api/subscriptions/rare",
        Some(json!({"channels": ["work/*"], "types": ["rare"], "kind": "pull"})),
        None,
        201,
    )
    .await;
    let common = (0..50)
        .map(|n| json!({"channel": "work/a", "type": "common", "data": {"n": n}}))
        .collect();
    app.publish_batch(common).await;
    let rare = app
        .publish("work/b", "rare", json!({"rare": true}), None)
        .await;
    // One claim, without waiting: the rare event is claimable now.
    let answer = claim(&app, "rare", json!({"worker": "w", "max": 1})).await;
    let got = held("w", &answer).unwrap_or_else(|| panic!("a claim of the rare event: {answer}"));
    assert_eq!(got.events, vec![rare]);
}

/// A claim sent again with its `Idempotency-Key` after a lost answer gets
/// the same claim (no second range is taken); a key whose claim found
/// nothing is not remembered, so its repeat looks again; an ack repeated
/// with its key is answered the same instead of `claim_lost`.
#[tokio::test]
async fn a_claim_repeated_with_its_idempotency_key_gets_the_same_events_once() {
    let app = crate::helpers::spawn_app().await;
    let made = app
        .client
        .put(app.url("/api/subscriptions/jobs"))
        .json(&json!({ "channels": ["jobs/*"], "kind": "pull", "batch_size": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let claim_with = |key: &'static str| {
        let request = app
            .client
            .post(app.url("/api/subscriptions/jobs/claims"))
            .header("Idempotency-Key", key)
            .json(&json!({ "worker": "w1" }));
        async move {
            let r = request.send().await.unwrap();
            let replayed = r.headers().contains_key("idempotent-replayed");
            (
                r.status().as_u16(),
                replayed,
                r.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, replayed, empty) = claim_with("k-empty").await;
    assert_eq!((status, replayed), (200, false));
    assert_eq!(empty["claim"], Value::Null);
    for n in 0..4 {
        let r = app
            .post("/api/channels/jobs%2Fa/events")
            .json(&json!({ "type": "queued", "data": { "n": n } }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    // The empty answer was not remembered: the same key now claims.
    let (_, replayed, first) = claim_with("k-empty").await;
    assert!(!replayed);
    assert_eq!(first["events"].as_array().unwrap().len(), 2);
    let (status, replayed, again) = claim_with("k-empty").await;
    assert_eq!((status, replayed), (200, true));
    assert_eq!(again, first, "the same claim and events");
    let held = subscription(&app, "jobs").await;
    assert_eq!(
        held["claims"].as_array().unwrap().len(),
        1,
        "one range taken: {held}"
    );
    // The next key takes the next range.
    let (_, _, second) = claim_with("k-2").await;
    assert_ne!(second["claim"]["id"], first["claim"]["id"]);
    assert_eq!(
        second["claim"]["first_id"],
        first["claim"]["last_id"].as_i64().unwrap() + 1
    );
    let ack = |claim: &Value| {
        app.client
            .post(app.url(&format!(
                "/api/subscriptions/jobs/claims/{}/ack",
                claim["claim"]["id"].as_str().unwrap()
            )))
            .header("Idempotency-Key", "ack-1")
            .send()
    };
    let r = ack(&first).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let r = ack(&first).await.unwrap();
    assert_eq!(
        r.status(),
        200,
        "a repeated ack is answered again, not claim_lost"
    );
    assert!(r.headers().contains_key("idempotent-replayed"));
    assert_eq!(r.json::<Value>().await.unwrap(), body);
    assert_eq!(subscription(&app, "jobs").await["delivered"], 2);
}
