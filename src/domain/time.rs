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

/// The stored and sent form. Written field by field: every event is
/// formatted at least twice (stored, sent), and chrono's `format` parses its
/// pattern each time. Years outside 0–9999 and leap seconds take chrono's
/// path, which renders them the same way the pattern says.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use chrono::{Datelike, Timelike};
        let t = &self.0;
        let (year, nanos) = (t.year(), t.nanosecond());
        if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
            return write!(f, "{}", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"));
        }
        write!(
            f,
            "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            nanos / 1_000
        )
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
    fn the_text_is_chronos_rendering_of_the_fixed_pattern() {
        let start = Timestamp::parse("t", "0001-01-01T00:00:00Z").unwrap();
        let mut t = start;
        // Steps of a prime number of microseconds cover every field.
        for _ in 0..10_000 {
            let expected = t.0.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            assert_eq!(t.to_string(), expected);
            t = t.plus(Duration::microseconds(7_919_000_123_457));
        }
    }

    #[test]
    fn other_offsets_are_converted_to_utc() {
        let t = Timestamp::parse("t", "2026-11-21T13:00:00+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-11-21T12:00:00.000000Z");
    }
}
