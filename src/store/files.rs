//! Shared files in SQLite: one row per file (tombstones included) with its
//! lock lease, and the content of every version.

use super::db::DbConn;
use diesel::prelude::*;

use super::error::{stored_agent, stored_id, stored_session, stored_time};
use super::schema::{file_versions, files};
use super::StoreError;
use crate::domain::files::{FileLock, SharedFile, VersionInfo};
use crate::domain::{EventId, ResourceId, Timestamp};

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = files)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
struct FileRow {
    stable_id: String,
    name: String,
    label: Option<String>,
    derived_from: Option<String>,
    content: String,
    version: i64,
    created_at: String,
    updated_at: String,
    created_by: String,
    updated_by: String,
    deleted: bool,
    last_event_id: i64,
    lock_session_id: Option<String>,
    lock_agent_id: Option<String>,
    lock_expires_at: Option<String>,
    lock_ttl_seconds: Option<i64>,
}

impl FileRow {
    fn from_file(file: &SharedFile, last_event_id: EventId) -> Self {
        let lock = file.lock.as_ref();
        FileRow {
            stable_id: file.stable_id.as_str().to_owned(),
            name: file.name.clone(),
            label: file.label.clone(),
            derived_from: file.derived_from.as_ref().map(|d| d.as_str().to_owned()),
            content: file.content.clone(),
            version: file.version,
            created_at: file.created_at.to_string(),
            updated_at: file.updated_at.to_string(),
            created_by: file.created_by.as_str().to_owned(),
            updated_by: file.updated_by.as_str().to_owned(),
            deleted: file.deleted,
            last_event_id: last_event_id.get(),
            lock_session_id: lock.map(|l| l.session_id.as_str().to_owned()),
            lock_agent_id: lock.map(|l| l.agent_id.as_str().to_owned()),
            lock_expires_at: lock.map(|l| l.expires_at.to_string()),
            lock_ttl_seconds: lock.map(|l| l.ttl_seconds as i64),
        }
    }

    fn into_file(self) -> Result<SharedFile, StoreError> {
        let what = || format!("file {}", self.stable_id);
        let lock = match (
            self.lock_session_id,
            self.lock_agent_id,
            self.lock_expires_at,
        ) {
            (Some(session_id), Some(agent_id), Some(expires_at)) => Some(FileLock {
                session_id: stored_session(session_id, what)?,
                agent_id: stored_agent(agent_id, what)?,
                expires_at: stored_time(&expires_at, what)?,
                // Locks taken before the lease's length was kept: the
                // server's default, as before.
                ttl_seconds: self
                    .lock_ttl_seconds
                    .and_then(|s| u64::try_from(s).ok())
                    .unwrap_or(0),
            }),
            _ => None,
        };
        let derived_from = self
            .derived_from
            .map(|d| stored_id(d, || format!("file {}: derived_from", self.stable_id)))
            .transpose()?;
        let created_by = stored_agent(self.created_by, what)?;
        let updated_by = stored_agent(self.updated_by, what)?;
        Ok(SharedFile {
            created_at: stored_time(&self.created_at, what)?,
            updated_at: stored_time(&self.updated_at, what)?,
            stable_id: stored_id(self.stable_id, || "file".to_owned())?,
            name: self.name,
            label: self.label,
            derived_from,
            content: self.content,
            version: self.version,
            created_by,
            updated_by,
            deleted: self.deleted,
            lock,
        })
    }
}

/// The file with this id, tombstones included.
pub fn load(conn: &mut DbConn, stable_id: &ResourceId) -> Result<Option<SharedFile>, StoreError> {
    files::table
        .find(stable_id.as_str())
        .select(FileRow::as_select())
        .get_result(conn)
        .optional()?
        .map(FileRow::into_file)
        .transpose()
}

/// Writes the file's row; `last_event_id` is the newest event about it.
pub fn save(
    conn: &mut DbConn,
    file: &SharedFile,
    last_event_id: EventId,
) -> Result<(), StoreError> {
    let row = FileRow::from_file(file, last_event_id);
    let updated = diesel::update(files::table.find(file.stable_id.as_str()))
        .set(&row)
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(files::table)
            .values(&row)
            .execute(conn)?;
    }
    Ok(())
}

/// Only the lease changed (a renewal): no event, so `last_event_id` stays.
pub fn save_lock(conn: &mut DbConn, file: &SharedFile) -> Result<(), StoreError> {
    let lock = file.lock.as_ref();
    diesel::update(files::table.find(file.stable_id.as_str()))
        .set((
            files::lock_session_id.eq(lock.map(|l| l.session_id.as_str().to_owned())),
            files::lock_agent_id.eq(lock.map(|l| l.agent_id.as_str().to_owned())),
            files::lock_expires_at.eq(lock.map(|l| l.expires_at.to_string())),
            files::lock_ttl_seconds.eq(lock.map(|l| l.ttl_seconds as i64)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Keeps the file's current content as its numbered version.
pub fn keep_version(conn: &mut DbConn, file: &SharedFile) -> Result<(), StoreError> {
    // Delete-then-insert replaces on both backends (no upsert needed: every
    // write runs under the one writer lock).
    diesel::delete(
        file_versions::table
            .filter(file_versions::stable_id.eq(file.stable_id.as_str()))
            .filter(file_versions::version.eq(file.version)),
    )
    .execute(conn)?;
    diesel::insert_into(file_versions::table)
        .values((
            file_versions::stable_id.eq(file.stable_id.as_str()),
            file_versions::version.eq(file.version),
            file_versions::content.eq(&file.content),
            file_versions::saved_at.eq(file.updated_at.to_string()),
            file_versions::saved_by.eq(file.updated_by.as_str()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn versions(conn: &mut DbConn, stable_id: &ResourceId) -> Result<Vec<VersionInfo>, StoreError> {
    let rows: Vec<(i64, String, String, String)> = file_versions::table
        .filter(file_versions::stable_id.eq(stable_id.as_str()))
        .order(file_versions::version.asc())
        .select((
            file_versions::version,
            file_versions::saved_at,
            file_versions::saved_by,
            file_versions::content,
        ))
        .load(conn)?;
    rows.into_iter()
        .map(|(version, saved_at, saved_by, content)| {
            Ok(VersionInfo {
                version,
                saved_at: stored_time(&saved_at, || format!("file {stable_id}"))?,
                saved_by: stored_agent(saved_by, || format!("file {stable_id}"))?,
                size: content.len(),
            })
        })
        .collect()
}

pub fn version(
    conn: &mut DbConn,
    stable_id: &ResourceId,
    n: i64,
) -> Result<Option<(VersionInfo, String)>, StoreError> {
    let row: Option<(i64, String, String, String)> = file_versions::table
        .find((stable_id.as_str(), n))
        .select((
            file_versions::version,
            file_versions::saved_at,
            file_versions::saved_by,
            file_versions::content,
        ))
        .get_result(conn)
        .optional()?;
    row.map(|(version, saved_at, saved_by, content)| {
        Ok((
            VersionInfo {
                version,
                saved_at: stored_time(&saved_at, || format!("file {stable_id}"))?,
                saved_by: stored_agent(saved_by, || format!("file {stable_id}"))?,
                size: content.len(),
            },
            content,
        ))
    })
    .transpose()
}

/// Live files, by name.
pub fn list(conn: &mut DbConn) -> Result<Vec<SharedFile>, StoreError> {
    files::table
        .filter(files::deleted.eq(false))
        .order((files::name.asc(), files::stable_id.asc()))
        .select(FileRow::as_select())
        .load(conn)?
        .into_iter()
        .map(FileRow::into_file)
        .collect()
}

/// Files whose lease ran out before `now`, at most `limit`.
/// When the first lease now held runs out, if any lease is held.
pub fn earliest_lock_expiry(conn: &mut DbConn) -> Result<Option<Timestamp>, StoreError> {
    let first: Option<String> = files::table
        .filter(files::lock_expires_at.is_not_null())
        .select(diesel::dsl::min(files::lock_expires_at))
        .first::<Option<String>>(conn)?;
    first
        .map(|t| stored_time(&t, || "the earliest lock expiry".to_owned()))
        .transpose()
}

pub fn expired_locks(
    conn: &mut DbConn,
    now: Timestamp,
    limit: i64,
) -> Result<Vec<SharedFile>, StoreError> {
    files::table
        .filter(files::lock_expires_at.le(now.to_string()))
        .order(files::lock_expires_at.asc())
        .limit(limit)
        .select(FileRow::as_select())
        .load(conn)?
        .into_iter()
        .map(FileRow::into_file)
        .collect()
}

/// Every file changed after event `cursor`, tombstones included.
pub fn changed_since(conn: &mut DbConn, cursor: EventId) -> Result<Vec<SharedFile>, StoreError> {
    files::table
        .filter(files::last_event_id.gt(cursor.get()))
        .order(files::last_event_id.asc())
        .select(FileRow::as_select())
        .load(conn)?
        .into_iter()
        .map(FileRow::into_file)
        .collect()
}
