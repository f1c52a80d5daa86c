//! Progress reporting without a terminal: the library calls an [`Observer`] and the binary
//! draws progress bars from the events (house rule 3: the library knows no indicatif).
//!
//! Observers are called from the download tasks concurrently, so they take `&self` and must
//! be quick: a bar update, a counter, a channel send. They cannot fail the export.

use crate::error::Phase;
use std::time::Duration;

/// Something worth showing happened.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A previous run's state was found and is being continued (resume).
    Resumed {
        /// The status URL being polled again, if the job had not finished.
        status_url: Option<String>,
        /// Files already downloaded and verified.
        files_done: usize,
    },
    /// The server accepted the kick-off (KR1).
    KickedOff {
        /// The (redacted) status URL.
        status_url: String,
    },
    /// A status poll said "still running" (ST3).
    Polling {
        /// Time since the kick-off.
        elapsed: Duration,
        /// `X-Progress`, verbatim (V3).
        progress: Option<String>,
        /// The percentage in `X-Progress`, if any.
        percent: Option<u8>,
        /// The wait before the next poll.
        next_poll_in: Duration,
    },
    /// A request failed in a way that is retried after `delay`.
    Retrying {
        /// Where.
        phase: Phase,
        /// Why (one line, no secrets).
        reason: String,
        /// The wait.
        delay: Duration,
    },
    /// The manifest is complete; downloads start.
    ManifestReady {
        /// Files to fetch (output, error and deleted).
        files: usize,
        /// The sum of the manifest's `count`s, when every output file has one.
        resources: Option<u64>,
    },
    /// A file verified by an earlier run was found intact on disk and is skipped.
    FileSkipped {
        /// Path relative to the output directory.
        path: String,
        /// Its size.
        bytes: u64,
        /// Its resources.
        resources: u64,
    },
    /// Bytes of a file body arrived (after content decoding).
    Bytes {
        /// How many.
        n: u64,
    },
    /// A file was downloaded and verified.
    FileDone {
        /// Path relative to the output directory.
        path: String,
        /// Its size on disk.
        bytes: u64,
        /// Its resources.
        resources: u64,
    },
    /// The `DELETE` of the job was sent (CL7).
    JobDeleted,
}

/// Receives [`Event`]s.
pub trait Observer: Send + Sync {
    /// Called for every event.
    fn event(&self, event: &Event);
}

/// Ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Observer for Quiet {
    fn event(&self, _event: &Event) {}
}
