//! The arguments of each tool, as the agent sends them: the JSON Schema an
//! agent sees is derived from these types and their doc comments.

use rmcp::schemars;
use serde::Deserialize;
use serde_json::Value;

use crate::mcp::api::segment;

/// A work-item collection.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    #[serde(alias = "features")]
    Feature,
    #[serde(alias = "tracks")]
    Track,
    #[serde(alias = "spikes")]
    Spike,
}

impl Kind {
    pub(super) fn collection(self) -> &'static str {
        match self {
            Kind::Feature => "features",
            Kind::Track => "tracks",
            Kind::Spike => "spikes",
        }
    }

    pub(super) fn path(self, id: Option<&str>, rest: &str) -> String {
        match id {
            Some(id) => format!("/api/{}/{}{rest}", self.collection(), segment(id)),
            None => format!("/api/{}{rest}", self.collection()),
        }
    }
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ListWorkItems {
    /// `feature`, `track` or `spike`.
    pub kind: Kind,
    /// Only items with this status (`todo`, `in_progress`, `blocked`, `done`, `cancelled`).
    pub status: Option<String>,
    /// Only features of this track.
    pub track_id: Option<String>,
    /// Only items with this tag.
    pub tag: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ItemRef {
    /// `feature`, `track` or `spike`.
    pub kind: Kind,
    /// The item's id.
    pub id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateWorkItem {
    /// `feature`, `track` or `spike`.
    pub kind: Kind,
    /// An id of your choice (1–64 of `A-Za-z0-9._:-`); made by the server if absent.
    pub id: Option<String>,
    pub title: String,
    /// `todo` (default), `in_progress`, `blocked`, `done` or `cancelled`.
    pub status: Option<String>,
    pub description: Option<String>,
    /// Features: `low`, `medium`, `high` or `critical`.
    pub priority: Option<String>,
    /// Features: tags.
    pub tags: Option<Vec<String>>,
    /// Features: the track this feature belongs to.
    pub track_id: Option<String>,
    /// Spikes: what was found.
    pub findings: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UpdateWorkItem {
    /// `feature`, `track` or `spike`.
    pub kind: Kind,
    pub id: String,
    pub title: Option<String>,
    pub status: Option<String>,
    pub description: Option<String>,
    pub priority: Option<String>,
    pub tags: Option<Vec<String>>,
    pub track_id: Option<String>,
    pub findings: Option<String>,
    /// The version you read: the update is refused (`precondition_failed`,
    /// with the current item) if someone changed it since.
    pub expected_version: Option<i64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SetStatus {
    /// `feature`, `track` or `spike`.
    pub kind: Kind,
    pub id: String,
    /// `todo`, `in_progress`, `blocked`, `done` or `cancelled`.
    pub status: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LinkWorkItems {
    /// `feature`, `track` or `spike`: the kind of `id`.
    pub kind: Kind,
    /// The item the link starts from.
    pub id: String,
    /// The item it points to (a feature, track or spike).
    pub linked_id: String,
    /// `depends_on`, `blocks`, `blocked_by`, `relates_to` (default) or `part_of`.
    pub link_type: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Comment {
    /// `feature`, `track` or `spike`.
    pub kind: Kind,
    pub id: String,
    /// The comment; its author is this agent.
    pub text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct ReadFile {
    /// The file's stable id.
    pub stable_id: String,
    /// An earlier version's number; the current content if absent.
    pub version: Option<i64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateFile {
    /// An id of your choice; made by the server if absent.
    pub stable_id: Option<String>,
    pub name: String,
    pub content: String,
    pub label: Option<String>,
    /// The stable id of the file this one was derived from.
    pub derived_from: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct LockFile {
    pub stable_id: String,
    /// The lease, 1–3600 s (default 60). This process renews it at half
    /// term until `release_file` or until the process ends.
    #[schemars(range(min = 1, max = 3600))]
    pub ttl_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct FileRef {
    pub stable_id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct SaveFile {
    pub stable_id: String,
    /// The new content (the previous one is kept as a numbered version).
    pub content: String,
    /// The version you read: refused (`precondition_failed`) if it moved on.
    pub expected_version: Option<i64>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct Publish {
    /// A channel of your own (1–200 of `A-Za-z0-9._:/-`), e.g. `global` or `agents/review`.
    pub channel: String,
    /// The event type (1–64 of `A-Za-z0-9_.-`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// Any JSON.
    pub data: Option<Value>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct WaitForEvents {
    /// How long to wait when there is nothing new yet, 0–60 s (default 30).
    pub timeout_seconds: Option<u64>,
    /// Start after this event id instead of this session's cursor.
    pub since: Option<i64>,
    /// Comma-separated channel patterns (`features,files`, `conversation:*`); all if absent.
    /// Events on other channels are passed over: the cursor moves past them.
    pub channels: Option<String>,
    /// Also return presence events (sessions joining and leaving); default false.
    pub include_presence: Option<bool>,
    /// At most this many events, 1–500 (default 100); `more` says if others wait.
    pub limit: Option<usize>,
}
