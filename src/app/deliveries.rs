//! What drives webhook subscriptions on channels: a background task on
//! every node that POSTs each subscription's events after its cursor to
//! its webhook, signed, one batch at a time, and moves the cursor when the
//! receiver answers 2xx.
//!
//! Promises:
//! - At least once, in id order per subscription: a batch is resent until a
//!   2xx acknowledges it; the cursor moves only after that, in the database.
//! - One node at a time: a node takes a subscription's delivery with a
//!   conditional update (a lease of `DELIVERY_LEASE`), so two PostgreSQL
//!   nodes never send the same batch at once; a node that dies holding it
//!   is replaced when the lease ends.
//! - A failed attempt (no answer in `webhooks::TIMEOUT`, or not 2xx) waits
//!   `retry_delay` (1 s doubling to a minute, with jitter) before the next;
//!   the count, the error and the next attempt are stored, so a restart or
//!   another node goes on with the same backoff.
//! - The task wakes when the hub commits (or follows) an event on a
//!   subscribed channel, when a subscription changes here, and every `TICK`
//!   (retries that became due, subscriptions changed on another node).
//!   With no webhook subscription it listens to nothing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng as _;
use serde::Serialize;
use tokio::sync::Notify;

use crate::app::subscriptions::{self as use_case, Subscription};
use crate::app::webhooks::{self, Signer};
use crate::domain::subscription::{retry_delay, Kind};
use crate::domain::{ChannelPattern, Event, EventId, StreamFilter};
use crate::hub::{Hub, Registration};
use crate::store::subscriptions as rows;
use crate::store::{Store, StoreError, Writer};

/// How often due retries and other nodes' changes are looked for.
const TICK: Duration = Duration::from_secs(1);
/// How long a node holds a delivery it took: longer than one request may
/// take, short enough for another node to go on soon after a crash.
const DELIVERY_LEASE: Duration = Duration::from_secs(15);

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The body a webhook receives.
#[derive(Serialize)]
struct Batch<'a> {
    subscription: &'a str,
    events: &'a [Event],
    /// The id of the last event: the cursor once this batch is acknowledged.
    cursor: i64,
}

/// Webhook delivery for one node.
pub struct Deliveries {
    /// This node's name in the `deliverer` column.
    node: String,
    writer: Writer,
    reads: Store,
    hub: Arc<Hub>,
    signer: Arc<Signer>,
    client: reqwest::Client,
    /// Subscriptions a task of this node is delivering now.
    running: Mutex<HashSet<String>>,
    /// A subscription changed on this node.
    changed: Notify,
}

/// A webhook subscription whose next attempt is due, as read at `now`
/// (milliseconds since the epoch).
struct Due {
    subscription: Subscription,
    url: String,
    now: i64,
}

/// Removes a subscription from `running` when its task ends, however.
struct Running<'a>(&'a Deliveries, String);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.0.running.lock() {
            running.remove(&self.1);
        }
    }
}

impl Deliveries {
    pub fn new(
        node: String,
        writer: Writer,
        reads: Store,
        hub: Arc<Hub>,
        signer: Arc<Signer>,
        client: reqwest::Client,
    ) -> Arc<Deliveries> {
        Arc::new(Deliveries {
            node,
            writer,
            reads,
            hub,
            signer,
            client,
            running: Mutex::new(HashSet::new()),
            changed: Notify::new(),
        })
    }

    /// Whether another node holds the subscription's delivery now.
    fn held_elsewhere(&self, row: &rows::SubscriptionRow, now_ms: i64) -> bool {
        row.deliverer.as_deref().is_some_and(|n| n != self.node)
            && row.deliverer_until_ms.is_some_and(|until| until > now_ms)
    }

    /// A subscription was made, changed or told to retry: look now.
    pub fn poke(&self) {
        self.changed.notify_one();
    }

    /// Starts the task, until the hub shuts down.
    pub fn spawn(self: &Arc<Self>) {
        let deliveries = self.clone();
        tokio::spawn(async move { deliveries.drive().await });
    }

    async fn drive(self: Arc<Self>) {
        let mut shutdown = self.hub.shutdown_signal();
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut listening: Option<(Registration, Vec<ChannelPattern>)> = None;
        let mut subscriptions: Vec<Subscription> = Vec::new();
        loop {
            let refresh = tokio::select! {
                _ = async {
                    match &listening {
                        Some((registration, _)) => registration.queue.ready().await,
                        None => std::future::pending().await,
                    }
                } => false,
                _ = ticker.tick() => true,
                _ = self.changed.notified() => true,
                _ = shutdown.changed() => break,
            };
            if let Some((registration, _)) = &listening {
                while registration.queue.try_recv().is_some() {}
                if registration.queue.is_lagged() {
                    self.hub.clear_lag(registration.id);
                }
            }
            if refresh {
                match self.reads.read(use_case::list).await {
                    Ok(all) => subscriptions = all,
                    Err(err) => {
                        tracing::warn!(error = %err, "webhook subscriptions: cannot read them");
                        continue;
                    }
                }
                listening = self.listen(listening, &subscriptions);
            }
            let now = now_ms();
            for subscription in subscriptions.iter().filter(|s| s.kind == Kind::Webhook) {
                let row = &subscription.row;
                if row.next_attempt_ms <= now && !self.held_elsewhere(row, now) {
                    self.start(&row.id);
                }
            }
        }
        if let Some((registration, _)) = listening {
            self.hub.unsubscribe(registration.id);
        }
    }

    /// Listens to the hub on the channels the webhook subscriptions name
    /// (registering again when they changed; not at all when there are none).
    fn listen(
        &self,
        current: Option<(Registration, Vec<ChannelPattern>)>,
        subscriptions: &[Subscription],
    ) -> Option<(Registration, Vec<ChannelPattern>)> {
        let patterns = use_case::webhook_patterns(subscriptions);
        if let Some((registration, old)) = current {
            if old == patterns {
                return Some((registration, old));
            }
            self.hub.unsubscribe(registration.id);
        }
        if patterns.is_empty() {
            return None;
        }
        let filter = StreamFilter {
            patterns: patterns.clone(),
            ..StreamFilter::all()
        };
        Some((self.hub.subscribe_internal(filter), patterns))
    }

    /// Starts delivering one subscription unless a task here already is.
    fn start(self: &Arc<Self>, id: &str) {
        {
            let Ok(mut running) = self.running.lock() else {
                return;
            };
            if !running.insert(id.to_owned()) {
                return;
            }
        }
        let deliveries = self.clone();
        let id = id.to_owned();
        tokio::spawn(async move {
            let _running = Running(&deliveries, id.clone());
            if let Err(err) = deliveries.deliver(&id).await {
                tracing::warn!(subscription = %id, error = %err, "webhook subscription: cannot deliver now");
            }
        });
    }

    /// Sends batches until none is pending, an attempt fails, or another
    /// node holds the delivery.
    async fn deliver(&self, id: &str) -> Result<(), StoreError> {
        let mut holding = false;
        loop {
            let Some(due) = self.due(id).await? else {
                return Ok(());
            };
            let row = &due.subscription.row;
            let acked = row.acked_through;
            let (events, scanned) = self.pending(&due.subscription).await?;
            let Some(last) = events.last().map(|e| e.id.get()) else {
                return self.nothing_pending(id, acked, scanned, holding).await;
            };
            if !holding {
                if !self.take_delivery(id, acked, due.now).await? {
                    return Ok(());
                }
                holding = true;
            }
            match self.post(id, &due.url, &events, last).await {
                Ok(()) => {
                    if !self.record_success(id, acked, last, events.len()).await? {
                        return Ok(());
                    }
                }
                Err(error) => return self.record_failure(id, row.failures, error).await,
            }
        }
    }

    /// The subscription as stored now, if it is a webhook subscription
    /// with a URL whose next attempt is due and no other node holds it.
    async fn due(&self, id: &str) -> Result<Option<Due>, StoreError> {
        let key = id.to_owned();
        let Some(subscription) = self.reads.read(move |c| use_case::load(c, &key)).await? else {
            return Ok(None);
        };
        let row = &subscription.row;
        let now = now_ms();
        if subscription.kind != Kind::Webhook
            || row.next_attempt_ms > now
            || self.held_elsewhere(row, now)
        {
            return Ok(None);
        }
        let Some(url) = row.webhook_url.clone() else {
            return Ok(None);
        };
        Ok(Some(Due {
            subscription,
            url,
            now,
        }))
    }

    /// The next batch after the subscription's cursor, up to the hub's head,
    /// and the id up to which the read looked (`use_case::matching`).
    async fn pending(
        &self,
        subscription: &Subscription,
    ) -> Result<(Vec<Event>, EventId), StoreError> {
        let acked = subscription.row.acked_through;
        let (selection, batch) = (subscription.selection.clone(), subscription.row.batch_size);
        let head = self.hub.head_id();
        self.reads
            .read(move |c| {
                use_case::matching(c, &selection, EventId::from_stored(acked), head, batch)
            })
            .await
    }

    /// Nothing is pending: moves the cursor from `acked` over the events
    /// looked through (none matched) and gives up the delivery if `holding`.
    async fn nothing_pending(
        &self,
        id: &str,
        acked: i64,
        scanned: EventId,
        holding: bool,
    ) -> Result<(), StoreError> {
        let key = id.to_owned();
        let node = self.node.clone();
        self.writer
            .write(move |tx| {
                let conn = tx.conn()?;
                if scanned.get() > acked {
                    rows::skip_all(conn, &key, acked, scanned.get())?;
                }
                if holding {
                    rows::give_up_delivery(conn, &key, &node)?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    /// Takes the delivery for `DELIVERY_LEASE` from `now` if the cursor is
    /// still `acked` and no other node holds it; whether it was taken.
    async fn take_delivery(&self, id: &str, acked: i64, now: i64) -> Result<bool, StoreError> {
        let (key, node) = (id.to_owned(), self.node.clone());
        let until = now + DELIVERY_LEASE.as_millis() as i64;
        Ok(self
            .writer
            .write(move |tx| rows::take_delivery(tx.conn()?, &key, acked, &node, now, until))
            .await?
            .value)
    }

    /// The receiver acknowledged the `count` events after `acked` up to
    /// `last`: moves the cursor there and extends the delivery lease;
    /// whether this node still held the delivery (and so may go on).
    async fn record_success(
        &self,
        id: &str,
        acked: i64,
        last: i64,
        count: usize,
    ) -> Result<bool, StoreError> {
        metrics::counter!("switchboard_webhook_requests_total", "result" => "ok").increment(1);
        let (key, node) = (id.to_owned(), self.node.clone());
        let count = count as i64;
        let at = crate::domain::Timestamp::now().to_string();
        let until = now_ms() + DELIVERY_LEASE.as_millis() as i64;
        Ok(self
            .writer
            .write(move |tx| {
                let conn = tx.conn()?;
                let moved = rows::delivered(conn, &key, &node, acked, last, count, &at)?;
                if moved {
                    rows::extend_delivery(conn, &key, &node, until)?;
                }
                Ok(moved)
            })
            .await?
            .value)
    }

    /// The attempt failed, after `failures` failed before it: stores the
    /// error and the next attempt (`retry_delay` with jitter from now) and
    /// gives up the delivery.
    async fn record_failure(
        &self,
        id: &str,
        failures: i64,
        error: String,
    ) -> Result<(), StoreError> {
        metrics::counter!("switchboard_webhook_requests_total", "result" => "failed").increment(1);
        let jitter = rand::rng().random_range(0.5..=1.0);
        let delay = retry_delay(failures + 1, jitter);
        tracing::warn!(subscription = %id, error = %error, retry_in = ?delay, "webhook delivery failed; will retry");
        let next = now_ms() + delay.as_millis() as i64;
        let (key, node) = (id.to_owned(), self.node.clone());
        self.writer
            .write(move |tx| rows::failed(tx.conn()?, &key, &node, &error, next))
            .await?;
        Ok(())
    }

    /// One signed POST of a batch; `Ok` when the receiver answered 2xx.
    async fn post(&self, id: &str, url: &str, events: &[Event], last: i64) -> Result<(), String> {
        let body = serde_json::to_string(&Batch {
            subscription: id,
            events,
            cursor: last,
        })
        .map_err(|e| e.to_string())?;
        let first = events.first().map_or(last, |e| e.id.get());
        let delivery = format!("{id}.{first}.{last}");
        let response = webhooks::post_signed(
            &self.client,
            &self.signer,
            url,
            body,
            &[("webhook-id", &delivery)],
        )
        .await?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }
}
