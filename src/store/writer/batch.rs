//! The writer's thread: it takes what requests are waiting (up to
//! `max_batch`), runs each in its own savepoint inside one transaction,
//! commits, hands the events to `on_commit` in id order and only then
//! answers (promises 1-4 of the parent module). A batch that cannot commit
//! answers every request with the error and publishes nothing.

use std::panic::{catch_unwind, AssertUnwindSafe};

use diesel::connection::SimpleConnection;
use tokio::sync::mpsc;

use super::{BatchLog, Finished, OnCommit, Pending, Request, Tx};
use crate::domain::{Event, EventId, Timestamp};
use crate::store::db::{self, DbConn};
use crate::store::events;
use crate::store::idempotency::{self, IdempotencyClaim, StoredAnswer, KEY_LIFETIME};
use crate::store::{DatabaseUrl, StoreError};

/// How long the writer's PostgreSQL connection may sit idle before the next
/// batch checks it is still there.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

pub(super) fn run(
    url: DatabaseUrl,
    mut conn: DbConn,
    mut requests: mpsc::Receiver<Request>,
    max_batch: usize,
    on_commit: OnCommit,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut head = Head::default();
    let mut last_used = std::time::Instant::now();
    // Since when no batch could commit (a primary gone, a full disk).
    let mut down_since: Option<std::time::Instant> = None;
    crate::metrics::record_database_back(std::time::Duration::ZERO);
    while let Some(first) = requests.blocking_recv() {
        // A PostgreSQL connection idle for a while may have been cut (a
        // restart, a failover, an idle timeout): check it before the batch
        // rather than answer its requests 503.
        if conn.is_postgres() && last_used.elapsed() > IDLE_CHECK {
            if let Err(err) = conn.batch_execute("SELECT 1") {
                tracing::warn!(error = %err, "the writer's connection was lost; reconnecting");
                if let Ok(fresh) = writer_connection(&url) {
                    conn = fresh;
                    crate::metrics::record_reconnect();
                }
            }
        }
        batch.push(first);
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // Requests that gave up while they waited are not run: they were
        // answered 503, and must not be applied behind their client's back.
        batch.retain(|request| !request.job.abandoned());
        if batch.is_empty() {
            continue;
        }
        let committed = commit_batch(&mut conn, &mut batch, &on_commit, &mut head);
        last_used = std::time::Instant::now();
        if committed {
            if let Some(since) = down_since.take() {
                tracing::info!(down_for = ?since.elapsed(), "the database takes writes again");
                crate::metrics::record_database_back(since.elapsed());
            }
        } else {
            if down_since.is_none() {
                crate::metrics::record_database_down();
            }
            down_since.get_or_insert(last_used);
        }
        if !committed {
            // The disk was full, read-only, or the file was locked: the
            // requests got 503. Start the next batch on a fresh connection,
            // so no half-open transaction state outlives the fault.
            match writer_connection(&url) {
                Ok(fresh) => {
                    conn = fresh;
                    crate::metrics::record_reconnect();
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot reopen the database; keeping the old connection")
                }
            }
        }
    }
    tracing::debug!("writer stopped");
}

/// A job that ran: how many events it appended, or the stored answer it
/// found.
enum Done {
    Ran(usize),
    Replayed(StoredAnswer),
}

/// The writer's own connection. It never checkpoints the WAL itself: a
/// checkpoint inside a commit (SQLite's automatic one) stalls that commit on
/// an fsync for milliseconds. `store::checkpoint` does it from a pooled
/// connection instead, beside the writer.
pub(super) fn writer_connection(url: &DatabaseUrl) -> Result<DbConn, StoreError> {
    let mut conn = url.connect()?;
    if !conn.is_postgres() {
        conn.batch_execute("PRAGMA wal_autocheckpoint = 0;")?;
    }
    Ok(conn)
}

/// The log's head as the writer last committed it, on SQLite: there every
/// event passes this writer, so the head a batch ends with is the next
/// batch's, and reading `sqlite_sequence` again (a statement prepared anew
/// each time) is not needed. Forgotten whenever a batch fails; never kept on
/// PostgreSQL, where other nodes append too.
#[derive(Default)]
struct Head(Option<EventId>);

/// Runs and commits one batch; false when the commit failed.
fn commit_batch(
    conn: &mut DbConn,
    batch: &mut Vec<Request>,
    on_commit: &OnCommit,
    head: &mut Head,
) -> bool {
    let started = std::time::Instant::now();
    let mut results: Vec<Result<Done, StoreError>> = Vec::with_capacity(batch.len());
    let mut before = None;
    let mut announced = false;
    let known = head.0.take();
    let mut read_head = EventId::ZERO;
    let committed = db::write_transaction::<_, StoreError>(conn, |conn| {
        let (now, head) = batch_start(conn, known)?;
        read_head = head;
        before = conn.is_postgres().then_some(head);
        let log = run_jobs(conn, batch, now, head, &mut results)?;
        if let (Some(_), Some(last)) = (before, log.events.last()) {
            on_commit.committing(last.id);
            announced = true;
        }
        Ok((log.events, log.after_commit))
    });
    let events = match committed {
        Ok((events, after_commit)) => {
            for f in after_commit {
                // As a job's panic is, one here is the job's, not the writer's.
                if catch_unwind(AssertUnwindSafe(f)).is_err() {
                    tracing::error!("work left for after a commit panicked");
                }
            }
            events
        }
        Err(err) => {
            if announced {
                on_commit.commit_failed();
            }
            tracing::error!(error = %err, requests = batch.len(), "group commit failed");
            for request in batch.drain(..) {
                request.job.finish(Err(StoreError::Unavailable(format!(
                    "commit failed: {err}"
                ))));
            }
            return false;
        }
    };
    if !conn.is_postgres() {
        head.0 = Some(events.last().map_or(read_head, |event| event.id));
    }
    let requests = batch.len();
    // The streams the events reach and the requests answered are woken
    // together: one hand-over per HTTP worker.
    crate::wake::gathered(|| {
        let delivered = publish(on_commit, before, &events);
        answer(batch, results, events, delivered);
    });
    crate::metrics::record_commit(requests, started.elapsed());
    tracing::trace!(
        requests,
        micros = started.elapsed().as_micros() as u64,
        "group commit"
    );
    true
}

/// The batch's time and the log's head, read under the write lock: every id
/// up to the head is committed, the batch's events follow it, and event
/// times grow with ids (replay windows and retention rely on it).
/// `known`: the head the last batch committed (SQLite only, see [`Head`]).
fn batch_start(
    conn: &mut DbConn,
    known: Option<EventId>,
) -> Result<(Timestamp, EventId), StoreError> {
    let now = Timestamp::now();
    if !conn.is_postgres() {
        return Ok((now, known.map_or_else(|| events::head_id(conn), Ok)?));
    }
    // Another node's clock may be ahead of this one's: never go below the
    // newest event's time.
    let (head, newest) = events::head_and_newest_pg(conn)?;
    Ok((newest.map_or(now, |newest| now.max(newest)), head))
}

/// Runs every request in its own savepoint (opened only when the job
/// touches the database, see `Tx::conn`), managed here rather than by nested
/// diesel transactions so that releasing one and opening the next is one
/// round trip (it matters on PostgreSQL); COMMIT releases the last. Returns
/// the batch's events, all inserted.
fn run_jobs(
    conn: &mut DbConn,
    batch: &mut [Request],
    now: Timestamp,
    head: EventId,
    results: &mut Vec<Result<Done, StoreError>>,
) -> Result<BatchLog, StoreError> {
    let keys_not_before = now.minus(KEY_LIFETIME);
    let now_text = now.to_string();
    let mut log = BatchLog::new(head);
    for request in batch.iter_mut() {
        let (first, next_id) = (log.events.len(), log.next_id);
        let hooks = log.after_commit.len();
        let mut tx = Tx {
            conn,
            log: &mut log,
            now,
            now_text: &now_text,
            first,
            savepoint: false,
        };
        let result = run_job(
            &mut tx,
            keys_not_before,
            request.claim.as_ref(),
            request.job.as_mut(),
        );
        let savepoint = tx.savepoint;
        if result.is_err() {
            // Undo the job alone: its rows (in its savepoint) and its events.
            if savepoint {
                conn.batch_execute("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")?;
                log.savepoint_open = false;
            }
            log.events.truncate(first);
            log.after_commit.truncate(hooks);
            log.inserted = log.inserted.min(first);
            log.next_id = next_id;
        }
        results.push(result);
    }
    log.finish(conn, &now_text)?;
    Ok(log)
}

/// Hands the committed events to the hub; per event, how many streams got it.
fn publish(on_commit: &OnCommit, before: Option<EventId>, events: &[Event]) -> Vec<usize> {
    if events.is_empty() {
        Vec::new()
    } else {
        on_commit.committed(before, &events.iter().collect::<Vec<_>>())
    }
}

/// Answers every request of the committed batch, each with its own events
/// (the batch's, in order, `Done::Ran` counting each job's share).
fn answer(
    batch: &mut Vec<Request>,
    results: Vec<Result<Done, StoreError>>,
    events: Vec<Event>,
    delivered: Vec<usize>,
) {
    let mut delivered = delivered.into_iter();
    let mut events = events.into_iter();
    for (request, result) in batch.drain(..).zip(results) {
        let outcome = result.map(|done| match done {
            Done::Ran(count) => Finished::Fresh {
                deliveries: delivered.by_ref().take(count).collect(),
                events: events.by_ref().take(count).collect(),
            },
            Done::Replayed(stored) => Finished::Replayed(stored),
        });
        let Request { job, relay, .. } = request;
        crate::wake::run_on(relay.as_ref(), move || job.finish(outcome));
    }
}

fn run_job(
    tx: &mut Tx<'_>,
    keys_not_before: Timestamp,
    claim: Option<&IdempotencyClaim>,
    job: &mut dyn Pending,
) -> Result<Done, StoreError> {
    if let Some(claim) = claim {
        if let Some(stored) = idempotency::lookup(tx.conn()?, claim, keys_not_before)? {
            return Ok(Done::Replayed(stored));
        }
    }
    let stored = catch_unwind(AssertUnwindSafe(|| job.run(tx, claim.is_some())))
        .map_err(|_| StoreError::Corrupt("a write job panicked".into()))??;
    if let (Some(claim), Some(stored)) = (claim, stored) {
        let now = tx.now();
        idempotency::remember(tx.conn()?, claim, &stored, now)?;
    }
    Ok(Done::Ran(tx.appended()))
}
