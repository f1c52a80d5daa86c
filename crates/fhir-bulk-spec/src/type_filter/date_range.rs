//! FHIR dates as time ranges, and the search prefixes that compare them.
//!
//! Every date, dateTime and instant stands for a range at its precision: `2015` is the whole
//! year, `2015-02-07T13:28` a minute, `…:17.239Z` a millisecond. Ranges are half-open
//! `[start, end)` in microseconds since the Unix epoch (UTC); a value without a timezone is
//! taken as UTC. A Period spans from its start's range start to its end's range end, open-ended
//! when either is missing. The comparisons follow the R4 search rules for ranges (see
//! [`Prefix::admits`]).

use std::cmp::Ordering;

/// `[start, end)` in microseconds since the Unix epoch.
pub(super) type Range = (i64, i64);

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A search prefix (`eq` when absent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

impl Prefix {
    /// Splits a leading prefix off a date, number or quantity value.
    pub(super) fn split(value: &str) -> (Prefix, &str) {
        let prefix = match value.get(..2) {
            Some("eq") => Prefix::Eq,
            Some("ne") => Prefix::Ne,
            Some("gt") => Prefix::Gt,
            Some("lt") => Prefix::Lt,
            Some("ge") => Prefix::Ge,
            Some("le") => Prefix::Le,
            Some("sa") => Prefix::Sa,
            Some("eb") => Prefix::Eb,
            Some("ap") => Prefix::Ap,
            _ => return (Prefix::Eq, value),
        };
        (prefix, &value[2..])
    }

    /// Whether a resource value with range `target` satisfies `self` against the search range.
    ///
    /// `eq`: the search range contains the target; `ne`: it does not; `gt`/`lt`: the target
    /// reaches past the search range's end / before its start; `ge`/`le`: the target ends
    /// after the search range starts / starts before it ends; `sa`/`eb`: the target lies wholly
    /// after / before it; `ap`: the target overlaps the search range (which the parser widened).
    pub(super) fn admits(self, search: Range, target: Range) -> bool {
        let ((s0, s1), (t0, t1)) = (search, target);
        match self {
            Prefix::Eq => s0 <= t0 && t1 <= s1,
            Prefix::Ne => !(s0 <= t0 && t1 <= s1),
            Prefix::Gt => t1 > s1,
            Prefix::Lt => t0 < s0,
            Prefix::Ge => t1 > s0,
            Prefix::Le => t0 < s1,
            Prefix::Sa => t0 >= s1,
            Prefix::Eb => t1 <= s0,
            Prefix::Ap => t0 < s1 && t1 > s0,
        }
    }

    /// Whether a resource number `target` satisfies `self` against `search`, whose implied
    /// precision is ±`half_width` (`100` stands for [99.5, 100.5)).
    pub(super) fn admits_number(self, search: f64, half_width: f64, target: f64) -> bool {
        let within = search - half_width <= target && target < search + half_width;
        match self {
            Prefix::Eq => within,
            Prefix::Ne => !within,
            Prefix::Gt | Prefix::Sa => target.partial_cmp(&search) == Some(Ordering::Greater),
            Prefix::Lt | Prefix::Eb => target.partial_cmp(&search) == Some(Ordering::Less),
            Prefix::Ge => target >= search,
            Prefix::Le => target <= search,
            Prefix::Ap => (target - search).abs() <= (search.abs() * 0.1).max(half_width),
        }
    }
}

/// The range of a FHIR date, dateTime or instant (`YYYY[-MM[-DD[Thh:mm[:ss[.f+]][Z|±hh:mm]]]]`).
///
/// A space where the offset's sign belongs is read as `+` (an unencoded `+` in a query string).
pub(super) fn parse_range(s: &str) -> Option<Range> {
    let b = s.as_bytes();
    let year = digits(b, 0, 4)?;
    if b.len() == 4 {
        return Some((day_start(year, 1, 1), day_start(year + 1, 1, 1)));
    }
    expect(b, 4, b'-')?;
    let month = digits(b, 5, 2).filter(|m| (1..=12).contains(m))?;
    if b.len() == 7 {
        let (ny, nm) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        return Some((day_start(year, month, 1), day_start(ny, nm, 1)));
    }
    expect(b, 7, b'-')?;
    let day = digits(b, 8, 2).filter(|d| (1..=days_in_month(year, month)).contains(d))?;
    let start_of_day = day_start(year, month, day);
    if b.len() == 10 {
        return Some((start_of_day, start_of_day + MICROS_PER_DAY));
    }
    expect(b, 10, b'T')?;
    let hour = digits(b, 11, 2).filter(|h| *h < 24)?;
    expect(b, 13, b':')?;
    let minute = digits(b, 14, 2).filter(|m| *m < 60)?;
    let (mut pos, mut seconds, mut fraction, mut width) = (16, 0, 0, 60_000_000);
    if b.get(pos) == Some(&b':') {
        seconds = digits(b, pos + 1, 2).filter(|s| *s <= 60)?.min(59); // a leap second counts as :59
        pos += 3;
        width = 1_000_000;
        if b.get(pos) == Some(&b'.') {
            let n = b[pos + 1..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
            if n == 0 {
                return None;
            }
            let kept = n.min(6);
            fraction = digits(b, pos + 1, kept)? * 10_i64.pow(6 - kept as u32);
            width = 10_i64.pow(6 - kept as u32);
            pos += 1 + n;
        }
    }
    let offset_minutes = match b.get(pos) {
        None => 0,
        Some(b'Z') if b.len() == pos + 1 => 0,
        Some(&sign @ (b'+' | b'-' | b' ')) if b.len() == pos + 6 => {
            let hh = digits(b, pos + 1, 2).filter(|h| *h <= 14)?;
            expect(b, pos + 3, b':')?;
            let mm = digits(b, pos + 4, 2).filter(|m| *m < 60)?;
            if sign == b'-' {
                -(hh * 60 + mm)
            } else {
                hh * 60 + mm
            }
        }
        _ => return None,
    };
    let start = start_of_day
        + ((hour * 60 + minute - offset_minutes) * 60 + seconds) * 1_000_000
        + fraction;
    Some((start, start + width))
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<i64> {
    b.get(at..at + n)?.iter().try_fold(0_i64, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
    })
}

fn expect(b: &[u8], at: usize, c: u8) -> Option<()> {
    (b.get(at) == Some(&c)).then_some(())
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Microseconds from the epoch to the start of a civil day (Howard Hinnant's `days_from_civil`).
fn day_start(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) * MICROS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = MICROS_PER_DAY;

    #[test]
    fn precisions() {
        assert_eq!(parse_range("1970"), Some((0, 365 * DAY)));
        assert_eq!(parse_range("1970-02"), Some((31 * DAY, 59 * DAY)));
        assert_eq!(parse_range("1970-01-02"), Some((DAY, 2 * DAY)));
        assert_eq!(
            parse_range("1970-01-01T00:01"),
            Some((60_000_000, 120_000_000))
        );
        assert_eq!(
            parse_range("1970-01-01T00:00:01Z"),
            Some((1_000_000, 2_000_000))
        );
        assert_eq!(
            parse_range("1970-01-01T00:00:00.5Z"),
            Some((500_000, 600_000))
        );
        assert_eq!(
            parse_range("1970-01-01T00:00:00.1234567Z"),
            Some((123_456, 123_457))
        );
        assert_eq!(
            parse_range("1970-01-01T01:00:00+01:00"),
            Some((0, 1_000_000))
        );
        assert_eq!(
            parse_range("1970-01-01T01:00:00 01:00"),
            Some((0, 1_000_000))
        );
        assert_eq!(
            parse_range("1969-12-31T23:00:00-01:00"),
            Some((0, 1_000_000))
        );
        assert_eq!(
            parse_range("2000-02-29"),
            Some((11_016 * DAY, 11_017 * DAY))
        );
        assert_eq!(
            parse_range("2000-12").map(|r| r.1),
            parse_range("2001").map(|r| r.0)
        );
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "197",
            "19700",
            "1970-13",
            "1970-02-30",
            "1970-01-01T",
            "1970-01-01T25:00",
            "1970-01-01T00:00:00.Z",
            "1970-01-01T00:00:00+1",
            "1970/01/01",
            "abcd",
        ] {
            assert_eq!(parse_range(s), None, "{s}");
        }
    }

    #[test]
    fn prefixes_compare_ranges() {
        let y2015 = parse_range("2015").unwrap();
        let jan1 = parse_range("2015-01-01").unwrap();
        let dec31 = parse_range("2014-12-31").unwrap();
        assert!(Prefix::Eq.admits(y2015, jan1) && !Prefix::Eq.admits(jan1, y2015));
        assert!(Prefix::Ne.admits(jan1, dec31));
        assert!(Prefix::Ge.admits(jan1, jan1) && !Prefix::Ge.admits(jan1, dec31));
        assert!(Prefix::Le.admits(jan1, dec31) && Prefix::Le.admits(jan1, jan1));
        assert!(Prefix::Gt.admits(dec31, jan1) && !Prefix::Gt.admits(y2015, jan1));
        assert!(Prefix::Lt.admits(jan1, dec31) && !Prefix::Lt.admits(y2015, jan1));
        assert!(Prefix::Sa.admits(dec31, jan1) && !Prefix::Sa.admits(dec31, (dec31.0, jan1.1)));
        assert!(Prefix::Eb.admits(jan1, dec31) && !Prefix::Eb.admits(jan1, (dec31.0, jan1.1)));
        // A Period open at the end (2014-12-31 .. ) is still going on after 2015.
        assert!(Prefix::Gt.admits(y2015, (dec31.0, i64::MAX)));
        assert!(!Prefix::Lt.admits(y2015, (jan1.0, i64::MAX)));
    }

    #[test]
    fn prefixes_compare_numbers() {
        assert!(
            Prefix::Eq.admits_number(100.0, 0.5, 100.4)
                && !Prefix::Eq.admits_number(100.0, 0.5, 100.5)
        );
        assert!(Prefix::Ne.admits_number(100.0, 0.5, 101.0));
        assert!(
            Prefix::Gt.admits_number(5.0, 0.5, 5.1) && !Prefix::Gt.admits_number(5.0, 0.5, 5.0)
        );
        assert!(Prefix::Ge.admits_number(5.0, 0.5, 5.0) && Prefix::Le.admits_number(5.0, 0.5, 5.0));
        assert!(Prefix::Lt.admits_number(5.0, 0.5, 4.9) && Prefix::Eb.admits_number(5.0, 0.5, 4.9));
        assert!(
            Prefix::Ap.admits_number(100.0, 0.5, 109.0)
                && !Prefix::Ap.admits_number(100.0, 0.5, 111.0)
        );
        assert_eq!(Prefix::split("ge5"), (Prefix::Ge, "5"));
        assert_eq!(Prefix::split("2015"), (Prefix::Eq, "2015"));
    }
}
