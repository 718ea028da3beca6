//! Several nodes on one PostgreSQL database: cross-node fan-out, a client
//! hopping from node to node with `Last-Event-ID`, locks and idempotency keys
//! shared by all nodes, a node killed with SIGKILL mid-load, and nodes whose
//! database connections are cut. Every test here is `#[ignore]`d (a plain
//! `cargo test` reports it as ignored) and runs with `--include-ignored`,
//! where it fails unless `SWITCHBOARD_TEST_POSTGRES` names a PostgreSQL server.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::files::call;
use crate::helpers::{
    events_at, postgres_admin_url, spawn_node, spawn_node_with, write_until_refused, PgDatabase,
    SseStream, TestApp, DEADLINE,
};
use crate::process::start_serve_with;

async fn nodes(count: usize) -> (Arc<PgDatabase>, Vec<TestApp>) {
    let database = Arc::new(PgDatabase::create().await);
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(spawn_node(&database).await);
    }
    (database, nodes)
}

/// Every stored event on `channel`, oldest first, read from `base`.
async fn log_on(client: &reqwest::Client, base: &str, channel: &str) -> Vec<Value> {
    events_at(client, base, &format!("channels={channel}")).await
}

fn event_ids(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["id"].as_i64().unwrap()).collect()
}

/// Reads events (skipping presence and other channels' events) until `want`
/// of them arrived or the deadline passed.
async fn collect(stream: &mut SseStream, channel: &str, want: usize) -> Vec<i64> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while seen.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(event) = stream.next_event_within(left).await else {
            break;
        };
        let value = event.json().unwrap();
        if value["channel"] == channel {
            seen.push(value["id"].as_i64().unwrap());
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set SWITCHBOARD_TEST_POSTGRES=postgres://… and run with --include-ignored"]
async fn writes_spread_over_three_nodes_reach_every_node_and_a_hopping_subscriber_exactly_once() {
    let (_database, nodes) = nodes(3).await;
    // One watcher per node, connected before anything is written.
    let mut watchers = Vec::new();
    for node in &nodes {
        watchers.push(node.stream("channels=spread&replay=0", &[]).await);
    }

    const PER_NODE: usize = 150;
    let mut writers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let publisher = node.publisher();
        writers.push(tokio::spawn(async move {
            for i in 0..PER_NODE {
                let session = format!("writer-{n}");
                publisher
                    .publish(
                        "spread",
                        "write",
                        json!({"node": n, "i": i}),
                        Some(&session),
                    )
                    .await;
            }
        }));
    }

    // A subscriber that hops node to node every few events, resuming with
    // Last-Event-ID, while the writers run.
    let addresses: Vec<String> = nodes.iter().map(|n| n.address.clone()).collect();
    let hopper = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut received: Vec<i64> = Vec::new();
        let mut hop = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.len() < 3 * PER_NODE && Instant::now() < deadline {
            let base = &addresses[hop % addresses.len()];
            let mut request = client.get(format!("{base}/api/stream?channels=spread&replay=0"));
            if let Some(last) = received.last() {
                request = request.header("Last-Event-ID", last.to_string());
            } else {
                request = request.query(&[("last_event_id", "0")]);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let mut stream = SseStream::new(response);
            let got = collect_some(&mut stream, 25).await;
            received.extend(got);
            hop += 1;
        }
        (received, hop)
    });

    for writer in writers {
        writer.await.unwrap();
    }
    let log = log_on(&nodes[0].client, &nodes[0].address, "spread").await;
    let logged = event_ids(&log);
    assert_eq!(logged.len(), 3 * PER_NODE, "every write is in the log once");
    for (n, node) in nodes.iter().enumerate() {
        let seen_by_node: HashSet<i64> =
            event_ids(&log_on(&node.client, &node.address, "spread").await)
                .into_iter()
                .collect();
        assert_eq!(
            seen_by_node.len(),
            logged.len(),
            "node {n} reads the same log"
        );
    }

    for (n, watcher) in watchers.iter_mut().enumerate() {
        let seen = collect(watcher, "spread", logged.len()).await;
        assert_eq!(
            seen, logged,
            "the watcher on node {n} got every event of every node once, in id order"
        );
    }

    let (received, hops) = hopper.await.unwrap();
    assert!(
        hops >= 10,
        "the subscriber hopped between nodes ({hops} hops)"
    );
    assert_eq!(
        received, logged,
        "the hopping subscriber got every event exactly once, in id order"
    );
}

/// Reads up to `n` events from a stream (or what comes within a short wait).
async fn collect_some(stream: &mut SseStream, n: usize) -> Vec<i64> {
    let mut got = Vec::new();
    while got.len() < n {
        let Some(event) = stream.next_event_within(Duration::from_millis(500)).await else {
            break;
        };
        assert_ne!(
            event.event, "resync",
            "a hop never needs a resync: {event:?}"
        );
        got.push(event.id.unwrap().parse().unwrap());
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set SWITCHBOARD_TEST_POSTGRES=postgres://… and run with --include-ignored"]
async fn locks_and_idempotency_keys_hold_across_nodes() {
    let (_database, nodes) = nodes(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    use reqwest::Method;
    let (status, _) = call(
        a,
        Method::POST,
        "/api/files",
        "alice",
        Some(json!({"stable_id": "plan", "name": "plan.md", "content": "v1"})),
    )
    .await;
    assert_eq!(status, 201);

    let (status, _) = call(a, Method::POST, "/api/files/plan/lock", "alice", None).await;
    assert_eq!(status, 200, "alice locks on node A");
    let (status, body) = call(b, Method::POST, "/api/files/plan/lock", "bob", None).await;
    assert_eq!(status, 409, "the lock taken on A is held on B");
    assert_eq!(body["error"]["code"], "lock_held");
    assert_eq!(body["error"]["details"]["locked_by"], "agent-alice");
    let save = Some(json!({"content": "bob was here"}));
    let (status, _) = call(b, Method::PUT, "/api/files/plan", "bob", save).await;
    assert_eq!(status, 409, "B refuses a save without the lock");

    let (status, _) = call(a, Method::DELETE, "/api/files/plan/lock", "alice", None).await;
    assert_eq!(status, 200);
    let (status, _) = call(b, Method::POST, "/api/files/plan/lock", "bob", None).await;
    assert_eq!(status, 200, "once released on A, B can take it");

    // The same Idempotency-Key sent to both nodes publishes once.
    let mut answers = Vec::new();
    for node in [a, b, a] {
        let response = node
            .post("/api/channels/idem/events")
            .header("X-Agent-ID", "retrier")
            .header("Idempotency-Key", "k-1")
            .json(&json!({"type": "once", "data": {"n": 1}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let replayed = response.headers().get("Idempotent-Replayed").is_some();
        let body: Value = response.json().await.unwrap();
        answers.push((body["id"].as_i64().unwrap(), replayed));
    }
    assert_eq!(answers[0].0, answers[1].0);
    assert_eq!(answers[0].0, answers[2].0);
    assert_eq!(
        answers.iter().map(|a| a.1).collect::<Vec<_>>(),
        [false, true, true]
    );
    assert_eq!(log_on(&b.client, &b.address, "idem").await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set SWITCHBOARD_TEST_POSTGRES=postgres://… and run with --include-ignored"]
async fn kill_9_one_node_mid_load_loses_nothing_acknowledged_and_the_others_deliver_it() {
    let database = PgDatabase::create().await;
    let (mut doomed, doomed_port) =
        start_serve_with(&database.url, &[("SWITCHBOARD_READ_POOL", "3")]).await;
    let (_survivor, survivor_port) =
        start_serve_with(&database.url, &[("SWITCHBOARD_READ_POOL", "3")]).await;
    let survivor = format!("http://127.0.0.1:{survivor_port}");
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{survivor}/api/stream?channels=crash&replay=0"))
        .send()
        .await
        .unwrap();
    let mut watcher = SseStream::new(response);

    let stop_at = Instant::now() + Duration::from_millis(1500);
    let mut writers = Vec::new();
    for writer in 0..8 {
        let port = if writer % 2 == 0 {
            doomed_port
        } else {
            survivor_port
        };
        writers.push(tokio::spawn(write_until_refused(
            format!("http://127.0.0.1:{port}"),
            "crash",
            writer,
            stop_at + Duration::from_secs(1),
        )));
    }
    tokio::time::sleep_until(stop_at.into()).await;
    doomed.start_kill().unwrap(); // SIGKILL, mid-run
    doomed.wait().await.unwrap();

    let mut acked = BTreeMap::new();
    let mut acked_by_doomed = 0;
    for (w, writer) in writers.into_iter().enumerate() {
        for (id, data) in writer.await.unwrap() {
            acked_by_doomed += usize::from(w % 2 == 0);
            assert!(
                acked.insert(id, data).is_none(),
                "an id was acknowledged twice"
            );
        }
    }
    assert!(
        acked_by_doomed > 50,
        "the killed node was busy: {acked_by_doomed}"
    );

    let stored: BTreeMap<i64, Value> = log_on(&client, &survivor, "crash")
        .await
        .into_iter()
        .map(|e| (e["id"].as_i64().unwrap(), e["payload"].clone()))
        .collect();
    for (id, data) in &acked {
        assert_eq!(
            stored.get(id),
            Some(data),
            "acknowledged event {id} is in the log"
        );
    }
    // The survivor delivered everything that committed, its own and the
    // killed node's, once and in order.
    let logged: Vec<i64> = stored.keys().copied().collect();
    let seen = collect(&mut watcher, "crash", logged.len()).await;
    assert_eq!(
        seen, logged,
        "the survivor's watcher got every committed event once"
    );

    // A new node joins and carries on above the head.
    let (_joined, joined_port) =
        start_serve_with(&database.url, &[("SWITCHBOARD_READ_POOL", "3")]).await;
    let response = client
        .post(format!(
            "http://127.0.0.1:{joined_port}/api/channels/crash/events"
        ))
        .json(&json!({"type": "after", "data": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let event: Value = response.json().await.unwrap();
    assert!(event["id"].as_i64().unwrap() > *logged.last().unwrap());
    let next = collect(&mut watcher, "crash", 1).await;
    assert_eq!(next, vec![event["id"].as_i64().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set SWITCHBOARD_TEST_POSTGRES=postgres://… and run with --include-ignored"]
async fn nodes_whose_database_connections_are_cut_reconnect_and_catch_up() {
    let (database, nodes) = nodes(2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut watcher = b.stream("channels=cut&replay=0", &[]).await;
    let first = a.publish("cut", "before", json!({}), None).await;
    assert_eq!(
        collect(&mut watcher, "cut", 1).await,
        vec![first["id"].as_i64().unwrap()]
    );

    // Every connection of every node to this database is terminated: the
    // writers', the pools', the listeners'.
    let admin = postgres_admin_url();
    let name = database.url.rsplit('/').next().unwrap().to_owned();
    switchboard::store::scratch::execute(
        &admin,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ),
    )
    .await
    .expect("connections terminated");

    // Writes fail at most briefly (503, which a client retries), then succeed.
    let mut published = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    while published.len() < 20 {
        let response = a
            .post("/api/channels/cut/events")
            .header("X-Agent-ID", "writer")
            .json(&json!({"type": "after", "data": {"n": published.len()}}))
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            201 => {
                let event: Value = response.json().await.unwrap();
                published.push(event["id"].as_i64().unwrap());
            }
            503 => {
                assert!(Instant::now() < deadline, "node A never recovered");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    // The stream on B, open all along, gets them once, in order.
    assert_eq!(
        collect(&mut watcher, "cut", published.len()).await,
        published
    );
    watcher.assert_quiet(Duration::from_millis(300)).await;
    // And B's own writes work again too.
    let from_b = b.publish("cut", "from-b", json!({}), None).await;
    assert!(from_b["id"].as_i64().unwrap() > *published.last().unwrap());
}

/// The next presence event (its type and session), skipping keep-alives.
async fn next_presence(stream: &mut SseStream, within: Duration) -> Option<(String, String, i64)> {
    let event = stream.next_event_within(within).await?;
    let value = event.json().unwrap();
    Some((
        value["type"].as_str().unwrap().to_owned(),
        value["payload"]["session_id"].as_str().unwrap().to_owned(),
        value["payload"]["connections"].as_i64().unwrap(),
    ))
}

async fn sessions_on(node: &TestApp) -> Value {
    node.get("/api/sessions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set SWITCHBOARD_TEST_POSTGRES=postgres://… and run with --include-ignored"]
async fn a_session_with_streams_on_several_nodes_joins_once_and_leaves_once() {
    let database = Arc::new(PgDatabase::create().await);
    let configure = |a: &mut switchboard::config::ServeArgs| {
        a.keepalive = Duration::from_millis(100);
        a.node_timeout = Duration::from_secs(1);
    };
    let a = spawn_node_with(&database, configure).await;
    let b = spawn_node_with(&database, configure).await;
    let mut watcher = a
        .stream("channels=presence&replay=0", &[("X-Session-ID", "watcher")])
        .await;
    const QUIET: Duration = Duration::from_millis(600);

    let on_a = a
        .stream(
            "channels=global",
            &[("X-Session-ID", "s1"), ("X-Agent-ID", "ag")],
        )
        .await;
    assert_eq!(
        next_presence(&mut watcher, DEADLINE).await,
        Some(("session_joined".into(), "s1".into(), 1))
    );
    let on_b = b
        .stream(
            "channels=files",
            &[("X-Session-ID", "s1"), ("X-Agent-ID", "ag")],
        )
        .await;
    watcher.assert_quiet(QUIET).await; // already present, on node A

    // Both nodes list s1 once, with both streams, both channels, both nodes.
    for node in [&a, &b] {
        let listed = sessions_on(node).await;
        assert_eq!(listed["scope"], "cluster");
        let s1: Vec<&Value> = listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["session_id"] == "s1")
            .collect();
        assert_eq!(s1.len(), 1, "{listed}");
        assert_eq!(s1[0]["connections"], 2, "{listed}");
        assert_eq!(s1[0]["nodes"].as_array().unwrap().len(), 2, "{listed}");
        let channels: HashSet<&str> = s1[0]["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(channels, HashSet::from(["global", "files"]));
    }

    drop(on_a);
    watcher.assert_quiet(QUIET).await; // still present on node B
    drop(on_b);
    assert_eq!(
        next_presence(&mut watcher, DEADLINE).await,
        Some(("session_left".into(), "s1".into(), 0))
    );

    // A node killed with SIGKILL: its sessions leave once the others notice
    // that its heartbeat stopped.
    let (mut doomed, port) = start_serve_with(
        &database.url,
        &[
            ("SWITCHBOARD_NODE_TIMEOUT", "1s"),
            ("SWITCHBOARD_READ_POOL", "3"),
        ],
    )
    .await;
    let response = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{port}/api/stream?channels=global"
        ))
        .header("X-Session-ID", "s2")
        .header("X-Agent-ID", "ag")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _open_on_doomed = SseStream::new(response);
    assert_eq!(
        next_presence(&mut watcher, DEADLINE).await,
        Some(("session_joined".into(), "s2".into(), 1))
    );
    doomed.start_kill().unwrap();
    doomed.wait().await.unwrap();
    let killed_at = Instant::now();
    assert_eq!(
        next_presence(&mut watcher, DEADLINE).await,
        Some(("session_left".into(), "s2".into(), 0))
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(4),
        "noticed within the node timeout and a heartbeat: {:?}",
        killed_at.elapsed()
    );
    let listed = sessions_on(&b).await;
    assert!(
        listed["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["session_id"] != "s2"),
        "{listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: set SWITCHBOARD_TEST_POSTGRES=postgres://… and run with --include-ignored"]
async fn event_times_grow_with_ids_even_when_another_nodes_clock_is_ahead() {
    let (database, nodes) = nodes(1).await;
    // An event committed by a node whose clock runs far ahead.
    let ahead = "2099-01-01T00:00:00.000000Z";
    switchboard::store::scratch::execute(
        &database.url,
        &format!(
            "INSERT INTO events (channel, event_type, agent_id, created_at, payload) \
             VALUES ('clock', 'ahead', 'other-node', '{ahead}', '{{}}')"
        ),
    )
    .await
    .expect("the row is inserted");
    let event = nodes[0].publish("clock", "after", json!({}), None).await;
    let time = event["timestamp"].as_str().unwrap();
    assert!(
        time >= ahead,
        "a later id never gets an earlier time: {time} < {ahead}"
    );
}
