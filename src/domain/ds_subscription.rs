//! Durable Streams subscriptions, as rules: what a subscription request
//! means (its kind, pattern, explicit streams, webhook or wake stream, lease),
//! which stream paths a pattern matches, which webhook URLs are refused, and
//! how offsets compare. Plain Rust: no HTTP, no database, no clock.
//!
//! Stream paths here are *relative* to `/v1/stream/` (`events/a`), as the
//! protocol's subscription API names them; a stream's row is keyed by its
//! absolute path (`/v1/stream/events/a`).

use super::webhook::WebhookPolicy;

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Where every Durable Stream lives.
pub const STREAM_ROOT: &str = "/v1/stream/";
/// An acked offset before the first message (a stream linked by a pattern
/// when it first changes: everything in it is pending).
pub const BEFORE_FIRST: &str = "-1";
/// The lease a subscription gets when it names none, and its bounds.
pub const DEFAULT_LEASE_TTL_MS: i64 = 30_000;
pub const MIN_LEASE_TTL_MS: i64 = 1_000;
pub const MAX_LEASE_TTL_MS: i64 = 600_000;

/// How a subscription wakes its consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A signed POST to a webhook URL.
    Webhook,
    /// A wake event appended to a wake stream; workers claim the wake.
    PullWake,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::PullWake => "pull-wake",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        match text {
            "webhook" => Some(Kind::Webhook),
            "pull-wake" => Some(Kind::PullWake),
            _ => None,
        }
    }
}

/// A subscription's configuration, parsed from its `PUT` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub kind: Kind,
    pub pattern: Option<String>,
    /// Explicit streams, deduplicated and sorted.
    pub streams: Vec<String>,
    pub webhook_url: Option<String>,
    pub wake_stream: Option<String>,
    pub lease_ttl_ms: i64,
    pub description: Option<String>,
}

/// The `PUT` body, as sent.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ConfigRequest {
    #[serde(rename = "type")]
    pub kind: Option<serde_json::Value>,
    pub pattern: Option<serde_json::Value>,
    pub streams: Option<Vec<serde_json::Value>>,
    pub webhook: Option<serde_json::Value>,
    pub wake_stream: Option<serde_json::Value>,
    pub lease_ttl_ms: Option<serde_json::Value>,
    pub description: Option<serde_json::Value>,
}

fn non_empty_string(value: Option<&serde_json::Value>) -> Option<String> {
    value
        .and_then(serde_json::Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl Config {
    /// Parses a `PUT` body; the error is the message of a 400
    /// `INVALID_REQUEST`.
    pub fn parse(request: ConfigRequest) -> Result<Config, &'static str> {
        let kind = request
            .kind
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .and_then(Kind::parse)
            .ok_or("type must be \"webhook\" or \"pull-wake\"")?;
        let pattern = non_empty_string(request.pattern.as_ref()).map(|p| normalize(&p));
        let mut streams = Vec::new();
        for stream in request.streams.unwrap_or_default() {
            let stream = stream.as_str().ok_or("streams must contain only strings")?;
            streams.push(normalize(stream));
        }
        streams.sort();
        streams.dedup();
        if pattern.is_none() && streams.is_empty() {
            return Err("At least one of pattern or streams is required");
        }
        let lease_ttl_ms = match request.lease_ttl_ms {
            None => DEFAULT_LEASE_TTL_MS,
            Some(value) => value
                .as_i64()
                .filter(|ms| (MIN_LEASE_TTL_MS..=MAX_LEASE_TTL_MS).contains(ms))
                .ok_or("lease_ttl_ms must be an integer from 1000 to 600000")?,
        };
        let webhook_url = match kind {
            Kind::Webhook => Some(
                request
                    .webhook
                    .as_ref()
                    .and_then(|w| non_empty_string(w.get("url")))
                    .ok_or("webhook subscriptions require webhook.url")?,
            ),
            Kind::PullWake => None,
        };
        let wake_stream = non_empty_string(request.wake_stream.as_ref()).map(|p| normalize(&p));
        if kind == Kind::PullWake && wake_stream.is_none() {
            return Err("pull-wake subscriptions require wake_stream");
        }
        let description = request
            .description
            .as_ref()
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned);
        Ok(Config {
            kind,
            pattern,
            streams,
            webhook_url,
            wake_stream,
            lease_ttl_ms,
            description,
        })
    }

    /// A digest of the configuration: a `PUT` with the same one confirms
    /// the subscription, another is a conflict.
    pub fn digest(&self) -> String {
        #[derive(Serialize)]
        struct Canonical<'a> {
            kind: &'a str,
            pattern: &'a Option<String>,
            streams: &'a [String],
            webhook_url: &'a Option<String>,
            wake_stream: &'a Option<String>,
            lease_ttl_ms: i64,
            description: &'a Option<String>,
        }
        let canonical = serde_json::to_vec(&Canonical {
            kind: self.kind.as_str(),
            pattern: &self.pattern,
            streams: &self.streams,
            webhook_url: &self.webhook_url,
            wake_stream: &self.wake_stream,
            lease_ttl_ms: self.lease_ttl_ms,
            description: &self.description,
        })
        .unwrap_or_default();
        Sha256::digest(&canonical)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A relative stream path without leading or trailing slashes.
pub fn normalize(path: &str) -> String {
    path.trim_matches('/').to_owned()
}

/// The absolute path of a relative stream path (the key of its row).
pub fn absolute(relative: &str) -> String {
    format!("{STREAM_ROOT}{}", normalize(relative))
}

/// The relative path of a stream, unless it is outside `/v1/stream/` or a
/// reserved `__ds` path (never followed by a subscription).
pub fn relative(absolute: &str) -> Option<&str> {
    let path = absolute.strip_prefix(STREAM_ROOT)?;
    if path.is_empty() || path == "__ds" || path.starts_with("__ds/") {
        return None;
    }
    Some(path)
}

/// Whether `path` matches `pattern`: segments split on `/`; `*` matches one
/// segment, `**` zero or more, `%2A` a literal `*`, anything else itself.
pub fn glob_match(pattern: &str, path: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let path: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match_segments(&pattern, &path)
}

fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((segment, rest)) => match path.split_first() {
            None => false,
            Some((first, others)) => {
                let literal = segment.replace("%2A", "*").replace("%2a", "*");
                (*segment == "*" || literal == *first) && match_segments(rest, others)
            }
        },
    }
}

/// Whether an acked offset is behind a tail: the stream has pending work.
/// Offsets are fixed-width digits and sort as text; `-1` sorts first.
pub fn pending(acked: &str, tail: &str) -> bool {
    tail > acked
}

/// Why a webhook URL is refused (the message of a 400
/// `WEBHOOK_URL_REJECTED`), or `None` when it may be called: the server's
/// one rule (`domain::webhook`).
pub fn refuse_webhook_url(url: &str, policy: &WebhookPolicy) -> Option<&'static str> {
    policy.refuse_url(url)
}

/// Decodes `%XX` escapes of a path segment (`manual%2Fb` → `manual/b`);
/// `None` when an escape is malformed or the result is not UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = segment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_matches_one_segment_and_a_double_star_any_number() {
        assert!(glob_match("events/*", "events/a"));
        assert!(!glob_match("events/*", "events/a/b"));
        assert!(!glob_match("events/*", "events"));
        assert!(glob_match("events/**", "events"));
        assert!(glob_match("events/**", "events/a/b"));
        assert!(glob_match("**/log", "a/b/log"));
        assert!(glob_match("a/%2A", "a/*"));
        assert!(!glob_match("a/%2A", "a/b"));
    }

    #[test]
    fn offsets_before_the_first_message_sort_first() {
        assert!(pending(BEFORE_FIRST, "0000000000000000_0000000000000000"));
        assert!(!pending(
            "0000000000000005_0000000000000003",
            "0000000000000005_0000000000000003"
        ));
    }

    #[test]
    fn the_same_configuration_has_the_same_digest() {
        let parse = |json: serde_json::Value| {
            Config::parse(serde_json::from_value(json).expect("a body")).expect("valid")
        };
        let a = parse(
            serde_json::json!({"type": "pull-wake", "streams": ["b", "a"], "wake_stream": "w"}),
        );
        let b = parse(
            serde_json::json!({"type": "pull-wake", "streams": ["/a", "b", "a"], "wake_stream": "w/"}),
        );
        assert_eq!(a.digest(), b.digest());
        let c =
            parse(serde_json::json!({"type": "pull-wake", "streams": ["a"], "wake_stream": "w"}));
        assert_ne!(a.digest(), c.digest());
    }
}
