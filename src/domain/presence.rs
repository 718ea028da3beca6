//! Presence: a session joins when its first stream opens and leaves when its
//! last one closes. The events go on the `presence` channel, written by the
//! server on the session's behalf (so the session's own streams skip them).

use serde_json::json;

use super::{AgentId, ChannelName, DomainError, EventType, NewEvent, SessionId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceChange {
    Joined,
    Left,
}

/// The `session_joined` / `session_left` event for a session that now has
/// `connections` open streams.
pub fn presence_event(
    change: PresenceChange,
    session_id: &str,
    agent_id: &str,
    connections: usize,
) -> Result<NewEvent, DomainError> {
    let event_type = match change {
        PresenceChange::Joined => "session_joined",
        PresenceChange::Left => "session_left",
    };
    let payload = json!({
        "session_id": session_id,
        "agent_id": agent_id,
        "connections": connections,
    });
    Ok(NewEvent {
        channel: ChannelName::parse("channel", "presence")?,
        event_type: EventType::parse("type", event_type)?,
        resource_type: None,
        resource_id: None,
        agent_id: AgentId::parse("agent_id", agent_id)?,
        session_id: Some(SessionId::parse("session_id", session_id)?),
        payload: serde_json::value::to_raw_value(&payload)
            .map_err(|e| DomainError::BadRequest(e.to_string()))?,
    })
}
