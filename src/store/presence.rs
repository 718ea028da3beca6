//! Presence across nodes (PostgreSQL only). Each node keeps one row per
//! session with an open stream on it; every change runs as a writer job, so
//! under the cluster-wide write lock: a session joins when its first row
//! appears on any node and leaves when its last row goes, however its streams
//! are spread over nodes. A node that stops heart-beating is removed by the
//! others, and its sessions leave.

use diesel::prelude::*;

use super::error::stored_time;
use super::schema::{nodes, presence};
use super::{StoreError, Tx};
use crate::domain::{presence_event, PresenceChange, Timestamp};

/// A session's streams on one node.
#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = presence)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct PresenceRow {
    pub node_id: String,
    pub session_id: String,
    pub agent_id: String,
    pub connections: i64,
    /// A JSON array of channel patterns.
    pub channels: String,
    pub connected_at: String,
}

impl PresenceRow {
    /// When the session's first stream on this node opened.
    pub fn connected_at(&self) -> Result<Timestamp, StoreError> {
        stored_time(&self.connected_at, || {
            format!("presence of {}", self.session_id)
        })
    }
}

fn rows_left(tx: &mut Tx<'_>, session_id: &str) -> Result<i64, StoreError> {
    Ok(presence::table
        .filter(presence::session_id.eq(session_id))
        .count()
        .get_result(tx.conn()?)?)
}

/// The session's first stream on this node opened: records it, and publishes
/// `session_joined` if no other node has the session.
pub fn joined(tx: &mut Tx<'_>, row: PresenceRow) -> Result<(), StoreError> {
    let first = rows_left(tx, &row.session_id)? == 0;
    diesel::delete(
        presence::table
            .filter(presence::node_id.eq(&row.node_id))
            .filter(presence::session_id.eq(&row.session_id)),
    )
    .execute(tx.conn()?)?;
    diesel::insert_into(presence::table)
        .values(&row)
        .execute(tx.conn()?)?;
    if first {
        let event = presence_event(
            PresenceChange::Joined,
            &row.session_id,
            &row.agent_id,
            row.connections as usize,
        )?;
        tx.append(&event)?;
    }
    Ok(())
}

/// The session's last stream on this node closed: forgets it, and publishes
/// `session_left` if no other node has the session.
pub fn left(
    tx: &mut Tx<'_>,
    node_id: &str,
    session_id: &str,
    agent_id: &str,
) -> Result<(), StoreError> {
    let deleted = diesel::delete(
        presence::table
            .filter(presence::node_id.eq(node_id))
            .filter(presence::session_id.eq(session_id)),
    )
    .execute(tx.conn()?)?;
    if deleted > 0 && rows_left(tx, session_id)? == 0 {
        tx.append(&presence_event(
            PresenceChange::Left,
            session_id,
            agent_id,
            0,
        )?)?;
    }
    Ok(())
}

/// Registers a node (at start) or refreshes its heartbeat, updating the
/// connection counts and channels of the sessions it still has. Rows of a
/// registered node are only updated here, never created or deleted: joins
/// and leaves do that, in the order the node's hub saw them.
pub fn heartbeat(
    tx: &mut Tx<'_>,
    node_id: &str,
    started_at: Timestamp,
    sessions: &[PresenceRow],
) -> Result<(), StoreError> {
    let now = tx.now().to_string();
    let updated = diesel::update(nodes::table.find(node_id))
        .set(nodes::heartbeat_at.eq(&now))
        .execute(tx.conn()?)?;
    if updated == 0 {
        // A new node, or one the others removed while it was cut off: its
        // sessions (re)join.
        diesel::insert_into(nodes::table)
            .values((
                nodes::node_id.eq(node_id),
                nodes::started_at.eq(started_at.to_string()),
                nodes::heartbeat_at.eq(&now),
            ))
            .execute(tx.conn()?)?;
        for row in sessions {
            joined(tx, row.clone())?;
        }
        return Ok(());
    }
    for row in sessions {
        diesel::update(
            presence::table
                .filter(presence::node_id.eq(node_id))
                .filter(presence::session_id.eq(&row.session_id)),
        )
        .set((
            presence::connections.eq(row.connections),
            presence::channels.eq(&row.channels),
        ))
        .execute(tx.conn()?)?;
    }
    Ok(())
}

/// Removes nodes whose heartbeat is older than `cutoff` (and a stopping
/// node, by its id), with their sessions; sessions present nowhere else
/// leave. Returns how many nodes went.
pub fn remove_nodes(
    tx: &mut Tx<'_>,
    cutoff: Option<Timestamp>,
    stopping: Option<&str>,
) -> Result<usize, StoreError> {
    let mut gone: Vec<String> = nodes::table
        .filter(nodes::heartbeat_at.lt(cutoff.map(|t| t.to_string()).unwrap_or_default()))
        .select(nodes::node_id)
        .load(tx.conn()?)?;
    if let Some(stopping) = stopping {
        gone.push(stopping.to_owned());
    }
    for node_id in &gone {
        let rows: Vec<PresenceRow> = presence::table
            .filter(presence::node_id.eq(node_id))
            .select(PresenceRow::as_select())
            .load(tx.conn()?)?;
        for row in rows {
            left(tx, node_id, &row.session_id, &row.agent_id)?;
        }
        diesel::delete(nodes::table.find(node_id)).execute(tx.conn()?)?;
    }
    Ok(gone.len())
}

/// Every session row of every node whose heartbeat is not older than `cutoff`.
pub fn live_rows(
    conn: &mut super::DbConn,
    cutoff: Timestamp,
) -> Result<Vec<PresenceRow>, StoreError> {
    Ok(presence::table
        .inner_join(nodes::table.on(nodes::node_id.eq(presence::node_id)))
        .filter(nodes::heartbeat_at.ge(cutoff.to_string()))
        .order((presence::session_id.asc(), presence::node_id.asc()))
        .select(PresenceRow::as_select())
        .load(conn)?)
}
