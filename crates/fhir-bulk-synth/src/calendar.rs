//! FHIR `date`, `dateTime` and `instant` values, kept as integers and formatted on output.
//!
//! Times are held as seconds (or milliseconds) since the Unix epoch so that the generator can
//! do arithmetic (an encounter ends 40 minutes after it starts, a lab result is issued a day
//! later) and only pays for text when serializing. The Gregorian conversion is Howard
//! Hinnant's `civil_from_days`, which is exact for every date we produce and needs no tables.

use serde::{Serialize, Serializer};
use std::fmt;

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub const fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year } as i64;
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The `(year, month, day)` of a day count since 1970-01-01.
pub const fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + if month <= 2 { 1 } else { 0 }) as i32;
    (year, month, day)
}

/// Unix seconds at midnight UTC of a date.
pub const fn unix_seconds(year: i32, month: u32, day: u32) -> i64 {
    days_from_civil(year, month, day) * DAY
}

/// A FHIR `date` (`YYYY-MM-DD`), e.g. a birth date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// Days since 1970-01-01.
    pub days: i64,
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.days);
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// A FHIR `dateTime` to the second, in the patient's local offset, e.g.
/// `2019-03-04T10:15:00-05:00`. Real clinical data carries offsets, and consumers must
/// handle them, so the generator does not normalise to `Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    /// Unix seconds (UTC).
    pub unix: i64,
    /// Offset from UTC in minutes (e.g. -300 for US Eastern standard time).
    pub offset_minutes: i32,
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = self.unix + i64::from(self.offset_minutes) * 60;
        let (y, mo, d) = civil_from_days(local.div_euclid(DAY));
        let secs = local.rem_euclid(DAY);
        let (h, mi, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        write!(f, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}")?;
        if self.offset_minutes == 0 {
            return f.write_str("Z");
        }
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let off = self.offset_minutes.abs();
        write!(f, "{sign}{:02}:{:02}", off / 60, off % 60)
    }
}

/// A FHIR `instant` in UTC with milliseconds, e.g. `2021-07-01T08:09:10.123Z`, as used by
/// `meta.lastUpdated` and `issued`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant {
    /// Milliseconds since the Unix epoch.
    pub unix_millis: i64,
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.unix_millis.div_euclid(1000);
        let millis = self.unix_millis.rem_euclid(1000);
        let (y, mo, d) = civil_from_days(secs.div_euclid(DAY));
        let tod = secs.rem_euclid(DAY);
        let (h, mi, s) = (tod / 3600, tod / 60 % 60, tod % 60);
        write!(
            f,
            "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{millis:03}Z"
        )
    }
}

macro_rules! serialize_as_text {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                // Formats straight into the output (serde_json's `collect_str` streams).
                serializer.collect_str(self)
            }
        }
    )*};
}
serialize_as_text!(Date, DateTime, Instant);

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    #[test]
    fn civil_round_trip_matches_the_time_crate() {
        // Every day from 1900 to 2100, checked against an independent implementation.
        for days in days_from_civil(1900, 1, 1)..days_from_civil(2100, 1, 1) {
            let (y, m, d) = civil_from_days(days);
            let expected =
                time::Date::from_julian_day((days + 2_440_588) as i32).expect("in range");
            assert_eq!(
                (y, m, d),
                (
                    expected.year(),
                    u8::from(expected.month()) as u32,
                    u32::from(expected.day())
                )
            );
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn formats_parse_as_rfc3339() {
        let unix = unix_seconds(2019, 3, 4) + 3 * 3600 + 15 * 60;
        let local = DateTime {
            unix,
            offset_minutes: -300,
        }
        .to_string();
        assert_eq!(local, "2019-03-03T22:15:00-05:00");
        let parsed = time::OffsetDateTime::parse(&local, &Rfc3339).unwrap();
        assert_eq!(parsed.unix_timestamp(), unix);

        let utc = DateTime {
            unix,
            offset_minutes: 0,
        }
        .to_string();
        assert_eq!(utc, "2019-03-04T03:15:00Z");

        let instant = Instant {
            unix_millis: unix * 1000 + 7,
        }
        .to_string();
        assert_eq!(instant, "2019-03-04T03:15:00.007Z");
        let parsed = time::OffsetDateTime::parse(&instant, &Rfc3339).unwrap();
        assert_eq!(parsed.unix_timestamp(), unix);

        assert_eq!(
            Date {
                days: days_from_civil(1944, 2, 29)
            }
            .to_string(),
            "1944-02-29"
        );
    }
}
