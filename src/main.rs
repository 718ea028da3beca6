use clap::Parser;

use switchboard::cli;
use switchboard::cli::{Cli, Command};
use switchboard::startup::Application;
use switchboard::telemetry;

fn main() -> anyhow::Result<()> {
    let args = Cli::parse();
    match args.command {
        None => serve(args.serve),
        Some(Command::Serve(serve_args)) => serve(serve_args),
        Some(Command::Migrate(db)) => cli::migrate(&db),
        Some(Command::Prune(prune)) => cli::prune(&prune),
        Some(Command::Tail(tail)) => cli::tail::run(&tail),
        Some(Command::Publish(publish)) => cli::publish::run(&publish),
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
