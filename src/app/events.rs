//! Generic publish: one event, or a batch stored all or nothing with
//! consecutive ids. The built-in channels are written only by the server.

use crate::domain::{ChannelName, DomainError, Event, NewEvent};
use crate::store::{StoreError, Tx};

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

/// Appends one event.
pub fn publish(tx: &mut Tx<'_>, event: &NewEvent) -> Result<Event, StoreError> {
    check_publishable(&event.channel)?;
    Ok(tx.append(event)?.clone())
}

/// Appends every event, in order, or none (the job's savepoint).
pub fn publish_batch(tx: &mut Tx<'_>, events: &[NewEvent]) -> Result<Vec<Event>, StoreError> {
    check_batch_size(events.len())?;
    events.iter().map(|event| publish(tx, event)).collect()
}
