//! `switchboard subscriptions …`: manage subscriptions on channels and
//! work a pull subscription from a shell (a cron job, a CI step). Each
//! command is one REST call to a running server; it prints the answer's
//! JSON and fails with the server's error.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

#[derive(Debug, Clone, Args)]
pub struct SubscriptionsArgs {
    /// The server's base URL.
    #[arg(long, env = "SWITCHBOARD_URL", default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// A bearer token, when the server runs with --tokens or JWTs.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Who acts (sent as `X-Agent-ID`).
    #[arg(long, env = "SWITCHBOARD_AGENT_ID")]
    pub agent_id: Option<String>,
    #[command(subcommand)]
    pub command: SubscriptionCommand,
}

#[derive(Debug, Clone, Subcommand)]
pub enum SubscriptionCommand {
    /// List the subscriptions the token may see.
    List,
    /// Show one subscription: its cursor, delivery state and claims.
    Show {
        /// The subscription's name.
        id: String,
    },
    /// Make (or change) a subscription: a webhook with --webhook, else pull.
    Create {
        /// The subscription's name: 1–64 of letters, digits, `_ . -`.
        id: String,
        /// A channel pattern (repeatable): `features`, `agents/*`.
        #[arg(long = "channel", required = true)]
        channels: Vec<String>,
        /// Only events of this type (repeatable); every type when left out.
        #[arg(long = "type")]
        types: Vec<String>,
        /// POST matching events to this URL (signed); without it, a pull subscription.
        #[arg(long)]
        webhook: Option<String>,
        /// Events per webhook request or claim (1–1000, default 100).
        #[arg(long)]
        batch_size: Option<i64>,
        /// A claim's default lease in seconds (1–3600, default 30).
        #[arg(long)]
        lease_seconds: Option<i64>,
        /// `now` (default), `beginning`, or an event id to start after.
        #[arg(long)]
        start: Option<String>,
        /// A note for people.
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a subscription.
    Delete {
        /// The subscription's name.
        id: String,
    },
    /// Make a waiting webhook try again now.
    Retry {
        /// The subscription's name.
        id: String,
    },
    /// Claim the next events of a pull subscription (prints the claim and events).
    Claim {
        /// The subscription's name.
        id: String,
        /// At most this many events (1–1000).
        #[arg(long)]
        max: Option<i64>,
        /// The claim's lease in seconds (1–3600).
        #[arg(long)]
        lease_seconds: Option<i64>,
        /// Wait up to this many seconds for events (0–30).
        #[arg(long)]
        wait_seconds: Option<i64>,
        /// Who claims, for people reading the claims.
        #[arg(long)]
        worker: Option<String>,
    },
    /// Acknowledge a claim: its events are done.
    Ack {
        /// The subscription's name.
        id: String,
        /// The claim's id.
        claim: String,
    },
    /// Hand a claim's events back for another worker.
    Release {
        /// The subscription's name.
        id: String,
        /// The claim's id.
        claim: String,
    },
}

fn segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The fields given, as a JSON object.
fn object(fields: Vec<(&str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(name, value)| value.map(|v| (name.to_owned(), v)))
            .collect(),
    )
}

fn start(text: &str) -> Value {
    text.parse::<i64>()
        .map_or_else(|_| json!(text), |id| json!(id))
}

/// The method, path and body of a command.
fn request(command: &SubscriptionCommand) -> (Method, String, Option<Value>) {
    use SubscriptionCommand as C;
    let at = |id: &str, rest: &str| format!("/api/subscriptions/{}{rest}", segment(id));
    match command {
        C::List => (Method::GET, "/api/subscriptions".into(), None),
        C::Show { id } => (Method::GET, at(id, ""), None),
        C::Delete { id } => (Method::DELETE, at(id, ""), None),
        C::Retry { id } => (Method::POST, at(id, "/retry"), None),
        C::Create {
            id,
            channels,
            types,
            webhook,
            batch_size,
            lease_seconds,
            start: from,
            description,
        } => {
            let body = object(vec![
                ("channels", Some(json!(channels))),
                ("types", (!types.is_empty()).then(|| json!(types))),
                (
                    "kind",
                    Some(json!(if webhook.is_some() { "webhook" } else { "pull" })),
                ),
                ("webhook", webhook.as_ref().map(|url| json!({ "url": url }))),
                ("batch_size", batch_size.map(|b| json!(b))),
                ("lease_seconds", lease_seconds.map(|l| json!(l))),
                ("start", from.as_deref().map(start)),
                ("description", description.as_ref().map(|d| json!(d))),
            ]);
            (Method::PUT, at(id, ""), Some(body))
        }
        C::Claim {
            id,
            max,
            lease_seconds,
            wait_seconds,
            worker,
        } => {
            let body = object(vec![
                ("max", max.map(|m| json!(m))),
                ("lease_seconds", lease_seconds.map(|l| json!(l))),
                ("wait_seconds", wait_seconds.map(|w| json!(w))),
                ("worker", worker.as_ref().map(|w| json!(w))),
            ]);
            (Method::POST, at(id, "/claims"), Some(body))
        }
        C::Ack { id, claim } => (
            Method::POST,
            at(id, &format!("/claims/{}/ack", segment(claim))),
            None,
        ),
        C::Release { id, claim } => (
            Method::POST,
            at(id, &format!("/claims/{}/release", segment(claim))),
            None,
        ),
    }
}

pub fn run(args: &SubscriptionsArgs) -> anyhow::Result<()> {
    let (method, path, body) = request(&args.command);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut call = reqwest::Client::new()
            .request(method, format!("{}{path}", args.url.trim_end_matches('/')));
        if let Some(body) = body {
            call = call.json(&body);
        }
        if let Some(token) = &args.token {
            call = call.bearer_auth(token);
        }
        if let Some(agent) = &args.agent_id {
            call = call.header("X-Agent-ID", agent);
        }
        let response = call.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            anyhow::bail!("{status}: {text}");
        }
        if !text.is_empty() {
            println!("{text}");
        }
        Ok(())
    })
}
