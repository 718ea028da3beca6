//! Opening the SQLite database: the connection pool with the pragmas a server
//! needs, and the migrations embedded in the binary.

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, PooledConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use super::StoreError;

pub type Pool = diesel::r2d2::Pool<ConnectionManager<SqliteConnection>>;
pub type PooledConn = PooledConnection<ConnectionManager<SqliteConnection>>;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// How long a connection waits for a lock before SQLite answers "busy".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the database lives: `--database` as a file path or `sqlite://PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    pub path: PathBuf,
}

impl DatabaseUrl {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Err(
                "PostgreSQL is not supported by this build yet; use a SQLite file path".into(),
            );
        }
        let path = value
            .strip_prefix("sqlite://")
            .or_else(|| value.strip_prefix("sqlite:"))
            .unwrap_or(value);
        if path.is_empty() {
            return Err("the database path is empty".into());
        }
        Ok(DatabaseUrl {
            path: PathBuf::from(path),
        })
    }

    fn as_diesel_url(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// A connection set up like every pooled one, for the writer and the CLI.
    pub fn connect(&self) -> Result<SqliteConnection, StoreError> {
        let mut conn = SqliteConnection::establish(&self.as_diesel_url()).map_err(|e| {
            StoreError::Unavailable(format!("cannot open {}: {e}", self.path.display()))
        })?;
        configure(&mut conn)?;
        Ok(conn)
    }
}

fn configure(conn: &mut SqliteConnection) -> Result<(), diesel::result::Error> {
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {};
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -16000;",
        BUSY_TIMEOUT.as_millis()
    ))
}

#[derive(Debug)]
struct Pragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for Pragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        configure(conn).map_err(diesel::r2d2::Error::QueryError)
    }
}

/// The read pool. Writes never go through it: they go to the one writer.
pub fn open_pool(url: &DatabaseUrl, size: u32) -> Result<Pool, StoreError> {
    let manager = ConnectionManager::<SqliteConnection>::new(url.as_diesel_url());
    diesel::r2d2::Pool::builder()
        .max_size(size)
        .connection_timeout(Duration::from_secs(10))
        .connection_customizer(Box::new(Pragmas))
        .build(manager)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", url.path.display())))
}

/// Applies the embedded migrations that this database lacks.
pub fn run_migrations(url: &DatabaseUrl) -> Result<Vec<String>, StoreError> {
    let mut conn = url.connect()?;
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| StoreError::Unavailable(format!("migrations failed: {e}")))?;
    Ok(applied.iter().map(ToString::to_string).collect())
}
