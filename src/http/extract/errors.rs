//! The client's words for a body, query parameter or path segment that was
//! refused: built from `Structured` (what serde's methods were told and
//! what the type declared), never from serde's or actix's message text, and
//! never naming a Rust type.

use super::structured::{Problem, Structured, Want};
use crate::http::error::ApiError;

/// serde_path_to_error's path of the whole value.
fn is_root(path: &str) -> bool {
    matches!(path, "." | "" | "?")
}

/// The field a body error is about (`events[0].type`, `body` for the whole
/// body) and what is wrong with it.
pub(super) fn body_field_error(path: &str, error: &Structured) -> (String, String) {
    let at_root = is_root(path);
    match &error.problem {
        // Below the root, the path of an unknown field ends with its name.
        Problem::UnknownField { name, allowed } => (
            if at_root {
                name.clone()
            } else {
                path.to_owned()
            },
            format!("is not a known field; allowed: {}", names(allowed)),
        ),
        Problem::MissingField(name) => (
            if at_root {
                (*name).to_owned()
            } else {
                format!("{path}.{name}")
            },
            "is required".to_owned(),
        ),
        _ if at_root => ("body".to_owned(), "must be a JSON object".to_owned()),
        _ => (path.to_owned(), predicate(error)),
    }
}

/// A body error the re-run did not meet again: the field, and no more.
pub(super) fn body_fallback(path: &str) -> (String, String) {
    if is_root(path) {
        ("body".to_owned(), "must be a JSON object".to_owned())
    } else {
        (path.to_owned(), "is not valid here".to_owned())
    }
}

/// A query parameter (`kind`) named `name` failed with `error`: 400
/// `bad_request` with a sentence about it.
pub(super) fn parameter_error(kind: &str, name: &str, error: &Structured) -> ApiError {
    let (field, predicate) = match &error.problem {
        Problem::UnknownField {
            name: unknown,
            allowed,
        } => {
            return ApiError::BadParameter {
                message: format!("unknown {kind} `{unknown}`; allowed: {}", names(allowed)),
                field: unknown.clone(),
            };
        }
        Problem::MissingField(missing) => ((*missing).to_owned(), "is required".to_owned()),
        Problem::DuplicateField(twice) => ((*twice).to_owned(), "is given twice".to_owned()),
        Problem::Wrong => match error.want {
            Some(want @ (Want::Integer | Want::NonNegative)) => (
                name.to_owned(),
                format!(
                    "must be {}",
                    integer_meaning(name).unwrap_or_else(|| want_words(Some(want)))
                ),
            ),
            _ => (name.to_owned(), predicate(error)),
        },
        _ => (name.to_owned(), predicate(error)),
    };
    ApiError::BadParameter {
        message: format!("{kind} `{field}` {predicate}"),
        field,
    }
}

/// A query error the re-run did not meet again: the parameter, and no more.
pub(super) fn parameter_fallback(kind: &str, name: &str) -> ApiError {
    if is_root(name) {
        return ApiError::bad_request("the query string is not valid for this resource");
    }
    ApiError::BadParameter {
        message: format!("{kind} `{name}` is not valid here"),
        field: name.to_owned(),
    }
}

/// "must be …", "is given twice", …: follows the field's name.
pub(super) fn predicate(error: &Structured) -> String {
    match &error.problem {
        Problem::Wrong => match error.want {
            Some(Want::OneOf(allowed)) => one_of(allowed),
            want => format!("must be {}", want_words(want)),
        },
        Problem::UnknownVariant { allowed } => one_of(allowed),
        Problem::UnknownField { allowed, .. } => {
            format!("is not a known field; allowed: {}", names(allowed))
        }
        Problem::MissingField(name) => format!("needs the field `{name}`"),
        Problem::DuplicateField(_) => "is given twice".to_owned(),
        Problem::Custom(message) => format!("is invalid: {message}"),
    }
}

fn one_of(allowed: &[&str]) -> String {
    match names(allowed).as_str() {
        "none" => "must be a known value".to_owned(),
        names => format!("must be one of: {names}"),
    }
}

/// What a value of the declared kind is, in the client's words.
fn want_words(want: Option<Want>) -> &'static str {
    match want {
        Some(Want::Bool) => "true or false",
        Some(Want::Integer) => "an integer",
        Some(Want::NonNegative) => "a non-negative integer",
        Some(Want::Number) => "a number",
        Some(Want::String) => "a string",
        Some(Want::Array) => "an array",
        Some(Want::Object) => "an object",
        Some(Want::Null) => "null",
        Some(Want::OneOf(_)) | None => "a valid value",
    }
}

/// The allowed names, without the hidden ones (`_…`): "a, b", or "none".
fn names(allowed: &[&str]) -> String {
    let shown: Vec<&str> = allowed
        .iter()
        .copied()
        .filter(|name| !name.starts_with('_'))
        .collect();
    if shown.is_empty() {
        "none".to_owned()
    } else {
        shown.join(", ")
    }
}

/// What an integer parameter or path segment means, by its name.
pub(super) fn integer_meaning(name: &str) -> Option<&'static str> {
    match name {
        "id" | "after" | "before" | "cursor" | "updated_since_id" | "last_event_id" => {
            Some("a non-negative integer (an event id)")
        }
        "limit" => Some("an integer (the page size)"),
        "n" => Some("a positive integer (a version number)"),
        _ => None,
    }
}
