//! `fhir-bulk serve`: the FHIR server with bulk export, on the embedded SQLite store.

use anyhow::Context;
use fhir_bulk_server::ServerConfig;
use fhir_bulk_store::Store;
use fhir_bulk_store::sqlite::SqliteStore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Flags of `fhir-bulk serve`.
#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "FHIR_BULK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Database: a SQLite file path (created on first use).
    #[arg(long, env = "FHIR_BULK_DATABASE", default_value = "./fhir-bulk.db")]
    database: PathBuf,
    /// Folder for export files.
    #[arg(long, env = "FHIR_BULK_OUTPUT", default_value = "./fhir-bulk-files")]
    output: PathBuf,
    /// Public URL of this server as clients reach it (behind a proxy), e.g. https://bulk.example.org.
    /// The FHIR base is this plus /fhir. Default: http://<listen>.
    #[arg(long, env = "FHIR_BULK_PUBLIC_URL")]
    public_url: Option<String>,
    /// Serve without authorization (local demos only).
    #[arg(long, env = "FHIR_BULK_NO_AUTH")]
    no_auth: bool,
    /// Fill an empty store with synthetic demo data first.
    #[arg(long, env = "FHIR_BULK_DEMO")]
    demo: bool,
    /// Patients of the demo data.
    #[arg(long, env = "FHIR_BULK_DEMO_PATIENTS", default_value_t = 100)]
    demo_patients: u64,
    /// Export workers in this process.
    #[arg(long, env = "FHIR_BULK_WORKERS", default_value_t = 2)]
    workers: usize,
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
}

/// Runs the server until SIGINT/SIGTERM.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let store = SqliteStore::open(&args.database)
        .await
        .with_context(|| format!("opening the database {}", args.database.display()))?;
    let store: Arc<dyn Store> = Arc::new(store);
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
    config.workers = args.workers;
    config.lease = Duration::from_secs(args.lease_seconds.max(1));
    config.job_ttl = Duration::from_secs_f64(args.job_ttl_hours.max(0.0) * 3600.0);
    config.max_body_bytes = args.max_body_bytes;
    config.file_max_resources = args.file_max_resources;
    config.file_max_bytes = args.file_max_bytes;
    config.max_exports_per_client = args.max_exports_per_client;
    config.auth_enabled = false;
    if args.no_auth {
        tracing::warn!(
            "AUTHORIZATION IS OFF (--no-auth): anyone who can reach this port can read and export every resource"
        );
    }
    tracing::info!(base = %format!("{}/fhir", config.public_url), database = %args.database.display(), "fhir-bulk server listening");
    fhir_bulk_server::serve(listener, store, config, shutdown_signal())
        .await
        .context("the server stopped with an error")?;
    tracing::info!("server stopped");
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
