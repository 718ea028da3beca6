//! Errors of the storage layer. A writer job may also reject a change with a
//! `DomainError` (`StoreError::Rejected`); its savepoint is then rolled back
//! and the other requests of the same group commit are unaffected.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::domain::DomainError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Rejected(#[from] DomainError),
    /// The database cannot take the request now (locked, full, read-only,
    /// the writer is gone): the client may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(DieselError),
    #[error("connection pool: {0}")]
    Pool(#[from] diesel::r2d2::PoolError),
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<DieselError> for StoreError {
    fn from(err: DieselError) -> Self {
        if let DieselError::BrokenTransactionManager = &err {
            return StoreError::Unavailable("the database connection broke".into());
        }
        if let DieselError::DatabaseError(kind, info) = &err {
            let message = info.message();
            // SQLite: locked, full, read-only. PostgreSQL: the connection
            // was cut, or the server is starting up or shutting down.
            let transient = matches!(kind, DatabaseErrorKind::ClosedConnection)
                || matches!(kind, DatabaseErrorKind::Unknown)
                    && [
                        "locked",
                        "busy",
                        "full",
                        "readonly",
                        "read-only",
                        "disk I/O",
                        "terminating connection",
                        "server closed the connection",
                        "connection to server",
                        "no connection to the server",
                        "the database system is",
                    ]
                    .iter()
                    .any(|needle| message.contains(needle));
            if transient {
                return StoreError::Unavailable(message.to_owned());
            }
        }
        StoreError::Database(err)
    }
}

/// A time read back from the database: the text `Timestamp` wrote.
pub(crate) fn stored_time(
    text: &str,
    what: impl FnOnce() -> String,
) -> Result<crate::domain::Timestamp, StoreError> {
    stored("time", crate::domain::Timestamp::parse, text, what)
}

/// A value read back from the database with the `parse` that checked it on
/// the way in; text it refuses now is a corrupt row.
fn stored<T>(
    name: &str,
    parse: fn(&str, &str) -> Result<T, DomainError>,
    text: &str,
    what: impl FnOnce() -> String,
) -> Result<T, StoreError> {
    parse(name, text).map_err(|_| StoreError::Corrupt(format!("{}: bad {name} {text:?}", what())))
}

/// An id read back from the database: the text a `ResourceId` wrote.
pub(crate) fn stored_id(
    text: String,
    what: impl FnOnce() -> String,
) -> Result<crate::domain::ResourceId, StoreError> {
    stored("id", crate::domain::ResourceId::parse, &text, what)
}

/// An agent read back from the database (`created_by`, a lock's holder…).
pub(crate) fn stored_agent(
    text: String,
    what: impl FnOnce() -> String,
) -> Result<crate::domain::AgentId, StoreError> {
    stored("agent", crate::domain::AgentId::parse, &text, what)
}

/// A session read back from the database (a lock's session).
pub(crate) fn stored_session(
    text: String,
    what: impl FnOnce() -> String,
) -> Result<crate::domain::SessionId, StoreError> {
    stored("session", crate::domain::SessionId::parse, &text, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_id_that_is_not_an_id_is_corrupt() {
        assert_eq!(
            stored_id("feat-1".into(), || "row".into())
                .unwrap()
                .as_str(),
            "feat-1"
        );
        let err = stored_id("has space".into(), || "work item x".into()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(m) if m.contains("work item x: bad id")));
        let err = stored_agent(String::new(), || "file f".into()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(m) if m.contains("file f: bad agent")));
    }
}
