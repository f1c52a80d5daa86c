//! Server configuration: everything `fhir-bulk serve` sets, with the defaults users get.

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
        }
    }
}
