//! `fhir-bulk serve`: the FHIR server with bulk export, on SQLite (default) or PostgreSQL.

use anyhow::Context;
use fhir_bulk_server::ServerConfig;
use fhir_bulk_server::auth::Secret;
use fhir_bulk_server::config::{ExternalIssuer, FileUrls, S3Output};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Flags of `fhir-bulk serve`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "FHIR_BULK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Database: a SQLite file path (created on first use), or a PostgreSQL URL
    /// (postgres://user@host:5432/db) that several server nodes share.
    #[arg(long, env = "FHIR_BULK_DATABASE", default_value = "./fhir-bulk.db")]
    database: String,
    /// Where export files go: a folder, or an S3-compatible bucket as s3://bucket/prefix
    /// (shared by every node). S3 credentials, region and endpoint come from the usual
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION and
    /// AWS_ENDPOINT_URL variables (an http:// endpoint, e.g. a local MinIO, is allowed), or
    /// from the instance or container role.
    #[arg(
        long,
        env = "FHIR_BULK_OUTPUT",
        default_value = "./fhir-bulk-files",
        value_name = "DIR|s3://BUCKET/PREFIX"
    )]
    output: String,
    /// What the manifest's file URLs are. proxy: this server's own URLs, which stream the
    /// file (from S3 too) and need the access token. presigned (S3 output only): presigned
    /// S3 URLs that need no token (the manifest says requiresAccessToken: false), living at
    /// most --presigned-url-seconds and never past the job's expiry.
    #[arg(long, env = "FHIR_BULK_FILE_URLS", value_enum, default_value_t = FileUrlsArg::Proxy)]
    file_urls: FileUrlsArg,
    /// Longest life of a presigned file URL, in seconds (at most 7 days); clients fetch the
    /// manifest again for fresh ones.
    #[arg(long, env = "FHIR_BULK_PRESIGNED_URL_SECONDS", default_value_t = 3600)]
    presigned_url_seconds: u64,
    /// Public URL of this server as clients reach it (behind a proxy), e.g. https://bulk.example.org.
    /// The FHIR base is this plus /fhir. Default: http://<listen>.
    #[arg(long, env = "FHIR_BULK_PUBLIC_URL")]
    public_url: Option<String>,
    /// Serve without authorization (local demos only). By default every FHIR, export,
    /// status and file request needs a SMART Backend Services bearer token.
    #[arg(long, env = "FHIR_BULK_NO_AUTH")]
    no_auth: bool,
    /// Lifetime of the access tokens the token endpoint issues, in seconds (SMART: at most 300).
    #[arg(long, env = "FHIR_BULK_TOKEN_LIFETIME_SECONDS", default_value_t = 300)]
    token_lifetime_seconds: u64,
    /// Turn on the client admin API ([base]/admin/clients) with the bearer token in this file
    /// (at least 16 characters).
    #[arg(long, env = "FHIR_BULK_ADMIN_TOKEN_FILE", value_name = "FILE")]
    admin_token_file: Option<PathBuf>,
    /// Also accept access tokens of this external OAuth server (their exact `iss`).
    #[arg(
        long,
        env = "FHIR_BULK_EXTERNAL_ISSUER",
        value_name = "URL",
        requires_all = ["external_jwks_url", "external_audience"]
    )]
    external_issuer: Option<String>,
    /// The JWKS URL of the external issuer's signing keys.
    #[arg(
        long,
        env = "FHIR_BULK_EXTERNAL_JWKS_URL",
        value_name = "URL",
        requires = "external_issuer"
    )]
    external_jwks_url: Option<String>,
    /// The `aud` the external issuer's tokens must carry for this server.
    #[arg(
        long,
        env = "FHIR_BULK_EXTERNAL_AUDIENCE",
        value_name = "AUD",
        requires = "external_issuer"
    )]
    external_audience: Option<String>,
    /// Fill an empty store with synthetic demo data first.
    #[arg(long, env = "FHIR_BULK_DEMO")]
    demo: bool,
    /// Patients of the demo data.
    #[arg(long, env = "FHIR_BULK_DEMO_PATIENTS", default_value_t = 100)]
    demo_patients: u64,
    /// Export workers in this process.
    #[arg(long, env = "FHIR_BULK_WORKERS", default_value_t = 2)]
    workers: usize,
    /// At system level, cut a type with more resources than this into id slices of about
    /// this many, one unit each, so several workers and nodes share a large type. Default:
    /// 250000 on PostgreSQL, off (one unit per type) on SQLite, where each slice would scan
    /// the whole type; 0 turns it off.
    #[arg(long, env = "FHIR_BULK_UNIT_MAX_RESOURCES")]
    unit_max_resources: Option<u64>,
    /// This node's name in unit leases, logs and metrics (default: node-<random uuid>).
    /// Give each node of a cluster its own.
    #[arg(long, env = "FHIR_BULK_NODE_ID")]
    node_id: Option<String>,
    /// Seconds a claimed export unit stays leased without a heartbeat.
    #[arg(long, env = "FHIR_BULK_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// Hours jobs and their files are kept after kick-off.
    #[arg(long, env = "FHIR_BULK_JOB_TTL_HOURS", default_value_t = 24.0)]
    job_ttl_hours: f64,
    /// Largest request body, in bytes.
    #[arg(long, env = "FHIR_BULK_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_body_bytes: usize,
    /// An export file rolls over after this many resources.
    #[arg(long, env = "FHIR_BULK_FILE_MAX_RESOURCES", default_value_t = 100_000)]
    file_max_resources: u64,
    /// An export file rolls over after this many bytes.
    #[arg(long, env = "FHIR_BULK_FILE_MAX_BYTES", default_value_t = 256 * 1024 * 1024)]
    file_max_bytes: u64,
    /// Running exports allowed per client (429 beyond).
    #[arg(long, env = "FHIR_BULK_MAX_EXPORTS_PER_CLIENT", default_value_t = 4)]
    max_exports_per_client: u64,
    /// Serve every tenant of the store (`fhir-bulk tenants add`) at its own base,
    /// <public-url>/<tenant>/fhir, with its own clients, token endpoint, data and jobs, and
    /// enforce the tenants' limits. /fhir stays the default tenant's base.
    #[arg(long, env = "FHIR_BULK_TENANTS")]
    tenants: bool,
    /// Require this bearer token (read from FILE, at least 16 characters) on GET /metrics.
    /// Without it /metrics is open on the listener, as Prometheus scrapers expect; it shows
    /// counts only, no secret, tenant or client id.
    #[arg(long, env = "FHIR_BULK_METRICS_TOKEN_FILE", value_name = "FILE")]
    metrics_token_file: Option<PathBuf>,
}

/// `--file-urls`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum FileUrlsArg {
    /// This server's URLs (streamed from the output, token needed).
    Proxy,
    /// Presigned S3 URLs (no token; S3 output only).
    Presigned,
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let store = super::open_store(&args.database).await?;
    if args.demo {
        super::demo::fill_if_empty(&store, args.demo_patients).await?;
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let public_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let mut config = ServerConfig::new(public_url, &args.output);
    configure_output(&args, &mut config)?;
    config.workers = args.workers;
    config.unit_max_resources = match args.unit_max_resources {
        Some(0) => None,
        Some(n) => Some(n),
        None if fhir_bulk_store::open::is_postgres(&args.database) => Some(250_000),
        None => None,
    };
    if let Some(node) = &args.node_id {
        config.node_id = node.clone();
    }
    config.lease = Duration::from_secs(args.lease_seconds.max(1));
    config.job_ttl = Duration::from_secs_f64(args.job_ttl_hours.max(0.0) * 3600.0);
    config.max_body_bytes = args.max_body_bytes;
    config.file_max_resources = args.file_max_resources;
    config.file_max_bytes = args.file_max_bytes;
    config.max_exports_per_client = args.max_exports_per_client;
    config.tenants_enabled = args.tenants;
    configure_auth(&args, &mut config)?;
    config.metrics_token = metrics_token(args.metrics_token_file.as_deref())?;
    if args.no_auth {
        tracing::warn!(
            "AUTHORIZATION IS OFF (--no-auth): anyone who can reach this port can read and export every resource"
        );
    } else {
        let token_url = format!("{}/fhir/auth/token", config.public_url);
        if store.client_count().await? == 0 && config.external_issuer.is_none() {
            tracing::warn!(
                "authorization is on but no client is registered, so nobody can log in: register one with \
                 `fhir-bulk clients add --id ID --jwks jwks.json` (or --secret), or use --no-auth for a local demo"
            );
        }
        tracing::info!(token_endpoint = %token_url, "SMART Backend Services authorization is on");
    }
    tracing::info!(base = %format!("{}/fhir", config.public_url), database = %fhir_bulk_store::open::redacted(&args.database), "fhir-bulk server listening");
    if config.tenants_enabled {
        let tenants = store.tenants().await?;
        let others: Vec<String> = tenants
            .iter()
            .filter(|t| t.id != fhir_bulk_store::DEFAULT_TENANT)
            .map(|t| format!("{}/{}/fhir", config.public_url, t.id))
            .collect();
        tracing::info!(
            tenants = others.len(),
            bases = %others.join(" "),
            "tenants are on: each tenant has its own base (added and removed ones are seen at once)"
        );
    }
    fhir_bulk_server::serve(listener, store, config, shutdown_signal())
        .await
        .context("the server stopped with an error")?;
    tracing::info!("server stopped");
    Ok(())
}

/// Where files go (`--output`) and what their URLs are (`--file-urls`).
fn configure_output(args: &Args, config: &mut ServerConfig) -> anyhow::Result<()> {
    if args.output.starts_with("s3://") {
        let s3 = S3Output::from_url(&args.output).map_err(|e| anyhow::anyhow!("--output: {e}"))?;
        config.s3 = Some(s3);
    }
    config.file_urls = match args.file_urls {
        FileUrlsArg::Proxy => FileUrls::Proxy,
        FileUrlsArg::Presigned if config.s3.is_none() => anyhow::bail!(
            "--file-urls presigned needs an S3 output (--output s3://bucket/prefix); files in a folder are served by this server"
        ),
        FileUrlsArg::Presigned => FileUrls::Presigned,
    };
    if args.presigned_url_seconds == 0 || args.presigned_url_seconds > 7 * 24 * 3600 {
        anyhow::bail!(
            "--presigned-url-seconds {} is out of range (1 to 604800, S3's limit of 7 days)",
            args.presigned_url_seconds
        );
    }
    config.presigned_url_ttl = Duration::from_secs(args.presigned_url_seconds);
    Ok(())
}

/// `--metrics-token-file`: the token /metrics then needs.
fn metrics_token(path: Option<&std::path::Path>) -> anyhow::Result<Option<Secret>> {
    let Some(path) = path else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the metrics token file {}", path.display()))?;
    let token = text.trim();
    if token.len() < 16 || token.contains(char::is_whitespace) {
        anyhow::bail!(
            "the metrics token in {} must be one word of at least 16 characters (e.g. `openssl rand -hex 32`)",
            path.display()
        );
    }
    tracing::info!("/metrics needs the metrics token");
    Ok(Some(Secret::new(token)))
}

/// The auth part of the config: on unless `--no-auth`, token lifetime, admin token,
/// external issuer.
fn configure_auth(args: &Args, config: &mut ServerConfig) -> anyhow::Result<()> {
    config.auth_enabled = !args.no_auth;
    if args.token_lifetime_seconds == 0 || args.token_lifetime_seconds > 3600 {
        anyhow::bail!(
            "--token-lifetime-seconds {} is out of range (1 to 3600; SMART recommends at most 300)",
            args.token_lifetime_seconds
        );
    }
    if args.token_lifetime_seconds > 300 {
        tracing::warn!(
            seconds = args.token_lifetime_seconds,
            "access tokens will live longer than the 300 seconds SMART Backend Services recommends"
        );
    }
    config.token_lifetime = Duration::from_secs(args.token_lifetime_seconds);
    if let Some(path) = &args.admin_token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the admin token file {}", path.display()))?;
        let token = text.trim();
        if token.len() < 16 || token.contains(char::is_whitespace) {
            anyhow::bail!(
                "the admin token in {} must be one word of at least 16 characters (e.g. `openssl rand -hex 32`)",
                path.display()
            );
        }
        config.admin_token = Some(Secret::new(token));
        tracing::info!("the client admin API is on at [base]/admin/clients");
    }
    if let (Some(issuer), Some(jwks_url), Some(audience)) = (
        &args.external_issuer,
        &args.external_jwks_url,
        &args.external_audience,
    ) {
        fhir_bulk_server::auth::registry::validate_jwks_url(jwks_url)
            .map_err(|e| anyhow::anyhow!("--external-jwks-url: {e}"))?;
        config.external_issuer = Some(ExternalIssuer {
            issuer: issuer.clone(),
            jwks_url: jwks_url.clone(),
            audience: audience.clone(),
        });
        tracing::info!(issuer = %issuer, "access tokens of the external issuer are accepted");
    }
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutting down: finishing requests and giving back export leases");
}
