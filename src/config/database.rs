//! `--database` and `--sqlite-synchronous`: where the database lives and
//! when a SQLite commit reaches the disk. Plain values, parsed from the
//! command line; `store` opens what they name.

use std::path::PathBuf;

/// Where the database lives: `--database` as a file path, `sqlite://PATH`,
/// or `postgres://…` / `postgresql://…`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite {
        path: PathBuf,
        synchronous: Synchronous,
    },
    Postgres {
        url: String,
    },
}

/// When a SQLite commit reaches the disk (`PRAGMA synchronous` in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// The WAL is flushed at checkpoints, not at each commit: a commit
    /// survives a crash of the process; a power loss or an operating-system
    /// crash can take the last ones.
    #[default]
    Normal,
    /// The WAL is flushed (`fsync`) at every commit, as PostgreSQL does by
    /// default: a commit also survives a power loss.
    Full,
}

impl Synchronous {
    /// `normal` or `full`, in any case.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "normal" => Ok(Synchronous::Normal),
            "full" => Ok(Synchronous::Full),
            _ => Err(format!("{value:?} is neither normal nor full")),
        }
    }
}

/// `normal` or `full`, as the setting is written (and as the `PRAGMA`
/// takes it: SQLite's keywords ignore case).
impl std::fmt::Display for Synchronous {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Synchronous::Normal => "normal",
            Synchronous::Full => "full",
        })
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Shown in logs: the path, or the PostgreSQL URL without its password.
impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseUrl::Sqlite { path, .. } => write!(f, "{}", path.display()),
            DatabaseUrl::Postgres { url } => write!(f, "{}", redact_password(url)),
        }
    }
}

fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

impl DatabaseUrl {
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.starts_with("postgres://") || value.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres {
                url: value.to_owned(),
            });
        }
        let path = value
            .strip_prefix("sqlite://")
            .or_else(|| value.strip_prefix("sqlite:"))
            .unwrap_or(value);
        if path.is_empty() {
            return Err("the database path is empty".into());
        }
        Ok(DatabaseUrl::Sqlite {
            path: PathBuf::from(path),
            synchronous: Synchronous::default(),
        })
    }

    /// The same database, its SQLite commits flushed as `synchronous` says
    /// (PostgreSQL: unchanged, its server decides).
    pub fn with_synchronous(self, synchronous: Synchronous) -> Self {
        match self {
            DatabaseUrl::Sqlite { path, .. } => DatabaseUrl::Sqlite { path, synchronous },
            postgres => postgres,
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, DatabaseUrl::Postgres { .. })
    }

    /// When SQLite commits reach the disk, if this is SQLite.
    pub fn sqlite_synchronous(&self) -> Option<Synchronous> {
        match self {
            DatabaseUrl::Sqlite { synchronous, .. } => Some(*synchronous),
            DatabaseUrl::Postgres { .. } => None,
        }
    }

    /// The SQLite file, if this is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match self {
            DatabaseUrl::Sqlite { path, .. } => Some(path),
            DatabaseUrl::Postgres { .. } => None,
        }
    }
}
