//! `record`: how every resource announces a change. The events of the
//! change are appended to the log and the resource's row is written with
//! the id of the newest one (`last_event_id`), in the same transaction, so
//! a snapshot that reads rows and the log's head together is exact.

use crate::domain::conversations::{Conversation, ConversationChange};
use crate::domain::files::{FileChange, SharedFile};
use crate::domain::work_items::{ItemChange, WorkItem};
use crate::domain::{AgentId, DomainError, EventId, NewEvent, SessionId, Timestamp};
use crate::store::{self, DbConn, StoreError, Tx};
use crate::views::announce::{conversation_event, file_event, item_event};

/// Who acts: an agent and, for a client, its session (whose streams do not
/// receive the change back).
#[derive(Debug, Clone)]
pub struct Actor {
    pub agent: AgentId,
    pub session: Option<SessionId>,
}

impl Actor {
    pub fn new(agent: AgentId, session: Option<SessionId>) -> Self {
        Actor { agent, session }
    }

    /// The server itself (expiries), with no session: every stream sees it.
    pub fn server() -> Self {
        Actor {
            agent: AgentId::server(),
            session: None,
        }
    }
}

/// A resource whose changes are announced as events.
pub trait Resource {
    type Change;

    /// The event announcing `change`, made by `actor` at `now`.
    fn event(
        &self,
        change: &Self::Change,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, DomainError>;

    /// Writes the row; `last_event_id` is its newest event.
    fn save(&self, conn: &mut DbConn, last_event_id: EventId) -> Result<(), StoreError>;
}

/// Appends the events of `changes` and writes `resource`'s row with the id
/// of the last one; writes nothing when there are no changes. Returns the
/// appended events' ids, in order.
pub fn record<R: Resource>(
    tx: &mut Tx<'_>,
    resource: &R,
    actor: &Actor,
    changes: &[R::Change],
) -> Result<Vec<EventId>, StoreError> {
    let now = tx.now();
    let mut ids = Vec::with_capacity(changes.len());
    for change in changes {
        let event = resource.event(change, actor, now)?;
        ids.push(tx.append(&event)?.id);
    }
    if let Some(last) = ids.last() {
        resource.save(tx.conn()?, *last)?;
    }
    Ok(ids)
}

impl Resource for WorkItem {
    type Change = ItemChange;

    fn event(
        &self,
        change: &ItemChange,
        actor: &Actor,
        _: Timestamp,
    ) -> Result<NewEvent, DomainError> {
        item_event(self, change, &actor.agent, actor.session.as_ref())
    }

    fn save(&self, conn: &mut DbConn, last_event_id: EventId) -> Result<(), StoreError> {
        store::work_items::save(conn, self, last_event_id)
    }
}

impl Resource for SharedFile {
    type Change = FileChange;

    fn event(
        &self,
        change: &FileChange,
        actor: &Actor,
        now: Timestamp,
    ) -> Result<NewEvent, DomainError> {
        file_event(self, change, now, &actor.agent, actor.session.as_ref())
    }

    fn save(&self, conn: &mut DbConn, last_event_id: EventId) -> Result<(), StoreError> {
        store::files::save(conn, self, last_event_id)
    }
}

impl Resource for Conversation {
    type Change = ConversationChange;

    fn event(
        &self,
        change: &ConversationChange,
        actor: &Actor,
        _: Timestamp,
    ) -> Result<NewEvent, DomainError> {
        conversation_event(self, change, &actor.agent, actor.session.as_ref())
    }

    fn save(&self, conn: &mut DbConn, last_event_id: EventId) -> Result<(), StoreError> {
        store::conversations::save(conn, self, last_event_id)
    }
}
