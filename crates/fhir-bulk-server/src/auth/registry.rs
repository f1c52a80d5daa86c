//! Registering, rotating and removing clients (§13): the rules shared by
//! `fhir-bulk clients …` and the admin API.
//!
//! What is checked at registration, so mistakes show up then and not at the first login:
//! the id (URL-safe, no `:`), the scopes (valid `system/` scopes), and the JWKS (a `keys`
//! array of RSA or P-384 EC public keys, each with a unique `kid`, and no private parts:
//! a JWKS pasted with its `d` would leak the key to anyone who can read the store). A
//! secret is generated here, returned once, and only its hash is stored.

use super::secret::{Secret, generate_client_secret, hash_client_secret};
use crate::error::ApiError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhir_bulk_spec::scope::ScopeSet;
use fhir_bulk_store::{Client, Credential, NewClient, Store};
use serde_json::Value;

/// Scopes of a client registered without `--scope`: read and search everything.
pub const DEFAULT_SCOPES: &str = "system/*.rs";

/// The credential a registration or rotation asks for.
#[derive(Debug, Clone)]
pub enum CredentialInput {
    /// A public JWKS by value.
    Jwks(Value),
    /// A JWKS URL.
    JwksUrl(String),
    /// Generate a client secret.
    Secret,
}

/// A client to register.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Tenant.
    pub tenant: String,
    /// `client_id`.
    pub id: String,
    /// Name (defaults to the id).
    pub name: Option<String>,
    /// Scopes (defaults to [`DEFAULT_SCOPES`]).
    pub scopes: Option<String>,
    /// Credential.
    pub credential: CredentialInput,
}

/// A registered (or rotated) client, with the new secret when one was generated. The
/// secret is shown to the user once and is not kept anywhere.
#[derive(Debug)]
pub struct Registered {
    /// The client as stored.
    pub client: Client,
    /// The new client secret, if any.
    pub secret: Option<Secret>,
}

/// Checks a client id: 1–128 of `A–Z a–z 0–9 . _ ~ -`.
pub fn validate_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "client id '{id}' must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_', '~' or '-'"
        )))
    }
}

/// Checks a public JWKS (see the module doc); returns its compact JSON text.
pub fn validate_jwks(jwks: &Value) -> Result<String, ApiError> {
    let bad = |m: String| ApiError::BadRequest(format!("the JWKS is not acceptable: {m}"));
    let keys = jwks.get("keys").and_then(Value::as_array).ok_or_else(|| {
        bad("it has no \"keys\" array (a single JWK must be wrapped as {\"keys\": [ … ]})".into())
    })?;
    if keys.is_empty() {
        return Err(bad("it has no keys".into()));
    }
    let mut kids: Vec<&str> = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        let kid = k
            .get("kid")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("key {i} has no kid (R2)")))?;
        if kids.contains(&kid) {
            return Err(bad(format!(
                "kid '{kid}' appears twice; kids must be unique in the set (R2)"
            )));
        }
        kids.push(kid);
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            if k.get(private).is_some() {
                return Err(bad(format!(
                    "key '{kid}' holds private material ('{private}'); register the public JWKS only (e.g. jwks.json from fhir-bulk keygen)"
                )));
            }
        }
        match k.get("kty").and_then(Value::as_str) {
            Some("RSA") => {}
            Some("EC") if k.get("crv").and_then(Value::as_str) == Some("P-384") => {
                for c in ["x", "y"] {
                    let len = k
                        .get(c)
                        .and_then(Value::as_str)
                        .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
                        .map_or(0, |b| b.len());
                    if len != 48 {
                        return Err(bad(format!(
                            "key '{kid}': '{c}' must be 48 bytes of base64url for P-384"
                        )));
                    }
                }
            }
            Some("EC") => {
                return Err(bad(format!(
                    "key '{kid}' is EC but not on curve P-384 (ES384 needs P-384)"
                )));
            }
            other => {
                return Err(bad(format!(
                    "key '{kid}' has kty {other:?}; RSA (RS384) and EC P-384 (ES384) are supported"
                )));
            }
        }
        super::jwks::decoding_key(k).map_err(|e| bad(format!("key '{kid}': {e}")))?;
    }
    Ok(jwks.to_string())
}

/// Checks a JWKS URL: absolute http(s).
pub fn validate_jwks_url(url: &str) -> Result<(), ApiError> {
    match url::Url::parse(url) {
        Ok(u) if (u.scheme() == "https" || u.scheme() == "http") && u.host().is_some() => Ok(()),
        _ => Err(ApiError::BadRequest(format!(
            "the JWKS URL '{url}' is not an absolute http(s) URL"
        ))),
    }
}

fn credential(input: CredentialInput) -> Result<(Credential, Option<Secret>), ApiError> {
    Ok(match input {
        CredentialInput::Jwks(v) => (Credential::Jwks(validate_jwks(&v)?), None),
        CredentialInput::JwksUrl(u) => {
            validate_jwks_url(&u)?;
            (Credential::JwksUrl(u), None)
        }
        CredentialInput::Secret => {
            let secret = generate_client_secret();
            (
                Credential::SecretHash(hash_client_secret(&secret)),
                Some(secret),
            )
        }
    })
}

/// Registers a client.
pub async fn register(store: &dyn Store, r: Registration) -> Result<Registered, ApiError> {
    validate_id(&r.id)?;
    let scopes = r.scopes.as_deref().unwrap_or(DEFAULT_SCOPES);
    let scopes = ScopeSet::parse_registered(scopes)
        .map_err(|e| ApiError::BadRequest(format!("{e}; use system/ scopes such as system/*.rs")))?
        .to_string();
    let (credential, secret) = credential(r.credential)?;
    let client = store
        .create_client(NewClient {
            tenant: r.tenant,
            name: r
                .name
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| r.id.clone()),
            id: r.id,
            scopes,
            credential,
        })
        .await?;
    tracing::info!(client_id = %client.id, tenant = %client.tenant, auth = client.credential.kind(), "client registered");
    Ok(Registered { client, secret })
}

/// Rotates a client's credential: a new secret for a secret client when `input` is `None`,
/// else the credential given (which may change the method).
pub async fn rotate(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    input: Option<CredentialInput>,
) -> Result<Registered, ApiError> {
    let not_found = || ApiError::NotFound(format!("no client '{id}' in tenant '{tenant}'"));
    let current = store.client(tenant, id).await?.ok_or_else(not_found)?;
    let input = match (input, &current.credential) {
        (Some(i), _) => i,
        (None, Credential::SecretHash(_)) => CredentialInput::Secret,
        (None, _) => {
            return Err(ApiError::BadRequest(format!(
                "client '{id}' uses a public key: rotate it with a new JWKS or JWKS URL"
            )));
        }
    };
    let (credential, secret) = credential(input)?;
    let client = store
        .update_client_credential(tenant, id, credential)
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(client_id = %client.id, tenant = %client.tenant, auth = client.credential.kind(), "client credential rotated");
    Ok(Registered { client, secret })
}

/// Removes a client; its tokens stop working at once (the client is looked up per request).
pub async fn remove(store: &dyn Store, tenant: &str, id: &str) -> Result<(), ApiError> {
    if store.delete_client(tenant, id).await? {
        tracing::info!(client_id = %id, tenant = %tenant, "client removed");
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "no client '{id}' in tenant '{tenant}'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids() {
        assert!(validate_id("bulk-client_1.a~").is_ok());
        for bad in ["", "a:b", "a b", "a/b", "é", &"x".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn jwks_rules_r2() {
        let c48 = URL_SAFE_NO_PAD.encode([7u8; 48]);
        let ec = json!({"kty":"EC","kid":"e","crv":"P-384","x":c48,"y":c48});
        let rsa = json!({"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"});
        assert!(validate_jwks(&json!({"keys":[ec, rsa]})).is_ok());
        for (bad, needle) in [
            (json!({"kty":"RSA"}), "keys"),
            (json!({"keys":[]}), "no keys"),
            (
                json!({"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}),
                "no kid",
            ),
            (json!({"keys":[rsa, rsa]}), "twice"),
            (
                json!({"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB","d":"AQAB"}]}),
                "private",
            ),
            (
                json!({"keys":[{"kty":"EC","kid":"e","crv":"P-256","x":"AA","y":"AA"}]}),
                "P-384",
            ),
            (
                json!({"keys":[{"kty":"oct","kid":"o","k":"AA"}]}),
                "private",
            ),
            (json!({"keys":[{"kty":"OKP","kid":"o","x":"AA"}]}), "kty"),
            (json!({"keys":[{"kty":"RSA","kid":"r","e":"AQAB"}]}), "'n'"),
            (
                json!({"keys":[{"kty":"EC","kid":"e","crv":"P-384","x":"AAAA","y":c48}]}),
                "48 bytes",
            ),
        ] {
            let e = validate_jwks(&bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn urls() {
        assert!(validate_jwks_url("https://example.org/jwks.json").is_ok());
        assert!(validate_jwks_url("http://127.0.0.1:9/jwks").is_ok());
        assert!(validate_jwks_url("file:///etc/passwd").is_err());
        assert!(validate_jwks_url("/jwks.json").is_err());
    }
}
