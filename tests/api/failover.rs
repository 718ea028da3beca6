//! PostgreSQL fails over, switchboard carries on (issue 30). Each test runs
//! its own primary and hot standby (`pg_cluster`), two switchboard nodes on
//! the multi-host URL `…127.0.0.1:P1,127.0.0.1:P2/sb?target_session_attrs=
//! read-write`, and kills the primary with SIGKILL:
//!
//! - synchronous replication, promotion 1 s later, under load: nothing
//!   answered is lost, writes are back within 5 s, readers exact;
//! - asynchronous replication with the standby held behind: answered writes
//!   may be lost (counted and printed), but no id is ever answered for two
//!   different writes, and no reader skips an event silently;
//! - no primary for 4 s: every request to every node is answered within 5 s.
//!
//! The figures are printed (`--nocapture` shows them). Every test is
//! `#[ignore]`d and runs with `--include-ignored`, where it fails unless
//! Debian's PostgreSQL 15 binaries are installed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchboard::store::DatabaseUrl;

use crate::helpers::{events_at, spawn_app_with, SseStream, TestApp, TEST_READ_POOL};
use crate::pg_cluster::{signal, PgCluster, Replication};

const CHANNEL: &str = "failover";
const WRITERS: usize = 4;

/// A client's patience with one request: longer than any answer may take.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// A switchboard node on `url` (the cluster's multi-host URL).
async fn node(url: &str) -> TestApp {
    let database = DatabaseUrl::parse(url).expect("a PostgreSQL URL");
    let mut app = spawn_app_with(|args| {
        args.db.database = database;
        args.read_pool = TEST_READ_POOL;
    })
    .await;
    app.database = url.to_owned();
    app
}

/// One write answered 201.
#[derive(Debug, Clone)]
struct Acked {
    id: i64,
    payload: Value,
    at: Instant,
}

/// What one writer sent and what it was answered.
#[derive(Debug, Default)]
struct WriterLog {
    writer: usize,
    acked: Vec<Acked>,
    /// When each 503 came.
    refused: Vec<Instant>,
    /// Anything else: another status, a transport error, a timeout.
    failed: Vec<String>,
}

/// Writes `{"writer": w, "seq": n}` (n = 0, 1, …, one per attempt, so no two
/// writes carry the same payload) to `base` until `stop`, as fast as it is
/// answered; after a 503 or an error it waits 50 ms.
async fn writer(base: String, writer: usize, stop: Arc<AtomicBool>) -> WriterLog {
    let client = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let mut log = WriterLog {
        writer,
        ..Default::default()
    };
    let mut seq = 0;
    while !stop.load(Ordering::Relaxed) {
        let payload = json!({ "writer": writer, "seq": seq });
        seq += 1;
        let sent = client
            .post(format!("{base}/api/channels/{CHANNEL}/events"))
            .header("X-Agent-ID", format!("writer-{writer}"))
            .json(&json!({ "type": "write", "data": payload }))
            .send()
            .await;
        let outcome = match sent {
            Ok(response) if response.status() == 201 => match response.json::<Value>().await {
                Ok(event) => {
                    log.acked.push(Acked {
                        id: event["id"].as_i64().expect("a stored event has an id"),
                        payload,
                        at: Instant::now(),
                    });
                    continue;
                }
                Err(err) => format!("201 with an unreadable body: {err}"),
            },
            Ok(response) if response.status() == 503 => {
                log.refused.push(Instant::now());
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            Ok(response) => {
                let status = response.status();
                format!("{status}: {}", response.text().await.unwrap_or_default())
            }
            Err(err) if err.is_timeout() => format!("no answer within {CLIENT_TIMEOUT:?}"),
            Err(err) => format!("transport error: {err}"),
        };
        log.failed.push(outcome);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    log
}

/// What one SSE reader received.
#[derive(Debug, Default)]
struct ReaderLog {
    node: &'static str,
    /// (id, payload) of each event on `CHANNEL`, in arrival order.
    events: Vec<(i64, Value)>,
    /// Each `resync`: how many events had arrived before it, and its data.
    resyncs: Vec<(usize, Value)>,
    /// Streams opened (1 + reconnections).
    connections: usize,
    /// Attempts to reopen that were refused or failed.
    failed_opens: usize,
}

/// Tells the readers when to stop: once they hold `target` (the log's head
/// at the end) or at `deadline`.
#[derive(Default)]
struct Finish(Mutex<Option<(i64, Instant)>>);

impl Finish {
    fn done(&self, last: Option<i64>) -> bool {
        match *self.0.lock().unwrap() {
            None => false,
            Some((target, deadline)) => {
                last.is_some_and(|last| last >= target) || Instant::now() >= deadline
            }
        }
    }

    fn set(&self, target: i64, within: Duration) {
        *self.0.lock().unwrap() = Some((target, Instant::now() + within));
    }
}

/// One SSE reader of `CHANNEL` on `base`, from the start of the log; when
/// its stream ends it reopens with `Last-Event-ID` (every 200 ms until the
/// node answers 200), as an `EventSource` does.
async fn reader(node: &'static str, base: String, finish: Arc<Finish>) -> ReaderLog {
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut log = ReaderLog {
        node,
        ..Default::default()
    };
    let mut last: Option<i64> = None;
    'reconnect: while !finish.done(last) {
        let mut request = client.get(format!("{base}/api/stream?channels={CHANNEL}&replay=0"));
        request = match last {
            Some(last) => request.header("Last-Event-ID", last.to_string()),
            // From the start of the log, which holds nothing on `CHANNEL`
            // yet: no write can slip in before the stream is live.
            None => request.query(&[("last_event_id", "0")]),
        };
        let response = match tokio::time::timeout(Duration::from_secs(5), request.send()).await {
            Ok(Ok(response)) if response.status() == 200 => response,
            _ => {
                log.failed_opens += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        log.connections += 1;
        let mut stream = SseStream::new(response);
        loop {
            if finish.done(last) {
                break 'reconnect;
            }
            let Some(event) = stream.next_event_within(Duration::from_millis(200)).await else {
                if stream.ended {
                    continue 'reconnect;
                }
                continue;
            };
            if event.event == "resync" {
                log.resyncs
                    .push((log.events.len(), event.json().unwrap_or(Value::Null)));
                last = event.id_number().or(last);
                continue;
            }
            let value = event.json().expect("an event's data is JSON");
            let id = event.id_number().expect("an event has a numeric id");
            last = Some(id);
            if value["channel"] == CHANNEL {
                log.events.push((id, value["payload"].clone()));
            }
        }
    }
    log
}

/// Two nodes on the cluster, a reader on each, and `WRITERS` writers spread
/// over both.
struct Load {
    nodes: Vec<TestApp>,
    stop: Arc<AtomicBool>,
    finish: Arc<Finish>,
    writers: Vec<tokio::task::JoinHandle<WriterLog>>,
    readers: Vec<tokio::task::JoinHandle<ReaderLog>>,
}

impl Load {
    async fn start(cluster: &PgCluster) -> Load {
        let url = cluster.multi_host_url();
        let nodes = vec![node(&url).await, node(&url).await];
        let finish = Arc::new(Finish::default());
        let readers: Vec<_> = nodes
            .iter()
            .zip(["A", "B"])
            .map(|(node, name)| tokio::spawn(reader(name, node.address.clone(), finish.clone())))
            .collect();
        // (They read from id 0, so they miss nothing that comes first.)
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stop = Arc::new(AtomicBool::new(false));
        let writers = (0..WRITERS)
            .map(|w| {
                let base = nodes[w % nodes.len()].address.clone();
                tokio::spawn(writer(base, w, stop.clone()))
            })
            .collect();
        Load {
            nodes,
            stop,
            finish,
            writers,
            readers,
        }
    }

    /// Stops the writers, reads the final log (through node A, from the new
    /// primary), lets the readers catch up with its head (10 s at most) and
    /// returns everything.
    async fn finish(self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut writers = Vec::new();
        for writer in self.writers {
            writers.push(writer.await.expect("a writer finishes"));
        }
        let node = &self.nodes[0];
        let log: BTreeMap<i64, Value> =
            events_at(&node.client, &node.address, &format!("channels={CHANNEL}"))
                .await
                .into_iter()
                .map(|e| (e["id"].as_i64().unwrap(), e["payload"].clone()))
                .collect();
        let head = log.keys().next_back().copied().unwrap_or(0);
        self.finish.set(head, Duration::from_secs(10));
        let mut readers = Vec::new();
        for reader in self.readers {
            readers.push(reader.await.expect("a reader finishes"));
        }
        Outcome {
            writers,
            readers,
            log,
            _nodes: self.nodes,
        }
    }
}

struct Outcome {
    writers: Vec<WriterLog>,
    readers: Vec<ReaderLog>,
    /// The new primary's log on `CHANNEL`: id → payload.
    log: BTreeMap<i64, Value>,
    _nodes: Vec<TestApp>,
}

impl Outcome {
    fn acked(&self) -> impl Iterator<Item = &Acked> {
        self.writers.iter().flat_map(|w| w.acked.iter())
    }

    /// Answered writes that the log does not hold: their id is absent, or
    /// holds another write.
    fn lost(&self) -> Vec<&Acked> {
        self.acked()
            .filter(|a| self.log.get(&a.id) != Some(&a.payload))
            .collect()
    }

    /// Every id that was given to two different payloads, anywhere: answers
    /// to writers, events on the readers' streams, the final log (one line
    /// per id, its first conflict).
    fn ids_with_two_payloads(&self) -> Vec<String> {
        let mut first: HashMap<i64, (&Value, String)> = HashMap::new();
        let mut conflicting = std::collections::HashSet::new();
        let mut conflicts = Vec::new();
        let mut sources: Vec<(i64, &Value, String)> = Vec::new();
        for w in &self.writers {
            for a in &w.acked {
                sources.push((a.id, &a.payload, format!("answered to writer {}", w.writer)));
            }
        }
        for r in &self.readers {
            for (id, payload) in &r.events {
                sources.push((*id, payload, format!("streamed by node {}", r.node)));
            }
        }
        for (id, payload) in &self.log {
            sources.push((*id, payload, "in the new primary's log".into()));
        }
        for (id, payload, source) in sources {
            match first.get(&id) {
                None => {
                    first.insert(id, (payload, source));
                }
                Some((earlier, earlier_source))
                    if *earlier != payload && conflicting.insert(id) =>
                {
                    conflicts.push(format!(
                        "id {id}: {earlier} ({earlier_source}) and {payload} ({source})"
                    ));
                }
                Some(_) => {}
            }
        }
        conflicts
    }

    /// Writers whose answered ids did not strictly increase.
    fn writers_going_backwards(&self) -> Vec<String> {
        let mut out = Vec::new();
        for w in &self.writers {
            for pair in w.acked.windows(2) {
                if pair[1].id <= pair[0].id {
                    out.push(format!(
                        "writer {}: id {} ({}) answered after id {} ({})",
                        w.writer, pair[1].id, pair[1].payload, pair[0].id, pair[0].payload
                    ));
                }
            }
        }
        out
    }

    fn print(&self, name: &str) {
        let acked = self.acked().count();
        let refused: usize = self.writers.iter().map(|w| w.refused.len()).sum();
        let failed: usize = self.writers.iter().map(|w| w.failed.len()).sum();
        eprintln!(
            "{name}: {acked} writes answered 201, {refused} answered 503, {failed} other \
             answers or errors; {} events in the final log; {} answered writes lost",
            self.log.len(),
            self.lost().len()
        );
        for r in &self.readers {
            eprintln!(
                "{name}: reader on node {}: {} events, {} resync {:?}, {} connection(s), {} failed reopen(s)",
                r.node,
                r.events.len(),
                r.resyncs.len(),
                r.resyncs.iter().map(|(_, d)| d.to_string()).collect::<Vec<_>>(),
                r.connections,
                r.failed_opens
            );
        }
        for w in &self.writers {
            if let Some(first) = w.failed.first() {
                eprintln!(
                    "{name}: writer {}: {} failures, the first: {first}",
                    w.writer,
                    w.failed.len()
                );
            }
        }
    }
}

/// The first 201 each writer got after `since`, as a delay after `since`.
fn back_after(outcome: &Outcome, since: Instant) -> Vec<Option<Duration>> {
    outcome
        .writers
        .iter()
        .map(|w| w.acked.iter().find(|a| a.at > since).map(|a| a.at - since))
        .collect()
}

/// Ids that arrive on a reader not above the one before them.
fn reader_going_backwards(reader: &ReaderLog) -> Vec<String> {
    reader
        .events
        .windows(2)
        .filter(|pair| pair[1].0 <= pair[0].0)
        .map(|pair| format!("id {} after id {}", pair[1].0, pair[0].0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's PostgreSQL 15 binaries; run with --include-ignored"]
async fn synchronous_standby_promoted_after_kill_9_loses_no_answered_write_and_readers_stay_exact()
{
    let cluster = PgCluster::start(Replication::Synchronous).await;
    let load = Load::start(&cluster).await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed_at = Instant::now();
    cluster.kill_primary();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let promoting_at = Instant::now();
    cluster.promote_standby().await;
    let promoted_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let outcome = load.finish().await;

    let name = "sync failover";
    outcome.print(name);
    let back = back_after(&outcome, promoted_at);
    let before_kill = outcome.acked().filter(|a| a.at < killed_at).count();
    let after_promotion = outcome.acked().filter(|a| a.at > promoted_at).count();
    let refused_in_switch: usize = outcome
        .writers
        .iter()
        .flat_map(|w| &w.refused)
        .filter(|at| **at >= killed_at)
        .count();
    eprintln!(
        "{name}: {before_kill} answered before the kill, {after_promotion} after the promotion \
         (pg_ctl promote took {:?}; timeline now {}); 503s during the switch: {refused_in_switch}; \
         each writer's first 201 after the promotion: {back:?}",
        promoted_at - promoting_at,
        cluster.standby_timeline()
    );

    assert!(
        before_kill > 100 && after_promotion > 50,
        "the nodes were under load before and after ({before_kill}, {after_promotion})"
    );
    for w in &outcome.writers {
        assert!(
            w.failed.is_empty(),
            "writer {} got answers other than 201 and 503: {:?}",
            w.writer,
            &w.failed[..w.failed.len().min(5)]
        );
    }
    let lost = outcome.lost();
    assert!(
        lost.is_empty(),
        "{} answered writes are not in the new primary's log (synchronous replication), e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let conflicts = outcome.ids_with_two_payloads();
    assert!(
        conflicts.is_empty(),
        "{} ids carry two payloads, e.g. {:?}",
        conflicts.len(),
        &conflicts[..conflicts.len().min(5)]
    );
    let backwards = outcome.writers_going_backwards();
    assert!(
        backwards.is_empty(),
        "ids go backwards: {:?}",
        &backwards[..backwards.len().min(5)]
    );
    for (w, delay) in back.iter().enumerate() {
        assert!(
            delay.is_some_and(|d| d <= Duration::from_secs(5)),
            "writer {w} got a 201 again within 5 s of the promotion: {delay:?}"
        );
    }
    let logged: Vec<i64> = outcome.log.keys().copied().collect();
    for r in &outcome.readers {
        let got: Vec<i64> = r.events.iter().map(|(id, _)| *id).collect();
        assert!(
            r.resyncs.is_empty(),
            "node {}: no resync with synchronous replication: {:?}",
            r.node,
            r.resyncs
        );
        assert_eq!(
            got.len(),
            logged.len(),
            "node {}: the reader got every logged event once ({} got, {} logged)",
            r.node,
            got.len(),
            logged.len()
        );
        assert_eq!(
            got, logged,
            "node {}: the reader got the log's ids in order",
            r.node
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's PostgreSQL 15 binaries; run with --include-ignored"]
async fn asynchronous_standby_held_behind_never_answers_one_id_for_two_writes_nor_skips_silently() {
    let cluster = PgCluster::start(Replication::Asynchronous).await;
    let load = Load::start(&cluster).await;

    tokio::time::sleep(Duration::from_secs(3)).await;
    // The standby falls behind: its WAL receiver stops reading…
    let receiver = cluster.wal_receiver_pid();
    signal(receiver, libc::SIGSTOP);
    let paused_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed_at = Instant::now();
    cluster.kill_primary();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // …and never gets what it had not read: it is told to stop (SIGTERM,
    // taken as it wakes up), so the WAL waiting in its socket is dropped,
    // as an async standby that had not received it would never have it.
    signal(receiver, libc::SIGTERM);
    signal(receiver, libc::SIGCONT);
    let promoting_at = Instant::now();
    cluster.promote_standby().await;
    let promoted_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let outcome = load.finish().await;

    let name = "async failover";
    outcome.print(name);
    let lost = outcome.lost();
    let answered_while_behind = outcome
        .acked()
        .filter(|a| a.at >= paused_at && a.at < killed_at)
        .count();
    let after_promotion = outcome.acked().filter(|a| a.at > promoted_at).count();
    let conflicts = outcome.ids_with_two_payloads();
    let backwards = outcome.writers_going_backwards();
    eprintln!(
        "{name}: {answered_while_behind} writes answered while the standby was held behind; \
         {} answered writes lost (answered 201, not in the new primary's log under their id; \
         {} of those ids hold another write there); \
         {after_promotion} answered after the promotion (pg_ctl promote took {:?}; timeline now {}); \
         each writer's first 201 after the promotion: {:?}; \
         {} ids answered or streamed with two payloads {:?}; {} times a writer's id went backwards",
        lost.len(),
        lost.iter().filter(|a| outcome.log.contains_key(&a.id)).count(),
        promoted_at - promoting_at,
        cluster.standby_timeline(),
        back_after(&outcome, promoted_at),
        conflicts.len(),
        &conflicts[..conflicts.len().min(3)],
        backwards.len(),
    );

    // Silent skips: an event of the final log that a reader neither got (that
    // id with that payload) nor was told to refetch (a resync covers the ids
    // up to its head_id).
    let mut skips = Vec::new();
    let mut not_told = Vec::new();
    for r in &outcome.readers {
        let got: HashMap<i64, &Value> = r.events.iter().map(|(id, p)| (*id, p)).collect();
        let in_log = |(id, payload): &(i64, Value)| outcome.log.get(id) == Some(payload);
        let covered = r
            .resyncs
            .iter()
            .filter_map(|(_, data)| data["head_id"].as_i64())
            .max()
            .unwrap_or(i64::MIN);
        let skipped: Vec<i64> = outcome
            .log
            .iter()
            .filter(|(id, payload)| got.get(*id) != Some(payload) && **id > covered)
            .map(|(id, _)| *id)
            .collect();
        // Events it streamed that the new primary does not have (under that
        // id): its cursor was inside the lost range, so it must be told (a
        // resync after them).
        let last_lost = r.events.iter().rposition(|e| !in_log(e));
        let told = match last_lost {
            None => true,
            Some(at) => r.resyncs.iter().any(|(before, _)| *before > at),
        };
        eprintln!(
            "{name}: reader on node {}: {} events of the final log never streamed nor covered \
             by a resync (e.g. {:?}); streamed {} events the new primary lost; told by a resync: {told}",
            r.node,
            skipped.len(),
            &skipped[..skipped.len().min(5)],
            r.events.iter().filter(|e| !in_log(e)).count(),
        );
        if !skipped.is_empty() {
            skips.push(format!(
                "node {}: {} events skipped silently, e.g. {:?}",
                r.node,
                skipped.len(),
                &skipped[..skipped.len().min(5)]
            ));
        }
        if !told {
            not_told.push(r.node);
        }
        for (_, data) in &r.resyncs {
            assert!(
                data["reason"].as_str().is_some_and(|s| !s.is_empty()),
                "node {}: a resync gives its reason: {data}",
                r.node
            );
        }
    }

    // The scenario did what it says: the standby was behind, so answered
    // writes were lost (PostgreSQL's promise with async replication).
    assert!(
        answered_while_behind > 50 && after_promotion > 50,
        "the nodes were under load while the standby was behind and after the promotion \
         ({answered_while_behind}, {after_promotion})"
    );
    assert!(
        !lost.is_empty(),
        "the standby was held behind, so some answered writes should be lost; none was: \
         the scenario did not happen (see the standby's log:\n{})",
        cluster.log_tail("standby")
    );
    for w in &outcome.writers {
        assert!(
            w.failed.is_empty(),
            "writer {} got answers other than 201 and 503: {:?}",
            w.writer,
            &w.failed[..w.failed.len().min(5)]
        );
    }
    // What issue 30 demands.
    assert!(
        conflicts.is_empty(),
        "{} ids were answered or streamed for two different writes, e.g. {:?}",
        conflicts.len(),
        &conflicts[..conflicts.len().min(5)]
    );
    assert!(
        backwards.is_empty(),
        "{} times a writer's id went backwards, e.g. {:?}",
        backwards.len(),
        &backwards[..backwards.len().min(5)]
    );
    for r in &outcome.readers {
        let backwards = reader_going_backwards(r);
        assert!(
            backwards.is_empty(),
            "node {}: the reader got ids not above what it had seen: {:?}",
            r.node,
            &backwards[..backwards.len().min(5)]
        );
    }
    assert!(skips.is_empty(), "silent skips: {skips:?}");
    assert!(
        not_told.is_empty(),
        "readers on {not_told:?} streamed events the new primary lost and got no resync"
    );
}

/// What a probe asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Probe {
    Read,
    Ready,
    Write,
}

/// One probe's answer.
#[derive(Debug)]
struct Probed {
    node: usize,
    probe: Probe,
    sent_at: Instant,
    answered_at: Instant,
    took: Duration,
    /// The status, or `None` when no answer came within the client's patience.
    status: Option<u16>,
    retry_after: Option<String>,
}

async fn probe(client: reqwest::Client, base: String, node: usize, probe: Probe) -> Probed {
    let request = match probe {
        Probe::Read => client.get(format!("{base}/api/events?limit=1")),
        Probe::Ready => client.get(format!("{base}/readyz")),
        Probe::Write => client
            .post(format!("{base}/api/channels/{CHANNEL}/events"))
            .header("X-Agent-ID", "prober")
            .json(&json!({ "type": "probe", "data": { "node": node } })),
    };
    let sent = Instant::now();
    let answer = request.send().await;
    let (status, retry_after) = match answer {
        Ok(response) => (
            Some(response.status().as_u16()),
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ),
        Err(_) => (None, None),
    };
    Probed {
        node,
        probe,
        sent_at: sent,
        answered_at: Instant::now(),
        took: sent.elapsed(),
        status,
        retry_after,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's PostgreSQL 15 binaries; run with --include-ignored"]
async fn with_no_primary_for_four_seconds_every_request_to_every_node_is_answered_within_5_s() {
    const ANSWER_WITHIN: Duration = Duration::from_secs(5);
    let cluster = PgCluster::start(Replication::Asynchronous).await;
    let url = cluster.multi_host_url();
    let nodes = [node(&url).await, node(&url).await];
    // The client waits longer than the deadline, to measure what it takes.
    let client = reqwest::Client::builder()
        .timeout(ANSWER_WITHIN + Duration::from_secs(3))
        .build()
        .unwrap();
    let all = [Probe::Read, Probe::Ready, Probe::Write];

    // Before: everything answers, and fast.
    for (n, node) in nodes.iter().enumerate() {
        for kind in all {
            let p = probe(client.clone(), node.address.clone(), n, kind).await;
            assert!(
                matches!(p.status, Some(200 | 201)),
                "before the kill: {p:?}"
            );
        }
    }

    let killed_at = Instant::now();
    cluster.kill_primary();
    let mut probes = Vec::new();
    let mut round = tokio::time::interval(Duration::from_millis(200));
    while killed_at.elapsed() < Duration::from_secs(4) {
        round.tick().await;
        for (n, node) in nodes.iter().enumerate() {
            for kind in all {
                probes.push(tokio::spawn(probe(
                    client.clone(),
                    node.address.clone(),
                    n,
                    kind,
                )));
            }
        }
    }
    let promoting_at = Instant::now();
    cluster.promote_standby().await;
    let promoted_at = Instant::now();
    let mut answers = Vec::new();
    for p in probes {
        answers.push(p.await.expect("a probe finishes"));
    }

    // Writes come back on both nodes.
    let mut back = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        let deadline = promoted_at + ANSWER_WITHIN;
        loop {
            let p = probe(client.clone(), node.address.clone(), n, Probe::Write).await;
            if p.status == Some(201) {
                back.push(p.answered_at - promoted_at);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {n}: writes answer 201 within {ANSWER_WITHIN:?} of the promotion: {p:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let name = "no primary";
    let mut summary: BTreeMap<(usize, Probe), Vec<&Probed>> = BTreeMap::new();
    for p in &answers {
        summary.entry((p.node, p.probe)).or_default().push(p);
    }
    for ((n, kind), ps) in &summary {
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        for p in ps {
            let key = p.status.map_or("no answer".to_owned(), |s| s.to_string());
            *statuses.entry(key).or_default() += 1;
        }
        let slowest = ps.iter().map(|p| p.took).max().unwrap_or_default();
        let while_none = ps.iter().filter(|p| p.answered_at < promoting_at).count();
        let refused = ps.iter().filter(|p| p.status == Some(503)).count();
        let with_retry_after = ps
            .iter()
            .filter(|p| p.status == Some(503) && p.retry_after.is_some())
            .count();
        eprintln!(
            "{name}: node {n} {kind:?}: {} requests, statuses {statuses:?}, slowest {slowest:?}, \
             {while_none} answered before the promotion, \
             {with_retry_after} of {refused} 503s with Retry-After {:?}",
            ps.len(),
            ps.iter().find_map(|p| p.retry_after.clone()),
        );
    }
    eprintln!(
        "{name}: pg_ctl promote took {:?}; writes answered 201 again {back:?} after it",
        promoted_at - promoting_at
    );

    let describe = |p: &Probed| {
        format!(
            "node {} {:?} sent {:.2?} after the kill: {} after {:.2?}",
            p.node,
            p.probe,
            p.sent_at - killed_at,
            p.status.map_or("no answer".into(), |s| s.to_string()),
            p.took
        )
    };
    let unanswered: Vec<String> = answers
        .iter()
        .filter(|p| p.status.is_none() || p.took > ANSWER_WITHIN)
        .map(describe)
        .collect();
    assert!(
        unanswered.is_empty(),
        "{} of {} requests got no answer within {ANSWER_WITHIN:?}, e.g. {:?}",
        unanswered.len(),
        answers.len(),
        &unanswered[..unanswered.len().min(5)]
    );
    for p in &answers {
        // Answered before the standby was asked to take over: there was no
        // primary at all.
        let without_primary = p.answered_at < promoting_at;
        match p.probe {
            Probe::Write if without_primary => {
                assert_eq!(
                    p.status,
                    Some(503),
                    "a write without a primary: {}",
                    describe(p)
                )
            }
            Probe::Write => assert!(matches!(p.status, Some(201 | 503)), "{}", describe(p)),
            Probe::Ready if without_primary => assert_eq!(
                p.status,
                Some(503),
                "/readyz says the node cannot write: {}",
                describe(p)
            ),
            Probe::Ready => assert!(matches!(p.status, Some(200 | 503)), "{}", describe(p)),
            Probe::Read => assert!(
                matches!(p.status, Some(200 | 503)),
                "a read is served or refused: {}",
                describe(p)
            ),
        }
    }
}
