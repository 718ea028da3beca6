//! The fields of a work item a client may set, parsed from a JSON object
//! per kind (tracks have no priority, tags or track; spikes add findings):
//! a missing field is left alone, `null` clears it.

use serde_json::{Map, Value};

use super::{Kind, Priority, Status};
use crate::domain::{DomainError, ResourceId};

/// Fields a create, a PATCH or a compatibility update sets. `None`: not
/// given; `Some(None)`: cleared with `null`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemFields {
    pub title: Option<String>,
    pub status: Option<Status>,
    pub description: Option<Option<String>>,
    pub priority: Option<Priority>,
    pub tags: Option<Vec<String>>,
    pub track_id: Option<Option<ResourceId>>,
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
                        other => Some(ResourceId::parse("track_id", &word("track_id", other)?)?),
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
