//! Query parameters and path segments, refused with the contract's errors.
//! A query string parses with serde_urlencoded; only when that fails is it
//! read again through `Pairs`, whose errors are `Structured` data, to say
//! which parameter is wrong and what it must be.

use std::borrow::Cow;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

use super::errors::{self, integer_meaning};
use super::structured::{hinted, Entries, Structured, Want};
use crate::http::error::ApiError;

/// A query string, deserialized with the contract's errors: a value that
/// does not parse is 400 `bad_request` naming the parameter and what it
/// must be (`details.field`); an unknown parameter names the allowed ones.
/// A drop-in for `web::Query` (same `Deref` and `into_inner`).
pub struct Query<T>(pub T);

impl<T> Query<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> std::ops::Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> Query<T> {
    pub fn from_query(query: &str) -> Result<Self, ApiError> {
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|err| query_error_of::<T>(query, &err.path().to_string()))
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(Query::from_query(req.query_string()))
    }
}

/// The 400 of a query string that is not a `T`, failing at `path`.
#[cold]
fn query_error_of<T: DeserializeOwned>(query: &str, path: &str) -> ApiError {
    let kind = "query parameter";
    let pairs: Vec<(Cow<str>, Cow<str>)> = form_urlencoded::parse(query.as_bytes()).collect();
    match serde_path_to_error::deserialize::<_, T>(Pairs(&pairs)) {
        Err(err) if err.path().to_string() == path => {
            errors::parameter_error(kind, path, err.inner())
        }
        // The re-run met another error first, or none: name the parameter.
        _ => errors::parameter_fallback(kind, path),
    }
}

/// The error of a path segment that does not parse (`web::PathConfig`).
/// actix's `PathError` is only a sentence, so the segment is found by what
/// our routes declare: a segment that is an integer by its name
/// (`integer_meaning`) and whose value is not one. Of several, the last:
/// a route's integer segments follow the names they belong to
/// (`/api/files/{id}/versions/{n}`), and a string segment never fails.
pub fn path_error(_: actix_web::error::PathError, req: &HttpRequest) -> actix_web::Error {
    let segment = req
        .match_info()
        .iter()
        .filter(|(_, value)| value.parse::<i64>().is_err())
        .filter_map(|(name, _)| Some((name.to_owned(), integer_meaning(name)?)))
        .last();
    match segment {
        Some((name, meaning)) => ApiError::BadParameter {
            message: format!("path segment `{name}` must be {meaning}"),
            field: name,
        },
        None => ApiError::bad_request("the path has a segment that is not valid here"),
    }
    .into()
}

/// The error of a query string that `web::Query` could not read (kept for
/// any extractor still on actix's; `Query` above names the parameter).
pub fn query_error(_: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    ApiError::bad_request("the query string is not valid for this resource").into()
}

/// A query string's pairs, percent-decoded, as a map of `Text` values.
struct Pairs<'de>(&'de [(Cow<'de, str>, Cow<'de, str>)]);

impl<'de> de::Deserializer<'de> for Pairs<'de> {
    type Error = Structured;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Structured> {
        visitor
            .visit_map(Entries {
                iter: self.0.iter().map(|(k, v)| (k.as_ref(), Text(v.as_ref()))),
                value: None,
            })
            .map_err(|e| e.at(Some(Want::Object)))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

/// One parameter's value: a string, parsed into the number or boolean the
/// type asks for, as serde_urlencoded does; a value that does not parse is
/// `Structured::wrong` with what was asked.
#[derive(Clone, Copy)]
struct Text<'de>(&'de str);

impl<'de> IntoDeserializer<'de, Structured> for Text<'de> {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> Text<'de> {
    fn any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Structured> {
        visitor.visit_borrowed_str(self.0)
    }
}

/// `deserialize_*` methods that parse the text into the number they ask for.
macro_rules! parsed {
    ($($method:ident => $visit:ident($ty:ty), $want:expr;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Structured> {
            match self.0.parse::<$ty>() {
                Ok(value) => visitor.$visit::<Structured>(value).map_err(|e| e.at(Some($want))),
                Err(_) => Err(Structured::wrong($want)),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Text<'de> {
    type Error = Structured;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Structured> {
        self.any(visitor).map_err(|e| e.at(None))
    }

    parsed! {
        deserialize_bool => visit_bool(bool), Want::Bool;
        deserialize_i8 => visit_i8(i8), Want::Integer;
        deserialize_i16 => visit_i16(i16), Want::Integer;
        deserialize_i32 => visit_i32(i32), Want::Integer;
        deserialize_i64 => visit_i64(i64), Want::Integer;
        deserialize_i128 => visit_i128(i128), Want::Integer;
        deserialize_u8 => visit_u8(u8), Want::NonNegative;
        deserialize_u16 => visit_u16(u16), Want::NonNegative;
        deserialize_u32 => visit_u32(u32), Want::NonNegative;
        deserialize_u64 => visit_u64(u64), Want::NonNegative;
        deserialize_u128 => visit_u128(u128), Want::NonNegative;
        deserialize_f32 => visit_f32(f32), Want::Number;
        deserialize_f64 => visit_f64(f64), Want::Number;
    }

    hinted! {
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
        visitor.visit_some(self).map_err(|e| e.at(None))
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
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Structured> {
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
        let variant: de::value::StrDeserializer<'_, Structured> = self.0.into_deserializer();
        visitor
            .visit_enum(variant)
            .map_err(|e| e.at(Some(Want::OneOf(variants))))
    }
}
