//! How long to wait between polls and retries (ST1, ST2, CL4).
//!
//! Servers ask for a pace with `Retry-After` and we follow it. Without it we back off
//! exponentially with jitter, so a crowd of clients restarted together does not poll in step,
//! and a cap bounds the worst-case latency of noticing that a job is done. All the numbers live
//! in [`Timings`] so tests can run the same code in milliseconds; the CLI enforces ≥ 1 s.

use rand::Rng;
use std::time::{Duration, SystemTime};

/// Every wait, limit and timeout of an export.
#[derive(Debug, Clone)]
pub struct Timings {
    /// Never poll faster than this, whatever `Retry-After` says (ST2: over-frequent polling
    /// earns 429s). The CLI keeps it at ≥ 1 s; tests lower it.
    pub min_poll_interval: Duration,
    /// The first wait between polls when the server sends no `Retry-After`.
    pub initial_poll_interval: Duration,
    /// The cap of the exponential poll backoff (`--max-poll-interval`).
    pub max_poll_interval: Duration,
    /// The first wait before retrying a failed request (429, transient 5xx, network error).
    pub retry_initial: Duration,
    /// The cap of the retry backoff.
    pub retry_max: Duration,
    /// Retries of one request (or consecutive failed polls) before giving up.
    pub max_retries: u32,
    /// How long the whole export may take in this run (`--timeout`).
    pub timeout: Duration,
    /// TCP/TLS connect timeout of each request.
    pub connect_timeout: Duration,
    /// Longest silence while reading a response before the request counts as failed.
    pub read_timeout: Duration,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            min_poll_interval: Duration::from_secs(1),
            initial_poll_interval: Duration::from_secs(2),
            max_poll_interval: Duration::from_secs(60),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(30),
            max_retries: 8,
            timeout: Duration::from_secs(24 * 3600),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(120),
        }
    }
}

/// Exponential backoff with "equal jitter": attempt `n` waits between half and all of
/// `min(cap, base·2ⁿ)`, so the wait still grows while no two clients stay in lock-step.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting near `base` and never above `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1u32 << self.attempt.min(20));
        let full = exp.min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = full / 2;
        let jitter_nanos =
            rand::thread_rng().gen_range(0..=half.as_nanos().min(u64::MAX as u128) as u64);
        half + Duration::from_nanos(jitter_nanos)
    }

    /// Start over, e.g. after a successful request.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// The wait a response asks for: its `Retry-After` if present and readable, else `fallback`.
pub(crate) fn retry_after_or(headers: &reqwest::header::HeaderMap, fallback: Duration) -> Duration {
    retry_after(headers).unwrap_or(fallback)
}

/// The `Retry-After` of a response (seconds or HTTP-date, ST1), if any.
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| fhir_bulk_spec::progress::retry_after(v, SystemTime::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_cap() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(60));
        let expected_full = [2, 4, 8, 16, 32, 60, 60, 60];
        for full in expected_full {
            let d = b.next_delay();
            let full = Duration::from_secs(full);
            assert!(
                d >= full / 2 && d <= full,
                "{d:?} not within [{:?}, {full:?}]",
                full / 2
            );
        }
        assert_eq!(b.attempts(), 8);
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(2));
    }

    #[test]
    fn jitter_spreads_clients() {
        let delays: std::collections::HashSet<Duration> = (0..20)
            .map(|_| Backoff::new(Duration::from_secs(8), Duration::from_secs(60)).next_delay())
            .collect();
        assert!(delays.len() > 1, "jitter should vary the delay");
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(50));
        for _ in 0..100 {
            assert!(b.next_delay() <= Duration::from_millis(50));
        }
    }

    #[test]
    fn cap_below_base_is_raised_to_base() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        assert!(b.next_delay() <= Duration::from_secs(2));
    }

    #[test]
    fn reads_retry_after_in_both_forms() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let mut h = HeaderMap::new();
        assert_eq!(
            retry_after_or(&h, Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(
            d > Duration::from_secs(28) && d <= Duration::from_secs(30),
            "{d:?}"
        );
    }
}
