//! The structured error of the re-run that words a refused body or query:
//! `Structured` implements `serde::de::Error` by keeping what serde's
//! methods were told (the unknown name and the allowed ones, the missing
//! field, …) instead of formatting a sentence, so the client's words come
//! from data and not from serde's English (which an upgrade may reword).
//! Also the map and sequence access the two re-run deserializers share.

use std::fmt;

use serde::de::{
    self, DeserializeSeed, Expected, IntoDeserializer, MapAccess, SeqAccess, Unexpected,
};

/// What a value must be, as the type declared it: the `deserialize_*`
/// method it called (`deserialize_u64` → `NonNegative`), or the variants
/// `deserialize_enum` named.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Want {
    Bool,
    Integer,
    NonNegative,
    Number,
    String,
    Array,
    Object,
    Null,
    OneOf(&'static [&'static str]),
}

/// What went wrong, as serde's `de::Error` methods were told it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Problem {
    UnknownField {
        name: String,
        allowed: &'static [&'static str],
    },
    UnknownVariant {
        allowed: &'static [&'static str],
    },
    MissingField(&'static str),
    DuplicateField(&'static str),
    /// A value of the wrong type, out of range or of the wrong length:
    /// what it must be is the `Want` of the value the error is about.
    Wrong,
    /// A message of ours: a domain type's `Deserialize` impl.
    Custom(String),
}

/// A `Problem` and what the value it is about must be. `placed` is set by
/// the innermost deserializer call the error leaves (or the map or sequence
/// entry), so that an outer one does not put its own `Want` on it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Structured {
    pub problem: Problem,
    pub want: Option<Want>,
    placed: bool,
}

impl Structured {
    pub fn new(problem: Problem) -> Self {
        Structured {
            problem,
            want: None,
            placed: false,
        }
    }

    /// A value that is not what the type declared (`want`).
    pub fn wrong(want: Want) -> Self {
        Structured {
            problem: Problem::Wrong,
            want: Some(want),
            placed: true,
        }
    }

    /// The error left the call that deserialized the value it is about.
    pub fn at(mut self, want: Option<Want>) -> Self {
        if !self.placed {
            self.placed = true;
            self.want = want;
        }
        self
    }
}

impl fmt::Display for Structured {
    // Only for logs and `std::error::Error`: clients get `errors.rs`'s words.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (want {:?})", self.problem, self.want)
    }
}

impl std::error::Error for Structured {}

impl de::Error for Structured {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Structured::new(Problem::Custom(msg.to_string()))
    }

    fn invalid_type(_: Unexpected<'_>, _: &dyn Expected) -> Self {
        Structured::new(Problem::Wrong)
    }

    fn invalid_value(_: Unexpected<'_>, _: &dyn Expected) -> Self {
        Structured::new(Problem::Wrong)
    }

    fn invalid_length(_: usize, _: &dyn Expected) -> Self {
        Structured::new(Problem::Wrong)
    }

    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        Structured::new(Problem::UnknownVariant { allowed: expected })
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Structured::new(Problem::UnknownField {
            name: field.to_owned(),
            allowed: expected,
        })
    }

    fn missing_field(field: &'static str) -> Self {
        Structured::new(Problem::MissingField(field))
    }

    fn duplicate_field(field: &'static str) -> Self {
        Structured::new(Problem::DuplicateField(field))
    }
}

/// The entries of an object or query string. An error out of a value is
/// placed there: a domain type that fails after its inner call succeeded is
/// not worded as the enclosing object's.
pub(super) struct Entries<I, V> {
    pub iter: I,
    pub value: Option<V>,
}

impl<'de, K, V, I> MapAccess<'de> for Entries<I, V>
where
    I: Iterator<Item = (K, V)>,
    K: IntoDeserializer<'de, Structured>,
    V: IntoDeserializer<'de, Structured>,
{
    type Error = Structured;

    fn next_key_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Structured> {
        match self.iter.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(key.into_deserializer()).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<S::Value, Structured> {
        let value = self
            .value
            .take()
            .ok_or_else(|| de::Error::custom("a value without its key"))?;
        seed.deserialize(value.into_deserializer())
            .map_err(|e| e.at(None))
    }
}

/// The items of an array, errors placed as `Entries` places them.
pub(super) struct Items<I>(pub I);

impl<'de, V, I> SeqAccess<'de> for Items<I>
where
    I: Iterator<Item = V>,
    V: IntoDeserializer<'de, Structured>,
{
    type Error = Structured;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Structured> {
        match self.0.next() {
            Some(value) => seed
                .deserialize(value.into_deserializer())
                .map(Some)
                .map_err(|e| e.at(None)),
            None => Ok(None),
        }
    }
}

/// `deserialize_*` methods that give the value as it is (the deserializer's
/// inherent `any`) and put the `Want` they stand for on an error the visitor
/// gives at this value.
macro_rules! hinted {
    ($($method:ident => $want:expr;)*) => {$(
        fn $method<V: serde::de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Structured> {
            self.any(visitor).map_err(|e| e.at($want))
        }
    )*};
}
pub(super) use hinted;
