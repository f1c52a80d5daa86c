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
    /// Folder holding export files (the local sink, the default; unused with `s3`).
    pub output_dir: PathBuf,
    /// An S3-compatible bucket for export files instead of `output_dir`.
    pub s3: Option<S3Output>,
    /// What the manifest's file URLs are: ours (proxied, the default) or presigned S3 URLs.
    pub file_urls: FileUrls,
    /// Longest life of a presigned file URL (also bounded by the job's expiry and by S3's
    /// limit of 7 days); clients fetch the manifest again for fresh URLs (F1).
    pub presigned_url_ttl: Duration,
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
    /// A system-level export cuts a type with more live resources than this into units of
    /// about this many (id slices), so several workers and nodes share one large type.
    /// `None` keeps one unit per type: right for SQLite, whose slice scans would each read
    /// the whole type; `fhir-bulk serve` sets it for PostgreSQL.
    pub unit_max_resources: Option<u64>,
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
    /// The bearer token `GET /metrics` needs; `None` leaves it open, as Prometheus scrapers
    /// usually expect (it shows no secret, tenant or client id, only counts).
    pub metrics_token: Option<Secret>,
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

/// What the manifest's file URLs point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileUrls {
    /// Our `/bulk-files/...` endpoint, which streams from the sink and needs the access
    /// token like every other request (`requiresAccessToken` follows auth).
    #[default]
    Proxy,
    /// Presigned S3 GET URLs that need no token (`requiresAccessToken: false`, M3); only
    /// with an S3 output.
    Presigned,
}

/// An S3-compatible output: `s3://bucket/prefix`. Anything not set here comes from the
/// usual `AWS_*` environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, `AWS_REGION`/`AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL`…), or from
/// the instance/container role when there are no keys.
#[derive(Debug, Clone)]
pub struct S3Output {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty); a job's files are
    /// `{prefix}/{job}/{name}`.
    pub prefix: String,
    /// Endpoint of an S3-compatible server (`http://` allows plain HTTP, for a local one).
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key (never printed).
    pub secret_access_key: Option<Secret>,
    /// Size of the parts of a multipart upload: the memory a file being written holds is a
    /// few of these (S3 wants at least 5 MiB but for the last part).
    pub part_bytes: usize,
}

impl S3Output {
    /// Parses `s3://bucket[/prefix]`; the rest comes from the environment.
    pub fn from_url(url: &str) -> Result<S3Output, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("'{url}' is not an s3://bucket/prefix URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("'{url}' names no bucket (s3://bucket/prefix)"));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            return Err(format!(
                "'{url}': the prefix has an empty, '.' or '..' segment"
            ));
        }
        Ok(S3Output {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            part_bytes: 8 * 1024 * 1024,
        })
    }
}

impl ServerConfig {
    /// Defaults for a server reachable at `public_url`, writing files under `output_dir`.
    pub fn new(public_url: impl Into<String>, output_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            public_url: public_url.into().trim_end_matches('/').to_string(),
            output_dir: output_dir.into(),
            s3: None,
            file_urls: FileUrls::Proxy,
            presigned_url_ttl: Duration::from_secs(3600),
            max_body_bytes: 64 * 1024 * 1024,
            file_max_resources: 100_000,
            file_max_bytes: 256 * 1024 * 1024,
            job_ttl: Duration::from_secs(24 * 3600),
            max_exports_per_client: 4,
            workers: 2,
            unit_max_resources: None,
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
            metrics_token: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        let o = S3Output::from_url("s3://bucket").unwrap();
        assert_eq!((o.bucket.as_str(), o.prefix.as_str()), ("bucket", ""));
        let o = S3Output::from_url("s3://b/exports/fhir/").unwrap();
        assert_eq!(
            (o.bucket.as_str(), o.prefix.as_str()),
            ("b", "exports/fhir")
        );
        assert!(S3Output::from_url("s3://").is_err());
        assert!(S3Output::from_url("s3:///x").is_err());
        assert!(S3Output::from_url("s3://b/a//c").is_err());
        assert!(S3Output::from_url("s3://b/a/../c").is_err());
        assert!(S3Output::from_url("/tmp/files").is_err());
    }
}
