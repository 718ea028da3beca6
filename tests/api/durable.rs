//! Durable Streams beyond the upstream suite (which `.ci/run` runs as is):
//! what survives a restart and a `kill -9`, SSE across a restart, and
//! several nodes on PostgreSQL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::StreamExt;

use crate::helpers::{spawn_app, spawn_node_with, PgDatabase, DEADLINE};
use crate::process::start_serve;

/// Every byte value, several times: no UTF-8 or JSON round trip survives it.
fn binary(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn put(client: &reqwest::Client, url: &str, content_type: &str) -> reqwest::Response {
    client
        .put(url)
        .header("Content-Type", content_type)
        .send()
        .await
        .unwrap()
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> reqwest::Response {
    client
        .post(url)
        .header("Content-Type", "application/octet-stream")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// An answer's `Stream-Next-Offset`.
fn next_offset(r: &reqwest::Response) -> String {
    r.headers()["stream-next-offset"]
        .to_str()
        .unwrap()
        .to_owned()
}

/// A catch-up read from `offset`, answered 200.
async fn read_from(client: &reqwest::Client, url: &str, offset: &str) -> reqwest::Response {
    let r = client
        .get(format!("{url}?offset={offset}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r
}

/// The whole stream from the start (following `Stream-Next-Offset` chunks).
async fn read_all(client: &reqwest::Client, url: &str) -> (Vec<u8>, String) {
    let mut offset = "-1".to_owned();
    let mut out = Vec::new();
    loop {
        let r = read_from(client, url, &offset).await;
        let next = next_offset(&r);
        let done = r.headers().contains_key("stream-up-to-date");
        out.extend_from_slice(&r.bytes().await.unwrap());
        offset = next;
        if done {
            return (out, offset);
        }
    }
}

#[tokio::test]
async fn streams_survive_a_restart_with_offsets_and_bytes_intact() {
    let app = spawn_app().await;
    let url = app.url("/v1/stream/restart-me");
    assert_eq!(
        put(&app.client, &url, "application/octet-stream")
            .await
            .status(),
        201
    );
    let mut written = Vec::new();
    let mut offsets = Vec::new();
    for i in 0..20 {
        let chunk = binary(1000 + i * 37, i as u8);
        let r = post(&app.client, &url, chunk.clone()).await;
        assert_eq!(r.status(), 204);
        offsets.push(next_offset(&r));
        written.extend(chunk);
    }
    let mut sorted = offsets.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, offsets, "offsets strictly increase");
    let (before, tail) = read_all(&app.client, &url).await;
    assert_eq!(before, written);

    let app = app.restart().await;
    let url = app.url("/v1/stream/restart-me");
    let (after, tail_after) = read_all(&app.client, &url).await;
    assert_eq!(after, written, "the same bytes");
    assert_eq!(tail_after, tail, "the same tail");
    // Reading from a middle offset gives exactly what followed it.
    let r = app
        .client
        .get(format!("{url}?offset={}", offsets[9]))
        .send()
        .await
        .unwrap();
    let rest = r.bytes().await.unwrap();
    let head: usize = (0..10).map(|i| 1000 + i * 37).sum();
    assert_eq!(&rest[..], &written[head..]);
    // Appends go on after the old tail.
    let r = post(&app.client, &url, b"more".to_vec()).await;
    assert!(r.headers()["stream-next-offset"].to_str().unwrap() > tail.as_str());
}

#[tokio::test]
async fn a_kill_9_during_appends_loses_no_acknowledged_append() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("switchboard.db");
    let (mut child, port) = start_serve(&database).await;
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/v1/stream/crash");
    assert_eq!(
        put(&client, &url, "application/octet-stream")
            .await
            .status(),
        201
    );

    // Four writers append numbered chunks until the server dies.
    let acknowledged = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let mut writers = Vec::new();
    for w in 0..4u8 {
        let (client, url, acknowledged) = (client.clone(), url.clone(), acknowledged.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..10_000u32 {
                let mut chunk = vec![w];
                chunk.extend_from_slice(&n.to_be_bytes());
                chunk.extend(binary(61, w));
                match client
                    .post(&url)
                    .header("Content-Type", "application/octet-stream")
                    .body(chunk.clone())
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 204 => acknowledged.lock().unwrap().push(chunk),
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap()
        .success());
    let _ = child.wait().await;
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 20,
        "appends were made: {}",
        acknowledged.len()
    );

    let (_child, port) = start_serve(&database).await;
    let url = format!("http://127.0.0.1:{port}/v1/stream/crash");
    let (stored, _) = read_all(&client, &url).await;
    assert_eq!(stored.len() % 66, 0, "whole appends only");
    let chunks: Vec<&[u8]> = stored.chunks(66).collect();
    for chunk in &acknowledged {
        assert!(
            chunks.contains(&chunk.as_slice()),
            "an acknowledged append is stored"
        );
    }
    // Each writer's appends are stored in the order it made them.
    for w in 0..4u8 {
        let numbers: Vec<u32> = chunks
            .iter()
            .filter(|c| c[0] == w)
            .map(|c| u32::from_be_bytes([c[1], c[2], c[3], c[4]]))
            .collect();
        assert!(
            numbers.windows(2).all(|p| p[1] == p[0] + 1),
            "writer {w} in order"
        );
    }
}

/// Follows a stream with SSE from `offset`, reconnecting from the last
/// control event's offset, until `want` bytes arrived.
async fn follow(
    client: reqwest::Client,
    base: Arc<std::sync::Mutex<String>>,
    path: &str,
    want: usize,
) -> Vec<u8> {
    let mut offset = "-1".to_owned();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "followed {} of {want} bytes",
            got.len()
        );
        let url = format!(
            "{}{path}?offset={offset}&live=sse",
            base.lock().unwrap().clone()
        );
        let Ok(response) = client.get(url).send().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        if response.status() != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(response.headers()["stream-sse-data-encoding"], "base64");
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        let mut pending: Vec<u8> = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let kind = block
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap_or("");
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .collect();
                if kind == "data" {
                    pending = base64::engine::general_purpose::STANDARD
                        .decode(data.trim())
                        .unwrap();
                } else if kind == "control" {
                    // Data counts once its control event (with the offset) came.
                    let control: serde_json::Value = serde_json::from_str(&data).unwrap();
                    got.append(&mut pending);
                    offset = control["streamNextOffset"].as_str().unwrap().to_owned();
                }
            }
            if got.len() >= want {
                break;
            }
        }
    }
    got
}

#[tokio::test]
async fn an_sse_reader_sees_every_byte_once_across_a_restart() {
    let app = spawn_app().await;
    let port = app.port;
    let base = Arc::new(std::sync::Mutex::new(app.url("")));
    let url = app.url("/v1/stream/followed");
    assert_eq!(
        put(&app.client, &url, "application/octet-stream")
            .await
            .status(),
        201
    );
    let chunks: Vec<Vec<u8>> = (0..30).map(|i| binary(500 + i, i as u8)).collect();
    let expected: Vec<u8> = chunks.concat();
    let reader = tokio::spawn(follow(
        app.client.clone(),
        base.clone(),
        "/v1/stream/followed",
        expected.len(),
    ));
    for chunk in &chunks[..15] {
        assert_eq!(post(&app.client, &url, chunk.clone()).await.status(), 204);
    }
    let app = app
        .restart_with(|a| a.bind = format!("127.0.0.1:{port}"))
        .await;
    for chunk in &chunks[15..] {
        assert_eq!(post(&app.client, &url, chunk.clone()).await.status(), 204);
    }
    let got = tokio::time::timeout(DEADLINE * 3, reader)
        .await
        .expect("the reader finishes")
        .unwrap();
    assert_eq!(got.len(), expected.len(), "every byte once");
    assert_eq!(got, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set SWITCHBOARD_TEST_POSTGRES=postgres://… and run with --include-ignored"]
async fn two_nodes_on_postgresql_serve_the_same_streams_live() {
    let database = Arc::new(PgDatabase::create().await);
    let one = spawn_node_with(&database, |_| {}).await;
    let two = spawn_node_with(&database, |_| {}).await;
    let client = reqwest::Client::new();
    let on_one = one.url("/v1/stream/shared");
    let on_two = two.url("/v1/stream/shared");
    let r = put(&client, &on_one, "text/plain").await;
    assert_eq!(r.status(), 201);
    let tail = r.headers()["stream-next-offset"]
        .to_str()
        .unwrap()
        .to_owned();
    // A long-poll on node two ends with an append made on node one.
    let waiting = {
        let client = client.clone();
        let url = format!("{on_two}?offset={tail}&live=long-poll");
        tokio::spawn(async move {
            let r = client.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = client
        .post(&on_one)
        .header("Content-Type", "text/plain")
        .body("hello from one")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (status, body) = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "hello from one"));
    let r = client
        .get(format!("{on_two}?offset=-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "hello from one");
}

#[tokio::test]
async fn a_connected_sse_reader_keeps_a_stream_with_a_ttl_alive() {
    let app = crate::helpers::spawn_app_with(|a| {
        a.durable_streams_long_poll = Duration::from_millis(500);
    })
    .await;
    let url = app.url("/v1/stream/kept");
    let r = app
        .client
        .put(&url)
        .header("Content-Type", "text/plain")
        .header("Stream-TTL", "2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let reader = app
        .client
        .get(format!("{url}?offset=-1&live=sse"))
        .send()
        .await
        .unwrap();
    assert_eq!(reader.status(), 200);
    // Four seconds, twice the TTL, with the reader connected and idle.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = app.client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200, "the reader kept it alive");
    drop(reader);
    // The server notices the reader left when a write fails (it writes at
    // every long-poll period, 0.5 s here, and the first write after the
    // close may still succeed), then the 2 s TTL runs: the stream is gone
    // 2-3 s later. HEAD does not renew it, so it may ask until then.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        let status = app.client.head(&url).send().await.unwrap().status();
        if status == 404 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            tokio::time::Instant::now() < deadline,
            "it expires once nobody reads it"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn one_catch_up_read_answers_a_stream_many_pages_long_whole() {
    let app = spawn_app().await;
    let client = reqwest::Client::new();
    // Bytes: 9 MiB in appends of 1 MiB, more than two pages.
    let url = app.url("/v1/stream/big");
    assert_eq!(
        put(&client, &url, "application/octet-stream")
            .await
            .status(),
        201
    );
    let mut written = Vec::new();
    for seed in 0..9u8 {
        let chunk = binary(1024 * 1024, seed);
        assert_eq!(post(&client, &url, chunk.clone()).await.status(), 204);
        written.extend_from_slice(&chunk);
    }
    let head = client.head(&url).send().await.unwrap();
    let tail = head.headers()["stream-next-offset"]
        .to_str()
        .unwrap()
        .to_owned();
    let read = client.get(format!("{url}?offset=-1")).send().await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["stream-next-offset"].to_str().unwrap(), tail);
    assert_eq!(read.headers()["stream-up-to-date"], "true");
    let body = read.bytes().await.unwrap();
    assert_eq!(body.len(), written.len(), "one read, every byte");
    assert!(body == written, "in order");

    // JSON mode: the pages' values make one array.
    let url = app.url("/v1/stream/json");
    assert_eq!(put(&client, &url, "application/json").await.status(), 201);
    let filler = "x".repeat(64 * 1024);
    let mut count = 0;
    for batch in 0..10 {
        let values: Vec<serde_json::Value> = (0..16)
            .map(|i| serde_json::json!({ "n": batch * 16 + i, "filler": filler }))
            .collect();
        let r = client
            .post(&url)
            .header("Content-Type", "application/json")
            .json(&values)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        count += values.len();
    }
    let read = client.get(format!("{url}?offset=-1")).send().await.unwrap();
    assert_eq!(read.headers()["stream-up-to-date"], "true");
    let values: Vec<serde_json::Value> = read.json().await.expect("one JSON array");
    assert_eq!(values.len(), count);
    let numbers: Vec<i64> = values.iter().map(|v| v["n"].as_i64().unwrap()).collect();
    assert_eq!(numbers, (0..count as i64).collect::<Vec<_>>());
}

/// A catch-up read of what this node appended is answered from memory
/// (`http/durable/tails.rs`): the same answer the database gives after a
/// restart, and never an earlier stream's messages at the same offsets.
#[tokio::test]
async fn a_catch_up_from_memory_answers_what_the_database_holds() {
    let app = spawn_app().await;
    let url = app.url("/v1/stream/kept");
    let append = |letter: char| {
        let (client, url) = (app.client.clone(), url.clone());
        async move {
            let mut offsets = Vec::new();
            for i in 0..5 {
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(format!("{{\"v\":\"{letter}{i}\"}}"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 204);
                offsets.push(next_offset(&r));
            }
            offsets
        }
    };
    let read = |client: reqwest::Client, url: String, offset: String| async move {
        let r = read_from(&client, &url, &offset).await;
        let head = |name: &str| {
            r.headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let head = (
            head("stream-next-offset"),
            head("etag"),
            head("stream-up-to-date"),
        );
        let values: Vec<String> = r
            .json::<Vec<serde_json::Value>>()
            .await
            .unwrap()
            .iter()
            .map(|v| v["v"].as_str().unwrap().to_owned())
            .collect();
        (values, head)
    };
    assert_eq!(
        put(&app.client, &url, "application/json").await.status(),
        201
    );
    let first = append('a').await;
    let (all, _) = read(app.client.clone(), url.clone(), "-1".into()).await;
    assert_eq!(all, ["a0", "a1", "a2", "a3", "a4"]);

    // Deleted and created again: only the new stream's messages.
    assert_eq!(app.client.delete(&url).send().await.unwrap().status(), 204);
    assert_eq!(
        put(&app.client, &url, "application/json").await.status(),
        201
    );
    let again = append('b').await;
    assert_ne!(again, first);
    let from_memory = read(app.client.clone(), url.clone(), "-1".into()).await;
    assert_eq!(from_memory.0, ["b0", "b1", "b2", "b3", "b4"]);
    let middle = read(app.client.clone(), url.clone(), again[1].clone()).await;
    assert_eq!(middle.0, ["b2", "b3", "b4"]);
    assert_eq!(middle.1 .0.as_deref(), Some(again[4].as_str()));
    let at_tail = read(app.client.clone(), url.clone(), again[4].clone()).await;
    assert!(at_tail.0.is_empty());

    // After a restart nothing is in memory: the database answers the same.
    let app = app.restart().await;
    let url = app.url("/v1/stream/kept");
    assert_eq!(
        read(app.client.clone(), url.clone(), "-1".into()).await,
        from_memory
    );
    assert_eq!(
        read(app.client.clone(), url.clone(), again[1].clone()).await,
        middle
    );
    assert_eq!(
        read(app.client.clone(), url, again[4].clone()).await,
        at_tail
    );
}
