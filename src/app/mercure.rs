//! Mercure updates: each one is an event in the log (channel `mercure`, or
//! `mercure:private` for private ones) and a row naming its update id, in
//! one transaction, so a subscriber resumes from the id it last received.

use serde_json::json;

use super::Actor;
use crate::domain::mercure::Update;
use crate::domain::{DomainError, Event, NewEvent};
use crate::store::{self, StoreError, Tx};
use crate::views::to_payload;

/// Stores `update`; an id used before is a conflict (a resume from it would
/// be ambiguous).
pub fn publish(tx: &mut Tx<'_>, actor: &Actor, update: &Update) -> Result<Event, StoreError> {
    update.check()?;
    let event = NewEvent {
        channel: update.channel(),
        event_type: Update::event_type(),
        resource_type: None,
        resource_id: None,
        agent_id: actor.agent.clone(),
        session_id: actor.session.clone(),
        payload: to_payload(update)?,
    };
    let stored = tx.append(&event)?.clone();
    if !store::mercure::insert(tx.conn()?, &update.id, stored.id)? {
        return Err(DomainError::Conflict {
            code: "conflict",
            message: format!(
                "update id {} was used before: ids must be unique",
                update.id
            ),
            details: json!({ "id": update.id }),
        }
        .into());
    }
    Ok(stored)
}
