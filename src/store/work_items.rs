//! Features, tracks and spikes in SQLite: one row per item (tombstones
//! included), its links and its comments.

use std::collections::HashMap;

use super::db::DbConn;
use diesel::prelude::*;

use super::error::{stored_agent, stored_id, stored_time};
use super::schema::{work_item_comments, work_item_links, work_items};
use super::StoreError;
use crate::domain::work_items::{Comment, Kind, Link, LinkType, Priority, Status, WorkItem};
use crate::domain::{AgentId, EventId, ResourceId, Timestamp};

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = work_items)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite, diesel::pg::Pg))]
#[diesel(treat_none_as_null = true)]
struct WorkItemRow {
    id: String,
    kind: String,
    title: String,
    status: String,
    description: Option<String>,
    priority: Option<String>,
    tags: String,
    track_id: Option<String>,
    findings: Option<String>,
    version: i64,
    created_at: String,
    updated_at: String,
    created_by: String,
    updated_by: String,
    deleted: bool,
    last_event_id: i64,
}

fn corrupt(what: &str, id: &str) -> StoreError {
    StoreError::Corrupt(format!("work item {id}: bad {what}"))
}

impl WorkItemRow {
    fn from_item(item: &WorkItem, last_event_id: EventId) -> Self {
        WorkItemRow {
            id: item.id.as_str().to_owned(),
            kind: item.kind.singular().to_owned(),
            title: item.title.clone(),
            status: item.status.as_str().to_owned(),
            description: item.description.clone(),
            priority: item.priority.map(|p| p.as_str().to_owned()),
            tags: serde_json::to_string(&item.tags).unwrap_or_else(|_| "[]".into()),
            track_id: item.track_id.as_ref().map(|t| t.as_str().to_owned()),
            findings: item.findings.clone(),
            version: item.version,
            created_at: item.created_at.to_string(),
            updated_at: item.updated_at.to_string(),
            created_by: item.created_by.as_str().to_owned(),
            updated_by: item.updated_by.as_str().to_owned(),
            deleted: item.deleted,
            last_event_id: last_event_id.get(),
        }
    }

    fn into_item(self, links: Vec<Link>, comments: Vec<Comment>) -> Result<WorkItem, StoreError> {
        let kind = Kind::from_singular(&self.kind).ok_or_else(|| corrupt("kind", &self.id))?;
        let status =
            Status::parse("status", &self.status).map_err(|_| corrupt("status", &self.id))?;
        let priority = self
            .priority
            .as_deref()
            .map(|p| Priority::parse("priority", p))
            .transpose()
            .map_err(|_| corrupt("priority", &self.id))?;
        let tags = serde_json::from_str(&self.tags).map_err(|_| corrupt("tags", &self.id))?;
        let what = || format!("work item {}", self.id);
        let created_at = stored_time(&self.created_at, what)?;
        let updated_at = stored_time(&self.updated_at, what)?;
        let track_id = self
            .track_id
            .map(|t| stored_id(t, || format!("work item {}: track_id", self.id)))
            .transpose()?;
        let created_by = stored_agent(self.created_by, what)?;
        let updated_by = stored_agent(self.updated_by, what)?;
        Ok(WorkItem {
            id: stored_id(self.id, || "work item".to_owned())?,
            kind,
            title: self.title,
            status,
            description: self.description,
            priority,
            tags,
            track_id,
            findings: self.findings,
            links,
            comments,
            version: self.version,
            created_at,
            updated_at,
            created_by,
            updated_by,
            deleted: self.deleted,
        })
    }
}

type LinkRow = (String, String, String);
type CommentRow = (String, String, String, String, String);

/// Links and comments by item id.
type Children = (HashMap<String, Vec<Link>>, HashMap<String, Vec<Comment>>);

/// Links and comments of the given items, loaded in a few `IN` queries.
fn children(conn: &mut DbConn, ids: &[String]) -> Result<Children, StoreError> {
    let mut links: HashMap<String, Vec<Link>> = HashMap::new();
    let mut comments: HashMap<String, Vec<Comment>> = HashMap::new();
    for chunk in ids.chunks(500) {
        let link_rows: Vec<LinkRow> = work_item_links::table
            .filter(work_item_links::item_id.eq_any(chunk))
            .order((
                work_item_links::created_at.asc(),
                work_item_links::linked_id.asc(),
            ))
            .select((
                work_item_links::item_id,
                work_item_links::linked_id,
                work_item_links::link_type,
            ))
            .load(conn)?;
        for (item_id, linked_id, link_type) in link_rows {
            let link_type = LinkType::parse("link_type", &link_type)
                .map_err(|_| corrupt("link type", &item_id))?;
            let linked_id = stored_id(linked_id, || format!("link of work item {item_id}"))?;
            links.entry(item_id).or_default().push(Link {
                linked_id,
                link_type,
            });
        }
        let comment_rows: Vec<CommentRow> = work_item_comments::table
            .filter(work_item_comments::item_id.eq_any(chunk))
            .order((
                work_item_comments::created_at.asc(),
                work_item_comments::id.asc(),
            ))
            .select((
                work_item_comments::item_id,
                work_item_comments::id,
                work_item_comments::comment_text,
                work_item_comments::author,
                work_item_comments::created_at,
            ))
            .load(conn)?;
        for (item_id, id, comment_text, author, created_at) in comment_rows {
            let created_at = stored_time(&created_at, || format!("comment {id}"))?;
            let author = stored_agent(author, || format!("comment {id}"))?;
            let id = stored_id(id, || format!("comment of work item {item_id}"))?;
            comments.entry(item_id).or_default().push(Comment {
                id,
                comment_text,
                author,
                created_at,
            });
        }
    }
    Ok((links, comments))
}

fn assemble(conn: &mut DbConn, rows: Vec<WorkItemRow>) -> Result<Vec<WorkItem>, StoreError> {
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let (mut links, mut comments) = children(conn, &ids)?;
    rows.into_iter()
        .map(|row| {
            let links = links.remove(&row.id).unwrap_or_default();
            let comments = comments.remove(&row.id).unwrap_or_default();
            row.into_item(links, comments)
        })
        .collect()
}

/// The item with this id, of any kind, tombstones included.
pub fn load(conn: &mut DbConn, id: &ResourceId) -> Result<Option<WorkItem>, StoreError> {
    let row: Option<WorkItemRow> = work_items::table
        .find(id.as_str())
        .select(WorkItemRow::as_select())
        .get_result(conn)
        .optional()?;
    match row {
        None => Ok(None),
        Some(row) => Ok(assemble(conn, vec![row])?.pop()),
    }
}

/// Writes the item's own row (not its links or comments).
pub fn save(conn: &mut DbConn, item: &WorkItem, last_event_id: EventId) -> Result<(), StoreError> {
    let row = WorkItemRow::from_item(item, last_event_id);
    let updated = diesel::update(work_items::table.find(item.id.as_str()))
        .set(&row)
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(work_items::table)
            .values(&row)
            .execute(conn)?;
    }
    Ok(())
}

pub fn insert_link(
    conn: &mut DbConn,
    item_id: &ResourceId,
    link: &Link,
    agent: &AgentId,
    now: Timestamp,
) -> Result<(), StoreError> {
    diesel::insert_into(work_item_links::table)
        .values((
            work_item_links::item_id.eq(item_id.as_str()),
            work_item_links::linked_id.eq(link.linked_id.as_str()),
            work_item_links::link_type.eq(link.link_type.as_str()),
            work_item_links::created_at.eq(now.to_string()),
            work_item_links::created_by.eq(agent.as_str()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn delete_link(conn: &mut DbConn, item_id: &ResourceId, link: &Link) -> Result<(), StoreError> {
    diesel::delete(
        work_item_links::table
            .filter(work_item_links::item_id.eq(item_id.as_str()))
            .filter(work_item_links::linked_id.eq(link.linked_id.as_str()))
            .filter(work_item_links::link_type.eq(link.link_type.as_str())),
    )
    .execute(conn)?;
    Ok(())
}

pub fn insert_comment(
    conn: &mut DbConn,
    item_id: &ResourceId,
    comment: &Comment,
) -> Result<(), StoreError> {
    diesel::insert_into(work_item_comments::table)
        .values((
            work_item_comments::id.eq(comment.id.as_str()),
            work_item_comments::item_id.eq(item_id.as_str()),
            work_item_comments::comment_text.eq(&comment.comment_text),
            work_item_comments::author.eq(comment.author.as_str()),
            work_item_comments::created_at.eq(comment.created_at.to_string()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Removes an item's links and comments (when it is deleted).
pub fn delete_children(conn: &mut DbConn, item_id: &ResourceId) -> Result<(), StoreError> {
    let item_id = item_id.as_str();
    diesel::delete(work_item_links::table.filter(work_item_links::item_id.eq(item_id)))
        .execute(conn)?;
    diesel::delete(work_item_comments::table.filter(work_item_comments::item_id.eq(item_id)))
        .execute(conn)?;
    Ok(())
}

/// Filters of a collection listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub track_id: Option<String>,
    pub tag: Option<String>,
    /// Only items changed by an event above this id.
    pub updated_since_id: Option<EventId>,
}

/// The live items of a kind, oldest first.
pub fn list(
    conn: &mut DbConn,
    kind: Kind,
    filter: &ListFilter,
) -> Result<Vec<WorkItem>, StoreError> {
    let mut query = work_items::table
        .filter(work_items::kind.eq(kind.singular()))
        .filter(work_items::deleted.eq(false))
        .into_boxed();
    if let Some(status) = filter.status {
        query = query.filter(work_items::status.eq(status.as_str()));
    }
    if let Some(track_id) = &filter.track_id {
        query = query.filter(work_items::track_id.eq(track_id.clone()));
    }
    if let Some(since) = filter.updated_since_id {
        query = query.filter(work_items::last_event_id.gt(since.get()));
    }
    let rows = query
        .order((work_items::created_at.asc(), work_items::id.asc()))
        .select(WorkItemRow::as_select())
        .load(conn)?;
    let mut items = assemble(conn, rows)?;
    if let Some(tag) = &filter.tag {
        items.retain(|item| item.tags.iter().any(|t| t == tag));
    }
    Ok(items)
}

/// Every item of a kind changed after event `cursor`, tombstones included,
/// in the order of their last change.
pub fn changed_since(
    conn: &mut DbConn,
    kind: Kind,
    cursor: EventId,
) -> Result<Vec<WorkItem>, StoreError> {
    let rows = work_items::table
        .filter(work_items::kind.eq(kind.singular()))
        .filter(work_items::last_event_id.gt(cursor.get()))
        .order(work_items::last_event_id.asc())
        .select(WorkItemRow::as_select())
        .load(conn)?;
    assemble(conn, rows)
}
