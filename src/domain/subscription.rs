//! Subscriptions on channels, as rules: what a `PUT /api/subscriptions/{id}`
//! body means, which events a subscription takes, who may manage it, and
//! how long a failed webhook waits before the next attempt. Plain Rust: no
//! HTTP, no database, no clock.

use std::time::Duration;

use serde::Deserialize;

use super::webhook::WebhookPolicy;
use super::{ChannelPattern, DomainError, Event, EventId, EventType};

/// Events handed out in one webhook request or claim, when none is named.
pub const DEFAULT_BATCH: i64 = 100;
pub const MAX_BATCH: i64 = 1000;
/// A claim's lease, when none is named, and its bounds (seconds).
pub const DEFAULT_LEASE_SECONDS: i64 = 30;
pub const MAX_LEASE_SECONDS: i64 = 3600;
/// The most channel patterns or event types one subscription names.
pub const MAX_PATTERNS: usize = 32;
/// The longest wait between two webhook attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// How a subscription hands its events over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Signed POSTs to a webhook URL, in id order, one batch at a time.
    Webhook,
    /// Workers claim ranges of events and ack them.
    Pull,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Pull => "pull",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "webhook" => Some(Kind::Webhook),
            "pull" => Some(Kind::Pull),
            _ => None,
        }
    }
}

/// Where a new subscription's cursor starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// After the newest event: only what is written from now on.
    Now,
    /// Before the oldest event the log still holds.
    Beginning,
    /// After this event id.
    After(EventId),
}

/// The webhook part of a request body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// `http` or `https`; private and loopback addresses are refused unless
    /// the server allows them (`--webhooks-allow-private`,
    /// `--webhooks-allow-loopback`).
    pub url: String,
}

/// The body of `PUT /api/subscriptions/{id}`. Any other field → 422.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"channels": ["features", "agents/*"], "types": ["status_changed"], "webhook": {"url": "https://ci.example.com/hooks/switchboard"}}))]
pub struct SubscriptionRequest {
    /// `webhook` (the default when `webhook` is given) or `pull`.
    #[schema(value_type = Option<String>)]
    pub kind: Option<String>,
    /// 1–32 channel patterns, as for the stream (`features`, `agents/*`).
    #[schema(min_items = 1, max_items = 32)]
    pub channels: Option<Vec<String>>,
    /// Only events of these types (1–32); every type when absent.
    #[schema(max_items = 32)]
    pub types: Option<Vec<String>>,
    pub webhook: Option<WebhookRequest>,
    /// Events per webhook request or claim: 1–1000, default 100.
    #[schema(minimum = 1, maximum = 1000)]
    pub batch_size: Option<i64>,
    /// A claim's lease when the worker names none: 1–3600 s, default 30.
    #[schema(minimum = 1, maximum = 3600)]
    pub lease_seconds: Option<i64>,
    /// Where a new subscription starts: `now` (default), `beginning`, or an
    /// event id to start after. Ignored when the subscription exists.
    #[schema(value_type = Option<serde_json::Value>)]
    pub start: Option<serde_json::Value>,
    /// Up to 500 characters, for people.
    #[schema(max_length = 500)]
    pub description: Option<String>,
}

/// Which events a subscription takes: channel patterns and, optionally,
/// event types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub channels: Vec<ChannelPattern>,
    pub types: Option<Vec<EventType>>,
}

impl Selection {
    pub fn matches(&self, event: &Event) -> bool {
        self.channels.iter().any(|p| p.matches(&event.channel))
            && self
                .types
                .as_ref()
                .is_none_or(|types| types.iter().any(|t| t.as_str() == event.event_type))
    }

    /// The channel patterns as stored (a JSON array of strings).
    pub fn channels_json(&self) -> String {
        let list: Vec<String> = self.channels.iter().map(ToString::to_string).collect();
        serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
    }

    /// The event types as stored, `None` for every type.
    pub fn types_json(&self) -> Option<String> {
        self.types.as_ref().map(|types| {
            let list: Vec<&str> = types.iter().map(EventType::as_str).collect();
            serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
        })
    }

    /// From the stored JSON; `None` when a row was damaged.
    pub fn from_stored(channels: &str, types: Option<&str>) -> Option<Selection> {
        let channels: Vec<String> = serde_json::from_str(channels).ok()?;
        let channels = channels
            .iter()
            .map(|c| ChannelPattern::parse("channels", c).ok())
            .collect::<Option<Vec<_>>>()?;
        let types = match types {
            None => None,
            Some(text) => {
                let list: Vec<String> = serde_json::from_str(text).ok()?;
                Some(
                    list.iter()
                        .map(|t| EventType::parse("types", t).ok())
                        .collect::<Option<Vec<_>>>()?,
                )
            }
        };
        Some(Selection { channels, types })
    }

    /// Whether a caller who may read `scope` (`None`: everything) may read
    /// every channel this selection matches: only then may it see, manage
    /// or consume the subscription.
    pub fn readable_within(&self, scope: Option<&[ChannelPattern]>) -> bool {
        match scope {
            None => true,
            Some(allowed) => self
                .channels
                .iter()
                .all(|wanted| allowed.iter().any(|a| a.covers(wanted))),
        }
    }
}

/// A subscription as its `PUT` body describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub kind: Kind,
    pub selection: Selection,
    pub webhook_url: Option<String>,
    pub batch_size: i64,
    pub lease_seconds: i64,
    pub start: Start,
    pub description: Option<String>,
}

fn invalid(field: &str, message: &str) -> DomainError {
    DomainError::validation(field, message)
}

fn bounded(field: &str, value: Option<i64>, default: i64, max: i64) -> Result<i64, DomainError> {
    match value {
        None => Ok(default),
        Some(v) if (1..=max).contains(&v) => Ok(v),
        Some(_) => Err(invalid(field, &format!("must be between 1 and {max}"))),
    }
}

fn parse_start(value: Option<&serde_json::Value>) -> Result<Start, DomainError> {
    match value {
        None => Ok(Start::Now),
        Some(serde_json::Value::String(s)) if s == "now" => Ok(Start::Now),
        Some(serde_json::Value::String(s)) if s == "beginning" => Ok(Start::Beginning),
        Some(serde_json::Value::Number(n)) => match n.as_i64() {
            Some(id) if id >= 0 => Ok(Start::After(EventId::from_stored(id))),
            _ => Err(invalid("start", "must be an event id of 0 or more")),
        },
        Some(_) => Err(invalid(
            "start",
            "must be \"now\", \"beginning\" or an event id",
        )),
    }
}

fn parse_selection(request: &SubscriptionRequest) -> Result<Selection, DomainError> {
    let channels = request
        .channels
        .as_ref()
        .ok_or_else(|| invalid("channels", "is required"))?;
    if channels.is_empty() || channels.len() > MAX_PATTERNS {
        return Err(invalid(
            "channels",
            &format!("must hold 1 to {MAX_PATTERNS} channel patterns"),
        ));
    }
    let mut patterns = Vec::with_capacity(channels.len());
    for (i, channel) in channels.iter().enumerate() {
        let pattern = ChannelPattern::parse(&format!("channels[{i}]"), channel)?;
        if !patterns.contains(&pattern) {
            patterns.push(pattern);
        }
    }
    let types = match &request.types {
        None => None,
        Some(types) if types.is_empty() || types.len() > MAX_PATTERNS => {
            return Err(invalid(
                "types",
                &format!("must hold 1 to {MAX_PATTERNS} event types (leave it out for every type)"),
            ))
        }
        Some(types) => {
            let mut parsed = Vec::with_capacity(types.len());
            for (i, t) in types.iter().enumerate() {
                let t = EventType::parse(&format!("types[{i}]"), t)?;
                if !parsed.contains(&t) {
                    parsed.push(t);
                }
            }
            Some(parsed)
        }
    };
    Ok(Selection {
        channels: patterns,
        types,
    })
}

impl Spec {
    /// Checks a `PUT` body; a webhook URL the policy refuses is a 422 on
    /// `webhook.url` (nothing is connected to find out).
    pub fn parse(
        request: &SubscriptionRequest,
        policy: &WebhookPolicy,
    ) -> Result<Spec, DomainError> {
        let kind = match request.kind.as_deref() {
            None if request.webhook.is_some() => Kind::Webhook,
            None => Kind::Pull,
            Some(text) => Kind::parse(text)
                .ok_or_else(|| invalid("kind", "must be \"webhook\" or \"pull\""))?,
        };
        let webhook_url = match (kind, &request.webhook) {
            (Kind::Webhook, Some(hook)) => {
                if let Some(reason) = policy.refuse_url(&hook.url) {
                    let message = reason.strip_prefix("webhook.url ").unwrap_or(reason);
                    return Err(invalid("webhook.url", message));
                }
                Some(hook.url.clone())
            }
            (Kind::Webhook, None) => {
                return Err(invalid("webhook", "is required for a webhook subscription"))
            }
            (Kind::Pull, Some(_)) => {
                return Err(invalid(
                    "webhook",
                    "must be left out of a pull subscription",
                ))
            }
            (Kind::Pull, None) => None,
        };
        if let Some(text) = &request.description {
            if text.chars().count() > 500 {
                return Err(invalid("description", "must be at most 500 characters"));
            }
        }
        Ok(Spec {
            kind,
            selection: parse_selection(request)?,
            webhook_url,
            batch_size: bounded("batch_size", request.batch_size, DEFAULT_BATCH, MAX_BATCH)?,
            lease_seconds: bounded(
                "lease_seconds",
                request.lease_seconds,
                DEFAULT_LEASE_SECONDS,
                MAX_LEASE_SECONDS,
            )?,
            start: parse_start(request.start.as_ref())?,
            description: request.description.clone().filter(|d| !d.is_empty()),
        })
    }
}

/// The wait before attempt `failures + 1` of a webhook that failed
/// `failures` times in a row: 1 s doubling to at most a minute, times
/// `jitter` (drawn from 0.5–1.0 by the caller, so that receivers that come
/// back are not hit by every subscription at once).
pub fn retry_delay(failures: i64, jitter: f64) -> Duration {
    let exponent = failures.clamp(1, 7) - 1;
    let base = Duration::from_secs(1u64 << exponent).min(MAX_RETRY_DELAY);
    base.mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: serde_json::Value) -> SubscriptionRequest {
        serde_json::from_value(json).expect("a body")
    }

    const LOOPBACK: WebhookPolicy = WebhookPolicy {
        allow_loopback: true,
        allow_private: false,
        hosts: Vec::new(),
    };

    #[test]
    fn a_webhook_body_is_read_with_its_defaults() {
        let spec = Spec::parse(
            &request(serde_json::json!({
                "channels": ["features", "agents/*", "features"],
                "webhook": {"url": "http://127.0.0.1:9/hook"},
            })),
            &LOOPBACK,
        )
        .expect("valid");
        assert_eq!(spec.kind, Kind::Webhook);
        assert_eq!(spec.selection.channels.len(), 2);
        assert_eq!(spec.batch_size, DEFAULT_BATCH);
        assert_eq!(spec.start, Start::Now);
        assert_eq!(spec.selection.channels_json(), r#"["features","agents/*"]"#);
    }

    #[test]
    fn bad_bodies_name_their_field() {
        let field = |json: serde_json::Value| match Spec::parse(&request(json), &LOOPBACK) {
            Err(DomainError::Validation { field, .. }) => field,
            other => panic!("expected a validation error, got {other:?}"),
        };
        assert_eq!(field(serde_json::json!({"kind": "pull"})), "channels");
        assert_eq!(field(serde_json::json!({"channels": []})), "channels");
        assert_eq!(
            field(serde_json::json!({"channels": ["a b"]})),
            "channels[0]"
        );
        assert_eq!(
            field(serde_json::json!({"channels": ["a"], "kind": "webhook"})),
            "webhook"
        );
        assert_eq!(
            field(serde_json::json!({"channels": ["a"], "webhook": {"url": "http://10.0.0.1/"}})),
            "webhook.url"
        );
        assert_eq!(
            field(serde_json::json!({"channels": ["a"], "batch_size": 0})),
            "batch_size"
        );
        assert_eq!(
            field(serde_json::json!({"channels": ["a"], "types": []})),
            "types"
        );
        assert_eq!(
            field(serde_json::json!({"channels": ["a"], "start": -1})),
            "start"
        );
    }

    #[test]
    fn a_scope_covers_a_selection_only_if_it_covers_every_pattern() {
        let selection = |channels: &[&str]| Selection {
            channels: channels
                .iter()
                .map(|c| ChannelPattern::parse("c", c).expect("pattern"))
                .collect(),
            types: None,
        };
        let scope = [
            ChannelPattern::parse("s", "agents/*").expect("pattern"),
            ChannelPattern::parse("s", "features").expect("pattern"),
        ];
        assert!(
            selection(&["agents/review", "agents/x*", "features"]).readable_within(Some(&scope))
        );
        assert!(!selection(&["agents*"]).readable_within(Some(&scope)));
        assert!(!selection(&["features*"]).readable_within(Some(&scope)));
        assert!(selection(&["*"]).readable_within(None));
    }

    #[test]
    fn retries_back_off_to_a_minute() {
        assert_eq!(retry_delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(3, 1.0), Duration::from_secs(4));
        assert_eq!(retry_delay(40, 1.0), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(2, 0.5), Duration::from_secs(1));
    }
}
