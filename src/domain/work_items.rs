//! Work items: features, tracks and spikes. What a change means — the new
//! state, the version bump, the fields that changed, the events it emits — is
//! decided here, in plain Rust. Storing it is `store::work_items`' job.

use serde_json::{json, Map, Value};

use super::views::{to_value, WorkItemView};
use super::{
    AgentId, ChannelName, DomainError, EventType, NewEvent, ResourceId, ResourceType, SessionId,
    Timestamp,
};

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
    pub linked_id: String,
    pub link_type: LinkType,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: String,
    pub comment_text: String,
    pub author: String,
    pub created_at: Timestamp,
}

/// One feature, track or spike, with its links and comments.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkItem {
    pub id: String,
    pub kind: Kind,
    pub title: String,
    pub status: Status,
    pub description: Option<String>,
    pub priority: Option<Priority>,
    pub tags: Vec<String>,
    pub track_id: Option<String>,
    pub findings: Option<String>,
    pub links: Vec<Link>,
    pub comments: Vec<Comment>,
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub created_by: String,
    pub updated_by: String,
    /// A tombstone: deleted, kept for `/api/sync`.
    pub deleted: bool,
}

impl WorkItem {
    fn touch(&mut self, agent: &AgentId, now: Timestamp) {
        self.version += 1;
        self.updated_at = now;
        self.updated_by = agent.as_str().to_owned();
    }
}

/// Fields a create, a PATCH or a compatibility update sets. `None`: not
/// given; `Some(None)`: cleared with `null`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemFields {
    pub title: Option<String>,
    pub status: Option<Status>,
    pub description: Option<Option<String>>,
    pub priority: Option<Priority>,
    pub tags: Option<Vec<String>>,
    pub track_id: Option<Option<String>>,
    pub findings: Option<Option<String>>,
}

const MAX_TITLE: usize = 500;
const MAX_TEXT: usize = 100_000;
const MAX_TAGS: usize = 50;
const MAX_TAG: usize = 64;

fn text(field: &str, value: &Value, max: usize) -> Result<String, DomainError> {
    let text = value
        .as_str()
        .ok_or_else(|| DomainError::validation(field, "must be a string"))?;
    if text.chars().count() > max {
        return Err(DomainError::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(text.to_owned())
}

fn optional_text(field: &str, value: &Value, max: usize) -> Result<Option<String>, DomainError> {
    if value.is_null() {
        return Ok(None);
    }
    text(field, value, max).map(Some)
}

fn word(field: &str, value: &Value) -> Result<String, DomainError> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| DomainError::validation(field, "must be a string"))
}

impl ItemFields {
    /// Parses the fields of `kind` from a JSON object. Keys in `extra` are
    /// skipped (they are the caller's, like `id`); any other key is refused.
    pub fn parse(
        kind: Kind,
        body: &Map<String, Value>,
        extra: &[&str],
    ) -> Result<Self, DomainError> {
        let mut fields = ItemFields::default();
        for (key, value) in body {
            if extra.contains(&key.as_str()) {
                continue;
            }
            if !kind.fields().contains(&key.as_str()) {
                return Err(DomainError::validation(
                    key,
                    format!(
                        "is not a field of a {}; fields: {}",
                        kind.singular(),
                        kind.fields().join(", ")
                    ),
                ));
            }
            match key.as_str() {
                "title" => {
                    let title = text("title", value, MAX_TITLE)?;
                    if title.trim().is_empty() {
                        return Err(DomainError::validation("title", "must not be empty"));
                    }
                    fields.title = Some(title);
                }
                "status" => fields.status = Some(Status::parse("status", &word("status", value)?)?),
                "description" => {
                    fields.description = Some(optional_text("description", value, MAX_TEXT)?)
                }
                "priority" => {
                    fields.priority = Some(Priority::parse("priority", &word("priority", value)?)?)
                }
                "tags" => fields.tags = Some(parse_tags(value)?),
                "track_id" => {
                    fields.track_id = Some(match value {
                        Value::Null => None,
                        other => Some(
                            ResourceId::parse("track_id", &word("track_id", other)?)?.into_string(),
                        ),
                    })
                }
                "findings" => fields.findings = Some(optional_text("findings", value, MAX_TEXT)?),
                _ => unreachable!("checked against kind.fields()"),
            }
        }
        Ok(fields)
    }

    pub fn is_empty(&self) -> bool {
        *self == ItemFields::default()
    }
}

fn parse_tags(value: &Value) -> Result<Vec<String>, DomainError> {
    let list = value
        .as_array()
        .ok_or_else(|| DomainError::validation("tags", "must be an array of strings"))?;
    if list.len() > MAX_TAGS {
        return Err(DomainError::validation(
            "tags",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    let mut tags = Vec::with_capacity(list.len());
    for tag in list {
        let tag = tag
            .as_str()
            .filter(|t| !t.trim().is_empty() && t.chars().count() <= MAX_TAG)
            .ok_or_else(|| {
                DomainError::validation(
                    "tags",
                    format!("each tag must be a string of 1 to {MAX_TAG} characters"),
                )
            })?;
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_owned());
        }
    }
    Ok(tags)
}

/// A new item. `previous` is the tombstone of a deleted item with the same
/// id: the version goes on from it, so clients that apply by version accept
/// the new item.
pub fn create_item(
    kind: Kind,
    id: String,
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
        created_by: agent.as_str().to_owned(),
        updated_by: agent.as_str().to_owned(),
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

pub fn add_comment(item: &mut WorkItem, comment: Comment, agent: &AgentId, now: Timestamp) {
    item.comments.push(comment);
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

/// The event announcing `change` (API.md §2), on the collection's channel.
pub fn item_event(
    item: &WorkItem,
    change: &ItemChange,
    agent: &AgentId,
    session: Option<&SessionId>,
) -> Result<NewEvent, DomainError> {
    let singular = item.kind.singular();
    let (event_type, payload) = match change {
        ItemChange::Created => (
            format!("{singular}_created"),
            to_value(WorkItemView::from(item))?,
        ),
        ItemChange::Updated { changed } => {
            let mut payload = to_value(WorkItemView::from(item))?;
            payload["changed"] = json!(changed);
            (format!("{singular}_updated"), payload)
        }
        ItemChange::Deleted => (
            format!("{singular}_deleted"),
            json!({ "id": item.id, "version": item.version }),
        ),
        ItemChange::StatusChanged { old } => (
            "status_changed".to_owned(),
            json!({
                "id": item.id,
                "old_status": old.map(Status::as_str),
                "new_status": item.status.as_str(),
                "version": item.version,
            }),
        ),
        ItemChange::LinkAdded(link) | ItemChange::LinkRemoved(link) => (
            if matches!(change, ItemChange::LinkAdded(_)) {
                "link_added"
            } else {
                "link_removed"
            }
            .to_owned(),
            json!({
                "id": item.id,
                "linked_feature_id": link.linked_id,
                "link_type": link.link_type.as_str(),
                "version": item.version,
            }),
        ),
        ItemChange::CommentAdded(comment) => (
            "comment_added".to_owned(),
            json!({
                "id": item.id,
                "comment_id": comment.id,
                "comment_text": comment.comment_text,
                "author": comment.author,
                "version": item.version,
            }),
        ),
    };
    Ok(NewEvent {
        channel: ChannelName::parse("channel", item.kind.collection())?,
        event_type: EventType::parse("type", &event_type)?,
        resource_type: Some(ResourceType::parse("resource_type", singular)?),
        resource_id: Some(ResourceId::parse("id", &item.id)?),
        agent_id: agent.clone(),
        session_id: session.cloned(),
        payload: serde_json::value::to_raw_value(&payload)
            .map_err(|e| DomainError::BadRequest(e.to_string()))?,
    })
}

/// `If-Match`: `"3"`, `W/"3"`, `3` or `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    Any,
    Version(i64),
}

impl IfMatch {
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        let value = value.trim();
        if value == "*" {
            return Ok(IfMatch::Any);
        }
        let bare = value.strip_prefix("W/").unwrap_or(value).trim_matches('"');
        bare.parse::<i64>()
            .map(IfMatch::Version)
            .map_err(|_| DomainError::BadRequest("If-Match must be an ETag like \"3\"".into()))
    }

    /// Fails with 412 and the current item unless the version matches.
    pub fn check(self, current: &WorkItem) -> Result<(), DomainError> {
        self.check_version(current.version, || WorkItemView::from(current))
    }

    /// Fails with 412 and `current()` (its view) in the details unless
    /// `version` matches.
    pub fn check_version<V: serde::Serialize>(
        self,
        version: i64,
        current: impl FnOnce() -> V,
    ) -> Result<(), DomainError> {
        match self {
            IfMatch::Version(v) if v != version => Err(DomainError::PreconditionFailed {
                current: to_value(current())?,
            }),
            _ => Ok(()),
        }
    }
}

/// A random id with the kind's prefix: `feat-3f9a…`.
pub fn new_id(prefix: &str) -> String {
    use rand::Rng;
    let bytes: [u8; 8] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "feat-1".into(),
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
        assert!(IfMatch::parse("*").unwrap().check(&item).is_ok());
        assert!(IfMatch::parse("\"2\"").unwrap().check(&item).is_err());
        assert!(IfMatch::parse("abc").is_err());
    }
}
