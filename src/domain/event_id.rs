//! `EventId`: the position of an event in the log, the one type for event
//! ids, cursors (`Last-Event-ID`, `after`, `before`, `cursor`,
//! `updated_since_id`), the log's head and its pruned watermark. It is never
//! negative; `EventId::ZERO` is "before the first event".
//!
//! On the wire it is a plain integer (a JSON number, a decimal `id:` line):
//! it serialises transparently. In OpenAPI schemas its fields are declared
//! with `#[schema(value_type = i64)]`, so the document is unchanged. The
//! store converts to and from the `BIGINT` column with `get` and
//! `from_stored`, and nowhere else.

use std::fmt;

use serde::Serialize;

use super::DomainError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct EventId(i64);

/// What a client is told when an event id it sent is not one.
const MEANING: &str = "must be a non-negative integer (an event id)";

impl EventId {
    /// Before the first event: the head of an empty log, the cursor that
    /// reads everything.
    pub const ZERO: EventId = EventId(0);

    /// Parses the decimal text a client sent (a header, a query value);
    /// `field` names it in the validation error.
    pub fn parse(field: &str, text: &str) -> Result<Self, DomainError> {
        text.parse::<i64>()
            .map_err(|_| DomainError::validation(field, MEANING))
            .and_then(|id| Self::checked(field, id))
    }

    /// An id a client sent as a number: refused when negative, with `field`
    /// named in the validation error.
    pub fn checked(field: &str, id: i64) -> Result<Self, DomainError> {
        if id < 0 {
            return Err(DomainError::validation(field, MEANING));
        }
        Ok(EventId(id))
    }

    /// An id read from the log's own columns, which never hold a negative
    /// one. For the store only: everything a client sends goes through
    /// `parse` or `checked`.
    pub(crate) fn from_stored(id: i64) -> Self {
        debug_assert!(id >= 0, "a stored event id is never negative: {id}");
        EventId(id.max(0))
    }

    /// The number, for the store's queries and columns.
    pub fn get(self) -> i64 {
        self.0
    }

    /// The id right after this one: where "empty log" reads start.
    pub fn next(self) -> Self {
        EventId(self.0.saturating_add(1))
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_non_negative_decimal_numbers() {
        assert_eq!(EventId::parse("after", "0").unwrap(), EventId::ZERO);
        assert_eq!(EventId::parse("after", "42").unwrap().get(), 42);
        for bad in ["", "-1", "abc", "1.5", "0x10", "99999999999999999999", " 1"] {
            let err = EventId::parse("after", bad).unwrap_err().to_string();
            assert_eq!(err, "after: must be a non-negative integer (an event id)");
        }
        assert!(EventId::checked("cursor", -5).is_err());
        assert_eq!(EventId::checked("cursor", 5).unwrap().to_string(), "5");
    }

    #[test]
    fn event_ids_order_like_the_log_and_serialise_as_numbers() {
        let one = EventId::parse("id", "1").unwrap();
        assert!(EventId::ZERO < one && one.next() > one);
        assert_eq!(EventId::ZERO.next(), one);
        assert_eq!(serde_json::to_string(&one.next()).unwrap(), "2");
        assert_eq!(
            serde_json::to_string(&serde_json::json!({ "head_id": one })).unwrap(),
            r#"{"head_id":1}"#
        );
    }
}
