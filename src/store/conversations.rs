//! Conversations and messages in SQLite. A streaming message's text grows in
//! place (`content = content || delta`), so a delta costs one small UPDATE
//! however long the message already is.

use super::db::{DbConn, MultiBackend};
use diesel::prelude::*;

use super::error::{stored_agent, stored_id, stored_time};
use super::schema::{conversations, messages};
use super::StoreError;
use crate::domain::conversations::{Conversation, Message, MessageStatus, Role, Usage};
use crate::domain::{EventId, ResourceId, Timestamp};

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = conversations)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
struct ConversationRow {
    id: String,
    title: String,
    message_count: i64,
    input_tokens: i64,
    output_tokens: i64,
    version: i64,
    created_at: String,
    updated_at: String,
    created_by: String,
    updated_by: String,
    deleted: bool,
    last_event_id: i64,
}

impl ConversationRow {
    fn from_conversation(c: &Conversation, last_event_id: EventId) -> Self {
        ConversationRow {
            id: c.id.as_str().to_owned(),
            title: c.title.clone(),
            message_count: c.message_count,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            version: c.version,
            created_at: c.created_at.to_string(),
            updated_at: c.updated_at.to_string(),
            created_by: c.created_by.as_str().to_owned(),
            updated_by: c.updated_by.as_str().to_owned(),
            deleted: c.deleted,
            last_event_id: last_event_id.get(),
        }
    }

    fn into_conversation(self) -> Result<Conversation, StoreError> {
        let what = || format!("conversation {}", self.id);
        let created_by = stored_agent(self.created_by, what)?;
        let updated_by = stored_agent(self.updated_by, what)?;
        Ok(Conversation {
            created_at: stored_time(&self.created_at, what)?,
            updated_at: stored_time(&self.updated_at, what)?,
            id: stored_id(self.id, || "conversation".to_owned())?,
            title: self.title,
            message_count: self.message_count,
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            version: self.version,
            created_by,
            updated_by,
            deleted: self.deleted,
        })
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = messages)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
struct MessageRow {
    id: String,
    conversation_id: String,
    seq: i64,
    role: String,
    content: String,
    content_units: i64,
    status: String,
    input_tokens: Option<i64>,
    output_tokens: Option<i64>,
    created_at: String,
    updated_at: String,
    created_by: String,
}

impl MessageRow {
    fn from_message(m: &Message) -> Self {
        MessageRow {
            id: m.id.as_str().to_owned(),
            conversation_id: m.conversation_id.as_str().to_owned(),
            seq: m.seq,
            role: m.role.as_str().to_owned(),
            content: m.content.clone(),
            content_units: m.content_units,
            status: m.status.as_str().to_owned(),
            input_tokens: m.usage.map(|u| u.input_tokens),
            output_tokens: m.usage.map(|u| u.output_tokens),
            created_at: m.created_at.to_string(),
            updated_at: m.updated_at.to_string(),
            created_by: m.created_by.as_str().to_owned(),
        }
    }

    fn into_message(self) -> Result<Message, StoreError> {
        let status = MessageStatus::parse("status", &self.status)
            .map_err(|_| StoreError::Corrupt(format!("message {}: bad status", self.id)))?;
        let usage = match (self.input_tokens, self.output_tokens) {
            (None, None) => None,
            (input, output) => Some(Usage {
                input_tokens: input.unwrap_or(0),
                output_tokens: output.unwrap_or(0),
            }),
        };
        let what = || format!("message {}", self.id);
        let role = Role::parse("role", &self.role)
            .map_err(|_| StoreError::Corrupt(format!("{}: bad role", what())))?;
        let conversation_id = stored_id(self.conversation_id, || {
            format!("message {}: conversation_id", self.id)
        })?;
        let created_by = stored_agent(self.created_by, what)?;
        Ok(Message {
            created_at: stored_time(&self.created_at, what)?,
            updated_at: stored_time(&self.updated_at, what)?,
            id: stored_id(self.id, || "message".to_owned())?,
            conversation_id,
            seq: self.seq,
            role,
            content: self.content,
            content_units: self.content_units,
            status,
            usage,
            created_by,
        })
    }
}

/// The conversation, tombstones included.
pub fn load(conn: &mut DbConn, id: &ResourceId) -> Result<Option<Conversation>, StoreError> {
    conversations::table
        .find(id.as_str())
        .select(ConversationRow::as_select())
        .get_result(conn)
        .optional()?
        .map(ConversationRow::into_conversation)
        .transpose()
}

pub fn save(conn: &mut DbConn, c: &Conversation, last_event_id: EventId) -> Result<(), StoreError> {
    let row = ConversationRow::from_conversation(c, last_event_id);
    let updated = diesel::update(conversations::table.find(c.id.as_str()))
        .set(&row)
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(conversations::table)
            .values(&row)
            .execute(conn)?;
    }
    Ok(())
}

fn load_rows(
    query: conversations::BoxedQuery<'_, MultiBackend>,
    conn: &mut DbConn,
) -> Result<Vec<Conversation>, StoreError> {
    query
        .select(ConversationRow::as_select())
        .load(conn)?
        .into_iter()
        .map(ConversationRow::into_conversation)
        .collect()
}

/// Live conversations, most recently changed first.
pub fn list(conn: &mut DbConn) -> Result<Vec<Conversation>, StoreError> {
    load_rows(
        conversations::table
            .filter(conversations::deleted.eq(false))
            .order((conversations::updated_at.desc(), conversations::id.asc()))
            .into_boxed(),
        conn,
    )
}

/// Conversations changed after event `cursor`, tombstones included.
pub fn changed_since(conn: &mut DbConn, cursor: EventId) -> Result<Vec<Conversation>, StoreError> {
    load_rows(
        conversations::table
            .filter(conversations::last_event_id.gt(cursor.get()))
            .order(conversations::last_event_id.asc())
            .into_boxed(),
        conn,
    )
}

/// Conversations whose `updated_at` is after `since`, tombstones included.
pub fn updated_after(conn: &mut DbConn, since: Timestamp) -> Result<Vec<Conversation>, StoreError> {
    load_rows(
        conversations::table
            .filter(conversations::updated_at.gt(since.to_string()))
            .order(conversations::updated_at.asc())
            .into_boxed(),
        conn,
    )
}

pub fn insert_message(conn: &mut DbConn, message: &Message) -> Result<(), StoreError> {
    diesel::insert_into(messages::table)
        .values(MessageRow::from_message(message))
        .execute(conn)?;
    Ok(())
}

pub fn update_message(conn: &mut DbConn, message: &Message) -> Result<(), StoreError> {
    diesel::update(messages::table.find(message.id.as_str()))
        .set(MessageRow::from_message(message))
        .execute(conn)?;
    Ok(())
}

pub fn load_message(
    conn: &mut DbConn,
    conversation_id: &ResourceId,
    id: &ResourceId,
) -> Result<Option<Message>, StoreError> {
    messages::table
        .find(id.as_str())
        .filter(messages::conversation_id.eq(conversation_id.as_str()))
        .select(MessageRow::as_select())
        .get_result(conn)
        .optional()?
        .map(MessageRow::into_message)
        .transpose()
}

pub fn message_exists(conn: &mut DbConn, id: &ResourceId) -> Result<bool, StoreError> {
    Ok(messages::table
        .find(id.as_str())
        .select(messages::id)
        .first::<String>(conn)
        .optional()?
        .is_some())
}

/// Appends `text` to a streaming message; returns the offset it was appended
/// at, or `None` when no streaming message has that id.
pub fn append_delta(
    conn: &mut DbConn,
    conversation_id: &ResourceId,
    id: &ResourceId,
    text: &str,
    units: i64,
    now: Timestamp,
) -> Result<Option<i64>, StoreError> {
    let new_length: Option<i64> = diesel::update(
        messages::table
            .find(id.as_str())
            .filter(messages::conversation_id.eq(conversation_id.as_str()))
            .filter(messages::status.eq(MessageStatus::Streaming.as_str())),
    )
    .set((
        messages::content.eq(messages::content.concat(text)),
        messages::content_units.eq(messages::content_units + units),
        messages::updated_at.eq(now.to_string()),
    ))
    .returning(messages::content_units)
    .get_result(conn)
    .optional()?;
    Ok(new_length.map(|length| length - units))
}

/// One page of messages, oldest first: the newest `limit` with a position
/// below `before_seq` (all when `None`).
pub fn messages_page(
    conn: &mut DbConn,
    conversation_id: &ResourceId,
    before_seq: Option<i64>,
    limit: i64,
) -> Result<Vec<Message>, StoreError> {
    let mut query = messages::table
        .filter(messages::conversation_id.eq(conversation_id.as_str()))
        .into_boxed();
    if let Some(before) = before_seq {
        query = query.filter(messages::seq.lt(before));
    }
    let mut page = query
        .order(messages::seq.desc())
        .limit(limit)
        .select(MessageRow::as_select())
        .load(conn)?
        .into_iter()
        .map(MessageRow::into_message)
        .collect::<Result<Vec<_>, _>>()?;
    page.reverse();
    Ok(page)
}

pub fn delete_messages(conn: &mut DbConn, conversation_id: &ResourceId) -> Result<(), StoreError> {
    diesel::delete(messages::table.filter(messages::conversation_id.eq(conversation_id.as_str())))
        .execute(conn)?;
    Ok(())
}
