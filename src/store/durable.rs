//! Durable Streams in the database: one row per stream (its metadata and
//! tail), one per message (its bytes, exactly), one per idempotent producer.
//! A row becomes the domain's `Stream` here; no rule is decided here.

use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types;

use super::db::DbConn;
use super::schema::{ds_messages, ds_producers, ds_streams};
use super::StoreError;
use crate::domain::durable::{self as rules, Message, ProducerState, Stream};

/// A stream's row.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = ds_streams)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
pub struct StreamRow {
    pub path: String,
    pub content_type: String,
    pub ttl_seconds: Option<i64>,
    pub expires_at: Option<String>,
    pub closed: bool,
    /// JSON of `ClosedBy`, when a producer closed it.
    pub closed_by: Option<String>,
    pub created_ms: i64,
    pub accessed_ms: i64,
    pub forked_from: Option<String>,
    pub fork_offset: Option<String>,
    pub fork_sub_offset: Option<i64>,
    pub ref_count: i64,
    pub soft_deleted: bool,
    pub tail: String,
    pub bytes: i64,
    pub last_seq: Option<String>,
}

impl StreamRow {
    /// Whether it is past its TTL or expiry (`domain::durable::expired`).
    pub fn is_expired(&self, now_ms: i64, touched_ms: i64) -> bool {
        rules::expired(
            self.expires_at.as_deref(),
            self.ttl_seconds,
            self.accessed_ms,
            now_ms,
            touched_ms,
        )
    }
}

impl From<StreamRow> for Stream {
    fn from(row: StreamRow) -> Stream {
        Stream {
            path: row.path,
            content_type: row.content_type,
            ttl_seconds: row.ttl_seconds,
            expires_at: row.expires_at,
            closed: row.closed,
            accessed_ms: row.accessed_ms,
            forked_from: row.forked_from,
            fork_offset: row.fork_offset,
            ref_count: row.ref_count,
            soft_deleted: row.soft_deleted,
            tail: row.tail,
        }
    }
}

/// The stream at `path`, as readers see it.
pub fn stream(conn: &mut DbConn, path: &str) -> Result<Option<Stream>, StoreError> {
    Ok(get(conn, path)?.map(Stream::from))
}

pub fn get(conn: &mut DbConn, path: &str) -> Result<Option<StreamRow>, StoreError> {
    Ok(ds_streams::table
        .find(path)
        .select(StreamRow::as_select())
        .get_result(conn)
        .optional()?)
}

pub fn insert(conn: &mut DbConn, row: &StreamRow) -> Result<(), StoreError> {
    diesel::insert_into(ds_streams::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn update(conn: &mut DbConn, row: &StreamRow) -> Result<(), StoreError> {
    diesel::update(ds_streams::table.find(&row.path))
        .set(row)
        .execute(conn)?;
    Ok(())
}

/// What an append moves (tail, bytes, the `Stream-Seq`, the last access),
/// written alone, where [`update`] writes every column.
pub fn update_appended(conn: &mut DbConn, row: &StreamRow) -> Result<(), StoreError> {
    let update = UpdateAppended { row };
    match conn {
        DbConn::Sqlite(conn) => update.execute(conn)?,
        DbConn::Pg(conn) => update.execute(conn)?,
    };
    Ok(())
}

/// [`update_appended`]'s statement, its SQL fixed so that diesel prepares
/// it once per connection. diesel 2.3 marks every `UPDATE` its DSL builds
/// unsafe to cache, so it built and parsed this one on every append: a
/// tenth of the writer thread's CPU in a Durable Streams flood.
struct UpdateAppended<'a> {
    row: &'a StreamRow,
}

impl<DB> QueryFragment<DB> for UpdateAppended<'_>
where
    DB: diesel::backend::Backend,
    str: diesel::serialize::ToSql<sql_types::Text, DB>,
    i64: diesel::serialize::ToSql<sql_types::BigInt, DB>,
    Option<String>: diesel::serialize::ToSql<sql_types::Nullable<sql_types::Text>, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        out.push_sql("UPDATE ds_streams SET tail = ");
        out.push_bind_param::<sql_types::Text, str>(&self.row.tail)?;
        out.push_sql(", bytes = ");
        out.push_bind_param::<sql_types::BigInt, i64>(&self.row.bytes)?;
        out.push_sql(", last_seq = ");
        out.push_bind_param::<sql_types::Nullable<sql_types::Text>, _>(&self.row.last_seq)?;
        out.push_sql(", accessed_ms = ");
        out.push_bind_param::<sql_types::BigInt, i64>(&self.row.accessed_ms)?;
        out.push_sql(" WHERE path = ");
        out.push_bind_param::<sql_types::Text, str>(&self.row.path)?;
        Ok(())
    }
}

/// What diesel caches [`UpdateAppended`] under.
struct UpdateAppendedId;

impl QueryId for UpdateAppended<'_> {
    type QueryId = UpdateAppendedId;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl<Conn> RunQueryDsl<Conn> for UpdateAppended<'_> {}

pub fn add_message(
    conn: &mut DbConn,
    path: &str,
    offset: &str,
    data: &[u8],
) -> Result<(), StoreError> {
    diesel::insert_into(ds_messages::table)
        .values((
            ds_messages::path.eq(path),
            ds_messages::offset.eq(offset),
            ds_messages::data.eq(data),
        ))
        .execute(conn)?;
    Ok(())
}

/// The stream's own messages after `after`, up to `cap` (inclusive) when
/// given, oldest first, stopping once `max_bytes` are read (at least one).
pub fn messages(
    conn: &mut DbConn,
    path: &str,
    after: &str,
    cap: Option<&str>,
    max_bytes: usize,
) -> Result<(Vec<Message>, bool), StoreError> {
    // Pages grow or shrink with the rows' sizes, so a read of 1 MiB
    // messages does not load hundreds of them to answer a few.
    let mut page: i64 = 8;
    let mut out = Vec::new();
    let mut size = 0usize;
    let mut from = after.to_owned();
    loop {
        let mut query = ds_messages::table
            .filter(ds_messages::path.eq(path))
            .filter(ds_messages::offset.gt(from.clone()))
            .order(ds_messages::offset.asc())
            .select((ds_messages::offset, ds_messages::data))
            .limit(page)
            .into_boxed();
        if let Some(cap) = cap {
            query = query.filter(ds_messages::offset.le(cap.to_owned()));
        }
        let rows: Vec<(String, Vec<u8>)> = query.load(conn)?;
        let full = rows.len() as i64 == page;
        let bytes: usize = rows.iter().map(|(_, d)| d.len()).sum();
        let average = (bytes / rows.len().max(1)).max(1);
        for (offset, data) in rows {
            if !out.is_empty() && size + data.len() > max_bytes {
                return Ok((out, true));
            }
            size += data.len();
            from.clone_from(&offset);
            out.push(Message { offset, data });
        }
        if !full {
            return Ok((out, false));
        }
        page = (max_bytes.saturating_sub(size) / average).clamp(1, 512) as i64;
    }
}

/// The first own message after `after` (a fork's sub-offset source).
pub fn first_after(
    conn: &mut DbConn,
    path: &str,
    after: &str,
) -> Result<Option<Message>, StoreError> {
    let row: Option<(String, Vec<u8>)> = ds_messages::table
        .filter(ds_messages::path.eq(path))
        .filter(ds_messages::offset.gt(after))
        .order(ds_messages::offset.asc())
        .select((ds_messages::offset, ds_messages::data))
        .first(conn)
        .optional()?;
    Ok(row.map(|(offset, data)| Message { offset, data }))
}

/// Removes a stream, its messages and its producers.
pub fn remove(conn: &mut DbConn, path: &str) -> Result<(), StoreError> {
    diesel::delete(ds_messages::table.filter(ds_messages::path.eq(path))).execute(conn)?;
    diesel::delete(ds_producers::table.filter(ds_producers::path.eq(path))).execute(conn)?;
    diesel::delete(ds_streams::table.find(path)).execute(conn)?;
    Ok(())
}

pub fn producer(
    conn: &mut DbConn,
    path: &str,
    id: &str,
) -> Result<Option<ProducerState>, StoreError> {
    let row: Option<(i64, i64)> = ds_producers::table
        .find((path, id))
        .select((ds_producers::epoch, ds_producers::last_seq))
        .get_result(conn)
        .optional()?;
    Ok(row.map(|(epoch, last_seq)| ProducerState { epoch, last_seq }))
}

pub fn save_producer(
    conn: &mut DbConn,
    path: &str,
    id: &str,
    state: ProducerState,
    now_ms: i64,
) -> Result<(), StoreError> {
    let updated = diesel::update(ds_producers::table.find((path, id)))
        .set((
            ds_producers::epoch.eq(state.epoch),
            ds_producers::last_seq.eq(state.last_seq),
            ds_producers::updated_ms.eq(now_ms),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(ds_producers::table)
            .values((
                ds_producers::path.eq(path),
                ds_producers::producer_id.eq(id),
                ds_producers::epoch.eq(state.epoch),
                ds_producers::last_seq.eq(state.last_seq),
                ds_producers::updated_ms.eq(now_ms),
            ))
            .execute(conn)?;
    }
    Ok(())
}
