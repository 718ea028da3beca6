//! The writer's statements on PostgreSQL, written so that diesel prepares
//! each once per connection and then only binds and executes it.
//!
//! diesel does not cache a `sql_query` or a multi-row insert (their SQL
//! changes with the rows), so PostgreSQL parsed and planned them on every
//! batch: the head query took 0.29 ms that way against 0.13 ms prepared
//! (pgbench, one client). Here the SQL is fixed: the head query is a
//! constant, and a batch of any size is inserted from one array per column
//! (`unnest`), with the notification to the other nodes in the same
//! statement when it is the batch's last.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel::{PgConnection, QueryResult, RunQueryDsl};

use crate::domain::Event;

/// A notification: `pg_notify(channel, payload)`, delivered to listeners
/// when the transaction commits.
pub struct Notify<'a> {
    pub channel: &'a str,
    pub payload: &'a str,
}

/// The lowest id the database's current timeline numbers events above:
/// `(timeline - 1) << 42`, 0 on the first timeline and on a standby (the
/// SQL function of migration `2026-12-07-000004_timeline_floor`, which also
/// answers 0 where the server hides its WAL position). A promoted standby
/// (or a point-in-time restore) starts a new timeline, so its first event
/// id is above every id the old timeline could have answered, even one
/// whose write was lost with an asynchronous primary (as long as one
/// timeline numbers fewer than 2^42 events).
macro_rules! timeline_floor {
    () => {
        "switchboard_timeline_floor()"
    };
}

/// The log's head (the newest id, the highest id retention deleted when it
/// deleted every row, or the current timeline's floor) and the newest
/// event's time.
#[derive(Debug, Clone, Copy, QueryId)]
struct HeadAndNewest;

impl Query for HeadAndNewest {
    type SqlType = (BigInt, Nullable<Text>);
}

impl QueryFragment<Pg> for HeadAndNewest {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(concat!(
            "SELECT GREATEST(COALESCE((SELECT max(id) FROM events), 0), \
                    (SELECT COALESCE(max(pruned_through), 0) FROM log_state), ",
            timeline_floor!(),
            "), (SELECT created_at FROM events ORDER BY id DESC LIMIT 1)",
        ));
        Ok(())
    }
}

impl RunQueryDsl<PgConnection> for HeadAndNewest {}

pub fn head_and_newest(conn: &mut PgConnection) -> QueryResult<(i64, Option<String>)> {
    HeadAndNewest.get_result(conn)
}

/// The current timeline's floor (see `timeline_floor!`).
pub fn timeline_floor(conn: &mut PgConnection) -> QueryResult<i64> {
    diesel::select(diesel::dsl::sql::<BigInt>(timeline_floor!())).get_result(conn)
}

/// A batch of numbered events as one `INSERT … SELECT … FROM unnest(…)`,
/// one array per column; `NOTIFY` says whether the statement also sends a
/// notification (two statements, each prepared once).
struct InsertEvents<'a, const NOTIFY: bool> {
    ids: Vec<i64>,
    channels: Vec<&'a str>,
    types: Vec<&'a str>,
    resource_types: Vec<Option<&'a str>>,
    resource_ids: Vec<Option<&'a str>>,
    agents: Vec<&'a str>,
    sessions: Vec<Option<&'a str>>,
    payloads: Vec<&'a str>,
    created_at: &'a str,
    notify: Option<&'a Notify<'a>>,
}

impl<'a, const NOTIFY: bool> QueryFragment<Pg> for InsertEvents<'a, NOTIFY> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        if NOTIFY {
            out.push_sql("WITH inserted AS (");
        }
        out.push_sql(
            "INSERT INTO events (id, channel, event_type, resource_type, resource_id, \
             agent_id, session_id, created_at, payload) \
             SELECT id, channel, event_type, resource_type, resource_id, agent_id, \
             session_id, ",
        );
        out.push_bind_param::<Text, _>(&self.created_at)?;
        out.push_sql(", payload FROM unnest(");
        out.push_bind_param::<Array<BigInt>, _>(&self.ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.channels)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.types)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.resource_types)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.resource_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.agents)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Nullable<Text>>, _>(&self.sessions)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<Text>, _>(&self.payloads)?;
        out.push_sql(
            ") AS e(id, channel, event_type, resource_type, resource_id, agent_id, \
             session_id, payload)",
        );
        if NOTIFY {
            let notify = self.notify.ok_or_else(|| {
                diesel::result::Error::QueryBuilderError("a notification without its text".into())
            })?;
            out.push_sql(") SELECT pg_notify(");
            out.push_bind_param::<Text, _>(&notify.channel)?;
            out.push_sql(", ");
            out.push_bind_param::<Text, _>(&notify.payload)?;
            out.push_sql(")");
        }
        Ok(())
    }
}

/// What diesel caches `InsertEvents` under: one prepared statement per
/// variant, whatever the batch.
struct InsertEventsId<const NOTIFY: bool>;

impl<const NOTIFY: bool> QueryId for InsertEvents<'_, NOTIFY> {
    type QueryId = InsertEventsId<NOTIFY>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<'a, const NOTIFY: bool> RunQueryDsl<PgConnection> for InsertEvents<'a, NOTIFY> {}

impl<'a, const NOTIFY: bool> InsertEvents<'a, NOTIFY> {
    fn new(batch: &'a [Event], created_at: &'a str, notify: Option<&'a Notify<'a>>) -> Self {
        InsertEvents {
            ids: batch.iter().map(|e| e.id.get()).collect(),
            channels: batch.iter().map(|e| e.channel.as_str()).collect(),
            types: batch.iter().map(|e| e.event_type.as_str()).collect(),
            resource_types: batch.iter().map(|e| e.resource_type.as_deref()).collect(),
            resource_ids: batch.iter().map(|e| e.resource_id.as_deref()).collect(),
            agents: batch.iter().map(|e| e.agent_id.as_str()).collect(),
            sessions: batch.iter().map(|e| e.session_id.as_deref()).collect(),
            payloads: batch.iter().map(|e| e.payload.get()).collect(),
            created_at,
            notify,
        }
    }
}

/// Inserts `batch` (numbered events, all with the time `created_at`) in one
/// statement, which also sends `notify` when there is one.
pub fn insert_events(
    conn: &mut PgConnection,
    batch: &[Event],
    created_at: &str,
    notify: Option<&Notify<'_>>,
) -> QueryResult<()> {
    match notify {
        None => InsertEvents::<false>::new(batch, created_at, None).execute(conn)?,
        Some(notify) => InsertEvents::<true>::new(batch, created_at, Some(notify)).execute(conn)?,
    };
    Ok(())
}

/// Sends `notify` on its own (a batch whose events were all inserted
/// already).
pub fn notify(conn: &mut PgConnection, notify: &Notify<'_>) -> QueryResult<()> {
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(notify.channel)
        .bind::<Text, _>(notify.payload)
        .execute(conn)?;
    Ok(())
}
