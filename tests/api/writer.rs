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
