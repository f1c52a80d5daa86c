//! Registered SMART Backend Services clients (§13) and the server's auth secrets.
//!
//! The store keeps what the server decided, without interpreting it: the scopes as the
//! space-separated string that was validated at registration, a JWKS as its JSON text, a
//! client secret only as the hash string the server computed (never the secret). Every row
//! carries its tenant; nothing crosses tenants.

use fhir_bulk_spec::instant::Instant;
use std::fmt;

/// How a client proves who it is at the token endpoint.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// `private_key_jwt` with a public key set registered by value (JWKS JSON text).
    Jwks(String),
    /// `private_key_jwt` with a public key set fetched from this URL.
    JwksUrl(String),
    /// `client_secret_basic`/`client_secret_post`: the salted hash of the secret, in the
    /// server's format. The secret itself is never stored.
    SecretHash(String),
}

impl Credential {
    /// A short name for listings: `jwks`, `jwks-url` or `secret`.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::Jwks(_) => "jwks",
            Credential::JwksUrl(_) => "jwks-url",
            Credential::SecretHash(_) => "secret",
        }
    }
}

/// The hash is not the secret, but it is still not for logs.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Jwks(j) => f
                .debug_tuple("Jwks")
                .field(&format!("{} bytes", j.len()))
                .finish(),
            Credential::JwksUrl(u) => f.debug_tuple("JwksUrl").field(u).finish(),
            Credential::SecretHash(_) => f.write_str("SecretHash(<redacted>)"),
        }
    }
}

/// A client to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    /// Tenant.
    pub tenant: String,
    /// The `client_id` (unique within the tenant).
    pub id: String,
    /// A human name for listings.
    pub name: String,
    /// Scopes it may be granted, space-separated.
    pub scopes: String,
    /// How it authenticates.
    pub credential: Credential,
}

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    /// Tenant.
    pub tenant: String,
    /// The `client_id`.
    pub id: String,
    /// A human name.
    pub name: String,
    /// Scopes it may be granted, space-separated.
    pub scopes: String,
    /// How it authenticates.
    pub credential: Credential,
    /// When it was registered.
    pub created_at: Instant,
    /// When its credential last changed (registration or rotation).
    pub updated_at: Instant,
}
