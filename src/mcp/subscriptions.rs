//! The tools for subscriptions on channels: wake a webhook (a CI job, an
//! agent launcher) when matching events are written, or make a pull
//! subscription that workers drain with claims. Each is one REST call.

use reqwest::Method;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{schemars, tool, tool_router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{segment, Call};
use super::tools::{answer, done, ToolResult, Tools};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateSubscription {
    /// The subscription's name: 1–64 of letters, digits, `_ . -`.
    pub id: String,
    /// Channel patterns, as for the stream: `features`, `agents/*`.
    pub channels: Vec<String>,
    /// Only events of these types (e.g. `status_changed`); every type when left out.
    pub types: Option<Vec<String>>,
    /// POST the events here (signed); leave it out for a pull subscription.
    pub webhook_url: Option<String>,
    /// Events per webhook request or claim, 1–1000 (default 100).
    #[schemars(range(min = 1, max = 1000))]
    pub batch_size: Option<i64>,
    /// `now` (default), `beginning`, or an event id to start after.
    pub start: Option<Value>,
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SubscriptionRef {
    /// The subscription's name.
    pub id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ClaimEvents {
    /// The pull subscription's name.
    pub id: String,
    /// At most this many events, 1–1000 (default: the subscription's batch size).
    #[schemars(range(min = 1, max = 1000))]
    pub max: Option<i64>,
    /// How long the claim is yours, 1–3600 s (default: the subscription's); ack before it ends.
    #[schemars(range(min = 1, max = 3600))]
    pub lease_seconds: Option<i64>,
    /// Wait up to this long for events when none is claimable, 0–30 s (default 0).
    #[schemars(range(min = 0, max = 30))]
    pub wait_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ClaimRef {
    /// The pull subscription's name.
    pub id: String,
    /// The claim's id, as claim_events returned it.
    pub claim: String,
}

fn path(id: &str, rest: &str) -> String {
    format!("/api/subscriptions/{}{rest}", segment(id))
}

fn describe(s: &Value) -> String {
    let target = s["webhook"]["url"]
        .as_str()
        .map_or_else(|| "pull".to_owned(), |url| format!("webhook {url}"));
    format!(
        "{} ({target}) on {}: acked through {}, {} delivered, {}",
        s["id"].as_str().unwrap_or("?"),
        s["channels"],
        s["acked_through"],
        s["delivered"],
        s["state"].as_str().unwrap_or("?"),
    )
}

#[tool_router(router = subscription_router, vis = "pub(super)")]
impl Tools {
    #[tool(
        description = "List the subscriptions on channels: webhooks that wake workers and pull subscriptions, with each one's cursor, delivered count and state."
    )]
    async fn list_subscriptions(&self) -> ToolResult {
        answer(
            async {
                let body = self.api.send(Call::get("/api/subscriptions")).await?.body;
                let all = body["subscriptions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let lines: Vec<String> = all.iter().map(describe).collect();
                Ok(done(
                    format!("{} subscriptions:\n{}", all.len(), lines.join("\n")),
                    body,
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Create or change a subscription on channels: with webhook_url, matching events are POSTed there (signed, at least once, in order) even when nobody is connected; without it, workers claim them with claim_events. A new one starts after the newest event unless start says otherwise."
    )]
    async fn create_subscription(
        &self,
        Parameters(p): Parameters<CreateSubscription>,
    ) -> ToolResult {
        answer(
            async {
                let mut body = json!({ "channels": p.channels });
                match p.webhook_url {
                    Some(url) => body["webhook"] = json!({ "url": url }),
                    None => body["kind"] = json!("pull"),
                }
                for (name, value) in [
                    ("types", p.types.map(|t| json!(t))),
                    ("batch_size", p.batch_size.map(|b| json!(b))),
                    ("start", p.start),
                    ("description", p.description.map(|d| json!(d))),
                ] {
                    if let Some(value) = value {
                        body[name] = value;
                    }
                }
                let call = Call::new(Method::PUT, path(&p.id, "")).body(body);
                let made = self.api.send(call).await?.body;
                Ok(done(describe(&made), made))
            }
            .await,
        )
    }

    #[tool(
        description = "Delete a subscription; its webhook gets nothing more and its claims end."
    )]
    async fn delete_subscription(&self, Parameters(p): Parameters<SubscriptionRef>) -> ToolResult {
        answer(
            async {
                self.api
                    .send(Call::new(Method::DELETE, path(&p.id, "")))
                    .await?;
                Ok(done(format!("{} deleted", p.id), json!({ "id": p.id })))
            }
            .await,
        )
    }

    #[tool(
        description = "Claim the next events of a pull subscription: they are yours alone until the lease ends. Process them, then ack_claim (or release_claim to hand them back). claim is null when nothing is waiting."
    )]
    async fn claim_events(&self, Parameters(p): Parameters<ClaimEvents>) -> ToolResult {
        answer(
            async {
                let mut body = json!({ "worker": self.api.session_id });
                for (name, value) in [
                    ("max", p.max),
                    ("lease_seconds", p.lease_seconds),
                    ("wait_seconds", p.wait_seconds),
                ] {
                    if let Some(value) = value {
                        body[name] = json!(value);
                    }
                }
                let call = Call::new(Method::POST, path(&p.id, "/claims")).body(body);
                let claimed = self.api.send(call).await?.body;
                let text = match claimed["claim"]["id"].as_str() {
                    Some(claim) => format!(
                        "claim {claim}: {} events, until {}",
                        claimed["events"].as_array().map_or(0, Vec::len),
                        claimed["claim"]["lease_expires_at"].as_str().unwrap_or("?")
                    ),
                    None => "nothing to claim".to_owned(),
                };
                Ok(done(text, claimed))
            }
            .await,
        )
    }

    #[tool(description = "Acknowledge a claim's events as done; they are never handed out again.")]
    async fn ack_claim(&self, Parameters(p): Parameters<ClaimRef>) -> ToolResult {
        answer(
            async {
                let rest = format!("/claims/{}/ack", segment(&p.claim));
                let acked = self
                    .api
                    .send(Call::new(Method::POST, path(&p.id, &rest)))
                    .await?
                    .body;
                Ok(done(
                    format!("acked; {} acked through {}", p.id, acked["acked_through"]),
                    acked,
                ))
            }
            .await,
        )
    }

    #[tool(description = "Hand a claim's events back at once, for another worker to claim.")]
    async fn release_claim(&self, Parameters(p): Parameters<ClaimRef>) -> ToolResult {
        answer(
            async {
                let rest = format!("/claims/{}/release", segment(&p.claim));
                self.api
                    .send(Call::new(Method::POST, path(&p.id, &rest)))
                    .await?;
                Ok(done(
                    format!("claim {} released", p.claim),
                    json!({ "id": p.id, "claim": p.claim }),
                ))
            }
            .await,
        )
    }
}
