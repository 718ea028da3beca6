//! What a stream subscribes to: channel patterns, an optional resource filter,
//! and the session whose own events it does not want back.

use std::sync::Arc;

use super::mercure::{SubscriberFilter, Update};
use super::{ChannelPattern, Event};

#[derive(Debug, Clone)]
pub struct StreamFilter {
    pub patterns: Vec<ChannelPattern>,
    /// `resource_ids`: when set, only events about one of these resources.
    pub resource_ids: Option<Vec<String>>,
    /// The subscriber's session, unless it asked for `include_own=true`.
    pub exclude_session: Option<String>,
    /// The channels the caller's token may read; `None` for all.
    pub allowed: Option<Vec<ChannelPattern>>,
    /// A Mercure subscriber's topic selectors and authorization: only the
    /// updates it admits (see `admits_update`).
    pub mercure: Option<Arc<SubscriberFilter>>,
}

impl StreamFilter {
    /// Everything on every channel.
    pub fn all() -> Self {
        StreamFilter {
            patterns: vec![ChannelPattern::Prefix(String::new())],
            resource_ids: None,
            exclude_session: None,
            allowed: None,
            mercure: None,
        }
    }

    /// For a Mercure subscriber: whether the (parsed) update reaches it.
    /// Every other stream takes every event its channels match.
    pub fn admits_update(&self, update: Option<&Update>) -> bool {
        match (&self.mercure, update) {
            (None, _) => true,
            (Some(filter), Some(update)) => filter.admits(update),
            (Some(_), None) => false,
        }
    }

    /// The checks besides the subscription patterns: the hub finds candidate
    /// subscribers through its channel index and only asks these.
    pub fn accepts(
        &self,
        channel: &str,
        session_id: Option<&str>,
        resource_id: Option<&str>,
    ) -> bool {
        if let Some(allowed) = &self.allowed {
            if !allowed.iter().any(|p| p.matches(channel)) {
                return false;
            }
        }
        if let (Some(own), Some(origin)) = (&self.exclude_session, session_id) {
            if own == origin {
                return false;
            }
        }
        match (&self.resource_ids, resource_id) {
            (None, _) => true,
            (Some(ids), Some(id)) => ids.iter().any(|wanted| wanted == id),
            (Some(_), None) => false,
        }
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.patterns.iter().any(|p| p.matches(&event.channel))
            && self.accepts(
                &event.channel,
                event.session_id.as_deref(),
                event.resource_id.as_deref(),
            )
    }
}
