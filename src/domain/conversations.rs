//! Conversations and their messages. A message may stream: it is created
//! with `status: "streaming"`, grows by deltas (the server keeps the text so
//! far), and is completed with its token usage. Every change to a
//! conversation's summary (title, message count, tokens) bumps its version
//! and is announced on `conversations`; message events go on
//! `conversation:{id}`.

use serde_json::{json, Value};

use super::{
    AgentId, ChannelName, DomainError, EventType, NewEvent, ResourceId, ResourceType, SessionId,
};

pub const MAX_TITLE: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: String,
    pub title: String,
    pub message_count: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub version: i64,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: String,
    pub updated_by: String,
    pub deleted: bool,
}

impl Conversation {
    pub fn new(
        id: String,
        title: String,
        previous: Option<&Conversation>,
        agent: &AgentId,
        now: &str,
    ) -> Self {
        Conversation {
            id,
            title,
            message_count: 0,
            input_tokens: 0,
            output_tokens: 0,
            version: previous.map_or(1, |p| p.version + 1),
            created_at: now.to_owned(),
            updated_at: now.to_owned(),
            created_by: agent.as_str().to_owned(),
            updated_by: agent.as_str().to_owned(),
            deleted: false,
        }
    }

    /// The summary every list shows and every `conversation_*` event carries.
    pub fn summary(&self) -> Value {
        json!({
            "id": self.id,
            "title": self.title,
            "message_count": self.message_count,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "updated_at": self.updated_at,
            "version": self.version,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "updated_by": self.updated_by,
        })
    }

    pub fn touch(&mut self, agent: &AgentId, now: &str) {
        self.version += 1;
        self.updated_at = now.to_owned();
        self.updated_by = agent.as_str().to_owned();
    }

    pub fn add_usage(&mut self, usage: Usage) {
        self.input_tokens += usage.input_tokens;
        self.output_tokens += usage.output_tokens;
    }

    /// The channel of its messages: `conversation:{id}`.
    pub fn channel(&self) -> String {
        message_channel(&self.id)
    }
}

pub fn validate_title(title: &str) -> Result<String, DomainError> {
    if title.trim().is_empty() || title.chars().count() > MAX_TITLE {
        return Err(DomainError::validation(
            "title",
            format!("must be 1 to {MAX_TITLE} characters"),
        ));
    }
    Ok(title.to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: i64,
    pub output_tokens: i64,
}

impl Usage {
    pub fn parse(value: &Value) -> Result<Usage, DomainError> {
        let count = |name: &str| -> Result<i64, DomainError> {
            match value.get(name) {
                None | Some(Value::Null) => Ok(0),
                Some(v) => v.as_i64().filter(|n| *n >= 0).ok_or_else(|| {
                    DomainError::validation(
                        format!("usage.{name}"),
                        "must be a non-negative integer",
                    )
                }),
            }
        };
        if !value.is_object() {
            return Err(DomainError::validation(
                "usage",
                "must be an object {input_tokens, output_tokens}",
            ));
        }
        Ok(Usage {
            input_tokens: count("input_tokens")?,
            output_tokens: count("output_tokens")?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    Streaming,
    Complete,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Streaming => "streaming",
            MessageStatus::Complete => "complete",
        }
    }

    pub fn parse(field: &str, value: &str) -> Result<Self, DomainError> {
        match value {
            "streaming" => Ok(MessageStatus::Streaming),
            "complete" => Ok(MessageStatus::Complete),
            _ => Err(DomainError::validation(
                field,
                "must be streaming or complete",
            )),
        }
    }
}

pub const ROLES: [&str; 4] = ["user", "assistant", "system", "tool"];

pub fn validate_role(role: &str) -> Result<String, DomainError> {
    if ROLES.contains(&role) {
        Ok(role.to_owned())
    } else {
        Err(DomainError::validation(
            "role",
            format!("must be one of {}", ROLES.join(", ")),
        ))
    }
}

/// Length in UTF-16 code units: what a browser's `String.length` counts, so a
/// delta's `offset` can be compared with the text a client already has.
pub fn text_units(text: &str) -> i64 {
    text.encode_utf16().count() as i64
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub role: String,
    pub content: String,
    pub content_units: i64,
    pub status: MessageStatus,
    pub usage: Option<Usage>,
    pub created_at: String,
    pub updated_at: String,
    pub created_by: String,
}

impl Message {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "conversation_id": self.conversation_id,
            "role": self.role,
            "content": self.content,
            "status": self.status.as_str(),
            "usage": self.usage.map(|u| json!({ "input_tokens": u.input_tokens, "output_tokens": u.output_tokens })),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "created_by": self.created_by,
        })
    }
}

/// What happened, to be announced.
#[derive(Debug, Clone)]
pub enum ConversationChange {
    Created,
    Updated,
    Deleted,
    MessageCreated(Message),
    MessageCompleted(Message),
    TokensUpdated,
}

pub fn conversation_event(
    conversation: &Conversation,
    change: &ConversationChange,
    agent: &AgentId,
    session: Option<&SessionId>,
) -> Result<NewEvent, DomainError> {
    let list = "conversations".to_owned();
    let (channel, event_type, resource_type, resource_id, payload) = match change {
        ConversationChange::Created => (
            list,
            "conversation_created",
            "conversation",
            &conversation.id,
            conversation.summary(),
        ),
        ConversationChange::Updated => (
            list,
            "conversation_updated",
            "conversation",
            &conversation.id,
            conversation.summary(),
        ),
        ConversationChange::Deleted => (
            list,
            "conversation_deleted",
            "conversation",
            &conversation.id,
            json!({ "id": conversation.id, "version": conversation.version }),
        ),
        ConversationChange::MessageCreated(message) => (
            conversation.channel(),
            "message_created",
            "message",
            &message.id,
            message.to_json(),
        ),
        ConversationChange::MessageCompleted(message) => (
            conversation.channel(),
            "message_completed",
            "message",
            &message.id,
            message.to_json(),
        ),
        ConversationChange::TokensUpdated => (
            conversation.channel(),
            "tokens_updated",
            "conversation",
            &conversation.id,
            json!({
                "conversation_id": conversation.id,
                "input_tokens": conversation.input_tokens,
                "output_tokens": conversation.output_tokens,
            }),
        ),
    };
    Ok(NewEvent {
        channel: ChannelName::parse("channel", &channel)?,
        event_type: EventType::parse("type", event_type)?,
        resource_type: Some(ResourceType::parse("resource_type", resource_type)?),
        resource_id: Some(ResourceId::parse("id", resource_id)?),
        agent_id: agent.clone(),
        session_id: session.cloned(),
        payload: serde_json::value::to_raw_value(&payload)
            .map_err(|e| DomainError::BadRequest(e.to_string()))?,
    })
}

/// `conversation:{id}`
pub fn message_channel(conversation_id: &str) -> String {
    format!("conversation:{conversation_id}")
}

/// `message_delta` `{message_id, offset, text}`: the hot path of streaming,
/// built without loading the conversation.
pub fn delta_event(
    conversation_id: &str,
    message_id: &str,
    offset: i64,
    text: &str,
    agent: &AgentId,
    session: Option<&SessionId>,
) -> Result<NewEvent, DomainError> {
    let payload = json!({ "message_id": message_id, "offset": offset, "text": text });
    Ok(NewEvent {
        channel: ChannelName::parse("channel", &message_channel(conversation_id))?,
        event_type: EventType::parse("type", "message_delta")?,
        resource_type: Some(ResourceType::parse("resource_type", "message")?),
        resource_id: Some(ResourceId::parse("id", message_id)?),
        agent_id: agent.clone(),
        session_id: session.cloned(),
        payload: serde_json::value::to_raw_value(&payload)
            .map_err(|e| DomainError::BadRequest(e.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_utf16_units_like_a_browser() {
        assert_eq!(text_units("abc"), 3);
        assert_eq!(text_units("é"), 1);
        assert_eq!(text_units("😀"), 2);
    }

    #[test]
    fn usage_must_be_non_negative_counts() {
        assert_eq!(
            Usage::parse(&json!({"input_tokens": 3, "output_tokens": 5})).unwrap(),
            Usage {
                input_tokens: 3,
                output_tokens: 5
            }
        );
        assert!(Usage::parse(&json!({"input_tokens": -1})).is_err());
        assert!(Usage::parse(&json!(7)).is_err());
    }
}
