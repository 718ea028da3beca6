//! A live reader's registration with the hub on its stream's channel: made
//! before the reader reads the database, so no append is missed between the
//! read and the wait (the register-then-read hand-over of the native
//! stream). It carries no bytes: it only wakes the reader, who reads again.

use std::sync::Arc;
use std::time::Duration;

use crate::app::durable as use_case;
use crate::domain::{ChannelPattern, StreamFilter, Timestamp};
use crate::http::AppState;
use crate::hub::{FrameQueue, Framing, Hub, SubscriberId};

/// A hub registration on a stream's channel, removed when dropped.
pub(super) struct Watch {
    hub: Arc<Hub>,
    id: SubscriberId,
    queue: Arc<FrameQueue>,
    /// The newest event of the stream this watch has seen.
    pub(super) seen: i64,
}

impl Watch {
    pub(super) fn new(state: &AppState, path: &str) -> Watch {
        let filter = StreamFilter {
            patterns: vec![ChannelPattern::Exact(use_case::channel(path))],
            resource_ids: None,
            exclude_session: None,
            allowed: None,
            mercure: None,
        };
        let reg = state
            .hub
            .subscribe(filter, Framing::Plain, None, Timestamp::now());
        Watch {
            hub: state.hub.clone(),
            id: reg.id,
            seen: reg.head_id.get(),
            queue: reg.queue,
        }
    }

    /// Whether the server is stopping (the hub closes the queue): long-polls
    /// answer and SSE reads end, cleanly, as native streams do.
    pub(super) fn stopping(&self) -> bool {
        self.queue.is_closed()
    }

    /// Waits until something happens on the stream (true) or `limit` passes.
    pub(super) async fn changed(&mut self, limit: Duration) -> bool {
        if self.queue.is_lagged() {
            self.hub.clear_lag(self.id);
            return true;
        }
        // A closed queue (the server is stopping) is ready at once.
        let woke = tokio::time::timeout(limit, self.queue.ready())
            .await
            .is_ok();
        while let Some(frame) = self.queue.try_recv() {
            self.seen = self.seen.max(frame.id.get());
        }
        woke
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.hub.unsubscribe(self.id);
    }
}
