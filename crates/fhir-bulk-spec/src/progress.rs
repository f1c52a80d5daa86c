//! `X-Progress` and `Retry-After` as clients meet them in the wild.
//!
//! Both headers arrive on status polls (ST1, ST3). `X-Progress` is free text (V3): servers send
//! `Build in progress - Status set to IN_PROGRESS at …` (HAPI), `42% complete, …` (reference
//! server), `in-progress` (Oracle), `Running (45% complete)`. The IG says a client must not
//! branch on it, so [`progress_percent`] is for display only. `Retry-After` (RFC 9110 §10.2.3)
//! is either delay-seconds or an HTTP-date; [`retry_after`] turns both into a delay relative to
//! a `now` the caller passes in, which keeps this module pure and testable.

use std::time::{Duration, SystemTime};

/// The percentage in an `X-Progress` text, matched like the regex `(\d{1,3})\s*%` (V3).
///
/// Returns the first match whose value is at most 100 (a `250%` is noise, not progress).
/// `None` when the text carries no percentage, e.g. HAPI's or Oracle's status words.
pub fn progress_percent(text: &str) -> Option<u8> {
    let bytes = text.as_bytes();
    for (pos, _) in text.match_indices('%') {
        // Walk back over `\s*`, then take up to three digits: the regex's leftmost match
        // for "1234%" is "234%", so the digits nearest the `%` are the ones that count.
        let mut end = pos;
        while end > 0 && bytes[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        let mut start = end;
        while start > 0 && end - start < 3 && bytes[start - 1].is_ascii_digit() {
            start -= 1;
        }
        if start == end {
            continue;
        }
        let value: u32 = text[start..end].parse().ok()?;
        if value <= 100 {
            return Some(value as u8);
        }
    }
    None
}

/// The delay a `Retry-After` value asks for, relative to `now`.
///
/// Accepts delay-seconds (`120`) and the three HTTP-date forms RFC 9110 requires recipients to
/// read: IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 and asctime. A date in the past
/// means "retry now" ([`Duration::ZERO`]). `None` for anything else, so callers fall back to
/// their own backoff rather than to an arbitrary guess.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Saturate absurdly long values instead of rejecting them; callers cap by deadline.
        let secs = value.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// V3: every `X-Progress` style listed in the checklist.
    #[test]
    fn percent_from_vendor_texts_v3() {
        assert_eq!(progress_percent("42%"), Some(42));
        assert_eq!(progress_percent("50% complete"), Some(50));
        assert_eq!(progress_percent("\u{201c}50% complete\u{201d}"), Some(50));
        assert_eq!(progress_percent("Running (45% complete)"), Some(45));
        assert_eq!(progress_percent("7 % done, writing Observation"), Some(7));
        assert_eq!(progress_percent("100%"), Some(100));
        assert_eq!(progress_percent("0%"), Some(0));
        assert_eq!(
            progress_percent(
                "Build in progress - Status set to IN_PROGRESS at 2024-01-01T00:00:00Z"
            ),
            None
        );
        assert_eq!(progress_percent("in-progress"), None);
        assert_eq!(progress_percent(""), None);
        assert_eq!(progress_percent("%"), None);
        assert_eq!(progress_percent("% 12"), None);
    }

    #[test]
    fn percent_takes_the_digits_next_to_the_sign_and_skips_values_over_100() {
        // `(\d{1,3})\s*%` on "1234%" matches "234%": over 100, so no percentage.
        assert_eq!(progress_percent("1234%"), None);
        assert_eq!(progress_percent("step 2: 250% then 30%"), Some(30));
        assert_eq!(progress_percent("batch 3 of 10, 030%"), Some(30));
    }

    /// ST1: `Retry-After` in seconds.
    #[test]
    fn retry_after_seconds_st1() {
        let now = SystemTime::now();
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(" 1 ", now), Some(Duration::from_secs(1)));
        assert_eq!(retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("1.5", now), None);
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("", now), None);
    }

    /// ST1: `Retry-After` as an HTTP-date, in all three RFC 9110 forms.
    #[test]
    fn retry_after_http_date_st1() {
        // 1994-11-06T08:49:37Z
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        let now = at - Duration::from_secs(90);
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                retry_after(text, now),
                Some(Duration::from_secs(90)),
                "{text}"
            );
        }
        // A date already past: retry at once.
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at + Duration::from_secs(5)),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("Sun, 06 Nov 1994 25:49:37 GMT", now), None);
    }
}
