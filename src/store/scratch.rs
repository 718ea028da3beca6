//! Throw-away PostgreSQL databases, for the benchmark's runs and the tests:
//! created on a server the caller names and dropped, with any connection
//! still open to them, when done.

use super::StoreError;

#[derive(Debug, Clone)]
pub struct ScratchDatabase {
    /// The new database's URL, for `--database`.
    pub url: String,
    name: String,
    admin_url: String,
}

impl ScratchDatabase {
    /// Creates the database `name` (letters, digits and `_`) on the server
    /// that `admin_url` connects to, replacing a leftover of the same name.
    /// `admin_url` must name an existing database, e.g.
    /// `postgres://postgres@127.0.0.1:5432/test`.
    pub async fn create(admin_url: &str, name: &str) -> Result<Self, StoreError> {
        let (base, _) = admin_url.rsplit_once('/').ok_or_else(|| {
            StoreError::Unavailable(format!(
                "{admin_url:?} names no database (postgres://USER@HOST:PORT/DB)"
            ))
        })?;
        execute(
            admin_url,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        )
        .await?;
        execute(admin_url, &format!("CREATE DATABASE {name}")).await?;
        Ok(ScratchDatabase {
            url: format!("{base}/{name}"),
            name: name.to_owned(),
            admin_url: admin_url.to_owned(),
        })
    }

    /// Drops the database, ending the connections still open to it.
    pub async fn drop_database(&self) -> Result<(), StoreError> {
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        execute(&self.admin_url, &statement).await
    }
}

/// Runs `statement` on its own connection to `url`.
pub async fn execute(url: &str, statement: &str) -> Result<(), StoreError> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cannot connect to {url}: {e}")))?;
    let driver = tokio::spawn(connection);
    let done = client
        .batch_execute(statement)
        .await
        .map_err(|e| StoreError::Unavailable(format!("{statement}: {e}")));
    drop(client);
    let _ = driver.await;
    done
}
