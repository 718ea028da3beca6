//! The group-commit writer, driven directly: a request that fails inside the
//! database (not only a rejected one) is rolled back alone, and the requests
//! around it in the same batch still commit — on SQLite and on PostgreSQL,
//! where a failed statement poisons the transaction until its savepoint is
//! rolled back. The writer numbers events itself and inserts them lazily,
//! so a rolled-back request must also give its ids back: the log stays
//! gap-free and every answer names the id its event has in the log.

use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use switchboard::domain::{AgentId, ChannelName, DomainError, Event, EventId, EventType, NewEvent};
use switchboard::store::{self, DatabaseUrl, StoreError, Writer, WriterConfig};

use crate::helpers::{PgDatabase, BACKEND};

fn event(n: u32) -> NewEvent {
    NewEvent {
        channel: ChannelName::parse("channel", "batch").unwrap(),
        event_type: EventType::parse("type", "n").unwrap(),
        resource_type: None,
        resource_id: None,
        agent_id: AgentId::parse("agent_id", "tester").unwrap(),
        session_id: None,
        payload: serde_json::value::to_raw_value(&serde_json::json!({ "n": n })).unwrap(),
    }
}

async fn a_request_failing_in_the_database_is_rolled_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = match BACKEND.try_with(|b| *b) {
        Ok(_) => Some(PgDatabase::create().await),
        Err(_) => None,
    };
    let url = match &postgres {
        Some(pg) => DatabaseUrl::parse(&pg.url).unwrap(),
        None => DatabaseUrl::parse(dir.path().join("w.db").to_str().unwrap()).unwrap(),
    };
    store::run_migrations(&url).unwrap();
    let (writer, thread) = Writer::start(
        &url,
        WriterConfig::default(),
        Arc::new(|_, events: &[&Event]| vec![0; events.len()]),
    )
    .unwrap();

    // The first job holds the writer, so the next ones queue into one batch.
    let first = writer.write(|tx| {
        std::thread::sleep(Duration::from_millis(200));
        Ok(tx.append(&event(0))?.id)
    });
    let mut jobs = Vec::new();
    for n in 1..=6u32 {
        let writer = writer.clone();
        jobs.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer
                .write(move |tx| {
                    let id = tx.append(&event(n))?.id;
                    if n % 3 == 0 {
                        // After a write: a statement fails inside the
                        // database, and the write must go with it.
                        tx.conn()?.batch_execute("SELECT * FROM no_such_table")?;
                    }
                    if n == 4 {
                        // Rejected after appending, without a statement of
                        // its own: the event was never inserted.
                        return Err(StoreError::Rejected(DomainError::validation("n", "four")));
                    }
                    Ok(id)
                })
                .await
        }));
    }
    let first = first.await.unwrap();
    assert_eq!(
        first.events[0].id, first.value,
        "the job's result comes back typed"
    );
    let mut committed = Vec::new();
    for (n, job) in (1..=6u32).zip(jobs) {
        let result = job.await.unwrap();
        if n % 3 == 0 || n == 4 {
            assert!(result.is_err(), "request {n} failed");
        } else {
            let done = result.unwrap_or_else(|e| panic!("request {n} commits: {e}"));
            assert_eq!(done.events[0].id, done.value);
            committed.push((done.events[0].payload.get().to_owned(), done.value));
        }
    }
    committed.push((first.events[0].payload.get().to_owned(), first.value));
    assert_eq!(committed.len(), 4);

    let pool = store::open_pool(&url, 1).unwrap();
    let store = store::Store::new(pool);
    let logged = store
        .read(|conn| store::events::read_after(conn, EventId::ZERO, 100))
        .await
        .unwrap();
    // The tasks queue in any order: compare the set of what was logged.
    let mut payloads: Vec<String> = logged.iter().map(|e| e.payload.get().to_owned()).collect();
    payloads.sort();
    assert_eq!(
        payloads,
        ["{\"n\":0}", "{\"n\":1}", "{\"n\":2}", "{\"n\":5}"],
        "the failed requests left nothing behind"
    );
    let ids: Vec<i64> = logged.iter().map(|e| e.id.get()).collect();
    assert_eq!(ids, [1, 2, 3, 4], "ids without a gap");
    for (payload, id) in committed {
        let stored = logged.iter().find(|e| e.payload.get() == payload).unwrap();
        assert_eq!(stored.id, id, "{payload} was answered with its logged id");
    }
    drop(writer);
    thread.join().unwrap();
}

crate::on_both_backends!(a_request_failing_in_the_database_is_rolled_back_alone);

/// A thread like an HTTP worker's: a current-thread runtime and a local
/// set, with its relay installed; runs `body` there to the end.
fn on_worker<F, Fut>(body: F) -> std::thread::JoinHandle<()>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&runtime, async move {
            switchboard::wake::install();
            body().await
        });
    })
}

/// On SQLite with the writer idle, the worker that asks commits on its own
/// thread (the writer's turn, `inline`); with requests from two workers at
/// once, the turn passes between them and the writer's thread, and every
/// request is committed once, answered with its logged id, and published
/// in id order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_take_the_writers_turn_and_every_request_commits_once() {
    let dir = tempfile::tempdir().unwrap();
    let url = DatabaseUrl::parse(dir.path().join("t.db").to_str().unwrap()).unwrap();
    store::run_migrations(&url).unwrap();
    let published = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (writer, thread) = Writer::start(
        &url,
        WriterConfig {
            inline: true,
            ..WriterConfig::default()
        },
        Arc::new({
            let published = published.clone();
            move |_, events: &[&Event]| {
                let here = std::thread::current().id();
                let mut published = published.lock().unwrap();
                published.extend(events.iter().map(|event| (event.id, here)));
                vec![0; events.len()]
            }
        }),
    )
    .unwrap();

    // One request, the writer idle: committed on the asking thread.
    let (tx, rx) = std::sync::mpsc::channel();
    let alone = writer.clone();
    on_worker(move || async move {
        let done = alone
            .write(|tx| Ok(tx.append(&event(0))?.id))
            .await
            .unwrap();
        tx.send((done.value, std::thread::current().id())).unwrap();
    })
    .join()
    .unwrap();
    let (first, worker) = rx.recv().unwrap();
    assert_eq!(first.get(), 1);
    assert_eq!(
        published.lock().unwrap().as_slice(),
        [(first, worker)],
        "published once, on the worker that asked"
    );

    // Two workers, 300 concurrent requests each.
    let answered = Arc::new(std::sync::Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..2)
        .map(|w| {
            let (writer, answered) = (writer.clone(), answered.clone());
            on_worker(move || async move {
                let mut jobs = Vec::new();
                for n in 0..300u32 {
                    let writer = writer.clone();
                    jobs.push(tokio::task::spawn_local(async move {
                        let n = 1 + w * 1000 + n;
                        writer.write(move |tx| Ok(tx.append(&event(n))?.id)).await
                    }));
                }
                for job in jobs {
                    let done = job.await.unwrap().expect("every request commits");
                    assert_eq!(done.events[0].id, done.value);
                    answered.lock().unwrap().push(done.value.get());
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let mut answered = answered.lock().unwrap().clone();
    answered.sort();
    assert_eq!(
        answered,
        (2..=601).collect::<Vec<i64>>(),
        "each id answered once"
    );
    let published = published.lock().unwrap().clone();
    let ids: Vec<i64> = published.iter().map(|(id, _)| id.get()).collect();
    assert_eq!(
        ids,
        (1..=601).collect::<Vec<i64>>(),
        "published once each, in id order"
    );

    // A hold keeps batches back until it ends.
    let held = writer.clone();
    let (started, waiting) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        held.hold(|| {
            started.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            std::time::Instant::now()
        })
    });
    waiting.recv().unwrap();
    writer
        .write(|tx| Ok(tx.append(&event(9))?.id))
        .await
        .unwrap();
    let committed_at = std::time::Instant::now();
    let released_at = holder.join().unwrap();
    assert!(committed_at >= released_at, "the write waited for the hold");

    drop(writer);
    thread.join().unwrap();
}
