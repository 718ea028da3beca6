//! The commands besides `serve`: `migrate`, `prune`, `tail`, `publish` and
//! `bench`, and the client-side SSE parser they and the tests share.

pub mod bench;
pub mod publish;
pub mod sse;
pub mod tail;

use anyhow::Context;

use crate::config::{DatabaseArgs, PruneArgs};
use crate::domain::Timestamp;
use crate::store;

/// `switchboard migrate`: apply the embedded migrations and exit.
pub fn migrate(args: &DatabaseArgs) -> anyhow::Result<()> {
    let applied = store::run_migrations(&args.database)
        .with_context(|| format!("cannot migrate {}", args.database))?;
    if applied.is_empty() {
        println!("{}: up to date", args.database);
    }
    for name in applied {
        println!("applied {name}");
    }
    Ok(())
}

/// `switchboard prune`: delete events older than the retention once and exit.
pub fn prune(args: &PruneArgs) -> anyhow::Result<()> {
    store::run_migrations(&args.db.database)?;
    let cutoff = Timestamp::now().minus(chrono::Duration::from_std(args.retention)?);
    let pruned = store::prune_direct(&args.db.database, cutoff, 1000)?;
    println!("pruned {pruned} events written before {cutoff}");
    Ok(())
}
