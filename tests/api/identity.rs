//! Bring your own identity (issue 27): JWTs signed here with real keys
//! (HMAC, RSA, RSA-PSS, EC P-256, Ed25519) and checked directly or through a
//! JWKS served from loopback; the app's authorize callback, also on
//! loopback; stream tickets that open a stream and nothing else; streams
//! that end when their credential does; and the real binary's SIGHUP
//! revocation and request log.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use switchboard::client::sse::SseEvent;
use switchboard::config::ServeArgs;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::{expect_error, ids, spawn_app_with, stored_ids, SseStream, TestApp, DEADLINE};

// ---------------------------------------------------------------------------
// Keys, made once per test binary with the openssl CLI.

/// Private keys (PKCS#8 PEM from `openssl genpkey`) and what the tests need
/// of their public halves.
struct Keys {
    rsa: EncodingKey,
    /// `openssl pkey -pubout` of the RSA key.
    rsa_public_pem: String,
    ec: EncodingKey,
    /// Another P-256 key: the one a provider adds later.
    ec_later: EncodingKey,
    ed: EncodingKey,
    /// The raw Ed25519 public key (a JWK's `x`).
    ed_public: Vec<u8>,
}

fn openssl(args: &[&str]) {
    let output = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl CLI runs");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temp dir for keys");
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
        let private = |name: &str, algorithm: &[&str]| {
            let out = path(name);
            let mut args = vec!["genpkey"];
            args.extend_from_slice(algorithm);
            args.extend(["-out", out.as_str()]);
            openssl(&args);
            std::fs::read(&out).unwrap()
        };
        let rsa = private(
            "rsa.pem",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        );
        let p256 = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
        let ec = private("ec.pem", &p256);
        let ec_later = private("ec-later.pem", &p256);
        let ed = private("ed.pem", &["-algorithm", "ed25519"]);
        let (rsa_in, rsa_pub) = (path("rsa.pem"), path("rsa.pub.pem"));
        openssl(&["pkey", "-in", &rsa_in, "-pubout", "-out", &rsa_pub]);
        let (ed_in, ed_pub) = (path("ed.pem"), path("ed.pub.der"));
        openssl(&[
            "pkey", "-in", &ed_in, "-pubout", "-outform", "DER", "-out", &ed_pub,
        ]);
        let ed_der = std::fs::read(&ed_pub).unwrap();
        Keys {
            rsa: EncodingKey::from_rsa_pem(&rsa).expect("an RSA PKCS#8 key"),
            rsa_public_pem: std::fs::read_to_string(&rsa_pub).unwrap(),
            ec: EncodingKey::from_ec_pem(&ec).expect("a P-256 PKCS#8 key"),
            ec_later: EncodingKey::from_ec_pem(&ec_later).expect("a P-256 PKCS#8 key"),
            ed: EncodingKey::from_ed_pem(&ed).expect("an Ed25519 PKCS#8 key"),
            // SubjectPublicKeyInfo of Ed25519: a 12-byte prefix, then the key.
            ed_public: ed_der[ed_der.len() - 32..].to_vec(),
        }
    })
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The public JWK of `key` for `alg`, with key id `kid`.
fn jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Value {
    let mut jwk = Jwk::from_encoding_key(key, alg).expect("a public JWK");
    jwk.common.key_id = Some(kid.to_owned());
    serde_json::to_value(jwk).unwrap()
}

/// The Ed25519 public JWK (`Jwk::from_encoding_key` does not do OKP keys).
fn ed_jwk(kid: &str) -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(&keys().ed_public),
           "kid": kid, "alg": "EdDSA", "use": "sig"})
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("the JWT is signed")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

// ---------------------------------------------------------------------------
// A loopback HTTP server: the identity provider's JWKS, or the app's
// authorize endpoint.

/// One request a loopback server received.
#[derive(Debug, Clone)]
struct Received {
    method: String,
    path: String,
    /// By lower-case name.
    headers: HashMap<String, String>,
    at: Instant,
}

impl Received {
    /// The value of the `session` cookie, if any.
    fn session(&self) -> Option<&str> {
        self.headers
            .get("cookie")?
            .split(';')
            .map(str::trim)
            .find_map(|c| c.strip_prefix("session="))
    }
}

/// How a loopback server answers one request.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    delay: Duration,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&Received) -> Reply + Send + Sync;

/// A tiny HTTP/1.1 server on 127.0.0.1:0: one request per connection, each
/// recorded and answered as its handler says. Stopped, its port refuses
/// connections.
struct Loopback {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Loopback {
    async fn start(handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Loopback {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = received.clone();
        let server = tokio::spawn(async move {
            // Dropped (with every connection) when the server is stopped.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let (handler, log) = (handler.clone(), log.clone());
                connections.spawn(async move {
                    let _ = answer(socket, &*handler, &log).await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Loopback {
            base,
            received,
            server: Some(server),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Stops listening: from now on its port refuses connections.
    async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

async fn answer(
    mut socket: TcpStream,
    handler: &Handler,
    log: &Mutex<Vec<Received>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut request_line = lines.next().unwrap_or_default().split(' ');
    let method = request_line.next().unwrap_or_default().to_owned();
    let path = request_line.next().unwrap_or_default().to_owned();
    let headers = lines
        .take_while(|line| !line.is_empty())
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let request = Received {
        method,
        path,
        headers,
        at: Instant::now(),
    };
    let reply = handler(&request);
    log.lock().unwrap().push(request);
    tokio::time::sleep(reply.delay).await;
    let reason = match reply.status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        _ => "Other",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&reply.body);
    socket.write_all(out.as_bytes()).await?;
    socket.shutdown().await
}

/// The identity provider's JWKS endpoint: a key set the test may change,
/// served with `Cache-Control: public, max-age=…`.
struct Provider {
    server: Loopback,
    keys: Arc<Mutex<Vec<Value>>>,
}

impl Provider {
    async fn start(keys: Vec<Value>, max_age: u64) -> Provider {
        let keys = Arc::new(Mutex::new(keys));
        let served = keys.clone();
        let server = Loopback::start(move |_| {
            let set = json!({ "keys": served.lock().unwrap().clone() });
            Reply::json(200, &set).header("Cache-Control", &format!("public, max-age={max_age}"))
        })
        .await;
        Provider { server, keys }
    }

    fn url(&self) -> String {
        self.server.url("/.well-known/jwks.json")
    }

    fn add(&self, key: Value) {
        self.keys.lock().unwrap().push(key);
    }

    fn remove(&self, kid: &str) {
        self.keys.lock().unwrap().retain(|key| key["kid"] != kid);
    }

    /// How many times the set was fetched.
    fn fetches(&self) -> usize {
        self.server.received().len()
    }

    /// When the set was fetched first (at the server's start).
    fn first_fetch(&self) -> Instant {
        self.server.received().first().expect("fetched at start").at
    }
}

/// The provider's four keys: RS256 and PS256 (one RSA key, each pinned to
/// its algorithm), ES256 and EdDSA.
fn provider_keys() -> Vec<Value> {
    let k = keys();
    vec![
        jwk(&k.rsa, Algorithm::RS256, "rsa-rs256"),
        jwk(&k.rsa, Algorithm::PS256, "rsa-ps256"),
        jwk(&k.ec, Algorithm::ES256, "ec-p256"),
        ed_jwk("ed-25519"),
    ]
}

/// (algorithm, kid, private key, the agent its test JWT names) for each
/// provider key.
fn provider_signers() -> [(Algorithm, &'static str, &'static EncodingKey, &'static str); 4] {
    let k = keys();
    [
        (Algorithm::RS256, "rsa-rs256", &k.rsa, "rita"),
        (Algorithm::PS256, "rsa-ps256", &k.rsa, "paul"),
        (Algorithm::ES256, "ec-p256", &k.ec, "eve"),
        (Algorithm::EdDSA, "ed-25519", &k.ed, "edda"),
    ]
}

const ISSUER: &str = "https://idp.example.test/";
const AUDIENCE: &str = "switchboard";

fn oidc_claims(sub: &str) -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": sub,
           "iat": unix_now(), "exp": unix_now() + 600})
}

/// An OpenID Connect style setup: keys from `jwks_url`, the issuer and
/// audience checked, each user on `user:{agent}:*`.
async fn oidc_app(jwks_url: String) -> TestApp {
    spawn_app_with(move |a| {
        a.identity.jwt_jwks_url = Some(jwks_url);
        a.identity.jwt_issuer = Some(ISSUER.into());
        a.identity.jwt_audiences = vec![AUDIENCE.into()];
        a.identity.jwt_read = vec!["user:{agent}:*".into()];
        a.identity.jwt_write = vec!["user:{agent}:*".into()];
    })
    .await
}

// ---------------------------------------------------------------------------
// Supabase: HS256 with the project's JWT secret.

const SUPABASE_SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";

async fn supabase_app(configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
    spawn_app_with(|a| {
        a.identity.jwt_secret = Some(SUPABASE_SECRET.into());
        a.identity.jwt_audiences = vec!["authenticated".into()];
        a.identity.jwt_read = vec!["user:{agent}:*".into(), "global".into()];
        a.identity.jwt_write = vec!["user:{agent}:*".into()];
        configure(a);
    })
    .await
}

fn hs256(claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(SUPABASE_SECRET.as_bytes()),
        claims,
    )
}

/// A Supabase access token for `sub`, expiring at `exp`.
fn supabase_jwt(sub: &str, exp: u64) -> String {
    hs256(
        &json!({"sub": sub, "aud": "authenticated", "role": "authenticated",
                  "iat": unix_now(), "exp": exp}),
    )
}

// ---------------------------------------------------------------------------
// Requests.

/// The credentials (and other headers) a request carries.
#[derive(Debug, Clone, Default)]
struct Caller(Vec<(String, String)>);

impl Caller {
    fn bearer(token: &str) -> Caller {
        Caller(vec![("Authorization".into(), format!("Bearer {token}"))])
    }

    fn cookie(cookie: &str) -> Caller {
        Caller(vec![("Cookie".into(), cookie.into())])
    }

    fn nobody() -> Caller {
        Caller::default()
    }

    fn with(&self, name: &str, value: &str) -> Caller {
        let mut caller = self.clone();
        caller.0.push((name.into(), value.into()));
        caller
    }

    fn on(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        for (name, value) in &self.0 {
            request = request.header(name, value);
        }
        request
    }
}

/// `POST /api/channels/{channel}/events` as `caller`.
async fn publish(app: &TestApp, caller: &Caller, channel: &str) -> reqwest::Response {
    caller
        .on(app.post(&format!("/api/channels/{channel}/events")))
        .json(&json!({"type": "note", "data": {"on": channel}}))
        .send()
        .await
        .expect("publish request")
}

/// The stored event of a 201.
async fn created(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "expected 201 Created, got: {text}");
    serde_json::from_str(&text).unwrap()
}

/// `GET /api/events?limit=1000&{query}` as `caller` (200).
async fn history(app: &TestApp, caller: &Caller, query: &str) -> Vec<Value> {
    let response = caller
        .on(app.get(&format!("/api/events?limit=1000&{query}")))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "history: {body}");
    body["events"].as_array().unwrap().clone()
}

/// `GET /api/stream?{query}` as `caller`, which must open.
async fn open_stream(app: &TestApp, caller: &Caller, query: &str) -> SseStream {
    let response = caller
        .on(app.get(&format!("/api/stream?{query}")))
        .send()
        .await
        .expect("stream request");
    let status = response.status();
    if status != 200 {
        panic!(
            "the stream should open, got {status}: {}",
            response.text().await.unwrap()
        );
    }
    SseStream::new(response)
}

/// `POST /api/stream-tickets` as `caller` (201); the ticket.
async fn mint_ticket(app: &TestApp, caller: &Caller) -> String {
    let response = caller
        .on(app.post("/api/stream-tickets"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "a ticket: {body}");
    body["ticket"].as_str().unwrap().to_owned()
}

/// Asserts an error answer: status, code and exact message.
async fn refused(response: reqwest::Response, status: u16, code: &str, message: &str) {
    let www_authenticate = response.headers().get("www-authenticate").cloned();
    let body = expect_error(response, status, code).await;
    assert_eq!(body["error"]["message"], message, "{body}");
    if status == 401 {
        assert!(
            www_authenticate.is_some_and(|v| v.to_str().unwrap().starts_with("Bearer")),
            "a 401 names the Bearer scheme"
        );
    }
}

/// Reads `stream` up to its `reauthenticate` event, which must come within
/// `within`; returns the events before it, that event, and when it came.
async fn until_reauthenticate(
    stream: &mut SseStream,
    within: Duration,
) -> (Vec<SseEvent>, SseEvent, f64) {
    let deadline = tokio::time::Instant::now() + within;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(event) = stream.next_event_within(left).await else {
            panic!(
                "no reauthenticate event within {within:?} (ended: {}); got {before:?}",
                stream.ended
            );
        };
        if event.event == "reauthenticate" {
            return (before, event, unix_now_f64());
        }
        before.push(event);
    }
}

/// The stream's body ends (after its last event).
async fn assert_body_ends(stream: &mut SseStream) {
    let next = stream.next_message(DEADLINE).await;
    assert!(
        next.is_none() && stream.ended,
        "the body should end after reauthenticate; got {next:?}"
    );
}

/// Asserts a `reauthenticate` frame: no id, `{"reason", "message"}`.
fn assert_reauthenticate(event: &SseEvent, reason: &str) {
    assert_eq!(event.event, "reauthenticate");
    assert_eq!(event.id, None, "reauthenticate has no id line: {event:?}");
    let data = event.json().expect("reauthenticate data is JSON");
    assert_eq!(data["reason"], reason, "{data}");
    assert!(
        data["message"].as_str().is_some_and(|m| !m.is_empty()),
        "a message: {data}"
    );
    assert_eq!(
        data.as_object().unwrap().len(),
        2,
        "reason and message: {data}"
    );
}

// ---------------------------------------------------------------------------
// 1. The Supabase recipe.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_jwts_confine_each_user_to_their_own_channels_in_writes_streams_history_and_sync()
{
    let app = supabase_app(|_| {}).await;
    let alice = Caller::bearer(&supabase_jwt("alice", unix_now() + 3600));
    let bob = Caller::bearer(&supabase_jwt("bob", unix_now() + 3600));
    // The scopes claim wins over --jwt-read/--jwt-write.
    let ops = Caller::bearer(&hs256(&json!({
        "sub": "ops", "aud": "authenticated", "exp": unix_now() + 3600,
        "switchboard": {"read": ["*"], "write": ["*"]}
    })));

    let global = created(publish(&app, &ops, "global").await).await;
    let bobs = created(publish(&app, &bob, "user:bob:notes").await).await;
    let alices = created(publish(&app, &alice, "user:alice:notes").await).await;
    assert_eq!(global["agent_id"], "ops");
    assert_eq!(bobs["agent_id"], "bob");
    assert_eq!(alices["agent_id"], "alice", "the JWT's sub is the agent");
    let feature = ops
        .on(app.post("/api/features"))
        .json(&json!({"id": "f-1", "title": "only ops reads features"}))
        .send()
        .await
        .unwrap();
    assert_eq!(feature.status(), 201);
    let (global, bobs, alices) = (
        global["id"].as_i64().unwrap(),
        bobs["id"].as_i64().unwrap(),
        alices["id"].as_i64().unwrap(),
    );

    // Writes: her own channels only, as herself.
    refused(
        publish(&app, &alice, "user:bob:notes").await,
        403,
        "forbidden",
        "this token may not write user:bob:notes",
    )
    .await;
    refused(
        publish(&app, &alice, "global").await,
        403,
        "forbidden",
        "this token may not write global",
    )
    .await;
    refused(
        publish(&app, &alice.with("X-Agent-ID", "bob"), "user:alice:notes").await,
        403,
        "forbidden",
        "this token acts as alice, not bob",
    )
    .await;

    // History: her channels and global, never bob's.
    assert_eq!(
        stored_ids(&history(&app, &alice, "").await),
        [global, alices]
    );
    assert_eq!(stored_ids(&history(&app, &bob, "").await), [global, bobs]);
    let alices_jwt = supabase_jwt("alice", unix_now() + 3600);
    let by_query = history(
        &app,
        &Caller::nobody(),
        &format!("access_token={alices_jwt}"),
    )
    .await;
    assert_eq!(
        stored_ids(&by_query),
        [global, alices],
        "?access_token= takes a JWT"
    );
    assert_eq!(
        history(&app, &alice, "channels=user:bob:*").await,
        Vec::<Value>::new()
    );
    let response = alice
        .on(app.get(&format!("/api/events/{bobs}")))
        .send()
        .await
        .unwrap();
    expect_error(response, 404, "not_found").await;

    // Streams, replayed (from a cursor, and the recent replay) then live.
    let mut from_start = open_stream(&app, &alice.with("Last-Event-ID", "0"), "channels=*").await;
    let mut recent = open_stream(&app, &alice, "channels=*&replay=50").await;
    let mut bobs_channels = open_stream(&app, &alice, "channels=user:bob:*&replay=50").await;
    for stream in [&mut from_start, &mut recent] {
        assert_eq!(ids(&stream.take_events(2).await), [global, alices]);
    }
    created(publish(&app, &bob, "user:bob:notes").await).await;
    let another = ops
        .on(app.post("/api/features"))
        .json(&json!({"id": "f-2", "title": "still only ops"}))
        .send()
        .await
        .unwrap();
    assert_eq!(another.status(), 201);
    let global_later = created(publish(&app, &ops, "global").await).await;
    let alices_later = created(publish(&app, &alice, "user:alice:notes").await).await;
    let expected = [
        global_later["id"].as_i64().unwrap(),
        alices_later["id"].as_i64().unwrap(),
    ];
    for stream in [&mut from_start, &mut recent] {
        let live = stream.take_events(2).await;
        assert_eq!(ids(&live), expected);
        assert_eq!(live[1].json().unwrap()["agent_id"], "alice");
        stream.assert_quiet(Duration::from_millis(300)).await;
    }
    bobs_channels.assert_quiet(Duration::from_millis(300)).await;

    // Sync: no collection is hers, so none is shown; asking is 403.
    let sync: Value = alice
        .on(app.get("/api/sync"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sync["collections"], json!({}), "{sync}");
    refused(
        alice
            .on(app.get("/api/sync?collections=features"))
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
        "this token may not read features",
    )
    .await;
    let everything: Value = ops
        .on(app.get("/api/sync"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        everything["collections"]["features"]["changed"][0]["id"],
        "f-1"
    );
}

// ---------------------------------------------------------------------------
// 2. A JWKS URL.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_ps256_es256_and_eddsa_jwts_verify_through_a_jwks_url_and_unknown_kids_do_not_hammer_it(
) {
    let provider = Provider::start(provider_keys(), 3600).await;
    let app = oidc_app(provider.url()).await;
    assert_eq!(provider.fetches(), 1, "the JWKS is fetched at start");
    let started = provider.first_fetch();

    for (alg, kid, key, agent) in provider_signers() {
        let caller = Caller::bearer(&sign(alg, Some(kid), key, &oidc_claims(agent)));
        let stored = created(publish(&app, &caller, &format!("user:{agent}:inbox")).await).await;
        assert_eq!(stored["agent_id"], agent, "{alg:?}");
    }

    // A key answers only its own algorithm: RS256 under the PS256 key's id,
    // and ES256 under an RSA key's id, are refused.
    let k = keys();
    let pinned = sign(
        Algorithm::RS256,
        Some("rsa-ps256"),
        &k.rsa,
        &oidc_claims("rita"),
    );
    let response = publish(&app, &Caller::bearer(&pinned), "user:rita:inbox").await;
    expect_error(response, 401, "unauthorized").await;
    let crossed = sign(
        Algorithm::ES256,
        Some("rsa-rs256"),
        &k.ec,
        &oidc_claims("eve"),
    );
    let response = publish(&app, &Caller::bearer(&crossed), "user:eve:inbox").await;
    expect_error(response, 401, "unauthorized").await;

    // Made-up key ids: each refused with its kid, and the provider is asked
    // again at most once per 10 s.
    for i in 0..25 {
        let kid = format!("made-up-{i}");
        let token = sign(Algorithm::ES256, Some(&kid), &k.ec, &oidc_claims("eve"));
        refused(
            publish(&app, &Caller::bearer(&token), "user:eve:inbox").await,
            401,
            "unauthorized",
            &format!("the JWT's key id (kid) {kid} is unknown"),
        )
        .await;
    }
    let allowed = 1 + (started.elapsed().as_secs() / 10) as usize;
    assert!(
        provider.fetches() <= allowed,
        "{} fetches in {:?}: the provider is hammered",
        provider.fetches(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_provider_adds_later_is_picked_up_without_a_restart_and_known_keys_outlive_the_provider(
) {
    let mut provider = Provider::start(provider_keys(), 3600).await;
    let app = oidc_app(provider.url()).await;
    let later = sign(
        Algorithm::ES256,
        Some("ec-later"),
        &keys().ec_later,
        &oidc_claims("newcomer"),
    );
    let newcomer = Caller::bearer(&later);

    // The provider rotates: a new key, a new kid. Within 10 s of the last
    // fetch the provider is not asked again.
    provider.add(jwk(&keys().ec_later, Algorithm::ES256, "ec-later"));
    refused(
        publish(&app, &newcomer, "user:newcomer:inbox").await,
        401,
        "unauthorized",
        "the JWT's key id (kid) ec-later is unknown",
    )
    .await;
    assert_eq!(provider.fetches(), 1, "no fetch within 10 s of the last");

    // Once 10 s have passed, the unknown kid is fetched at once.
    tokio::time::sleep_until((provider.first_fetch() + Duration::from_millis(10_500)).into()).await;
    let stored = created(publish(&app, &newcomer, "user:newcomer:inbox").await).await;
    assert_eq!(stored["agent_id"], "newcomer");
    assert_eq!(provider.fetches(), 2, "one more fetch, for the new kid");

    // The provider goes down: the keys it served still verify; an unknown
    // kid is refused with its id.
    provider.server.stop().await;
    created(publish(&app, &newcomer, "user:newcomer:inbox").await).await;
    for (alg, kid, key, agent) in provider_signers() {
        let caller = Caller::bearer(&sign(alg, Some(kid), key, &oidc_claims(agent)));
        created(publish(&app, &caller, &format!("user:{agent}:inbox")).await).await;
    }
    let ghost = sign(
        Algorithm::ES256,
        Some("ghost"),
        &keys().ec,
        &oidc_claims("eve"),
    );
    refused(
        publish(&app, &Caller::bearer(&ghost), "user:eve:inbox").await,
        401,
        "unauthorized",
        "the JWT's key id (kid) ghost is unknown",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_a_fetch_of_the_jwks_fails_the_last_good_keys_keep_verifying() {
    // max-age=10: the keys are stale 10 s after the start's fetch.
    let mut provider = Provider::start(provider_keys(), 10).await;
    let app = oidc_app(provider.url()).await;
    let fetched = provider.first_fetch();
    provider.server.stop().await;
    tokio::time::sleep_until((fetched + Duration::from_millis(10_500)).into()).await;

    // Stale keys and an unknown kid: the server fetches now, the provider
    // refuses the connection, and the answer is still a 401 naming the kid.
    let ghost = sign(
        Algorithm::ES256,
        Some("ghost"),
        &keys().ec,
        &oidc_claims("eve"),
    );
    refused(
        publish(&app, &Caller::bearer(&ghost), "user:eve:inbox").await,
        401,
        "unauthorized",
        "the JWT's key id (kid) ghost is unknown",
    )
    .await;
    // The failed fetch kept the last good set: every key still verifies.
    for (alg, kid, key, agent) in provider_signers() {
        let caller = Caller::bearer(&sign(alg, Some(kid), key, &oidc_claims(agent)));
        let stored = created(publish(&app, &caller, &format!("user:{agent}:inbox")).await).await;
        assert_eq!(stored["agent_id"], agent, "{alg:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_provider_drops_stops_verifying_once_the_sets_max_age_has_passed() {
    let provider = Provider::start(provider_keys(), 10).await;
    let app = oidc_app(provider.url()).await;
    let fetched = provider.first_fetch();
    let [dropped, kept @ ..] = provider_signers();
    let (alg, kid, key, agent) = dropped;
    let dropped = Caller::bearer(&sign(alg, Some(kid), key, &oidc_claims(agent)));
    provider.remove(kid);

    // Within max-age the cached set stands, and the provider is not asked.
    created(publish(&app, &dropped, "user:rita:inbox").await).await;
    assert_eq!(provider.fetches(), 1);

    // Stale: the set is fetched again and the dropped key stops verifying.
    tokio::time::sleep_until((fetched + Duration::from_millis(10_500)).into()).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = publish(&app, &dropped, "user:rita:inbox").await;
        if response.status() == 401 {
            refused(
                response,
                401,
                "unauthorized",
                "the JWT's key id (kid) rsa-rs256 is unknown",
            )
            .await;
            break;
        }
        assert_eq!(response.status(), 201);
        assert!(Instant::now() < deadline, "the dropped key still verifies");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(provider.fetches(), 2, "fetched once more, when stale");
    for (alg, kid, key, agent) in kept {
        let caller = Caller::bearer(&sign(alg, Some(kid), key, &oidc_claims(agent)));
        created(publish(&app, &caller, &format!("user:{agent}:inbox")).await).await;
    }
}

// ---------------------------------------------------------------------------
// 3. Refusals.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_with_a_wrong_issuer_or_audience_expired_early_unsigned_confused_or_tampered_are_401_with_the_reason(
) {
    let k = keys();
    let dir = tempfile::tempdir().unwrap();
    let pem_file = dir.path().join("idp.pub.pem");
    std::fs::write(&pem_file, &k.rsa_public_pem).unwrap();
    // Only an RSA key, given as a PEM file.
    let app = spawn_app_with(|a| {
        a.identity.jwt_keys = vec![pem_file.to_str().unwrap().to_owned()];
        a.identity.jwt_issuer = Some(ISSUER.into());
        a.identity.jwt_audiences = vec![AUDIENCE.into()];
        a.identity.jwt_read = vec!["user:{agent}:*".into()];
        a.identity.jwt_write = vec!["user:{agent}:*".into()];
    })
    .await;
    let now = unix_now();
    let rs256 = |claims: Value| sign(Algorithm::RS256, None, &k.rsa, &claims);
    let with = |changes: Value| {
        let mut claims = oidc_claims("alice");
        for (name, value) in changes.as_object().unwrap() {
            match value {
                Value::Null => claims.as_object_mut().unwrap().remove(name),
                value => claims
                    .as_object_mut()
                    .unwrap()
                    .insert(name.clone(), value.clone()),
            };
        }
        claims
    };

    // Taken: a good token, and exp/nbf within the 30 s leeway.
    let good = rs256(oidc_claims("alice"));
    let alice = Caller::bearer(&good);
    created(publish(&app, &alice, "user:alice:notes").await).await;
    let leeway = rs256(with(json!({"exp": now - 10, "nbf": now + 10})));
    created(publish(&app, &Caller::bearer(&leeway), "user:alice:notes").await).await;

    let b64 = |v: Value| b64url(v.to_string().as_bytes());
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(oidc_claims("alice"))
    );
    // HS256 "signed" with the RSA public key: the classic confusion.
    let confused = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(k.rsa_public_pem.as_bytes()),
        &oidc_claims("alice"),
    );
    let other_kind = sign(Algorithm::ES256, None, &k.ec, &oidc_claims("alice"));
    let (head, rest) = good.split_once('.').unwrap();
    let signature = rest.split_once('.').unwrap().1;
    let tampered = format!("{head}.{}.{signature}", b64(with(json!({"sub": "admin"}))));

    let cases = [
        (
            rs256(with(json!({"iss": "https://evil.example.test/"}))),
            format!("the JWT's issuer (iss) is not {ISSUER}"),
        ),
        (
            rs256(with(json!({"aud": "another-app"}))),
            format!("the JWT's audience (aud) is not {AUDIENCE}"),
        ),
        (
            rs256(with(json!({"exp": now - 120}))),
            "the JWT has expired (exp)".to_owned(),
        ),
        (
            rs256(with(json!({"nbf": now + 300}))),
            "the JWT is not valid yet (nbf)".to_owned(),
        ),
        (
            rs256(with(json!({"exp": null}))),
            "the JWT has no exp claim".to_owned(),
        ),
        (
            unsigned,
            "the JWT's header is malformed or names an algorithm switchboard does not accept"
                .to_owned(),
        ),
        (confused, "no key is configured for HS256 JWTs".to_owned()),
        (other_kind, "no key is configured for ES256 JWTs".to_owned()),
        (tampered, "the JWT's signature does not verify".to_owned()),
    ];
    for (token, message) in cases {
        let caller = Caller::bearer(&token);
        refused(
            publish(&app, &caller, "user:alice:notes").await,
            401,
            "unauthorized",
            &message,
        )
        .await;
        let response = caller.on(app.get("/api/events")).send().await.unwrap();
        refused(response, 401, "unauthorized", &message).await;
    }
    assert_eq!(
        history(&app, &alice, "").await.len(),
        2,
        "only the taken tokens wrote"
    );
}

// ---------------------------------------------------------------------------
// 4. A stream ends at its JWT's exp.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_with_a_jwt_ends_at_its_exp_with_reauthenticate_and_a_fresh_jwt_resumes_it_exactly(
) {
    let app = supabase_app(|a| a.identity.jwt_leeway = Duration::ZERO).await;
    let writer = Caller::bearer(&supabase_jwt("alice", unix_now() + 3600));
    // Expires 2 to 3 s from now (exp is in whole seconds).
    let exp = unix_now() + 3;
    let short = Caller::bearer(&supabase_jwt("alice", exp));
    let mut stream = open_stream(&app, &short, "channels=user:alice:*&replay=0").await;
    // A ticket minted with the same JWT stands for it, expiry included.
    let ticket = mint_ticket(&app, &short).await;
    let query = format!("ticket={ticket}&channels=user:alice:*&replay=0");
    let mut by_ticket = open_stream(&app, &Caller::nobody(), &query).await;

    let mut published = Vec::new();
    for _ in 0..2 {
        let stored = created(publish(&app, &writer, "user:alice:notes").await).await;
        published.push(stored["id"].as_i64().unwrap());
    }
    for stream in [&mut stream, &mut by_ticket] {
        let (before, last, at) = until_reauthenticate(stream, DEADLINE).await;
        assert_eq!(ids(&before), published, "the events, then reauthenticate");
        assert_reauthenticate(&last, "expired");
        assert!(
            at >= exp as f64 - 0.05 && at <= exp as f64 + 1.5,
            "reauthenticate at {at:.3}, exp {exp}"
        );
        assert_body_ends(stream).await;
    }

    // Meanwhile two more events; a fresh JWT resumes after the last id seen.
    let mut missed = Vec::new();
    for _ in 0..2 {
        let stored = created(publish(&app, &writer, "user:alice:notes").await).await;
        missed.push(stored["id"].as_i64().unwrap());
    }
    let fresh = Caller::bearer(&supabase_jwt("alice", unix_now() + 3600))
        .with("Last-Event-ID", &published[1].to_string());
    let mut resumed = open_stream(&app, &fresh, "channels=user:alice:*").await;
    assert_eq!(
        ids(&resumed.take_events(2).await),
        missed,
        "no gap, no duplicate"
    );
    let live = created(publish(&app, &writer, "user:alice:notes").await).await;
    assert_eq!(
        ids(&resumed.take_events(1).await),
        [live["id"].as_i64().unwrap()]
    );
    resumed.assert_quiet(Duration::from_millis(300)).await;
}

// ---------------------------------------------------------------------------
// 5. The authorize callback.

/// The app's authorize endpoint, answering by the `session` cookie.
fn app_answers(request: &Received) -> Reply {
    let allowed = |agent: &str, expires_in: u64| {
        Reply::json(
            200,
            &json!({"agent_id": agent, "read": ["user:{agent}:*", "global"],
                    "write": ["user:{agent}:*"], "expires_in": expires_in}),
        )
    };
    match request.session() {
        Some("carol") => allowed("carol", 60),
        Some("dana") => allowed("dana", 1),
        Some("erin") => allowed("erin", 2),
        Some("frank") => allowed("frank", 60),
        Some("ops") => Reply::json(
            200,
            &json!({"agent_id": "ops", "read": ["*"], "write": ["*"], "expires_in": 60}),
        ),
        Some("banned") => Reply::empty(403),
        Some("slow") => allowed("slow", 60).after(Duration::from_secs(5)),
        _ => Reply::empty(401),
    }
}

async fn callback_app(app_url: String, configure: impl FnOnce(&mut ServeArgs)) -> TestApp {
    spawn_app_with(move |a| {
        a.identity.authorize_url = Some(app_url);
        configure(a);
    })
    .await
}

/// How many times the app was asked about `session`.
fn asked(callback: &Loopback, session: &str) -> usize {
    callback
        .received()
        .iter()
        .filter(|r| r.session() == Some(session))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorize_callback_gets_only_the_allow_listed_headers_and_its_answer_names_the_agent_and_its_channels(
) {
    let callback = Loopback::start(app_answers).await;
    let app = callback_app(callback.url("/auth/whoami"), |_| {}).await;
    let carol = Caller::cookie("session=carol; theme=dark")
        .with("Authorization", "Bearer app-session-4711")
        .with("X-Other", "not-for-the-app")
        .with("X-Session-ID", "tab-1");

    let stored = created(publish(&app, &carol, "user:carol:todo").await).await;
    assert_eq!(stored["agent_id"], "carol", "the app's agent_id");
    let asks = callback.received();
    assert_eq!(asks.len(), 1, "{asks:?}");
    let ask = &asks[0];
    assert_eq!(
        (ask.method.as_str(), ask.path.as_str()),
        ("GET", "/auth/whoami")
    );
    assert_eq!(ask.headers["cookie"], "session=carol; theme=dark");
    assert_eq!(ask.headers["authorization"], "Bearer app-session-4711");
    for never in ["x-other", "x-session-id", "content-type", "content-length"] {
        assert!(
            !ask.headers.contains_key(never),
            "{never} was forwarded: {ask:?}"
        );
    }

    // The answer's templates: her channels and global, nothing else.
    refused(
        publish(&app, &carol, "user:dave:todo").await,
        403,
        "forbidden",
        "this token may not write user:dave:todo",
    )
    .await;
    let ops = Caller::cookie("session=ops");
    let global = created(publish(&app, &ops, "global").await).await;
    created(publish(&app, &ops, "user:dave:todo").await).await;
    assert_eq!(
        stored_ids(&history(&app, &carol, "").await),
        [
            stored["id"].as_i64().unwrap(),
            global["id"].as_i64().unwrap()
        ]
    );
    // A cookie alone is enough.
    let cookie_only = Caller::cookie("session=carol");
    created(publish(&app, &cookie_only, "user:carol:todo").await).await;
    let last = callback.received().pop().unwrap();
    assert_eq!(last.headers["cookie"], "session=carol");
    assert!(!last.headers.contains_key("authorization"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorize_callbacks_401_is_a_401_and_its_403_a_403() {
    let callback = Loopback::start(app_answers).await;
    let app = callback_app(callback.url("/auth/whoami"), |_| {}).await;

    for _ in 0..2 {
        refused(
            publish(&app, &Caller::cookie("session=stranger"), "user:stranger:x").await,
            401,
            "unauthorized",
            "the app does not know these credentials",
        )
        .await;
        refused(
            publish(&app, &Caller::cookie("session=banned"), "user:banned:x").await,
            403,
            "forbidden",
            "the app refuses these credentials any access",
        )
        .await;
    }
    assert_eq!(
        asked(&callback, "stranger"),
        1,
        "a refusal is remembered briefly"
    );
    assert_eq!(
        asked(&callback, "banned"),
        1,
        "a refusal is remembered briefly"
    );
    refused(
        publish(&app, &Caller::nobody(), "user:nobody:x").await,
        401,
        "unauthorized",
        "credentials are required (a session cookie or a token)",
    )
    .await;
    assert_eq!(callback.received().len(), 2, "no credentials, no question");
    assert_eq!(
        history(&app, &Caller::cookie("session=ops"), "")
            .await
            .len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_or_stopped_authorize_app_fails_closed_with_503_and_is_asked_again_next_time() {
    let mut callback = Loopback::start(app_answers).await;
    let app = callback_app(callback.url("/auth/whoami"), |a| {
        a.identity.authorize_timeout = Duration::from_secs(1)
    })
    .await;
    let carol = Caller::cookie("session=carol");
    created(publish(&app, &carol, "user:carol:todo").await).await;

    let slow = Caller::cookie("session=slow");
    for _ in 0..2 {
        let asked_at = Instant::now();
        let response = publish(&app, &slow, "user:slow:x").await;
        let took = asked_at.elapsed();
        assert!(response.headers().contains_key("retry-after"));
        refused(
            response,
            503,
            "unavailable",
            "the app that authorizes requests did not answer; try again",
        )
        .await;
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
            "503 after the 1 s timeout, not the app's 5 s: {took:?}"
        );
    }
    assert_eq!(asked(&callback, "slow"), 2, "a failure is not cached");

    callback.stop().await;
    for session in ["session=newcomer", "session=slow"] {
        let response = publish(&app, &Caller::cookie(session), "user:x:y").await;
        assert!(response.headers().contains_key("retry-after"));
        refused(
            response,
            503,
            "unavailable",
            "the app that authorizes requests did not answer; try again",
        )
        .await;
    }
    // An answer the app gave stands for its lifetime.
    created(publish(&app, &carol, "user:carol:todo").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorize_answers_are_cached_per_credential_until_their_expires_in() {
    let callback = Loopback::start(app_answers).await;
    let app = callback_app(callback.url("/auth/whoami"), |_| {}).await;
    let dana = Caller::cookie("session=dana");

    created(publish(&app, &dana, "user:dana:x").await).await;
    created(publish(&app, &dana, "user:dana:x").await).await;
    history(&app, &dana, "").await;
    assert_eq!(
        asked(&callback, "dana"),
        1,
        "one question within the lifetime"
    );
    created(publish(&app, &Caller::cookie("session=carol"), "user:carol:x").await).await;
    assert_eq!(
        asked(&callback, "carol"),
        1,
        "another credential, another question"
    );

    // dana's answer said expires_in: 1.
    let answered = callback.received()[0].at;
    tokio::time::sleep_until((answered + Duration::from_millis(1200)).into()).await;
    created(publish(&app, &dana, "user:dana:x").await).await;
    assert_eq!(
        asked(&callback, "dana"),
        2,
        "asked again once the answer expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorize_cache_keeps_no_more_answers_than_its_capacity() {
    let callback = Loopback::start(app_answers).await;
    let app = callback_app(callback.url("/auth/whoami"), |a| {
        a.identity.authorize_cache = 2
    })
    .await;
    for session in ["carol", "ops"] {
        let caller = Caller::cookie(&format!("session={session}"));
        history(&app, &caller, "").await;
        history(&app, &caller, "").await;
        assert_eq!(asked(&callback, session), 1, "{session} is cached");
    }
    // A third credential: the oldest answer makes room.
    history(&app, &Caller::cookie("session=frank"), "").await;
    history(&app, &Caller::cookie("session=carol"), "").await;
    assert_eq!(asked(&callback, "carol"), 2, "carol's answer was dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_with_an_authorize_answer_ends_with_reauthenticate_when_the_answer_expires()
{
    let callback = Loopback::start(app_answers).await;
    let app = callback_app(callback.url("/auth/whoami"), |_| {}).await;
    let opened = unix_now_f64();
    // erin's answer said expires_in: 2.
    let mut stream = open_stream(&app, &Caller::cookie("session=erin"), "replay=0").await;
    let ops = Caller::cookie("session=ops");
    let hers = created(publish(&app, &ops, "user:erin:inbox").await).await;
    created(publish(&app, &ops, "user:someone:inbox").await).await;

    let (before, last, at) = until_reauthenticate(&mut stream, DEADLINE).await;
    assert_eq!(ids(&before), [hers["id"].as_i64().unwrap()]);
    assert_reauthenticate(&last, "expired");
    assert!(
        at - opened >= 1.95 && at - opened <= 3.5,
        "reauthenticate {:.3} s after opening, the answer lived 2 s",
        at - opened
    );
    assert_body_ends(&mut stream).await;
}

// ---------------------------------------------------------------------------
// 6. Tickets.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ticket_opens_one_stream_and_cannot_publish_mint_or_read() {
    let app = supabase_app(|a| a.identity.jwt_leeway = Duration::ZERO).await;
    let alice = Caller::bearer(&supabase_jwt("alice", unix_now() + 3600));
    let bob = Caller::bearer(&supabase_jwt("bob", unix_now() + 3600));
    created(publish(&app, &bob, "user:bob:notes").await).await;
    let hers = created(publish(&app, &alice, "user:alice:notes").await).await;

    let ticket = mint_ticket(&app, &alice).await;

    let only_streams =
        "a stream ticket opens a stream (GET /api/stream) and nothing else; send the token";
    let uses = [
        app.post(&format!(
            "/api/channels/user:alice:notes/events?ticket={ticket}"
        ))
        .json(&json!({"type": "note"})),
        app.post(&format!("/api/stream-tickets?ticket={ticket}")),
        app.get(&format!("/api/events?ticket={ticket}")),
        app.get(&format!("/api/events/1?ticket={ticket}")),
        app.get(&format!("/api/sync?ticket={ticket}")),
    ];
    for request in uses {
        refused(
            request.send().await.unwrap(),
            401,
            "unauthorized",
            only_streams,
        )
        .await;
    }
    assert_eq!(
        history(&app, &alice, "").await.len(),
        1,
        "the ticket wrote nothing"
    );

    // It opens the stream once, as alice: her channels only.
    let mut stream = open_stream(
        &app,
        &Caller::nobody(),
        &format!("ticket={ticket}&replay=50"),
    )
    .await;
    assert_eq!(
        ids(&stream.take_events(1).await),
        [hers["id"].as_i64().unwrap()]
    );
    stream.assert_quiet(Duration::from_millis(300)).await;
    refused(
        app.get(&format!("/api/stream?ticket={ticket}"))
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
        "the ticket is unknown, used or expired",
    )
    .await;

    // A ticket never outlives the JWT it stands for.
    let exp = unix_now() + 5;
    let response = Caller::bearer(&supabase_jwt("alice", exp))
        .on(app.post("/api/stream-tickets"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let expires_at = chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    assert!(
        expires_at <= exp as i64,
        "the ticket expires at {expires_at}, after the JWT's exp {exp}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tokens_file_template_confines_each_token_to_its_own_agents_channels() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    let entry = |token: &str, agent: &str| {
        format!(
            "[[tokens]]\ntoken = \"{token}\"\nagent_id = \"{agent}\"\n\
             read = [\"user:{{agent}}:*\", \"global\"]\nwrite = [\"user:{{agent}}:*\"]\n\n"
        )
    };
    let file = entry("ann-token-0123456789", "ann") + &entry("ben-token-0123456789", "ben");
    std::fs::write(&tokens, file).unwrap();
    let app = spawn_app_with(|a| a.tokens = Some(tokens)).await;
    let ann = Caller::bearer("ann-token-0123456789");
    let ben = Caller::bearer("ben-token-0123456789");

    let anns = created(publish(&app, &ann, "user:ann:todo").await).await;
    let bens = created(publish(&app, &ben, "user:ben:todo").await).await;
    refused(
        publish(&app, &ann, "user:ben:todo").await,
        403,
        "forbidden",
        "this token may not write user:ben:todo",
    )
    .await;
    assert_eq!(
        stored_ids(&history(&app, &ann, "").await),
        [anns["id"].as_i64().unwrap()]
    );
    assert_eq!(
        stored_ids(&history(&app, &ben, "").await),
        [bens["id"].as_i64().unwrap()]
    );
}

// ---------------------------------------------------------------------------
// 7. The real binary: SIGHUP revocation and the request log.

/// `switchboard serve` as a process, its JSON log read as it is written.
struct Served {
    child: tokio::process::Child,
    base: String,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    seen: Vec<Value>,
}

impl Served {
    async fn start(dir: &Path, tokens: &Path, env: &[(&str, &str)]) -> Served {
        let mut child = crate::process::serve_command(dir.join("switchboard.db"))
            .arg("--tokens")
            .arg(tokens)
            .envs(env.iter().copied())
            .spawn()
            .expect("switchboard starts");
        let stderr = child.stderr.take().expect("stderr");
        let (send, lines) = tokio::sync::mpsc::unbounded_channel();
        // Read every line, so the process never blocks on a full pipe.
        tokio::spawn(async move {
            let mut stderr = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = stderr.next_line().await {
                let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
                let _ = send.send(value);
            }
        });
        let mut served = Served {
            child,
            base: String::new(),
            lines,
            seen: Vec::new(),
        };
        let listening = served
            .logged("switchboard listening", |l| {
                l["message"] == "switchboard listening"
            })
            .await;
        served.base = format!("http://127.0.0.1:{}", listening["port"]);
        served
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// The first log line (logged already or still to come) that `matches`;
    /// fails the test if none comes within the deadline.
    async fn logged(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(line) = self.seen.iter().find(|l| matches(l)) {
            return line.clone();
        }
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if matches(&line) {
                        return line;
                    }
                }
                Ok(None) => panic!("switchboard exited before logging {what}: {:#?}", self.seen),
                Err(_) => panic!("no {what} logged within {DEADLINE:?}: {:#?}", self.seen),
            }
        }
    }

    /// The request log line of the request sent with `X-Session-ID: session`.
    async fn request_line(&mut self, session: &str) -> Value {
        self.logged(&format!("the request line of {session}"), |l| {
            l["message"] == "request answered" && l["span"]["session_id"] == session
        })
        .await
    }
}

fn tokens_toml(entries: &[(&str, &str)]) -> String {
    entries
        .iter()
        .map(|(token, agent)| {
            format!(
                "[[tokens]]\ntoken = \"{token}\"\nagent_id = \"{agent}\"\nread = [\"*\"]\nwrite = [\"*\"]\n\n"
            )
        })
        .collect()
}

const WRITER: &str = "writer-token-0123456789abcdef";
const KEEPER: &str = "keeper-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_that_removes_a_token_refuses_its_bearer_and_its_tickets_and_ends_its_streams_within_a_second(
) {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(
        &tokens,
        tokens_toml(&[(WRITER, "writer"), (KEEPER, "keeper")]),
    )
    .unwrap();
    let mut served = Served::start(dir.path(), &tokens, &[]).await;
    let client = reqwest::Client::new();
    let writer = format!("Bearer {WRITER}");
    let writer = writer.as_str();
    let tickets_url = served.url("/api/stream-tickets");
    let mint = || {
        client
            .post(&tickets_url)
            .header("Authorization", writer)
            .send()
    };
    let mut tickets = Vec::new();
    for _ in 0..2 {
        let response = mint().await.unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        tickets.push(body["ticket"].as_str().unwrap().to_owned());
    }
    let response = client
        .get(served.url("/api/stream?channels=team&replay=0"))
        .header("Authorization", writer)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = SseStream::new(response);
    let note = client
        .post(served.url("/api/channels/team/events"))
        .header("Authorization", writer)
        .json(&json!({"type": "note"}))
        .send()
        .await
        .unwrap();
    assert_eq!(note.status(), 201);
    let note: Value = note.json().await.unwrap();
    assert_eq!(
        ids(&stream.take_events(1).await),
        [note["id"].as_i64().unwrap()]
    );
    // Before revocation a ticket opens a stream, as the token.
    let response = client
        .get(served.url(&format!(
            "/api/stream?ticket={}&channels=team&replay=0",
            tickets[0]
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut by_ticket = SseStream::new(response);

    std::fs::write(&tokens, tokens_toml(&[(KEEPER, "keeper")])).unwrap();
    let hangup = Instant::now();
    served.signal("HUP");
    for stream in [&mut stream, &mut by_ticket] {
        let (_, last, _) = until_reauthenticate(stream, DEADLINE).await;
        let took = hangup.elapsed();
        assert_reauthenticate(&last, "revoked");
        assert!(
            took < Duration::from_secs(1),
            "the stream ended {took:?} after SIGHUP"
        );
        assert_body_ends(stream).await;
    }
    let reloaded = served
        .logged("tokens reloaded", |l| l["message"] == "tokens reloaded")
        .await;
    assert_eq!(reloaded["tokens"], 1);

    // The bearer token, and every way its ticket could be used: 401.
    let response = client
        .get(served.url("/api/events"))
        .header("Authorization", writer)
        .send()
        .await
        .unwrap();
    refused(response, 401, "unauthorized", "the token is not valid").await;
    let response = mint().await.unwrap();
    refused(response, 401, "unauthorized", "the token is not valid").await;
    let ticket = &tickets[1];
    let only_streams =
        "a stream ticket opens a stream (GET /api/stream) and nothing else; send the token";
    let response = client
        .post(served.url(&format!("/api/stream-tickets?ticket={ticket}")))
        .send()
        .await
        .unwrap();
    refused(response, 401, "unauthorized", only_streams).await;
    let response = client
        .post(served.url(&format!("/api/channels/team/events?ticket={ticket}")))
        .json(&json!({"type": "note"}))
        .send()
        .await
        .unwrap();
    refused(response, 401, "unauthorized", only_streams).await;
    let response = client
        .get(served.url(&format!("/api/stream?ticket={ticket}")))
        .send()
        .await
        .unwrap();
    refused(
        response,
        401,
        "unauthorized",
        "the token this ticket stands for was revoked",
    )
    .await;
    // The token that stayed still works, and nothing else was written.
    let page: Value = client
        .get(served.url("/api/events"))
        .header("Authorization", format!("Bearer {KEEPER}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let written: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["channel"] == "team")
        .collect();
    assert_eq!(written, [&note]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_log_names_the_authenticated_agent_never_the_one_a_request_claims() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.toml");
    std::fs::write(&tokens, tokens_toml(&[(WRITER, "writer")])).unwrap();
    let mut served = Served::start(
        dir.path(),
        &tokens,
        &[
            ("SWITCHBOARD_JWT_SECRET", SUPABASE_SECRET),
            ("SWITCHBOARD_JWT_AUDIENCE", "authenticated"),
            ("SWITCHBOARD_JWT_WRITE", "user:{agent}:*"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let url = served.url("/api/channels/user:alice:notes/events");
    let post = |session: &str, headers: &[(&str, &str)]| {
        let mut request = client
            .post(&url)
            .header("X-Session-ID", session)
            .json(&json!({"type": "note"}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send()
    };
    let writer = format!("Bearer {WRITER}");
    let writer = writer.as_str();
    let alice = format!("Bearer {}", supabase_jwt("alice", unix_now() + 3600));
    let alice = alice.as_str();

    let cases = [
        (
            "by-token",
            vec![("Authorization", writer)],
            201,
            Some("writer"),
        ),
        (
            "spoofed",
            vec![("Authorization", writer), ("X-Agent-ID", "mallory")],
            403,
            Some("writer"),
        ),
        ("by-jwt", vec![("Authorization", alice)], 201, Some("alice")),
        ("anonymous", vec![("X-Agent-ID", "mallory")], 401, None),
    ];
    for (session, headers, status, agent) in cases {
        let response = post(session, &headers).await.unwrap();
        assert_eq!(response.status(), status, "{session}");
        let line = served.request_line(session).await;
        assert_eq!(line["span"]["status"], status, "{line}");
        let code = match status {
            401 => json!("unauthorized"),
            403 => json!("forbidden"),
            _ => Value::Null,
        };
        assert_eq!(
            line["span"].get("error").cloned().unwrap_or(Value::Null),
            code,
            "{session}: a refusal at the gate logs its code: {line}"
        );
        match agent {
            Some(agent) => assert_eq!(line["span"]["agent_id"], agent, "{session}: {line}"),
            None => assert!(
                line["span"]["agent_id"].as_str().is_none_or(str::is_empty),
                "{session}: an unauthenticated request names no agent: {line}"
            ),
        }
    }
    assert!(
        !served
            .seen
            .iter()
            .any(|l| l.to_string().contains("mallory")),
        "the claimed name is never logged as who acted"
    );
}

// ---------------------------------------------------------------------------
// What JWTs' `exp` can hold: the exact end, a fraction, a time past any clock.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_is_refused_once_a_stream_has_been_told_it_expired() {
    let app = supabase_app(|a| a.identity.jwt_leeway = Duration::ZERO).await;
    let jwt = Caller::bearer(&supabase_jwt("alice", unix_now() + 2));
    let mut stream = open_stream(&app, &jwt, "replay=0").await;
    let (_, last, _) = until_reauthenticate(&mut stream, DEADLINE).await;
    assert_reauthenticate(&last, "expired");
    assert_body_ends(&mut stream).await;

    // A client whose token function still returns this JWT reconnects at
    // once: the server said it expired, so it must not open another stream
    // (which would end at once, and again, for up to a second).
    let response = jwt
        .on(app.get("/api/stream?replay=0"))
        .send()
        .await
        .unwrap();
    refused(response, 401, "unauthorized", "the JWT has expired (exp)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_opened_with_a_jwt_whose_exp_has_a_fraction_of_a_second_ends_at_it() {
    let app = supabase_app(|a| a.identity.jwt_leeway = Duration::ZERO).await;
    // A NumericDate may have a fraction (RFC 7519 §2); the JWT is taken.
    let exp = unix_now_f64() + 2.5;
    let jwt = hs256(&json!({"sub": "alice", "aud": "authenticated", "exp": exp}));
    let mut stream = open_stream(&app, &Caller::bearer(&jwt), "replay=0").await;
    let (_, last, at) = until_reauthenticate(&mut stream, Duration::from_secs(5)).await;
    assert_reauthenticate(&last, "expired");
    assert!(
        at >= exp - 0.05 && at <= exp + 1.5,
        "reauthenticate at {at:.3}, exp {exp:.3}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwt_whose_exp_is_past_any_representable_time_is_answered_not_dropped() {
    let app = supabase_app(|_| {}).await;
    // Taken by the JWT library (exp is a u64 there); only its end is not.
    let jwt = hs256(&json!({"sub": "alice", "aud": "authenticated", "exp": u64::MAX}));
    for path in ["/api/events", "/api/stream?replay=0"] {
        let response = Caller::bearer(&jwt)
            .on(app.get(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: no answer, the connection was dropped: {e}"));
        let status = response.status().as_u16();
        assert!(status == 200 || status == 401, "{path}: {status}");
    }
}
