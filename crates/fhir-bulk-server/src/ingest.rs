//! Loading data from files into the store: NDJSON (`.ndjson`, `.ndjson.gz`), Bundles and
//! single resources (`.json`), and folders of them. Used by `fhir-bulk load` and by
//! `serve --demo`.
//!
//! # Behaviour
//! - **Atomic per file.** Each file is one [`Store::write_stream`] transaction: a bad line or
//!   Bundle entry anywhere in it (even the last line of a multi-GB file) rolls the whole file
//!   back, and the error names the file and line ([`IngestError`]).
//! - **Stops at the first bad file.** Files before it stay loaded (each committed on its own);
//!   it and the files after it are not touched. [`LoadProgress::file_loaded`] tells the caller
//!   which files were committed before the error.
//! - **Folders** are walked recursively in path order; hidden entries are ignored and files
//!   of unknown formats are skipped with a note ([`LoadProgress::skipped`]).
//! - **Bounded memory.** NDJSON is read line by line and handed to the store in batches of
//!   about [`BATCH_WRITES`] writes, so memory does not grow with the file. Only `.json` files
//!   (one Bundle or resource) are read whole, as a Bundle must be seen whole to resolve its
//!   `urn:uuid:` references.
//!
//! # Pipeline and concurrency
//! Per file, a blocking task (ours) parses and validates the input and sends batches into a
//! bounded channel (capacity `CHANNEL_BATCHES`); the receiving end is the stream given to
//! `write_stream`, whose blocking writer applies them. Parsing and SQLite writing thus run on
//! two threads in parallel. The channel's bound is what keeps memory flat: a parser ahead of
//! the writer waits in `blocking_send`. The store commits only when the parser says the file
//! is complete; if the parser stops for any other reason the stream yields an `Err` and the
//! store rolls back. If the store fails first it drops the stream, the parser's next
//! send fails and the parser stops. Progress is counted in atomics by the parser and reported
//! from the caller's task on a timer, so the [`LoadProgress`] implementation is only ever
//! called from the task that called us and needs no `'static` lifetime.

mod bundle;
mod ndjson;
mod source;

use fhir_bulk_spec::bundle::BundleError;
use fhir_bulk_store::{Store, StoreError, Write};
use futures::StreamExt;
use futures::stream::BoxStream;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub use source::Format;

/// Writes per batch handed to the store (a batch is also cut at [`BATCH_BYTES`] of input).
/// Large enough that per-batch overhead vanishes, small enough to keep memory flat.
pub const BATCH_WRITES: usize = 1000;

/// Input bytes per batch at most, so files of very large resources also stay bounded.
pub const BATCH_BYTES: usize = 2 << 20;

/// Batches buffered between the parser and the store's writer.
const CHANNEL_BATCHES: usize = 2;

/// How often progress is reported while a file loads.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Why a load stopped. Every variant names the file; line-level problems name the line too
/// (`file:line: message`). Messages are meant for the person who supplied the data.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IngestError {
    /// A path could not be read: missing, unreadable, a folder that cannot be listed, or an
    /// I/O error mid-file (which includes a corrupt gzip stream).
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The content is not acceptable: a line (or `.json` file) that is not JSON, not an
    /// object, has no or an unknown `resourceType`, or has a missing or invalid `id`.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The 1-based line, when the problem is one line's (always, for NDJSON).
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
    /// A Bundle that cannot be loaded; the message names the entry ("Bundle entry 3: …").
    #[error("{}: {source}", path.display())]
    Bundle {
        /// The file.
        path: PathBuf,
        /// The Bundle's problem.
        source: BundleError,
    },
    /// A file named explicitly whose format we do not know by its name.
    #[error("{}: not a file we can load (expected .ndjson, .ndjson.gz or .json)", path.display())]
    UnknownFormat {
        /// The file.
        path: PathBuf,
    },
    /// The store failed while writing the file (not the data's fault); nothing of the file
    /// was written.
    #[error("{}: {source}", path.display())]
    Store {
        /// The file being written.
        path: PathBuf,
        /// The store's error.
        source: StoreError,
    },
}

impl IngestError {
    /// The file (or folder) the load stopped at.
    pub fn path(&self) -> &Path {
        match self {
            IngestError::Io { path, .. }
            | IngestError::Invalid { path, .. }
            | IngestError::Bundle { path, .. }
            | IngestError::UnknownFormat { path }
            | IngestError::Store { path, .. } => path,
        }
    }
}

/// Hears how a load goes, so a terminal can show a progress bar while the library stays free
/// of terminal code. Called only from the task running the load. Every method but
/// [`LoadProgress::advanced`] has an empty default.
pub trait LoadProgress: Sync {
    /// Once, before the first file: how many files will be loaded and their total size on
    /// disk (compressed size for `.gz`), the scale of [`LoadProgress::advanced`]'s bytes.
    fn start(&self, files: usize, total_bytes: u64) {
        let _ = (files, total_bytes);
    }

    /// A file in a folder was skipped because its format is unknown.
    fn skipped(&self, path: &Path, reason: &str) {
        let _ = (path, reason);
    }

    /// A file is about to be read.
    fn file_started(&self, path: &Path) {
        let _ = path;
    }

    /// Running totals since [`LoadProgress::start`]: input bytes read (as on disk) and
    /// resources parsed. Called a few times a second while a file loads.
    fn advanced(&self, bytes_read: u64, resources: u64);

    /// A file was committed to the store.
    fn file_loaded(&self, report: &FileReport) {
        let _ = report;
    }
}

/// A [`LoadProgress`] that ignores everything (for `serve --demo`, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl LoadProgress for NoProgress {
    fn advanced(&self, _bytes_read: u64, _resources: u64) {}
}

/// What one committed file wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReport {
    /// The file.
    pub path: PathBuf,
    /// Its size on disk.
    pub bytes: u64,
    /// Writes per resource type (puts and, from Bundles, deletes).
    pub per_type: BTreeMap<String, u64>,
}

impl FileReport {
    /// All writes of the file.
    pub fn resources(&self) -> u64 {
        self.per_type.values().sum()
    }
}

/// What a whole load wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The files committed, in load order.
    pub files: Vec<FileReport>,
    /// Files in folders that were skipped (unknown format).
    pub skipped: Vec<PathBuf>,
    /// Writes per resource type over all files.
    pub per_type: BTreeMap<String, u64>,
    /// All writes.
    pub resources: u64,
    /// Input bytes (size on disk) of the files loaded.
    pub bytes: u64,
    /// Wall time of the load.
    pub elapsed: Duration,
}

impl LoadReport {
    /// Resources written per second of wall time.
    pub fn resources_per_second(&self) -> f64 {
        self.resources as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn add(&mut self, file: FileReport) {
        for (t, n) in &file.per_type {
            *self.per_type.entry(t.clone()).or_default() += n;
        }
        self.resources += file.resources();
        self.bytes += file.bytes;
        self.files.push(file);
    }
}

/// Loads files and folders into `tenant`, each file atomically, in order; stops at the first
/// file that fails (see the module doc).
pub async fn load_paths(
    store: &dyn Store,
    tenant: &str,
    paths: &[PathBuf],
    progress: &dyn LoadProgress,
) -> Result<LoadReport, IngestError> {
    let started = Instant::now();
    let owned = paths.to_vec();
    let found = tokio::task::spawn_blocking(move || source::discover(&owned))
        .await
        .map_err(|e| task_failed(paths.first().map_or(Path::new("."), |p| p), e))??;
    for path in &found.skipped {
        progress.skipped(path, "not .ndjson, .ndjson.gz or .json");
    }
    let total = found.sources.iter().map(|s| s.size).sum();
    progress.start(found.sources.len(), total);
    let counters = Arc::new(Counters::default());
    let mut report = LoadReport {
        skipped: found.skipped,
        ..LoadReport::default()
    };
    for src in found.sources {
        let file = load_source(store, tenant, src, &counters, progress).await?;
        progress.file_loaded(&file);
        report.add(file);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Loads one file atomically; its format is taken from its name ([`Format::of`]).
pub async fn load_file(
    store: &dyn Store,
    tenant: &str,
    path: &Path,
    progress: &dyn LoadProgress,
) -> Result<FileReport, IngestError> {
    let format =
        Format::of(path).ok_or_else(|| IngestError::UnknownFormat { path: path.into() })?;
    let size = tokio::fs::metadata(path)
        .await
        .map_err(|source| IngestError::Io {
            path: path.into(),
            source,
        })?
        .len();
    progress.start(1, size);
    let src = source::Source {
        path: path.into(),
        format,
        size,
    };
    let file = load_source(store, tenant, src, &Arc::new(Counters::default()), progress).await?;
    progress.file_loaded(&file);
    Ok(file)
}

/// Running totals the parser updates and the progress timer reads.
#[derive(Default)]
struct Counters {
    bytes: AtomicU64,
    resources: AtomicU64,
}

/// What the parser sends the store.
enum Parsed {
    /// Writes to apply.
    Batch(Vec<Write>),
    /// The whole file was parsed and is valid: commit.
    End,
}

/// The sending half of the parser → store channel.
type BatchSender = mpsc::Sender<Parsed>;

/// Sends a batch to the store. `false` when the store has stopped listening (it failed, and
/// its error is what the load reports), so the parser should stop.
fn send_batch(tx: &BatchSender, counters: &Counters, batch: Vec<Write>) -> bool {
    counters
        .resources
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    tx.blocking_send(Parsed::Batch(batch)).is_ok()
}

/// The batches of a file as the stream `write_stream` takes. It ends cleanly (commit) only on
/// the parser's [`Parsed::End`]; a channel closed without it (the parser found bad input, or
/// panicked) yields an `Err`, which rolls the file back. Failing closed like this means no
/// parser exit path can commit half a file.
fn batch_stream(rx: mpsc::Receiver<Parsed>) -> BoxStream<'static, Result<Vec<Write>, StoreError>> {
    futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Parsed::Batch(b)) => Some((Ok(b), Some(rx))),
            Some(Parsed::End) => None,
            None => Some((
                Err(StoreError::Invalid("the input was rejected".into())),
                None,
            )),
        }
    })
    .boxed()
}

async fn load_source(
    store: &dyn Store,
    tenant: &str,
    src: source::Source,
    counters: &Arc<Counters>,
    progress: &dyn LoadProgress,
) -> Result<FileReport, IngestError> {
    progress.file_started(&src.path);
    tracing::debug!(path = %src.path.display(), format = ?src.format, "loading");
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let parser = {
        let (path, format, counters) = (src.path.clone(), src.format, Arc::clone(counters));
        tokio::task::spawn_blocking(move || {
            match format {
                Format::Ndjson | Format::NdjsonGz => {
                    ndjson::parse(&path, format == Format::NdjsonGz, &counters, &tx)
                }
                Format::Json => bundle::parse(&path, &counters, &tx),
            }?;
            // Only now may the store commit (see `batch_stream`). A failed send means the
            // store already failed, and its error is reported.
            let _ = tx.blocking_send(Parsed::End);
            Ok(())
        })
    };
    let written = store.write_stream(tenant, batch_stream(rx));
    tokio::pin!(written);
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    let report_progress = || {
        progress.advanced(
            counters.bytes.load(Ordering::Relaxed),
            counters.resources.load(Ordering::Relaxed),
        )
    };
    let written = loop {
        tokio::select! {
            w = &mut written => break w,
            _ = ticks.tick() => report_progress(),
        }
    };
    report_progress();
    // The parser's error says more (file and line) than the rollback it caused, so it wins.
    parser.await.map_err(|e| task_failed(&src.path, e))??;
    let summary = written.map_err(|source| IngestError::Store {
        path: src.path.clone(),
        source,
    })?;
    Ok(FileReport {
        path: src.path,
        bytes: src.size,
        per_type: summary.per_type,
    })
}

/// A blocking task of ours panicked: reported as the store's task failure for that path.
fn task_failed(path: &Path, e: tokio::task::JoinError) -> IngestError {
    IngestError::Store {
        path: path.into(),
        source: StoreError::from(e),
    }
}
