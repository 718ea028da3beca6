//! The wire form of every resource: what REST answers and event payloads
//! carry. Each view derives `Serialize` (the JSON) and `ToSchema` (its
//! OpenAPI schema, so the document describes the very type that is sent) and
//! is built `From` a domain type. Nothing else in the crate writes a
//! resource's JSON by hand.

pub mod announce;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::conversations::{Conversation, Message, MessageStatus, Role, Usage};
use crate::domain::files::SharedFile;
use crate::domain::work_items::{Comment, Kind, Link, LinkType, Priority, Status, WorkItem};
use crate::domain::{AgentId, DomainError, ResourceId, SessionId, Timestamp};

/// A view as a JSON value (for error details and event payloads).
pub fn to_value<V: Serialize>(view: V) -> Result<Value, DomainError> {
    serde_json::to_value(view).map_err(|e| DomainError::BadRequest(e.to_string()))
}

/// A view as an event's payload, serialised once.
pub fn to_payload<V: Serialize>(view: V) -> Result<Box<RawValue>, DomainError> {
    serde_json::value::to_raw_value(&view).map_err(|e| DomainError::BadRequest(e.to_string()))
}

/// A link to another work item (of any collection).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Link)]
pub struct LinkView {
    #[schema(value_type = String)]
    pub linked_feature_id: ResourceId,
    pub link_type: LinkType,
}

impl From<&Link> for LinkView {
    fn from(link: &Link) -> Self {
        LinkView {
            linked_feature_id: link.linked_id.clone(),
            link_type: link.link_type,
        }
    }
}

/// A comment on a work item.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Comment)]
pub struct CommentView {
    /// `cmt-…`
    #[schema(value_type = String)]
    pub id: ResourceId,
    pub comment_text: String,
    /// The agent that wrote it.
    #[schema(value_type = String)]
    pub author: AgentId,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

impl From<&Comment> for CommentView {
    fn from(comment: &Comment) -> Self {
        CommentView {
            id: comment.id.clone(),
            comment_text: comment.comment_text.clone(),
            author: comment.author.clone(),
            created_at: comment.created_at,
        }
    }
}

/// The three work-item views share every field but the kind's own ones
/// (tracks have no priority, tags or track; spikes add findings).
macro_rules! work_item_view {
    (
        $(#[$doc:meta])* $name:ident as $schema:ident {
            $($(#[$field_doc:meta])* $field:ident: $ty:ty = |$item:ident| $value:expr),* $(,)?
        }
    ) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, ToSchema)]
        #[schema(as = $schema)]
        pub struct $name {
            #[schema(value_type = String)]
            pub id: ResourceId,
            pub title: String,
            pub status: Status,
            #[schema(required = true)]
            pub description: Option<String>,
            $($(#[$field_doc])* pub $field: $ty,)*
            pub links: Vec<LinkView>,
            pub comments: Vec<CommentView>,
            /// 1 on create, +1 on every change.
            pub version: i64,
            #[schema(value_type = String, format = DateTime)]
            pub created_at: Timestamp,
            #[schema(value_type = String, format = DateTime)]
            pub updated_at: Timestamp,
            #[schema(value_type = String)]
            pub created_by: AgentId,
            #[schema(value_type = String)]
            pub updated_by: AgentId,
        }

        impl From<&WorkItem> for $name {
            fn from(item: &WorkItem) -> Self {
                $(let $field = { let $item = item; $value };)*
                $name {
                    id: item.id.clone(),
                    title: item.title.clone(),
                    status: item.status,
                    description: item.description.clone(),
                    $($field,)*
                    links: item.links.iter().map(LinkView::from).collect(),
                    comments: item.comments.iter().map(CommentView::from).collect(),
                    version: item.version,
                    created_at: item.created_at,
                    updated_at: item.updated_at,
                    created_by: item.created_by.clone(),
                    updated_by: item.updated_by.clone(),
                }
            }
        }
    };
}

work_item_view!(
    /// A feature. The answer carries `ETag: "<version>"`.
    FeatureView as Feature {
        #[schema(required = true)]
        priority: Option<Priority> = |item| item.priority,
        tags: Vec<String> = |item| item.tags.clone(),
        /// The track this feature belongs to.
        #[schema(required = true, value_type = Option<String>)]
        track_id: Option<ResourceId> = |item| item.track_id.clone(),
    }
);

work_item_view!(
    /// A track. The answer carries `ETag: "<version>"`.
    TrackView as Track {}
);

work_item_view!(
    /// A spike: a feature with `findings`. The answer carries `ETag: "<version>"`.
    SpikeView as Spike {
        #[schema(required = true)]
        priority: Option<Priority> = |item| item.priority,
        tags: Vec<String> = |item| item.tags.clone(),
        /// The track this spike belongs to.
        #[schema(required = true, value_type = Option<String>)]
        track_id: Option<ResourceId> = |item| item.track_id.clone(),
        #[schema(required = true)]
        findings: Option<String> = |item| item.findings.clone(),
    }
);

/// A feature, track or spike, as its kind shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum WorkItemView {
    Feature(FeatureView),
    Track(TrackView),
    Spike(SpikeView),
}

impl WorkItemView {
    pub fn version(&self) -> i64 {
        match self {
            WorkItemView::Feature(v) => v.version,
            WorkItemView::Track(v) => v.version,
            WorkItemView::Spike(v) => v.version,
        }
    }
}

impl From<&WorkItem> for WorkItemView {
    fn from(item: &WorkItem) -> Self {
        match item.kind {
            Kind::Feature => WorkItemView::Feature(item.into()),
            Kind::Track => WorkItemView::Track(item.into()),
            Kind::Spike => WorkItemView::Spike(item.into()),
        }
    }
}

/// The answer to a delete: the resource is a tombstone now.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = DeletedResource)]
pub struct DeletedView {
    #[schema(value_type = String)]
    pub id: ResourceId,
    /// The tombstone's version.
    pub version: i64,
    /// Always `true`.
    pub deleted: bool,
}

impl DeletedView {
    pub fn new(id: &ResourceId, version: i64) -> Self {
        DeletedView {
            id: id.clone(),
            version,
            deleted: true,
        }
    }
}

/// A file's metadata and lock state, never its content. Answers carry
/// `ETag: "<version>"`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = FileMetadata)]
pub struct FileMetadataView {
    #[schema(value_type = String)]
    pub stable_id: ResourceId,
    pub name: String,
    #[schema(required = true)]
    pub label: Option<String>,
    /// The file this one was made from.
    #[schema(required = true, value_type = Option<String>)]
    pub derived_from: Option<ResourceId>,
    /// The content's size in bytes.
    pub size: u64,
    pub version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[schema(value_type = String)]
    pub created_by: AgentId,
    #[schema(value_type = String)]
    pub updated_by: AgentId,
    /// The agent holding the lock; `null` when unlocked (or its lease ran out).
    #[schema(required = true, value_type = Option<String>)]
    pub locked_by: Option<AgentId>,
    /// The session holding the lock.
    #[schema(required = true, value_type = Option<String>)]
    pub lock_session_id: Option<SessionId>,
    /// When the lock's lease runs out.
    #[schema(required = true, value_type = Option<String>, format = DateTime)]
    pub lock_expires_at: Option<Timestamp>,
}

impl FileMetadataView {
    /// The file as seen at `now`: a lease that ran out shows as no lock.
    pub fn at(file: &SharedFile, now: Timestamp) -> Self {
        let lock = file.active_lock(now);
        FileMetadataView {
            stable_id: file.stable_id.clone(),
            name: file.name.clone(),
            label: file.label.clone(),
            derived_from: file.derived_from.clone(),
            size: file.content.len() as u64,
            version: file.version,
            created_at: file.created_at,
            updated_at: file.updated_at,
            created_by: file.created_by.clone(),
            updated_by: file.updated_by.clone(),
            locked_by: lock.map(|l| l.agent_id.clone()),
            lock_session_id: lock.map(|l| l.session_id.clone()),
            lock_expires_at: lock.map(|l| l.expires_at),
        }
    }
}

/// A file's metadata, lock state and content.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = FileWithContent)]
pub struct FileWithContentView {
    #[serde(flatten)]
    pub metadata: FileMetadataView,
    /// UTF-8 text.
    pub content: String,
}

impl FileWithContentView {
    pub fn at(file: &SharedFile, now: Timestamp) -> Self {
        FileWithContentView {
            metadata: FileMetadataView::at(file, now),
            content: file.content.clone(),
        }
    }
}

/// A file's lock.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = FileLock)]
pub struct LockView {
    #[schema(value_type = String)]
    pub stable_id: ResourceId,
    /// The agent holding it.
    #[schema(value_type = String)]
    pub locked_by: AgentId,
    /// The session holding it.
    #[schema(value_type = String)]
    pub session_id: SessionId,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

impl LockView {
    /// The file's lease as stored, if it has one.
    pub fn of(file: &SharedFile) -> Option<Self> {
        file.lock.as_ref().map(|lock| LockView {
            stable_id: file.stable_id.clone(),
            locked_by: lock.agent_id.clone(),
            session_id: lock.session_id.clone(),
            expires_at: lock.expires_at,
        })
    }
}

/// A conversation's summary. Answers carry `ETag: "<version>"`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = ConversationSummary)]
pub struct ConversationView {
    #[schema(value_type = String)]
    pub id: ResourceId,
    pub title: String,
    pub message_count: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    pub version: i64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String)]
    pub created_by: AgentId,
    #[schema(value_type = String)]
    pub updated_by: AgentId,
}

impl From<&Conversation> for ConversationView {
    fn from(c: &Conversation) -> Self {
        ConversationView {
            id: c.id.clone(),
            title: c.title.clone(),
            message_count: c.message_count,
            input_tokens: c.input_tokens,
            output_tokens: c.output_tokens,
            updated_at: c.updated_at,
            version: c.version,
            created_at: c.created_at,
            created_by: c.created_by.clone(),
            updated_by: c.updated_by.clone(),
        }
    }
}

/// A message; a streaming one has the text received so far.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = Message)]
pub struct MessageView {
    #[schema(value_type = String)]
    pub id: ResourceId,
    #[schema(value_type = String)]
    pub conversation_id: ResourceId,
    pub role: Role,
    pub content: String,
    pub status: MessageStatus,
    /// `null` until the message is complete (or created complete without usage).
    #[schema(required = true)]
    pub usage: Option<Usage>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: Timestamp,
    #[schema(value_type = String)]
    pub created_by: AgentId,
}

impl From<&Message> for MessageView {
    fn from(m: &Message) -> Self {
        MessageView {
            id: m.id.clone(),
            conversation_id: m.conversation_id.clone(),
            role: m.role,
            content: m.content.clone(),
            status: m.status,
            usage: m.usage,
            created_at: m.created_at,
            updated_at: m.updated_at,
            created_by: m.created_by.clone(),
        }
    }
}

/// The answer to a delta: where the text went.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = DeltaResult)]
pub struct DeltaView {
    #[schema(value_type = String)]
    pub message_id: ResourceId,
    /// Where the text was appended, in UTF-16 code units.
    pub offset: i64,
    /// The message's length after it, in UTF-16 code units.
    pub length: i64,
}
