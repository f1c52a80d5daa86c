//! `fhir-bulk export`: run a bulk export against a FHIR server and download its files.
//!
//! Flags become [`fhir_bulk_client::ExportOptions`]; the library does the work and reports
//! progress through [`fhir_bulk_client::Observer`], drawn here with indicatif. Ctrl-C drops the
//! export future, which is safe at any point because the state on disk is always consistent.
//!
//! # Exit codes
//! | code | meaning |
//! |---|---|
//! | 0 | success: every file downloaded and verified |
//! | 2 | usage error: bad flags, or the output directory holds another unfinished export |
//! | 3 | auth failure: key, discovery, token endpoint, or a 401 a new token did not fix |
//! | 4 | the server rejected the export request (kick-off 4xx/5xx) |
//! | 5 | the export failed on the server, timed out, or sent an unreadable manifest |
//! | 6 | a download or verification failed; run the same command again to resume |
//! | 130 | interrupted (Ctrl-C); the state is saved, run the same command again to resume |

use fhir_bulk_client::auth::{AuthOptions, Credentials, SecretMethod};
use fhir_bulk_client::error::humanize;
use fhir_bulk_client::key::SigningKey;
use fhir_bulk_client::secret::Secret;
use fhir_bulk_client::{
    Error, Event, ExitClass, ExportOptions, ExportRequest, Exporter, Level, Observer, Since,
    Summary, Timings, Url,
};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const LONG_ABOUT: &str = "\
Run a FHIR Bulk Data export ($export) and download its files into --out DIR.

Files land as DIR/<Type>.<n>.ndjson (.ndjson.gz with --gzip), error files in DIR/error/, \
deleted-resource files in DIR/deleted/, with DIR/manifest.json and DIR/summary.json. Every \
NDJSON line is checked against the manifest. The run's state lives in \
DIR/.fhir-bulk-state.json: after a crash, Ctrl-C or a lost network, run the same command again \
and it continues the same job and the unfinished downloads.

Auth: --client-id with --key (PEM, JWK or JWKS with the private key; RS384 or ES384) or \
--secret-file (or FHIR_BULK_CLIENT_SECRET); or --bearer TOKEN; or nothing for open servers. \
Every flag also reads FHIR_BULK_<NAME> (e.g. FHIR_BULK_CLIENT_ID, FHIR_BULK_OUT).

Exit codes:
  0    success: every file downloaded and verified
  2    usage error (bad flags, or DIR holds another unfinished export)
  3    auth failure (key, discovery, token endpoint, 401 after renewal)
  4    the server rejected the export request
  5    the export failed on the server, timed out, or sent an unreadable manifest
  6    a download or verification failed (run again to resume)
  130  interrupted (state saved; run again to resume)";

/// Flags of `fhir-bulk export`.
#[derive(clap::Args)]
// `after_long_help`, not `long_about`: the subcommand's doc line in `main.rs` replaces the
// latter, and `--help` must show the exit codes.
#[command(after_long_help = LONG_ABOUT)]
pub struct Args {
    /// FHIR base URL, with any tenant path (e.g. https://ehr.example/r4/<tenant>).
    #[arg(env = "FHIR_BULK_BASE_URL", value_name = "BASE_URL")]
    base_url: String,

    /// System-level export: [base]/$export (the default).
    #[arg(long, env = "FHIR_BULK_SYSTEM", conflicts_with_all = ["patient_level", "group"], help_heading = "Export level")]
    system: bool,
    /// All patients: [base]/Patient/$export.
    #[arg(
        long,
        env = "FHIR_BULK_PATIENT_LEVEL",
        conflicts_with = "group",
        help_heading = "Export level"
    )]
    patient_level: bool,
    /// One Group: [base]/Group/<ID>/$export.
    #[arg(
        long,
        env = "FHIR_BULK_GROUP",
        value_name = "ID",
        help_heading = "Export level"
    )]
    group: Option<String>,

    #[command(flatten)]
    kickoff: Box<KickoffArgs>,
    #[command(flatten)]
    auth: Box<AuthArgs>,

    /// Output directory.
    #[arg(long, env = "FHIR_BULK_OUT", value_name = "DIR")]
    out: PathBuf,
    /// Downloads at a time.
    #[arg(
        long,
        env = "FHIR_BULK_PARALLEL",
        default_value_t = 4,
        value_name = "N"
    )]
    parallel: usize,
    /// Store files gzip-compressed (.ndjson.gz).
    #[arg(long, env = "FHIR_BULK_GZIP")]
    gzip: bool,
    /// How files travel: `gzip` (asked for, smaller on slow links) or `identity` (plain:
    /// faster on fast links, where compressing costs the server more than it saves).
    #[arg(
        long,
        env = "FHIR_BULK_ACCEPT_ENCODING",
        default_value = "gzip",
        value_parser = ["gzip", "identity"],
        value_name = "CODING"
    )]
    accept_encoding: String,
    /// Do not DELETE the job on the server when done.
    #[arg(long, env = "FHIR_BULK_KEEP")]
    keep: bool,
    /// Give up waiting for the server after this long (e.g. 90s, 30m, 6h).
    #[arg(long, env = "FHIR_BULK_TIMEOUT", default_value = "24h", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Longest wait between status polls when the server sends no Retry-After (≥ 1s).
    #[arg(long, env = "FHIR_BULK_MAX_POLL_INTERVAL", default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    max_poll_interval: Duration,
    /// Log every request (method, URL, status; never credentials).
    #[arg(long, short, env = "FHIR_BULK_VERBOSE")]
    verbose: bool,
}

/// Kick-off parameters (§2). Boxed in [`Args`] to keep the subcommand enum small.
#[derive(clap::Args)]
#[command(next_help_heading = "Kick-off")]
struct KickoffArgs {
    /// Resource types to export (_type); comma-separated or repeated.
    #[arg(
        long = "type",
        env = "FHIR_BULK_TYPE",
        value_delimiter = ',',
        value_name = "TYPE",
        help_heading = "Kick-off"
    )]
    types: Vec<String>,
    /// Only resources changed after this FHIR instant (_since), or `auto` for the
    /// transactionTime of the last complete run into DIR for the same server, level and types.
    #[arg(
        long,
        env = "FHIR_BULK_SINCE",
        value_name = "INSTANT|auto",
        help_heading = "Kick-off"
    )]
    since: Option<String>,
    /// Only resources changed before this FHIR instant (_until, STU3).
    #[arg(
        long,
        env = "FHIR_BULK_UNTIL",
        value_name = "INSTANT",
        help_heading = "Kick-off"
    )]
    until: Option<String>,
    /// A _typeFilter search query, e.g. 'Observation?category=laboratory'; repeat for more.
    #[arg(
        long,
        env = "FHIR_BULK_TYPE_FILTER",
        value_name = "QUERY",
        help_heading = "Kick-off"
    )]
    type_filter: Vec<String>,
    /// Elements to keep (_elements); comma-separated or repeated.
    #[arg(
        long,
        env = "FHIR_BULK_ELEMENTS",
        value_delimiter = ',',
        value_name = "ELEMENT",
        help_heading = "Kick-off"
    )]
    elements: Vec<String>,
    /// Patient ids to export (patient; implies --post); comma-separated or repeated.
    #[arg(
        long,
        env = "FHIR_BULK_PATIENT",
        value_delimiter = ',',
        value_name = "ID",
        help_heading = "Kick-off"
    )]
    patient: Vec<String>,
    /// Send the kick-off as POST with a Parameters body.
    #[arg(long, env = "FHIR_BULK_POST")]
    post: bool,
    /// Ask the server to ignore unsupported parameters (Prefer: handling=lenient).
    #[arg(long, env = "FHIR_BULK_LENIENT")]
    lenient: bool,
}

/// Auth flags (§13–§15).
#[derive(clap::Args)]
#[command(next_help_heading = "Auth")]
struct AuthArgs {
    /// Registered client_id (SMART Backend Services).
    #[arg(
        long,
        env = "FHIR_BULK_CLIENT_ID",
        value_name = "ID",
        help_heading = "Auth"
    )]
    client_id: Option<String>,
    /// Private key file: PEM (PKCS#8), JWK or JWKS; RSA signs RS384, P-384 signs ES384.
    #[arg(
        long,
        env = "FHIR_BULK_KEY",
        value_name = "FILE",
        help_heading = "Auth"
    )]
    key: Option<PathBuf>,
    /// The key id for the JWT header (default: the JWK's kid, else the key's RFC 7638 thumbprint).
    #[arg(long, env = "FHIR_BULK_KID", value_name = "KID")]
    kid: Option<String>,
    /// JWKS URL to put in the JWT's jku header (must be the registered one).
    #[arg(long, env = "FHIR_BULK_JKU", value_name = "URL")]
    jku: Option<String>,
    /// File holding the client secret (else the FHIR_BULK_CLIENT_SECRET variable).
    #[arg(
        long,
        env = "FHIR_BULK_SECRET_FILE",
        value_name = "FILE",
        help_heading = "Auth"
    )]
    secret_file: Option<PathBuf>,
    /// How to send the client secret.
    #[arg(
        long,
        env = "FHIR_BULK_SECRET_METHOD",
        value_enum,
        default_value = "basic",
        help_heading = "Auth"
    )]
    secret_method: SecretMethodArg,
    /// Scopes to request, as given (default system/*.rs, falling back to system/*.read).
    #[arg(
        long,
        env = "FHIR_BULK_SCOPE",
        value_name = "SCOPES",
        help_heading = "Auth"
    )]
    scope: Option<String>,
    /// Token endpoint (default: discovered from .well-known/smart-configuration).
    #[arg(
        long,
        env = "FHIR_BULK_TOKEN_URL",
        value_name = "URL",
        help_heading = "Auth"
    )]
    token_url: Option<String>,
    /// A ready access token (never renewed).
    #[arg(
        long,
        env = "FHIR_BULK_BEARER",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = "Auth"
    )]
    bearer: Option<String>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SecretMethodArg {
    /// client_secret_basic: HTTP Basic authentication.
    Basic,
    /// client_secret_post: client_id and client_secret form fields.
    Post,
}

/// `90`, `90s`, `500ms`, `30m`, `6h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration like 90s, 30m or 6h"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("'{s}' is not a duration like 90s, 30m or 6h")),
    };
    Ok(d)
}

fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

/// Turns the flags into library options; no network.
fn options(args: Args) -> Result<ExportOptions, Error> {
    let (k, a) = (*args.kickoff, *args.auth);
    let base_url = Url::parse(&args.base_url)
        .map_err(|e| usage(format!("BASE_URL '{}': {e}", args.base_url)))?;
    let level = match (&args.group, args.patient_level) {
        (Some(id), _) => Level::Group(id.clone()),
        (None, true) => Level::Patient,
        (None, false) => Level::System,
    };
    let since = k.since.map(|s| {
        if s.eq_ignore_ascii_case("auto") {
            Since::Auto
        } else {
            Since::At(s)
        }
    });
    let request = ExportRequest {
        level,
        types: k
            .types
            .into_iter()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        since,
        until: k.until,
        type_filters: k.type_filter,
        elements: k
            .elements
            .into_iter()
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty())
            .collect(),
        patients: k
            .patient
            .into_iter()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        post: k.post,
        lenient: k.lenient,
    };

    let env_secret = std::env::var("FHIR_BULK_CLIENT_SECRET")
        .ok()
        .filter(|s| !s.is_empty());
    let credentials = match (a.bearer, a.client_id, a.key, a.secret_file) {
        (Some(_), Some(_), _, _) | (Some(_), _, Some(_), _) | (Some(_), _, _, Some(_)) => {
            return Err(usage(
                "--bearer cannot be combined with --client-id, --key or --secret-file",
            ));
        }
        (Some(token), None, None, None) => Credentials::Bearer(Secret::new(token.trim())),
        (None, Some(_), Some(_), Some(_)) => {
            return Err(usage("give --key or --secret-file, not both"));
        }
        (None, Some(client_id), Some(key), None) => Credentials::PrivateKey {
            key: SigningKey::from_file(&key, a.kid.as_deref())?,
            client_id,
            jku: a.jku,
        },
        (None, Some(client_id), None, secret_file) => {
            let secret = match secret_file {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|e| usage(format!("--secret-file {}: {e}", path.display())))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
                None => env_secret.ok_or_else(|| {
                    usage("--client-id needs --key, --secret-file or FHIR_BULK_CLIENT_SECRET")
                })?,
            };
            let method = match a.secret_method {
                SecretMethodArg::Basic => SecretMethod::Basic,
                SecretMethodArg::Post => SecretMethod::Post,
            };
            Credentials::ClientSecret {
                client_id,
                secret: Secret::new(secret),
                method,
            }
        }
        (None, None, Some(_), _) | (None, None, _, Some(_)) => {
            return Err(usage("--key and --secret-file need --client-id"));
        }
        (None, None, None, None) => Credentials::None,
    };
    let token_url = a
        .token_url
        .map(|u| Url::parse(&u).map_err(|e| usage(format!("--token-url '{u}': {e}"))))
        .transpose()?;

    if args.max_poll_interval < Duration::from_secs(1) {
        return Err(usage("--max-poll-interval must be at least 1s"));
    }
    if args.timeout.is_zero() {
        return Err(usage("--timeout must be positive"));
    }
    let defaults = Timings::default();
    let timings = Timings {
        max_poll_interval: args.max_poll_interval,
        initial_poll_interval: defaults.initial_poll_interval.min(args.max_poll_interval),
        timeout: args.timeout,
        ..defaults
    };
    let mut options = ExportOptions::new(base_url, args.out);
    options.request = request;
    options.auth = AuthOptions {
        credentials,
        scope: a.scope,
        token_url,
    };
    options.parallel = args.parallel;
    options.gzip = args.gzip;
    options.transfer_gzip = args.accept_encoding == "gzip";
    options.keep = args.keep;
    options.timings = timings;
    options.verbose = args.verbose;
    Ok(options)
}

/// Runs the command; the exit code says how it ended (see the module doc).
pub async fn run(args: Args) -> ExitCode {
    let out = args.out.clone();
    let exporter = match options(args).and_then(Exporter::new) {
        Ok(exporter) => exporter,
        Err(e) => return fail(&e),
    };
    let bars = std::sync::Arc::new(Bars::new());
    let exporter = exporter.with_observer(bars.clone());
    tokio::select! {
        result = exporter.run() => match result {
            Ok(summary) => {
                bars.bar.finish_and_clear();
                print_summary(&summary, &out);
                ExitCode::SUCCESS
            }
            Err(e) => {
                bars.bar.abandon();
                fail(&e)
            }
        },
        _ = tokio::signal::ctrl_c() => {
            bars.bar.abandon();
            eprintln!(
                "fhir-bulk: interrupted; progress is saved in {}, run the same command again to continue",
                out.display()
            );
            ExitCode::from(ExitClass::Interrupted.code())
        }
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("fhir-bulk: {e}");
    ExitCode::from(e.exit_class().code())
}

fn print_summary(s: &Summary, out: &std::path::Path) {
    let secs = s.elapsed_seconds.max(0.001);
    println!(
        "Export complete in {}: {} resources, {} in {} files ({}/s){}",
        humanize(Duration::from_secs_f64(s.elapsed_seconds)),
        s.resources,
        HumanBytes(s.bytes),
        s.files.len(),
        HumanBytes((s.bytes as f64 / secs) as u64),
        if s.resumed { ", resumed" } else { "" }
    );
    let width = s.types.keys().map(String::len).max().unwrap_or(0);
    for (t, totals) in &s.types {
        println!(
            "  {t:<width$}  {:>10} resources  {:>4} files  {:>10}",
            totals.resources,
            totals.files,
            HumanBytes(totals.bytes).to_string()
        );
    }
    if s.deleted_files > 0 {
        println!(
            "  {} deletion bundle(s) in {}",
            s.deleted_resources,
            out.join("deleted").display()
        );
    }
    if s.error_files > 0 {
        println!(
            "  {} OperationOutcome(s) from the server in {}",
            s.error_resources,
            out.join("error").display()
        );
        for m in &s.error_messages {
            println!("    - {m}");
        }
    }
    println!(
        "transactionTime {} (the next --since auto)",
        s.transaction_time
    );
    println!(
        "Files, manifest.json and summary.json are in {}",
        out.display()
    );
}

/// Progress bars over the library's events: a spinner while the server works, then a bar
/// over the files with bytes and resources.
struct Bars {
    bar: ProgressBar,
    bytes: AtomicU64,
    resources: AtomicU64,
    /// Serializes style switches; events come from concurrent download tasks.
    phase: Mutex<()>,
}

impl Bars {
    fn new() -> Bars {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar.set_message("starting");
        Bars {
            bar,
            bytes: AtomicU64::new(0),
            resources: AtomicU64::new(0),
            phase: Mutex::new(()),
        }
    }

    fn totals(&self) -> String {
        format!(
            "{}, {} resources",
            HumanBytes(self.bytes.load(Ordering::Relaxed)),
            self.resources.load(Ordering::Relaxed)
        )
    }
}

impl Observer for Bars {
    fn event(&self, event: &Event) {
        match event {
            Event::Resumed {
                status_url,
                files_done,
            } => self.bar.println(match status_url {
                Some(u) => format!(
                    "continuing the unfinished export {u} ({files_done} files already done)"
                ),
                None => "continuing the unfinished export".to_string(),
            }),
            Event::KickedOff { status_url } => self.bar.set_message(format!(
                "export accepted, waiting for the server ({status_url})"
            )),
            Event::Polling {
                progress,
                percent,
                next_poll_in,
                ..
            } => {
                let pct = percent.map(|p| format!("{p}% ")).unwrap_or_default();
                let text = progress.as_deref().unwrap_or("in progress");
                self.bar.set_message(format!(
                    "server working: {pct}{text} (next check in {})",
                    humanize(*next_poll_in)
                ));
            }
            Event::Retrying {
                phase,
                reason,
                delay,
            } => {
                self.bar.set_message(format!(
                    "{phase}: {reason}; retrying in {}",
                    humanize(*delay)
                ));
            }
            Event::ManifestReady { files, resources } => {
                let _guard = self.phase.lock();
                self.bar.set_style(
                    ProgressStyle::with_template(
                        "[{elapsed_precise}] {bar:30} {pos}/{len} files, {msg}",
                    )
                    .expect("valid template"),
                );
                self.bar.set_length(*files as u64);
                self.bar.set_position(0);
                if let Some(r) = resources {
                    self.bar.println(format!(
                        "{files} files to download, {r} resources announced"
                    ));
                }
                self.bar.set_message(self.totals());
            }
            Event::FileSkipped {
                bytes, resources, ..
            }
            | Event::FileDone {
                bytes, resources, ..
            } => {
                if matches!(event, Event::FileSkipped { .. }) {
                    self.bytes.fetch_add(*bytes, Ordering::Relaxed);
                }
                self.resources.fetch_add(*resources, Ordering::Relaxed);
                self.bar.inc(1);
                self.bar.set_message(self.totals());
            }
            Event::Bytes { n } => {
                self.bytes.fetch_add(*n, Ordering::Relaxed);
                self.bar.set_message(self.totals());
            }
            Event::JobDeleted => {}
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(argv: &[&str]) -> Result<ExportOptions, Error> {
        let cli = Cli::try_parse_from(std::iter::once("export").chain(argv.iter().copied()))
            .map_err(|e| usage(e.to_string()))?;
        options(cli.args)
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn flags_become_options() {
        let o = parse(&[
            "https://h/fhir",
            "--group",
            "g1",
            "--type",
            "Patient,Observation",
            "--since",
            "auto",
            "--out",
            "/tmp/x",
            "--bearer",
            "t",
        ])
        .unwrap();
        assert_eq!(o.request.level, Level::Group("g1".into()));
        assert_eq!(o.request.types, ["Patient", "Observation"]);
        assert_eq!(o.request.since, Some(Since::Auto));
        assert!(matches!(o.auth.credentials, Credentials::Bearer(_)));
        assert_eq!(o.timings.min_poll_interval, Duration::from_secs(1));
    }

    #[test]
    fn conflicting_or_incomplete_auth_is_a_usage_error() {
        for argv in [
            &[
                "https://h/fhir",
                "--out",
                "d",
                "--bearer",
                "t",
                "--client-id",
                "c",
            ][..],
            &["https://h/fhir", "--out", "d", "--key", "k.pem"][..],
            &[
                "https://h/fhir",
                "--out",
                "d",
                "--max-poll-interval",
                "500ms",
            ][..],
            &["not a url", "--out", "d"][..],
            &["https://h/fhir", "--out", "d", "--system", "--group", "g"][..],
        ] {
            let e = parse(argv)
                .err()
                .unwrap_or_else(|| panic!("{argv:?} should fail"));
            assert_eq!(e.exit_class(), ExitClass::Usage, "{argv:?}: {e}");
        }
    }
}
