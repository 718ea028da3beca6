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

use chrono::Utc;
use diesel::connection::SimpleConnection;
use tokio::sync::{mpsc, oneshot};

use super::db::{self, DbConn};
use super::idempotency::{self, IdempotencyClaim, KEY_LIFETIME};
use super::{events, DatabaseUrl, StoreError};
use crate::domain::{Event, EventId, NewEvent, Timestamp};

/// A change the writer committed: what the job returned, the events it
/// appended (with their ids), and per event how many streams it reached.
#[derive(Debug)]
pub struct Committed<T> {
    pub value: T,
    pub events: Vec<Event>,
    pub deliveries: Vec<usize>,
}

/// The answer to a request with an `Idempotency-Key`, stored in the same
/// transaction as the change so that a retry gets it again, byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    pub status: u16,
    /// The body, serialised once.
    pub body: String,
    /// The `ETag` the first answer carried, if any.
    pub etag: Option<String>,
}

/// A job's result that can be stored as a request's answer. The edge that
/// sends answers implements it (`http::Answer`); the writer only stores it.
pub trait Answer {
    fn to_stored(&self) -> Result<StoredAnswer, StoreError>;
}

/// What a request with a possible `Idempotency-Key` gets back: the fresh
/// change, or the answer stored for an earlier request with the same key.
#[derive(Debug)]
pub enum Reply<T> {
    Fresh(Committed<T>),
    Replayed(StoredAnswer),
}

/// The transaction a job runs in: the connection, the batch's timestamp, and
/// the events the job appends.
pub struct Tx<'a> {
    conn: &'a mut DbConn,
    now: Timestamp,
    /// `now` as stored, formatted once per batch.
    now_text: &'a str,
    events: Vec<Event>,
}

impl Tx<'_> {
    pub fn conn(&mut self) -> &mut DbConn {
        self.conn
    }

    /// The commit batch's time: every change and event of the batch has it.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Appends an event to the log in this transaction.
    pub fn append(&mut self, event: &NewEvent) -> Result<&Event, StoreError> {
        let stored = events::append(self.conn, event, self.now, self.now_text)?;
        self.events.push(stored);
        Ok(self.events.last().expect("just pushed"))
    }
}

/// A queued job, its result type erased: the writer runs it, asks it for the
/// answer to store (when the request has a key), and finally hands it the
/// outcome to send to the waiting request.
trait Pending: Send {
    fn run(
        &mut self,
        tx: &mut Tx<'_>,
        store_answer: bool,
    ) -> Result<Option<StoredAnswer>, StoreError>;
    fn finish(self: Box<Self>, outcome: Result<Finished, StoreError>);
}

/// How a job ended once its batch committed.
enum Finished {
    Fresh {
        events: Vec<Event>,
        deliveries: Vec<usize>,
    },
    Replayed(StoredAnswer),
}

/// The typed job behind `Pending`.
struct TypedJob<T, F> {
    job: Option<F>,
    value: Option<T>,
    render: fn(&T) -> Result<StoredAnswer, StoreError>,
    reply: Option<oneshot::Sender<Result<Reply<T>, StoreError>>>,
}

impl<T, F> Pending for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
{
    fn run(
        &mut self,
        tx: &mut Tx<'_>,
        store_answer: bool,
    ) -> Result<Option<StoredAnswer>, StoreError> {
        let job = self
            .job
            .take()
            .ok_or_else(|| StoreError::Corrupt("a write job ran twice".into()))?;
        let value = job(tx)?;
        let stored = store_answer.then(|| (self.render)(&value)).transpose()?;
        self.value = Some(value);
        Ok(stored)
    }

    fn finish(self: Box<Self>, outcome: Result<Finished, StoreError>) {
        let TypedJob { reply, value, .. } = *self;
        let Some(reply) = reply else {
            return;
        };
        let answer = outcome.and_then(|finished| match (finished, value) {
            (Finished::Replayed(stored), _) => Ok(Reply::Replayed(stored)),
            (Finished::Fresh { events, deliveries }, Some(value)) => Ok(Reply::Fresh(Committed {
                value,
                events,
                deliveries,
            })),
            (Finished::Fresh { .. }, None) => {
                Err(StoreError::Corrupt("a committed job left no result".into()))
            }
        });
        let _ = reply.send(answer);
    }
}

/// For jobs without a key: nothing is ever stored.
fn nothing_to_store<T>(_: &T) -> Result<StoredAnswer, StoreError> {
    Err(StoreError::Corrupt(
        "an answer was stored without a key".into(),
    ))
}

fn stored_answer<T: Answer>(value: &T) -> Result<StoredAnswer, StoreError> {
    value.to_stored()
}

/// Called with the events of each committed batch, in id order; returns, per
/// event, how many streams it was handed to. On PostgreSQL the first argument
/// is the log's head when the batch took the write lock: every id up to it
/// was committed before, every id above it belongs to this batch.
pub type OnCommit = Arc<dyn Fn(Option<EventId>, &[&Event]) -> Vec<usize> + Send + Sync>;

/// The channel on which a PostgreSQL node announces a commit (payload: the
/// new head id). Every node LISTENs on it and reads new events from the log.
pub const NOTIFY_CHANNEL: &str = "switchboard_events";

struct Request {
    claim: Option<IdempotencyClaim>,
    job: Box<dyn Pending>,
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
    pub async fn write<T, F>(&self, job: F) -> Result<Committed<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        match self.submit(None, job, nothing_to_store).await? {
            Reply::Fresh(committed) => Ok(committed),
            Reply::Replayed(_) => Err(StoreError::Corrupt("a replay without a key".into())),
        }
    }

    /// Runs `job` in the next group commit, unless `claim`'s key already
    /// has a stored answer: then that answer comes back and nothing runs.
    /// The job's answer is stored with the change, in its transaction.
    pub async fn write_idempotent<T, F>(
        &self,
        claim: Option<IdempotencyClaim>,
        job: F,
    ) -> Result<Reply<T>, StoreError>
    where
        T: Answer + Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        self.submit(claim, job, stored_answer::<T>).await
    }

    async fn submit<T, F>(
        &self,
        claim: Option<IdempotencyClaim>,
        job: F,
        render: fn(&T) -> Result<StoredAnswer, StoreError>,
    ) -> Result<Reply<T>, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = TypedJob {
            job: Some(job),
            value: None,
            render,
            reply: Some(reply),
        };
        self.queue
            .send(Request {
                claim,
                job: Box::new(job),
            })
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
        F: FnOnce(&mut Tx<'_>) -> Result<(), StoreError> + Send + 'static,
    {
        let job = TypedJob {
            job: Some(job),
            value: None,
            render: nothing_to_store,
            reply: None,
        };
        self.queue
            .try_send(Request {
                claim: None,
                job: Box::new(job),
            })
            .is_ok()
    }
}

/// How long the writer's PostgreSQL connection may sit idle before the next
/// batch checks it is still there.
const IDLE_CHECK: std::time::Duration = std::time::Duration::from_millis(50);

fn run(
    url: DatabaseUrl,
    mut conn: DbConn,
    mut requests: mpsc::Receiver<Request>,
    max_batch: usize,
    on_commit: OnCommit,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut last_used = std::time::Instant::now();
    while let Some(first) = requests.blocking_recv() {
        // A PostgreSQL connection idle for a while may have been cut (a
        // restart, a failover, an idle timeout): check it before the batch
        // rather than answer its requests 503.
        if conn.is_postgres() && last_used.elapsed() > IDLE_CHECK {
            if let Err(err) = conn.batch_execute("SELECT 1") {
                tracing::warn!(error = %err, "the writer's connection was lost; reconnecting");
                if let Ok(fresh) = writer_connection(&url) {
                    conn = fresh;
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
        let committed = commit_batch(&mut conn, &mut batch, &on_commit);
        last_used = std::time::Instant::now();
        if !committed {
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

/// A job that ran: the events it appended, or the stored answer it found.
enum Done {
    Ran(Vec<Event>),
    Replayed(StoredAnswer),
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
        let now = batch_time(conn, &mut before)?;
        run_jobs(conn, batch, now, &mut results)?;
        notify_nodes(conn, &results)
    });
    if let Err(err) = committed {
        tracing::error!(error = %err, requests = batch.len(), "group commit failed");
        for request in batch.drain(..) {
            request.job.finish(Err(StoreError::Unavailable(format!(
                "commit failed: {err}"
            ))));
        }
        return false;
    }
    let delivered = publish(on_commit, before, &results);
    crate::metrics::record_commit(batch.len(), started.elapsed());
    tracing::trace!(
        requests = batch.len(),
        micros = started.elapsed().as_micros() as u64,
        "group commit"
    );
    answer(batch, results, delivered);
    true
}

/// The batch's time, taken under the write lock, so that event times grow
/// with ids (replay windows and retention rely on it). On PostgreSQL it also
/// notes the log's head in `before`: every id up to it is committed.
fn batch_time(conn: &mut DbConn, before: &mut Option<EventId>) -> Result<Timestamp, StoreError> {
    let mut now_time = Utc::now();
    if conn.is_postgres() {
        *before = Some(events::head_id(conn)?);
        // Another node's clock may be ahead of this one's: never go below
        // the newest event's time.
        if let Some(newest) = events::newest_time(conn)? {
            now_time = now_time.max(newest);
        }
    }
    Ok(Timestamp::from(now_time))
}

/// Runs every request in its own savepoint, managed here rather than by
/// nested diesel transactions so that releasing one and opening the next is
/// one round trip (it matters on PostgreSQL); COMMIT releases the last.
fn run_jobs(
    conn: &mut DbConn,
    batch: &mut [Request],
    now: Timestamp,
    results: &mut Vec<Result<Done, StoreError>>,
) -> Result<(), StoreError> {
    let keys_not_before = now.minus(KEY_LIFETIME);
    let now_text = now.to_string();
    let mut savepoint_open = false;
    for request in batch.iter_mut() {
        conn.batch_execute(if savepoint_open {
            "RELEASE SAVEPOINT job; SAVEPOINT job"
        } else {
            "SAVEPOINT job"
        })?;
        let claim = request.claim.as_ref();
        let result = run_job(
            conn,
            (now, &now_text),
            keys_not_before,
            claim,
            request.job.as_mut(),
        );
        savepoint_open = result.is_ok();
        if !savepoint_open {
            conn.batch_execute("ROLLBACK TO SAVEPOINT job; RELEASE SAVEPOINT job")?;
        }
        results.push(result);
    }
    Ok(())
}

/// The events the batch appended, in id order, borrowed (each request keeps
/// its own for its answer).
fn appended(results: &[Result<Done, StoreError>]) -> impl Iterator<Item = &Event> {
    results.iter().flat_map(|r| match r {
        Ok(Done::Ran(events)) => events.as_slice(),
        _ => &[],
    })
}

/// On PostgreSQL: `NOTIFY` with the batch's last id, delivered to every
/// node at COMMIT.
fn notify_nodes(conn: &mut DbConn, results: &[Result<Done, StoreError>]) -> Result<(), StoreError> {
    if !conn.is_postgres() {
        return Ok(());
    }
    if let Some(last) = appended(results).map(|event| event.id).max() {
        conn.batch_execute(&format!("NOTIFY {NOTIFY_CHANNEL}, '{last}'"))?;
    }
    Ok(())
}

/// Hands the committed events to the hub; per event, how many streams got it.
fn publish(
    on_commit: &OnCommit,
    before: Option<EventId>,
    results: &[Result<Done, StoreError>],
) -> Vec<usize> {
    let all_events: Vec<&Event> = appended(results).collect();
    if all_events.is_empty() {
        Vec::new()
    } else {
        on_commit(before, &all_events)
    }
}

/// Answers every request of the committed batch.
fn answer(batch: &mut Vec<Request>, results: Vec<Result<Done, StoreError>>, delivered: Vec<usize>) {
    let mut delivered = delivered.into_iter();
    for (request, result) in batch.drain(..).zip(results) {
        let outcome = result.map(|done| match done {
            Done::Ran(events) => Finished::Fresh {
                deliveries: delivered.by_ref().take(events.len()).collect(),
                events,
            },
            Done::Replayed(stored) => Finished::Replayed(stored),
        });
        request.job.finish(outcome);
    }
}

fn run_job(
    conn: &mut DbConn,
    (now, now_text): (Timestamp, &str),
    keys_not_before: Timestamp,
    claim: Option<&IdempotencyClaim>,
    job: &mut dyn Pending,
) -> Result<Done, StoreError> {
    if let Some(claim) = claim {
        if let Some(stored) = idempotency::lookup(conn, claim, keys_not_before)? {
            return Ok(Done::Replayed(stored));
        }
    }
    let mut tx = Tx {
        conn,
        now,
        now_text,
        events: Vec::new(),
    };
    let stored = catch_unwind(AssertUnwindSafe(|| job.run(&mut tx, claim.is_some())))
        .map_err(|_| StoreError::Corrupt("a write job panicked".into()))??;
    let Tx { conn, events, .. } = tx;
    if let (Some(claim), Some(stored)) = (claim, stored) {
        idempotency::remember(conn, claim, &stored, now)?;
    }
    Ok(Done::Ran(events))
}

/// Retention as writer jobs: one small batch per transaction, so other
/// requests interleave. Returns how many events were pruned.
pub async fn prune_with(
    writer: &Writer,
    cutoff: Timestamp,
    batch: i64,
) -> Result<usize, StoreError> {
    let mut total = 0;
    loop {
        let deleted = writer
            .write(move |tx| events::prune_batch(tx.conn(), cutoff, batch))
            .await?
            .value;
        total += deleted;
        if deleted < batch as usize {
            break;
        }
    }
    let keys_cutoff = Timestamp::now().minus(KEY_LIFETIME);
    writer
        .write(move |tx| idempotency::forget_expired(tx.conn(), keys_cutoff, 10_000))
        .await?;
    Ok(total)
}
