//! Validated identifiers. Each type can only be built through `parse`, so a
//! value that exists obeys the contract's character set and length.

use std::fmt;

use serde::Serialize;

use super::DomainError;

fn check(
    field: &str,
    value: &str,
    max: usize,
    allowed: impl Fn(u8) -> bool,
    charset: &str,
) -> Result<(), DomainError> {
    if value.is_empty() || value.len() > max {
        return Err(DomainError::validation(
            field,
            format!("must be 1 to {max} characters long"),
        ));
    }
    if !value.bytes().all(allowed) {
        return Err(DomainError::validation(
            field,
            format!("may only contain {charset}"),
        ));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $max:expr, $allowed:expr, $charset:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses `value`; `field` names it in the validation error.
            pub fn parse(field: &str, value: &str) -> Result<Self, DomainError> {
                check(field, value, $max, $allowed, $charset)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
    };
}

fn identity_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-')
}

fn channel_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'/' | b'-')
}

fn resource_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
}

fn type_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

id_type!(
    /// Who acts (`X-Agent-ID`): 1–128 of `[A-Za-z0-9._:@-]`.
    AgentId, 128, identity_byte, "letters, digits and . _ : @ -"
);
id_type!(
    /// Which client session acts (`X-Session-ID`): 1–128 of `[A-Za-z0-9._:@-]`.
    SessionId, 128, identity_byte, "letters, digits and . _ : @ -"
);
id_type!(
    /// A channel: 1–200 of `[A-Za-z0-9._:/-]`.
    ChannelName, 200, channel_byte, "letters, digits and . _ : / -"
);
id_type!(
    /// An event type: 1–64 of `[A-Za-z0-9_.-]`.
    EventType, 64, type_byte, "letters, digits and _ . -"
);
id_type!(
    /// A resource type named by a publisher: 1–64 of `[A-Za-z0-9_.-]`.
    ResourceType, 64, type_byte, "letters, digits and _ . -"
);
id_type!(
    /// A resource id chosen by a client: 1–64 of `[A-Za-z0-9._:-]`.
    ResourceId, 64, resource_id_byte, "letters, digits and . _ : -"
);
id_type!(
    /// A subscription's name, chosen by its owner: 1–64 of `[A-Za-z0-9_.-]`.
    SubscriptionId, 64, type_byte, "letters, digits and _ . -"
);
id_type!(
    /// An `Idempotency-Key`: 1–255 visible ASCII characters.
    IdempotencyKey, 255, |b: u8| b.is_ascii_graphic(), "visible ASCII characters"
);

impl AgentId {
    /// The agent of a request without `X-Agent-ID`.
    pub fn anonymous() -> Self {
        AgentId("anonymous".to_owned())
    }

    /// The server itself, acting for expiries.
    pub fn server() -> Self {
        AgentId("switchboard".to_owned())
    }
}

/// The channels that only the server writes to (Mercure updates are written
/// by the Mercure edge).
const RESERVED_CHANNELS: [&str; 7] = [
    "features",
    "tracks",
    "spikes",
    "files",
    "conversations",
    "presence",
    "mercure",
];
/// And every channel with one of these prefixes.
const RESERVED_PREFIXES: [&str; 3] = ["conversation:", "mercure:", "ds:"];

impl ChannelName {
    /// Whether clients may publish on this channel with the generic API.
    pub fn is_reserved(&self) -> bool {
        let name = self.as_str();
        RESERVED_CHANNELS.contains(&name) || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
    }
}

/// A subscription pattern: a channel name, or a prefix followed by `*`
/// (`conversation:*`; `*` alone matches every channel).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChannelPattern {
    Exact(String),
    Prefix(String),
}

impl ChannelPattern {
    pub fn parse(field: &str, value: &str) -> Result<Self, DomainError> {
        match value.strip_suffix('*') {
            Some("") => Ok(ChannelPattern::Prefix(String::new())),
            Some(prefix) => {
                check(
                    field,
                    prefix,
                    199,
                    channel_byte,
                    "letters, digits and . _ : / -, then an optional *",
                )?;
                Ok(ChannelPattern::Prefix(prefix.to_owned()))
            }
            None => Ok(ChannelPattern::Exact(
                ChannelName::parse(field, value)?.into_string(),
            )),
        }
    }

    /// Parses a comma-separated list; an empty list means `*`.
    pub fn parse_list(field: &str, value: Option<&str>) -> Result<Vec<Self>, DomainError> {
        let patterns: Vec<Self> = value
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| Self::parse(field, p))
            .collect::<Result<_, _>>()?;
        if patterns.is_empty() {
            return Ok(vec![ChannelPattern::Prefix(String::new())]);
        }
        if patterns.len() > 64 {
            return Err(DomainError::validation(field, "at most 64 patterns"));
        }
        Ok(patterns)
    }

    pub fn matches(&self, channel: &str) -> bool {
        match self {
            ChannelPattern::Exact(name) => name == channel,
            ChannelPattern::Prefix(prefix) => channel.starts_with(prefix.as_str()),
        }
    }

    /// Whether this pattern matches every channel.
    pub fn is_all(&self) -> bool {
        matches!(self, ChannelPattern::Prefix(p) if p.is_empty())
    }

    /// Whether every channel `other` matches is matched by this pattern.
    pub fn covers(&self, other: &ChannelPattern) -> bool {
        match (self, other) {
            (ChannelPattern::Exact(a), ChannelPattern::Exact(b)) => a == b,
            (ChannelPattern::Exact(_), ChannelPattern::Prefix(_)) => false,
            (ChannelPattern::Prefix(a), ChannelPattern::Exact(b) | ChannelPattern::Prefix(b)) => {
                b.starts_with(a.as_str())
            }
        }
    }
}

impl fmt::Display for ChannelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelPattern::Exact(name) => f.write_str(name),
            ChannelPattern::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// A random id with the kind's prefix: `feat-3f9a…`. The prefixes are the
/// server's own (`feat-`, `cmt-`, …): letters and `-`, so the id is valid.
pub fn new_id(prefix: &'static str) -> ResourceId {
    use rand::Rng;
    let bytes: [u8; 8] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let id = format!("{prefix}{hex}");
    debug_assert!(check("id", &id, 64, resource_id_byte, "").is_ok());
    ResourceId(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_follow_the_contract() {
        assert!(AgentId::parse("x", "claude-1").is_ok());
        assert!(SessionId::parse("x", "tab:1@host.example_2").is_ok());
        assert!(AgentId::parse("x", "").is_err());
        assert!(AgentId::parse("x", "has space").is_err());
        assert!(AgentId::parse("x", &"a".repeat(128)).is_ok());
        assert!(AgentId::parse("x", &"a".repeat(129)).is_err());
    }

    #[test]
    fn patterns_match_exact_names_and_prefixes() {
        let all = ChannelPattern::parse("c", "*").unwrap();
        assert!(all.is_all() && all.matches("anything"));
        let conv = ChannelPattern::parse("c", "conversation:*").unwrap();
        assert!(conv.matches("conversation:42") && !conv.matches("conversations"));
        let exact = ChannelPattern::parse("c", "features").unwrap();
        assert!(exact.matches("features") && !exact.matches("features2"));
        assert!(ChannelPattern::parse("c", "a*b").is_err());
        assert!(ChannelPattern::parse("c", "**").is_err());
    }

    #[test]
    fn new_ids_are_valid_resource_ids() {
        for prefix in ["feat-", "trk-", "spk-", "cmt-", "conv-", "msg-", "file-"] {
            let id = new_id(prefix);
            assert!(id.as_str().starts_with(prefix));
            assert_eq!(ResourceId::parse("id", id.as_str()).unwrap(), id);
        }
    }

    #[test]
    fn reserved_channels_are_recognised() {
        for name in ["features", "presence", "conversation:abc", "files"] {
            assert!(
                ChannelName::parse("c", name).unwrap().is_reserved(),
                "{name}"
            );
        }
        for name in ["global", "chat", "features2", "conversation"] {
            assert!(
                !ChannelName::parse("c", name).unwrap().is_reserved(),
                "{name}"
            );
        }
    }
}
