//! `switchboard mcp`: an MCP server over stdio (the official Rust SDK,
//! `rmcp`) that puts a running switchboard in front of a coding agent. One
//! process is one agent session: its `X-Session-ID` stays the same for the
//! process's life. It talks to the server over the REST API and one stream;
//! it keeps no state of its own beyond the session's event cursor and the
//! leases it renews. See docs/agents.md.

mod api;
mod feed;
mod subscriptions;
mod tools;

use anyhow::Context;
use rmcp::ServiceExt;

use api::{Api, Call};
use feed::Feed;
use tools::Tools;

pub use crate::config::McpArgs;

pub fn run(args: &McpArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(args))
}

async fn serve(args: &McpArgs) -> anyhow::Result<()> {
    let session = match &args.session_id {
        Some(session) => session.clone(),
        None => crate::domain::ids::new_id("mcp-").to_string(),
    };
    let api = Api::new(
        &args.server,
        args.token.clone(),
        args.agent_id.clone(),
        session,
    )?;
    let start = check_server(&api).await?;
    let tools = Tools::new(api.clone(), Feed::start(api, start));
    let service = tools
        .clone()
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP handshake on stdin/stdout failed")?;
    let ended = service.waiting().await;
    tools.release_all().await;
    ended.context("the MCP session ended with an error")?;
    Ok(())
}

/// Reads the newest event once: a wrong address, a server that is not
/// switchboard, or a refused token ends the process here, with the reason.
/// Answers where `wait_for_events` starts.
async fn check_server(api: &Api) -> anyhow::Result<i64> {
    let answer = api
        .send(
            Call::get("/api/events")
                .query("order", Some("desc"))
                .query("limit", Some(1)),
        )
        .await
        .map_err(|failure| match failure.status {
            0 => anyhow::anyhow!(
                "cannot reach the switchboard server at {}: {}",
                api.base(),
                failure.message
            ),
            401 | 403 => anyhow::anyhow!(
                "the switchboard server at {} refused the token or agent ({failure}); check --token and --agent-id",
                api.base()
            ),
            _ => anyhow::anyhow!(
                "{} does not answer like a switchboard server ({failure})",
                api.base()
            ),
        })?;
    answer.body["events"]
        .as_array()
        .map(|events| events.first().and_then(|e| e["id"].as_i64()).unwrap_or(0))
        .ok_or_else(|| anyhow::anyhow!("{} does not answer like a switchboard server", api.base()))
}
