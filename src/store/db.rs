//! Opening the database: SQLite (the default, a file next to the server) or
//! PostgreSQL (several nodes sharing one database), the connection pool with
//! the settings a server needs, and the migrations embedded in the binary.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{ManageConnection, PooledConnection, R2D2Connection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;

pub use crate::config::{DatabaseUrl, Synchronous};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::StoreError;

/// One connection to either backend. Queries written with diesel's DSL run
/// on it unchanged; the few that differ between the backends (upserts) match
/// on the variant.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(SqliteConnection),
    Pg(PgConnection),
}

impl DbConn {
    pub fn is_postgres(&self) -> bool {
        matches!(self, DbConn::Pg(_))
    }
}

pub type Pool = diesel::r2d2::Pool<Manager>;
pub type PooledConn = PooledConnection<Manager>;

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// How long a connection waits for a lock before SQLite answers "busy".
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The session-level advisory lock held while migrations run, so that nodes
/// starting together do not apply the same migration twice.
const MIGRATION_LOCK: i64 = 7_346_200;

impl DatabaseUrl {
    /// A connection set up like every pooled one, for the writer and the CLI.
    pub fn connect(&self) -> Result<DbConn, StoreError> {
        match self {
            DatabaseUrl::Sqlite { path, synchronous } => {
                super::wal_vfs::install();
                let mut conn =
                    SqliteConnection::establish(&path.to_string_lossy()).map_err(|e| {
                        StoreError::Unavailable(format!("cannot open {}: {e}", path.display()))
                    })?;
                configure_sqlite(&mut conn, *synchronous)?;
                Ok(DbConn::Sqlite(conn))
            }
            DatabaseUrl::Postgres { url } => {
                let mut conn = PgConnection::establish(&with_libpq_defaults(url)).map_err(|e| {
                    StoreError::Unavailable(format!("cannot connect to {self}: {e}"))
                })?;
                for setting in SESSION_SETTINGS {
                    if let Err(err) = conn.batch_execute(setting) {
                        tracing::debug!(%setting, error = %err, "the server keeps its default");
                    }
                }
                Ok(DbConn::Pg(conn))
            }
        }
    }
}

/// libpq waits for an unreachable host, and on a connection whose network
/// is gone, as long as TCP does (minutes). Unless the URL sets them: each
/// host gets 2 s to connect, and a connection whose sent data stays
/// unacknowledged for 8 s, or that answers no keepalive for ~9 s, fails, so
/// a commit or a read on a cut network ends in 503 instead of hanging.
fn with_libpq_defaults(url: &str) -> String {
    let mut url = url.to_owned();
    for (name, value) in LIBPQ_DEFAULTS {
        if !url.contains(&format!("{name}=")) {
            let separator = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{separator}{name}={value}");
        }
    }
    url
}

/// libpq settings the URL may override.
const LIBPQ_DEFAULTS: [(&str, &str); 5] = [
    ("connect_timeout", "2"),
    ("keepalives_idle", "5"),
    ("keepalives_interval", "2"),
    ("keepalives_count", "2"),
    ("tcp_user_timeout", "8000"),
];

/// The server side of the same, set on every new session: a session whose
/// client vanished in the middle of a transaction (a node cut off while it
/// held the write lock) ends after 5 s idle in it, and the server's
/// keepalives find a dead client in ~9 s, so one cut node cannot hold every
/// other node's writes. Each is tried alone; a server (or a pooler) that
/// refuses one keeps its own default.
const SESSION_SETTINGS: [&str; 5] = [
    "SET idle_in_transaction_session_timeout = 5000",
    "SET tcp_keepalives_idle = 5",
    "SET tcp_keepalives_interval = 2",
    "SET tcp_keepalives_count = 2",
    "SET tcp_user_timeout = 8000",
];

fn configure_sqlite(
    conn: &mut SqliteConnection,
    synchronous: Synchronous,
) -> Result<(), diesel::result::Error> {
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {};
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = {};
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -16000;",
        BUSY_TIMEOUT.as_millis(),
        synchronous
    ))
}

/// Opens pooled connections for the one backend `--database` names (never
/// guessing from the string, so a PostgreSQL URL can never become a file).
#[derive(Debug)]
pub struct Manager {
    url: DatabaseUrl,
}

impl ManageConnection for Manager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        self.url.connect().map_err(|e| {
            diesel::r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(
                e.to_string(),
            ))
        })
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        conn.ping().map_err(diesel::r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConn) -> bool {
        std::thread::panicking() || conn.is_broken()
    }
}

/// The read pool. Writes never go through it: they go to the one writer.
pub fn open_pool(url: &DatabaseUrl, size: u32) -> Result<Pool, StoreError> {
    // Without a reachable primary, a read waits for a connection at most
    // this long before it is answered 503 (PostgreSQL); a SQLite file is
    // busy only for as long as a checkpoint takes.
    let wait = if url.is_postgres() {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(10)
    };
    diesel::r2d2::Pool::builder()
        .max_size(size)
        .connection_timeout(wait)
        .build(Manager { url: url.clone() })
        .map_err(|e| StoreError::Unavailable(format!("cannot open {url}: {e}")))
}

/// Applies the embedded migrations that this database lacks.
pub fn run_migrations(url: &DatabaseUrl) -> Result<Vec<String>, StoreError> {
    let mut conn = url.connect()?;
    let failed = |e| StoreError::Unavailable(format!("migrations failed: {e}"));
    let applied = match &mut conn {
        DbConn::Sqlite(_) => conn
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|applied| applied.iter().map(ToString::to_string).collect())
            .map_err(failed)?,
        DbConn::Pg(_) => {
            conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
            let result = conn
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|applied| applied.iter().map(ToString::to_string).collect::<Vec<_>>())
                .map_err(failed);
            conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
            result?
        }
    };
    Ok(applied)
}

/// What a transaction is for; it decides how the transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxMode {
    /// Every statement sees one snapshot: SQLite's deferred transaction in
    /// WAL mode, PostgreSQL's REPEATABLE READ (READ COMMITTED would give each
    /// statement its own).
    Read,
    /// Takes the write lock at once: SQLite's `BEGIN IMMEDIATE` (waiting out
    /// the busy timeout instead of failing half-way); on PostgreSQL `BEGIN`
    /// and the cluster-wide write lock, sent in one round trip.
    Write,
}

/// Runs `f` in a transaction begun the way `mode` needs; commits when `f`
/// succeeds, rolls back when it fails.
pub fn transaction<T, E>(
    conn: &mut DbConn,
    mode: TxMode,
    f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    type Manager = <DbConn as Connection>::TransactionManager;
    match (&mut *conn, mode) {
        (DbConn::Sqlite(c), TxMode::Read) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN")?
        }
        (DbConn::Sqlite(c), TxMode::Write) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE")?
        }
        (DbConn::Pg(c), TxMode::Read) => AnsiTransactionManager::begin_transaction_sql(
            c,
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        )?,
        // The cluster-wide write lock in the same round trip as BEGIN.
        (DbConn::Pg(c), TxMode::Write) => AnsiTransactionManager::begin_transaction_sql(
            c,
            &format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"),
        )?,
    }
    match f(conn) {
        Ok(value) => match Manager::commit_transaction(conn) {
            Ok(()) => Ok(value),
            Err(err) => {
                let _ = Manager::rollback_transaction(conn);
                Err(err.into())
            }
        },
        Err(err) => {
            let _ = Manager::rollback_transaction(conn);
            Err(err)
        }
    }
}

/// The transaction-scoped advisory lock every write transaction of every node
/// takes first on PostgreSQL. Writes are serialised across nodes, so event
/// ids become visible in id order and every read-check-write (locks,
/// versions, idempotency keys) sees the one latest state, as on SQLite.
pub const WRITE_LOCK: i64 = 7_346_201;

/// A write transaction: SQLite's `BEGIN IMMEDIATE`, or PostgreSQL's `BEGIN`
/// with the cluster-wide write lock (`TxMode::Write`).
pub fn write_transaction<T, E>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<diesel::result::Error>,
{
    transaction(conn, TxMode::Write, f)
}

#[cfg(test)]
mod tests {
    use diesel::sql_types::Integer;
    use diesel::RunQueryDsl;

    use super::*;

    #[derive(diesel::QueryableByName)]
    struct Level {
        #[diesel(sql_type = Integer)]
        synchronous: i32,
    }

    /// `PRAGMA synchronous` as a connection of `url` sees it: 1 is NORMAL,
    /// 2 is FULL.
    fn level(url: &DatabaseUrl) -> i32 {
        let DbConn::Sqlite(mut conn) = url.connect().unwrap() else {
            panic!("not SQLite");
        };
        diesel::sql_query("PRAGMA synchronous")
            .get_result::<Level>(&mut conn)
            .unwrap()
            .synchronous
    }

    #[test]
    fn sqlite_commits_are_flushed_as_configured() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let url = DatabaseUrl::parse(path.to_str().unwrap()).unwrap();
        assert_eq!(level(&url), 1, "NORMAL unless asked");
        let full = url
            .clone()
            .with_synchronous(Synchronous::parse("FULL").unwrap());
        assert_eq!(level(&full), 2);
        assert_eq!(full.to_string(), url.to_string(), "shown as the path alone");
        assert_eq!(Synchronous::parse("normal").unwrap(), Synchronous::Normal);
        assert!(Synchronous::parse("off").is_err(), "OFF is not offered");
    }

    #[test]
    fn postgres_urls_ignore_the_sqlite_setting() {
        let url = DatabaseUrl::parse("postgres://u@h/db").unwrap();
        assert_eq!(url.clone().with_synchronous(Synchronous::Full), url);
    }
}
