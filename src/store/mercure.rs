//! Mercure update ids and the events they are stored as.

use diesel::prelude::*;

use super::schema::mercure_updates;
use super::{DbConn, StoreError};
use crate::domain::EventId;

/// Records that update `update_id` is event `event_id`; false when the id is
/// taken already (by an earlier update).
pub fn insert(conn: &mut DbConn, update_id: &str, event_id: EventId) -> Result<bool, StoreError> {
    // The primary key decides, also between nodes racing on one id.
    let inserted = diesel::insert_into(mercure_updates::table)
        .values((
            mercure_updates::update_id.eq(update_id),
            mercure_updates::event_id.eq(event_id.get()),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(true),
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// The event update `update_id` is stored as.
pub fn find(conn: &mut DbConn, update_id: &str) -> Result<Option<EventId>, StoreError> {
    let id: Option<i64> = mercure_updates::table
        .filter(mercure_updates::update_id.eq(update_id))
        .select(mercure_updates::event_id)
        .get_result(conn)
        .optional()?;
    Ok(id.map(EventId::from_stored))
}

/// The id of the newest update, if any.
pub fn last_update_id(conn: &mut DbConn) -> Result<Option<String>, StoreError> {
    Ok(mercure_updates::table
        .order(mercure_updates::event_id.desc())
        .select(mercure_updates::update_id)
        .first(conn)
        .optional()?)
}

/// Forgets the ids of updates whose events were pruned.
pub fn forget_through(conn: &mut DbConn, highest: EventId) -> Result<usize, StoreError> {
    Ok(
        diesel::delete(mercure_updates::table.filter(mercure_updates::event_id.le(highest.get())))
            .execute(conn)?,
    )
}
