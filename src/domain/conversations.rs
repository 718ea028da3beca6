//! Conversations and their messages. A message may stream: it is created
//! with `status: "streaming"`, grows by deltas (the server keeps the text so
//! far), and is completed with its token usage. Every change to a
//! conversation's summary (title, message count, tokens) bumps its version
//! and is announced on `conversations`; message events go on
//! `conversation:{id}`.

use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{
    AgentId, ChannelName, DomainError, EventType, NewEvent, ResourceId, ResourceType, SessionId,
    Timestamp,
};

pub const MAX_TITLE: usize = 500;

#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub id: ResourceId,
    pub title: String,
    pub message_count: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: AgentId,
    pub updated_by: AgentId,
    pub deleted: bool,
}

impl Conversation {
    pub fn new(
        id: ResourceId,
        title: String,
        previous: Option<&Conversation>,
        agent: &AgentId,
        now: Timestamp,
    ) -> Self {
        Conversation {
            id,
            title,
            message_count: 0,
            input_tokens: 0,
            output_tokens: 0,
            version: previous.map_or(1, |p| p.version + 1),
            created_at: now,
            updated_at: now,
            created_by: agent.clone(),
            updated_by: agent.clone(),
            deleted: false,
        }
    }

    pub fn touch(&mut self, agent: &AgentId, now: Timestamp) {
        self.version += 1;
        self.updated_at = now;
        self.updated_by = agent.clone();
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

/// Token usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Usage {
    /// Missing or `null` → 0.
    #[schema(minimum = 0)]
    pub input_tokens: i64,
    /// Missing or `null` → 0.
    #[schema(minimum = 0)]
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

/// `streaming` while deltas arrive, then `complete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
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

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = MessageRole)]
pub enum Role {
    User,
    Assistant,
    System,
    Tool,
}

impl Role {
    const ALL: [(Role, &'static str); 4] = [
        (Role::User, "user"),
        (Role::Assistant, "assistant"),
        (Role::System, "system"),
        (Role::Tool, "tool"),
    ];

    pub fn as_str(self) -> &'static str {
        Role::ALL
            .iter()
            .find(|(role, _)| *role == self)
            .map_or("user", |(_, name)| name)
    }

    pub fn parse(field: &str, value: &str) -> Result<Role, DomainError> {
        Role::ALL
            .iter()
            .find(|(_, name)| *name == value)
            .map(|(role, _)| *role)
            .ok_or_else(|| {
                let names: Vec<&str> = Role::ALL.iter().map(|(_, name)| *name).collect();
                DomainError::validation(field, format!("must be one of {}", names.join(", ")))
            })
    }
}

/// Length in UTF-16 code units: what a browser's `String.length` counts, so a
/// delta's `offset` can be compared with the text a client already has.
pub fn text_units(text: &str) -> i64 {
    text.encode_utf16().count() as i64
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: ResourceId,
    pub conversation_id: ResourceId,
    pub seq: i64,
    pub role: Role,
    pub content: String,
    pub content_units: i64,
    pub status: MessageStatus,
    pub usage: Option<Usage>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: AgentId,
}

impl Conversation {
    /// A new message: the next in the conversation's numbering, counted in
    /// `message_count`; usage given with a complete message adds to the
    /// totals. Returns the message and what to announce.
    pub fn add_message(
        &mut self,
        new: NewMessage,
        agent: &AgentId,
        now: Timestamp,
    ) -> (Message, Vec<ConversationChange>) {
        self.message_count += 1;
        let message = Message {
            id: new.id,
            conversation_id: self.id.clone(),
            seq: self.message_count,
            role: new.role,
            content_units: text_units(&new.content),
            content: new.content,
            status: new.status,
            usage: new.usage,
            created_at: now,
            updated_at: now,
            created_by: agent.clone(),
        };
        let mut changes = vec![ConversationChange::MessageCreated(message.clone())];
        if let Some(usage) = new.usage {
            self.add_usage(usage);
            changes.push(ConversationChange::TokensUpdated);
        }
        self.touch(agent, now);
        changes.push(ConversationChange::Updated);
        (message, changes)
    }

    /// Completes a streaming message with its final usage (missing: zero).
    /// Non-zero usage adds to the conversation's totals and changes its
    /// summary. A complete message cannot be completed again.
    pub fn complete_message(
        &mut self,
        message: &mut Message,
        usage: Option<Usage>,
        agent: &AgentId,
        now: Timestamp,
    ) -> Result<Vec<ConversationChange>, DomainError> {
        if message.status == MessageStatus::Complete {
            return Err(DomainError::Conflict {
                code: "conflict",
                message: format!("message {} is already complete", message.id),
                details: json!({}),
            });
        }
        message.status = MessageStatus::Complete;
        message.usage = Some(usage.unwrap_or(Usage {
            input_tokens: 0,
            output_tokens: 0,
        }));
        message.updated_at = now;
        let mut changes = vec![
            ConversationChange::MessageCompleted(message.clone()),
            ConversationChange::TokensUpdated,
        ];
        if let Some(usage) = usage.filter(|u| u.input_tokens != 0 || u.output_tokens != 0) {
            self.add_usage(usage);
            self.touch(agent, now);
            changes.push(ConversationChange::Updated);
        }
        Ok(changes)
    }
}

/// A message to add, checked at the edge.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: ResourceId,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    /// Only with `status: complete`.
    pub usage: Option<Usage>,
}

impl NewMessage {
    pub fn new(
        id: ResourceId,
        role: Role,
        content: String,
        status: MessageStatus,
        usage: Option<Usage>,
    ) -> Result<Self, DomainError> {
        if usage.is_some() && status == MessageStatus::Streaming {
            return Err(DomainError::validation(
                "usage",
                "is given when the message is completed",
            ));
        }
        Ok(NewMessage {
            id,
            role,
            content,
            status,
            usage,
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

/// `conversation:{id}`
pub fn message_channel(conversation_id: &ResourceId) -> String {
    format!("conversation:{conversation_id}")
}

/// `message_delta` `{message_id, offset, text}`: the hot path of streaming,
/// built without loading the conversation.
pub fn delta_event(
    conversation_id: &ResourceId,
    message_id: &ResourceId,
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
        resource_id: Some(message_id.clone()),
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
