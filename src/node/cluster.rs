//! Cluster membership and presence: where a session's joining and leaving
//! is recorded.
//!
//! On one server (SQLite) presence is a `session_joined` / `session_left`
//! event in the log. With a shared PostgreSQL database every process is a
//! `Node`: it registers itself, refreshes its heartbeat five times per node
//! timeout (removing nodes whose heartbeat stopped, and with them their
//! sessions), keeps its sessions in the shared presence rows, and removes
//! itself on a graceful stop. Everything here goes through the writer; this
//! module never publishes to the hub itself (see `follow.rs` for how other
//! nodes' events arrive).

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{presence_event, PresenceChange, Timestamp};
use crate::hub::{Hub, PresenceSink, SessionInfo};
use crate::node::periodic::spawn_periodic;
use crate::store::{self, presence::PresenceRow, StoreError, Tx, WeakWriter, Writer};

/// This process as one of several nodes on a shared PostgreSQL database: its
/// id, its heartbeat, and presence kept in the shared tables.
#[derive(Clone)]
pub struct Node {
    id: String,
    started_at: Timestamp,
}

impl Node {
    /// Registers a new node, starts its heartbeat and records the hub's
    /// presence in the shared rows from now on.
    pub async fn join(writer: &Writer, hub: &Arc<Hub>, timeout: Duration) -> anyhow::Result<Self> {
        let node = Node {
            id: format!("{:016x}", rand::random::<u64>()),
            started_at: Timestamp::now(),
        };
        node.beat(writer, hub, None).await?;
        tracing::info!(node_id = %node.id, "joined the nodes sharing this database");
        node.spawn_heartbeat(writer.clone(), hub.clone(), timeout);
        let recorder = node.clone();
        hub.set_presence_sink(presence_sink(writer.downgrade(), move |change, session| {
            recorder.record_presence(change, session)
        }));
        Ok(node)
    }

    /// This node's id, random per process.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Removes this node and its sessions (on a graceful stop).
    pub async fn leave(&self, writer: &Writer) {
        let id = self.id.clone();
        let done = writer
            .write(move |tx| {
                store::presence::remove_nodes(tx, None, Some(&id))?;
                Ok(())
            })
            .await;
        if let Err(err) = done {
            tracing::warn!(error = %err, "could not remove this node; the others will after its timeout");
        }
    }

    /// Refreshes the heartbeat five times per node timeout and removes nodes
    /// that stopped.
    fn spawn_heartbeat(&self, writer: Writer, hub: Arc<Hub>, timeout: Duration) {
        let shutdown = hub.shutdown_signal();
        let node = self.clone();
        spawn_periodic("heartbeat", timeout / 5, shutdown, move || {
            let (node, writer, hub) = (node.clone(), writer.clone(), hub.clone());
            async move { node.beat(&writer, &hub, Some(timeout)).await }
        });
    }

    /// Refreshes this node's heartbeat and, with `timeout`, removes nodes
    /// whose heartbeat is older than that.
    async fn beat(
        &self,
        writer: &Writer,
        hub: &Hub,
        timeout: Option<Duration>,
    ) -> Result<(), StoreError> {
        let node = self.clone();
        let rows: Vec<PresenceRow> = hub.sessions().iter().map(|s| self.row(s)).collect();
        writer
            .write(move |tx| {
                store::presence::heartbeat(tx, &node.id, node.started_at, &rows)?;
                if let Some(timeout) = timeout.and_then(|t| chrono::Duration::from_std(t).ok()) {
                    let cutoff = tx.now().minus(timeout);
                    let gone = store::presence::remove_nodes(tx, Some(cutoff), None)?;
                    if gone > 0 {
                        tracing::warn!(
                            nodes = gone,
                            "removed nodes that stopped heart-beating; their sessions left"
                        );
                    }
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    fn row(&self, session: &SessionInfo) -> PresenceRow {
        PresenceRow {
            node_id: self.id.clone(),
            session_id: session.session_id.clone(),
            agent_id: session.agent_id.clone(),
            connections: session.connections as i64,
            channels: serde_json::to_string(&session.channels).unwrap_or_else(|_| "[]".into()),
            connected_at: session.connected_at.to_string(),
        }
    }

    /// Presence through the shared tables: a session joins with its first
    /// stream on any node and leaves with its last on all of them.
    fn record_presence(
        &self,
        change: PresenceChange,
        session: &SessionInfo,
    ) -> impl FnOnce(&mut Tx<'_>) -> Result<(), StoreError> + Send + 'static {
        let row = self.row(session);
        move |tx| {
            match change {
                PresenceChange::Joined => store::presence::joined(tx, row)?,
                PresenceChange::Left => {
                    store::presence::left(tx, &row.node_id, &row.session_id, &row.agent_id)?
                }
            }
            Ok(())
        }
    }
}

/// Presence on one server: the hub's joins and leaves become events.
pub fn record_presence_as_events(writer: &Writer, hub: &Hub) {
    hub.set_presence_sink(presence_sink(writer.downgrade(), presence_as_event));
}

/// Presence changes become writer jobs made by `record` (events on one
/// server, shared rows with several). The hub reports them under its lock
/// and the writer's queue keeps their order; queueing never blocks. Presence
/// is best effort: if the writer's queue is full the change is logged and
/// not recorded.
fn presence_sink<J>(
    writer: WeakWriter,
    record: impl Fn(PresenceChange, &SessionInfo) -> J + Send + Sync + 'static,
) -> PresenceSink
where
    J: FnOnce(&mut Tx<'_>) -> Result<(), StoreError> + Send + 'static,
{
    Box::new(move |change: PresenceChange, session: &SessionInfo| {
        let Some(writer) = writer.upgrade() else {
            return; // shutting down
        };
        if !writer.write_detached(record(change, session)) {
            tracing::warn!(session_id = %session.session_id, ?change, "presence not recorded: the writer is busy");
        }
    })
}

/// A `session_joined` / `session_left` event.
fn presence_as_event(
    change: PresenceChange,
    session: &SessionInfo,
) -> impl FnOnce(&mut Tx<'_>) -> Result<(), StoreError> + Send + 'static {
    let connections = match change {
        PresenceChange::Joined => session.connections,
        PresenceChange::Left => 0,
    };
    let event = presence_event(change, &session.session_id, &session.agent_id, connections);
    move |tx| {
        tx.append(&event?)?;
        Ok(())
    }
}
