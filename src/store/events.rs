//! The event log: appending, reading ranges by id, history queries, the log's
//! position (head, pruned watermark) and retention.
//!
//! Every read that a stream uses to fill a gap runs in one read transaction
//! together with the watermark check, so a page can never silently miss rows
//! that retention deleted between two statements.

use super::db::{DbConn, MultiBackend};
use diesel::dsl::{max, min};
use diesel::expression::BoxableExpression;
use diesel::prelude::*;
use diesel::sql_types::Bool;
use serde_json::value::RawValue;

use super::error::stored_time;
use super::pg::{self, Notify};
use super::schema::{events, log_state, sqlite_sequence};
use super::StoreError;
use crate::domain::{ChannelPattern, Event, EventId, NewEvent, StreamFilter, Timestamp};

#[derive(Queryable, Selectable)]
#[diesel(table_name = events)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
struct EventRow {
    id: i64,
    channel: String,
    event_type: String,
    resource_type: Option<String>,
    resource_id: Option<String>,
    agent_id: String,
    session_id: Option<String>,
    created_at: String,
    payload: String,
}

/// A row as inserted: the writer numbers events itself (see `insert`), and
/// an absent optional field is NULL, never `DEFAULT` (which SQLite does not
/// take in a multi-row insert).
#[derive(Insertable)]
#[diesel(table_name = events)]
#[diesel(treat_none_as_default_value = false)]
struct NewEventRow<'a> {
    id: i64,
    channel: &'a str,
    event_type: &'a str,
    resource_type: Option<&'a str>,
    resource_id: Option<&'a str>,
    agent_id: &'a str,
    session_id: Option<&'a str>,
    created_at: &'a str,
    payload: &'a str,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        let payload = RawValue::from_string(row.payload)
            .map_err(|e| StoreError::Corrupt(format!("event {} payload: {e}", row.id)))?;
        Ok(Event {
            id: EventId::from_stored(row.id),
            channel: row.channel,
            event_type: row.event_type,
            resource_type: row.resource_type,
            resource_id: row.resource_id,
            agent_id: row.agent_id,
            session_id: row.session_id,
            timestamp: stored_time(&row.created_at, || format!("event {}", row.id))?,
            payload,
        })
    }
}

fn into_events(rows: Vec<EventRow>) -> Result<Vec<Event>, StoreError> {
    rows.into_iter().map(Event::try_from).collect()
}

/// Runs `f` in one read transaction: every statement sees the same snapshot.
pub fn read_transaction<T>(
    conn: &mut DbConn,
    f: impl FnOnce(&mut DbConn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    super::db::transaction(conn, super::db::TxMode::Read, f)
}

/// The event `event` becomes as number `id` of a batch committed at `now`.
/// Nothing is written: the writer inserts a batch's events with `insert`.
pub fn numbered(event: &NewEvent, id: EventId, now: Timestamp) -> Event {
    Event {
        id,
        channel: event.channel.as_str().to_owned(),
        event_type: event.event_type.as_str().to_owned(),
        resource_type: event.resource_type.as_ref().map(|t| t.as_str().to_owned()),
        resource_id: event.resource_id.as_ref().map(|r| r.as_str().to_owned()),
        agent_id: event.agent_id.as_str().to_owned(),
        session_id: event.session_id.as_ref().map(|s| s.as_str().to_owned()),
        timestamp: now,
        payload: event.payload.clone(),
    }
}

/// Inserts numbered events (from `numbered`). `created_at` is the batch's
/// time as stored, formatted once. On PostgreSQL the whole batch is one
/// statement, which also sends `notify` (see `pg::insert_events`).
pub fn insert(
    conn: &mut DbConn,
    batch: &[Event],
    created_at: &str,
    notify: Option<&Notify<'_>>,
) -> Result<(), StoreError> {
    match conn {
        // In-process: a cached one-row statement per event costs less than
        // preparing a new multi-row one per batch.
        DbConn::Sqlite(conn) => {
            for event in batch {
                diesel::insert_into(events::table)
                    .values(NewEventRow {
                        id: event.id.get(),
                        channel: &event.channel,
                        event_type: &event.event_type,
                        resource_type: event.resource_type.as_deref(),
                        resource_id: event.resource_id.as_deref(),
                        agent_id: &event.agent_id,
                        session_id: event.session_id.as_deref(),
                        created_at,
                        payload: event.payload.get(),
                    })
                    .execute(conn)?;
            }
        }
        DbConn::Pg(conn) => pg::insert_events(conn, batch, created_at, notify)?,
    }
    Ok(())
}

/// The PostgreSQL connection behind `conn`; a PostgreSQL-only statement on
/// SQLite is a bug in the caller.
fn postgres(conn: &mut DbConn) -> Result<&mut diesel::PgConnection, StoreError> {
    match conn {
        DbConn::Pg(pg) => Ok(pg),
        DbConn::Sqlite(_) => Err(StoreError::Corrupt(
            "a PostgreSQL statement on SQLite".into(),
        )),
    }
}

/// Sends `notify` on its own (PostgreSQL).
pub fn notify(conn: &mut DbConn, notify: &Notify<'_>) -> Result<(), StoreError> {
    Ok(pg::notify(postgres(conn)?, notify)?)
}

/// PostgreSQL's head and the newest event's time, in one round trip (a
/// write batch needs both). There is no `sqlite_sequence`: the head is the
/// newest visible id, or, when retention deleted every row, the highest id
/// it deleted.
pub fn head_and_newest_pg(conn: &mut DbConn) -> Result<(EventId, Option<Timestamp>), StoreError> {
    let (head, newest) = pg::head_and_newest(postgres(conn)?)?;
    let newest = newest
        .map(|text| stored_time(&text, || "the newest event".into()))
        .transpose()?;
    Ok((EventId::from_stored(head), newest))
}

/// Where the log stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// The highest id ever written (0 for a new log); survives pruning.
    pub head_id: EventId,
    /// Retention may have deleted every id up to and including this one.
    pub pruned_through: EventId,
    /// The oldest id still held, or `head_id + 1` when the log is empty.
    pub oldest_id: EventId,
    /// PostgreSQL after a failover (a new timeline): the ids strictly
    /// between these two were never written on this timeline. A client
    /// cursor in there holds events an asynchronous primary answered and
    /// lost: it must start again (`resync`), never resume.
    pub lost: Option<(EventId, EventId)>,
}

impl LogPosition {
    /// Whether `cursor` lies in the range a failover lost.
    pub fn lost_cursor(&self, cursor: EventId) -> bool {
        self.lost
            .is_some_and(|(last_kept, floor)| cursor > last_kept && cursor < floor)
    }
}

pub fn head_id(conn: &mut DbConn) -> Result<EventId, StoreError> {
    if conn.is_postgres() {
        return Ok(head_and_newest_pg(conn)?.0);
    }
    let seq: Option<i64> = sqlite_sequence::table
        .filter(sqlite_sequence::name.eq("events"))
        .select(sqlite_sequence::seq)
        .get_result(conn)
        .optional()?;
    Ok(seq.map_or(EventId::ZERO, EventId::from_stored))
}

/// Whether the database behind `conn` takes writes: a PostgreSQL standby
/// does not (a URL without `target_session_attrs=read-write` may reach
/// one); a SQLite file does.
pub fn takes_writes(conn: &mut DbConn) -> Result<bool, StoreError> {
    match conn {
        DbConn::Pg(pg) => Ok(
            diesel::select(diesel::dsl::sql::<Bool>("NOT pg_is_in_recovery()")).get_result(pg)?,
        ),
        DbConn::Sqlite(_) => Ok(true),
    }
}

pub fn pruned_through(conn: &mut DbConn) -> Result<EventId, StoreError> {
    let watermark: Option<i64> = log_state::table
        .select(log_state::pruned_through)
        .get_result(conn)
        .optional()?;
    Ok(watermark.map_or(EventId::ZERO, EventId::from_stored))
}

pub fn position(conn: &mut DbConn) -> Result<LogPosition, StoreError> {
    let head_id = head_id(conn)?;
    let pruned_through = pruned_through(conn)?;
    let oldest: Option<i64> = events::table.select(min(events::id)).get_result(conn)?;
    let lost = match conn {
        DbConn::Pg(pg) => match pg::timeline_floor(pg)? {
            0 => None,
            floor => {
                let kept: Option<i64> = events::table
                    .filter(events::id.lt(floor))
                    .select(max(events::id))
                    .get_result(pg)?;
                let last_kept = EventId::from_stored(kept.unwrap_or(0)).max(pruned_through);
                Some((last_kept, EventId::from_stored(floor)))
            }
        },
        DbConn::Sqlite(_) => None,
    };
    Ok(LogPosition {
        head_id,
        pruned_through,
        oldest_id: oldest.map_or(head_id.next(), EventId::from_stored),
        lost,
    })
}

type BoxedEvents<'a> = events::BoxedQuery<'a, MultiBackend>;
type Condition = Box<dyn BoxableExpression<events::table, MultiBackend, SqlType = Bool>>;

/// The first string greater than every string that starts with `prefix`.
/// Channel names are ASCII below 0x7f, so bumping the last byte stays ASCII.
fn prefix_successor(prefix: &str) -> String {
    let mut bytes = prefix.as_bytes().to_vec();
    if let Some(last) = bytes.last_mut() {
        *last += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `channel IN (…) OR channel >= prefix AND channel < successor …`, which
/// SQLite answers from the `(channel, id)` index. `None` means all channels.
fn channel_condition(patterns: &[ChannelPattern]) -> Option<Condition> {
    if patterns.iter().any(ChannelPattern::is_all) {
        return None;
    }
    let exact: Vec<String> = patterns
        .iter()
        .filter_map(|p| match p {
            ChannelPattern::Exact(name) => Some(name.clone()),
            ChannelPattern::Prefix(_) => None,
        })
        .collect();
    let mut condition: Option<Condition> =
        (!exact.is_empty()).then(|| Box::new(events::channel.eq_any(exact)) as Condition);
    for pattern in patterns {
        if let ChannelPattern::Prefix(prefix) = pattern {
            let range: Condition = Box::new(
                events::channel
                    .ge(prefix.clone())
                    .and(events::channel.lt(prefix_successor(prefix))),
            );
            condition = Some(match condition {
                Some(c) => Box::new(c.or(range)),
                None => range,
            });
        }
    }
    condition
}

/// Keeps only the channels a token may read (`None`: all; empty: none).
fn restrict<'a>(query: BoxedEvents<'a>, allowed: Option<&[ChannelPattern]>) -> BoxedEvents<'a> {
    match allowed {
        None => query,
        Some([]) => query.filter(events::id.lt(0)),
        Some(patterns) => match channel_condition(patterns) {
            Some(condition) => query.filter(condition),
            None => query,
        },
    }
}

fn apply_stream_filter<'a>(mut query: BoxedEvents<'a>, filter: &StreamFilter) -> BoxedEvents<'a> {
    if let Some(condition) = channel_condition(&filter.patterns) {
        query = query.filter(condition);
    }
    query = restrict(query, filter.allowed.as_deref());
    if let Some(ids) = &filter.resource_ids {
        query = query.filter(events::resource_id.eq_any(ids.clone()));
    }
    if let Some(own) = &filter.exclude_session {
        query = query.filter(
            events::session_id
                .is_null()
                .or(events::session_id.ne(own.clone())),
        );
    }
    query
}

/// Every event above `after`, oldest first, at most `limit` (a node
/// following a shared log).
pub fn read_after(conn: &mut DbConn, after: EventId, limit: i64) -> Result<Vec<Event>, StoreError> {
    let rows = events::table
        .filter(events::id.gt(after.get()))
        .order(events::id.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)?;
    into_events(rows)
}

/// Matching events with `after < id <= upto`, oldest first, at most `limit`.
pub fn read_range(
    conn: &mut DbConn,
    filter: &StreamFilter,
    after: EventId,
    upto: EventId,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let query = apply_stream_filter(events::table.into_boxed(), filter)
        .filter(events::id.gt(after.get()))
        .filter(events::id.le(upto.get()))
        .order(events::id.asc())
        .limit(limit)
        .select(EventRow::as_select());
    into_events(query.load(conn)?)
}

/// The newest `limit` matching events with `id <= upto` written at or after
/// `since` (a timestamp), returned oldest first.
///
/// The window is turned into an id range first (one seek in the
/// `created_at` index: ids and commit times grow together), so a rare channel
/// never makes SQLite walk the whole log backwards.
pub fn read_recent(
    conn: &mut DbConn,
    filter: &StreamFilter,
    upto: EventId,
    since: Timestamp,
    limit: i64,
) -> Result<Vec<Event>, StoreError> {
    let first_in_window: Option<i64> = events::table
        .filter(events::created_at.ge(since.to_string()))
        .order(events::created_at.asc())
        .select(events::id)
        .first(conn)
        .optional()?;
    let Some(first_in_window) = first_in_window else {
        return Ok(Vec::new());
    };
    let query = apply_stream_filter(events::table.into_boxed(), filter)
        .filter(events::id.ge(first_in_window))
        .filter(events::id.le(upto.get()))
        .filter(events::created_at.ge(since.to_string()))
        .order(events::id.desc())
        .limit(limit)
        .select(EventRow::as_select());
    let mut found = into_events(query.load(conn)?)?;
    found.reverse();
    Ok(found)
}

/// The order of `GET /api/events`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = SortOrder)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// `GET /api/events`: filters and one page, walking the primary key.
#[derive(Debug, Clone)]
pub struct EventQuery {
    pub after: Option<EventId>,
    pub before: Option<EventId>,
    pub limit: i64,
    pub channels: Vec<ChannelPattern>,
    pub event_type: Option<String>,
    pub resource_id: Option<String>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub order: Order,
    /// The channels the caller may read; `None` for all.
    pub allowed: Option<Vec<ChannelPattern>>,
}

pub fn query(conn: &mut DbConn, q: &EventQuery) -> Result<Vec<Event>, StoreError> {
    let mut query = events::table.into_boxed();
    if let Some(condition) = channel_condition(&q.channels) {
        query = query.filter(condition);
    }
    query = restrict(query, q.allowed.as_deref());
    if let Some(after) = q.after {
        query = query.filter(events::id.gt(after.get()));
    }
    if let Some(before) = q.before {
        query = query.filter(events::id.lt(before.get()));
    }
    if let Some(t) = &q.event_type {
        query = query.filter(events::event_type.eq(t.clone()));
    }
    if let Some(r) = &q.resource_id {
        query = query.filter(events::resource_id.eq(r.clone()));
    }
    if let Some(a) = &q.agent_id {
        query = query.filter(events::agent_id.eq(a.clone()));
    }
    if let Some(s) = &q.session_id {
        query = query.filter(events::session_id.eq(s.clone()));
    }
    query = match q.order {
        Order::Asc => query.order(events::id.asc()),
        Order::Desc => query.order(events::id.desc()),
    };
    into_events(
        query
            .limit(q.limit)
            .select(EventRow::as_select())
            .load(conn)?,
    )
}

pub fn find(conn: &mut DbConn, id: EventId) -> Result<Option<Event>, StoreError> {
    events::table
        .find(id.get())
        .select(EventRow::as_select())
        .get_result(conn)
        .optional()?
        .map(Event::try_from)
        .transpose()
}

/// Deletes up to `limit` of the oldest events written before `cutoff` and
/// raises the pruned watermark to the highest id deleted. Returns how many
/// rows went. Small batches keep each write transaction short.
pub fn prune_batch(conn: &mut DbConn, cutoff: Timestamp, limit: i64) -> Result<usize, StoreError> {
    let doomed: Vec<i64> = events::table
        .filter(events::created_at.lt(cutoff.to_string()))
        .order(events::id.asc())
        .limit(limit)
        .select(events::id)
        .load(conn)?;
    let Some(&highest) = doomed.last() else {
        return Ok(0);
    };
    let deleted = diesel::delete(events::table.filter(events::id.eq_any(&doomed))).execute(conn)?;
    super::mercure::forget_through(conn, EventId::from_stored(highest))?;
    diesel::update(log_state::table)
        .filter(log_state::pruned_through.lt(highest))
        .set(log_state::pruned_through.eq(highest))
        .execute(conn)?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: i64) -> EventId {
        EventId::from_stored(n)
    }

    #[test]
    fn only_a_cursor_between_the_last_kept_id_and_the_new_timeline_is_lost() {
        let position = LogPosition {
            head_id: id((1 << 42) + 5),
            pruned_through: EventId::ZERO,
            oldest_id: id(1),
            lost: Some((id(3999), id(1 << 42))),
        };
        assert!(!position.lost_cursor(id(3999)), "the last kept event");
        assert!(!position.lost_cursor(id(10)));
        assert!(position.lost_cursor(id(4000)));
        assert!(position.lost_cursor(id(5000)));
        assert!(
            !position.lost_cursor(id(1 << 42)),
            "the floor itself was never an event"
        );
        assert!(!position.lost_cursor(id((1 << 42) + 1)));
        let first_timeline = LogPosition {
            lost: None,
            ..position
        };
        assert!(!first_timeline.lost_cursor(id(5000)));
    }
}
