//! The event: one row of the log, the unit every stream delivers, and the
//! rules of a publish (which channels a client may write, how big a batch).

use serde::Serialize;
use serde_json::value::RawValue;

use super::{
    AgentId, ChannelName, DomainError, EventId, EventType, ResourceId, ResourceType, SessionId,
    Timestamp,
};

/// One row of the event log: what every stream delivers (API.md §2).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": 1234, "channel": "global", "type": "note", "resource_type": null, "resource_id": null, "agent_id": "alice", "session_id": "alice-tab-1", "timestamp": "2026-11-21T12:00:00.123456Z", "payload": {"text": "hello"}}))]
pub struct Event {
    /// Unique, strictly increasing in commit order, never reused.
    #[schema(value_type = i64)]
    pub id: EventId,
    pub channel: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[schema(required = true)]
    pub resource_type: Option<String>,
    #[schema(required = true)]
    pub resource_id: Option<String>,
    pub agent_id: String,
    #[schema(required = true)]
    pub session_id: Option<String>,
    /// RFC 3339 UTC with microseconds.
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: Timestamp,
    /// Any JSON value, byte for byte as it was published (kept as the JSON
    /// text it was stored as: never parsed again on the way out).
    #[schema(value_type = serde_json::Value)]
    pub payload: Box<RawValue>,
}

/// The most events one batch may hold.
pub const MAX_BATCH: usize = 1000;

/// Refuses an event on a channel only the server writes (`features`,
/// `files`, `conversation:*`, `presence`, …).
pub fn check_publishable(channel: &ChannelName) -> Result<(), DomainError> {
    if channel.is_reserved() {
        return Err(DomainError::Forbidden(format!(
            "channel `{channel}` is written only by the server; publish on another channel"
        )));
    }
    Ok(())
}

/// A batch holds 1 to `MAX_BATCH` events.
pub fn check_batch_size(len: usize) -> Result<(), DomainError> {
    if len == 0 || len > MAX_BATCH {
        return Err(DomainError::validation(
            "events",
            format!("must hold 1 to {MAX_BATCH} events"),
        ));
    }
    Ok(())
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
