//! JSON bodies: the parse, and the re-run that words a refused one. The
//! typed parse is serde_json's (the hot publish path pays nothing more);
//! only when it fails is the body read again, as a `serde_json::Value`, and
//! the type deserialized from that through `Json`, whose errors are
//! `Structured` data rather than serde_json's sentences.

use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};
use serde_json::Value;

use super::errors;
use super::structured::{hinted, Entries, Items, Problem, Structured, Want};
use crate::domain::DomainError;
use crate::http::error::ApiError;

/// The name under which serde_json asks for a `RawValue` (its `raw::TOKEN`,
/// not public): answered as serde_json's own `Value` answers it. Should it
/// change, the re-run fails elsewhere than the parse and the answer is the
/// generic one naming the field.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

pub(super) fn parse_json<T: DeserializeOwned>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.is_empty() {
        // An empty body is `null`: fine where the body is optional.
        return serde_json::from_slice(b"null")
            .map_err(|_| ApiError::InvalidJson("the body is empty".into()));
    }
    // Nesting before anything parses: free-form values are kept raw, and a
    // reader elsewhere may not parse what serde_json takes.
    crate::domain::check_depth(raw)?;
    // Syntax first, so broken JSON is always 400 `invalid_json`, whatever
    // field error the typed parse would have met on the way.
    // Its position ("at line 1 column 5") helps to find a syntax error.
    serde_json::from_slice::<serde::de::IgnoredAny>(raw)
        .map_err(|err| ApiError::InvalidJson(err.to_string()))?;
    let mut deserializer = serde_json::Deserializer::from_slice(raw);
    serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|err| body_error::<T>(raw, &err.path().to_string()))
}

/// The 422 of a body that is JSON but not a `T`, failing at `path`.
#[cold]
fn body_error<T: DeserializeOwned>(raw: &[u8], path: &str) -> ApiError {
    let (field, message) = match rerun::<T>(raw) {
        Some((again, error)) if again == path => errors::body_field_error(path, &error),
        // The re-run met another error first, or none: name the field only.
        _ => errors::body_fallback(path),
    };
    ApiError::Domain(DomainError::Validation { field, message })
}

/// `T` from the body again, through `Json`: the path and structured error.
fn rerun<T: DeserializeOwned>(raw: &[u8]) -> Option<(String, Structured)> {
    let value: Value = serde_json::from_slice(raw).ok()?;
    serde_path_to_error::deserialize::<_, T>(Json(&value))
        .err()
        .map(|err| (err.path().to_string(), err.into_inner()))
}

/// A `serde_json::Value` as a deserializer with `Structured` errors. It
/// gives values as serde_json's own `Value` deserializer does.
#[derive(Clone, Copy)]
pub(super) struct Json<'de>(pub &'de Value);

impl<'de> IntoDeserializer<'de, Structured> for Json<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Json<'de> {
    /// The value as it is; the caller places an error.
    fn any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Structured> {
        match self.0 {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => visitor.visit_u64(u),
                (None, Some(i)) => visitor.visit_i64(i),
                (None, None) => visitor.visit_f64(n.as_f64().unwrap_or(f64::NAN)),
            },
            Value::String(s) => visitor.visit_borrowed_str(s),
            Value::Array(items) => {
                let mut seq = Items(items.iter().map(Json));
                let value = visitor.visit_seq(&mut seq)?;
                match seq.0.next() {
                    None => Ok(value),
                    Some(_) => Err(Structured::new(Problem::Wrong)),
                }
            }
            Value::Object(map) => {
                let mut entries = Entries {
                    iter: map.iter().map(|(k, v)| (k.as_str(), Json(v))),
                    value: None,
                };
                let value = visitor.visit_map(&mut entries)?;
                match entries.iter.next() {
                    None => Ok(value),
                    Some(_) => Err(Structured::new(Problem::Wrong)),
                }
            }
        }
    }
}

impl<'de> de::Deserializer<'de> for Json<'de> {
    type Error = Structured;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Structured> {
        self.any(visitor).map_err(|e| e.at(None))
    }

    hinted! {
        deserialize_bool => Some(Want::Bool);
        deserialize_i8 => Some(Want::Integer);
        deserialize_i16 => Some(Want::Integer);
        deserialize_i32 => Some(Want::Integer);
        deserialize_i64 => Some(Want::Integer);
        deserialize_i128 => Some(Want::Integer);
        deserialize_u8 => Some(Want::NonNegative);
        deserialize_u16 => Some(Want::NonNegative);
        deserialize_u32 => Some(Want::NonNegative);
        deserialize_u64 => Some(Want::NonNegative);
        deserialize_u128 => Some(Want::NonNegative);
        deserialize_f32 => Some(Want::Number);
        deserialize_f64 => Some(Want::Number);
        deserialize_char => Some(Want::String);
        deserialize_str => Some(Want::String);
        deserialize_string => Some(Want::String);
        deserialize_identifier => Some(Want::String);
        deserialize_bytes => None;
        deserialize_byte_buf => None;
        deserialize_unit => Some(Want::Null);
        deserialize_seq => Some(Want::Array);
        deserialize_map => Some(Want::Object);
        deserialize_ignored_any => None;
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Structured> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
        .map_err(|e| e.at(None))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Structured> {
        self.any(visitor).map_err(|e| e.at(Some(Want::Null)))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Structured> {
        if name == RAW_VALUE_TOKEN {
            let entries = Entries {
                iter: std::iter::once((RAW_VALUE_TOKEN, self.0.to_string())),
                value: None,
            };
            return visitor.visit_map(entries).map_err(|e| e.at(None));
        }
        visitor.visit_newtype_struct(self).map_err(|e| e.at(None))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Structured> {
        self.any(visitor).map_err(|e| e.at(Some(Want::Array)))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Structured> {
        self.any(visitor).map_err(|e| e.at(Some(Want::Array)))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Structured> {
        self.any(visitor).map_err(|e| e.at(Some(Want::Object)))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Structured> {
        match self.0 {
            Value::String(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            Value::Object(map) if map.len() == 1 => {
                visitor.visit_enum(de::value::MapAccessDeserializer::new(Entries {
                    iter: map.iter().map(|(k, v)| (k.as_str(), Json(v))),
                    value: None,
                }))
            }
            _ => Err(Structured::new(Problem::Wrong)),
        }
        .map_err(|e| e.at(Some(Want::OneOf(variants))))
    }
}
