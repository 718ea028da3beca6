//! Generic publish: one event, or a batch stored all or nothing with
//! consecutive ids. The rules (the built-in channels are written only by
//! the server; a batch holds 1 to 1000 events) are `domain::event`'s.

use crate::domain::event::{check_batch_size, check_publishable};
use crate::domain::{Event, NewEvent};
use crate::store::{StoreError, Tx};

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
