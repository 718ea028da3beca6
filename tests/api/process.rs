//! The real `switchboard serve` process: it stops on SIGTERM, ending its
//! streams, and a new process on the same database carries on.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{SseStream, DEADLINE};

/// Starts `switchboard serve` on a free port; returns it once it listens
/// (read from its JSON log line, no polling).
pub async fn start_serve(database: impl AsRef<std::ffi::OsStr>) -> (Child, u16) {
    start_serve_with(database, &[]).await
}

/// `start_serve` with extra `SWITCHBOARD_*` settings in the environment.
pub async fn start_serve_with(
    database: impl AsRef<std::ffi::OsStr>,
    env: &[(&str, &str)],
) -> (Child, u16) {
    let (child, listening) = start_serve_logged(database, env).await;
    let port = listening["port"].as_u64().expect("port in the log line") as u16;
    (child, port)
}

/// The real binary serving `database` on a free port, logging JSON at
/// `info` to a piped stderr (its first line names the port), killed when
/// dropped; a test adds its own settings before spawning it.
pub fn serve_command(database: impl AsRef<std::ffi::OsStr>) -> Command {
    serve_command_on(database, "127.0.0.1:0")
}

/// `serve_command` listening on `bind` (a restart on the port a client
/// already knows).
pub fn serve_command_on(database: impl AsRef<std::ffi::OsStr>, bind: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    command
        .arg("serve")
        .args(["--bind", bind, "--log-format", "json", "--database"])
        .arg(database)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// `start_serve_with`, returning the `switchboard listening` log line.
async fn start_serve_logged(
    database: impl AsRef<std::ffi::OsStr>,
    env: &[(&str, &str)],
) -> (Child, Value) {
    listening(
        serve_command(database)
            .envs(env.iter().copied())
            .spawn()
            .expect("switchboard starts"),
    )
    .await
}

/// Waits for `child` (spawned from `serve_command`) to listen; answers it
/// with its `switchboard listening` log line.
pub async fn listening(mut child: Child) -> (Child, Value) {
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let listening = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await.expect("log line") {
            if line.contains("switchboard listening") {
                return serde_json::from_str::<Value>(&line).expect("a JSON log line");
            }
        }
        panic!("switchboard exited before listening");
    })
    .await
    .expect("switchboard listens before the deadline");
    // Keep reading the log, so the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, listening)
}

#[tokio::test]
async fn the_server_exits_promptly_on_sigterm_and_a_new_one_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("switchboard.db");
    let client = reqwest::Client::new();

    let (mut child, port) = start_serve(&database).await;
    let base = format!("http://127.0.0.1:{port}");
    let stored = publish_note(&client, &base).await;
    let response = client
        .get(format!("{base}/api/stream?replay=0&session_id=s-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = SseStream::new(response);

    let pid = child.id().expect("running").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());

    assert!(
        stream.next_event_within(DEADLINE).await.is_none() && stream.ended,
        "open streams end at shutdown"
    );
    let exit = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap_or_else(|_| panic!("switchboard did not exit within {DEADLINE:?} of SIGTERM"))
        .unwrap();
    assert!(exit.success(), "exit status {exit}");

    // A new process on the same database has the event and goes on after it.
    let (_child, port) = start_serve(&database).await;
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(global_events(&client, &base).await, json!([stored.clone()]));
    let next = publish_note(&client, &base).await;
    assert!(next["id"].as_i64().unwrap() > stored["id"].as_i64().unwrap());
}

#[tokio::test]
async fn durable_streams_sse_and_long_polls_end_cleanly_at_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (mut child, port) = start_serve(dir.path().join("switchboard.db")).await;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let created = client
        .put(format!("{base}/v1/stream/jobs"))
        .header("Content-Type", "text/plain")
        .body("first")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    // Raw HTTP, to see how the answer ends: the chunked terminator, or a cut.
    let mut sse = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    sse.write_all(b"GET /v1/stream/jobs?offset=-1&live=sse HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("first") {
        let n = tokio::time::timeout(DEADLINE, sse.read(&mut buf))
            .await
            .expect("the SSE answer starts")
            .unwrap();
        assert!(n > 0, "the SSE answer ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    let poll = tokio::spawn({
        let client = client.clone();
        let url = format!("{base}/v1/stream/jobs?offset=now&live=long-poll");
        async move {
            let started = std::time::Instant::now();
            let answer = client.get(url).send().await.unwrap();
            (answer.status().as_u16(), started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &child.id().expect("running").to_string()])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let stopped = std::time::Instant::now();
    loop {
        let n = tokio::time::timeout(DEADLINE, sse.read(&mut buf))
            .await
            .expect("the SSE answer ends at shutdown")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.ends_with("0\r\n\r\n"),
        "the SSE answer ends with the chunked terminator, not a cut: {text:?}"
    );
    assert!(
        stopped.elapsed() < Duration::from_millis(1500),
        "ended promptly: {:?}",
        stopped.elapsed()
    );
    let (status, waited) = tokio::time::timeout(DEADLINE, poll)
        .await
        .expect("the long-poll is answered at shutdown")
        .unwrap();
    assert_eq!(status, 204, "a long-poll answers up to date at shutdown");
    assert!(
        waited < Duration::from_secs(5),
        "not after its 30 s: {waited:?}"
    );
    let _ = tokio::time::timeout(DEADLINE, child.wait()).await;
}

/// Publishes a `note` to `global`; returns the stored event (201).
async fn publish_note(client: &reqwest::Client, base: &str) -> Value {
    let response = client
        .post(format!("{base}/api/channels/global/events"))
        .json(&json!({"type": "note", "data": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// The events of `global` in the log.
async fn global_events(client: &reqwest::Client, base: &str) -> Value {
    let page: Value = client
        .get(format!("{base}/api/events?channels=global"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["events"].clone()
}

#[tokio::test]
async fn sqlite_commits_can_be_flushed_to_disk_each_time_and_the_server_says_which() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("switchboard.db");
    let client = reqwest::Client::new();

    let (mut child, listening) =
        start_serve_logged(&database, &[("SWITCHBOARD_SQLITE_SYNCHRONOUS", "full")]).await;
    assert_eq!(listening["sqlite_synchronous"], "full", "{listening}");
    let base = format!("http://127.0.0.1:{}", listening["port"]);
    let stored = publish_note(&client, &base).await;
    child.start_kill().unwrap(); // SIGKILL: no graceful stop
    child.wait().await.unwrap();

    // The default is normal; the acknowledged event is there.
    let (_child, listening) = start_serve_logged(&database, &[]).await;
    assert_eq!(listening["sqlite_synchronous"], "normal", "{listening}");
    let base = format!("http://127.0.0.1:{}", listening["port"]);
    assert_eq!(global_events(&client, &base).await, json!([stored]));

    // A value it does not offer (`off` would lose acknowledged commits) is
    // refused before anything starts.
    let refused = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--sqlite-synchronous",
            "off",
        ])
        .arg("--database")
        .arg(&database)
        .output()
        .await
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("\"off\" is neither normal nor full"),
        "{stderr}"
    );
}

/// The number of group commits the server made, from its `/metrics`.
async fn commits(client: &reqwest::Client, base: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("switchboard_writer_commit_seconds_count "))
        .map_or(0.0, |n| n.trim().parse().unwrap())
}

#[tokio::test]
async fn an_idle_server_commits_nothing_and_still_sweeps_a_lease_that_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let (_child, port) = start_serve(dir.path().join("switchboard.db")).await;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let before = commits(&client, &base).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        commits(&client, &base).await,
        before,
        "no commit while idle (the sweeper ticks every 250 ms)"
    );

    let r = client
        .post(format!("{base}/api/files"))
        .json(&json!({ "stable_id": "f", "name": "f", "content": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .post(format!("{base}/api/files/f/lock"))
        .header("X-Session-ID", "s1")
        .json(&json!({ "ttl_seconds": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = std::time::Instant::now() + DEADLINE;
    loop {
        let file: Value = client
            .get(format!("{base}/api/files/f"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if file["locked_by"].is_null() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the lease was swept");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The sweep's commit is counted just after it is visible.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let settled = commits(&client, &base).await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        commits(&client, &base).await,
        settled,
        "idle again once no lease is held"
    );
}
