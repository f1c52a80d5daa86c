//! Tenants at the HTTP edge: which tenant a path is for, whether it exists, and its request
//! rate.
//!
//! Single-tenant installs (the default) serve the plain `/fhir` base and this module does
//! nothing. With `serve --tenants`, [`route`] runs in front of the router: `/{tenant}/fhir/…`
//! of a tenant in the store is rewritten to `/fhir/…` (the original URI stays in
//! `OriginalUri`, so [`crate::base::Base`] still sees the tenant and every link stays under
//! the tenant's base), an unknown tenant is a 404 OperationOutcome, and a tenant over its
//! request rate is a 429 with `Retry-After`. `/fhir` stays the default tenant's base, so
//! turning tenants on breaks no existing client.
//!
//! Limits: the request rate is a token bucket per tenant **in memory, per node** (N nodes
//! allow up to N times the rate; what a load balancer spreads evenly stays close to it).
//! Concurrent exports are counted in the store at kick-off, so that limit holds across
//! nodes (`kickoff.rs`).

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::{OriginalUri, Request, State};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fhir_bulk_store::DEFAULT_TENANT;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Longest tenant id.
const MAX_ID_LEN: usize = 64;

/// Checks a new tenant id: 1–64 ASCII letters, digits, `-` and `.`, starting with a letter
/// or digit, and not `fhir` (which would make `/fhir/fhir/…` ambiguous). The id is the first
/// segment of the tenant's base, so it must be a plain URL segment.
pub fn validate_id(id: &str) -> Result<(), String> {
    let ok_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let ok_start = id.starts_with(|c: char| c.is_ascii_alphanumeric());
    if id.is_empty() || id.len() > MAX_ID_LEN || !ok_chars || !ok_start {
        return Err(format!(
            "'{id}' is not a tenant id: use 1 to {MAX_ID_LEN} letters, digits, '-' or '.', starting with a letter or digit"
        ));
    }
    if id.eq_ignore_ascii_case("fhir") {
        return Err("'fhir' cannot be a tenant id: it is the name of every FHIR base".into());
    }
    Ok(())
}

/// Where a request path points.
#[derive(Debug, PartialEq)]
enum Target<'a> {
    /// `/fhir` or `/fhir/…`: the default tenant.
    Default,
    /// `/{tenant}/fhir` or `/{tenant}/fhir/…`, with what follows the tenant.
    Tenant(&'a str, &'a str),
    /// Anything else (the router answers 404).
    Elsewhere,
}

fn target(path: &str) -> Target<'_> {
    let Some(rest) = path.strip_prefix('/') else {
        return Target::Elsewhere;
    };
    let (first, after) = rest.split_once('/').unwrap_or((rest, ""));
    if first == "fhir" {
        return Target::Default;
    }
    let under = &path[1 + first.len()..];
    if !first.is_empty() && (after == "fhir" || after.starts_with("fhir/")) {
        Target::Tenant(first, under)
    } else {
        Target::Elsewhere
    }
}

/// The middleware in front of the router (see the module doc).
pub async fn route(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if !state.config.tenants_enabled {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let (tenant, rewritten) = match target(&path) {
        Target::Elsewhere => return next.run(req).await,
        Target::Default => (DEFAULT_TENANT.to_string(), None),
        Target::Tenant(t, _) if t == DEFAULT_TENANT => {
            return ApiError::NotFound(format!(
                "the default tenant's FHIR base is /fhir, not /{t}/fhir"
            ))
            .into_response();
        }
        Target::Tenant(t, under) => (t.to_string(), Some(under.to_string())),
    };
    let found = match state.store.tenant(&tenant).await {
        Ok(found) => found,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let Some(found) = found else {
        return ApiError::NotFound(format!(
            "there is no tenant '{tenant}' on this server, so nothing at {path}"
        ))
        .into_response();
    };
    if let Some(rate) = found.rate_per_second
        && let Err(retry_after) = state.limiter.take(&tenant, rate, Instant::now())
    {
        return ApiError::TooManyRequests {
            message: format!(
                "tenant '{tenant}' is over its request rate ({rate} per second); retry in {retry_after} s"
            ),
            retry_after,
        }
        .into_response();
    }
    if let Some(under) = rewritten {
        let original = req.uri().clone();
        let path_and_query = match original.query() {
            Some(q) => format!("{under}?{q}"),
            None => under,
        };
        let mut parts = original.clone().into_parts();
        parts.path_and_query = match path_and_query.parse() {
            Ok(pq) => Some(pq),
            Err(_) => {
                return ApiError::BadRequest(format!("cannot route {path}")).into_response();
            }
        };
        let Ok(uri) = Uri::from_parts(parts) else {
            return ApiError::BadRequest(format!("cannot route {path}")).into_response();
        };
        // `Base` reads the tenant from the URI as the client sent it.
        if req.extensions().get::<OriginalUri>().is_none() {
            req.extensions_mut().insert(OriginalUri(original));
        }
        *req.uri_mut() = uri;
    }
    next.run(req).await
}

/// Token buckets of the tenants' request rates, in this process only (see the module doc).
///
/// Concurrency: one `std::sync::Mutex` over the map, held for a few arithmetic operations
/// and never across an `.await`; a bucket is created on a tenant's first request and lives
/// as long as the server (one small entry per tenant).
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    /// Requests that may be made right now (fractional while refilling).
    tokens: f64,
    /// When `tokens` was computed.
    at: Instant,
}

impl RateLimiter {
    /// Takes one request of `tenant`'s allowance of `rate` per second (bursts up to one
    /// second's worth, at least one request). `Err(seconds)` when none is left: the whole
    /// seconds until one is (at least 1), for `Retry-After`.
    pub fn take(&self, tenant: &str, rate: f64, now: Instant) -> Result<(), u64> {
        if rate.is_nan() || rate <= 0.0 {
            return Err(60);
        }
        let capacity = rate.max(1.0);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(capacity);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - b.tokens) / rate;
            Err((wait.ceil() as u64).max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ids() {
        for good in ["a", "acme", "clinic-2", "x.y", "A1"] {
            assert!(validate_id(good).is_ok(), "{good}");
        }
        for bad in ["", "-a", "a/b", "a b", "fhir", "FHIR", "é", &"a".repeat(65)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets() {
        assert_eq!(target("/fhir"), Target::Default);
        assert_eq!(target("/fhir/Patient"), Target::Default);
        assert_eq!(target("/a/fhir"), Target::Tenant("a", "/fhir"));
        assert_eq!(
            target("/a/fhir/bulk-status/j"),
            Target::Tenant("a", "/fhir/bulk-status/j")
        );
        assert_eq!(target("/a/fhirx"), Target::Elsewhere);
        assert_eq!(target("/a"), Target::Elsewhere);
        assert_eq!(target("/"), Target::Elsewhere);
        assert_eq!(target("//fhir"), Target::Elsewhere);
    }

    #[test]
    fn bucket_refills_at_the_rate() {
        let l = RateLimiter::default();
        let t0 = Instant::now();
        // Two per second: a burst of two, then one every half second.
        assert!(l.take("a", 2.0, t0).is_ok());
        assert!(l.take("a", 2.0, t0).is_ok());
        assert_eq!(l.take("a", 2.0, t0), Err(1));
        // Tenants do not share buckets.
        assert!(l.take("b", 2.0, t0).is_ok());
        assert!(l.take("a", 2.0, t0 + Duration::from_millis(500)).is_ok());
        assert!(l.take("a", 2.0, t0 + Duration::from_millis(500)).is_err());
        // Below one per second the wait is longer than a second.
        assert!(l.take("c", 0.1, t0).is_ok());
        assert_eq!(l.take("c", 0.1, t0), Err(10));
    }
}
