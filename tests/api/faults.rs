//! Crashes and storage faults: nothing acknowledged is lost, nothing
//! half-written is kept, and the server recovers by itself.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::Connection;
use serde_json::{json, Value};

use crate::helpers::spawn_app;
use crate::process::start_serve;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_run_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("crash.db");
    let (mut child, port) = start_serve(&database).await;
    let base = format!("http://127.0.0.1:{port}");

    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut writers = Vec::new();
    for writer in 0..8 {
        let base = base.clone();
        writers.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut acked: Vec<(i64, Value)> = Vec::new();
            let mut n = 0;
            loop {
                let data = json!({ "writer": writer, "n": n });
                let sent = client
                    .post(format!("{base}/api/channels/crash/events"))
                    .header("X-Agent-ID", format!("writer-{writer}"))
                    .json(&json!({ "type": "write", "data": data }))
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == 201 => {
                        let Ok(event) = response.json::<Value>().await else {
                            break;
                        };
                        acked.push((event["id"].as_i64().unwrap(), data));
                    }
                    _ => break, // the server is gone: what was not acknowledged may be lost
                }
                n += 1;
                if Instant::now() > stop_at + Duration::from_secs(5) {
                    break;
                }
            }
            acked
        }));
    }
    tokio::time::sleep_until(stop_at.into()).await;
    child.start_kill().unwrap(); // SIGKILL, mid-run
    child.wait().await.unwrap();
    let mut acked = BTreeMap::new();
    for writer in writers {
        for (id, data) in writer.await.unwrap() {
            assert!(
                acked.insert(id, data).is_none(),
                "an id was acknowledged twice"
            );
        }
    }
    assert!(acked.len() > 100, "the writers were busy: {}", acked.len());

    let (_restarted, port) = start_serve(&database).await;
    let client = reqwest::Client::new();
    let mut stored = BTreeMap::new();
    let mut after = 0;
    loop {
        let page: Value = client
            .get(format!(
                "http://127.0.0.1:{port}/api/events?channels=crash&after={after}&limit=1000"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for event in page["events"].as_array().unwrap() {
            let id = event["id"].as_i64().unwrap();
            assert!(id > after, "ids increase");
            after = id;
            stored.insert(id, event["payload"].clone());
        }
        if page["next_cursor"].is_null() {
            break;
        }
    }
    for (id, data) in &acked {
        assert_eq!(
            stored.get(id),
            Some(data),
            "acknowledged event {id} survived the crash"
        );
    }
}

#[tokio::test]
async fn a_locked_database_answers_503_writes_nothing_and_recovers_by_itself() {
    let app = spawn_app().await;
    app.publish("global", "before", json!({}), None).await;

    // Another process holds the write lock longer than the busy timeout.
    let path = app.db_path.to_str().unwrap().to_owned();
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let mut conn = diesel::SqliteConnection::establish(&path).unwrap();
        conn.batch_execute("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        conn.batch_execute("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();

    let response = app
        .post("/api/channels/global/events")
        .json(&json!({"type": "during", "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable");
    let text = body.to_string().to_lowercase();
    assert!(
        !text.contains("sql") && !text.contains("locked"),
        "no storage detail leaks: {text}"
    );
    // Reads go on meanwhile (WAL).
    assert_eq!(app.get("/api/events").send().await.unwrap().status(), 200);

    release_tx.send(()).unwrap();
    holder.join().unwrap();
    let after = app.publish("global", "after", json!({}), None).await;
    let types: Vec<String> = app
        .all_events()
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        ["before", "after"],
        "the refused write left nothing behind"
    );
    assert!(after["id"].as_i64().unwrap() > 1);
}
