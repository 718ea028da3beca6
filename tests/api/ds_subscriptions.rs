//! Durable Streams subscriptions beyond the upstream suite: state that
//! survives a restart (on both backends), signatures that verify with the
//! published key (the same key after a restart), loopback webhooks refused
//! without the flag, and a lapsed claim that fences its worker.

use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::helpers::{spawn_app_with, TestApp};

const DEADLINE: Duration = Duration::from_secs(10);

fn allow_loopback(args: &mut switchboard::config::ServeArgs) {
    args.webhooks_allow_loopback = true;
}

/// One webhook request as received: its signature header and raw body.
struct Received {
    signature: String,
    body: String,
}

/// A webhook receiver on 127.0.0.1 that answers `answer` to every POST.
async fn receiver(answer: Value) -> (String, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    (url, serve(listener, answer))
}

/// Answers `answer` to every POST on `listener`; what it received.
fn serve(listener: TcpListener, answer: Value) -> mpsc::UnboundedReceiver<Received> {
    let (sent, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let (sent, answer) = (sent.clone(), answer.to_string());
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 4096];
                let (head, body) = loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&data).to_string();
                    let Some(end) = text.find("\r\n\r\n") else {
                        continue;
                    };
                    let head = text[..end].to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if data.len() >= end + 4 + length {
                        break (
                            text[..end].to_owned(),
                            text[end + 4..end + 4 + length].to_owned(),
                        );
                    }
                };
                let signature = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("webhook-signature")
                            .then(|| value.trim().to_owned())
                    })
                    .unwrap_or_default();
                let _ = sent.send(Received { signature, body });
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    received
}

async fn next(received: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(DEADLINE, received.recv())
        .await
        .expect("a webhook request before the deadline")
        .expect("the receiver is running")
}

async fn send(app: &TestApp, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    send_with(app, method, path, body, None).await
}

async fn send_with(
    app: &TestApp,
    method: &str,
    path: &str,
    body: Option<Value>,
    token: Option<&str>,
) -> (u16, Value) {
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
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Creates a JSON stream with one value; its tail.
async fn create_stream(app: &TestApp, path: &str, value: Value) -> String {
    let r = app
        .client
        .put(app.url(&format!("/v1/stream/{path}")))
        .header("content-type", "application/json")
        .body(value.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.headers()["stream-next-offset"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn append(app: &TestApp, path: &str, value: Value) -> String {
    let r = app
        .client
        .post(app.url(&format!("/v1/stream/{path}")))
        .header("content-type", "application/json")
        .body(value.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    r.headers()["stream-next-offset"]
        .to_str()
        .unwrap()
        .to_owned()
}

fn acked<'a>(subscription: &'a Value, path: &str) -> &'a str {
    subscription["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["path"] == path)
        .and_then(|s| s["acked_offset"].as_str())
        .unwrap_or_else(|| panic!("{path} in {subscription}"))
}

/// Verifies a `Webhook-Signature` against the server's published keys.
async fn verifies(app: &TestApp, received: &Received) -> bool {
    let (status, jwks) = send(app, "GET", "/v1/stream/__ds/jwks.json", None).await;
    assert_eq!(status, 200);
    let mut parts = received.signature.split(',');
    let t = parts.next().and_then(|p| p.strip_prefix("t=")).unwrap();
    let kid = parts.next().and_then(|p| p.strip_prefix("kid=")).unwrap();
    let sig = parts
        .next()
        .and_then(|p| p.strip_prefix("ed25519="))
        .unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let Some(key) = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
    else {
        return false;
    };
    let x: [u8; 32] = b64
        .decode(key["x"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let signature: [u8; 64] = b64.decode(sig).unwrap().try_into().unwrap();
    VerifyingKey::from_bytes(&x)
        .unwrap()
        .verify(
            format!("{t}.{}", received.body).as_bytes(),
            &Signature::from_bytes(&signature),
        )
        .is_ok()
}

async fn a_pull_wake_subscription_and_its_acked_offsets_survive_a_restart() {
    let app = spawn_app_with(|_| {}).await;
    let wake = "wake/restart";
    create_stream(&app, wake, json!([])).await;
    let (status, _) = send(
        &app,
        "PUT",
        "/v1/stream/__ds/subscriptions/keep",
        Some(json!({"type": "pull-wake", "pattern": "jobs/*", "wake_stream": wake, "lease_ttl_ms": 60000})),
    )
    .await;
    assert_eq!(status, 201);
    let tail = create_stream(&app, "jobs/a", json!({"n": 1})).await;
    let (status, claimed) = send(
        &app,
        "POST",
        "/v1/stream/__ds/subscriptions/keep/claim",
        Some(json!({"worker": "w1"})),
    )
    .await;
    assert_eq!(status, 200, "{claimed}");
    let generation = claimed["generation"].as_i64().unwrap();
    let (status, answer) = send_with(
        &app,
        "POST",
        "/v1/stream/__ds/subscriptions/keep/ack",
        Some(
            json!({"wake_id": claimed["wake_id"], "generation": generation,
            "acks": [{"stream": "jobs/a", "offset": tail}], "done": true}),
        ),
        claimed["token"].as_str(),
    )
    .await;
    assert_eq!(
        (status, answer),
        (200, json!({"ok": true, "next_wake": false}))
    );

    let app = app.restart().await;
    let (status, subscription) =
        send(&app, "GET", "/v1/stream/__ds/subscriptions/keep", None).await;
    assert_eq!(status, 200);
    assert_eq!(subscription["type"], "pull-wake");
    assert_eq!(subscription["pattern"], "jobs/*");
    assert_eq!(
        acked(&subscription, "jobs/a"),
        tail,
        "the acked offset survived"
    );
    // Nothing is pending after the restart: no claim.
    let (status, refused) = send(
        &app,
        "POST",
        "/v1/stream/__ds/subscriptions/keep/claim",
        Some(json!({"worker": "w1"})),
    )
    .await;
    assert_eq!(
        (status, &refused["error"]["code"]),
        (409, &json!("NO_PENDING_WORK"))
    );
    // A new append wakes it with a later generation, and the pattern still
    // links a stream created after the restart.
    let tail_b = create_stream(&app, "jobs/b", json!({"n": 2})).await;
    let (status, claimed) = send(
        &app,
        "POST",
        "/v1/stream/__ds/subscriptions/keep/claim",
        Some(json!({"worker": "w2"})),
    )
    .await;
    assert_eq!(status, 200, "{claimed}");
    assert!(claimed["generation"].as_i64().unwrap() > generation);
    let pending: Vec<&Value> = claimed["streams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["has_pending"] == true)
        .collect();
    assert_eq!(pending.len(), 1, "{claimed}");
    assert_eq!(pending[0]["path"], "jobs/b");
    assert_eq!(pending[0]["tail_offset"], tail_b.as_str());
    // The wake stream holds one wake event per wake, naming the subscription.
    let events: Value = app
        .client
        .get(app.url(&format!("/v1/stream/{wake}?offset=-1")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wakes: Vec<&Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["subscription_id"] == "keep")
        .collect();
    assert_eq!(wakes.len(), 2, "{events}");
}

async fn webhooks_are_signed_with_a_published_key_that_survives_a_restart() {
    let app = spawn_app_with(allow_loopback).await;
    let (url, mut received) = receiver(json!({"done": true})).await;
    let (status, created) = send(
        &app,
        "PUT",
        "/v1/stream/__ds/subscriptions/signed",
        Some(json!({"type": "webhook", "streams": ["hooks/a"], "webhook": {"url": url}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let kid = created["webhook"]["signing"]["kid"].clone();
    let tail = create_stream(&app, "hooks/a", json!({"n": 1})).await;
    let first = next(&mut received).await;
    assert!(verifies(&app, &first).await, "{}", first.signature);
    let body: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(body["subscription_id"], "signed");
    assert_eq!(body["streams"][0]["tail_offset"], tail.as_str());
    // `done: true` acked the snapshot.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (_, subscription) =
            send(&app, "GET", "/v1/stream/__ds/subscriptions/signed", None).await;
        if acked(&subscription, "hooks/a") == tail {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{subscription}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let app = app.restart_with(allow_loopback).await;
    let (_, subscription) = send(&app, "GET", "/v1/stream/__ds/subscriptions/signed", None).await;
    assert_eq!(
        subscription["webhook"]["signing"]["kid"], kid,
        "the same key"
    );
    let tail = append(&app, "hooks/a", json!({"n": 2})).await;
    let second = next(&mut received).await;
    assert!(verifies(&app, &second).await);
    let body: Value = serde_json::from_str(&second.body).unwrap();
    assert_eq!(body["generation"], 2);
    assert_eq!(body["streams"][0]["tail_offset"], tail.as_str());
    assert_eq!(body["streams"][0]["has_pending"], true);
}

crate::on_both_backends!(
    a_pull_wake_subscription_and_its_acked_offsets_survive_a_restart,
    webhooks_are_signed_with_a_published_key_that_survives_a_restart,
);

#[tokio::test]
async fn loopback_webhooks_are_refused_unless_the_flag_allows_them_and_private_ones_always() {
    let hook =
        |url: &str| Some(json!({"type": "webhook", "pattern": "a/*", "webhook": {"url": url}}));
    let app = spawn_app_with(|_| {}).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/",
    ] {
        let (status, body) = send(&app, "PUT", "/v1/stream/__ds/subscriptions/s1", hook(url)).await;
        assert_eq!(status, 400, "{url}");
        assert_eq!(body["error"]["code"], "WEBHOOK_URL_REJECTED", "{url}");
    }
    let (status, _) = send(&app, "GET", "/v1/stream/__ds/subscriptions/s1", None).await;
    assert_eq!(status, 404, "nothing was created");

    let app = spawn_app_with(allow_loopback).await;
    let (status, _) = send(
        &app,
        "PUT",
        "/v1/stream/__ds/subscriptions/s1",
        hook("http://127.0.0.1:9/hook"),
    )
    .await;
    assert_eq!(status, 201);
    for url in [
        "http://10.0.0.1/hook",
        "http://192.168.0.2/",
        "http://169.254.169.254/",
        "http://[fc00::1]/",
    ] {
        let (status, body) = send(&app, "PUT", "/v1/stream/__ds/subscriptions/s2", hook(url)).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("WEBHOOK_URL_REJECTED")),
            "{url}"
        );
    }
    // Another configuration under an existing id is a conflict.
    let (status, body) = send(
        &app,
        "PUT",
        "/v1/stream/__ds/subscriptions/s1",
        hook("http://127.0.0.1:10/hook"),
    )
    .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("SUBSCRIPTION_ALREADY_EXISTS"))
    );
}

#[tokio::test]
async fn a_claim_whose_lease_lapses_goes_to_another_worker_and_fences_the_first() {
    let app = spawn_app_with(|_| {}).await;
    create_stream(&app, "wake/lapse", json!([])).await;
    let (status, _) = send(
        &app,
        "PUT",
        "/v1/stream/__ds/subscriptions/lapse",
        Some(json!({"type": "pull-wake", "streams": ["work/a"], "wake_stream": "wake/lapse", "lease_ttl_ms": 1000})),
    )
    .await;
    assert_eq!(status, 201);
    let tail = create_stream(&app, "work/a", json!({"n": 1})).await;
    let claim = |worker: &'static str| {
        let app = &app;
        async move {
            send(
                app,
                "POST",
                "/v1/stream/__ds/subscriptions/lapse/claim",
                Some(json!({ "worker": worker })),
            )
            .await
        }
    };
    let (status, first) = claim("w1").await;
    assert_eq!(status, 200, "{first}");
    let (status, busy) = claim("w2").await;
    assert_eq!(
        (status, &busy["error"]["current_holder"]),
        (409, &json!("w1"))
    );

    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (status, second) = claim("w2").await;
    assert_eq!(status, 200, "the lapsed lease freed the wake: {second}");
    assert!(second["generation"].as_i64() > first["generation"].as_i64());
    let (status, fenced) = send_with(
        &app,
        "POST",
        "/v1/stream/__ds/subscriptions/lapse/ack",
        Some(
            json!({"wake_id": first["wake_id"], "generation": first["generation"],
            "acks": [{"stream": "work/a", "offset": tail}], "done": true}),
        ),
        first["token"].as_str(),
    )
    .await;
    assert_eq!((status, &fenced["error"]["code"]), (409, &json!("FENCED")));
    // The current holder's token, with the first wake's generation: fenced
    // too; with its own: acked.
    let ack = |generation: &Value, wake_id: &Value| {
        Some(json!({"wake_id": wake_id, "generation": generation,
            "acks": [{"stream": "work/a", "offset": tail}], "done": true}))
    };
    let (status, _) = send_with(
        &app,
        "POST",
        "/v1/stream/__ds/subscriptions/lapse/ack",
        ack(&second["generation"], &second["wake_id"]),
        Some("not-the-token"),
    )
    .await;
    assert_eq!(status, 401);
    let (status, done) = send_with(
        &app,
        "POST",
        "/v1/stream/__ds/subscriptions/lapse/ack",
        ack(&second["generation"], &second["wake_id"]),
        second["token"].as_str(),
    )
    .await;
    assert_eq!(
        (status, done),
        (200, json!({"ok": true, "next_wake": false}))
    );
}

#[tokio::test]
async fn a_webhook_receiver_that_was_down_gets_the_wake_when_it_comes_back() {
    let app = spawn_app_with(allow_loopback).await;
    // A port with nobody listening yet.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (status, _) = send(
        &app,
        "PUT",
        "/v1/stream/__ds/subscriptions/down",
        Some(json!({"type": "webhook", "streams": ["later/a"],
            "webhook": {"url": format!("http://{address}/hook")}})),
    )
    .await;
    assert_eq!(status, 201);
    let tail = create_stream(&app, "later/a", json!({"n": 1})).await;
    // The first attempt fails; the receiver starts; a retry reaches it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut received = serve(
        TcpListener::bind(address).await.unwrap(),
        json!({"done": true}),
    );
    let wake = next(&mut received).await;
    assert!(verifies(&app, &wake).await);
    let body: Value = serde_json::from_str(&wake.body).unwrap();
    assert_eq!(body["generation"], 1, "the same wake, retried");
    assert_eq!(body["streams"][0]["tail_offset"], tail.as_str());
}
