//! Access tokens: the ones we issue at the token endpoint, and those of an optional
//! external issuer.
//!
//! # Why HS256 JWTs with a key in the store
//! Our tokens are JWTs signed with HMAC-SHA256 under a random 256-bit key per tenant. The
//! key is created once in the store ([`Store::server_secret`], first writer wins), so every
//! node behind a load balancer verifies every other node's tokens, and tokens survive a
//! restart. Verification is a hash over the token, with no store write and no per-token
//! row: the store holds no live credentials, and nothing grows with traffic. The usual
//! drawback of self-contained tokens, that they cannot be revoked, is bounded by their
//! lifetime (300 s by default), and we still look the client up on every request, so
//! `fhir-bulk clients remove` takes effect at once. HMAC rather than a signature: only this
//! service verifies these tokens, so there is no public key to publish and no
//! asymmetric key to generate and store.
//!
//! Claims: `iss` and `aud` are the tenant's FHIR base URL, `sub` and `client_id` the client,
//! `scope` the granted scopes, `tenant`, `iat`, `exp`, `jti`. The header `typ` is `at+jwt`
//! (RFC 9068), so a client assertion or an ID token can never pass as one.
//!
//! # Tenants
//! A token is good for one tenant only, twice over: its `tenant` claim (and `iss`/`aud`,
//! the tenant's base) must be the tenant of the request, and it must verify under that
//! tenant's own key. A token that names another tenant is refused with 403 ("not valid for
//! this tenant") before any key is tried; one that names this tenant but was signed with
//! another key is a 401 like any forgery.
//!
//! # External issuer
//! With `serve --external-issuer`, tokens whose `iss` is that issuer are verified with a key
//! from its JWKS (asymmetric algorithms only), must carry its configured `aud`, and map
//! `scope` (or `scp`) to scopes and `client_id`, else `azp`, else `sub`, to the client. Their
//! client ids are prefixed `external:` so they can never match a locally registered client
//! (whose ids cannot contain `:`), and so never see its jobs.

use super::jwks::{JwksCache, NoKey, alg_name, select_key};
use super::secret::{Secret, random_bytes};
use crate::base::Base;
use crate::config::ExternalIssuer;
use crate::error::ApiError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhir_bulk_spec::scope::ScopeSet;
use fhir_bulk_store::Store;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Name of the token signing key in the store.
const KEY_NAME: &str = "access-token-hs256";
/// The `typ` of our tokens.
const TYP: &str = "at+jwt";
/// Prefix of client ids from the external issuer.
pub const EXTERNAL_PREFIX: &str = "external:";
/// Skew allowed on our own tokens' `exp` (nodes' clocks differ a little).
const LEEWAY_SECONDS: u64 = 5;
/// Skew allowed on external tokens (another organisation's clocks).
const EXTERNAL_LEEWAY_SECONDS: u64 = 60;

#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    client_id: String,
    scope: String,
    tenant: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Who a valid token speaks for.
#[derive(Debug)]
pub struct Holder {
    /// The client id (`external:`-prefixed for external tokens).
    pub client_id: String,
    /// The scopes it carries.
    pub scopes: ScopeSet,
    /// True for a token of ours (its client must still be registered).
    pub local: bool,
}

/// Issues and verifies our tokens; caches each tenant's key after its first use.
///
/// Concurrency: the key map is a `std::sync::Mutex` held only to read or insert; the store
/// decides which key wins if two requests create it at once, so the cache never disagrees
/// with the store.
#[derive(Default)]
pub struct AccessTokens {
    keys: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl AccessTokens {
    async fn key(&self, store: &dyn Store, tenant: &str) -> Result<Arc<Vec<u8>>, ApiError> {
        if let Some(k) = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(tenant)
        {
            return Ok(Arc::clone(k));
        }
        let key = Arc::new(
            store
                .server_secret(tenant, KEY_NAME, random_bytes(32))
                .await?,
        );
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(tenant.to_string(), Arc::clone(&key));
        Ok(key)
    }

    /// A token for `client_id` with `scope`, living `lifetime`.
    pub async fn issue(
        &self,
        store: &dyn Store,
        base: &Base,
        client_id: &str,
        scope: &str,
        lifetime: Duration,
    ) -> Result<Secret, ApiError> {
        let key = self.key(store, &base.tenant).await?;
        let now = jsonwebtoken::get_current_timestamp() as i64;
        let claims = Claims {
            iss: base.url.clone(),
            aud: base.url.clone(),
            sub: client_id.to_string(),
            client_id: client_id.to_string(),
            scope: scope.to_string(),
            tenant: base.tenant.clone(),
            iat: now,
            exp: now + lifetime.as_secs() as i64,
            jti: uuid::Uuid::new_v4().simple().to_string(),
        };
        let header = Header {
            typ: Some(TYP.into()),
            ..Header::new(Algorithm::HS256)
        };
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&key))
            .map(Secret::new)
            .map_err(|e| ApiError::Internal(format!("signing an access token: {e}")))
    }

    /// Checks one of our tokens for this tenant and base. `Err(Unauthorized)` says why in
    /// words safe to send (never the token).
    pub async fn verify(
        &self,
        store: &dyn Store,
        base: &Base,
        token: &str,
    ) -> Result<Holder, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            ApiError::Unauthorized("the bearer token is not a token issued by this server".into())
        })?;
        if header.alg != Algorithm::HS256 || header.typ.as_deref() != Some(TYP) {
            return Err(ApiError::Unauthorized(
                "the bearer token is not an access token issued by this server".into(),
            ));
        }
        if peek_claim(token, "tenant").is_some_and(|t| t != base.tenant) {
            return Err(other_tenant(base));
        }
        let key = self.key(store, &base.tenant).await?;
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = LEEWAY_SECONDS;
        v.set_issuer(&[&base.url]);
        v.set_audience(&[&base.url]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(&key), &v)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => ApiError::Unauthorized(format!(
                    "the access token has expired; get a new one at {}",
                    base.join("auth/token")
                )),
                _ => ApiError::Unauthorized("the bearer token is not valid for this server".into()),
            })?
            .claims;
        if claims.tenant != base.tenant {
            return Err(other_tenant(base));
        }
        Ok(Holder {
            client_id: claims.client_id,
            scopes: ScopeSet::from_token(&claims.scope),
            local: true,
        })
    }
}

/// 403: a token of ours for another tenant.
fn other_tenant(base: &Base) -> ApiError {
    ApiError::Forbidden(format!(
        "the access token is not valid for this tenant: it was issued for another tenant's base; \
         get a token for '{}' at {}",
        base.tenant,
        base.join("auth/token")
    ))
}

/// The `iss` of a JWT, read without checking anything (to route it to a verifier).
pub fn peek_issuer(token: &str) -> Option<String> {
    peek_claim(token, "iss")
}

/// A string claim of a JWT, read without checking anything.
fn peek_claim(token: &str, name: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get(name).and_then(Value::as_str).map(str::to_string)
}

/// Algorithms accepted from an external issuer: asymmetric only.
const EXTERNAL_ALGS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// Checks a token of the external issuer (see the module doc).
pub async fn verify_external(
    ext: &ExternalIssuer,
    jwks: &JwksCache,
    token: &str,
) -> Result<Holder, ApiError> {
    let unauthorized = |why: String| {
        ApiError::Unauthorized(format!("the bearer token from {}: {why}", ext.issuer))
    };
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| unauthorized("not a JWT".into()))?;
    if !EXTERNAL_ALGS.contains(&header.alg) {
        return Err(unauthorized(format!(
            "alg {} is not accepted",
            alg_name(header.alg)
        )));
    }
    let fetched = jwks.get(&ext.jwks_url).await.map_err(|e| {
        tracing::warn!(error = %e, "cannot get the external issuer's keys");
        unauthorized("its signing keys cannot be fetched right now".into())
    })?;
    let key = match select_key(&fetched.jwks, header.kid.as_deref(), header.alg) {
        Err(NoKey::Unknown) => match jwks.refetch(&ext.jwks_url, &fetched).await {
            Ok(Some(newer)) => select_key(&newer, header.kid.as_deref(), header.alg),
            _ => Err(NoKey::Unknown),
        },
        other => other,
    }
    .map_err(|e| match e {
        NoKey::Unknown => unauthorized("no key of the issuer's JWKS fits its kid and alg".into()),
        NoKey::Ambiguous(n) => {
            unauthorized(format!("{n} keys of the issuer's JWKS fit its kid and alg"))
        }
        NoKey::Bad(why) => unauthorized(format!("the issuer's key is unusable: {why}")),
    })?;
    let mut v = Validation::new(header.alg);
    v.leeway = EXTERNAL_LEEWAY_SECONDS;
    v.set_issuer(&[&ext.issuer]);
    v.set_audience(&[&ext.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => unauthorized("it has expired".into()),
            ErrorKind::InvalidAudience => unauthorized(format!("its aud is not {}", ext.audience)),
            ErrorKind::InvalidSignature => unauthorized("its signature does not verify".into()),
            _ => unauthorized("it is not valid".into()),
        })?
        .claims;
    let client = ["client_id", "azp", "sub"]
        .iter()
        .find_map(|c| {
            claims
                .get(*c)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .ok_or_else(|| unauthorized("it names no client (client_id, azp or sub)".into()))?;
    let scope = match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.clone(),
        (_, Some(Value::String(s))) => s.clone(),
        (_, Some(Value::Array(items))) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    Ok(Holder {
        client_id: format!("{EXTERNAL_PREFIX}{client}"),
        scopes: ScopeSet::from_token(&scope),
        local: false,
    })
}
