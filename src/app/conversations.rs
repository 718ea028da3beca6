//! Conversations and streaming messages: create, rename, delete, add a
//! message, append a delta (the hot path of streaming), complete a message.
//! The numbering, counting and usage rules live in `domain::conversations`.

use serde_json::json;

use super::{record, Actor};
use crate::domain::conversations::{
    delta_event, text_units, Conversation, ConversationChange, Message, NewMessage, Usage,
};
use crate::domain::precondition::IfMatch;
use crate::domain::{DomainError, ResourceId};
use crate::store::conversations as store;
use crate::store::{StoreError, Tx};
use crate::views::{ConversationView, DeltaView, MessageView};

/// A new conversation; 409 `already_exists` when a live one has the id.
pub fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    id: ResourceId,
    title: String,
) -> Result<Conversation, StoreError> {
    let previous = store::load(tx.conn()?, &id)?;
    if previous.as_ref().is_some_and(|c| !c.deleted) {
        return Err(DomainError::Conflict {
            code: "already_exists",
            message: format!("conversation {id} already exists"),
            details: json!({ "id": id }),
        }
        .into());
    }
    let conversation = Conversation::new(id, title, previous.as_ref(), &actor.agent, tx.now());
    record(tx, &conversation, actor, &[ConversationChange::Created])?;
    Ok(conversation)
}

/// A new title; nothing is announced when it is the same.
pub fn rename(
    tx: &mut Tx<'_>,
    actor: &Actor,
    id: &ResourceId,
    if_match: Option<IfMatch>,
    title: String,
) -> Result<Conversation, StoreError> {
    let mut conversation = load_checked(tx, id, if_match)?;
    if conversation.title != title {
        conversation.title = title;
        conversation.touch(&actor.agent, tx.now());
        record(tx, &conversation, actor, &[ConversationChange::Updated])?;
    }
    Ok(conversation)
}

/// The conversation becomes a tombstone; its messages go.
pub fn delete(
    tx: &mut Tx<'_>,
    actor: &Actor,
    id: &ResourceId,
    if_match: Option<IfMatch>,
) -> Result<Conversation, StoreError> {
    let mut conversation = load_checked(tx, id, if_match)?;
    store::delete_messages(tx.conn()?, id)?;
    conversation.deleted = true;
    conversation.touch(&actor.agent, tx.now());
    record(tx, &conversation, actor, &[ConversationChange::Deleted])?;
    Ok(conversation)
}

/// Adds a message (`message_created`, `tokens_updated` with usage,
/// `conversation_updated`); 409 `already_exists` when the id is taken.
pub fn create_message(
    tx: &mut Tx<'_>,
    actor: &Actor,
    conversation_id: &ResourceId,
    new: NewMessage,
) -> Result<Message, StoreError> {
    let mut conversation = load_live(tx, conversation_id)?;
    if store::message_exists(tx.conn()?, &new.id)? {
        return Err(DomainError::Conflict {
            code: "already_exists",
            message: format!("message {} already exists", new.id),
            details: json!({ "id": new.id }),
        }
        .into());
    }
    let (message, changes) = conversation.add_message(new, &actor.agent, tx.now());
    store::insert_message(tx.conn()?, &message)?;
    record(tx, &conversation, actor, &changes)?;
    Ok(message)
}

/// Appends `text` to a streaming message and announces `message_delta`
/// with its offset (in UTF-16 units). One `UPDATE … RETURNING` and one
/// event: the conversation is not loaded.
pub fn append_delta(
    tx: &mut Tx<'_>,
    actor: &Actor,
    conversation_id: &ResourceId,
    message_id: &ResourceId,
    text: &str,
) -> Result<DeltaView, StoreError> {
    let units = text_units(text);
    let now = tx.now();
    let Some(offset) =
        store::append_delta(tx.conn()?, conversation_id, message_id, text, units, now)?
    else {
        return Err(
            match store::load_message(tx.conn()?, conversation_id, message_id)? {
                Some(_) => DomainError::Conflict {
                    code: "conflict",
                    message: format!("message {message_id} is complete: it takes no more deltas"),
                    details: json!({ "message_id": message_id }),
                },
                None => DomainError::NotFound(format!(
                    "message {message_id} in conversation {conversation_id}"
                )),
            }
            .into(),
        );
    };
    let event = delta_event(
        conversation_id,
        message_id,
        offset,
        text,
        &actor.agent,
        actor.session.as_ref(),
    )?;
    tx.append(&event)?;
    Ok(DeltaView {
        message_id: message_id.clone(),
        offset,
        length: offset + units,
    })
}

/// Completes a streaming message with its final usage.
pub fn complete_message(
    tx: &mut Tx<'_>,
    actor: &Actor,
    conversation_id: &ResourceId,
    message_id: &ResourceId,
    usage: Option<Usage>,
) -> Result<Message, StoreError> {
    let mut conversation = load_live(tx, conversation_id)?;
    let mut message =
        store::load_message(tx.conn()?, conversation_id, message_id)?.ok_or_else(|| {
            DomainError::NotFound(format!(
                "message {message_id} in conversation {conversation_id}"
            ))
        })?;
    let changes = conversation
        .complete_message(&mut message, usage, &actor.agent, tx.now())
        .map_err(|err| match err {
            // The client is shown the message as it stands.
            DomainError::Conflict {
                code, message: why, ..
            } => DomainError::Conflict {
                code,
                message: why,
                details: serde_json::json!({ "message": MessageView::from(&message) }),
            },
            other => other,
        })?;
    store::update_message(tx.conn()?, &message)?;
    record(tx, &conversation, actor, &changes)?;
    Ok(message)
}

fn load_live(tx: &mut Tx<'_>, id: &ResourceId) -> Result<Conversation, StoreError> {
    store::load(tx.conn()?, id)?
        .filter(|c| !c.deleted)
        .ok_or_else(|| DomainError::NotFound(format!("conversation {id}")).into())
}

fn load_checked(
    tx: &mut Tx<'_>,
    id: &ResourceId,
    if_match: Option<IfMatch>,
) -> Result<Conversation, StoreError> {
    let conversation = load_live(tx, id)?;
    if let Some(precondition) = if_match {
        precondition.check_version(conversation.version, || {
            ConversationView::from(&conversation)
        })?;
    }
    Ok(conversation)
}
