//! Durable Streams as its official TypeScript client sees it: the
//! `@durable-streams/client` of `tests/api/ds_client` (pinned, with its
//! lockfile), run by Node against the real server. A one-request catch-up
//! (`live: false`) of a stream larger than one page returns all of it; an
//! SSE reader goes on by itself across a clean restart, every message once;
//! idempotent producers append exactly, and a fenced one is refused.
//!
//! The script (`client.mjs <mode>`, the stream's URL in `STREAM_URL`)
//! prints JSON lines; the tests assert on them, or fail with its output.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

use crate::helpers::{spawn_app, DEADLINE};
use crate::process::{listening, serve_command, serve_command_on};

/// How long one run of the script may take.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(120);

/// The client's folder, its packages installed with `npm ci` once per
/// lockfile into Cargo's temporary directory for tests.
fn client_dir() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/api/ds_client");
    let work = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ds-client");
    std::fs::create_dir_all(&work).unwrap();
    for file in ["package.json", "package-lock.json", "client.mjs"] {
        std::fs::copy(source.join(file), work.join(file)).unwrap();
    }
    let lock = std::fs::read(source.join("package-lock.json")).unwrap();
    let installed = work.join("node_modules/.installed-lock.json");
    if std::fs::read(&installed).ok().as_deref() != Some(&lock[..]) {
        let output = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&work)
            .output()
            .unwrap_or_else(|e| panic!("npm does not run (Node.js and npm are needed): {e}"));
        assert!(
            output.status.success(),
            "npm ci failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        std::fs::write(&installed, &lock).unwrap();
    }
    work
}

/// `node client.mjs <mode>` on the stream at `url`, its output piped.
fn client(mode: &str, url: &str, env: &[(&str, &str)]) -> Child {
    Command::new("node")
        .arg("client.mjs")
        .arg(mode)
        .current_dir(client_dir())
        .env("STREAM_URL", url)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("node does not run (Node.js 20 is needed): {e}"))
}

/// Runs the script to its end; answers the last line it printed. Fails with
/// its output unless it succeeds within the deadline.
async fn run_client(mode: &str, url: &str) -> Value {
    let output = tokio::time::timeout(SCRIPT_DEADLINE, client(mode, url, &[]).wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("client.mjs {mode} took more than {SCRIPT_DEADLINE:?}"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client.mjs {mode} failed ({}): {stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("the script prints its result");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

/// Creates the stream at `url` with `content_type`.
async fn create(http: &reqwest::Client, url: &str, content_type: &str) {
    let r = http
        .put(url)
        .header("content-type", content_type)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{url}: {}", r.text().await.unwrap());
}

/// Appends `body` to the stream at `url`.
async fn append(http: &reqwest::Client, url: &str, content_type: &str, body: Vec<u8>) {
    let r = http
        .post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "{url}: {}", r.text().await.unwrap());
}

#[tokio::test]
#[ignore = "needs Node.js 20 and npm (installs @durable-streams/client): run with --include-ignored"]
async fn a_one_request_catch_up_of_a_9_mib_stream_returns_every_byte_in_order() {
    let app = spawn_app().await;
    let url = app.url("/v1/stream/big");
    create(&app.client, &url, "application/octet-stream").await;
    // 9 appends of 1 MiB: byte n is n % 251, so a page lost, repeated or
    // out of place changes a byte.
    const MIB: usize = 1024 * 1024;
    for part in 0..9 {
        let bytes = (part * MIB..(part + 1) * MIB).map(|n| (n % 251) as u8);
        append(
            &app.client,
            &url,
            "application/octet-stream",
            bytes.collect(),
        )
        .await;
    }

    let read = run_client("bytes", &url).await;
    assert_eq!(
        read,
        json!({ "length": 9 * MIB, "first_wrong_byte": -1 }),
        "body() of a live: false read is the whole stream"
    );
}

#[tokio::test]
#[ignore = "needs Node.js 20 and npm (installs @durable-streams/client): run with --include-ignored"]
async fn a_one_request_catch_up_of_a_6_mib_json_stream_returns_every_value_in_order() {
    let app = spawn_app().await;
    let url = app.url("/v1/stream/big-json");
    create(&app.client, &url, "application/json").await;
    // 12 appends of 500 values of about 1 KiB each.
    let pad = "x".repeat(1000);
    for part in 0..12 {
        let values: Vec<Value> = (part * 500..(part + 1) * 500)
            .map(|i| json!({ "i": i, "pad": pad }))
            .collect();
        append(
            &app.client,
            &url,
            "application/json",
            serde_json::to_vec(&values).unwrap(),
        )
        .await;
    }

    let read = run_client("json", &url).await;
    assert_eq!(read["count"], 6000, "json() of a live: false read");
    assert_eq!(read["ids"], json!((0..6000).collect::<Vec<_>>()));
}

/// Sends SIGTERM to `child` and waits for it to exit cleanly; answers how
/// long that took.
async fn stop(mut child: Child) -> Duration {
    let pid = child.id().expect("running").to_string();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let signalled = std::time::Instant::now();
    let exit = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .unwrap_or_else(|_| panic!("switchboard did not exit within {DEADLINE:?} of SIGTERM"))
        .unwrap();
    assert!(exit.success(), "exit status {exit}");
    signalled.elapsed()
}

/// The SSE reader's output up to the line saying it has `want` messages, or
/// its final list of them.
async fn received(lines: &mut Lines<BufReader<ChildStdout>>, want: u64) -> Value {
    tokio::time::timeout(SCRIPT_DEADLINE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let value: Value = serde_json::from_str(&line).unwrap();
            if value["received"].as_u64().is_some_and(|n| n >= want) || value["ids"].is_array() {
                return value;
            }
        }
        panic!("the SSE reader exited before receiving {want} messages");
    })
    .await
    .unwrap_or_else(|_| panic!("the SSE reader did not receive {want} messages"))
}

#[tokio::test]
#[ignore = "needs Node.js 20 and npm (installs @durable-streams/client): run with --include-ignored"]
async fn an_sse_reader_goes_on_by_itself_across_a_clean_restart_with_every_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("switchboard.db");
    let (server, started) = listening(
        serve_command(&database)
            .env("SWITCHBOARD_RATE_LIMIT", "0")
            .spawn()
            .expect("switchboard starts"),
    )
    .await;
    let port = started["port"].as_u64().expect("port in the log line");
    let url = format!("http://127.0.0.1:{port}/v1/stream/live");
    let http = reqwest::Client::new();
    create(&http, &url, "application/json").await;
    let message = |i: usize| serde_json::to_vec(&json!({ "i": i })).unwrap();
    for i in 0..50 {
        append(&http, &url, "application/json", message(i)).await;
    }

    let mut reader = client("sse", &url, &[("EXPECT", "100")]);
    let mut lines = BufReader::new(reader.stdout.take().expect("stdout")).lines();
    assert_eq!(received(&mut lines, 50).await, json!({ "received": 50 }));

    // A clean stop while the reader is live, and a new server on the same
    // database and port; the next messages go to the new one.
    // The server ends the reader's answer at once rather than holding it
    // ~2 s and cutting it (the same bound as `process::durable_streams_sse_
    // and_long_polls_end_cleanly_at_shutdown`).
    let stopping = stop(server).await;
    assert!(
        stopping < Duration::from_millis(1500),
        "with the client's SSE reader open, the server stops promptly: {stopping:?}"
    );
    let (_server, restarted) = listening(
        serve_command_on(&database, &format!("127.0.0.1:{port}"))
            .env("SWITCHBOARD_RATE_LIMIT", "0")
            .spawn()
            .expect("switchboard starts again"),
    )
    .await;
    assert_eq!(restarted["port"], port);
    for i in 50..100 {
        append(&http, &url, "application/json", message(i)).await;
    }

    let result = received(&mut lines, u64::MAX).await;
    assert_eq!(
        result,
        json!({ "ids": (0..100).collect::<Vec<_>>(), "errors": [] }),
        "every message once, in order, and no error on the way"
    );
    let status = tokio::time::timeout(DEADLINE, reader.wait())
        .await
        .expect("the reader exits")
        .unwrap();
    assert!(status.success(), "the SSE reader exited with {status}");
}

#[tokio::test]
#[ignore = "needs Node.js 20 and npm (installs @durable-streams/client): run with --include-ignored"]
async fn idempotent_producers_append_json_values_exactly_and_a_fenced_epoch_is_refused() {
    let app = spawn_app().await;
    let url = app.url("/v1/stream/produced");

    let result = run_client("producer", &url).await;
    assert_eq!(result["errors"], json!([]), "{result}");
    let stale = result["stale"].as_array().expect("stale errors");
    assert!(
        !stale.is_empty()
            && stale
                .iter()
                .all(|e| e.as_str().is_some_and(|e| e.starts_with("StaleEpochError"))),
        "the epoch-0 producer after epoch 1 is fenced: {result}"
    );
    let expected: Vec<Value> = (0..2000)
        .map(|i| json!({ "i": i, "text": format!("value {i}"), "nested": { "ok": i % 2 == 0 } }))
        .collect();
    assert_eq!(
        result["items"],
        json!(expected),
        "the client reads back every value once, in order"
    );
    // The server holds the same: its own catch-up of the stream.
    let stored: Value = app
        .client
        .get(format!("{url}?offset=-1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored, json!(expected));
}
