//! The tools an agent sees. Each one is one or two REST calls; its result
//! carries the API's JSON as structured content and a line of text for the
//! model. An API error is a tool error (`isError`) with the API's code,
//! message and details, e.g. `lock_held: notes is locked by alice until …`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::{tool, tool_router, ErrorData};
use serde_json::{json, Map, Value};
use tokio::sync::Mutex;

use super::api::{segment, Api, ApiFailure, Call};
use super::feed::{Feed, WaitFor};

mod arguments;
mod handler;
mod leases;
use arguments::{
    Comment, CreateFile, CreateWorkItem, FileRef, ItemRef, Kind, LinkWorkItems, ListWorkItems,
    LockFile, Publish, ReadFile, SaveFile, SetStatus, UpdateWorkItem, WaitForEvents,
};

/// The longest `wait_for_events` may wait.
pub const MAX_WAIT_SECONDS: u64 = 60;

/// The MCP server of one agent session.
#[derive(Clone)]
pub struct Tools {
    pub(super) api: Api,
    feed: Arc<Feed>,
    leases: Arc<Mutex<HashMap<String, tokio::task::JoinHandle<()>>>>,
    tool_router: ToolRouter<Self>,
}

/// A successful result: the JSON and a line of text.
pub(super) fn done(text: impl Into<String>, value: Value) -> CallToolResult {
    let mut result = CallToolResult::success(vec![ContentBlock::text(format!(
        "{}\n{}",
        text.into(),
        value
    ))]);
    result.structured_content = Some(value);
    result
}

/// A tool error carrying the API's error.
fn failed(failure: ApiFailure) -> CallToolResult {
    let mut text = failure.to_string();
    if failure.status != 0 {
        text.push_str(&format!(" (HTTP {})", failure.status));
    }
    if failure.details.as_object().is_some_and(|d| !d.is_empty()) {
        text.push_str(&format!("\ndetails: {}", failure.details));
    }
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content = Some(json!({ "error": failure.to_json() }));
    result
}

pub(super) type ToolResult = Result<CallToolResult, ErrorData>;

/// `Ok(done(..))` or `Ok(failed(..))`: a tool never fails at the protocol level.
pub(super) fn answer(result: Result<CallToolResult, ApiFailure>) -> ToolResult {
    Ok(result.unwrap_or_else(failed))
}

/// A JSON object of the fields that are set.
fn fields(pairs: Vec<(&str, Option<Value>)>) -> Value {
    let map: Map<String, Value> = pairs
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    Value::Object(map)
}

fn describe_item(kind: Kind, item: &Value) -> String {
    let kind = format!("{kind:?}").to_lowercase();
    format!(
        "{kind} {} \"{}\" is {} (version {})",
        item["id"].as_str().unwrap_or("?"),
        item["title"].as_str().unwrap_or(""),
        item["status"].as_str().unwrap_or("?"),
        item["version"]
    )
}

#[tool_router]
impl Tools {
    pub fn new(api: Api, feed: Feed) -> Self {
        Tools {
            api,
            feed: Arc::new(feed),
            leases: Arc::new(Mutex::new(HashMap::new())),
            tool_router: Self::tool_router() + Self::subscription_router(),
        }
    }

    #[tool(
        description = "List work items of one kind (feature, track or spike), optionally filtered by status, track or tag. Returns every item with its id, title, status, links, comments and version."
    )]
    async fn list_work_items(&self, Parameters(p): Parameters<ListWorkItems>) -> ToolResult {
        answer(
            async {
                let call = Call::get(p.kind.path(None, ""))
                    .query("status", p.status)
                    .query("track_id", p.track_id)
                    .query("tag", p.tag);
                let body = self.api.send(call).await?.body;
                let items = body[p.kind.collection()]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let lines: Vec<String> = items.iter().map(|i| describe_item(p.kind, i)).collect();
                Ok(done(
                    format!(
                        "{} {}:\n{}",
                        items.len(),
                        p.kind.collection(),
                        lines.join("\n")
                    ),
                    json!({ "items": items }),
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Get one work item (feature, track or spike) by id, with its links, comments and version."
    )]
    async fn get_work_item(&self, Parameters(p): Parameters<ItemRef>) -> ToolResult {
        answer(
            async {
                let item = self
                    .api
                    .send(Call::get(p.kind.path(Some(&p.id), "")))
                    .await?
                    .body;
                Ok(done(describe_item(p.kind, &item), item))
            }
            .await,
        )
    }

    #[tool(
        description = "Create a work item (feature, track or spike). Every other session sees it at once (event feature_created, track_created or spike_created)."
    )]
    async fn create_work_item(&self, Parameters(p): Parameters<CreateWorkItem>) -> ToolResult {
        answer(
            async {
                let body = fields(vec![
                    ("id", p.id.map(Value::from)),
                    ("title", Some(Value::from(p.title))),
                    ("status", p.status.map(Value::from)),
                    ("description", p.description.map(Value::from)),
                    ("priority", p.priority.map(Value::from)),
                    ("tags", p.tags.map(Value::from)),
                    ("track_id", p.track_id.map(Value::from)),
                    ("findings", p.findings.map(Value::from)),
                ]);
                let call = Call::new(Method::POST, p.kind.path(None, "")).body(body);
                let item = self.api.send(call).await?.body;
                Ok(done(
                    format!("created {}", describe_item(p.kind, &item)),
                    item,
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Change fields of a work item (title, status, description, priority, tags, track_id, findings). Pass expected_version (the version you read) to refuse the change if someone else changed the item since."
    )]
    async fn update_work_item(&self, Parameters(p): Parameters<UpdateWorkItem>) -> ToolResult {
        answer(
            async {
                let body = fields(vec![
                    ("title", p.title.map(Value::from)),
                    ("status", p.status.map(Value::from)),
                    ("description", p.description.map(Value::from)),
                    ("priority", p.priority.map(Value::from)),
                    ("tags", p.tags.map(Value::from)),
                    ("track_id", p.track_id.map(Value::from)),
                    ("findings", p.findings.map(Value::from)),
                ]);
                let call = Call::new(Method::PATCH, p.kind.path(Some(&p.id), ""))
                    .body(body)
                    .if_match(p.expected_version);
                let item = self.api.send(call).await?.body;
                Ok(done(
                    format!("updated {}", describe_item(p.kind, &item)),
                    item,
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Set a work item's status: todo, in_progress (claim it), blocked, done or cancelled. Others see status_changed."
    )]
    async fn set_status(&self, Parameters(p): Parameters<SetStatus>) -> ToolResult {
        answer(
            async {
                let call = Call::new(Method::POST, p.kind.path(Some(&p.id), "/status"))
                    .body(json!({ "new_status": p.status }));
                let item = self.api.send(call).await?.body;
                Ok(done(describe_item(p.kind, &item), item))
            }
            .await,
        )
    }

    #[tool(
        description = "Link a work item to another (depends_on, blocks, blocked_by, relates_to, part_of). The linked item must exist (any kind)."
    )]
    async fn link_work_items(&self, Parameters(p): Parameters<LinkWorkItems>) -> ToolResult {
        answer(
            async {
                let link_type = p.link_type.unwrap_or_else(|| "relates_to".into());
                let call = Call::new(Method::POST, p.kind.path(Some(&p.id), "/links"))
                    .body(json!({ "linked_feature_id": p.linked_id, "link_type": link_type }));
                let item = self.api.send(call).await?.body;
                Ok(done(format!("{} {link_type} {}", p.id, p.linked_id), item))
            }
            .await,
        )
    }

    #[tool(description = "Remove a link between two work items.")]
    async fn unlink_work_items(&self, Parameters(p): Parameters<LinkWorkItems>) -> ToolResult {
        answer(
            async {
                let rest = format!("/links/{}", segment(&p.linked_id));
                let call = Call::new(Method::DELETE, p.kind.path(Some(&p.id), &rest))
                    .query("link_type", p.link_type);
                let item = self.api.send(call).await?.body;
                Ok(done(
                    format!("{} no longer linked to {}", p.id, p.linked_id),
                    item,
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Comment on a work item; the author is this agent. Others see comment_added."
    )]
    async fn comment(&self, Parameters(p): Parameters<Comment>) -> ToolResult {
        answer(
            async {
                let call = Call::new(Method::POST, p.kind.path(Some(&p.id), "/comments"))
                    .body(json!({ "comment_text": p.text }));
                let item = self.api.send(call).await?.body;
                Ok(done(format!("commented on {}", p.id), item))
            }
            .await,
        )
    }

    #[tool(
        description = "Delete a work item (features, tracks or spikes); others see feature_deleted, track_deleted or spike_deleted."
    )]
    async fn delete_work_item(&self, Parameters(p): Parameters<ItemRef>) -> ToolResult {
        answer(
            async {
                let body = self
                    .api
                    .send(Call::new(Method::DELETE, p.kind.path(Some(&p.id), "")))
                    .await?
                    .body;
                Ok(done(format!("deleted {}", p.id), body))
            }
            .await,
        )
    }

    #[tool(
        description = "List the shared files (metadata, no content) with who holds each lock (locked_by, lock_session_id, lock_expires_at)."
    )]
    async fn list_files(&self) -> ToolResult {
        answer(
            async {
                let body = self.api.send(Call::get("/api/files")).await?.body;
                let files = body["files"].as_array().cloned().unwrap_or_default();
                let lines: Vec<String> = files
                    .iter()
                    .map(|f| {
                        let lock = match f["locked_by"].as_str() {
                            Some(holder) => {
                                format!("locked by {holder} until {}", f["lock_expires_at"])
                            }
                            None => "free".into(),
                        };
                        format!(
                            "{} ({}) version {}, {lock}",
                            f["stable_id"].as_str().unwrap_or("?"),
                            f["name"].as_str().unwrap_or(""),
                            f["version"]
                        )
                    })
                    .collect();
                Ok(done(
                    format!("{} files:\n{}", files.len(), lines.join("\n")),
                    json!({ "files": files }),
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Read a file's content and metadata (or an earlier version's content with `version`)."
    )]
    async fn read_file(&self, Parameters(p): Parameters<ReadFile>) -> ToolResult {
        answer(
            async {
                let path = match p.version {
                    Some(n) => format!("/api/files/{}/versions/{n}", segment(&p.stable_id)),
                    None => format!("/api/files/{}", segment(&p.stable_id)),
                };
                let file = self.api.send(Call::get(path)).await?.body;
                Ok(done(
                    format!(
                        "{} version {}:\n{}",
                        p.stable_id,
                        file["version"],
                        file["content"].as_str().unwrap_or("")
                    ),
                    file,
                ))
            }
            .await,
        )
    }

    #[tool(description = "Create a shared file with its first content. Others see file_created.")]
    async fn create_file(&self, Parameters(p): Parameters<CreateFile>) -> ToolResult {
        answer(
            async {
                let body = fields(vec![
                    ("stable_id", p.stable_id.map(Value::from)),
                    ("name", Some(Value::from(p.name))),
                    ("content", Some(Value::from(p.content))),
                    ("label", p.label.map(Value::from)),
                    ("derived_from", p.derived_from.map(Value::from)),
                ]);
                let file = self
                    .api
                    .send(Call::new(Method::POST, "/api/files").body(body))
                    .await?
                    .body;
                Ok(done(
                    format!(
                        "created {} (version {})",
                        file["stable_id"].as_str().unwrap_or("?"),
                        file["version"]
                    ),
                    file,
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Lock a file for this session before saving it. The lease (ttl_seconds, default 60) is renewed by this process at half term until release_file or until the process ends. If another session holds it, this is an error naming the holder and when its lease ends: wait_for_events until lock_released, then try again."
    )]
    async fn lock_file(&self, Parameters(p): Parameters<LockFile>) -> ToolResult {
        answer(
            async {
                let ttl = p.ttl_seconds.unwrap_or(60);
                let lock = self.lock_once(&p.stable_id, ttl).await?;
                self.keep_renewed(&p.stable_id, ttl).await;
                Ok(done(
                    format!(
                        "locked {} until {} (renewed while this process runs)",
                        p.stable_id, lock["expires_at"]
                    ),
                    lock,
                ))
            }
            .await,
        )
    }

    #[tool(description = "Release a file's lock held by this session. Others see lock_released.")]
    async fn release_file(&self, Parameters(p): Parameters<FileRef>) -> ToolResult {
        answer(
            async {
                if let Some(renewal) = self.leases.lock().await.remove(&p.stable_id) {
                    renewal.abort();
                }
                let path = format!("/api/files/{}/lock", segment(&p.stable_id));
                let body = self.api.send(Call::new(Method::DELETE, path)).await?.body;
                Ok(done(format!("released {}", p.stable_id), body))
            }
            .await,
        )
    }

    #[tool(
        description = "Save new content to a file. This session must hold its lock (lock_file). Pass expected_version to refuse the save if the file changed since you read it."
    )]
    async fn save_file(&self, Parameters(p): Parameters<SaveFile>) -> ToolResult {
        answer(
            async {
                let path = format!("/api/files/{}", segment(&p.stable_id));
                let call = Call::new(Method::PUT, path)
                    .body(json!({ "content": p.content }))
                    .if_match(p.expected_version);
                let file = self.api.send(call).await?.body;
                Ok(done(
                    format!("saved {} as version {}", p.stable_id, file["version"]),
                    file,
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Publish an event on a channel of your own (not the built-in ones: features, tracks, spikes, files, conversations, conversation:*, presence). Every other session subscribed to it receives it."
    )]
    async fn publish(&self, Parameters(p): Parameters<Publish>) -> ToolResult {
        answer(
            async {
                let body = fields(vec![
                    ("type", Some(Value::from(p.event_type))),
                    ("data", Some(p.data.unwrap_or_else(|| json!({})))),
                    ("resource_type", p.resource_type.map(Value::from)),
                    ("resource_id", p.resource_id.map(Value::from)),
                ]);
                let path = format!("/api/channels/{}/events", segment(&p.channel));
                let event = self
                    .api
                    .send(Call::new(Method::POST, path).body(body))
                    .await?
                    .body;
                Ok(done(
                    format!("published event {} on {}", event["id"], p.channel),
                    event,
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Wait for what other sessions do: returns the events of other sessions since this session's cursor (at first: since this process started), each once and in order, never this session's own. Waits up to timeout_seconds (at most 60) when there is nothing new yet; an empty list means nothing happened. Call it again to keep following."
    )]
    async fn wait_for_events(&self, Parameters(p): Parameters<WaitForEvents>) -> ToolResult {
        let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(30).min(MAX_WAIT_SECONDS));
        let ask = WaitFor {
            since: p.since,
            timeout,
            channels: p.channels,
            include_presence: p.include_presence.unwrap_or(false),
            limit: p.limit.unwrap_or(100).clamp(1, 500),
        };
        answer(
            async {
                let found = self.feed.wait(ask).await?;
                let lines: Vec<String> = found
                    .events
                    .iter()
                    .map(|e| {
                        format!(
                            "#{} {} on {} by {} {}",
                            e["id"],
                            e["type"].as_str().unwrap_or("?"),
                            e["channel"].as_str().unwrap_or("?"),
                            e["agent_id"].as_str().unwrap_or("?"),
                            e["resource_id"].as_str().unwrap_or("")
                        )
                    })
                    .collect();
                let text = if lines.is_empty() {
                    format!(
                        "nothing new within {}s (cursor {})",
                        timeout.as_secs(),
                        found.cursor
                    )
                } else {
                    format!(
                        "{} events (cursor {}):\n{}",
                        lines.len(),
                        found.cursor,
                        lines.join("\n")
                    )
                };
                Ok(done(
                    text,
                    json!({ "events": found.events, "cursor": found.cursor, "more": found.more }),
                ))
            }
            .await,
        )
    }

    #[tool(
        description = "Who is connected now: every session (agents and browser tabs) with its agent id and since when."
    )]
    async fn who_is_here(&self) -> ToolResult {
        answer(
            async {
                let body = self.api.send(Call::get("/api/sessions")).await?.body;
                let sessions = body["sessions"].as_array().cloned().unwrap_or_default();
                let lines: Vec<String> = sessions
                    .iter()
                    .map(|s| {
                        let me = if s["session_id"].as_str() == Some(&self.api.session_id) {
                            " (this session)"
                        } else {
                            ""
                        };
                        format!(
                            "{} as {}{me}, since {}",
                            s["session_id"].as_str().unwrap_or("?"),
                            s["agent_id"].as_str().unwrap_or("?"),
                            s["connected_at"].as_str().unwrap_or("?")
                        )
                    })
                    .collect();
                Ok(done(
                    format!("{} sessions:\n{}", sessions.len(), lines.join("\n")),
                    json!({ "sessions": sessions }),
                ))
            }
            .await,
        )
    }
}
