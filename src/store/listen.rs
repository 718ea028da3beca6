//! Hearing other nodes' commits on PostgreSQL: a `LISTEN` connection of its
//! own (tokio-postgres, because sync diesel cannot wait for a notification).
//! The payload (the last id of the commit) is only a hint: a reader already
//! past it may skip reading; otherwise it reads the log from its own
//! position, so late, reordered or coalesced notifications lose and repeat
//! nothing.

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, NoTls};

use super::writer::NOTIFY_CHANNEL;
use super::StoreError;
use crate::domain::EventId;

/// What a notification announced. `Unknown` sorts above every id: of
/// several notifications heard at once, one unreadable means "read the log".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Announced {
    /// A commit whose newest event has this id.
    Through(EventId),
    /// A payload that is not an event id.
    Unknown,
}

pub struct Listener {
    heard: mpsc::UnboundedReceiver<Announced>,
    // Keeps the connection open; dropping it ends the LISTEN.
    _client: tokio_postgres::Client,
}

impl Listener {
    /// Connects and starts listening. Notifications sent before this returns
    /// may be missed: read the log after it.
    pub async fn connect(url: &str) -> Result<Listener, StoreError> {
        let unavailable = |e: tokio_postgres::Error| {
            StoreError::Unavailable(format!("cannot listen for other nodes' commits: {e}"))
        };
        let (client, mut connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(unavailable)?;
        let (tell, heard) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(note)) => {
                        let announced = EventId::parse("payload", note.payload())
                            .map_or(Announced::Unknown, Announced::Through);
                        if tell.send(announced).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(error = %err, "the LISTEN connection failed");
                        return;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
            .await
            .map_err(unavailable)?;
        Ok(Listener {
            heard,
            _client: client,
        })
    }

    /// Waits for the next notification and returns the highest id announced
    /// (several that arrived meanwhile count as one), or `None` when the
    /// connection is gone.
    pub async fn next(&mut self) -> Option<Announced> {
        let mut highest = self.heard.recv().await?;
        while let Ok(more) = self.heard.try_recv() {
            highest = highest.max(more);
        }
        Some(highest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_payload_outranks_every_id_so_the_log_is_read() {
        let id = |n: &str| Announced::Through(EventId::parse("payload", n).unwrap());
        assert!(id("2") > id("1"));
        assert_eq!(id("9").max(Announced::Unknown), Announced::Unknown);
        assert_eq!(id("3").max(id("7")), id("7"));
    }
}
