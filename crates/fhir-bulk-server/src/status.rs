//! Status polling (§4), the manifest (§5) and cancel (§6) on the `Content-Location` URL.
//! The manifest and its pages are built in [`crate::manifest`].

use crate::app::AppState;
use crate::auth::Caller;
use crate::base::Base;
use crate::config::FileUrls;
use crate::error::ApiError;
use crate::manifest::{Manifests, presigned_urls, requested_page};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_bulk_spec::instant::Instant;
use fhir_bulk_spec::manifest::Manifest;
use fhir_bulk_spec::outcome::{Severity, outcome};
use fhir_bulk_store::{Job, JobStatus, Unit};

/// The job `id` as its owner may see it: 404 for unknown, cancelled (D3) and other
/// tenants' or clients' jobs alike, so a job id reveals nothing; 404 after expiry too.
pub(crate) async fn visible_job(
    state: &AppState,
    base: &Base,
    caller: &Caller,
    id: &str,
) -> Result<Job, ApiError> {
    let not_found = || {
        ApiError::NotFound(format!(
            "no export job '{id}': it never existed, was cancelled with DELETE, expired, or belongs to another client"
        ))
    };
    let job = state
        .store
        .job(&base.tenant, id)
        .await?
        .ok_or_else(not_found)?;
    // A3: status and files belong to the client that started the job, not to a token.
    if job.client_id != caller.client_id
        || job.status == JobStatus::Cancelled
        || job.expires_at <= Instant::now()
    {
        return Err(not_found());
    }
    Ok(job)
}

/// `GET` status: 202 with `X-Progress`/`Retry-After` while running (ST3), 200 with the
/// manifest when complete (ST7), 500 with an OperationOutcome when failed (ST5). With
/// `allowPartialManifests`, a 202 carries the manifest pages ready so far and `?page=n`
/// selects a page (ST4, M8).
pub async fn poll(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &base, &caller, &id).await?;
    let page = requested_page(query.as_deref())?;
    // M3: presigned URLs need no token; ours need it whenever auth is on.
    let presigned = state.config.file_urls == FileUrls::Presigned;
    let manifests = Manifests::new(&base, &job, state.config.auth_enabled && !presigned)?;
    match job.status {
        JobStatus::Running => {
            let units = state.store.units(&job.id).await?;
            // Only a paged job shows files before it completes.
            let files = if manifests.paged() {
                state.store.files(&job.id).await?
            } else {
                Vec::new()
            };
            let manifests = if presigned {
                manifests.with_signed_urls(presigned_urls(&state, &job, &files).await?)
            } else {
                manifests
            };
            let (progress, retry_after) = progress(&job, &units, Instant::now());
            let mut resp = match manifests.page(&units, &files, page, false)? {
                Some(partial) => json_response(StatusCode::ACCEPTED, &partial)?,
                None => StatusCode::ACCEPTED.into_response(),
            };
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&progress) {
                h.insert("x-progress", v);
            }
            h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            Ok(resp)
        }
        JobStatus::Failed => Err(ApiError::JobFailed(format!(
            "export job {id} failed: {}",
            job.error.as_deref().unwrap_or("unknown reason")
        ))),
        JobStatus::Completed => {
            let units = state.store.units(&job.id).await?;
            let files = state.store.files(&job.id).await?;
            let manifests = if presigned {
                manifests.with_signed_urls(presigned_urls(&state, &job, &files).await?)
            } else {
                manifests
            };
            let manifest = manifests
                .page(&units, &files, page, true)?
                .ok_or_else(|| ApiError::Internal("a completed job has no manifest".into()))?;
            let mut resp = json_response(StatusCode::OK, &manifest)?;
            let h = resp.headers_mut();
            let expires = httpdate::fmt_http_date(job.expires_at.to_offset().into());
            if let Ok(v) = HeaderValue::from_str(&expires) {
                h.insert(header::EXPIRES, v);
            }
            Ok(resp)
        }
        JobStatus::Cancelled => unreachable!("visible_job hides cancelled jobs"),
    }
}

/// `DELETE` status: cancels a running job or releases a finished one (D1, D2); files are
/// purged by the engine and later polls answer 404 (D3).
pub async fn cancel(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &base, &caller, &id).await?;
    if !state.store.cancel_job(&base.tenant, &job.id).await? {
        return Err(ApiError::NotFound(format!("no export job '{id}'")));
    }
    tracing::info!(job = %id, "export job deleted by client");
    let body = outcome(
        Severity::Information,
        "informational",
        &format!("export job {id} deleted; its files will be removed"),
    );
    let mut resp = (StatusCode::ACCEPTED, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fhir_bulk_spec::FHIR_JSON),
    );
    Ok(resp)
}

/// `X-Progress` text (under 100 characters, ST3) and `Retry-After` seconds from the rate
/// so far: about a fifth of the time left, between 1 and 120 seconds.
pub(crate) fn progress(job: &Job, units: &[Unit], now: Instant) -> (String, u64) {
    let written: u64 = units.iter().map(|u| u.written).sum();
    let estimate: u64 = units.iter().map(|u| u.estimate).sum::<u64>().max(written);
    let done = units.iter().filter(|u| u.done).count();
    let pct = (written * 100).checked_div(estimate).unwrap_or(0).min(99);
    let text = format!(
        "in-progress: {pct}% ({} of ~{} resources, {done}/{} units)",
        group_digits(written),
        group_digits(estimate),
        units.len()
    );
    let elapsed = ((now.0 - job.created_at.0).max(0) as f64) / 1e6;
    let retry = if written == 0 || elapsed <= 0.0 {
        2
    } else {
        let rate = written as f64 / elapsed;
        let left = (estimate - written) as f64 / rate;
        (left / 5.0).ceil() as u64
    };
    (text, retry.clamp(1, 120))
}

fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A manifest (or manifest page) as `application/json` (ST4, ST7: plain JSON, not FHIR).
fn json_response(status: StatusCode, manifest: &Manifest) -> Result<Response, ApiError> {
    let body = serde_json::to_string(manifest).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(38473), "38,473");
        assert_eq!(group_digits(1234567), "1,234,567");
    }
}
