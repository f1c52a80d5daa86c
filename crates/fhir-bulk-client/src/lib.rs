//! A FHIR Bulk Data client: SMART Backend Services auth, `$export` kick-off, polling, and
//! parallel, resumable, verified downloads.
//!
//! It assumes servers are imperfect (checklist §21): status URLs are opaque, file URLs may
//! redirect to storage or wrap content in `Binary`, manifests bend the rules, tokens come
//! without `expires_in`. It also assumes runs get interrupted: the state in the output
//! directory lets the same call continue the same job.
//!
//! ```no_run
//! use fhir_bulk_client::{ExportOptions, Exporter, kickoff::Level};
//! # async fn demo() -> Result<(), fhir_bulk_client::Error> {
//! let base = url::Url::parse("https://ehr.example/fhir").unwrap();
//! let mut options = ExportOptions::new(base, "./export");
//! options.request.level = Level::Group("diabetes".into());
//! options.request.types = vec!["Patient".into(), "Observation".into()];
//! let summary = Exporter::new(options)?.run().await?;
//! println!("{} resources in {} files", summary.resources, summary.files.len());
//! # Ok(()) }
//! ```
//!
//! # Layout (in the order of an export)
//! - [`discovery`]: the token endpoint from `.well-known/smart-configuration` (§12).
//! - [`key`]: RS384/ES384 keys from PEM or JWK(S), the client assertion (§14), keygen.
//! - [`auth`]: credentials and the token source with renewal (§15, CL2).
//! - `transport`: every request: token only to the server's origin, 401 → renew once, redacted logs.
//! - [`kickoff`]: the `$export` request (§1–§3).
//! - `poll`: status polling and manifest pages (§4, M8), pacing from [`backoff`].
//! - `download`, [`verify`]: parallel resumable downloads, NDJSON line checks (§7, CL5).
//! - [`state`]: the resume state and the `--since auto` log (CL6).
//! - [`summary`]: the `summary.json` of a finished run.
//! - [`observer`]: progress events for a UI; [`error`]: the error type and exit classes;
//!   [`secret`]: what is never printed.

pub mod auth;
pub mod backoff;
pub mod discovery;
mod download;
pub mod error;
pub mod key;
pub mod kickoff;
pub mod observer;
mod poll;
pub mod secret;
pub mod state;
pub mod summary;
mod transport;
pub mod verify;

pub use auth::{AuthOptions, Credentials, SecretMethod};
pub use backoff::Timings;
pub use error::{Error, ExitClass, Phase, Result};
pub use kickoff::{ExportRequest, Level, Since};
pub use observer::{Event, Observer, Quiet};
pub use poll::{TRANSIENT_ISSUE_CODES, is_transient_outcome};
pub use summary::Summary;
/// The URL type of the API, re-exported so callers need no direct `url` dependency.
pub use url::Url;

use auth::Auth;
use fhir_bulk_spec::instant::Instant as FhirInstant;
use kickoff::Kickoff;
use reqwest::Method;
use state::RunState;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};
use transport::{Request, Transport};

/// Everything an export needs.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// The FHIR base URL, tenant path included (V8).
    pub base_url: Url,
    /// What to export.
    pub request: ExportRequest,
    /// How to authenticate.
    pub auth: AuthOptions,
    /// Where files, manifest, summary and state go.
    pub out_dir: PathBuf,
    /// Downloads at a time.
    pub parallel: usize,
    /// Store files as `.ndjson.gz`.
    pub gzip: bool,
    /// Ask for files with `Accept-Encoding: gzip` (the default). Off, transfers are plain:
    /// faster where the link is fast and the server's on-the-fly gzip is the bottleneck.
    pub transfer_gzip: bool,
    /// Do not `DELETE` the job at the end.
    pub keep: bool,
    /// Waits, retries and timeouts.
    pub timings: Timings,
    /// Log every request at INFO (else DEBUG); never headers.
    pub verbose: bool,
}

impl ExportOptions {
    /// A system export of everything, without auth, 4 parallel downloads, default timings.
    pub fn new(base_url: Url, out_dir: impl Into<PathBuf>) -> ExportOptions {
        ExportOptions {
            base_url,
            request: ExportRequest::default(),
            auth: AuthOptions::default(),
            out_dir: out_dir.into(),
            parallel: 4,
            gzip: false,
            transfer_gzip: true,
            keep: false,
            timings: Timings::default(),
            verbose: false,
        }
    }
}

/// Runs exports.
pub struct Exporter {
    options: ExportOptions,
    observer: Arc<dyn Observer>,
}

impl Exporter {
    /// Checks the options.
    pub fn new(options: ExportOptions) -> Result<Exporter> {
        if !matches!(options.base_url.scheme(), "http" | "https") {
            return Err(Error::Usage(format!(
                "the base URL must be http(s): {}",
                options.base_url
            )));
        }
        if options.parallel == 0 {
            return Err(Error::Usage("--parallel must be at least 1".into()));
        }
        options.request.validate()?;
        Ok(Exporter {
            options,
            observer: Arc::new(Quiet),
        })
    }

    /// Sends progress events to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Exporter {
        self.observer = observer;
        self
    }

    /// The options.
    pub fn options(&self) -> &ExportOptions {
        &self.options
    }

    /// Runs (or continues) the export to completion.
    ///
    /// Dropping the future (Ctrl-C) is safe at any await point: the state on disk is always
    /// consistent, and the next run with the same options continues.
    pub async fn run(&self) -> Result<Summary> {
        let o = &self.options;
        let started = Instant::now();
        let started_at = FhirInstant::now().to_string();
        let deadline = started + o.timings.timeout;
        let dir = o.out_dir.as_path();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;

        let sync_key = state::sync_key(o.base_url.as_str(), &o.request.level, &o.request.types);
        let since = match &o.request.since {
            Some(Since::At(at)) => Some(at.clone()),
            Some(Since::Auto) => {
                let last = state::last_transaction_time(dir, &sync_key)?;
                match &last {
                    Some(t) => tracing::info!("--since auto: exporting changes after {t}"),
                    None => tracing::info!(
                        "--since auto: no earlier complete run for this server and types; full export"
                    ),
                }
                last
            }
            None => None,
        };
        let kickoff = Kickoff::build(&o.base_url, &o.request, since.as_deref(), o.request.lenient);
        let identity = kickoff.identity();
        let (run_state, resumed) = match RunState::load(dir)? {
            Some(s) if !s.completed && s.request == identity => (s, true),
            Some(s) if !s.completed => {
                return Err(Error::State(format!(
                    "{} holds an unfinished export of another request ({}); run that command again to finish it, use another --out, or remove {}",
                    dir.display(),
                    s.request,
                    state::STATE_FILE
                )));
            }
            old => {
                if let Some(old) = old {
                    remove_previous_output(dir, &old);
                }
                remove_stale_parts(dir);
                (
                    RunState::new(
                        o.base_url.to_string(),
                        identity.clone(),
                        sync_key.clone(),
                        since.clone(),
                    ),
                    false,
                )
            }
        };
        if resumed {
            self.observer.event(&Event::Resumed {
                status_url: run_state.status_url.as_deref().map(secret::redact_url),
                files_done: run_state.files.len(),
            });
            tracing::info!(
                "continuing the unfinished export recorded in {}",
                dir.join(state::STATE_FILE).display()
            );
        }
        let state = Mutex::new(run_state);

        let http = reqwest::Client::builder()
            // Redirects are followed by `transport` so it can drop the token across origins.
            .redirect(reqwest::redirect::Policy::none())
            // Content codings are handled by `download`, which must know them to resume.
            .no_gzip()
            .connect_timeout(o.timings.connect_timeout)
            .read_timeout(o.timings.read_timeout)
            .user_agent(concat!("fhir-bulk/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Usage(format!("cannot set up HTTP: {}", transport::describe(e))))?;
        let auth = Arc::new(Auth::new(
            o.auth.clone(),
            http.clone(),
            o.base_url.clone(),
            o.timings.clone(),
            o.verbose,
        ));
        let transport = Transport::new(http, auth, &o.base_url, o.verbose);

        let existing = state.lock().expect("state lock").manifest.clone();
        let manifest = match existing {
            Some(m) => m,
            None => {
                let recorded = state.lock().expect("state lock").status_url.clone();
                let status_url = match recorded {
                    Some(u) => Url::parse(&u).map_err(|e| {
                        Error::State(format!("bad status URL in the state file: {e}"))
                    })?,
                    None => {
                        let url = kickoff.send(&transport, &o.timings, deadline).await?;
                        let mut s = state.lock().expect("state lock");
                        s.status_url = Some(url.to_string());
                        s.kicked_off_at = Some(FhirInstant::now().unix_seconds());
                        s.save(dir)?;
                        self.observer.event(&Event::KickedOff {
                            status_url: secret::redact_url(url.as_str()),
                        });
                        url
                    }
                };
                let kicked_off_at = state
                    .lock()
                    .expect("state lock")
                    .kicked_off_at
                    .map(|s| {
                        SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(s.max(0) as u64)
                    })
                    .unwrap_or_else(SystemTime::now);
                let ctx = poll::PollContext {
                    transport: &transport,
                    timings: &o.timings,
                    deadline,
                    kicked_off_at,
                    observer: self.observer.as_ref(),
                };
                let completed = poll::wait_for_manifest(&ctx, &status_url).await.map_err(|e| match e {
                    Error::ExportFailed { status: status @ (404 | 410), message } if resumed => Error::ExportFailed {
                        status,
                        message: format!("{message}; the job is gone (expired or deleted): remove {} to start a new export", dir.join(state::STATE_FILE).display()),
                    },
                    e => e,
                })?;
                let raw = serde_json::to_vec_pretty(&completed.raw).expect("JSON serializes");
                state::write_atomic(&dir.join(summary::MANIFEST_FILE), &raw)?;
                let mut s = state.lock().expect("state lock");
                s.manifest = Some(completed.manifest.clone());
                s.save(dir)?;
                completed.manifest
            }
        };

        let tasks = download::plan(&manifest, o.gzip);
        let counts: Option<u64> = manifest.output.iter().map(|f| f.count).sum();
        self.observer.event(&Event::ManifestReady {
            files: tasks.len(),
            resources: counts,
        });
        if manifest.output.is_empty() {
            tracing::info!("the manifest lists no output files");
        }
        let downloader = download::Downloader {
            transport: &transport,
            timings: &o.timings,
            dir,
            observer: self.observer.as_ref(),
            requires_token: manifest.requires_access_token,
            gzip: o.gzip,
            transfer_gzip: o.transfer_gzip,
            parallel: o.parallel,
            state: &state,
        };
        let records = downloader.run(&tasks).await?;

        let status_url = state.lock().expect("state lock").status_url.clone();
        let already_deleted = state.lock().expect("state lock").job_deleted;
        let mut job_deleted = already_deleted;
        if !o.keep
            && !already_deleted
            && let Some(url) = status_url.as_deref().and_then(|u| Url::parse(u).ok())
        {
            job_deleted = self.delete_job(&transport, url).await;
        }
        {
            // CL6: the run state is marked complete before the next `_since` is recorded, so
            // a crash in between repeats data (harmless) rather than skipping any.
            let mut s = state.lock().expect("state lock");
            s.job_deleted = job_deleted;
            s.completed = true;
            s.save(dir)?;
        }
        if FhirInstant::parse(&manifest.transaction_time).is_ok() {
            state::record_transaction_time(dir, &sync_key, &manifest.transaction_time)?;
        } else {
            tracing::warn!(
                "the manifest's transactionTime '{}' is not an instant; --since auto will not use it",
                manifest.transaction_time
            );
        }
        let summary = Summary::build(
            summary::RunFacts {
                base_url: o.base_url.to_string(),
                request: identity,
                status_url: status_url.as_deref().map(secret::redact_url),
                transaction_time: manifest.transaction_time.clone(),
                since,
                resumed,
                started_at,
                elapsed: started.elapsed(),
                job_deleted,
            },
            records,
            dir,
        );
        summary.write(dir)?;
        Ok(summary)
    }

    /// CL7: a courtesy `DELETE`; whatever the answer, the export already succeeded.
    async fn delete_job(&self, transport: &Transport, url: Url) -> bool {
        let req = Request {
            method: Method::DELETE,
            url,
            headers: Default::default(),
            body: None,
            with_token: true,
        };
        match transport.send(Phase::Delete, &req).await {
            Ok(resp) if resp.status().is_success() || resp.status().as_u16() == 404 => {
                self.observer.event(&Event::JobDeleted);
                true
            }
            Ok(resp) => {
                tracing::warn!(
                    "DELETE of the finished job answered HTTP {}; files are complete anyway",
                    resp.status()
                );
                false
            }
            Err(e) => {
                tracing::warn!(
                    "DELETE of the finished job failed ({e}); files are complete anyway"
                );
                false
            }
        }
    }
}

/// Removes the files a previous, completed run recorded, before a new export reuses the names.
fn remove_previous_output(dir: &Path, old: &RunState) {
    for record in old.files.values() {
        let _ = std::fs::remove_file(dir.join(&record.path));
    }
    let _ = std::fs::remove_file(dir.join(summary::MANIFEST_FILE));
}

/// `.part` files not covered by a state cannot be resumed safely: their bytes may come from
/// another export.
fn remove_stale_parts(dir: &Path) {
    for sub in [dir.to_path_buf(), dir.join("error"), dir.join("deleted")] {
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".part") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
