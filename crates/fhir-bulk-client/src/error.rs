//! The client's one error type, and the exit-code class of each error.
//!
//! Errors are grouped by what the user has to do next, which is what the exit codes of
//! `fhir-bulk export` tell scripts: fix the command line, fix the credentials, change the
//! request, ask the server's operator, or re-run to resume the download. Every message is one
//! line and never holds a secret (URLs pass through [`crate::secret::redact_url`]).

use std::fmt;
use std::time::Duration;

/// The class of an error, one per exit code of `fhir-bulk export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// Bad options or a run directory that belongs to another export: exit 2.
    Usage,
    /// Discovery, key or token failure, or a 401 that a new token did not fix: exit 3.
    Auth,
    /// The server refused the kick-off (KR2): exit 4.
    Rejected,
    /// The job failed, timed out or produced an unreadable manifest (ST5): exit 5.
    ExportFailed,
    /// A file could not be downloaded, verified or stored: exit 6.
    Download,
    /// The user pressed Ctrl-C; the state is saved: exit 130.
    Interrupted,
}

impl ExitClass {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitClass::Usage => 2,
            ExitClass::Auth => 3,
            ExitClass::Rejected => 4,
            ExitClass::ExportFailed => 5,
            ExitClass::Download => 6,
            ExitClass::Interrupted => 130,
        }
    }
}

/// The step of an export a request belongs to; it decides the class of a network failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// `.well-known/smart-configuration` or `metadata` (§12).
    Discovery,
    /// The token endpoint (§15).
    Token,
    /// The `$export` request (§1).
    Kickoff,
    /// Status polls and manifest pages (§4, M8).
    Poll,
    /// File downloads (§7).
    Download,
    /// The final `DELETE` of the job (§6).
    Delete,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Discovery => "discovery",
            Phase::Token => "token request",
            Phase::Kickoff => "kick-off",
            Phase::Poll => "status polling",
            Phase::Download => "download",
            Phase::Delete => "job deletion",
        })
    }
}

/// Everything that can stop an export.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Options that cannot work together, or a malformed value (URL, instant, type name).
    #[error("{0}")]
    Usage(String),
    /// The run directory holds an unfinished export of a different request, or unreadable state.
    #[error("{0}")]
    State(String),
    /// The private key could not be read, or is not an RSA (RS384) or P-384 (ES384) key (R3).
    #[error("cannot use the key in {path}: {reason}")]
    Key {
        /// The key file.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// No token endpoint in `.well-known/smart-configuration` nor in the CapabilityStatement (§12).
    #[error("cannot discover the token endpoint of {base}: {reason}")]
    Discovery {
        /// The FHIR base URL.
        base: String,
        /// What was tried and failed.
        reason: String,
    },
    /// The token endpoint refused (TK4); `invalid_client`, `invalid_grant` and
    /// `unauthorized_client` are configuration errors and are never retried (V10).
    #[error("the token endpoint refused (HTTP {status}): {error}{}", description.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Token {
        /// HTTP status of the token response.
        status: u16,
        /// The OAuth `error` code, or a summary of a non-OAuth answer.
        error: String,
        /// `error_description`, when given.
        description: Option<String>,
    },
    /// The server answered 401 again with a fresh token, 401 to a fixed `--bearer`, or 401
    /// when no credentials were given (CL2).
    #[error("the server answered 401 Unauthorized during {phase}{}", if !*credentials { "; it needs credentials (--client-id with --key or --secret-file, or --bearer)" } else if *renewed { ", even after the access token was renewed" } else { "; the access token was refused" })]
    Unauthorized {
        /// Where it happened.
        phase: Phase,
        /// Whether a new token had been fetched before the final 401.
        renewed: bool,
        /// Whether a token was sent at all.
        credentials: bool,
    },
    /// The kick-off was refused with 4xx/5xx (KR2), or its answer had no `Content-Location`.
    #[error("the server rejected the export request (HTTP {status}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The OperationOutcome's diagnostics, or a summary of the body.
        message: String,
    },
    /// The job failed on the server (ST5), or it is gone (404 on a resumed status URL).
    #[error("the export failed on the server (HTTP {status}): {message}")]
    ExportFailed {
        /// HTTP status of the failing poll.
        status: u16,
        /// The OperationOutcome's diagnostics, or a summary of the body.
        message: String,
    },
    /// The completion manifest could not be read even leniently (§5).
    #[error("the server sent an unreadable manifest: {0}")]
    Manifest(String),
    /// The job did not complete before `--timeout` ran out (CL4).
    #[error("the export did not complete within {} (--timeout); run the same command again to keep waiting", humanize(*.0))]
    Timeout(Duration),
    /// A request failed without an HTTP answer (DNS, connect, TLS, reset) after all retries.
    #[error("{phase} failed: {url}: {message}")]
    Http {
        /// Where it happened; decides the exit class.
        phase: Phase,
        /// The URL (redacted).
        url: String,
        /// The transport error.
        message: String,
        /// The request never reached the server, so it is safe to send again.
        connect: bool,
    },
    /// A file could not be downloaded after all retries, or the server refused it (§7).
    #[error("download of {url} failed: {reason}")]
    Download {
        /// The file URL (redacted).
        url: String,
        /// The last failure.
        reason: String,
    },
    /// A downloaded file breaks the NDJSON rules (F3, M4): bad JSON, wrong `resourceType`, wrong `count`.
    #[error("{path}: line {line}: {reason}")]
    Verify {
        /// The file, relative to the output directory.
        path: String,
        /// 1-based line number; 0 for whole-file checks such as `count`.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a local file failed.
    #[error("{path}: {source}")]
    Io {
        /// The local path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// The exit-code class of this error.
    pub fn exit_class(&self) -> ExitClass {
        match self {
            Error::Usage(_) | Error::State(_) => ExitClass::Usage,
            Error::Key { .. }
            | Error::Discovery { .. }
            | Error::Token { .. }
            | Error::Unauthorized { .. } => ExitClass::Auth,
            Error::Rejected { .. } => ExitClass::Rejected,
            Error::ExportFailed { .. } | Error::Manifest(_) | Error::Timeout(_) => {
                ExitClass::ExportFailed
            }
            Error::Http { phase, .. } => match phase {
                Phase::Discovery | Phase::Token => ExitClass::Auth,
                Phase::Kickoff => ExitClass::Rejected,
                Phase::Poll => ExitClass::ExportFailed,
                Phase::Download | Phase::Delete => ExitClass::Download,
            },
            Error::Download { .. } | Error::Verify { .. } | Error::Io { .. } => ExitClass::Download,
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `90s`, `15m`, `2h 5m`: durations as a person reads them.
pub fn humanize(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct() {
        let all = [
            ExitClass::Usage,
            ExitClass::Auth,
            ExitClass::Rejected,
            ExitClass::ExportFailed,
            ExitClass::Download,
            ExitClass::Interrupted,
        ];
        let mut codes: Vec<u8> = all.iter().map(|c| c.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes, vec![2, 3, 4, 5, 6, 130]);
    }

    #[test]
    fn network_failures_are_classed_by_phase() {
        let http = |phase| Error::Http {
            phase,
            url: "u".into(),
            message: "m".into(),
            connect: true,
        };
        assert_eq!(http(Phase::Token).exit_class(), ExitClass::Auth);
        assert_eq!(http(Phase::Kickoff).exit_class(), ExitClass::Rejected);
        assert_eq!(http(Phase::Poll).exit_class(), ExitClass::ExportFailed);
        assert_eq!(http(Phase::Download).exit_class(), ExitClass::Download);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(humanize(Duration::from_secs(90)), "1m 30s");
        assert_eq!(humanize(Duration::from_secs(3600 * 6)), "6h");
        assert_eq!(humanize(Duration::from_millis(20)), "20ms");
    }
}
