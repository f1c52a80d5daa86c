//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! One [`Metrics`] (with its own registry) per server, in [`AppState`] and the engine: no
//! global recorder, so several servers in one process (the tests) never share numbers.
//!
//! - `fhir_bulk_export_jobs{state}`, `fhir_bulk_export_units{state}`: gauges read from the
//!   store at scrape time. The queue is shared by all nodes, so every node reports the same
//!   numbers (aggregate with `max`, not `sum`). Units are those of running jobs.
//! - `fhir_bulk_exported_resources_total{kind,resource_type}`,
//!   `fhir_bulk_exported_bytes_total{kind,resource_type}`: lines and bytes of committed files,
//!   counted by the node that committed them (sum across nodes). `kind` is the manifest list
//!   (`output`, `deleted`, `error`); `resource_type` is `mixed` for `organizeOutputBy` files.
//! - `fhir_bulk_export_duration_seconds`: kick-off to completion of completed jobs, observed
//!   by the node that commits a job's last unit.
//! - `fhir_bulk_http_requests_total{method,route,status}` and
//!   `fhir_bulk_http_request_duration_seconds{method,route,status}` (time to the response
//!   head; a download's body streams afterwards). `route` is the route template
//!   (`/fhir/bulk-status/{job}`), never the raw path, or `unmatched` (no route: 404s, 405s,
//!   and requests the tenant gate refuses). Tenants share a template: `/{tenant}/fhir/x` is
//!   routed as `/fhir/x`.
//! - `fhir_bulk_token_failures_total{reason}`: refused token requests ([`TokenFailure`]).
//!
//! Label values are bounded sets we control; nothing from a client (ids, tenants, client
//! ids, credentials) becomes a label.
//!
//! [`AppState`]: crate::app::AppState

use crate::app::AppState;
use crate::auth::secret::secrets_equal;
use crate::error::ApiError;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fhir_bulk_store::{FileKind, JobFile, JobStatus, Store, UnitKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::Arc;
use std::time::Duration;

/// How long a scrape waits for the queue counts before answering without them.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(2);

/// OpenMetrics, which is what `prometheus-client` writes (Prometheus reads it).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Job states always reported (0 when none), so a series does not vanish when it empties.
const JOB_STATES: [JobStatus; 4] = [
    JobStatus::Running,
    JobStatus::Completed,
    JobStatus::Failed,
    JobStatus::Cancelled,
];

/// Unit states of the store's `job_units.status`.
const UNIT_STATES: [&str; 3] = ["pending", "leased", "done"];

/// HTTP latency buckets, in seconds.
const HTTP_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Why the token endpoint refused a request: the RFC 6749 `error` code, or a finer reason
/// where operators act differently on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFailure {
    /// Malformed request (`invalid_request`).
    InvalidRequest,
    /// `grant_type` other than `client_credentials`.
    UnsupportedGrantType,
    /// Authentication failed (bad signature, wrong secret, expired assertion…).
    InvalidClient,
    /// The client id is not registered (misconfigured or removed client).
    UnknownClient,
    /// An assertion's `jti` was used before (J3).
    Replay,
    /// No requested scope can be granted.
    InvalidScope,
    /// Our fault (store down…).
    ServerError,
}

impl TokenFailure {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFailure::InvalidRequest => "invalid_request",
            TokenFailure::UnsupportedGrantType => "unsupported_grant_type",
            TokenFailure::InvalidClient => "invalid_client",
            TokenFailure::UnknownClient => "unknown_client",
            TokenFailure::Replay => "replay",
            TokenFailure::InvalidScope => "invalid_scope",
            TokenFailure::ServerError => "server_error",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExportLabels {
    kind: &'static str,
    resource_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

/// The metrics of one server.
pub struct Metrics {
    registry: Registry,
    jobs: Family<StateLabels, Gauge>,
    units: Family<StateLabels, Gauge>,
    resources: Family<ExportLabels, Counter>,
    bytes: Family<ExportLabels, Counter>,
    export_duration: Histogram,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: Family<HttpLabels, Histogram, fn() -> Histogram>,
    token_failures: Family<ReasonLabels, Counter>,
    /// One scrape at a time: refreshing the gauges and encoding must not interleave.
    scrape: tokio::sync::Mutex<()>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("fhir_bulk");
        let jobs = Family::<StateLabels, Gauge>::default();
        registry.register(
            "export_jobs",
            "Export jobs by state, across all nodes (read from the store at scrape time)",
            jobs.clone(),
        );
        let units = Family::<StateLabels, Gauge>::default();
        registry.register(
            "export_units",
            "Units of running export jobs by state, across all nodes (read from the store at scrape time)",
            units.clone(),
        );
        let resources = Family::<ExportLabels, Counter>::default();
        registry.register(
            "exported_resources",
            "Lines of export files committed by this node",
            resources.clone(),
        );
        let bytes = Family::<ExportLabels, Counter>::default();
        registry.register_with_unit(
            "exported",
            "Bytes of export files committed by this node",
            Unit::Bytes,
            bytes.clone(),
        );
        // 0.25 s to 4.5 h.
        let export_duration = Histogram::new(exponential_buckets(0.25, 2.0, 17));
        registry.register_with_unit(
            "export_duration",
            "Kick-off to completion of export jobs completed by this node",
            Unit::Seconds,
            export_duration.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            http_requests.clone(),
        );
        let http_duration =
            Family::<HttpLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                http_histogram,
            );
        registry.register_with_unit(
            "http_request_duration",
            "Time to the response head, by method, route template and status",
            Unit::Seconds,
            http_duration.clone(),
        );
        let token_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "token_failures",
            "Requests refused by the token endpoint, by reason",
            token_failures.clone(),
        );
        Metrics {
            registry,
            jobs,
            units,
            resources,
            bytes,
            export_duration,
            http_requests,
            http_duration,
            token_failures,
            scrape: tokio::sync::Mutex::new(()),
        }
    }

    /// The text of a scrape: gauges refreshed from `store`, then every metric.
    pub async fn render(&self, store: &dyn Store) -> String {
        let _one = self.scrape.lock().await;
        match tokio::time::timeout(QUEUE_TIMEOUT, store.queue_counts()).await {
            Ok(Ok(q)) => {
                set_states(&self.jobs, JOB_STATES.map(JobStatus::as_str), &q.jobs);
                set_states(&self.units, UNIT_STATES, &q.units);
            }
            failed => {
                // No numbers beat stale ones: the series go missing and alerts on absence fire.
                match failed {
                    Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot count the job queue"),
                    _ => tracing::warn!("metrics: counting the job queue timed out"),
                }
                self.jobs.clear();
                self.units.clear();
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }

    /// What a unit's files add to the export counters, taken before the files move into the
    /// store call and recorded with [`Metrics::exported`] once the commit succeeded.
    pub(crate) fn tally(&self, unit: UnitKind, files: &[JobFile]) -> Tally {
        Tally(
            files
                .iter()
                .map(|f| {
                    let kind = match f.kind {
                        FileKind::Output => "output",
                        FileKind::Deleted => "deleted",
                        FileKind::Error => "error",
                    };
                    let resource_type = if unit == UnitKind::Organized {
                        "mixed".to_string()
                    } else {
                        label(&f.resource_type)
                    };
                    (
                        ExportLabels {
                            kind,
                            resource_type,
                        },
                        f.count,
                        f.bytes,
                    )
                })
                .collect(),
        )
    }

    /// Counts the files of a committed unit.
    pub(crate) fn exported(&self, tally: Tally) {
        for (labels, count, bytes) in tally.0 {
            self.resources.get_or_create(&labels).inc_by(count);
            self.bytes.get_or_create(&labels).inc_by(bytes);
        }
    }

    /// A job completed after `seconds`.
    pub(crate) fn export_completed(&self, seconds: f64) {
        self.export_duration.observe(seconds.max(0.0));
    }

    /// A refused token request.
    pub fn token_failure(&self, reason: TokenFailure) {
        self.token_failures
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    fn http(&self, labels: HttpLabels, elapsed: Duration) {
        self.http_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        self.http_requests.get_or_create(&labels).inc();
    }
}

/// Export counts of one unit, waiting for its commit.
pub(crate) struct Tally(Vec<(ExportLabels, u64, u64)>);

/// Sets a gauge per known state (0 when the store has none) and per other state it reports.
fn set_states<const N: usize>(
    family: &Family<StateLabels, Gauge>,
    known: [&str; N],
    counts: &[(String, u64)],
) {
    for state in known {
        let n = counts
            .iter()
            .find(|(s, _)| s == state)
            .map_or(0, |(_, n)| *n);
        family
            .get_or_create(&StateLabels {
                state: state.to_string(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    for (state, n) in counts.iter().filter(|(s, _)| !known.contains(&s.as_str())) {
        family
            .get_or_create(&StateLabels {
                state: label(state),
            })
            .set(i64::try_from(*n).unwrap_or(i64::MAX));
    }
}

/// A label value from the store: the text encoder does not escape, so anything outside a
/// plain identifier becomes `other` (FHIR type names and our states always are plain).
fn label(s: &str) -> String {
    if !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        s.to_string()
    } else {
        "other".to_string()
    }
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        // Any other method is client-chosen text: one label for all of them.
        _ => "other",
    }
}

/// The route template of a response, set by [`tag_route`] inside the router that matched.
#[derive(Clone)]
struct RouteTemplate(Arc<str>);

/// Route layer: passes the matched route template out to [`track_http`] on the response,
/// because the FHIR routes are matched in a router nested behind the tenant gate, where the
/// outer middleware cannot see `MatchedPath`.
pub async fn tag_route(req: Request, next: Next) -> Response {
    let matched = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| RouteTemplate(Arc::from(m.as_str())));
    let mut resp = next.run(req).await;
    if let Some(m) = matched {
        resp.extensions_mut().insert(m);
    }
    resp
}

/// Outermost middleware: counts and times every request, matched or not.
pub async fn track_http(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    let route = resp
        .extensions()
        .get::<RouteTemplate>()
        .map_or_else(|| "unmatched".to_string(), |r| r.0.to_string());
    metrics.http(
        HttpLabels {
            method,
            route,
            status: resp.status().as_u16(),
        },
        started.elapsed(),
    );
    resp
}

/// `GET /metrics`. Open by default (Prometheus scrapes the listener); with a metrics token
/// configured it needs `Authorization: Bearer <token>`.
pub async fn scrape(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        match given {
            Some(t) if secrets_equal(t, expected.expose()) => {}
            Some(_) => {
                return Err(ApiError::Unauthorized(
                    "the metrics token is not right".into(),
                ));
            }
            None => {
                return Err(ApiError::NoToken(
                    "/metrics needs the metrics token: Authorization: Bearer <token>".into(),
                ));
            }
        }
    }
    let body = state.metrics.render(state.store.as_ref()).await;
    let mut resp = body.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_plain() {
        assert_eq!(label("Observation"), "Observation");
        assert_eq!(label("a\"b"), "other");
        assert_eq!(label("x\ny"), "other");
        assert_eq!(label(""), "other");
    }

    #[test]
    fn names_follow_the_conventions() {
        let m = Metrics::new();
        m.token_failure(TokenFailure::Replay);
        m.export_completed(3.0);
        m.exported(m.tally(
            UnitKind::Output,
            &[JobFile {
                name: "a".into(),
                unit_seq: 1,
                kind: FileKind::Output,
                resource_type: "Patient".into(),
                count: 5,
                bytes: 100,
            }],
        ));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        for line in [
            "fhir_bulk_token_failures_total{reason=\"replay\"} 1",
            "fhir_bulk_export_duration_seconds_count 1",
            "fhir_bulk_exported_resources_total{kind=\"output\",resource_type=\"Patient\"} 5",
            "fhir_bulk_exported_bytes_total{kind=\"output\",resource_type=\"Patient\"} 100",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing in\n{out}");
        }
    }
}
