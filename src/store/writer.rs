//! The one writer. SQLite allows one writer at a time, so instead of letting
//! requests fight for the lock, every change is sent to one thread that owns
//! one connection and commits many requests in one transaction (group commit).
//!
//! Promises, in order:
//! 1. Each request runs inside its own savepoint: a request that fails is
//!    rolled back alone and the rest of the batch still commits.
//! 2. A request's rows, its events and its idempotency record are committed
//!    together or not at all.
//! 3. Only after COMMIT returns are the batch's events handed to `on_commit`
//!    (the hub), in id order; only then is each request answered. No event
//!    reaches a subscriber before it is durable, and no 2xx is sent for a
//!    change that could still be lost to anything but the disk itself.
//! 4. If COMMIT fails, every request of the batch gets an error and nothing
//!    of the batch was published.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread;

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use tokio::sync::{mpsc, oneshot};

use super::db::{self, DbConn};
use super::idempotency::{self, IdempotencyClaim, KEY_LIFETIME};
use super::{events, DatabaseUrl, StoreError};
use crate::domain::{format_timestamp, Event, NewEvent};

/// What a job answers when it succeeds: the HTTP status and JSON body.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: u16,
    /// The JSON body, already serialised.
    pub body: String,
}

impl Outcome {
    pub fn new(status: u16, body: serde_json::Value) -> Self {
        Outcome {
            status,
            body: body.to_string(),
        }
    }

    /// A body serialised from a typed value: raw JSON inside it (an event's
    /// payload) is sent exactly as it was stored.
    pub fn serialize(status: u16, body: &impl serde::Serialize) -> Result<Self, StoreError> {
        let body = serde_json::to_string(body)
            .map_err(|e| StoreError::Corrupt(format!("response body: {e}")))?;
        Ok(Outcome { status, body })
    }
}

/// A committed request, as the handler receives it.
#[derive(Debug)]
pub struct Committed {
    pub status: u16,
    /// The response body, serialised once (it is also the stored idempotent answer).
    pub body: String,
    /// The events this request appended, with their ids.
    pub events: Vec<Event>,
    /// Per event, how many streams it was handed to.
    pub deliveries: Vec<usize>,
    /// True when this answer is a stored one for a repeated `Idempotency-Key`.
    pub replayed: bool,
}

/// The transaction a job runs in: the connection, the batch's timestamp, and
/// the events the job appends.
pub struct Tx<'a> {
    conn: &'a mut DbConn,
    now: &'a str,
    now_time: DateTime<Utc>,
    events: Vec<Event>,
}

impl Tx<'_> {
    pub fn conn(&mut self) -> &mut DbConn {
        self.conn
    }

    /// The commit batch's time, RFC 3339 with microseconds.
    pub fn now(&self) -> &str {
        self.now
    }

    /// The same instant as `now`, for arithmetic.
    pub fn now_time(&self) -> DateTime<Utc> {
        self.now_time
    }

    /// Appends an event to the log in this transaction.
    pub fn append(&mut self, event: &NewEvent) -> Result<&Event, StoreError> {
        let stored = events::append(self.conn, event, self.now)?;
        self.events.push(stored);
        Ok(self.events.last().expect("just pushed"))
    }
}

type Job = Box<dyn FnOnce(&mut Tx<'_>) -> Result<Outcome, StoreError> + Send>;

/// Called with the events of each committed batch, in id order; returns, per
/// event, how many streams it was handed to. On PostgreSQL the first argument
/// is the log's head when the batch took the write lock: every id up to it
/// was committed before, every id above it belongs to this batch.
pub type OnCommit = Arc<dyn Fn(Option<i64>, &[&Event]) -> Vec<usize> + Send + Sync>;

/// The channel on which a PostgreSQL node announces a commit (payload: the
/// new head id). Every node LISTENs on it and reads new events from the log.
pub const NOTIFY_CHANNEL: &str = "switchboard_events";

struct Request {
    claim: Option<IdempotencyClaim>,
    job: Job,
    reply: Option<oneshot::Sender<Result<Committed, StoreError>>>,
}

#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Requests waiting for the writer before new ones wait to be queued.
    pub queue: usize,
    /// The most requests committed in one transaction.
    pub max_batch: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue: 8192,
            max_batch: 1024,
        }
    }
}

/// The handle through which every change goes. Cloning is cheap.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Request>,
}

/// A handle that does not keep the writer alive (for the hub, which the
/// writer itself holds: a strong handle there would be a cycle, and the
/// writer thread would never end).
#[derive(Clone)]
pub struct WeakWriter {
    queue: mpsc::WeakSender<Request>,
}

impl WeakWriter {
    pub fn upgrade(&self) -> Option<Writer> {
        self.queue.upgrade().map(|queue| Writer { queue })
    }
}

impl Writer {
    /// Starts the writer thread on its own connection. The thread ends when
    /// the last `Writer` handle is dropped, after the requests already queued.
    pub fn start(
        url: &DatabaseUrl,
        config: WriterConfig,
        on_commit: OnCommit,
    ) -> Result<(Writer, thread::JoinHandle<()>), StoreError> {
        let conn = writer_connection(url)?;
        let (queue, requests) = mpsc::channel(config.queue);
        let handle = thread::Builder::new()
            .name("switchboard-writer".into())
            .spawn({
                let url = url.clone();
                move || run(url, conn, requests, config.max_batch, on_commit)
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok((Writer { queue }, handle))
    }

    pub fn downgrade(&self) -> WeakWriter {
        WeakWriter {
            queue: self.queue.downgrade(),
        }
    }

    /// Runs `job` in the next group commit and waits for the commit.
    pub async fn write<F>(
        &self,
        claim: Option<IdempotencyClaim>,
        job: F,
    ) -> Result<Committed, StoreError>
    where
        F: FnOnce(&mut Tx<'_>) -> Result<Outcome, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let request = Request {
            claim,
            job: Box::new(job),
            reply: Some(reply),
        };
        self.queue
            .send(request)
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
    }

    /// Queues `job` without waiting for it (used from `Drop`, where nothing
    /// can wait). Returns false when the queue is full or closed.
    pub fn write_detached<F>(&self, job: F) -> bool
    where
        F: FnOnce(&mut Tx<'_>) -> Result<Outcome, StoreError> + Send + 'static,
    {
        self.queue
            .try_send(Request {
                claim: None,
                job: Box::new(job),
                reply: None,
            })
            .is_ok()
    }
}

fn run(
    url: DatabaseUrl,
    mut conn: DbConn,
    mut requests: mpsc::Receiver<Request>,
    max_batch: usize,
    on_commit: OnCommit,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = requests.blocking_recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        if !commit_batch(&mut conn, &mut batch, &on_commit) {
            // The disk was full, read-only, or the file was locked: the
            // requests got 503. Start the next batch on a fresh connection,
            // so no half-open transaction state outlives the fault.
            match writer_connection(&url) {
                Ok(fresh) => conn = fresh,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot reopen the database; keeping the old connection")
                }
            }
        }
    }
    tracing::debug!("writer stopped");
}

struct Done {
    status: u16,
    body: String,
    events: Vec<Event>,
    replayed: bool,
}

/// The writer's own connection. It never checkpoints the WAL itself: a
/// checkpoint inside a commit (SQLite's automatic one) stalls that commit on
/// an fsync for milliseconds. `store::checkpoint` does it from a pooled
/// connection instead, beside the writer.
fn writer_connection(url: &DatabaseUrl) -> Result<DbConn, StoreError> {
    let mut conn = url.connect()?;
    if !conn.is_postgres() {
        conn.batch_execute("PRAGMA wal_autocheckpoint = 0;")?;
    }
    Ok(conn)
}

/// Runs and commits one batch; false when the commit failed.
fn commit_batch(conn: &mut DbConn, batch: &mut Vec<Request>, on_commit: &OnCommit) -> bool {
    let started = std::time::Instant::now();
    let mut results: Vec<Result<Done, StoreError>> = Vec::with_capacity(batch.len());

    let mut before = None;
    let committed = db::write_transaction::<_, StoreError>(conn, |conn| {
        // The batch's time, taken under the write lock, so that event times
        // grow with ids (replay windows and retention rely on it).
        let mut now_time = Utc::now();
        if conn.is_postgres() {
            // Under the write lock: every id up to here is committed.
            before = Some(events::head_id(conn)?);
            // Another node's clock may be ahead of this one's: never go
            // below the newest event's time.
            if let Some(newest) = events::newest_time(conn)? {
                now_time = now_time.max(newest);
            }
        }
        let now = format_timestamp(now_time);
        let keys_not_before = format_timestamp(now_time - KEY_LIFETIME);
        // One savepoint per request, managed here rather than by nested
        // diesel transactions so that releasing one and opening the next is
        // one round trip (it matters on PostgreSQL); COMMIT releases the last.
        let mut savepoint_open = false;
        for request in batch.iter_mut() {
            let job: Job = std::mem::replace(&mut request.job, Box::new(|_| unreachable!()));
            let claim = request.claim.as_ref();
            conn.batch_execute(if savepoint_open {
                "RELEASE SAVEPOINT job; SAVEPOINT job"
            } else {
                "SAVEPOINT job"
            })?;
            let result = run_job(conn, (&now, now_time), &keys_not_before, claim, job);
            savepoint_open = result.is_ok();
            if !savepoint_open {
                conn.batch_execute("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")?;
            }
            results.push(result);
        }
        if conn.is_postgres() {
            let last = results
                .iter()
                .filter_map(|r| r.as_ref().ok())
                .filter_map(|done| done.events.last())
                .map(|event| event.id)
                .max();
            if let Some(last) = last {
                // Delivered by PostgreSQL at COMMIT, to every node.
                conn.batch_execute(&format!("NOTIFY {NOTIFY_CHANNEL}, '{last}'"))?;
            }
        }
        Ok(())
    });

    if let Err(err) = committed {
        tracing::error!(error = %err, requests = batch.len(), "group commit failed");
        for request in batch.drain(..) {
            if let Some(reply) = request.reply {
                let _ = reply.send(Err(StoreError::Unavailable(format!(
                    "commit failed: {err}"
                ))));
            }
        }
        return false;
    }

    // Borrowed, not cloned: each request keeps its own events for its answer.
    let all_events: Vec<&Event> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .flat_map(|done| done.events.iter())
        .collect();
    let delivered = if all_events.is_empty() {
        Vec::new()
    } else {
        on_commit(before, &all_events)
    };
    crate::metrics::record_commit(batch.len(), started.elapsed());
    tracing::trace!(
        requests = batch.len(),
        events = all_events.len(),
        micros = started.elapsed().as_micros() as u64,
        "group commit"
    );

    let mut delivered = delivered.into_iter();
    for (request, result) in batch.drain(..).zip(results) {
        let answer = result.map(|done| {
            let count = done.events.len();
            Committed {
                status: done.status,
                body: done.body,
                deliveries: delivered.by_ref().take(count).collect(),
                events: done.events,
                replayed: done.replayed,
            }
        });
        if let Some(reply) = request.reply {
            let _ = reply.send(answer);
        }
    }
    true
}

fn run_job(
    conn: &mut DbConn,
    (now, now_time): (&str, DateTime<Utc>),
    keys_not_before: &str,
    claim: Option<&IdempotencyClaim>,
    job: Job,
) -> Result<Done, StoreError> {
    if let Some(claim) = claim {
        if let Some(stored) = idempotency::lookup(conn, claim, keys_not_before)? {
            return Ok(Done {
                status: stored.status,
                body: stored.body,
                events: Vec::new(),
                replayed: true,
            });
        }
    }
    let mut tx = Tx {
        conn,
        now,
        now_time,
        events: Vec::new(),
    };
    let outcome = catch_unwind(AssertUnwindSafe(|| job(&mut tx)))
        .map_err(|_| StoreError::Corrupt("a write job panicked".into()))??;
    let Tx { conn, events, .. } = tx;
    let body = outcome.body;
    if let Some(claim) = claim {
        idempotency::remember(conn, claim, outcome.status, &body, now)?;
    }
    Ok(Done {
        status: outcome.status,
        body,
        events,
        replayed: false,
    })
}

/// Retention as writer jobs: one small batch per transaction, so other
/// requests interleave. Returns how many events were pruned.
pub async fn prune_with(writer: &Writer, cutoff: String, batch: i64) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let cutoff = cutoff.clone();
        let done = writer
            .write(None, move |tx| {
                let deleted = events::prune_batch(tx.conn(), &cutoff, batch)?;
                Ok(Outcome::new(200, serde_json::json!(deleted)))
            })
            .await?;
        let deleted: usize = done.body.parse().unwrap_or(0);
        total += deleted;
        if deleted < batch as usize {
            break;
        }
    }
    let keys_cutoff = format_timestamp(Utc::now() - KEY_LIFETIME);
    writer
        .write(None, move |tx| {
            idempotency::forget_expired(tx.conn(), &keys_cutoff, 10_000)?;
            Ok(Outcome::new(200, serde_json::Value::Null))
        })
        .await?;
    Ok(total)
}
