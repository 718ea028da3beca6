//! `If-Match`: the version a change applies to. Every versioned resource
//! (work items, files, conversations) checks it the same way: another
//! version → 412 with the current resource's view in the details.

use super::DomainError;

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

    /// Fails with 412 and `current()` (its view) in the details unless
    /// `version` matches.
    pub fn check_version<V: serde::Serialize>(
        self,
        version: i64,
        current: impl FnOnce() -> V,
    ) -> Result<(), DomainError> {
        match self {
            IfMatch::Version(v) if v != version => Err(DomainError::PreconditionFailed {
                current: serde_json::to_value(current())
                    .map_err(|e| DomainError::BadRequest(e.to_string()))?,
            }),
            _ => Ok(()),
        }
    }
}
