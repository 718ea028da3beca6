//! The `switchboard` binary: parse the command line, run the command. An
//! error ends the process with status 1 and one line on stderr,
//! `switchboard: <error>: <cause>…`, never a backtrace (`RUST_BACKTRACE`
//! is for panics only).

use std::process::ExitCode;

use clap::Parser;

use switchboard::cli;
use switchboard::cli::{Cli, Command};
use switchboard::startup::Application;
use switchboard::telemetry;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("switchboard: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, outermost first, on one line.
fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

fn run(args: Cli) -> anyhow::Result<()> {
    match args.command {
        None => serve(args.serve),
        Some(Command::Serve(serve_args)) => serve(*serve_args),
        Some(Command::Migrate(db)) => cli::migrate(&db),
        Some(Command::Prune(prune)) => cli::prune(&prune),
        Some(Command::Tail(tail)) => cli::tail::run(&tail),
        Some(Command::Publish(publish)) => cli::publish::run(&publish),
        Some(Command::Subscriptions(subscriptions)) => cli::subscriptions::run(&subscriptions),
        Some(Command::Mcp(mcp)) => switchboard::mcp::run(&mcp),
    }
}

fn serve(args: switchboard::config::ServeArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(args).await?;
        app.run_until_stopped().await?;
        Ok(())
    })
}
