//! Hostile input, seen from outside: bodies that never arrive, thousands of
//! connections stuck mid-body, lenient framing, deep JSON, floods of
//! malformed heads, and what the Mercure hub gives away.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{spawn_app, TestApp, DEADLINE};

/// The server's body deadline (`http::body::BODY_TIMEOUT`).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// How many requests may wait for their bodies at once
/// (`http::body::MAX_WAITING_BODIES`).
const MAX_WAITING_BODIES: usize = 512;

/// A raw client connection.
struct Raw {
    socket: TcpStream,
}

/// A whole answer read up to the server's close.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Names lower-cased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not a JSON body ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The answer is the JSON error shape with this status and code.
    fn assert_error(&self, status: u16, code: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        let body = self.json();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
        body
    }
}

impl Raw {
    async fn open(port: u16) -> Raw {
        let socket = tokio::time::timeout(DEADLINE, TcpStream::connect(("127.0.0.1", port)))
            .await
            .expect("connected before the deadline")
            .expect("connect");
        Raw { socket }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).await.expect("request sent");
    }

    /// Everything the server sends up to its close, which must come within
    /// `within`, read as one answer.
    async fn answer_then_close(&mut self, within: Duration) -> Answer {
        let mut buf = Vec::new();
        tokio::time::timeout(within, self.socket.read_to_end(&mut buf))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the server did not answer and close within {within:?}; got {:?}",
                    String::from_utf8_lossy(&buf)
                )
            })
            .expect("read");
        parse_answer(&buf)
    }
}

fn parse_answer(bytes: &[u8]) -> Answer {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no whole head in {:?}", String::from_utf8_lossy(bytes)));
    let head = std::str::from_utf8(&bytes[..end]).expect("an ASCII head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line in {head:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: bytes[end + 4..].to_vec(),
    }
}

/// A publish whose head promises 100,000 bytes, and one byte of them.
const STUCK_PUBLISH: &[u8] = b"POST /api/channels/x/events HTTP/1.1\r\nHost: x\r\n\
    Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{";

/// The same with a chunked body: one chunk begun, never finished.
const STUCK_CHUNKED_PUBLISH: &[u8] = b"POST /api/channels/x/events HTTP/1.1\r\nHost: x\r\n\
    Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{";

async fn event_count(app: &TestApp) -> usize {
    app.all_events().await.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_answered_408_and_its_connection_closed() {
    let app = spawn_app().await;
    let started = Instant::now();
    let stuck = |request: &'static [u8]| {
        let port = app.port;
        async move {
            let mut raw = Raw::open(port).await;
            raw.send(request).await;
            let answer = raw
                .answer_then_close(BODY_TIMEOUT + Duration::from_secs(5))
                .await;
            (answer, started.elapsed())
        }
    };
    let (sized, chunked) = tokio::join!(stuck(STUCK_PUBLISH), stuck(STUCK_CHUNKED_PUBLISH));
    for (what, (answer, after)) in [("sized", sized), ("chunked", chunked)] {
        let body = answer.assert_error(408, "request_timeout");
        assert_eq!(
            body["error"]["message"], "the request body did not arrive within 10 s",
            "{what}"
        );
        assert_eq!(answer.header("connection"), Some("close"), "{what}");
        assert!(
            after >= BODY_TIMEOUT - Duration::from_millis(500),
            "{what}: answered after {after:?}, before the deadline"
        );
    }
    assert_eq!(event_count(&app).await, 0, "nothing was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_arrives_in_pieces_within_the_deadline_is_taken() {
    let app = spawn_app().await;
    let mut raw = Raw::open(app.port).await;
    let body = br#"{"type":"t","data":{"n":1}}"#;
    raw.send(
        format!(
            "POST /api/channels/x/events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    for piece in body.chunks(8) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        raw.send(piece).await;
    }
    let answer = raw.answer_then_close(DEADLINE).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.json()["payload"], json!({"n": 1}));
}

/// `switchboard serve` as a child process (killed when dropped), its log
/// lines (JSON) collected.
struct Served {
    _child: tokio::process::Child,
    port: u16,
    log: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
    _dir: tempfile::TempDir,
}

impl Served {
    /// Starts the real binary on a free port; with `max_files`, its
    /// `RLIMIT_NOFILE` is lowered to that many before it starts.
    async fn start(max_files: Option<u64>) -> Served {
        use tokio::io::AsyncBufReadExt;
        let dir = tempfile::tempdir().unwrap();
        let mut command = crate::process::serve_command(dir.path().join("switchboard.db"));
        // Thousands of publishes from one anonymous agent within a second:
        // the per-agent write limit (1,000/s) would refuse some of them 429
        // before their bodies, as many as the client is fast.
        command.args(["--rate-limit", "0"]);
        if let Some(max) = max_files {
            // SAFETY: between fork and exec only setrlimit(2) runs, which is
            // async-signal-safe, and nothing is allocated.
            unsafe {
                command.pre_exec(move || {
                    let limit = libc::rlimit {
                        rlim_cur: max,
                        rlim_max: max,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("switchboard starts");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let port = tokio::time::timeout(DEADLINE, async {
            while let Some(line) = lines.next_line().await.expect("a log line") {
                let line: Value = serde_json::from_str(&line).expect("a JSON log line");
                if line["message"] == "switchboard listening" {
                    return line["port"].as_u64().expect("its port") as u16;
                }
            }
            panic!("switchboard exited before listening");
        })
        .await
        .expect("switchboard listens before the deadline");
        // Keep reading the log, so the server never blocks on a full pipe.
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let line =
                    serde_json::from_str(&line).unwrap_or_else(|_| json!({ "unparsed": line }));
                collected.lock().unwrap().push(line);
            }
        });
        Served {
            _child: child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The log lines written since it started listening.
    fn log_lines(&self) -> Vec<Value> {
        self.log.lock().unwrap().clone()
    }
}

/// Lets this test process hold as many sockets as its hard limit allows.
fn raise_own_file_limit(needed: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        if limit.rlim_cur < needed {
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
    }
    assert!(
        limit.rlim_cur >= needed,
        "this test needs {needed} file descriptors; the hard limit is {}",
        limit.rlim_max
    );
}

/// The issue's attack: more connections stuck mid-body than the server has
/// file descriptors. Bodies beyond the bound are refused at once and their
/// connections closed, so the server keeps descriptors to answer with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_connections_stuck_mid_body_leave_readyz_and_publishes_answering() {
    const STUCK: usize = 3_000;
    raise_own_file_limit(STUCK as u64 + 500);
    let server = Served::start(Some(3_000)).await;

    let mut stuck = Vec::with_capacity(STUCK);
    let sending = Instant::now();
    for _ in 0..STUCK {
        let mut raw = Raw::open(server.port).await;
        raw.send(STUCK_PUBLISH).await;
        stuck.push(raw);
    }
    assert!(
        sending.elapsed() < BODY_TIMEOUT,
        "sending took {:?}: the body deadline would have hidden the bound",
        sending.elapsed()
    );

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let ready = client
        .get(server.url("/readyz"))
        .send()
        .await
        .expect("/readyz answers within 5 s");
    assert_eq!(ready.status(), 200);
    let published = client
        .post(server.url("/api/channels/x/events"))
        .json(&json!({"type": "t", "data": {}}))
        .send()
        .await
        .expect("a publish answers within 5 s");
    assert_eq!(published.status(), 201);

    // The connections beyond the bound were answered 503 and closed; the
    // others still wait for their bodies.
    let answers = futures_util::future::join_all(stuck.iter_mut().map(|raw| async {
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(2), raw.socket.read_to_end(&mut answer)).await;
        (read.is_ok(), answer)
    }))
    .await;
    let refused = answers
        .iter()
        .filter(|(closed, answer)| *closed && answer.starts_with(b"HTTP/1.1 503"))
        .count();
    // (On a slow machine the first may have reached their deadline by now.)
    let timed_out = answers
        .iter()
        .filter(|(closed, answer)| *closed && answer.starts_with(b"HTTP/1.1 408"))
        .count();
    let waiting = answers.iter().filter(|(closed, _)| !closed).count();
    assert_eq!(
        refused + timed_out + waiting,
        STUCK,
        "every stuck body waits, timed out or was refused"
    );
    assert!(
        (1..=MAX_WAITING_BODIES).contains(&(waiting + timed_out)),
        "{waiting} bodies wait, {timed_out} timed out, {refused} were refused"
    );
}

/// actix-http would read what is left of an unread chunked body for as long
/// as the client keeps it open: the connection is closed instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_the_route_never_reads_does_not_hold_its_connection() {
    let app = spawn_app().await;
    let mut raw = Raw::open(app.port).await;
    raw.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nab")
        .await;
    let answer = raw.answer_then_close(Duration::from_secs(3)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// The stream path has its own HTTP/1.1 parser (`connection.rs`); it frames
/// requests as strictly as actix-http's (RFC 9112 §6.3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_request_with_ambiguous_framing_is_answered_400_and_closed() {
    let app = spawn_app().await;
    for target in ["/api/stream?replay=0", "/v1/stream/a?offset=-1&live=sse"] {
        for (what, framing) in [
            (
                "Content-Length and Transfer-Encoding",
                "Content-Length: 5\r\nTransfer-Encoding: chunked",
            ),
            (
                "two different Content-Lengths",
                "Content-Length: 0\r\nContent-Length: 5",
            ),
        ] {
            let mut raw = Raw::open(app.port).await;
            raw.send(format!("GET {target} HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n").as_bytes())
                .await;
            let answer = raw.answer_then_close(Duration::from_secs(3)).await;
            answer.assert_error(400, "bad_request");
            assert_eq!(
                answer.header("connection"),
                Some("close"),
                "{target}, {what}"
            );
        }
    }
    let stats = app.get_json("/api/stats").await;
    assert_eq!(
        stats["connected_clients"], 0,
        "no stream was opened: {stats}"
    );
}

/// `depth` arrays nested in one another.
fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_nested_deeper_than_the_limit_is_422_naming_the_field_and_publishes_nothing() {
    let app = spawn_app().await;
    let cases = [
        (
            "/api/channels/x/events",
            format!(r#"{{"type":"t","data":{}}}"#, nested_arrays(100_000)),
            "data",
        ),
        (
            "/api/events/batch",
            format!(
                r#"{{"events":[{{"channel":"x","type":"t","data":{{}}}},{{"channel":"x","type":"t","data":{}}}]}}"#,
                nested_arrays(64)
            ),
            "events[1].data",
        ),
    ];
    for (path, body, field) in cases {
        let response = app
            .post(path)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "validation_failed", "{error}");
        assert_eq!(error["error"]["details"]["field"], field, "{error}");
        assert_eq!(
            error["error"]["message"],
            format!("{field}: must not nest objects and arrays more than 64 levels deep")
        );
    }
    assert_eq!(event_count(&app).await, 0, "nothing was published");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_nested_up_to_the_limit_is_published_and_served_back() {
    let app = spawn_app().await;
    // The body's own braces are one level: data may nest 63 more.
    let data = nested_arrays(63);
    let response = app
        .post("/api/channels/x/events")
        .header("Content-Type", "application/json")
        .body(format!(r#"{{"type":"t","data":{data}}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let events = app.all_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["payload"].to_string(), data);

    let one_more = app
        .post("/api/channels/x/events")
        .header("Content-Type", "application/json")
        .body(format!(r#"{{"type":"t","data":{}}}"#, nested_arrays(64)))
        .send()
        .await
        .unwrap();
    assert_eq!(one_more.status(), 422);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_json_append_nested_too_deep_is_422_and_appends_nothing() {
    let app = spawn_app().await;
    let url = app.url("/v1/stream/deep");
    let created = app
        .client
        .put(&url)
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let append = |body: String| {
        app.client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let refused = append(format!(r#"[{{"a":1}},{{"a":{}}}]"#, nested_arrays(100)))
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["code"], "validation_failed", "{error}");
    assert_eq!(error["error"]["details"]["field"], "[1].a", "{error}");

    let taken = append(r#"{"a":[[1]]}"#.to_owned()).await.unwrap();
    assert!(taken.status().is_success(), "{}", taken.status());
    let read = app
        .client
        .get(format!("{url}?offset=-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(read.text().await.unwrap(), r#"[{"a":[[1]]}]"#);
}

/// Anyone can send malformed heads; each used to be an `ERROR` line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_malformed_heads_is_summed_up_in_a_few_warn_lines_not_logged_as_errors() {
    const EACH: usize = 100;
    let server = Served::start(None).await;
    let burst = Instant::now();
    // Half on actix-http's path, half on the stream path's own parser.
    for target in ["/healthz", "/api/stream"] {
        for _ in 0..EACH {
            let mut raw = Raw::open(server.port).await;
            raw.send(
                format!("GET {target} HTTP/1.1\r\nHost: x\r\nnot a header\r\n\r\n").as_bytes(),
            )
            .await;
            let answer = raw.answer_then_close(DEADLINE).await;
            assert_eq!(answer.status, 400, "{target}: {answer:?}");
        }
    }
    let burst = burst.elapsed();

    let summaries = |log: &[Value]| -> Vec<Value> {
        log.iter()
            .filter(|line| line["message"] == "malformed request heads refused")
            .cloned()
            .collect()
    };
    let counted = |log: &[Value]| -> u64 {
        summaries(log)
            .iter()
            .map(|line| line["count"].as_u64().expect("a count"))
            .sum()
    };
    let waiting = Instant::now();
    while counted(&server.log_lines()) < 2 * EACH as u64 {
        assert!(
            waiting.elapsed() < DEADLINE,
            "the summaries count {} of {} heads",
            counted(&server.log_lines()),
            2 * EACH
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = server.log_lines();
    assert_eq!(counted(&log), 2 * EACH as u64);
    let errors: Vec<&Value> = log.iter().filter(|line| line["level"] == "ERROR").collect();
    assert!(errors.is_empty(), "ERROR lines: {errors:?}");
    let summaries = summaries(&log);
    assert!(
        summaries.iter().all(|line| line["level"] == "WARN"),
        "{summaries:?}"
    );
    // At most one a second.
    let most = burst.as_secs() as usize + 2;
    assert!(
        summaries.len() <= most,
        "{} summary lines for a burst of {burst:?}",
        summaries.len()
    );
}

/// Publishes a Mercure update (a form) with the test publisher's JWT.
async fn mercure_publish(app: &TestApp, form: &[(&str, &str)]) -> String {
    let response = app
        .client
        .post(app.url("/.well-known/mercure"))
        .bearer_auth(crate::mercure::publisher())
        .form(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// Subscribes to `topic` resuming after `last_event_id`, with a JWT or
/// anonymously; answers the `Last-Event-ID` header and the stream.
async fn mercure_resume(
    app: &TestApp,
    token: Option<&str>,
    last_event_id: &str,
) -> (Option<String>, crate::helpers::SseStream) {
    let mut request = app
        .client
        .get(app.url("/.well-known/mercure"))
        .query(&[("topic", "https://example.com/books/{id}")])
        .header("Last-Event-ID", last_event_id);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let header = response
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().unwrap().to_owned());
    (header, crate::helpers::SseStream::new(response))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_after_a_private_update_tells_an_unauthorized_subscriber_nothing_about_it() {
    let app = crate::helpers::spawn_app_with(|a| {
        crate::mercure::mercure_args(a);
        a.mercure.mercure_anonymous = true;
    })
    .await;
    let public = mercure_publish(
        &app,
        &[("topic", "https://example.com/books/1"), ("data", "public")],
    )
    .await;
    let secret = mercure_publish(
        &app,
        &[
            ("topic", "https://example.com/books/2"),
            ("data", "secret"),
            ("private", "on"),
            ("id", "urn:secret:1"),
        ],
    )
    .await;
    assert_eq!(secret, "urn:secret:1");

    let elsewhere = crate::mercure::jwt(json!({
        "mercure": { "subscribe": ["https://example.com/authors/{id}"] }
    }));
    for (who, token) in [
        ("anonymous", None),
        ("unauthorized", Some(elsewhere.as_str())),
    ] {
        let (private_id, mut after_private) = mercure_resume(&app, token, &secret).await;
        let (unknown_id, mut after_unknown) = mercure_resume(&app, token, "urn:never:1").await;
        assert_eq!(private_id, unknown_id, "{who}: the headers differ");
        assert_eq!(private_id.as_deref(), Some("earliest"), "{who}");
        // The same updates follow, too: all it may see, from the start.
        for stream in [&mut after_private, &mut after_unknown] {
            let first = stream.next_event().await;
            assert_eq!(first.id.as_deref(), Some(public.as_str()), "{who}");
            stream.assert_quiet(Duration::from_millis(300)).await;
        }
    }

    // A subscriber authorized for the update still resumes right after it.
    let reader = crate::mercure::jwt(json!({
        "mercure": { "subscribe": ["https://example.com/books/{id}"] }
    }));
    let (header, mut stream) = mercure_resume(&app, Some(&reader), &secret).await;
    assert_eq!(header.as_deref(), Some("urn:secret:1"));
    stream.assert_quiet(Duration::from_millis(300)).await;
}

/// The message of a 404 from `path`, asserting the error's shape.
async fn not_found_message(app: &TestApp, request: reqwest::RequestBuilder, path: &str) -> String {
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 404, "{path} on {}", app.address);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "not_found", "{path}: {error}");
    error["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mercure_hubs_404s_read_as_one_sentence() {
    let off = spawn_app().await;
    let hub = "/.well-known/mercure";
    for (request, path) in [
        (off.get(&format!("{hub}?topic=t")), hub),
        (off.post(hub).form(&[("topic", "t")]), hub),
        (
            off.get(&format!("{hub}/subscriptions")),
            "/.well-known/mercure/subscriptions",
        ),
    ] {
        assert_eq!(
            not_found_message(&off, request, path).await,
            "the Mercure hub is off: start switchboard with --mercure-publisher-jwt-key"
        );
    }

    let subscriber = crate::mercure::jwt(json!({ "mercure": { "subscribe": ["*"] } }));
    let without_subscriptions = crate::helpers::spawn_app_with(|a| {
        crate::mercure::mercure_args(a);
        a.mercure.mercure_subscriptions = false;
    })
    .await;
    let request = without_subscriptions
        .get(&format!("{hub}/subscriptions"))
        .bearer_auth(&subscriber);
    assert_eq!(
        not_found_message(&without_subscriptions, request, "subscriptions").await,
        "the subscriptions API is off: start switchboard with --mercure-subscriptions"
    );

    let on = crate::helpers::spawn_app_with(crate::mercure::mercure_args).await;
    let request = on
        .get(&format!("{hub}/subscriptions/t/urn%3Anobody"))
        .bearer_auth(&subscriber);
    assert_eq!(
        not_found_message(&on, request, "one subscription").await,
        "subscription not found"
    );
}
