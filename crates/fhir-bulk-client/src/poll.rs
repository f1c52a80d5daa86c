//! Status polling until the manifest is complete (§4, CL4), then its `link.next` pages (M8).
//!
//! The pace comes from the server's `Retry-After` (seconds or HTTP-date) whenever it sends one
//! and from our exponential backoff otherwise, never faster than
//! [`Timings::min_poll_interval`]. 429 means "wait" (ST2), not failure. A 4xx/5xx with an
//! OperationOutcome is a failed job (ST5), unless all its issues carry a transient code; other
//! 5xx and network errors are retried, up to [`Timings::max_retries`] in a row.

use crate::backoff::{Backoff, Timings, retry_after};
use crate::error::{Error, Phase, Result};
use crate::kickoff::body_message;
use crate::observer::{Event, Observer};
use crate::transport::{Request, Transport, is_retryable_status};
use fhir_bulk_spec::manifest::Manifest;
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use serde_json::Value;
use std::time::{Duration, Instant, SystemTime};
use url::Url;

/// Issue codes that mean "only this poll failed, retry" (ST5).
pub const TRANSIENT_ISSUE_CODES: &[&str] = &[
    "transient",
    "lock-error",
    "no-store",
    "exception",
    "timeout",
    "incomplete",
    "throttled",
];

/// True for an OperationOutcome whose error issues all carry a transient code (ST5).
pub fn is_transient_outcome(v: &Value) -> bool {
    if v.get("resourceType").and_then(Value::as_str) != Some("OperationOutcome") {
        return false;
    }
    let Some(issues) = v.get("issue").and_then(Value::as_array) else {
        return false;
    };
    let errors: Vec<&Value> = issues
        .iter()
        .filter(|i| {
            matches!(
                i.get("severity").and_then(Value::as_str),
                Some("error" | "fatal") | None
            )
        })
        .collect();
    !errors.is_empty()
        && errors.iter().all(|i| {
            i.get("code")
                .and_then(Value::as_str)
                .is_some_and(|c| TRANSIENT_ISSUE_CODES.contains(&c))
        })
}

/// The status code in `X-Export-Status` (`202 Accepted`, `200 OK`, `500 …`, K6).
fn export_status(resp: &reqwest::Response) -> Option<StatusCode> {
    let text = resp.headers().get("x-export-status")?.to_str().ok()?;
    let code: u16 = text.trim().get(..3)?.parse().ok()?;
    StatusCode::from_u16(code).ok()
}

/// A complete manifest: parsed, and as the server sent it (pages merged) for `manifest.json`.
pub(crate) struct Completed {
    pub manifest: Manifest,
    pub raw: Value,
}

/// Everything a poll loop needs besides the URL.
pub(crate) struct PollContext<'a> {
    pub transport: &'a Transport,
    pub timings: &'a Timings,
    pub deadline: Instant,
    pub kicked_off_at: SystemTime,
    pub observer: &'a dyn Observer,
}

impl PollContext<'_> {
    async fn wait(&self, delay: Duration) -> Result<()> {
        if Instant::now() + delay > self.deadline {
            return Err(Error::Timeout(self.timings.timeout));
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }

    fn retrying(&self, reason: String, delay: Duration) {
        tracing::warn!(
            "status poll: {reason}; retrying in {}",
            crate::error::humanize(delay)
        );
        self.observer.event(&Event::Retrying {
            phase: Phase::Poll,
            reason,
            delay,
        });
    }
}

/// Polls `status_url` until the job completes, and returns the whole manifest.
pub(crate) async fn wait_for_manifest(
    ctx: &PollContext<'_>,
    status_url: &Url,
) -> Result<Completed> {
    let timings = ctx.timings;
    let mut pace = Backoff::new(timings.initial_poll_interval, timings.max_poll_interval);
    let mut failures = Backoff::new(timings.retry_initial, timings.retry_max);
    let req = Request::get(status_url.clone()).header(ACCEPT, "application/json");
    loop {
        let resp = match ctx.transport.send(Phase::Poll, &req).await {
            Ok(resp) => resp,
            Err(e @ Error::Http { .. }) => {
                if failures.attempts() >= timings.max_retries {
                    return Err(e);
                }
                let delay = failures.next_delay().max(timings.min_poll_interval);
                ctx.retrying(e.to_string(), delay);
                ctx.wait(delay).await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        let http_status = resp.status();
        let status = match export_status(&resp) {
            Some(s) if http_status == StatusCode::OK => s,
            _ => http_status,
        };
        let asked = retry_after(resp.headers());
        if status == StatusCode::OK {
            let body = resp.bytes().await.map_err(|e| Error::Http {
                phase: Phase::Poll,
                url: crate::secret::redact_url(status_url.as_str()),
                message: crate::transport::describe(e),
                connect: false,
            });
            let body = match body {
                Ok(body) => body,
                Err(e) if failures.attempts() < timings.max_retries => {
                    let delay = failures.next_delay().max(timings.min_poll_interval);
                    ctx.retrying(e.to_string(), delay);
                    ctx.wait(delay).await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            return follow_pages(ctx, &body).await;
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            // ST2: we polled too often; the server's pace wins, ours slows down too.
            let delay = asked
                .unwrap_or_else(|| pace.next_delay())
                .max(timings.min_poll_interval);
            ctx.retrying("HTTP 429 Too Many Requests".into(), delay);
            ctx.wait(delay).await?;
            continue;
        }
        if status.is_client_error() || status.is_server_error() {
            let body = resp.bytes().await.unwrap_or_default();
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let is_outcome =
                v.get("resourceType").and_then(Value::as_str) == Some("OperationOutcome");
            let transient = if is_outcome {
                is_transient_outcome(&v)
            } else {
                is_retryable_status(status)
            };
            let message = body_message(&body, status);
            if !transient || failures.attempts() >= timings.max_retries {
                return Err(Error::ExportFailed {
                    status: status.as_u16(),
                    message,
                });
            }
            let delay = asked
                .unwrap_or_else(|| failures.next_delay())
                .max(timings.min_poll_interval);
            ctx.retrying(format!("HTTP {}: {message}", status.as_u16()), delay);
            ctx.wait(delay).await?;
            continue;
        }
        // 202 (or any other non-final answer): still running.
        failures.reset();
        let progress = resp
            .headers()
            .get("x-progress")
            .and_then(|v| v.to_str().ok())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let percent = progress
            .as_deref()
            .and_then(fhir_bulk_spec::progress::progress_percent);
        let delay = asked
            .unwrap_or_else(|| pace.next_delay())
            .max(timings.min_poll_interval);
        if resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|c| c.to_str().unwrap_or("").contains("json"))
        {
            // ST4: a partial manifest. Its files are fetched with the complete one, which
            // SHALL list them again unchanged; reading it here only informs the user.
            if let Ok(m) = Manifest::parse_lenient(&resp.bytes().await.unwrap_or_default()) {
                tracing::info!("partial manifest: {} file(s) ready so far", m.output.len());
            }
        }
        let elapsed = SystemTime::now()
            .duration_since(ctx.kicked_off_at)
            .unwrap_or_default();
        ctx.observer.event(&Event::Polling {
            elapsed,
            progress,
            percent,
            next_poll_in: delay,
        });
        ctx.wait(delay).await?;
    }
}

/// Parses the first manifest page and appends the `output`, `deleted` and `error` of every
/// `link.next` page (M8) to it.
async fn follow_pages(ctx: &PollContext<'_>, first: &[u8]) -> Result<Completed> {
    let mut manifest =
        Manifest::parse_lenient(first).map_err(|e| Error::Manifest(e.to_string()))?;
    let mut raw: Value =
        serde_json::from_slice(first).map_err(|e| Error::Manifest(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    let mut next = manifest.next_link().map(str::to_string);
    while let Some(link) = next.take() {
        if !seen.insert(link.clone()) {
            return Err(Error::Manifest(format!(
                "manifest page {link} links back to an earlier page"
            )));
        }
        let url = Url::parse(&link)
            .map_err(|e| Error::Manifest(format!("bad link.next '{link}': {e}")))?;
        let req = Request::get(url).header(ACCEPT, "application/json");
        let resp = ctx
            .transport
            .send_retrying(Phase::Poll, &req, ctx.timings)
            .await?;
        let status = resp.status();
        let body = resp.bytes().await.unwrap_or_default();
        if status != StatusCode::OK {
            // M8 lets a client keep a partial result; silently missing files is worse.
            return Err(Error::ExportFailed {
                status: status.as_u16(),
                message: format!("manifest page: {}", body_message(&body, status)),
            });
        }
        let page = Manifest::parse_lenient(&body).map_err(|e| Error::Manifest(e.to_string()))?;
        let page_raw: Value =
            serde_json::from_slice(&body).map_err(|e| Error::Manifest(e.to_string()))?;
        for field in ["output", "deleted", "error", "outcome"] {
            if let Some(items) = page_raw.get(field).and_then(Value::as_array) {
                match raw.get_mut(field).and_then(Value::as_array_mut) {
                    Some(into) => into.extend(items.iter().cloned()),
                    None => raw[field] = Value::Array(items.clone()),
                }
            }
        }
        next = page.next_link().map(str::to_string);
        manifest.output.extend(page.output);
        manifest.deleted.extend(page.deleted);
        manifest.error.extend(page.error);
    }
    manifest.link.clear();
    if let Some(obj) = raw.as_object_mut() {
        obj.remove("link");
    }
    Ok(Completed { manifest, raw })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// ST5: transient issue codes mean "retry", others a failed job.
    #[test]
    fn transient_outcomes_st5() {
        let oo = |code: &str| json!({"resourceType":"OperationOutcome","issue":[{"severity":"error","code":code}]});
        assert!(is_transient_outcome(&oo("transient")));
        assert!(is_transient_outcome(&oo("throttled")));
        assert!(!is_transient_outcome(&oo("processing")));
        assert!(!is_transient_outcome(
            &json!({"resourceType":"OperationOutcome","issue":[]})
        ));
        let mixed = json!({"resourceType":"OperationOutcome","issue":[
            {"severity":"error","code":"timeout"},{"severity":"error","code":"invalid"}]});
        assert!(!is_transient_outcome(&mixed));
        let with_info = json!({"resourceType":"OperationOutcome","issue":[
            {"severity":"information","code":"informational"},{"severity":"error","code":"lock-error"}]});
        assert!(is_transient_outcome(&with_info));
        assert!(!is_transient_outcome(&json!({"resourceType":"Patient"})));
    }
}
