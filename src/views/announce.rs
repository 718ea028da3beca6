//! How a change to a resource is announced: the event whose payload is
//! the resource's view. The domain says what changed (`ItemChange`,
//! `FileChange`, `ConversationChange`); this module says how the log and
//! every stream see it. Events whose payload is not a view (deltas,
//! presence) are made in the domain.

use serde_json::json;

use super::{
    to_payload, to_value, ConversationView, FileMetadataView, LockView, MessageView, WorkItemView,
};
use crate::domain::conversations::{Conversation, ConversationChange};
use crate::domain::files::{FileChange, SharedFile};
use crate::domain::work_items::{ItemChange, Status, WorkItem};
use crate::domain::{
    AgentId, ChannelName, DomainError, EventType, NewEvent, ResourceType, SessionId, Timestamp,
};

/// The event announcing `change` (API.md §2), on the collection's channel.
pub fn item_event(
    item: &WorkItem,
    change: &ItemChange,
    agent: &AgentId,
    session: Option<&SessionId>,
) -> Result<NewEvent, DomainError> {
    let singular = item.kind.singular();
    let (event_type, payload) = match change {
        ItemChange::Created => (
            format!("{singular}_created"),
            to_value(WorkItemView::from(item))?,
        ),
        ItemChange::Updated { changed } => {
            let mut payload = to_value(WorkItemView::from(item))?;
            payload["changed"] = json!(changed);
            (format!("{singular}_updated"), payload)
        }
        ItemChange::Deleted => (
            format!("{singular}_deleted"),
            json!({ "id": item.id, "version": item.version }),
        ),
        ItemChange::StatusChanged { old } => (
            "status_changed".to_owned(),
            json!({
                "id": item.id,
                "old_status": old.map(Status::as_str),
                "new_status": item.status.as_str(),
                "version": item.version,
            }),
        ),
        ItemChange::LinkAdded(link) | ItemChange::LinkRemoved(link) => (
            if matches!(change, ItemChange::LinkAdded(_)) {
                "link_added"
            } else {
                "link_removed"
            }
            .to_owned(),
            json!({
                "id": item.id,
                "linked_feature_id": link.linked_id,
                "link_type": link.link_type.as_str(),
                "version": item.version,
            }),
        ),
        ItemChange::CommentAdded(comment) => (
            "comment_added".to_owned(),
            json!({
                "id": item.id,
                "comment_id": comment.id,
                "comment_text": comment.comment_text,
                "author": comment.author,
                "version": item.version,
            }),
        ),
    };
    Ok(NewEvent {
        channel: ChannelName::parse("channel", item.kind.collection())?,
        event_type: EventType::parse("type", &event_type)?,
        resource_type: Some(ResourceType::parse("resource_type", singular)?),
        resource_id: Some(item.id.clone()),
        agent_id: agent.clone(),
        session_id: session.cloned(),
        payload: serde_json::value::to_raw_value(&payload)
            .map_err(|e| DomainError::BadRequest(e.to_string()))?,
    })
}

pub fn file_event(
    file: &SharedFile,
    change: &FileChange,
    now: Timestamp,
    agent: &AgentId,
    session: Option<&SessionId>,
) -> Result<NewEvent, DomainError> {
    let (event_type, payload) = match change {
        FileChange::Created => ("file_created", to_payload(FileMetadataView::at(file, now))?),
        FileChange::Saved => ("file_saved", to_payload(FileMetadataView::at(file, now))?),
        FileChange::Deleted => (
            "files_deleted",
            to_payload(json!({ "stable_ids": [file.stable_id] }))?,
        ),
        FileChange::LockAcquired => {
            let lock = LockView::of(file)
                .ok_or_else(|| DomainError::BadRequest("lock_acquired without a lock".into()))?;
            ("lock_acquired", to_payload(lock)?)
        }
        FileChange::LockReleased { reason } => (
            "lock_released",
            to_payload(json!({ "stable_id": file.stable_id, "reason": reason }))?,
        ),
    };
    Ok(NewEvent {
        channel: ChannelName::parse("channel", "files")?,
        event_type: EventType::parse("type", event_type)?,
        resource_type: Some(ResourceType::parse("resource_type", "file")?),
        resource_id: Some(file.stable_id.clone()),
        agent_id: agent.clone(),
        session_id: session.cloned(),
        payload,
    })
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
            to_payload(ConversationView::from(conversation))?,
        ),
        ConversationChange::Updated => (
            list,
            "conversation_updated",
            "conversation",
            &conversation.id,
            to_payload(ConversationView::from(conversation))?,
        ),
        ConversationChange::Deleted => (
            list,
            "conversation_deleted",
            "conversation",
            &conversation.id,
            to_payload(json!({ "id": conversation.id, "version": conversation.version }))?,
        ),
        ConversationChange::MessageCreated(message) => (
            conversation.channel(),
            "message_created",
            "message",
            &message.id,
            to_payload(MessageView::from(message))?,
        ),
        ConversationChange::MessageCompleted(message) => (
            conversation.channel(),
            "message_completed",
            "message",
            &message.id,
            to_payload(MessageView::from(message))?,
        ),
        ConversationChange::TokensUpdated => (
            conversation.channel(),
            "tokens_updated",
            "conversation",
            &conversation.id,
            to_payload(json!({
                "conversation_id": conversation.id,
                "input_tokens": conversation.input_tokens,
                "output_tokens": conversation.output_tokens,
            }))?,
        ),
    };
    Ok(NewEvent {
        channel: ChannelName::parse("channel", &channel)?,
        event_type: EventType::parse("type", event_type)?,
        resource_type: Some(ResourceType::parse("resource_type", resource_type)?),
        resource_id: Some(resource_id.clone()),
        agent_id: agent.clone(),
        session_id: session.cloned(),
        payload,
    })
}
