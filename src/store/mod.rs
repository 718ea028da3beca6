//! Persistence: diesel on SQLite or PostgreSQL, the event log, idempotency
//! records and the single writer that commits many requests in one
//! transaction.
//!
//! Everything above this module talks to `Store` (reads from the pool) and
//! `Writer` (every change). No SQL leaves this module.

pub mod conversations;
mod db;
pub mod durable;
mod error;
pub mod events;
pub mod files;
mod idempotency;
pub mod listen;
pub mod mercure;
pub mod presence;
mod schema;
pub mod scratch;
pub mod work_items;
mod writer;

pub use db::{open_pool, run_migrations, DatabaseUrl, DbConn, Pool, PooledConn};
pub use db::{transaction, write_transaction, TxMode};
pub use error::StoreError;
pub use events::{EventQuery, LogPosition, Order};
pub use idempotency::IdempotencyClaim;
pub use writer::{Answer, Committed, Reply, StoredAnswer, Tx, WeakWriter, Writer, WriterConfig};

use std::sync::Arc;

/// Read access to the database through the connection pool. Reads run on
/// tokio's blocking threads and see a consistent WAL snapshot each.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
}

impl Store {
    pub fn new(pool: Pool) -> Self {
        Store { pool }
    }

    /// Runs `f` with a pooled connection on a blocking thread, inside one
    /// read transaction, keeping the caller's tracing span.
    pub async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.pool.clone();
        crate::telemetry::spawn_blocking_in_span(move || {
            let mut conn = pool.get()?;
            events::read_transaction(&mut conn, f)
        })
        .await
        .map_err(|_| StoreError::Unavailable("a read task was cancelled".into()))?
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// Shared handle to the store and the writer, as handlers receive it.
pub type SharedWriter = Arc<Writer>;

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

/// Copies committed WAL frames into the database file (a passive checkpoint:
/// it waits for no one and nobody waits for it). Run periodically beside the
/// writer, which does not checkpoint by itself.
pub fn checkpoint(conn: &mut DbConn) -> Result<(), StoreError> {
    use diesel::connection::SimpleConnection;
    if conn.is_postgres() {
        return Ok(());
    }
    conn.batch_execute("PRAGMA wal_checkpoint(PASSIVE);")?;
    Ok(())
}
