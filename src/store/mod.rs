//! Persistence: diesel on SQLite or PostgreSQL, the event log, idempotency
//! records and the single writer that commits many requests in one
//! transaction.
//!
//! Everything above this module talks to `Store` (reads from the pool) and
//! `Writer` (every change). No SQL leaves this module.

pub mod conversations;
mod db;
pub mod ds_subscriptions;
pub mod durable;
mod error;
pub mod events;
pub mod files;
mod idempotency;
pub mod listen;
pub mod mercure;
mod pg;
pub mod presence;
mod schema;
pub mod scratch;
pub mod subscriptions;
mod wal_vfs;
pub mod work_items;
mod writer;

pub use db::{open_pool, run_migrations, DatabaseUrl, DbConn, Pool, PooledConn, Synchronous};
pub use db::{transaction, write_transaction, TxMode};
pub use error::StoreError;
pub use events::{EventQuery, LogPosition, Order};
pub use idempotency::{IdempotencyClaim, StoredAnswer};
pub use writer::{Answer, CommitListener, Committed, Reply, Tx, WeakWriter, Writer, WriterConfig};

use diesel::{QueryableByName, RunQueryDsl};

/// Read access to the database through the connection pool. Reads run on
/// tokio's blocking threads and see a consistent WAL snapshot each.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// PostgreSQL: how long a read may take before it is answered 503
    /// (a primary that died or a network that is gone would otherwise hold
    /// the request for as long as TCP takes to give up).
    deadline: Option<std::time::Duration>,
}

/// How long a read on PostgreSQL may take, connection included.
pub const READ_DEADLINE: std::time::Duration = std::time::Duration::from_secs(4);

impl Store {
    pub fn new(pool: Pool) -> Self {
        Store {
            pool,
            deadline: None,
        }
    }

    /// Reads give up after `deadline` with `Unavailable`.
    pub fn with_deadline(mut self, deadline: std::time::Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Runs `f` with a pooled connection on a blocking thread, inside one
    /// read transaction, keeping the caller's tracing span.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        let read = crate::telemetry::spawn_blocking_in_span(move || {
            let mut conn = pool.get()?;
            events::read_transaction(&mut conn, f)
        });
        let done = match self.deadline {
            None => read.await,
            Some(deadline) => tokio::time::timeout(deadline, read).await.map_err(|_| {
                StoreError::Unavailable(format!("the database did not answer within {deadline:?}"))
            })?,
        };
        done.map_err(|_| StoreError::Unavailable("a read task was cancelled".into()))?
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

pub use writer::prune_with;

/// Prunes events written before `cutoff` on a connection of its own, in small
/// transactions (used by `switchboard prune`, beside a running server or not).
pub fn prune_direct(
    url: &DatabaseUrl,
    cutoff: crate::domain::Timestamp,
    batch: i64,
) -> Result<usize, StoreError> {
    let mut conn = url.connect()?;
    let mut total = 0;
    loop {
        let deleted = db::write_transaction(&mut conn, |c| events::prune_batch(c, cutoff, batch))?;
        total += deleted;
        if deleted < batch as usize {
            return Ok(total);
        }
    }
}

/// Copies committed WAL frames into the database file. Run periodically
/// beside the writer, which does not checkpoint by itself.
///
/// A passive checkpoint waits for no one and nobody waits for it, but under
/// steady writes it never lets the WAL start over: a commit lands while it
/// copies, so the WAL is never wholly copied when the next write begins, and
/// SQLite only rewinds a wholly copied WAL. The file would grow by every
/// commit for as long as the writes go on (16 KiB per single-event commit),
/// and each append lands on a page the kernel must allocate and zero. So
/// once the WAL holds more than `WAL_RESTART_FRAMES`, a restart checkpoint
/// follows: it holds writes back while it copies what the passive one left
/// (a few pages) and waits at most `RESTART_WAIT` for readers of the old
/// frames; the next commit then writes the WAL from its start again, over
/// pages already in memory.
pub fn checkpoint(conn: &mut DbConn) -> Result<(), StoreError> {
    use diesel::connection::SimpleConnection;
    #[derive(QueryableByName)]
    struct Progress {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        log: i32,
    }
    let DbConn::Sqlite(conn) = conn else {
        return Ok(());
    };
    let passive: Progress = diesel::sql_query("PRAGMA wal_checkpoint(PASSIVE)").get_result(conn)?;
    if passive.log <= WAL_RESTART_FRAMES {
        return Ok(());
    }
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {};",
        RESTART_WAIT.as_millis()
    ))?;
    let restarted =
        diesel::sql_query("PRAGMA wal_checkpoint(RESTART)").get_result::<Progress>(conn);
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {};",
        db::BUSY_TIMEOUT.as_millis()
    ))?;
    restarted?;
    Ok(())
}

/// The WAL size (in frames of one page) above which a checkpoint makes it
/// start over: SQLite's own automatic checkpoint threshold, ~4 MiB.
const WAL_RESTART_FRAMES: i32 = 1000;

/// How long a restart checkpoint waits for the writer's batch or a reader;
/// the writer waits as long at most. When it gives up the next period tries
/// again.
const RESTART_WAIT: std::time::Duration = std::time::Duration::from_millis(20);
