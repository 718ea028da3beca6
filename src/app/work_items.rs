//! Features, tracks and spikes: create, and every change to a live item
//! (update, status, link, unlink, comment, delete), plus the compatibility
//! API's "broadcast" that creates the item first when it is missing.

use serde_json::json;

use super::{record, Actor};
use crate::domain::ids::new_id;
use crate::domain::precondition::IfMatch;
use crate::domain::work_items::{
    self as rules, Comment, ItemChange, ItemFields, Kind, Link, LinkType, Status, WorkItem,
};
use crate::domain::{DomainError, EventId, ResourceId, Timestamp};
use crate::store::work_items as items;
use crate::store::{StoreError, Tx};
use crate::views::WorkItemView;

/// The live item a command is about, with the caller's precondition.
#[derive(Debug, Clone)]
pub struct Target {
    pub kind: Kind,
    pub id: ResourceId,
    pub if_match: Option<IfMatch>,
}

/// A change to a live item.
#[derive(Debug, Clone)]
pub enum ItemCommand {
    /// The fields given change; nothing is announced when nothing changed.
    Update(ItemFields),
    /// `status_changed`, unless the status is already this one.
    SetStatus(Status),
    /// `link_added`, unless the link exists.
    Link(Link),
    /// Every link to `linked_id` (of `link_type` when given); 404 when none.
    Unlink {
        linked_id: ResourceId,
        link_type: Option<LinkType>,
    },
    /// `comment_added`; the author is the acting agent.
    Comment(String),
    /// The item becomes a tombstone.
    Delete,
}

/// A new item of `kind`; 409 `already_exists` when a live item has the id.
pub fn create(
    tx: &mut Tx<'_>,
    actor: &Actor,
    kind: Kind,
    id: ResourceId,
    fields: ItemFields,
) -> Result<WorkItem, StoreError> {
    let previous = items::load(tx.conn()?, &id)?;
    if let Some(existing) = previous.as_ref().filter(|item| !item.deleted) {
        return Err(DomainError::Conflict {
            code: "already_exists",
            message: format!("{id} already exists as a {}", existing.kind.singular()),
            details: json!({ "id": id }),
        }
        .into());
    }
    check_track(tx, &fields)?;
    let item = rules::create_item(kind, id, fields, previous.as_ref(), &actor.agent, tx.now())?;
    record(tx, &item, actor, &[ItemChange::Created])?;
    Ok(item)
}

/// Runs `command` on the live item after its `If-Match`; returns the item
/// as it is now (a tombstone after `Delete`).
pub fn change(
    tx: &mut Tx<'_>,
    actor: &Actor,
    target: Target,
    command: ItemCommand,
) -> Result<WorkItem, StoreError> {
    let mut item = load_live(tx, target.kind, &target.id)?;
    if let Some(precondition) = target.if_match {
        precondition.check_version(item.version, || WorkItemView::from(&item))?;
    }
    let changes = apply(tx, &mut item, command, actor)?;
    record(tx, &item, actor, &changes)?;
    Ok(item)
}

/// What a compatibility call did: the first event it published (none when
/// nothing changed) and the commit's time.
#[derive(Debug, Clone, Copy)]
pub struct Broadcast {
    pub event_id: Option<EventId>,
    pub timestamp: Timestamp,
}

/// The compatibility API: runs `command` on the item, creating it first
/// (title = its id) when it does not exist; creating and changing it are
/// one version. 409 `conflict` when the id is a live item of another kind.
pub fn broadcast(
    tx: &mut Tx<'_>,
    actor: &Actor,
    kind: Kind,
    id: ResourceId,
    command: ItemCommand,
) -> Result<Broadcast, StoreError> {
    let now = tx.now();
    let (mut item, is_new) = match items::load(tx.conn()?, &id)? {
        Some(item) if !item.deleted && item.kind == kind => (item, false),
        Some(item) if !item.deleted => {
            return Err(DomainError::Conflict {
                code: "conflict",
                message: format!(
                    "{id} is a {}, not a {}",
                    item.kind.singular(),
                    kind.singular()
                ),
                details: json!({ "id": id }),
            }
            .into())
        }
        previous => {
            let fields = ItemFields {
                title: Some(id.as_str().to_owned()),
                ..Default::default()
            };
            let item = rules::create_item(
                kind,
                id.clone(),
                fields,
                previous.as_ref(),
                &actor.agent,
                now,
            )?;
            // Stored now so that links can refer to it; `record` rewrites it.
            items::save(tx.conn()?, &item, EventId::ZERO)?;
            (item, true)
        }
    };
    let created_version = item.version;
    let mut changes = apply(tx, &mut item, command, actor)?;
    if is_new {
        item.version = created_version;
        for change in &mut changes {
            if let ItemChange::StatusChanged { old } = change {
                *old = None;
            }
        }
        if changes.is_empty() {
            changes.push(ItemChange::Updated {
                changed: Vec::new(),
            });
        }
    }
    let ids = record(tx, &item, actor, &changes)?;
    Ok(Broadcast {
        event_id: ids.first().copied(),
        timestamp: now,
    })
}

/// The rule of each command; returns what to announce.
fn apply(
    tx: &mut Tx<'_>,
    item: &mut WorkItem,
    command: ItemCommand,
    actor: &Actor,
) -> Result<Vec<ItemChange>, StoreError> {
    let now = tx.now();
    let agent = &actor.agent;
    match command {
        ItemCommand::Update(fields) => {
            check_track(tx, &fields)?;
            let old_status = item.status;
            let changed = rules::update_item(item, fields, agent, now);
            Ok(updated_changes(changed, old_status))
        }
        ItemCommand::SetStatus(status) => {
            if item.status == status {
                return Ok(Vec::new());
            }
            let old = rules::change_status(item, status, agent, now);
            Ok(vec![ItemChange::StatusChanged { old: Some(old) }])
        }
        ItemCommand::Link(link) => {
            require_target(tx, "linked_feature_id", &link.linked_id, None)?;
            if !rules::add_link(item, link.clone(), agent, now) {
                return Ok(Vec::new());
            }
            items::insert_link(tx.conn()?, &item.id, &link, agent, now)?;
            Ok(vec![ItemChange::LinkAdded(link)])
        }
        ItemCommand::Unlink {
            linked_id,
            link_type,
        } => {
            let doomed: Vec<Link> = item
                .links
                .iter()
                .filter(|l| l.linked_id == linked_id && link_type.is_none_or(|t| t == l.link_type))
                .cloned()
                .collect();
            if doomed.is_empty() {
                return Err(
                    DomainError::NotFound(format!("link from {} to {linked_id}", item.id)).into(),
                );
            }
            let mut changes = Vec::with_capacity(doomed.len());
            for link in doomed {
                rules::remove_link(item, &link, agent, now);
                items::delete_link(tx.conn()?, &item.id, &link)?;
                changes.push(ItemChange::LinkRemoved(link));
            }
            Ok(changes)
        }
        ItemCommand::Comment(text) => {
            let comment = Comment {
                id: new_id("cmt-"),
                comment_text: text,
                author: agent.clone(),
                created_at: now,
            };
            items::insert_comment(tx.conn()?, &item.id, &comment)?;
            rules::add_comment(item, comment.clone(), agent, now);
            Ok(vec![ItemChange::CommentAdded(comment)])
        }
        ItemCommand::Delete => {
            items::delete_children(tx.conn()?, &item.id)?;
            rules::delete_item(item, agent, now);
            Ok(vec![ItemChange::Deleted])
        }
    }
}

fn updated_changes(changed: Vec<&'static str>, old_status: Status) -> Vec<ItemChange> {
    if changed.is_empty() {
        return Vec::new();
    }
    let status_changed = changed.contains(&"status");
    let mut changes = vec![ItemChange::Updated { changed }];
    if status_changed {
        changes.push(ItemChange::StatusChanged {
            old: Some(old_status),
        });
    }
    changes
}

/// The live item `id` of `kind`, or 404.
fn load_live(tx: &mut Tx<'_>, kind: Kind, id: &ResourceId) -> Result<WorkItem, StoreError> {
    items::load(tx.conn()?, id)?
        .filter(|item| item.kind == kind && !item.deleted)
        .ok_or_else(|| DomainError::NotFound(format!("{} {id}", kind.singular())).into())
}

/// A live item (of `want` when given), or a validation error on `field`.
fn require_target(
    tx: &mut Tx<'_>,
    field: &str,
    id: &ResourceId,
    want: Option<Kind>,
) -> Result<(), StoreError> {
    let found = items::load(tx.conn()?, id)?.filter(|item| !item.deleted);
    match (found, want) {
        (Some(item), Some(kind)) if item.kind != kind => Err(DomainError::validation(
            field,
            format!(
                "{id} is a {}, not a {}",
                item.kind.singular(),
                kind.singular()
            ),
        )
        .into()),
        (Some(_), _) => Ok(()),
        (None, _) => Err(DomainError::validation(field, format!("no work item {id}")).into()),
    }
}

fn check_track(tx: &mut Tx<'_>, fields: &ItemFields) -> Result<(), StoreError> {
    match &fields.track_id {
        Some(Some(track)) => require_target(tx, "track_id", track, Some(Kind::Track)),
        _ => Ok(()),
    }
}
