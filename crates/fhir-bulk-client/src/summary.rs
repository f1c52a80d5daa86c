//! What an export produced: `DIR/summary.json` for programs, and the totals the CLI prints.

use crate::error::Result;
use crate::state::{FileKind, FileRecord, write_atomic};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::time::Duration;

/// The summary file's name inside the output directory.
pub const SUMMARY_FILE: &str = "summary.json";
/// The manifest's copy inside the output directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Totals for one resource type of the `output` files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TypeTotals {
    /// Files.
    pub files: usize,
    /// Resources.
    pub resources: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// A finished export.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The FHIR base URL.
    pub base_url: String,
    /// The kick-off: method, URL and body.
    pub request: String,
    /// The status URL (redacted).
    pub status_url: Option<String>,
    /// The manifest's `transactionTime` (M1): the next `_since`.
    pub transaction_time: String,
    /// The `_since` that was sent.
    pub since: Option<String>,
    /// Whether this run continued an interrupted one.
    pub resumed: bool,
    /// When this run started.
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// Seconds this run took.
    pub elapsed_seconds: f64,
    /// Output resources.
    pub resources: u64,
    /// Bytes on disk, all files.
    pub bytes: u64,
    /// `bytes / elapsed_seconds`.
    pub bytes_per_second: f64,
    /// Output resources per type.
    pub types: BTreeMap<String, TypeTotals>,
    /// `error` files (M6) and the OperationOutcomes in them.
    pub error_files: usize,
    /// OperationOutcomes in the error files.
    pub error_resources: u64,
    /// The first few diagnostics of the error files (CL6: "log the error files").
    pub error_messages: Vec<String>,
    /// `deleted` files (M5).
    pub deleted_files: usize,
    /// Deletion Bundles in them.
    pub deleted_resources: u64,
    /// Whether the job was deleted on the server (CL7).
    pub job_deleted: bool,
    /// Every file, in manifest order.
    pub files: Vec<FileRecord>,
}

/// How many error diagnostics the summary quotes.
const MAX_ERROR_MESSAGES: usize = 5;

/// What [`Summary::build`] needs besides the files.
pub(crate) struct RunFacts {
    pub base_url: String,
    pub request: String,
    pub status_url: Option<String>,
    pub transaction_time: String,
    pub since: Option<String>,
    pub resumed: bool,
    pub started_at: String,
    pub elapsed: Duration,
    pub job_deleted: bool,
}

impl Summary {
    pub(crate) fn build(facts: RunFacts, files: Vec<FileRecord>, dir: &Path) -> Summary {
        let mut types: BTreeMap<String, TypeTotals> = BTreeMap::new();
        let (mut error_files, mut error_resources, mut deleted_files, mut deleted_resources) =
            (0, 0, 0, 0);
        let mut error_messages = Vec::new();
        for f in &files {
            match f.kind {
                FileKind::Output => {
                    let t = types
                        .entry(
                            f.resource_type
                                .clone()
                                .unwrap_or_else(|| "(organized)".into()),
                        )
                        .or_default();
                    t.files += 1;
                    t.resources += f.resources;
                    t.bytes += f.bytes;
                }
                FileKind::Error => {
                    error_files += 1;
                    error_resources += f.resources;
                    if error_messages.len() < MAX_ERROR_MESSAGES {
                        error_messages.extend(first_diagnostics(
                            &dir.join(&f.path),
                            MAX_ERROR_MESSAGES - error_messages.len(),
                        ));
                    }
                }
                FileKind::Deleted => {
                    deleted_files += 1;
                    deleted_resources += f.resources;
                }
            }
        }
        let resources = types.values().map(|t| t.resources).sum();
        let bytes = files.iter().map(|f| f.bytes).sum();
        let secs = facts.elapsed.as_secs_f64();
        Summary {
            base_url: facts.base_url,
            request: facts.request,
            status_url: facts.status_url,
            transaction_time: facts.transaction_time,
            since: facts.since,
            resumed: facts.resumed,
            started_at: facts.started_at,
            finished_at: fhir_bulk_spec::instant::Instant::now().to_string(),
            elapsed_seconds: secs,
            resources,
            bytes,
            bytes_per_second: if secs > 0.0 { bytes as f64 / secs } else { 0.0 },
            types,
            error_files,
            error_resources,
            error_messages,
            deleted_files,
            deleted_resources,
            job_deleted: facts.job_deleted,
            files,
        }
    }

    /// Writes `DIR/summary.json` atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        write_atomic(
            &dir.join(SUMMARY_FILE),
            &serde_json::to_vec_pretty(self).expect("the summary serializes"),
        )
    }
}

/// The diagnostics of the first `max` OperationOutcomes of an error file (plain or gzip).
fn first_diagnostics(path: &Path, max: usize) -> Vec<String> {
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    BufReader::new(reader)
        .lines()
        .map_while(|l| l.ok())
        .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
        .filter_map(|v| fhir_bulk_spec::outcome::diagnostics(&v))
        .take(max)
        .collect()
}
