//! A node cut off from the database by its network (the database itself is
//! fine), issue 30: node A runs as a real process in a network namespace of
//! its own and reaches PostgreSQL only through a veth pair and a TCP relay in
//! this process; the test takes the host side of that veth pair down for
//! 10 s (A's packets are dropped without a word, as in a real partition) and
//! brings it up again. Node B runs in this process on loopback. Three writers
//! on A, one on B, a stream on each node.
//!
//! Asserted: every write is answered within 6 s; writes to A during the cut
//! answer 503; B's writes go on (all 201); A's stream stays open and keeps
//! sending keep-alives; `/readyz` on A answers 503 within 5 s; A's session
//! leaves B's `GET /api/sessions` after `--node-timeout` (3 s), within 10 s;
//! after the heal A answers 201 again and its session is back on B; every
//! answered write is in the log once; the streams open across the cut (on
//! their connections) and fresh ones from 0 on both nodes have every event
//! of the log once, in id order. Every broken promise is reported, with the
//! figures (`--nocapture` prints them).
//!
//! Needs root and `ip` (iproute2); it fails, never passes, without them.
//! Everything it creates (namespace, veth pairs, a guard route, node A) is
//! named after this process's pid and removed on drop, also on a panic.

use std::collections::{BTreeMap, HashSet};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::client::sse::SseMessage;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{events_at, postgres_admin_url, spawn_node_with, PgDatabase, SseStream};

/// Node A's (and B's) `--node-timeout`.
const NODE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long the database path stays down.
const CUT: Duration = Duration::from_secs(10);
/// A write to a node cut off from the database must be answered within this.
const ANSWER_WITHIN: Duration = Duration::from_secs(6);
/// After the heal, how long everything may take to be back.
const RECOVER_WITHIN: Duration = Duration::from_secs(20);
const CHANNEL: &str = "netcut";

/// Runs `ip ARGS`; panics with its stderr when it fails.
fn ip(args: &[&str]) {
    let output = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("`ip {}` could not run: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The namespace, the two veth pairs and the guard route of one run; all
/// removed when dropped (also when the test panics).
struct Netns {
    name: String,
    /// Host sides of the veth pairs (deleting one deletes its peer too).
    links: Vec<String>,
    /// `ip route` arguments of the guard route to remove.
    guard_route: Option<Vec<String>>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        let quiet = |args: &[&str]| {
            let _ = std::process::Command::new("ip")
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        if let Some(route) = self.guard_route.take() {
            let mut args = vec!["route", "del"];
            args.extend(route.iter().map(String::as_str));
            quiet(&args);
        }
        for link in &self.links {
            quiet(&["link", "del", link]);
        }
        quiet(&["netns", "del", &self.name]);
    }
}

/// Fails loudly unless this test can make namespaces.
fn require_root_and_ip() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "this test needs root (it creates a network namespace and veth pairs); \
         run it as root or leave out --include-ignored"
    );
    let found = std::process::Command::new("ip")
        .arg("-V")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `ip` (iproute2) on PATH; install it or leave out --include-ignored"
    );
}

/// `url` with its host and port replaced by `host_port`.
fn with_host(url: &str, host_port: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let userinfo = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    format!("{scheme}://{userinfo}{host_port}{path}")
}

/// The `host:port` of a PostgreSQL URL (it must be on loopback: the relay
/// forwards only there).
fn loopback_host_port(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL with a scheme").1;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    let ip: std::net::IpAddr = host_port
        .rsplit_once(':')
        .unwrap()
        .0
        .parse()
        .unwrap_or_else(|_| panic!("{host_port}: this test needs PostgreSQL on a 127.x address"));
    assert!(
        ip.is_loopback(),
        "{host_port}: this test relays only to PostgreSQL on loopback"
    );
    host_port
}

/// A TCP relay from `listener` to `target`, until the returned guard drops.
struct Relay(
    tokio::task::JoinHandle<()>,
    Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
);

impl Drop for Relay {
    fn drop(&mut self) {
        self.0.abort();
        for pipe in self.1.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }
}

fn relay(listener: tokio::net::TcpListener, target: String) -> Relay {
    let pipes = Arc::new(Mutex::new(Vec::new()));
    let held = pipes.clone();
    let accept = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let target = target.clone();
            let pipe = tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
            held.lock().unwrap().push(pipe);
        }
    });
    Relay(accept, pipes)
}

/// Waits for node A to listen; keeps printing its warnings and errors.
async fn node_listening(mut child: Child) -> (Child, u16) {
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let port = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.expect("log line") {
            if line.contains("switchboard listening") {
                let value: Value = serde_json::from_str(&line).expect("a JSON log line");
                return value["port"].as_u64().expect("port in the log line") as u16;
            }
            eprintln!("[node A] {line}");
        }
        panic!("node A exited before listening");
    })
    .await
    .expect("node A listens within 20 s");
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("\"WARN\"") || line.contains("\"ERROR\"") {
                eprintln!("[node A] {line}");
            }
        }
    });
    (child, port)
}

/// One write attempt: when it started, how long it took, and its status
/// (or the client's error, e.g. a timeout).
#[derive(Debug, Clone)]
struct Attempt {
    started: Instant,
    took: Duration,
    outcome: Result<u16, String>,
}

#[derive(Default)]
struct Written {
    attempts: Vec<Attempt>,
    /// Writes answered 201: (id, data).
    acked: Vec<(i64, Value)>,
}

/// Publishes `{node, n}` on `CHANNEL` at `base` until `stop`.
async fn write_until(base: String, node: &'static str, stop: Arc<AtomicBool>) -> Written {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .unwrap();
    let mut written = Written::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let data = json!({ "node": node, "n": n });
        let started = Instant::now();
        let sent = client
            .post(format!("{base}/api/channels/{CHANNEL}/events"))
            .header("X-Agent-ID", format!("writer-{node}"))
            .json(&json!({ "type": "write", "data": data }))
            .send()
            .await;
        let outcome = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                if status == 201 {
                    let event: Value = response.json().await.expect("a 201 has the event");
                    written.acked.push((event["id"].as_i64().unwrap(), data));
                }
                Ok(status)
            }
            Err(e) => Err(format!("{e}")),
        };
        let ok = outcome == Ok(201);
        written.attempts.push(Attempt {
            started,
            took: started.elapsed(),
            outcome,
        });
        n += 1;
        let pause = if ok { 20 } else { 100 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    written
}

/// What one SSE connection received.
#[derive(Default)]
struct Seen {
    /// Events on `CHANNEL`: (id, payload).
    events: Vec<(i64, Value)>,
    /// When each keep-alive comment arrived.
    comments: Vec<Instant>,
    /// When the connection ended, if it did.
    ended_at: Option<Instant>,
    resyncs: Vec<String>,
}

/// Reads `stream` into `seen` until `stop` or the end of the stream.
fn read_into(mut stream: SseStream, stop: Arc<AtomicBool>) -> Arc<Mutex<Seen>> {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let into = seen.clone();
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            match stream.next_message(Duration::from_millis(200)).await {
                Some(SseMessage::Event(event)) => {
                    let mut seen = into.lock().unwrap();
                    if event.event == "resync" {
                        seen.resyncs.push(event.data.clone());
                        continue;
                    }
                    let Ok(value) = event.json() else { continue };
                    if value["channel"] == CHANNEL {
                        let id = event.id_number().expect("an event has a numeric id");
                        seen.events.push((id, value["payload"].clone()));
                    }
                }
                Some(SseMessage::Comment(_)) => into.lock().unwrap().comments.push(Instant::now()),
                Some(SseMessage::Retry(_)) => {}
                None if stream.ended => {
                    into.lock().unwrap().ended_at = Some(Instant::now());
                    return;
                }
                None => {}
            }
        }
    });
    seen
}

async fn open_stream(
    client: &reqwest::Client,
    base: &str,
    query: &str,
    session: &str,
) -> SseStream {
    let response = client
        .get(format!("{base}/api/stream?{query}"))
        .header("X-Session-ID", session)
        .header("X-Agent-ID", "watcher")
        .send()
        .await
        .expect("stream request");
    assert_eq!(response.status(), 200, "the stream on {base} opens");
    SseStream::new(response)
}

/// Whether `GET /api/sessions` at `base` lists `session`.
async fn lists_session(client: &reqwest::Client, base: &str, session: &str) -> bool {
    let listed: Value = client
        .get(format!("{base}/api/sessions"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .expect("GET /api/sessions on B answers")
        .json()
        .await
        .expect("sessions JSON");
    assert_eq!(listed["scope"], "cluster", "{listed}");
    listed["sessions"]
        .as_array()
        .expect("sessions")
        .iter()
        .any(|s| s["session_id"] == session)
}

/// Polls `check` every 100 ms until true or `within` passed; the time it
/// took, if it became true.
async fn poll_until<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn figures(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "none".into();
    }
    let mut took: Vec<Duration> = attempts.iter().map(|a| a.took).collect();
    took.sort();
    format!(
        "{} answers, min {:?}, median {:?}, max {:?}",
        took.len(),
        took[0],
        took[took.len() / 2],
        took[took.len() - 1]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, ip netns and PostgreSQL; run with --include-ignored"]
async fn a_node_cut_off_from_the_database_answers_503_keeps_its_streams_and_catches_up() {
    require_root_and_ip();
    let admin = postgres_admin_url();
    let postgres = loopback_host_port(&admin);
    let database = Arc::new(PgDatabase::create().await);

    // The namespace: a client path (the test reaches A) and a database path
    // (A reaches the relay), each a veth pair with a /30 of its own.
    let pid = std::process::id();
    let octet = pid % 250 + 1;
    let ns = format!("sbcut{pid}");
    let (client_host, client_ns) = (format!("sb{pid}c0"), format!("sb{pid}c1"));
    let (db_host, db_ns) = (format!("sb{pid}d0"), format!("sb{pid}d1"));
    let (client_host_ip, a_ip) = (format!("10.213.{octet}.1"), format!("10.213.{octet}.2"));
    let (relay_ip, db_ns_ip) = (format!("10.214.{octet}.1"), format!("10.214.{octet}.2"));
    let mut netns = Netns {
        name: ns.clone(),
        links: Vec::new(),
        guard_route: None,
    };
    ip(&["netns", "add", &ns]);
    for (host, inside, host_ip, ns_ip) in [
        (&client_host, &client_ns, &client_host_ip, &a_ip),
        (&db_host, &db_ns, &relay_ip, &db_ns_ip),
    ] {
        ip(&[
            "link", "add", host, "type", "veth", "peer", "name", inside, "netns", &ns,
        ]);
        netns.links.push(host.clone());
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", host]);
        ip(&["link", "set", host, "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            inside,
        ]);
        ip(&["-n", &ns, "link", "set", inside, "up"]);
    }
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    // A's kernel knows the relay's hardware address for good: with the path
    // down, A's packets are then dropped without a word (as beyond a router
    // in a real partition), not refused at once with "No route to host"
    // once an ARP query goes unanswered.
    let relay_mac = format!("02:5b:0d:{:02x}:{:02x}:01", octet >> 8, octet & 0xff);
    ip(&["link", "set", &db_host, "address", &relay_mac]);
    ip(&[
        "-n",
        &ns,
        "neigh",
        "replace",
        &relay_ip,
        "lladdr",
        &relay_mac,
        "dev",
        &db_ns,
        "nud",
        "permanent",
    ]);
    // While the database path is down its connected route is gone: without
    // this, the relay's packets to A would follow the default route out of
    // the machine. A blackhole with a worse metric keeps them here.
    let guard: Vec<String> = [
        "blackhole",
        &format!("10.214.{octet}.0/30"),
        "metric",
        "4242",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut args = vec!["route", "add"];
    args.extend(guard.iter().map(String::as_str));
    ip(&args);
    netns.guard_route = Some(guard);

    // The relay: A's only way to PostgreSQL.
    let listener = tokio::net::TcpListener::bind(format!("{relay_ip}:0"))
        .await
        .expect("the relay listens on the host side of the database path");
    let relay_port = listener.local_addr().unwrap().port();
    let _relay = relay(listener, postgres);

    // Node A in the namespace, node B here on loopback.
    let a_database = with_host(&database.url, &format!("{relay_ip}:{relay_port}"));
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns,
            env!("CARGO_BIN_EXE_switchboard"),
            "serve",
        ])
        .args(["--bind", &format!("{a_ip}:0"), "--log-format", "json"])
        .args(["--database", &a_database])
        .args([
            "--node-timeout",
            "3s",
            "--keepalive",
            "1s",
            "--rate-limit",
            "0",
        ])
        .args(["--read-pool", "3", "--allow-open"]) // reachable only from this test
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ip netns exec … switchboard serve starts");
    let (mut node_a, a_port) = node_listening(child).await;
    let a = format!("http://{a_ip}:{a_port}");
    let node_b = spawn_node_with(&database, |args| {
        args.node_timeout = NODE_TIMEOUT;
        args.keepalive = Duration::from_secs(1);
        args.rate_limit = 0;
    })
    .await;
    let b = node_b.address.clone();
    let client = reqwest::Client::new();

    // A stream per node, open across the cut; A's carries a session.
    let stop_reading = Arc::new(AtomicBool::new(false));
    let on_a = read_into(
        open_stream(&client, &a, &format!("channels={CHANNEL}&replay=0"), "on-a").await,
        stop_reading.clone(),
    );
    let on_b = read_into(
        open_stream(&client, &b, &format!("channels={CHANNEL}&replay=0"), "on-b").await,
        stop_reading.clone(),
    );
    let (client_ref, b_ref) = (&client, &b);
    let joined = poll_until(Duration::from_secs(10), move || {
        lists_session(client_ref, b_ref, "on-a")
    })
    .await;
    assert!(joined.is_some(), "B lists A's session before the cut");

    // Writers on both nodes.
    let stop_writing = Arc::new(AtomicBool::new(false));
    // Three on A: writes that come while another waits for the database are
    // answered too, and A is often inside a write transaction (holding the
    // cluster's write lock) when the path goes down.
    let writers_a = ["a0", "a1", "a2"]
        .map(|name| tokio::spawn(write_until(a.clone(), name, stop_writing.clone())));
    let writer_b = tokio::spawn(write_until(b.clone(), "b", stop_writing.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The cut.
    ip(&["link", "set", &db_host, "down"]);
    let cut_at = Instant::now();
    eprintln!("netcut: database path of node A down");

    // A's presence leaves B after the node timeout.
    let left = poll_until(Duration::from_secs(10), move || async move {
        !lists_session(client_ref, b_ref, "on-a").await
    })
    .await;
    // A's readiness, while cut off.
    let ready_started = Instant::now();
    let ready = client
        .get(format!("{a}/readyz"))
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string());
    let ready_took = ready_started.elapsed();
    tokio::time::sleep_until((cut_at + CUT).into()).await;
    let comments_during_cut = on_a
        .lock()
        .unwrap()
        .comments
        .iter()
        .filter(|t| **t > cut_at)
        .count();
    let a_ended_during_cut = on_a.lock().unwrap().ended_at;

    // The heal.
    ip(&["link", "set", &db_host, "up"]);
    let healed_at = Instant::now();
    eprintln!("netcut: database path of node A up again");
    let rejoined = poll_until(RECOVER_WITHIN, move || {
        lists_session(client_ref, b_ref, "on-a")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // writes on both, after the heal
    stop_writing.store(true, Ordering::Relaxed);
    let mut written_a = Written::default();
    for writer in writers_a {
        let written = writer.await.unwrap();
        written_a.attempts.extend(written.attempts);
        written_a.acked.extend(written.acked);
    }
    written_a.attempts.sort_by_key(|t| t.started);
    let written_b = writer_b.await.unwrap();

    // The figures.
    // The attempts started while the database path was down (the first
    // half-second after the cut left out: a write may have committed just
    // before it).
    let during = |attempts: &[Attempt]| -> Vec<Attempt> {
        attempts
            .iter()
            .filter(|t| t.started > cut_at + Duration::from_millis(500) && t.started < healed_at)
            .cloned()
            .collect()
    };
    let a_during = during(&written_a.attempts);
    let b_during = during(&written_b.attempts);
    let overlapping: Vec<(Duration, Duration, Result<u16, String>)> = written_a
        .attempts
        .iter()
        .filter(|t| t.started < healed_at && t.started + t.took > cut_at)
        .map(|t| {
            (
                t.started.saturating_duration_since(cut_at),
                t.took,
                t.outcome.clone(),
            )
        })
        .collect();
    eprintln!(
        "netcut: A's writes in flight during the cut (start after the cut, took, answer): {:?}",
        &overlapping[..overlapping.len().min(12)]
    );
    let a_503: Vec<Attempt> = a_during
        .iter()
        .filter(|t| t.outcome == Ok(503))
        .cloned()
        .collect();
    let a_back = written_a
        .attempts
        .iter()
        .find(|t| t.started > healed_at && t.outcome == Ok(201))
        .map(|t| t.started + t.took - healed_at);
    eprintln!("netcut: writes to A during the cut: {}", figures(&a_during));
    eprintln!("netcut: of those answered 503: {}", figures(&a_503));
    eprintln!(
        "netcut: writes to B during the cut: {} ({} not 201)",
        figures(&b_during),
        b_during.iter().filter(|t| t.outcome != Ok(201)).count()
    );
    eprintln!("netcut: GET /readyz on A during the cut: {ready:?} in {ready_took:?}");
    eprintln!(
        "netcut: A's session left B's list {left:?} after the cut (node timeout {NODE_TIMEOUT:?})"
    );
    eprintln!("netcut: keep-alive comments on A's stream during the cut: {comments_during_cut}");
    eprintln!("netcut: first 201 from A's writer {a_back:?} after the heal");
    eprintln!("netcut: A's session back on B {rejoined:?} after the heal");
    eprintln!(
        "netcut: answered 201: {} by A, {} by B",
        written_a.acked.len(),
        written_b.acked.len()
    );

    // Each broken promise is collected, so that one run reports them all.
    let mut broken: Vec<String> = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            eprintln!("netcut: FAILED: {what}");
            broken.push(what);
        }
    };

    // During the cut: A answers 503, quickly; B goes on; A's stream stays.
    let slow: Vec<(&str, Duration, Duration, Result<u16, String>)> =
        [("A", &written_a.attempts), ("B", &written_b.attempts)]
            .into_iter()
            .flat_map(|(node, attempts)| attempts.iter().map(move |t| (node, t)))
            .filter(|(_, t)| t.took > ANSWER_WITHIN)
            .map(|(node, t)| {
                let started = t.started.saturating_duration_since(cut_at);
                (node, started, t.took, t.outcome.clone())
            })
            .collect();
    check(
        slow.is_empty(),
        format!(
            "every write is answered within {ANSWER_WITHIN:?} (503 while the database is out \
             of reach); these were not (node, started after the cut, took, answer): {slow:?}"
        ),
    );
    check(
        !a_during.is_empty(),
        "a write to A started during the cut (else the one in flight hung)".into(),
    );
    let not_503: Vec<(Duration, Duration, Result<u16, String>)> = a_during
        .iter()
        .filter(|t| t.outcome != Ok(503))
        .map(|t| (t.started - cut_at, t.took, t.outcome.clone()))
        .collect();
    check(
        not_503.is_empty(),
        format!("writes to A during the cut answer 503; these did not: {not_503:?}"),
    );
    // (A write transaction of A holds the cluster's write lock; if the path
    // goes down between its lock and its COMMIT, PostgreSQL keeps that
    // transaction open, and B waits for it.)
    check(
        !b_during.is_empty() && b_during.iter().all(|t| t.outcome == Ok(201)),
        format!(
            "B's writes go on while A is cut off: {} of {} answered 201",
            b_during.iter().filter(|t| t.outcome == Ok(201)).count(),
            b_during.len()
        ),
    );
    check(
        a_ended_during_cut.is_none(),
        "A's stream stays open during the cut".into(),
    );
    check(
        comments_during_cut >= 3,
        format!("A's stream keeps sending keep-alives during the cut ({comments_during_cut})"),
    );
    check(
        ready == Ok(503) && ready_took <= Duration::from_secs(5),
        format!(
            "GET /readyz on A answers 503 within 5 s while cut off: {ready:?} in {ready_took:?}"
        ),
    );
    check(
        left.is_some_and(|left| left >= NODE_TIMEOUT.saturating_sub(Duration::from_millis(700))),
        format!("A's session leaves B's list after the node timeout, within 10 s: {left:?}"),
    );

    // After the heal: A writes again, its session is back on B.
    check(
        a_back.is_some(),
        format!("A answers 201 again within {RECOVER_WITHIN:?} of the heal"),
    );
    check(
        rejoined.is_some(),
        format!("A's session is listed on B again within {RECOVER_WITHIN:?} of the heal"),
    );

    // Every answered write is in the log once, with its data.
    let log = events_at(&client, &b, &format!("channels={CHANNEL}")).await;
    let logged: BTreeMap<i64, Value> = log
        .iter()
        .map(|e| (e["id"].as_i64().unwrap(), e["payload"].clone()))
        .collect();
    check(logged.len() == log.len(), "each id once in the log".into());
    let mut answered = HashSet::new();
    let mut twice = Vec::new();
    let mut lost = Vec::new();
    for (id, data) in written_a.acked.iter().chain(&written_b.acked) {
        if !answered.insert(*id) {
            twice.push(*id);
        }
        if logged.get(id) != Some(data) {
            lost.push(*id);
        }
    }
    check(twice.is_empty(), format!("ids answered twice: {twice:?}"));
    check(
        lost.is_empty(),
        format!("answered events not in the log with their data: {lost:?}"),
    );
    let expected: Vec<(i64, Value)> = logged.into_iter().collect();

    // Every stream on every node: those open across the cut, on their
    // connections, and fresh ones from 0, each has every event once, in order.
    let on_a_fresh = read_into(
        open_stream(
            &client,
            &a,
            &format!("channels={CHANNEL}&last_event_id=0"),
            "fresh-a",
        )
        .await,
        stop_reading.clone(),
    );
    let on_b_fresh = read_into(
        open_stream(
            &client,
            &b,
            &format!("channels={CHANNEL}&last_event_id=0"),
            "fresh-b",
        )
        .await,
        stop_reading.clone(),
    );
    let streams = [
        ("A, open across the cut", &on_a),
        ("B, open across the cut", &on_b),
        ("A, fresh from 0", &on_a_fresh),
        ("B, fresh from 0", &on_b_fresh),
    ];
    let (streams_ref, want) = (&streams, expected.len());
    let all_in = poll_until(RECOVER_WITHIN, move || async move {
        streams_ref
            .iter()
            .all(|(_, seen)| seen.lock().unwrap().events.len() >= want)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await; // duplicates, if any, arrive
    stop_reading.store(true, Ordering::Relaxed);
    for (name, seen) in streams {
        let seen = seen.lock().unwrap();
        check(
            seen.resyncs.is_empty(),
            format!("stream on {name} got no resync: {:?}", seen.resyncs),
        );
        check(
            seen.ended_at.is_none(),
            format!("stream on {name} stays open"),
        );
        let got: Vec<i64> = seen.events.iter().map(|(id, _)| *id).collect();
        let want: Vec<i64> = expected.iter().map(|(id, _)| *id).collect();
        let got_set: HashSet<i64> = got.iter().copied().collect();
        let missing: Vec<i64> = want
            .iter()
            .filter(|id| !got_set.contains(id))
            .copied()
            .collect();
        let mut counts = BTreeMap::new();
        for id in &got {
            *counts.entry(*id).or_insert(0) += 1;
        }
        let repeated: Vec<i64> = counts
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, _)| *id)
            .collect();
        check(
            got == want,
            format!(
                "stream on {name} has every event of the log once, in id order: {} events, \
                 the log {} (all in after {all_in:?}); missing {} {:?}, repeated {:?}, \
                 ascending: {}",
                got.len(),
                want.len(),
                missing.len(),
                &missing[..missing.len().min(20)],
                &repeated[..repeated.len().min(20)],
                got.windows(2).all(|w| w[0] < w[1])
            ),
        );
        check(
            got != want || seen.events == expected,
            format!("stream on {name}: the events' payloads are the log's"),
        );
        if got == want {
            eprintln!(
                "netcut: stream on {name}: all {} events once, in order",
                want.len()
            );
        }
    }
    assert!(
        broken.is_empty(),
        "a node cut off from the database: {} of the promises broken:\n- {}",
        broken.len(),
        broken.join("\n- ")
    );

    node_a.start_kill().ok();
    let _ = node_a.wait().await;
}
