//! Work items: features, tracks and spikes. What a change means — the new
//! state, the version bump, the fields that changed, the events it emits — is
//! decided here, in plain Rust. Storing it is `store::work_items`' job.

mod fields;

pub use fields::ItemFields;

use super::{AgentId, DomainError, ResourceId, Timestamp};

/// Which collection an item belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Feature,
    Track,
    Spike,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Feature, Kind::Track, Kind::Spike];

    /// `features` → `Feature`.
    pub fn from_collection(collection: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.collection() == collection)
    }

    pub fn from_singular(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.singular() == name)
    }

    /// The collection's name: also its channel.
    pub fn collection(self) -> &'static str {
        match self {
            Kind::Feature => "features",
            Kind::Track => "tracks",
            Kind::Spike => "spikes",
        }
    }

    pub fn singular(self) -> &'static str {
        match self {
            Kind::Feature => "feature",
            Kind::Track => "track",
            Kind::Spike => "spike",
        }
    }

    /// Prefix of the ids the server makes.
    pub fn id_prefix(self) -> &'static str {
        match self {
            Kind::Feature => "feat-",
            Kind::Track => "trk-",
            Kind::Spike => "spk-",
        }
    }

    /// Tracks have no priority, tags or track; spikes add findings.
    fn fields(self) -> &'static [&'static str] {
        match self {
            Kind::Feature => &[
                "title",
                "status",
                "description",
                "priority",
                "tags",
                "track_id",
            ],
            Kind::Track => &["title", "status", "description"],
            Kind::Spike => &[
                "title",
                "status",
                "description",
                "priority",
                "tags",
                "track_id",
                "findings",
            ],
        }
    }
}

macro_rules! word_enum {
    ($(#[$doc:meta])* $name:ident as $schema:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            pub fn parse(field: &str, value: &str) -> Result<Self, DomainError> {
                match value {
                    $($text => Ok($name::$variant),)+
                    _ => Err(DomainError::validation(
                        field,
                        format!("must be one of {}", Self::NAMES.join(", ")),
                    )),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::parse("value", &text)
                    .map_err(|_| serde::de::Error::unknown_variant(&text, Self::NAMES))
            }
        }

        /// A string, one of `NAMES`.
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some(Self::NAMES.iter().copied()))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($schema)
            }
        }
    };
}

word_enum!(
    /// The status of a work item.
    Status as "WorkItemStatus" {
        Todo = "todo",
        InProgress = "in_progress",
        Blocked = "blocked",
        Done = "done",
        Cancelled = "cancelled",
    }
);

word_enum!(
    /// The priority of a feature or spike.
    Priority as "Priority" {
    Low = "low",
    Medium = "medium",
    High = "high",
    Critical = "critical",
});

word_enum!(
    /// How two work items relate.
    LinkType as "LinkType" {
    DependsOn = "depends_on",
    Blocks = "blocks",
    BlockedBy = "blocked_by",
    RelatesTo = "relates_to",
    PartOf = "part_of",
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub linked_id: ResourceId,
    pub link_type: LinkType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: ResourceId,
    pub comment_text: String,
    pub author: AgentId,
    pub created_at: Timestamp,
}

/// One feature, track or spike, with its links and comments.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    pub id: ResourceId,
    pub kind: Kind,
    pub title: String,
    pub status: Status,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub tags: Vec<String>,
    pub track_id: Option<ResourceId>,
    pub findings: Option<String>,
    pub links: Vec<Link>,
    pub comments: Vec<Comment>,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: AgentId,
    pub updated_by: AgentId,
    /// A tombstone: deleted, kept for `/api/sync`.
    pub deleted: bool,
}

impl WorkItem {
    fn touch(&mut self, agent: &AgentId, now: Timestamp) {
        self.version += 1;
        self.updated_at = now;
        self.updated_by = agent.clone();
    }
}

/// A new item. `previous` is the tombstone of a deleted item with the same
/// id: the version goes on from it, so clients that apply by version accept
/// the new item.
pub fn create_item(
    kind: Kind,
    id: ResourceId,
    fields: ItemFields,
    previous: Option<&WorkItem>,
    agent: &AgentId,
    now: Timestamp,
) -> Result<WorkItem, DomainError> {
    let title = fields
        .title
        .ok_or_else(|| DomainError::validation("title", "is required"))?;
    Ok(WorkItem {
        id,
        kind,
        title,
        status: fields.status.unwrap_or(Status::Todo),
        description: fields.description.flatten(),
        priority: (kind != Kind::Track).then(|| fields.priority.unwrap_or(Priority::Medium)),
        tags: fields.tags.unwrap_or_default(),
        track_id: fields.track_id.flatten(),
        findings: fields.findings.flatten(),
        links: Vec::new(),
        comments: Vec::new(),
        version: previous.map_or(1, |p| p.version + 1),
        created_at: now,
        updated_at: now,
        created_by: agent.clone(),
        updated_by: agent.clone(),
        deleted: false,
    })
}

/// Applies `fields`; returns the names of the fields whose value changed.
/// The version moves only when something changed.
pub fn update_item(
    item: &mut WorkItem,
    fields: ItemFields,
    agent: &AgentId,
    now: Timestamp,
) -> Vec<&'static str> {
    let mut changed = Vec::new();
    fn set<T: PartialEq>(
        slot: &mut T,
        value: Option<T>,
        name: &'static str,
        changed: &mut Vec<&'static str>,
    ) {
        if let Some(value) = value {
            if *slot != value {
                *slot = value;
                changed.push(name);
            }
        }
    }
    set(&mut item.title, fields.title, "title", &mut changed);
    set(&mut item.status, fields.status, "status", &mut changed);
    set(
        &mut item.description,
        fields.description,
        "description",
        &mut changed,
    );
    set(
        &mut item.priority,
        fields.priority.map(Some),
        "priority",
        &mut changed,
    );
    set(&mut item.tags, fields.tags, "tags", &mut changed);
    set(
        &mut item.track_id,
        fields.track_id,
        "track_id",
        &mut changed,
    );
    set(
        &mut item.findings,
        fields.findings,
        "findings",
        &mut changed,
    );
    if !changed.is_empty() {
        item.touch(agent, now);
    }
    changed
}

/// Sets the status; returns the old one. Bumps the version even when the
/// status is unchanged: a status call always emits `status_changed`.
pub fn change_status(
    item: &mut WorkItem,
    status: Status,
    agent: &AgentId,
    now: Timestamp,
) -> Status {
    let old = item.status;
    item.status = status;
    item.touch(agent, now);
    old
}

/// Adds a link unless it exists; returns whether it was added.
pub fn add_link(item: &mut WorkItem, link: Link, agent: &AgentId, now: Timestamp) -> bool {
    if item.links.contains(&link) {
        return false;
    }
    item.links.push(link);
    item.touch(agent, now);
    true
}

/// Removes a link; returns whether it existed.
pub fn remove_link(item: &mut WorkItem, link: &Link, agent: &AgentId, now: Timestamp) -> bool {
    let before = item.links.len();
    item.links.retain(|l| l != link);
    if item.links.len() == before {
        return false;
    }
    item.touch(agent, now);
    true
}

/// Adds a comment. Comments are ordered by time, then id — the order they
/// are read back in — so an answer, an event and a later read agree even
/// for comments of one group commit (which share their time).
pub fn add_comment(item: &mut WorkItem, comment: Comment, agent: &AgentId, now: Timestamp) {
    let at = item.comments.partition_point(|c| {
        (c.created_at, c.id.as_str()) <= (comment.created_at, comment.id.as_str())
    });
    item.comments.insert(at, comment);
    item.touch(agent, now);
}

/// Marks the item deleted: a tombstone with the next version.
pub fn delete_item(item: &mut WorkItem, agent: &AgentId, now: Timestamp) {
    item.deleted = true;
    item.links.clear();
    item.comments.clear();
    item.touch(agent, now);
}

/// What happened to an item, to be announced.
#[derive(Debug, Clone)]
pub enum ItemChange {
    Created,
    Updated { changed: Vec<&'static str> },
    Deleted,
    StatusChanged { old: Option<Status> },
    LinkAdded(Link),
    LinkRemoved(Link),
    CommentAdded(Comment),
}

/// The most characters a comment may have.
pub const MAX_COMMENT: usize = 100_000;

/// A comment's text: not blank, at most `MAX_COMMENT` characters.
pub fn comment_text(text: Option<String>) -> Result<String, DomainError> {
    let text = text.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        DomainError::validation("comment_text", "is required and must not be empty")
    })?;
    if text.chars().count() > MAX_COMMENT {
        return Err(DomainError::validation(
            "comment_text",
            format!("must be at most {MAX_COMMENT} characters"),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::precondition::IfMatch;
    use serde_json::json;

    fn at(second: u32) -> Timestamp {
        Timestamp::parse("t", &format!("2026-01-01T00:00:{second:02}Z")).unwrap()
    }

    fn agent() -> AgentId {
        AgentId::parse("a", "claude-1").unwrap()
    }

    fn feature() -> WorkItem {
        let fields = ItemFields {
            title: Some("Login".into()),
            ..Default::default()
        };
        create_item(
            Kind::Feature,
            ResourceId::parse("id", "feat-1").unwrap(),
            fields,
            None,
            &agent(),
            at(0),
        )
        .unwrap()
    }

    #[test]
    fn a_patch_that_changes_nothing_keeps_the_version() {
        let mut item = feature();
        let fields = ItemFields {
            title: Some("Login".into()),
            status: Some(Status::Todo),
            ..Default::default()
        };
        assert!(update_item(&mut item, fields, &agent(), at(1)).is_empty());
        assert_eq!(item.version, 1);
        let fields = ItemFields {
            status: Some(Status::Done),
            description: Some(Some("x".into())),
            ..Default::default()
        };
        assert_eq!(
            update_item(&mut item, fields, &agent(), at(1)),
            vec!["status", "description"]
        );
        assert_eq!(item.version, 2);
        assert_eq!(item.updated_at, at(1));
    }

    #[test]
    fn fields_are_checked_per_kind() {
        let body = json!({"title": "T", "priority": "high"});
        let body = body.as_object().unwrap();
        assert!(ItemFields::parse(Kind::Feature, body, &[]).is_ok());
        let err = ItemFields::parse(Kind::Track, body, &[]).unwrap_err();
        assert!(matches!(err, DomainError::Validation { field, .. } if field == "priority"));
        let bad = json!({"status": "finished"});
        let err = ItemFields::parse(Kind::Spike, bad.as_object().unwrap(), &[]).unwrap_err();
        assert!(matches!(err, DomainError::Validation { field, .. } if field == "status"));
    }

    #[test]
    fn if_match_accepts_etags_and_detects_stale_versions() {
        let item = feature();
        assert_eq!(IfMatch::parse("\"1\"").unwrap(), IfMatch::Version(1));
        assert_eq!(IfMatch::parse("W/\"1\"").unwrap(), IfMatch::Version(1));
        assert!(IfMatch::parse("*")
            .unwrap()
            .check_version(item.version, || 0)
            .is_ok());
        assert!(IfMatch::parse("\"2\"")
            .unwrap()
            .check_version(item.version, || 0)
            .is_err());
        assert!(IfMatch::parse("abc").is_err());
    }
}
