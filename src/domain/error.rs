//! Errors that a rule of the domain raises. They describe what the client did
//! wrong; `error::ApiError` turns them into the contract's JSON shape.

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// A field failed validation: 422 `validation_failed`, naming the field.
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    /// A malformed request that is not about one body field: 400 `bad_request`.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    /// The same `Idempotency-Key` was sent before with a different request.
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    /// A 409 with a specific code (`conflict`, `lock_held`, …) and details.
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        details: Value,
    },
    /// `If-Match` did not match: 412 with the current resource.
    #[error("the resource has changed")]
    PreconditionFailed { current: Value },
}

impl DomainError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        DomainError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }
}
