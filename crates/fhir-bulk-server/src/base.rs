//! Which tenant and FHIR base URL a request is for.
//!
//! Single-tenant installs serve `/fhir`; with tenants (`serve --tenants`) each tenant has
//! `/{tenant}/fhir` too, checked and mapped onto the same routes by [`crate::tenant::route`]. Handlers take a [`Base`] and never build URLs by hand, so every link we
//! send (Content-Location, manifest URLs, Location) is absolute and right for the tenant.

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use fhir_bulk_store::DEFAULT_TENANT;

/// The tenant and absolute FHIR base URL of a request.
#[derive(Debug, Clone)]
pub struct Base {
    /// Tenant id.
    pub tenant: String,
    /// Absolute FHIR base, e.g. `http://127.0.0.1:8080/fhir`, without a trailing slash.
    pub url: String,
}

impl Base {
    /// An absolute URL under the base.
    pub fn join(&self, path: &str) -> String {
        format!("{}/{}", self.url, path.trim_start_matches('/'))
    }
}

impl FromRequestParts<AppState> for Base {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Inside a nested router `uri` has lost its prefix; the original has the tenant.
        let original = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map(|o| o.0.clone());
        let uri = original.as_ref().unwrap_or(&parts.uri);
        let path = uri.path();
        let tenant = if path == "/fhir" || path.starts_with("/fhir/") {
            DEFAULT_TENANT.to_string()
        } else {
            let mut segs = path.trim_start_matches('/').splitn(3, '/');
            match (segs.next(), segs.next()) {
                (Some(t), Some("fhir")) if !t.is_empty() => t.to_string(),
                _ => return Err(ApiError::NotFound(format!("no FHIR endpoint at {path}"))),
            }
        };
        let url = if tenant == DEFAULT_TENANT {
            format!("{}/fhir", state.config.public_url)
        } else {
            format!("{}/{tenant}/fhir", state.config.public_url)
        };
        Ok(Base { tenant, url })
    }
}
