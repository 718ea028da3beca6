//! Cross-node fan-out for a shared PostgreSQL database.
//!
//! Every node's hub is fed in id order from one position, the hub's head:
//! - its own writer publishes a commit directly when nothing committed in
//!   between (`Hub::publish_after`: the head it saw under the write lock is
//!   still the hub's head);
//! - otherwise, and for every other node's commit, this follower reads the
//!   log above the hub's head and publishes what it finds.
//!
//! The follower wakes on `NOTIFY` (sent by every commit with events; its
//! payload, the commit's last id, lets it skip reading when the hub is already
//! past it or when it is the node's own commit, which the writer publishes),
//! on its own writer's request (`Prompts`), and
//! on a timer, so a lost notification (the LISTEN connection dropped) costs
//! latency, never an event. Events are read by id from the hub's head, so
//! notifications that arrive late, out of order or coalesced change nothing.
//! Reads that fail (the database is gone) are retried; the node catches up
//! as soon as it can read again.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::domain::EventId;
use crate::hub::Hub;
use crate::store::listen::{Announced, Listener};
use crate::store::{events, Store};

/// What this node's writer tells its follower.
#[derive(Debug, Default)]
pub struct Prompts {
    /// Read the log now: a commit could not be published directly.
    wake: Notify,
    /// The last id of the batch the writer is committing (0: none). Its
    /// `NOTIFY` comes back to this node too, often before the writer has
    /// published the batch; the follower then leaves it to the writer
    /// instead of reading the batch back from the log.
    committing: AtomicI64,
}

impl Prompts {
    /// The writer is about to commit a batch ending at `last`.
    pub fn committing(&self, last: EventId) {
        self.committing.store(last.get(), Ordering::SeqCst);
    }

    /// The batch announced by `committing` is settled: published by the
    /// writer, or (`read_log`) left to the follower to read from the log.
    pub fn settled(&self, read_log: bool) {
        self.committing.store(0, Ordering::SeqCst);
        if read_log {
            self.wake.notify_one();
        }
    }

    /// A notification through `last_id` is already published, or is this
    /// node's own commit, which its writer publishes (or settles with
    /// `read_log`).
    fn covered(&self, last_id: EventId, hub: &Hub) -> bool {
        // In this order: the writer publishes, then clears `committing`.
        last_id.get() <= self.committing.load(Ordering::SeqCst) || last_id <= hub.head_id()
    }
}

/// Events read from the log per query.
const PAGE: i64 = 2000;
/// Polling while the LISTEN connection is down.
const POLL_WITHOUT_LISTENER: Duration = Duration::from_millis(250);
/// Polling beside a working LISTEN connection (a safety net only).
const POLL_WITH_LISTENER: Duration = Duration::from_secs(2);
/// The waits between two attempts to reconnect the LISTEN connection.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one attempt may take (an unreachable host would take minutes).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn spawn(
    url: String,
    store: Store,
    hub: Arc<Hub>,
    prompts: Arc<Prompts>,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut listener: Option<Listener> = None;
        let mut backoff = MIN_BACKOFF;
        let mut next_attempt = tokio::time::Instant::now();
        let mut read_log = true;
        loop {
            if listener.is_none() && tokio::time::Instant::now() >= next_attempt {
                match tokio::time::timeout(CONNECT_TIMEOUT, Listener::connect(&url)).await {
                    Ok(Ok(connected)) => {
                        tracing::info!("listening for other nodes' commits");
                        listener = Some(connected);
                        backoff = MIN_BACKOFF;
                        // Commits announced while not listening were missed.
                        read_log = true;
                    }
                    failed => {
                        let error = match failed {
                            Ok(Err(err)) => err.to_string(),
                            _ => format!("no answer within {CONNECT_TIMEOUT:?}"),
                        };
                        tracing::warn!(%error, retry_in = ?backoff, "cannot LISTEN; polling the log meanwhile");
                        next_attempt = tokio::time::Instant::now() + backoff;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            if read_log {
                if let Err(err) = catch_up(&store, &hub).await {
                    tracing::warn!(error = %err, "cannot read the shared log; retrying");
                }
            }
            // Unless a wake-up says otherwise, the next round reads the log.
            read_log = true;
            let poll = if listener.is_some() {
                POLL_WITH_LISTENER
            } else {
                POLL_WITHOUT_LISTENER
            };
            tokio::select! {
                heard = async {
                    match listener.as_mut() {
                        Some(l) => l.next().await,
                        None => std::future::pending().await,
                    }
                } => match heard {
                    // This node's own commit (published, or about to be,
                    // by its writer) or one the follower already read:
                    // nothing new.
                    Some(Announced::Through(last_id)) => read_log = !prompts.covered(last_id, &hub),
                    Some(Announced::Unknown) => {}
                    None => {
                        tracing::warn!("lost the LISTEN connection; reconnecting");
                        listener = None;
                    }
                },
                _ = prompts.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

/// Publishes every event above the hub's head, in id order.
async fn catch_up(store: &Store, hub: &Hub) -> Result<(), crate::store::StoreError> {
    loop {
        let after = hub.head_id();
        let page = store
            .read(move |conn| events::read_after(conn, after, PAGE))
            .await?;
        if page.is_empty() {
            return Ok(());
        }
        if page[0].id > after.next() {
            // A gap: retention, or a failover that lost the ids this hub
            // published last (PostgreSQL, asynchronous standby). Then every
            // stream reads the log first, where a cursor in the lost range
            // gets `resync`, before any event of the new timeline.
            let position = store.read(events::position).await?;
            if position.lost_cursor(after) {
                tracing::warn!(
                    published_through = after.get(),
                    kept_through = position.lost.map_or(0, |(kept, _)| kept.get()),
                    "the database failed over and lost events this node published; streams resync"
                );
                metrics::counter!("switchboard_failover_lost_ranges_total").increment(1);
                hub.reread_all();
            }
        }
        let refs: Vec<_> = page.iter().collect();
        hub.publish(&refs);
        if (page.len() as i64) < PAGE {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt as _;

    use super::*;

    fn id(n: i64) -> EventId {
        EventId::from_stored(n)
    }

    fn woken(prompts: &Prompts) -> bool {
        prompts.wake.notified().now_or_never().is_some()
    }

    #[test]
    fn a_notification_of_the_batch_in_flight_is_left_to_the_writer() {
        let hub = Hub::new(id(10), 16);
        let prompts = Prompts::default();
        // Nothing in flight: what the hub has is covered, the rest is read.
        assert!(prompts.covered(id(10), &hub));
        assert!(!prompts.covered(id(12), &hub));

        // The writer commits 11..=15: its NOTIFY (or an earlier node's,
        // below it) waits for the writer; a later commit is read.
        prompts.committing(id(15));
        assert!(prompts.covered(id(15), &hub));
        assert!(prompts.covered(id(12), &hub));
        assert!(!prompts.covered(id(16), &hub));
        assert!(!woken(&prompts));

        // Published by the writer: nothing to read, nobody woken.
        prompts.settled(false);
        assert!(!woken(&prompts));

        // Not published (another node's events lie between, or COMMIT
        // failed): the batch is no longer covered and the follower reads.
        prompts.committing(id(20));
        prompts.settled(true);
        assert!(!prompts.covered(id(20), &hub));
        assert!(woken(&prompts));
    }
}
