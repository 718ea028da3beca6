//! The command line: its subcommands (`Cli`, `Command`; their settings are
//! in `config`), the commands besides `serve` (`migrate`, `prune`, `tail`,
//! `publish`, `subscriptions`). The client-side SSE parser they use is
//! `crate::client::sse`, shared with `switchboard mcp`, the tests and the
//! load benchmark.

pub mod publish;
pub mod subscriptions;
pub mod tail;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{DatabaseArgs, PruneArgs, ServeArgs};
use crate::domain::Timestamp;
use crate::store;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "A sync service: REST writes, a durable event log, SSE streams that resume exactly."
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default command).
    Serve(Box<ServeArgs>),
    /// Apply the embedded migrations and exit.
    Migrate(DatabaseArgs),
    /// Prune events older than the retention once and exit.
    Prune(PruneArgs),
    /// Print events as JSON lines, resuming with Last-Event-ID after disconnects.
    Tail(tail::TailArgs),
    /// Publish one event: CHANNEL TYPE '{"json": "data"}'.
    Publish(publish::PublishArgs),
    /// Manage subscriptions on channels (webhooks, pull) and claim events.
    Subscriptions(subscriptions::SubscriptionsArgs),
    /// Serve the Model Context Protocol over stdio for one coding agent,
    /// talking to a running server (see docs/agents.md).
    Mcp(crate::config::McpArgs),
}

/// `switchboard migrate`: apply the embedded migrations and exit.
pub fn migrate(args: &DatabaseArgs) -> anyhow::Result<()> {
    let database = args.url();
    let applied =
        store::run_migrations(&database).with_context(|| format!("cannot migrate {database}"))?;
    if applied.is_empty() {
        println!("{database}: up to date");
    }
    for name in applied {
        println!("applied {name}");
    }
    Ok(())
}

/// `switchboard prune`: delete events older than the retention once and exit.
pub fn prune(args: &PruneArgs) -> anyhow::Result<()> {
    let database = args.db.url();
    store::run_migrations(&database)?;
    let cutoff = Timestamp::now().minus(chrono::Duration::from_std(args.retention)?);
    let pruned = store::prune_direct(&database, cutoff, 1000)?;
    println!("pruned {pruned} events written before {cutoff}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn serve_is_the_default_command_with_the_documented_defaults() {
        let cli = Cli::parse_from(["switchboard"]);
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.bind, "127.0.0.1:8000");
        assert_eq!(cli.serve.replay_count, 50);
        assert_eq!(cli.serve.retention, Duration::from_secs(86_400));
        assert_eq!(cli.serve.max_body, 1_048_576);
    }

    #[test]
    fn every_option_of_every_command_says_what_it_does() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let commands = std::iter::once(&cli).chain(cli.get_subcommands());
        for command in commands {
            for arg in command.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                assert!(
                    arg.get_help()
                        .is_some_and(|help| !help.to_string().is_empty()),
                    "`{} --{id}` has no description in --help",
                    command.get_name()
                );
            }
        }
    }

    #[test]
    fn the_database_option_names_both_backends() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve");
        let database = serve
            .get_arguments()
            .find(|a| a.get_id() == "database")
            .and_then(|a| a.get_help())
            .map(|help| help.to_string())
            .unwrap_or_default();
        assert!(database.contains("sqlite://"), "{database}");
        assert!(database.contains("postgres://"), "{database}");
    }
}
