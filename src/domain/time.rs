//! `Timestamp`: an instant in UTC with microsecond precision, the one time
//! type past the edge. Its text form is fixed-width RFC 3339
//! (`2026-11-21T12:00:00.123456Z`), which is how it is stored and sent;
//! comparisons are between instants, never between strings.

use std::fmt;

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde::{Serialize, Serializer};

use super::DomainError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn now() -> Self {
        Timestamp::from(Utc::now())
    }

    /// Any RFC 3339 time (other offsets are converted to UTC); `field` names
    /// it in the error.
    pub fn parse(field: &str, text: &str) -> Result<Self, DomainError> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| Timestamp::from(t.with_timezone(&Utc)))
            .map_err(|_| {
                DomainError::validation(
                    field,
                    "must be an RFC 3339 time like 2026-11-21T12:00:00.000000Z",
                )
            })
    }

    pub fn as_datetime(self) -> DateTime<Utc> {
        self.0
    }

    pub fn plus(self, by: Duration) -> Self {
        Timestamp::from(self.0 + by)
    }

    pub fn minus(self, by: Duration) -> Self {
        Timestamp::from(self.0 - by)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    /// Truncated to microseconds, so that the stored text round-trips to
    /// the same value.
    fn from(time: DateTime<Utc>) -> Self {
        Timestamp(time.trunc_subsecs(6))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_have_microseconds_and_round_trip_through_their_text() {
        let t = Timestamp::parse("t", "2026-11-21T12:00:00.1234567Z").unwrap();
        assert_eq!(t.to_string(), "2026-11-21T12:00:00.123456Z");
        assert_eq!(Timestamp::parse("t", &t.to_string()).unwrap(), t);
        let later = t.plus(Duration::microseconds(5));
        assert!(t < later);
        assert!(t.to_string() < later.to_string());
        assert!(Timestamp::parse("since", "yesterday").is_err());
    }

    #[test]
    fn other_offsets_are_converted_to_utc() {
        let t = Timestamp::parse("t", "2026-11-21T13:00:00+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-21T12:00:00.000000Z");
    }
}
