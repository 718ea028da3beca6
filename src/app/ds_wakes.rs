//! What drives Durable Streams subscriptions: a background task that learns
//! of every committed stream change from the hub, and the delivery of signed
//! webhook notifications.
//!
//! Promises:
//! - Every `ds:` event committed after the task started (on this node or,
//!   with PostgreSQL, another) is read from the log in id order and handed to
//!   `ds_subscriptions::streams_changed` in one writer job per batch; a
//!   lagged hub queue only makes the task read the log from its cursor.
//!   Reads are at least `COALESCE` (5 ms) apart: a flood of appends is read
//!   in a few large pages, not one read per commit.
//!   While no subscription exists (seen in the same snapshot as the log),
//!   the events are passed over unread: a subscription made later follows
//!   the streams from their tails, so they are its history.
//! - At start, and every `TICK`, lapsed leases are ended through the writer,
//!   so a wake whose consumer (or whose node) went quiet is made again.
//! - A webhook wake is POSTed only after the transaction that made it
//!   committed; the body is signed (`Webhook-Signature: t=…,kid=…,ed25519=…`
//!   over `"{t}.{body}"`) with the key published at `__ds/jwks.json`. A
//!   failed delivery is retried with exponential backoff and jitter for as
//!   long as the wake is still the outstanding one. Redirects are not
//!   followed.
//!
//! The task never decides what a change means: the use cases do.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use serde::Serialize;

use crate::app::ds_claims as claims;
use crate::app::ds_subscriptions::{self as subs, StreamInfo, WebhookWake};
use crate::app::webhooks::{self, Signer};
use crate::domain::webhook::WebhookPolicy;
use crate::domain::{ChannelPattern, StreamFilter};
use crate::hub::Hub;
use crate::store::ds_subscriptions as subscriptions;
use crate::store::{events, Store, StoreError, Writer};

/// How often lapsed leases are looked for.
const TICK: Duration = Duration::from_millis(200);
/// The longest wait between two delivery attempts.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);
/// How many events one read of the log takes.
const PAGE: i64 = 500;
/// The least time between two reads of the changes. Under a flood of
/// appends the task reads once per this long instead of once per commit
/// (each read is a wake of this task, a trip through the blocking pool and
/// a snapshot), so a wake is made at most this much later.
const COALESCE: Duration = Duration::from_millis(5);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The notification a webhook receives.
#[derive(Serialize)]
struct Notification<'a> {
    subscription_id: &'a str,
    wake_id: &'a str,
    generation: i64,
    streams: &'a [StreamInfo],
    callback_url: String,
    callback_token: &'a str,
}

/// Subscriptions' runtime: the signer, the URLs they publish, and delivery.
pub struct Wakes {
    pub signer: Arc<Signer>,
    /// `scheme://host[:port]` the callback and JWKS URLs start with.
    pub base_url: String,
    /// `--webhooks-allow-loopback`, `--webhooks-allow-private`.
    pub policy: WebhookPolicy,
    writer: Writer,
    reads: Store,
    pub client: reqwest::Client,
}

impl Wakes {
    /// Loads (or makes and stores) the signing key.
    pub async fn start(
        writer: Writer,
        reads: Store,
        base_url: String,
        policy: WebhookPolicy,
    ) -> Result<Arc<Wakes>, StoreError> {
        let key = writer
            .write(|tx| subs::signing_key(tx, now_ms()))
            .await?
            .value;
        let signer = Signer::from_secret(&key.secret)
            .ok_or_else(|| StoreError::Corrupt("a webhook signing key is not 32 bytes".into()))?;
        let client = webhooks::client(&policy).map_err(StoreError::Unavailable)?;
        Ok(Arc::new(Wakes {
            signer: Arc::new(signer),
            base_url: base_url.trim_end_matches('/').to_owned(),
            policy,
            writer,
            reads,
            client,
        }))
    }

    pub fn action_url(&self, id: &str, action: &str) -> String {
        let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
        format!(
            "{}/v1/stream/__ds/subscriptions/{id}/{action}",
            self.base_url
        )
    }

    pub fn jwks_url(&self) -> String {
        format!("{}/v1/stream/__ds/jwks.json", self.base_url)
    }

    /// Delivers each wake in its own task.
    pub fn deliver_all(self: &Arc<Self>, wakes: Vec<WebhookWake>) {
        for wake in wakes {
            tokio::spawn(self.clone().deliver(wake));
        }
    }

    async fn deliver(self: Arc<Self>, wake: WebhookWake) {
        let body = serde_json::to_string(&Notification {
            subscription_id: &wake.subscription_id,
            wake_id: &wake.wake_id,
            generation: wake.generation,
            streams: &wake.streams,
            callback_url: self.action_url(&wake.subscription_id, "callback"),
            callback_token: &wake.token,
        })
        .unwrap_or_default();
        let mut attempt: u32 = 0;
        loop {
            match self.post(&wake.url, &body).await {
                Ok(done) => {
                    if done {
                        self.auto_ack(wake).await;
                    }
                    return;
                }
                Err(err) => {
                    tracing::warn!(subscription = %wake.subscription_id, error = %err, "webhook delivery failed; will retry");
                }
            }
            attempt += 1;
            let base = Duration::from_secs(1 << (attempt - 1).min(6)).min(MAX_RETRY_DELAY);
            let jitter = rand::rng().random_range(0.8..1.2);
            tokio::time::sleep(base.mul_f64(jitter)).await;
            let (id, wake_id) = (wake.subscription_id.clone(), wake.wake_id.clone());
            match self
                .reads
                .read(move |conn| claims::is_current(conn, &id, &wake_id))
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot check a webhook wake; will retry");
                }
            }
        }
    }

    /// POSTs a signed body; whether the receiver answered `{"done": true}`.
    async fn post(&self, url: &str, body: &str) -> Result<bool, String> {
        let response =
            webhooks::post_signed(&self.client, &self.signer, url, body.to_owned(), &[]).await?;
        if !response.status().is_success() {
            return Err(format!("the receiver answered {}", response.status()));
        }
        let answer: Option<serde_json::Value> = response.json().await.ok();
        Ok(answer.and_then(|a| a.get("done").and_then(serde_json::Value::as_bool)) == Some(true))
    }

    async fn auto_ack(self: &Arc<Self>, wake: WebhookWake) {
        let (id, wake_id) = (wake.subscription_id, wake.wake_id);
        match self
            .writer
            .write(move |tx| claims::auto_ack(tx, id, wake_id, now_ms()))
            .await
        {
            Ok(committed) => self.deliver_all(committed.value),
            Err(err) => tracing::warn!(error = %err, "cannot ack a webhook's done wake"),
        }
    }

    /// Starts the task that turns stream changes and lapsed leases into
    /// wakes, until the hub shuts down.
    pub fn spawn_driver(self: &Arc<Self>, hub: Arc<Hub>) {
        let wakes = self.clone();
        tokio::spawn(async move {
            let mut shutdown = hub.shutdown_signal();
            let filter = StreamFilter {
                patterns: vec![ChannelPattern::Prefix("ds:".into())],
                ..StreamFilter::all()
            };
            let registration = hub.subscribe_internal(filter.clone());
            let mut cursor = registration.head_id;
            let mut ticker = tokio::time::interval(TICK);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut first = true;
            loop {
                let (changed, ticked) = tokio::select! {
                    _ = registration.queue.ready() => (true, false),
                    _ = ticker.tick() => (first, true),
                    _ = shutdown.changed() => break,
                };
                if changed {
                    while registration.queue.try_recv().is_some() {}
                    let upto = if registration.queue.is_lagged() {
                        hub.clear_lag(registration.id)
                    } else {
                        hub.head_id()
                    };
                    if let Err(err) = wakes.catch_up(&filter, &mut cursor, upto, first).await {
                        tracing::warn!(error = %err, "durable streams subscriptions: cannot read changes");
                    }
                    first = false;
                    tokio::time::sleep(COALESCE).await;
                }
                // Leases lapse with time, not with changes: looked for on
                // the tick only, not after every append.
                if ticked {
                    if let Err(err) = wakes.lapse().await {
                        tracing::warn!(error = %err, "durable streams subscriptions: cannot end lapsed leases");
                    }
                }
            }
            hub.unsubscribe(registration.id);
        });
    }

    /// Reads the `ds:` events after `cursor` up to `upto` and hands the
    /// streams they name to the use case (at start: every followed stream
    /// too, in case a change committed while no node was watching).
    async fn catch_up(
        self: &Arc<Self>,
        filter: &StreamFilter,
        cursor: &mut crate::domain::EventId,
        upto: crate::domain::EventId,
        everything: bool,
    ) -> Result<(), StoreError> {
        loop {
            let (after, page_filter) = (*cursor, filter.clone());
            // While no subscription exists, the changes concern no one: one
            // look at the table instead of reading the log and a writer job
            // per append. In the same snapshot as the log: a subscription
            // made after it follows the streams from their tails, so these
            // changes are its history.
            let page = self
                .reads
                .read(move |conn| {
                    if !everything && !subscriptions::any(conn)? {
                        return Ok(None);
                    }
                    events::read_range(conn, &page_filter, after, upto, PAGE).map(Some)
                })
                .await?;
            let Some(page) = page else {
                *cursor = upto;
                return Ok(());
            };
            let mut changes: Vec<(String, bool)> = Vec::new();
            for event in &page {
                #[derive(serde::Deserialize)]
                struct Payload {
                    path: String,
                }
                let Ok(payload) = serde_json::from_str::<Payload>(event.payload.get()) else {
                    continue;
                };
                let deleted = event.event_type == "stream_deleted";
                let change = (payload.path, deleted);
                if !changes.contains(&change) {
                    changes.push(change);
                }
            }
            let last = page.last().map(|e| e.id);
            if !changes.is_empty() || everything {
                let committed = self
                    .writer
                    .write(move |tx| {
                        let mut wakes = subs::streams_changed(tx, changes, now_ms())?;
                        if everything {
                            wakes.extend(subs::wake_pending(tx, now_ms())?);
                        }
                        Ok(wakes)
                    })
                    .await?;
                self.deliver_all(committed.value);
            }
            match last {
                Some(id) if (page.len() as i64) == PAGE => *cursor = id,
                Some(id) => {
                    *cursor = id;
                    return Ok(());
                }
                None => return Ok(()),
            }
        }
    }

    async fn lapse(self: &Arc<Self>) -> Result<(), StoreError> {
        let now = now_ms();
        let lapsed = self
            .reads
            .read(move |conn| subscriptions::lapsed(conn, now))
            .await?;
        if lapsed.is_empty() {
            return Ok(());
        }
        let committed = self.writer.write(move |tx| claims::lapse(tx, now)).await?;
        self.deliver_all(committed.value);
        Ok(())
    }
}
