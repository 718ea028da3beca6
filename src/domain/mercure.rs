//! The Mercure protocol's rules (draft-dunglas-mercure-07, the protocol of
//! the 0.x hubs): an update and how it is stored as an event, topic
//! selectors (`*`, exact strings, RFC 6570 URI templates), and who may
//! receive what. Plain Rust: the HTTP edge is `http/mercure.rs`.

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::{ChannelName, DomainError, EventType};

/// The channel public updates are stored on.
pub const PUBLIC_CHANNEL: &str = "mercure";
/// The channel private updates are stored on (read it only with care: every
/// native reader of it sees every private update).
pub const PRIVATE_CHANNEL: &str = "mercure:private";
/// The event type of every stored update.
pub const EVENT_TYPE: &str = "mercure_update";
/// The topic prefix of subscription events.
pub const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";

/// One update, as published and as stored in an event's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    /// The canonical topic first, then the alternates.
    pub topics: Vec<String>,
    pub data: String,
    pub private: bool,
    /// The SSE `id`: the publisher's, or one made by the hub.
    pub id: String,
    /// The SSE `event` field.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none", default)]
    pub event_type: Option<String>,
    /// The SSE `retry` field, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub retry: Option<u64>,
}

impl Update {
    /// Checks a publication: at least one topic, an id not starting with `#`,
    /// no line break where the SSE format cannot carry one.
    pub fn check(&self) -> Result<(), DomainError> {
        // 400, as the reference hub answers these.
        if self.topics.is_empty() || self.topics.iter().any(String::is_empty) {
            return Err(DomainError::BadRequest(
                "give at least one non-empty `topic`".into(),
            ));
        }
        if self.id == "earliest" {
            return Err(DomainError::BadRequest(
                "`id` must not be `earliest`: it is reserved for reconciliation".into(),
            ));
        }
        if self.id.starts_with('#') {
            return Err(DomainError::BadRequest(
                "`id` must not start with #: such ids are the hub's own".into(),
            ));
        }
        if self.id.is_empty() || self.id.len() > 1024 {
            return Err(DomainError::validation(
                "id",
                "must be 1 to 1024 characters",
            ));
        }
        for (field, value) in [
            ("id", Some(self.id.as_str())),
            ("type", self.event_type.as_deref()),
        ] {
            if value.is_some_and(|v| v.contains(['\n', '\r'])) {
                return Err(DomainError::validation(field, "must be one line"));
            }
        }
        Ok(())
    }

    /// The channel it is stored on.
    pub fn channel(&self) -> ChannelName {
        let name = if self.private {
            PRIVATE_CHANNEL
        } else {
            PUBLIC_CHANNEL
        };
        ChannelName::parse("channel", name).expect("a valid channel name")
    }

    pub fn event_type() -> EventType {
        EventType::parse("type", EVENT_TYPE).expect("a valid event type")
    }

    /// The update an event stores, if it is one.
    pub fn from_event(event: &super::Event) -> Option<Update> {
        if !Self::is_mercure_channel(&event.channel) {
            return None;
        }
        serde_json::from_str(event.payload.get()).ok()
    }

    /// Whether the update is on a Mercure channel.
    pub fn is_mercure_channel(channel: &str) -> bool {
        channel == PUBLIC_CHANNEL || channel == PRIVATE_CHANNEL
    }
}

/// A hub-made update id: `urn:uuid:` and a random (version 4) UUID.
pub fn new_update_id() -> String {
    use rand::Rng;
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// A topic selector: `*`, or a string matched exactly or as a URI template.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    template: Option<Regex>,
}

impl Selector {
    pub fn new(text: &str) -> Self {
        let template = if text == "*" {
            None
        } else {
            template_regex(text)
        };
        Selector {
            text: text.to_owned(),
            template,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The spec's matching: `*`, the same string, or a match of the template.
    pub fn matches(&self, topic: &str) -> bool {
        self.text == "*"
            || self.text == topic
            || self.template.as_ref().is_some_and(|re| re.is_match(topic))
    }
}

/// Does any selector match any of the topics?
pub fn any_matches(selectors: &[Selector], topics: &[String]) -> bool {
    topics
        .iter()
        .any(|t| selectors.iter().any(|s| s.matches(t)))
}

/// What one subscriber receives: updates with a topic matching one of its
/// selectors, and private ones only when a topic matches one of the
/// `mercure.subscribe` selectors of its token.
#[derive(Debug, Clone)]
pub struct SubscriberFilter {
    pub selectors: Vec<Selector>,
    /// `mercure.subscribe` of the subscriber's token; empty without one.
    pub authorized: Vec<Selector>,
}

impl SubscriberFilter {
    pub fn admits(&self, update: &Update) -> bool {
        any_matches(&self.selectors, &update.topics) && may_receive(&self.authorized, update)
    }
}

/// Whether a subscriber authorized for `authorized` (its token's
/// `mercure.subscribe`) may receive `update` at all, whatever its topic
/// selectors: public updates, and private ones with a topic it is
/// authorized for. Anything the hub tells a subscriber about an update,
/// its existence included, needs this.
pub fn may_receive(authorized: &[Selector], update: &Update) -> bool {
    !update.private || any_matches(authorized, &update.topics)
}

/// `{topic}` / `{subscriber}` of a subscription event's topic, each
/// percent-encoded whole (RFC 6570 simple expansion).
pub fn subscription_topic(topic: &str, subscriber: &str) -> String {
    format!(
        "{SUBSCRIPTIONS_PATH}/{}/{}",
        encode(topic),
        encode(subscriber)
    )
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

const UNRESERVED: &str = r"(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})";
const RESERVED: &str = r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})";

/// The regular expression a URI template matches (RFC 6570, levels 1–4,
/// read as a pattern), or `None` when the string has no expression or is not
/// a well-formed template (then only the exact string matches).
fn template_regex(template: &str) -> Option<Regex> {
    if !template.contains('{') {
        return None;
    }
    let mut pattern = String::from("^");
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let (literal, after) = rest.split_at(open);
        if literal.contains('}') {
            return None;
        }
        pattern.push_str(&regex::escape(literal));
        let close = after.find('}')?;
        let expression = &after[1..close];
        pattern.push_str(&expression_regex(expression)?);
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return None;
    }
    pattern.push_str(&regex::escape(rest));
    pattern.push('$');
    Regex::new(&pattern).ok()
}

/// One `{…}` expression as a pattern.
fn expression_regex(expression: &str) -> Option<String> {
    let (operator, list) = match expression.chars().next()? {
        c @ ('+' | '#' | '.' | '/' | ';' | '?' | '&') => (Some(c), &expression[1..]),
        '=' | ',' | '!' | '@' | '|' => return None,
        _ => (None, expression),
    };
    let names: Vec<&str> = list
        .split(',')
        .map(|v| v.trim_end_matches('*').split(':').next().unwrap_or(""))
        .collect();
    let valid = |n: &&str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '%')
    };
    if !names.iter().all(valid) {
        return None;
    }
    let value = match operator {
        Some('+') | Some('#') => RESERVED,
        _ => UNRESERVED,
    };
    let values = format!("{value}*(?:,{value}*)*");
    let names = names
        .iter()
        .map(|n| regex::escape(n))
        .collect::<Vec<_>>()
        .join("|");
    let pair = format!("(?:{names})=(?:{value})*");
    Some(match operator {
        None | Some('+') => values,
        Some('#') => format!("(?:#{values})?"),
        Some('.') => format!(r"(?:\.{value}*)*"),
        Some('/') => format!("(?:/{value}*)*"),
        Some(';') => format!("(?:;(?:{names})(?:={value}*)?)*"),
        Some('?') => format!(r"(?:\?{pair}(?:&{pair})*)?"),
        Some('&') => format!("(?:&{pair})*"),
        Some(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(selector: &str, topic: &str) -> bool {
        Selector::new(selector).matches(topic)
    }

    #[test]
    fn selectors_match_as_the_spec_says() {
        assert!(m("*", "anything at all"));
        assert!(m("https://example.com/foo", "https://example.com/foo"));
        assert!(!m("https://example.com/foo", "https://example.com/foo/1"));
        assert!(m(
            "https://example.com/books/{id}",
            "https://example.com/books/1"
        ));
        assert!(m(
            "https://example.com/books/{id}",
            "https://example.com/books/some%20book"
        ));
        assert!(!m(
            "https://example.com/books/{id}",
            "https://example.com/books/1/chapters/2"
        ));
        assert!(!m(
            "https://example.com/books/{id}",
            "https://example.com/authors/1"
        ));
        // A template is also matched as a string, exactly.
        assert!(m(
            "https://example.com/books/{id}",
            "https://example.com/books/{id}"
        ));
        assert!(m(
            "https://example.com/{+path}",
            "https://example.com/a/b/c"
        ));
        assert!(m(
            "https://example.com/books{/id}",
            "https://example.com/books/42"
        ));
        assert!(m(
            "https://example.com/books{/id}",
            "https://example.com/books"
        ));
        assert!(m(
            "https://example.com/users/foo/{?topic}",
            "https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1"
        ));
        assert!(!m(
            "https://example.com/users/foo/{?topic}",
            "https://example.com/users/bar/"
        ));
        assert!(m(
            "/.well-known/mercure/subscriptions{/topic}{/subscriber}",
            "/.well-known/mercure/subscriptions/a%2Fb/urn%3Auuid%3A1"
        ));
        // Not a template: only the exact string.
        assert!(!m("https://example.com/{broken", "https://example.com/x"));
        assert!(m(
            "https://example.com/{broken",
            "https://example.com/{broken"
        ));
    }

    #[test]
    fn private_updates_need_an_authorized_topic() {
        let update = Update {
            topics: vec![
                "https://example.com/books/1".into(),
                "https://example.com/users/foo/?topic=x".into(),
            ],
            data: "d".into(),
            private: true,
            id: "urn:uuid:1".into(),
            event_type: None,
            retry: None,
        };
        let filter = |auth: &[&str]| SubscriberFilter {
            selectors: vec![Selector::new("https://example.com/books/{id}")],
            authorized: auth.iter().map(|s| Selector::new(s)).collect(),
        };
        assert!(!filter(&[]).admits(&update));
        assert!(filter(&["https://example.com/users/foo/{?topic}"]).admits(&update));
        assert!(filter(&["*"]).admits(&update));
        assert!(!filter(&["https://example.com/users/bar/{?topic}"]).admits(&update));
        let public = Update {
            private: false,
            ..update
        };
        assert!(filter(&[]).admits(&public));
    }

    #[test]
    fn ids_and_encoding() {
        let id = new_update_id();
        assert!(id.starts_with("urn:uuid:") && id.len() == 45, "{id}");
        assert_ne!(id, new_update_id());
        assert_eq!(
            subscription_topic("https://example.com/{selector}", "urn:uuid:bb3d"),
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/urn%3Auuid%3Abb3d"
        );
    }
}
