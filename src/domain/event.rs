//! The event: one row of the log, and the unit every stream delivers.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use super::{
    AgentId, ChannelName, EventId, EventType, ResourceId, ResourceType, SessionId, Timestamp,
};

/// A committed event, as clients see it (API.md §2).
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: EventId,
    pub channel: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub agent_id: String,
    pub session_id: Option<String>,
    pub timestamp: Timestamp,
    /// Kept as the JSON text it was stored as: never parsed again on the way out.
    pub payload: Box<RawValue>,
}

/// An event about to be appended; the writer gives it its id and timestamp.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub channel: ChannelName,
    pub event_type: EventType,
    pub resource_type: Option<ResourceType>,
    pub resource_id: Option<ResourceId>,
    pub agent_id: AgentId,
    pub session_id: Option<SessionId>,
    pub payload: Box<RawValue>,
}

/// RFC 3339 UTC with microseconds: `2026-11-21T12:00:00.123456Z`. Fixed
/// width, so the text sorts in time order.
pub fn format_timestamp(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_microseconds_and_sort_as_text() {
        let t = DateTime::parse_from_rfc3339("2026-11-21T12:00:00.1234567Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_timestamp(t), "2026-11-21T12:00:00.123456Z");
        let later = t + chrono::Duration::microseconds(5);
        assert!(format_timestamp(t) < format_timestamp(later));
    }
}
