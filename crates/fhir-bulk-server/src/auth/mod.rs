//! SMART Backend Services authorization: who is calling ([`Caller`]), and the endpoints that
//! hand out tokens.
//!
//! # Layout
//! - [`smart`]: `GET [base]/.well-known/smart-configuration` and the CapabilityStatement
//!   security section (§12).
//! - [`token`]: `POST [base]/auth/token` (§15), which authenticates clients with
//!   [`assertion`] (§14, `private_key_jwt`) or a secret, and grants scopes (§16).
//! - [`jwks`]: key sets fetched by URL with HTTP caching, and key selection (J4).
//! - [`access`]: the access tokens we issue (HS256 JWTs; the module says why) and those of
//!   an optional external issuer.
//! - [`registry`]: registering, rotating and removing clients (CLI and admin API).
//! - [`admin`]: the admin HTTP API, off by default.
//! - [`secret`]: [`Secret`] (never printed), client secret hashing.
//!
//! # Enforcement (§17)
//! With `auth_enabled`, every handler that takes a [`Caller`] needs `Authorization: Bearer`
//! with a valid token: a missing, expired or unknown one is a 401 with `WWW-Authenticate:
//! Bearer` (A1). The caller's scopes then decide per type (403 when too narrow), and jobs
//! belong to the caller's client id (`status::visible_job`): another client gets 404, and
//! any later token of the same client keeps working on the job (A3). `metadata`, discovery
//! and the token endpoint take no `Caller` and stay open. With auth off every request is
//! the anonymous caller, who may do everything.

pub mod access;
pub mod admin;
pub mod assertion;
pub mod jwks;
pub mod registry;
pub mod secret;
pub mod smart;
pub mod token;

pub use secret::Secret;

use crate::app::AppState;
use crate::base::Base;
use crate::config::ServerConfig;
use crate::error::ApiError;
use access::{AccessTokens, Holder};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use fhir_bulk_spec::kickoff::{ExportRequest, Handling, Level};
use fhir_bulk_spec::scope::{Permissions, ScopeSet};
use jwks::JwksCache;
use std::sync::Arc;
use std::time::Duration;

/// Timeout of a JWKS fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What the auth endpoints and the [`Caller`] extractor share: the JWKS cache and the access
/// token keys. One per server, in [`AppState`].
pub struct Auth {
    /// Key sets fetched by URL (clients' and the external issuer's).
    pub jwks: JwksCache,
    /// Our access tokens.
    pub tokens: AccessTokens,
}

impl Auth {
    /// Builds the HTTP client for JWKS fetches. Fails only if TLS cannot be set up.
    pub fn new(config: &ServerConfig) -> Result<Auth, String> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("fhir-bulk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client for JWKS fetches: {e}"))?;
        Ok(Auth {
            jwks: JwksCache::new(http, config.jwks_refetch_interval),
            tokens: AccessTokens::default(),
        })
    }
}

/// The client behind a request, and what it may do.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The client id; `None` when authorization is off.
    pub client_id: Option<String>,
    /// The token's scopes; `None` when authorization is off (everything is allowed).
    scopes: Option<Arc<ScopeSet>>,
}

impl Caller {
    /// The caller of a server without authorization: may do everything.
    pub fn anonymous() -> Caller {
        Caller {
            client_id: None,
            scopes: None,
        }
    }

    /// A caller with a client id and scopes (tests and other front doors).
    pub fn client(client_id: impl Into<String>, scopes: ScopeSet) -> Caller {
        Caller {
            client_id: Some(client_id.into()),
            scopes: Some(Arc::new(scopes)),
        }
    }

    /// May this caller do all of `permissions` on `resource_type`?
    pub fn can(&self, resource_type: &str, permissions: Permissions) -> bool {
        self.scopes
            .as_ref()
            .is_none_or(|s| s.allows(resource_type, permissions))
    }

    /// May this caller read resources of `resource_type` (K9, SC4)?
    pub fn can_read(&self, resource_type: &str) -> bool {
        self.can(resource_type, Permissions::READ)
    }

    /// 403 unless the caller may do all of `permissions` on `resource_type`; `action` says
    /// what was tried ("read", "search", "create", "update", "delete").
    pub fn require(
        &self,
        resource_type: &str,
        permissions: Permissions,
        action: &str,
    ) -> Result<(), ApiError> {
        if self.can(resource_type, permissions) {
            return Ok(());
        }
        let v1 = permissions
            .v1_suffix()
            .unwrap_or(if Permissions::V1_READ.contains(permissions) {
                "read"
            } else {
                "write"
            });
        Err(ApiError::Forbidden(format!(
            "the access token does not allow to {action} {resource_type}: it needs system/{resource_type}.{} \
             (or system/{resource_type}.{v1}); it has '{}'",
            permissions.v2_suffix(),
            self.scopes
                .as_deref()
                .map(ToString::to_string)
                .unwrap_or_default()
        )))
    }

    /// Applies the token's scopes to a parsed kick-off (K9, A2, SC4): a Group export needs
    /// read access to the Group; each `_type` the token may not read is a 403 (strict) or
    /// is dropped with a warning for the `error` file (`Prefer: handling=lenient`). Without
    /// `_type` the kick-off already keeps only readable types.
    pub fn check_export(
        &self,
        level: &Level,
        request: &mut ExportRequest,
        warnings: &mut Vec<String>,
        handling: Handling,
    ) -> Result<(), ApiError> {
        if let Level::Group(id) = level
            && !self.can_read("Group")
        {
            return Err(ApiError::Forbidden(format!(
                "exporting Group/{id} needs read access to Group (system/Group.rs or system/Group.read); the token does not have it"
            )));
        }
        let Some(types) = &mut request.types else {
            return Ok(());
        };
        let denied: Vec<String> = types
            .iter()
            .filter(|t| !self.can_read(t))
            .cloned()
            .collect();
        if denied.is_empty() {
            return Ok(());
        }
        match handling {
            Handling::Strict => Err(ApiError::Forbidden(format!(
                "the access token does not allow reading {}, named in _type; ask for a scope that covers it, \
                 or send Prefer: handling=lenient to export the rest",
                denied.join(", ")
            ))),
            Handling::Lenient => {
                types.retain(|t| !denied.contains(t));
                warnings.extend(denied.iter().map(|t| {
                    format!("_type '{t}' is outside the access token's scopes; it was not exported (Prefer handling=lenient)")
                }));
                Ok(())
            }
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if !state.config.auth_enabled {
            return Ok(Caller::anonymous());
        }
        let base = Base::from_request_parts(parts, state).await?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::NoToken(format!(
                    "this request needs Authorization: Bearer <access token>; get one at {} (SMART Backend Services)",
                    smart::token_endpoint(&base)
                ))
            })?;
        let external = state.config.external_issuer.as_ref();
        let holder: Holder = match external {
            Some(ext) if access::peek_issuer(token).as_deref() == Some(ext.issuer.as_str()) => {
                access::verify_external(ext, &state.auth.jwks, token).await?
            }
            _ => {
                state
                    .auth
                    .tokens
                    .verify(state.store.as_ref(), &base, token)
                    .await?
            }
        };
        // Removing a client ends its tokens at once.
        if holder.local
            && state
                .store
                .client(&base.tenant, &holder.client_id)
                .await?
                .is_none()
        {
            return Err(ApiError::Unauthorized(format!(
                "client '{}' is no longer registered",
                holder.client_id
            )));
        }
        Ok(Caller {
            client_id: Some(holder.client_id),
            scopes: Some(Arc::new(holder.scopes)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scopes: &str) -> Caller {
        Caller::client("c", ScopeSet::from_token(scopes))
    }

    #[test]
    fn anonymous_may_do_everything() {
        let a = Caller::anonymous();
        assert!(a.can_read("Patient") && a.can("Group", Permissions::ALL));
    }

    #[test]
    fn forbidden_names_the_scope() {
        let c = caller("system/Patient.rs");
        assert!(c.require("Patient", Permissions::READ, "read").is_ok());
        let e = c
            .require("Patient", Permissions::UPDATE, "update")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("system/Patient.u") && e.contains("system/Patient.rs"),
            "{e}"
        );
    }

    #[test]
    fn export_scopes() {
        let c = caller("system/Patient.rs system/Observation.read");
        let req = |types: &[&str]| ExportRequest {
            types: Some(types.iter().map(|t| t.to_string()).collect()),
            ..Default::default()
        };
        let mut w = Vec::new();
        let mut r = req(&["Patient", "Observation"]);
        assert!(
            c.check_export(&Level::System, &mut r, &mut w, Handling::Strict)
                .is_ok()
        );
        let mut r = req(&["Patient", "Encounter"]);
        let e = c
            .check_export(&Level::System, &mut r, &mut w, Handling::Strict)
            .unwrap_err();
        assert!(matches!(e, ApiError::Forbidden(m) if m.contains("Encounter")));
        c.check_export(&Level::System, &mut r, &mut w, Handling::Lenient)
            .unwrap();
        assert_eq!(r.types.as_deref(), Some(&["Patient".to_string()][..]));
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("Encounter"));
        let mut r = ExportRequest::default();
        assert!(
            c.check_export(&Level::Group("g".into()), &mut r, &mut w, Handling::Lenient)
                .is_err()
        );
        assert!(
            caller("system/Group.rs")
                .check_export(&Level::Group("g".into()), &mut r, &mut w, Handling::Strict)
                .is_ok()
        );
    }
}
