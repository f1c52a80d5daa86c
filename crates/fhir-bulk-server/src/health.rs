//! Health probes at the server root (not under a FHIR base, no auth, no tenant).
//!
//! - `GET /health/live`: 200 while the process serves HTTP. Checks nothing else, so an
//!   orchestrator restarts us only when we are truly stuck, not when the database is.
//! - `GET /health/ready`: 200 when the store answers a ping and the sink is usable, each
//!   within [`CHECK_TIMEOUT`]; else 503 with an OperationOutcome naming the dependency that
//!   failed. Causes are logged, never sent: they may hold host names or credentials.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_bulk_spec::outcome::{Severity, outcome};
use std::time::Duration;

/// How long each readiness check may take: a probe that hangs is a failed probe.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /health/live`.
pub async fn live() -> Response {
    ok("live: this process serves HTTP")
}

/// `GET /health/ready`.
pub async fn ready(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (db, sink) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, state.store.ping()),
        tokio::time::timeout(CHECK_TIMEOUT, state.sink.check()),
    );
    let mut failed = Vec::new();
    match db {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the database check failed");
            failed.push("the database does not answer".to_string());
        }
        Err(_) => {
            tracing::warn!("readiness: the database check timed out");
            failed.push(format!(
                "the database did not answer within {} s",
                CHECK_TIMEOUT.as_secs()
            ));
        }
    }
    match sink {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the export file store check failed");
            failed.push("the export file store (sink) is not usable".to_string());
        }
        Err(_) => {
            tracing::warn!("readiness: the export file store check timed out");
            failed.push(format!(
                "the export file store (sink) did not answer within {} s",
                CHECK_TIMEOUT.as_secs()
            ));
        }
    }
    if failed.is_empty() {
        Ok(ok("ready: the database and the export file store answer"))
    } else {
        Err(ApiError::Unavailable(format!(
            "not ready: {}",
            failed.join("; ")
        )))
    }
}

fn ok(diagnostics: &str) -> Response {
    let body = outcome(Severity::Information, "informational", diagnostics).to_string();
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fhir_bulk_spec::FHIR_JSON),
    );
    // A cached probe answer is a wrong one.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
