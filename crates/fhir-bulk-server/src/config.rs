//! Server configuration: everything `fhir-bulk serve` sets, with the defaults users get.

use crate::auth::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// How the server runs. Build with [`ServerConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Public origin that links are built from (`http://127.0.0.1:8080`, or the proxy's
    /// URL), without a trailing slash. The FHIR base is this plus `/fhir`.
    pub public_url: String,
    /// Folder holding export files (the local sink).
    pub output_dir: PathBuf,
    /// Largest request body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// An export file rolls over after this many resources…
    pub file_max_resources: u64,
    /// …or this many bytes, whichever comes first.
    pub file_max_bytes: u64,
    /// How long a job and its files live after kick-off.
    pub job_ttl: Duration,
    /// Concurrent running exports per client (429 beyond, KR3).
    pub max_exports_per_client: u64,
    /// Export workers in this process.
    pub workers: usize,
    /// How long a claimed unit stays ours without a heartbeat.
    pub lease: Duration,
    /// This node's name in leases (unique per process).
    pub node_id: String,
    /// How often expired and cancelled jobs are purged.
    pub purge_interval: Duration,
    /// Bytes per chunk read from the store.
    pub chunk_bytes: usize,
    /// Whether requests need a bearer token (then manifests say `requiresAccessToken: true`).
    pub auth_enabled: bool,
    /// Lifetime of the access tokens we issue (`expires_in`; TK3 says at most 300 s).
    pub token_lifetime: Duration,
    /// The bearer token of the admin API (`[base]/admin/clients`); `None` turns it off.
    pub admin_token: Option<Secret>,
    /// An OAuth server whose access tokens are trusted besides our own. Global: its tokens
    /// are accepted on every tenant's base (each tenant's jobs stay its own).
    pub external_issuer: Option<ExternalIssuer>,
    /// Shortest time between two fetches of one JWKS URL caused by an unknown `kid`.
    pub jwks_refetch_interval: Duration,
    /// Serve a base per tenant of the store, `/{tenant}/fhir`, besides `/fhir` (the default
    /// tenant). Off: only `/fhir`, and tenant limits are not enforced.
    pub tenants_enabled: bool,
}

/// An external OAuth server (an IdP) whose access tokens we accept: signed with a key of
/// its JWKS, from `issuer`, for `audience`.
#[derive(Debug, Clone)]
pub struct ExternalIssuer {
    /// The `iss` of its tokens, compared exactly.
    pub issuer: String,
    /// Where its public keys are.
    pub jwks_url: String,
    /// The `aud` its tokens must carry for us.
    pub audience: String,
}

impl ServerConfig {
    /// Defaults for a server reachable at `public_url`, writing files under `output_dir`.
    pub fn new(public_url: impl Into<String>, output_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            public_url: public_url.into().trim_end_matches('/').to_string(),
            output_dir: output_dir.into(),
            max_body_bytes: 64 * 1024 * 1024,
            file_max_resources: 100_000,
            file_max_bytes: 256 * 1024 * 1024,
            job_ttl: Duration::from_secs(24 * 3600),
            max_exports_per_client: 4,
            workers: 2,
            lease: Duration::from_secs(15),
            node_id: format!("node-{}", uuid::Uuid::new_v4()),
            purge_interval: Duration::from_secs(30),
            chunk_bytes: 1024 * 1024,
            auth_enabled: false,
            token_lifetime: Duration::from_secs(300),
            admin_token: None,
            external_issuer: None,
            jwks_refetch_interval: Duration::from_secs(10),
            tenants_enabled: false,
        }
    }
}
