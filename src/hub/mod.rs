//! Live fan-out. The writer hands every committed batch to the hub; the hub
//! serialises each event to its SSE frame once and pushes the same bytes to
//! every matching stream's bounded queue.
//!
//! Promises:
//! - `publish` is called by one thread (the writer), in id order, after
//!   commit; every push happens under the hub's lock, so `subscribe` and
//!   `clear_lag` see a head id such that every later event reaches the queue.
//! - Matching never scans every subscriber: subscribers are indexed by exact
//!   channel and by prefix, and an event looks up each prefix of its channel.
//! - A full queue never blocks: the subscriber is marked lagged and gets no
//!   more frames until it has caught up from the log (`clear_lag`). Its queue
//!   therefore always holds a gap-free run of frames.
//! - The hub never touches the database.

mod frame;
mod index;
mod queue;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;
use tokio::sync::watch;

use crate::sync::LockExt;
use crate::wake::Wakes;
pub use frame::{
    comment_frame, event_frame, frame_events, mercure_frame, retry_frame, Frame, Framing,
};
use index::ChannelIndex;
pub use queue::FrameQueue;
use queue::Pushed;

use crate::domain::mercure::Update;
use crate::domain::{ChannelPattern, Event, EventId, PresenceChange, StreamFilter, Timestamp};

pub type SubscriberId = u64;

struct Subscriber {
    /// Shared with the stream that reads the log with it.
    filter: Arc<StreamFilter>,
    queue: Arc<FrameQueue>,
    /// Highest id pushed, so overlapping patterns never push an event twice.
    last_pushed: EventId,
    session: Option<SessionKey>,
    framing: Framing,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SessionKey(String);

/// A session as presence and `/api/sessions` see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub session_id: String,
    pub agent_id: String,
    pub connections: usize,
    pub channels: Vec<String>,
    pub connected_at: Timestamp,
}

/// Counters that only ever grow, for stats and metrics.
#[derive(Debug, Default)]
pub struct HubCounters {
    pub events_published: AtomicU64,
    pub deliveries: AtomicU64,
    pub lagged: AtomicU64,
}

struct State {
    head_id: EventId,
    /// How many streams each recent event reached, oldest first (at most
    /// `RECENT_DELIVERIES`): a writer whose events the follower published
    /// first still learns their counts.
    recent_deliveries: VecDeque<(EventId, usize)>,
    next_id: SubscriberId,
    subscribers: HashMap<SubscriberId, Subscriber>,
    index: ChannelIndex,
    sessions: HashMap<SessionKey, SessionInfo>,
    /// The server's own registrations (`subscribe_internal`) and their
    /// patterns: not clients, so not counted as open streams.
    internal: HashMap<SubscriberId, Vec<ChannelPattern>>,
}

/// How many recent events' delivery counts the hub remembers.
const RECENT_DELIVERIES: usize = 4096;

impl State {
    /// The delivery counts of `events` if every one of them was published
    /// already (0 for one too old to be remembered); `None` otherwise.
    fn recorded_deliveries(&self, events: &[&Event]) -> Option<Vec<usize>> {
        if events.iter().any(|event| event.id > self.head_id) {
            return None;
        }
        Some(
            events
                .iter()
                .map(|event| {
                    self.recent_deliveries
                        .binary_search_by_key(&event.id, |(id, _)| *id)
                        .map_or(0, |at| self.recent_deliveries[at].1)
                })
                .collect(),
        )
    }

    /// Pushes `events` (with their `named` frames) to every stream that
    /// takes them, moving the head; events at or below it were published
    /// already (a shared log read twice) and count 0. Returns the number of
    /// streams each event was queued for, and how many queues were full;
    /// the streams to wake are added to `wakes`.
    fn publish(
        &mut self,
        events: &[&Event],
        named: Vec<Bytes>,
        capacity: usize,
        wakes: &mut Wakes,
    ) -> (Vec<usize>, u64) {
        let mut counts = Vec::with_capacity(events.len());
        let mut lagged = 0u64;
        let mut candidates = Vec::new();
        for (event, named) in events.iter().zip(named) {
            if event.id <= self.head_id {
                counts.push(0);
                continue;
            }
            self.head_id = event.id;
            let mut frames = EventFrames::new(event, named);
            let delivered =
                self.fan_out(&mut frames, &mut candidates, capacity, &mut lagged, wakes);
            counts.push(delivered);
            self.remember_deliveries(event.id, delivered);
        }
        (counts, lagged)
    }

    /// Pushes one event to the streams whose patterns match its channel and
    /// that take it; returns how many queued it, adding the full queues to
    /// `lagged` and the waiting streams to `wakes`. `candidates` is scratch
    /// space, reused across events.
    #[inline]
    fn fan_out(
        &mut self,
        frames: &mut EventFrames<'_>,
        candidates: &mut Vec<SubscriberId>,
        capacity: usize,
        lagged: &mut u64,
        wakes: &mut Wakes,
    ) -> usize {
        let event = frames.event;
        candidates.clear();
        self.index.collect(&event.channel, candidates);
        let mut delivered = 0;
        for id in candidates.iter() {
            let Some(subscriber) = self.subscribers.get_mut(id) else {
                continue;
            };
            if !subscriber.takes(frames) {
                continue;
            }
            subscriber.last_pushed = event.id;
            let Some(bytes) = frames.framed(subscriber.framing) else {
                continue;
            };
            let frame = Frame {
                id: event.id,
                bytes,
            };
            match subscriber.queue.push(frame, capacity) {
                Pushed::Queued(waker) => {
                    delivered += 1;
                    if let Some(waker) = waker {
                        wakes.add(waker, subscriber.queue.relay());
                    }
                }
                Pushed::Full => *lagged += 1,
            }
        }
        delivered
    }

    /// Remembers how many streams an event reached (`recorded_deliveries`),
    /// forgetting the oldest beyond `RECENT_DELIVERIES`.
    #[inline]
    fn remember_deliveries(&mut self, id: EventId, delivered: usize) {
        if self.recent_deliveries.len() == RECENT_DELIVERIES {
            self.recent_deliveries.pop_front();
        }
        self.recent_deliveries.push_back((id, delivered));
    }
}

impl Subscriber {
    /// Whether this stream takes the event: it was not pushed here yet, the
    /// stream is not lagged, and its filter accepts it (a Mercure filter,
    /// the update parsed from it too).
    #[inline]
    fn takes(&self, frames: &mut EventFrames<'_>) -> bool {
        let event = frames.event;
        if self.last_pushed >= event.id
            || self.queue.is_lagged()
            || !self.filter.accepts(
                &event.channel,
                event.session_id.as_deref(),
                event.resource_id.as_deref(),
            )
        {
            return false;
        }
        self.filter.mercure.is_none() || self.filter.admits_update(frames.update())
    }
}

/// One event as the streams it reaches want it. The named frame is made
/// for every event; the plain one, the Mercure update parsed from the
/// event and its frame are made at most once, when a stream first wants
/// them, and shared by all (`Bytes` clones share the buffer).
struct EventFrames<'e> {
    event: &'e Event,
    named: Bytes,
    plain: Option<Bytes>,
    /// `Some(None)`: parsed, and not a Mercure update.
    update: Option<Option<Update>>,
    mercure: Option<Bytes>,
}

impl<'e> EventFrames<'e> {
    #[inline]
    fn new(event: &'e Event, named: Bytes) -> Self {
        EventFrames {
            event,
            named,
            plain: None,
            update: None,
            mercure: None,
        }
    }

    /// The Mercure update the event carries, if it is one.
    #[inline]
    fn update(&mut self) -> Option<&Update> {
        let event = self.event;
        self.update
            .get_or_insert_with(|| Update::from_event(event))
            .as_ref()
    }

    /// The frame for a stream with `framing`; `None` for a Mercure stream
    /// when the event is not a Mercure update.
    #[inline]
    fn framed(&mut self, framing: Framing) -> Option<Bytes> {
        let event = self.event;
        match framing {
            Framing::Named => Some(self.named.clone()),
            Framing::Plain => Some(
                self.plain
                    .get_or_insert_with(|| event_frame(event, Framing::Plain))
                    .clone(),
            ),
            Framing::Mercure => {
                let update = self
                    .update
                    .get_or_insert_with(|| Update::from_event(event))
                    .as_ref()?;
                Some(
                    self.mercure
                        .get_or_insert_with(|| mercure_frame(update))
                        .clone(),
                )
            }
        }
    }
}

/// A registration: the queue to read and the head id at registration time.
/// Every event with an id above `head_id` is pushed to the queue (unless the
/// queue overflows, which sets the lagged flag).
pub struct Registration {
    pub id: SubscriberId,
    pub queue: Arc<FrameQueue>,
    pub head_id: EventId,
}

/// Told of every session that joins or leaves, under the hub's lock, so the
/// changes are reported in the order they happened. It must not block.
pub type PresenceSink = Box<dyn Fn(PresenceChange, &SessionInfo) + Send + Sync>;

/// The identity a stream registers with, for presence.
pub struct StreamOwner {
    pub session_id: String,
    pub agent_id: String,
}

pub struct Hub {
    state: Mutex<State>,
    queue_capacity: usize,
    shutdown: watch::Sender<bool>,
    presence: OnceLock<PresenceSink>,
    pub counters: HubCounters,
    /// How many failovers lost ids this hub had published (`reread_all`).
    failovers: std::sync::atomic::AtomicU64,
}

impl Hub {
    pub fn new(head_id: EventId, queue_capacity: usize) -> Self {
        Hub {
            state: Mutex::new(State {
                recent_deliveries: VecDeque::with_capacity(RECENT_DELIVERIES),
                head_id,
                next_id: 1,
                subscribers: HashMap::new(),
                index: ChannelIndex::default(),
                sessions: HashMap::new(),
                internal: HashMap::new(),
            }),
            queue_capacity,
            shutdown: watch::channel(false).0,
            presence: OnceLock::new(),
            counters: HubCounters::default(),
            failovers: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.locked()
    }

    /// Installs the presence sink (once, at start-up).
    pub fn set_presence_sink(&self, sink: PresenceSink) {
        let _ = self.presence.set(sink);
    }

    fn report_presence(&self, change: PresenceChange, session: &SessionInfo) {
        if let Some(sink) = self.presence.get() {
            sink(change, session);
        }
    }

    pub fn head_id(&self) -> EventId {
        self.lock().head_id
    }

    /// Registers a stream. From this call on, every event above the returned
    /// `head_id` that matches `filter` is pushed to the returned queue.
    pub fn subscribe(
        &self,
        filter: impl Into<Arc<StreamFilter>>,
        framing: Framing,
        owner: Option<StreamOwner>,
        now: Timestamp,
    ) -> Registration {
        let mut state = self.lock();
        let registration = self.register(&mut state, filter.into(), framing, owner, now);
        // Opened while the server shuts down: it ends at once.
        if *self.shutdown.borrow() {
            registration.queue.close();
        }
        registration
    }

    fn register(
        &self,
        state: &mut State,
        filter: Arc<StreamFilter>,
        framing: Framing,
        owner: Option<StreamOwner>,
        now: Timestamp,
    ) -> Registration {
        let queue = Arc::new(FrameQueue::default());
        let id = state.next_id;
        state.next_id += 1;
        let channels: Vec<String> = filter.patterns.iter().map(ToString::to_string).collect();
        let session = owner.map(|owner| {
            let key = SessionKey(owner.session_id.clone());
            let info = state
                .sessions
                .entry(key.clone())
                .or_insert_with(|| SessionInfo {
                    session_id: owner.session_id,
                    agent_id: owner.agent_id,
                    connections: 0,
                    channels: Vec::new(),
                    connected_at: now,
                });
            info.connections += 1;
            for channel in &channels {
                if !info.channels.contains(channel) {
                    info.channels.push(channel.clone());
                }
            }
            if info.connections == 1 {
                self.report_presence(PresenceChange::Joined, info);
            }
            key
        });
        state.index.insert(id, &filter.patterns);
        let head_id = state.head_id;
        state.subscribers.insert(
            id,
            Subscriber {
                filter,
                queue: queue.clone(),
                last_pushed: head_id,
                session,
                framing,
            },
        );
        Registration { id, queue, head_id }
    }

    /// Registers one of the server's own tasks (not a client) as
    /// `subscribe` does, with plain framing; it is not counted as an open
    /// stream (metrics, `--max-streams`, `/api/stats`).
    pub fn subscribe_internal(&self, filter: StreamFilter) -> Registration {
        let patterns = filter.patterns.clone();
        let mut state = self.lock();
        let registration = self.register(
            &mut state,
            Arc::new(filter),
            Framing::Plain,
            None,
            Timestamp::now(),
        );
        state.internal.insert(registration.id, patterns);
        registration
    }

    /// Removes a stream; the session leaves when this was its last one.
    pub fn unsubscribe(&self, id: SubscriberId) {
        let mut state = self.lock();
        state.internal.remove(&id);
        let Some(subscriber) = state.subscribers.remove(&id) else {
            return;
        };
        state.index.remove(id, &subscriber.filter.patterns);
        let Some(key) = subscriber.session else {
            return;
        };
        let Some(info) = state.sessions.get_mut(&key) else {
            return;
        };
        info.connections -= 1;
        if info.connections == 0 {
            if let Some(info) = state.sessions.remove(&key) {
                self.report_presence(PresenceChange::Left, &info);
            }
        }
    }

    /// Gives back the room the maps kept for streams that have closed (a
    /// `HashMap` never shrinks by itself): run after many streams closed.
    pub fn shrink_to_fit(&self) {
        let mut state = self.lock();
        state.subscribers.shrink_to_fit();
        state.sessions.shrink_to_fit();
        state.internal.shrink_to_fit();
        state.index.shrink_to_fit();
    }

    /// Makes every stream read the log from its cursor before it takes
    /// another frame: after a failover to an asynchronous standby, ids this
    /// hub published were lost, and a stream that sent any must say so
    /// (`resync`) rather than go on as if nothing happened.
    pub fn reread_all(&self) {
        let state = self.lock();
        self.failovers
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for subscriber in state.subscribers.values() {
            subscriber.queue.force_lag();
        }
    }

    /// How many times `reread_all` ran: a stream that saw another number
    /// checks its cursor against the log even when it is not behind.
    pub fn failovers(&self) -> u64 {
        self.failovers.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Ends a lag: the stream has read its queue dry and will now read the
    /// log up to the returned head id; frames above it are pushed again.
    pub fn clear_lag(&self, id: SubscriberId) -> EventId {
        let mut state = self.lock();
        let head_id = state.head_id;
        if let Some(subscriber) = state.subscribers.get_mut(&id) {
            subscriber.last_pushed = head_id;
            subscriber.queue.clear_lag();
        }
        head_id
    }

    /// Hands committed events (in id order) to every matching stream.
    /// Returns, per event, the number of streams it was pushed to.
    pub fn publish(&self, events: &[&Event]) -> Vec<usize> {
        self.publish_checked(None, events)
            .expect("an unconditional publish always runs")
    }

    /// Publishes a node's own commit only if the hub's head is `before`, the
    /// head when that commit began (with a shared database, other nodes'
    /// events may sit between; then nothing is published, `None` is
    /// returned, and the events arrive later through `publish` from the log).
    /// When the follower already published them (it read the commit from
    /// the log first), their recorded delivery counts are returned.
    pub fn publish_after(&self, before: EventId, events: &[&Event]) -> Option<Vec<usize>> {
        self.publish_checked(Some(before), events)
    }

    fn publish_checked(&self, before: Option<EventId>, events: &[&Event]) -> Option<Vec<usize>> {
        // The named frames are made before the lock is taken.
        let named: Vec<Bytes> = events
            .iter()
            .map(|e| event_frame(e, Framing::Named))
            .collect();
        let mut state = self.lock();
        if before.is_some_and(|before| before != state.head_id) {
            return state.recorded_deliveries(events);
        }
        let mut wakes = Wakes::default();
        let (counts, lagged) = state.publish(events, named, self.queue_capacity, &mut wakes);
        drop(state);
        wakes.send();
        self.count_published(events.len(), &counts, lagged);
        Some(counts)
    }

    /// Adds a publish to the counters: its events, the frames queued
    /// (`counts`) and the streams that lagged.
    #[inline]
    fn count_published(&self, events: usize, counts: &[usize], lagged: u64) {
        self.counters
            .events_published
            .fetch_add(events as u64, Ordering::Relaxed);
        self.counters
            .deliveries
            .fetch_add(counts.iter().sum::<usize>() as u64, Ordering::Relaxed);
        self.counters.lagged.fetch_add(lagged, Ordering::Relaxed);
    }

    /// Open streams.
    pub fn stream_count(&self) -> usize {
        let state = self.lock();
        state.subscribers.len() - state.internal.len()
    }

    /// Sessions with at least one open stream.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut sessions: Vec<SessionInfo> = self.lock().sessions.values().cloned().collect();
        sessions.sort_by(|a, b| a.session_id.cmp(&b.session_id));
        sessions
    }

    /// Streams per subscription pattern.
    pub fn streams_per_pattern(&self) -> Vec<(String, usize)> {
        let state = self.lock();
        let mut counts = state.index.counts();
        for pattern in state.internal.values().flatten() {
            let name = match pattern {
                ChannelPattern::Exact(name) => name.clone(),
                ChannelPattern::Prefix(prefix) => format!("{prefix}*"),
            };
            if let Some(count) = counts.iter_mut().find(|(n, _)| *n == name) {
                count.1 -= 1;
            }
        }
        counts.retain(|(_, count)| *count > 0);
        counts
    }

    /// Asks every open stream to end (server shutdown): the server's own
    /// tasks through [`Hub::shutdown_signal`], client streams through their
    /// queues (a stream costs no shutdown future of its own).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
        let state = self.lock();
        for (id, subscriber) in &state.subscribers {
            if !state.internal.contains_key(id) {
                subscriber.queue.close();
            }
        }
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }
}

#[cfg(test)]
mod tests;
