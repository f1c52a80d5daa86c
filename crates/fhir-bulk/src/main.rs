//! `fhir-bulk`: one binary for the FHIR Bulk Data server and client.
//!
//! Thin by design (house rule 3): clap parses flags (each also read from `FHIR_BULK_<NAME>`),
//! tracing is set up, and each subcommand in [`cmd`] calls into a library crate. Exit codes
//! are decided here and in `cmd::export` only; they are listed in the README.

mod cmd;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// FHIR Bulk Data Access ($export) server and client.
#[derive(Parser)]
#[command(name = "fhir-bulk", version, about, propagate_version = true)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info`, `debug`, `fhir_bulk_server=debug`.
    #[arg(long, global = true, env = "FHIR_BULK_LOG", default_value = "info")]
    log: String,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "FHIR_BULK_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the FHIR server with bulk export.
    Serve(cmd::serve::Args),
    /// Load NDJSON files, Bundles or folders of them into the store.
    Load(cmd::load::Args),
    /// Write deterministic synthetic FHIR R4 data as NDJSON per type.
    Synth(cmd::synth::Args),
    /// Run a bulk export against a FHIR server and download its files.
    Export(cmd::export::Args),
    /// Write a private key and the public JWKS a client registers (RS384 or ES384).
    Keygen(cmd::keygen::Args),
    /// Register, list, rotate and remove the SMART Backend Services clients of a store.
    Clients(cmd::clients::Args),
    /// Add, list and remove the tenants of a store (served by `serve --tenants`).
    Tenants(cmd::tenants::Args),
}

/// Usage errors (bad flags) exit with 2, as clap does.
pub const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    init_tracing(&cli.log, cli.log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fhir-bulk: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => report(cmd::serve::run(args).await),
            Command::Load(args) => report(cmd::load::run(args).await),
            Command::Synth(args) => report(cmd::synth::run(args).await),
            Command::Export(args) => cmd::export::run(args).await,
            Command::Keygen(args) => report(cmd::keygen::run(args).await),
            Command::Clients(args) => report(cmd::clients::run(args).await),
            Command::Tenants(args) => report(cmd::tenants::run(args).await),
        }
    })
}

/// One clear line on stderr for a failed command, exit code 1.
fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fhir-bulk: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(filter: &str, json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// glibc gives each thread that allocates an arena of its own (up to eight per core) and
/// rarely hands their free pages back, so the server's RSS grew with every export its
/// worker and blocking threads ran (#8, 100,000 patients, five system exports in a row:
/// 86 → 150 MB and rising; mimalloc was worse, 103 → 172 MB). With two arenas it stays at
/// 67–74 MB at the same speed. `MALLOC_ARENA_MAX` in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets an allocator parameter; it runs first thing in main,
        // before this program starts any thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
