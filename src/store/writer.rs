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

use std::sync::Arc;
use std::thread;

use diesel::connection::SimpleConnection;
use tokio::sync::{mpsc, oneshot};

use super::db::DbConn;
use super::idempotency::{self, IdempotencyClaim, StoredAnswer, KEY_LIFETIME};
use super::{events, DatabaseUrl, StoreError};
use crate::domain::{Event, EventId, NewEvent, Timestamp};

mod batch;
use batch::{run, writer_connection};

/// A change the writer committed: what the job returned, the events it
/// appended (with their ids), and per event how many streams it reached.
#[derive(Debug)]
pub struct Committed<T> {
    pub value: T,
    pub events: Vec<Event>,
    pub deliveries: Vec<usize>,
}

/// A job's result that can be stored as a request's answer. The edge that
/// sends answers implements it (`http::Answer`); the writer only stores it.
pub trait Answer {
    /// The answer to store under the request's key; `None` when a repeat
    /// should run again instead (the request changed nothing).
    fn to_stored(&self) -> Result<Option<StoredAnswer>, StoreError>;
}

/// What a request with a possible `Idempotency-Key` gets back: the fresh
/// change, or the answer stored for an earlier request with the same key.
#[derive(Debug)]
pub enum Reply<T> {
    Fresh(Committed<T>),
    Replayed(StoredAnswer),
}

/// The events a batch appends, numbered by the writer and inserted lazily.
///
/// The writer holds the write lock (SQLite's, or on PostgreSQL the
/// cluster-wide advisory lock) for the whole batch, so the log's head read
/// at its start plus one is the next id: events are numbered here, and their
/// rows are inserted many per statement, when a job next touches the
/// database or at the batch's end. A job that only appends events (a
/// publish) therefore costs no statement of its own and no savepoint.
struct BatchLog {
    /// Every event appended so far, in id order.
    events: Vec<Event>,
    /// How many of `events` are inserted.
    inserted: usize,
    next_id: EventId,
    /// A job's savepoint is open (released when the next one opens).
    savepoint_open: bool,
    /// What the batch's jobs asked to run once it is committed, before its
    /// events reach the hub ([`Tx::after_commit`]).
    after_commit: Vec<AfterCommit>,
}

/// Work a job hands the writer to run once its batch is committed.
type AfterCommit = Box<dyn FnOnce() + Send>;

impl BatchLog {
    fn new(head: EventId) -> Self {
        BatchLog {
            events: Vec::new(),
            inserted: 0,
            next_id: head.next(),
            savepoint_open: false,
            after_commit: Vec::new(),
        }
    }

    /// Inserts the events up to `upto` not inserted yet.
    fn insert(&mut self, conn: &mut DbConn, now_text: &str, upto: usize) -> Result<(), StoreError> {
        self.insert_notifying(conn, now_text, upto, None)
    }

    /// `insert`, the statement also sending `notify` (PostgreSQL).
    fn insert_notifying(
        &mut self,
        conn: &mut DbConn,
        now_text: &str,
        upto: usize,
        notify: Option<&super::pg::Notify<'_>>,
    ) -> Result<(), StoreError> {
        if upto > self.inserted {
            events::insert(conn, &self.events[self.inserted..upto], now_text, notify)?;
            self.inserted = upto;
        }
        Ok(())
    }

    /// Inserts what is left and, on PostgreSQL, tells the other nodes of the
    /// batch's last id (`NOTIFY`, delivered at COMMIT): in the same statement
    /// as the insert when one is left, else on its own.
    fn finish(&mut self, conn: &mut DbConn, now_text: &str) -> Result<(), StoreError> {
        let all = self.events.len();
        if !conn.is_postgres() {
            return self.insert(conn, now_text, all);
        }
        let Some(last) = self.events.last().map(|event| event.id.to_string()) else {
            return Ok(());
        };
        let notify = super::pg::Notify {
            channel: NOTIFY_CHANNEL,
            payload: &last,
        };
        if all > self.inserted {
            return self.insert_notifying(conn, now_text, all, Some(&notify));
        }
        events::notify(conn, &notify)
    }
}

/// The transaction a job runs in: the connection, the batch's timestamp, and
/// the log the job appends events to.
pub struct Tx<'a> {
    conn: &'a mut DbConn,
    log: &'a mut BatchLog,
    now: Timestamp,
    /// `now` as stored, formatted once per batch.
    now_text: &'a str,
    /// Where this job's events start in the batch's log.
    first: usize,
    /// This job's savepoint is open: it touched the database.
    savepoint: bool,
}

impl Tx<'_> {
    /// The connection, inside this job's savepoint (opened on first use),
    /// with every event appended so far inserted, so the job's queries see
    /// them.
    pub fn conn(&mut self) -> Result<&mut DbConn, StoreError> {
        if !self.savepoint {
            // Earlier jobs' events belong outside this job's savepoint.
            self.log.insert(self.conn, self.now_text, self.first)?;
            self.conn.batch_execute(if self.log.savepoint_open {
                "RELEASE SAVEPOINT job; SAVEPOINT job"
            } else {
                "SAVEPOINT job"
            })?;
            self.log.savepoint_open = true;
            self.savepoint = true;
        }
        self.log
            .insert(self.conn, self.now_text, self.log.events.len())?;
        Ok(self.conn)
    }

    /// The commit batch's time: every change and event of the batch has it.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Appends an event to the log in this transaction.
    pub fn append(&mut self, event: &NewEvent) -> Result<&Event, StoreError> {
        let id = self.log.next_id;
        self.log.next_id = id.next();
        self.log.events.push(events::numbered(event, id, self.now));
        Ok(self.log.events.last().expect("just pushed"))
    }

    /// Runs `f` on the writer's thread once the batch is committed, before
    /// its events are handed to the hub (so before any stream is woken by
    /// them), and not at all if this job fails or the commit does. For
    /// caches of committed state that readers woken by the events may use.
    pub fn after_commit(&mut self, f: impl FnOnce() + Send + 'static) {
        self.log.after_commit.push(Box::new(f));
    }

    /// How many events this job appended.
    fn appended(&self) -> usize {
        self.log.events.len() - self.first
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
    /// Whether the request stopped waiting (its deadline passed).
    fn abandoned(&self) -> bool;
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
    render: fn(&T) -> Result<Option<StoredAnswer>, StoreError>,
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
        let stored = if store_answer {
            (self.render)(&value)?
        } else {
            None
        };
        self.value = Some(value);
        Ok(stored)
    }

    fn abandoned(&self) -> bool {
        self.reply.as_ref().is_some_and(|reply| reply.is_closed())
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
fn nothing_to_store<T>(_: &T) -> Result<Option<StoredAnswer>, StoreError> {
    Err(StoreError::Corrupt(
        "an answer was stored without a key".into(),
    ))
}

fn stored_answer<T: Answer>(value: &T) -> Result<Option<StoredAnswer>, StoreError> {
    value.to_stored()
}

/// What the writer tells the node about its batches (the node hands them to
/// its hub).
pub trait CommitListener: Send + Sync {
    /// Called with the events of each committed batch, in id order; returns,
    /// per event, how many streams it was handed to. On PostgreSQL `before`
    /// is the log's head when the batch took the write lock: every id up to
    /// it was committed before, every id above it belongs to this batch.
    fn committed(&self, before: Option<EventId>, events: &[&Event]) -> Vec<usize>;

    /// On PostgreSQL, just before the COMMIT of a batch whose events end at
    /// `last`: the `NOTIFY` that COMMIT sends is this node's own, and
    /// `committed` (or `commit_failed`) follows.
    fn committing(&self, _last: EventId) {}

    /// The COMMIT announced by `committing` failed. Its events may be in the
    /// log all the same (a connection lost while COMMIT was on its way).
    fn commit_failed(&self) {}
}

impl<F> CommitListener for F
where
    F: Fn(Option<EventId>, &[&Event]) -> Vec<usize> + Send + Sync,
{
    fn committed(&self, before: Option<EventId>, events: &[&Event]) -> Vec<usize> {
        self(before, events)
    }
}

pub type OnCommit = Arc<dyn CommitListener>;

/// The channel on which a PostgreSQL node announces a commit (payload: the
/// new head id). Every node LISTENs on it and reads new events from the log.
pub const NOTIFY_CHANNEL: &str = "switchboard_events";

struct Request {
    claim: Option<IdempotencyClaim>,
    job: Box<dyn Pending>,
    /// The relay of the HTTP worker that waits for the answer, if it has
    /// one: the answer is handed to it with the batch's wakes
    /// (`wake::run_on`).
    relay: Option<Arc<crate::wake::Relay>>,
}

#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Requests waiting for the writer before new ones wait to be queued.
    pub queue: usize,
    /// The most requests committed in one transaction.
    pub max_batch: usize,
    /// How long a request waits for its commit before it is answered 503
    /// (PostgreSQL: a network that is gone would hold it for as long as
    /// TCP takes). A request that gave up before its batch began is not run.
    pub deadline: Option<std::time::Duration>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue: 8192,
            max_batch: 1024,
            deadline: None,
        }
    }
}

/// The handle through which every change goes. Cloning is cheap.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Request>,
    deadline: Option<std::time::Duration>,
}

/// A handle that does not keep the writer alive (for the hub, which the
/// writer itself holds: a strong handle there would be a cycle, and the
/// writer thread would never end).
#[derive(Clone)]
pub struct WeakWriter {
    queue: mpsc::WeakSender<Request>,
    deadline: Option<std::time::Duration>,
}

impl WeakWriter {
    pub fn upgrade(&self) -> Option<Writer> {
        let deadline = self.deadline;
        self.queue.upgrade().map(|queue| Writer { queue, deadline })
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
        Ok((
            Writer {
                queue,
                deadline: config.deadline,
            },
            handle,
        ))
    }

    pub fn downgrade(&self) -> WeakWriter {
        WeakWriter {
            queue: self.queue.downgrade(),
            deadline: self.deadline,
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
        render: fn(&T) -> Result<Option<StoredAnswer>, StoreError>,
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
        let submitted = async {
            self.queue
                .send(Request {
                    claim,
                    job: Box::new(job),
                    relay: crate::wake::current(),
                })
                .await
                .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?;
            answer
                .await
                .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?
        };
        match self.deadline {
            None => submitted.await,
            // Dropping the request's receiver on time-out marks it abandoned:
            // the writer skips it unless its batch already began.
            Some(deadline) => tokio::time::timeout(deadline, submitted)
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!(
                        "the database did not answer within {deadline:?}; \
                         a write whose batch had begun may still have been applied"
                    ))
                })?,
        }
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
                relay: None,
            })
            .is_ok()
    }
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
            .write(move |tx| events::prune_batch(tx.conn()?, cutoff, batch))
            .await?
            .value;
        total += deleted;
        if deleted < batch as usize {
            break;
        }
    }
    let keys_cutoff = Timestamp::now().minus(KEY_LIFETIME);
    writer
        .write(move |tx| idempotency::forget_expired(tx.conn()?, keys_cutoff, 10_000))
        .await?;
    Ok(total)
}
