//! FHIR `instant` values (`_since`, `_until`, `meta.lastUpdated`, `transactionTime`).
//!
//! Inside fhir-bulk an instant is an [`Instant`]: microseconds since the Unix epoch, UTC. That
//! is the resolution the store keeps, so `_since` (strictly after, T1) and `_until`/the job's
//! `transactionTime` (at or before, M1) compare exactly, and the text we write round-trips.

use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Microseconds since 1970-01-01T00:00:00Z.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Instant(pub i64);

/// Why a text is not a FHIR instant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstantError {
    /// A `+` in the offset arrived as a space: the client did not percent-encode it (P1/P2, T5).
    #[error(
        "'{0}' is not a FHIR instant: the '+' of the timezone offset was decoded as a space; send it as %2B"
    )]
    PlusAsSpace(String),
    /// A date or date-time without a timezone, or other malformed text (T5).
    #[error(
        "'{0}' is not a FHIR instant: expected YYYY-MM-DDThh:mm:ss[.fff](Z|+hh:mm|-hh:mm), with a timezone"
    )]
    Malformed(String),
}

impl Instant {
    /// The current time.
    pub fn now() -> Instant {
        Self::from_offset(OffsetDateTime::now_utc())
    }

    /// Parses a FHIR instant. A bare date, a missing timezone, or a `+` decoded to a space are errors.
    pub fn parse(s: &str) -> Result<Instant, InstantError> {
        let t = s.trim_end();
        // "2020-01-01T00:00:00 02:00": the `+` became a space on its way through a query string.
        if t.len() > 19
            && t.as_bytes()
                .get(19..)
                .is_some_and(|rest| rest.contains(&b' '))
        {
            return Err(InstantError::PlusAsSpace(s.to_string()));
        }
        if t.len() < 20 || t.as_bytes()[10] != b'T' {
            return Err(InstantError::Malformed(s.to_string()));
        }
        OffsetDateTime::parse(t, &Rfc3339)
            .map(Self::from_offset)
            .map_err(|_| InstantError::Malformed(s.to_string()))
    }

    fn from_offset(t: OffsetDateTime) -> Instant {
        Instant((t.unix_timestamp_nanos() / 1_000) as i64)
    }

    /// The `time` value of this instant.
    pub fn to_offset(self) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(self.0 as i128 * 1_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    /// Seconds since the epoch (for `Expires`, JWT claims…).
    pub fn unix_seconds(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }

    /// This instant plus some seconds.
    pub fn plus_seconds(self, secs: i64) -> Instant {
        Instant(self.0 + secs * 1_000_000)
    }
}

impl fmt::Display for Instant {
    /// `2026-11-26T13:53:06.123456Z`: UTC, always six fractional digits so text order is time order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.to_offset();
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            t.year(),
            t.month() as u8,
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.microsecond()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zulu_and_offsets() {
        let a = Instant::parse("2020-01-01T00:00:00Z").unwrap();
        let b = Instant::parse("2020-01-01T02:00:00+02:00").unwrap();
        let c = Instant::parse("2019-12-31T23:00:00.000-01:00").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.0, 1_577_836_800_000_000);
    }

    #[test]
    fn keeps_microseconds_and_round_trips() {
        let a = Instant::parse("2026-11-26T13:53:06.123456Z").unwrap();
        assert_eq!(a.to_string(), "2026-11-26T13:53:06.123456Z");
        assert_eq!(Instant::parse(&a.to_string()).unwrap(), a);
    }

    /// T5: a bare date, no timezone, or a `+` decoded to a space are rejected.
    #[test]
    fn rejects_malformed_t5() {
        assert!(matches!(
            Instant::parse("2020-01-01"),
            Err(InstantError::Malformed(_))
        ));
        assert!(matches!(
            Instant::parse("2020-01-01T00:00:00"),
            Err(InstantError::Malformed(_))
        ));
        assert!(matches!(
            Instant::parse("2020-01-01T00:00:00 02:00"),
            Err(InstantError::PlusAsSpace(_))
        ));
        assert!(matches!(
            Instant::parse("yesterday"),
            Err(InstantError::Malformed(_))
        ));
        assert!(matches!(
            Instant::parse(""),
            Err(InstantError::Malformed(_))
        ));
    }
}
