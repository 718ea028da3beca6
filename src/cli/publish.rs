//! `switchboard publish CHANNEL TYPE DATA`: publish one event and print it.

use clap::Args;

#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// The server's base URL.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Who publishes (sent as `X-Agent-ID`); a token bound to an agent allows only that one.
    #[arg(long, env = "SWITCHBOARD_AGENT_ID")]
    pub agent_id: Option<String>,
    /// The publishing session (`X-Session-ID`): its own streams skip the event.
    #[arg(long, env = "SWITCHBOARD_SESSION_ID")]
    pub session_id: Option<String>,
    /// The kind of resource the event is about (`resource_type`), e.g. `doc`.
    #[arg(long)]
    pub resource_type: Option<String>,
    /// The resource the event is about (`resource_id`), for `--resource-ids` filters.
    #[arg(long)]
    pub resource_id: Option<String>,
    /// Retrying with the same key publishes once.
    #[arg(long)]
    pub idempotency_key: Option<String>,
    /// The channel to publish on.
    pub channel: String,
    /// The event type.
    #[arg(value_name = "TYPE")]
    pub event_type: String,
    /// The event's data, as JSON (default `{}`).
    #[arg(default_value = "{}")]
    pub data: String,
}

pub fn run(args: &PublishArgs) -> anyhow::Result<()> {
    let data: serde_json::Value =
        serde_json::from_str(&args.data).map_err(|e| anyhow::anyhow!("DATA is not JSON: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut body = serde_json::json!({ "type": args.event_type, "data": data });
        if let Some(t) = &args.resource_type {
            body["resource_type"] = t.clone().into();
        }
        if let Some(r) = &args.resource_id {
            body["resource_id"] = r.clone().into();
        }
        let mut channel = String::new();
        for byte in args.channel.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                    channel.push(byte as char)
                }
                other => channel.push_str(&format!("%{other:02X}")),
            }
        }
        let mut request = reqwest::Client::new()
            .post(format!(
                "{}/api/channels/{channel}/events",
                args.url.trim_end_matches('/')
            ))
            .json(&body);
        for (name, value) in [
            ("X-Agent-ID", &args.agent_id),
            ("X-Session-ID", &args.session_id),
            ("Idempotency-Key", &args.idempotency_key),
        ] {
            if let Some(value) = value {
                request = request.header(name, value);
            }
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            anyhow::bail!("{status}: {text}");
        }
        println!("{text}");
        Ok(())
    })
}
