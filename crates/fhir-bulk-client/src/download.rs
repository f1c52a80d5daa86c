//! Downloading the manifest's files: parallel, streamed, retried, resumed, verified (§7, CL5).
//!
//! Each file streams into `<dest>.part` chunk by chunk, so memory stays flat whatever its
//! size. A failure (429, 5xx, a reset connection, a body cut short) is retried with backoff,
//! resuming with `Range: bytes=<part size>-` (RFC 9110 §14). The part holds the *decoded*
//! body, so resumed requests ask for `Accept-Encoding: identity`: a byte offset into a gzip
//! stream would mean nothing. Only a `206` whose `Content-Range` starts at our offset, without
//! a content coding, is appended; a `200` (the server ignored `Range`) restarts the file.
//!
//! The token is sent only when the manifest says `requiresAccessToken` (F2) and, by the
//! transport's rule, only to the server's own origin, also across redirects (CL5).
//!
//! Some servers answer a `Binary/<id>` file URL with a FHIR `Binary` resource instead of the
//! content (V2: HAPI without `Accept: application/fhir+ndjson`); its base64 `data` is decoded.
//! That one case reads the file into memory, since the content is inside a JSON string.

use crate::backoff::{Backoff, Timings, retry_after_or};
use crate::error::{Error, Phase, Result};
use crate::kickoff::body_message;
use crate::observer::{Event, Observer};
use crate::secret::redact_url;
use crate::state::{FileKind, FileRecord, RunState, is_intact};
use crate::transport::{Request, Transport, describe, is_retryable_status};
use base64::Engine;
use fhir_bulk_spec::manifest::{Manifest, OutputFile};
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, RANGE,
};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;
use url::Url;

/// One file to fetch, with the local name it gets.
#[derive(Debug, Clone)]
pub(crate) struct FileTask {
    pub kind: FileKind,
    pub entry: OutputFile,
    /// Path relative to the output directory, `/`-separated.
    pub path: String,
}

/// A type name safe to use in a file name; servers are not trusted with paths.
fn file_stem(kind: FileKind, resource_type: Option<&str>) -> String {
    let fallback = match kind {
        FileKind::Output => "output",
        FileKind::Error => "OperationOutcome",
        FileKind::Deleted => "Bundle",
    };
    match resource_type {
        Some(t)
            if !t.is_empty() && t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            t.to_string()
        }
        _ => fallback.to_string(),
    }
}

/// Local names for every file of the manifest: `<Type>.<n>.ndjson` (`.ndjson.gz` with gzip),
/// `error/…` and `deleted/…`, `n` counting from 1 per type in manifest order.
pub(crate) fn plan(manifest: &Manifest, gzip: bool) -> Vec<FileTask> {
    let ext = if gzip { "ndjson.gz" } else { "ndjson" };
    let mut seen: HashMap<(FileKind, String), u32> = HashMap::new();
    let lists = [
        (FileKind::Output, &manifest.output),
        (FileKind::Error, &manifest.error),
        (FileKind::Deleted, &manifest.deleted),
    ];
    let mut tasks = Vec::new();
    for (kind, entries) in lists {
        for entry in entries {
            let stem = file_stem(kind, entry.resource_type.as_deref());
            let n = seen.entry((kind, stem.clone())).or_default();
            *n += 1;
            let dir = match kind {
                FileKind::Output => "",
                FileKind::Error => "error/",
                FileKind::Deleted => "deleted/",
            };
            tasks.push(FileTask {
                kind,
                entry: entry.clone(),
                path: format!("{dir}{stem}.{n}.{ext}"),
            });
        }
    }
    tasks
}

/// Everything the download tasks share.
pub(crate) struct Downloader<'a> {
    pub transport: &'a Transport,
    pub timings: &'a Timings,
    pub dir: &'a Path,
    pub observer: &'a dyn Observer,
    pub requires_token: bool,
    pub gzip: bool,
    pub parallel: usize,
    /// The run state; a std mutex because it is held only to update a map and write a small
    /// file, never across an await. Saving under the lock keeps the writes in order.
    pub state: &'a Mutex<RunState>,
}

impl Downloader<'_> {
    /// Downloads every task, `parallel` at a time. Files that fail do not stop the others, so
    /// a re-run has as little left as possible; the first failure (in manifest order) is returned.
    pub async fn run(&self, tasks: &[FileTask]) -> Result<Vec<FileRecord>> {
        let mut results: Vec<(usize, Result<FileRecord>)> =
            futures::stream::iter(tasks.iter().enumerate())
                .map(|(i, task)| async move { (i, self.download(task).await) })
                .buffer_unordered(self.parallel.max(1))
                .collect()
                .await;
        results.sort_by_key(|(i, _)| *i);
        results.into_iter().map(|(_, r)| r).collect()
    }

    fn save(&self, record: &FileRecord) -> Result<()> {
        let mut state = self.state.lock().expect("state lock");
        state.files.insert(record.path.clone(), record.clone());
        state.save(self.dir)
    }

    async fn download(&self, task: &FileTask) -> Result<FileRecord> {
        let done = self
            .state
            .lock()
            .expect("state lock")
            .files
            .get(&task.path)
            .cloned();
        if let Some(record) = done {
            let dir = self.dir.to_path_buf();
            let check = record.clone();
            let intact = tokio::task::spawn_blocking(move || is_intact(&dir, &check))
                .await
                .unwrap_or(false);
            if intact && record.url == task.entry.url {
                self.observer.event(&Event::FileSkipped {
                    path: record.path.clone(),
                    bytes: record.bytes,
                    resources: record.resources,
                });
                return Ok(record);
            }
            tracing::warn!(
                "{}: changed on disk since it was verified; downloading it again",
                task.path
            );
        }
        let dest = self.dir.join(&task.path);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| Error::io(parent, e))?;
        }
        let part = part_path(&dest);
        let shown = redact_url(&task.entry.url);
        let url = Url::parse(&task.entry.url).map_err(|e| Error::Download {
            url: shown.clone(),
            reason: format!("not an absolute URL ({e}); M4 requires one"),
        })?;
        let json_like = self.fetch(&url, &part).await?;
        let expected = task.entry.resource_type.clone();
        if json_like && expected.as_deref() != Some("Binary") {
            unwrap_binary(&part).await?;
        }
        let (p, d, rel, count, gzip) = (
            part.clone(),
            dest.clone(),
            task.path.clone(),
            task.entry.count,
            self.gzip,
        );
        let stored = tokio::task::spawn_blocking(move || {
            crate::verify::store_verified(&p, &d, &rel, expected.as_deref(), count, gzip)
        })
        .await
        .map_err(|e| Error::io(&dest, std::io::Error::other(e)))??;
        let record = FileRecord {
            kind: task.kind,
            resource_type: task.entry.resource_type.clone(),
            url: task.entry.url.clone(),
            path: task.path.clone(),
            bytes: stored.bytes,
            sha256: stored.sha256,
            resources: stored.resources,
        };
        self.save(&record)?;
        self.observer.event(&Event::FileDone {
            path: record.path.clone(),
            bytes: record.bytes,
            resources: record.resources,
        });
        Ok(record)
    }

    /// Streams `url` into `part`, resuming what is there. Returns whether the body was JSON
    /// rather than NDJSON (a candidate for the V2 `Binary` unwrapping).
    async fn fetch(&self, url: &Url, part: &Path) -> Result<bool> {
        let shown = redact_url(url.as_str());
        let mut backoff = Backoff::new(self.timings.retry_initial, self.timings.retry_max);
        loop {
            let offset = tokio::fs::metadata(part)
                .await
                .map(|m| m.len())
                .unwrap_or(0);
            let mut req = Request::get(url.clone()).header(ACCEPT, fhir_bulk_spec::FHIR_NDJSON);
            req.with_token = self.requires_token;
            if offset > 0 {
                req.headers.insert(
                    RANGE,
                    HeaderValue::from_str(&format!("bytes={offset}-")).expect("ascii"),
                );
                req.headers
                    .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            } else {
                req.headers
                    .insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            }
            let resp = match self.transport.send(Phase::Download, &req).await {
                Ok(resp) => resp,
                Err(e @ Error::Http { .. }) => {
                    self.retry_or_fail(&mut backoff, &shown, e.to_string(), None)
                        .await?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = resp.status();
            let encoding = resp
                .headers()
                .get(CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("identity")
                .trim()
                .to_ascii_lowercase();
            let gzipped = encoding.contains("gzip");
            let append = match status {
                StatusCode::OK => false,
                StatusCode::PARTIAL_CONTENT => {
                    let start = resp
                        .headers()
                        .get(CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(content_range_start);
                    if offset > 0 && start == Some(offset) && !gzipped {
                        true
                    } else {
                        // A range we did not ask for, or one inside a compressed body: start over.
                        tracing::warn!(
                            "{shown}: unusable 206 (Content-Range start {start:?}, ours {offset}); downloading it again"
                        );
                        remove_part(part).await?;
                        self.retry_or_fail(
                            &mut backoff,
                            &shown,
                            "unusable partial content".into(),
                            None,
                        )
                        .await?;
                        continue;
                    }
                }
                StatusCode::RANGE_NOT_SATISFIABLE => {
                    remove_part(part).await?;
                    self.retry_or_fail(&mut backoff, &shown, "HTTP 416 for our Range".into(), None)
                        .await?;
                    continue;
                }
                s if is_retryable_status(s) => {
                    let asked = retry_after_or(resp.headers(), std::time::Duration::ZERO);
                    self.retry_or_fail(&mut backoff, &shown, format!("HTTP {s}"), Some(asked))
                        .await?;
                    continue;
                }
                s => {
                    let body = resp.bytes().await.unwrap_or_default();
                    return Err(Error::Download {
                        url: shown,
                        reason: format!("HTTP {}: {}", s.as_u16(), body_message(&body, s)),
                    });
                }
            };
            if offset > 0 && !append {
                tracing::info!(
                    "{shown}: the server ignored Range; downloading the whole file again"
                );
            }
            let json_like = resp
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(|ct| {
                    let base = ct
                        .split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase();
                    base == "application/json" || base == "application/fhir+json"
                })
                .unwrap_or(false);
            match self.stream_body(resp, part, append, gzipped).await {
                Ok(()) => return Ok(json_like),
                Err(StreamError::Local(e)) => return Err(e),
                Err(StreamError::Remote { reason, progressed }) => {
                    if progressed {
                        // Bytes arrived: the connection is flaky, not the file; keep trying.
                        backoff.reset();
                    }
                    self.retry_or_fail(&mut backoff, &shown, reason, None)
                        .await?;
                }
            }
        }
    }

    async fn retry_or_fail(
        &self,
        backoff: &mut Backoff,
        shown: &str,
        reason: String,
        asked: Option<std::time::Duration>,
    ) -> Result<()> {
        if backoff.attempts() >= self.timings.max_retries {
            return Err(Error::Download {
                url: shown.to_string(),
                reason: format!("{reason} (after {} retries)", self.timings.max_retries),
            });
        }
        let delay = backoff.next_delay().max(asked.unwrap_or_default());
        tracing::warn!(
            "{shown}: {reason}; retrying in {}",
            crate::error::humanize(delay)
        );
        self.observer.event(&Event::Retrying {
            phase: Phase::Download,
            reason,
            delay,
        });
        tokio::time::sleep(delay).await;
        Ok(())
    }

    async fn stream_body(
        &self,
        resp: reqwest::Response,
        part: &Path,
        append: bool,
        gzipped: bool,
    ) -> Result<(), StreamError> {
        let local = |e: std::io::Error| StreamError::Local(Error::io(part, e));
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .await
            .map_err(local)?;
        let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, file);
        // flate2's write-side decoder turns each compressed chunk into plain bytes in `Vec`,
        // which we drain after every chunk: streaming decompression without an async codec.
        let mut decoder = gzipped.then(|| flate2::write::MultiGzDecoder::new(Vec::new()));
        let mut stream = resp.bytes_stream();
        let mut progressed = false;
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    failure = Some(describe(e));
                    break;
                }
            };
            progressed = true;
            let plain: Vec<u8>;
            let bytes: &[u8] = match decoder.as_mut() {
                Some(d) => {
                    if let Err(e) = d.write_all(&chunk) {
                        failure = Some(format!("bad gzip data: {e}"));
                        break;
                    }
                    plain = std::mem::take(d.get_mut());
                    &plain
                }
                None => &chunk,
            };
            out.write_all(bytes).await.map_err(local)?;
            self.observer.event(&Event::Bytes {
                n: bytes.len() as u64,
            });
        }
        if failure.is_none()
            && let Some(d) = decoder.as_mut()
        {
            match d.try_finish() {
                Ok(()) => {
                    let rest = std::mem::take(d.get_mut());
                    out.write_all(&rest).await.map_err(local)?;
                }
                Err(e) => failure = Some(format!("bad gzip data: {e}")),
            }
        }
        out.flush().await.map_err(local)?;
        match failure {
            None => Ok(()),
            Some(reason) if reason.starts_with("bad gzip") => {
                // A corrupt compressed body cannot be resumed from its decoded prefix.
                drop(out);
                remove_part(part).await.map_err(StreamError::Local)?;
                Err(StreamError::Remote {
                    reason,
                    progressed: false,
                })
            }
            Some(reason) => Err(StreamError::Remote {
                reason: format!("transfer cut off: {reason}"),
                progressed,
            }),
        }
    }
}

enum StreamError {
    /// Our disk failed: not retried.
    Local(Error),
    /// The transfer failed: retried, resuming from what arrived.
    Remote { reason: String, progressed: bool },
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

async fn remove_part(part: &Path) -> Result<()> {
    match tokio::fs::remove_file(part).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(part, e)),
    }
}

/// The first byte position of `Content-Range: bytes <start>-<end>/<size>`.
fn content_range_start(v: &str) -> Option<u64> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

/// V2: if `part` holds a FHIR `Binary` resource rather than NDJSON, replace it by the decoded
/// `data`. Only the first 4 KiB are looked at before deciding to read the whole file.
async fn unwrap_binary(part: &Path) -> Result<()> {
    let io = |e| Error::io(part, e);
    let head = {
        use tokio::io::AsyncReadExt;
        let mut f = tokio::fs::File::open(part).await.map_err(io)?;
        let mut buf = vec![0u8; 4096];
        let n = f.read(&mut buf).await.map_err(io)?;
        buf.truncate(n);
        buf
    };
    let head = String::from_utf8_lossy(&head);
    let compact: String = head.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.contains(r#""resourceType":"Binary""#) {
        return Ok(());
    }
    let body = tokio::fs::read(part).await.map_err(io)?;
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return Ok(()); // NDJSON whose first line is a Binary: leave it to the line checks.
    };
    let Some(data) = v.get("data").and_then(|d| d.as_str()) else {
        return Ok(());
    };
    let cleaned: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(cleaned.as_bytes())
        .map_err(|e| Error::Download {
            url: part.display().to_string(),
            reason: format!("Binary.data is not base64: {e}"),
        })?;
    tracing::info!(
        "{}: the server sent a Binary resource (V2); decoded its data",
        part.display()
    );
    tokio::fs::write(part, decoded).await.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(t: Option<&str>, url: &str) -> OutputFile {
        OutputFile {
            resource_type: t.map(str::to_string),
            url: url.into(),
            count: None,
            continues_in_file: None,
        }
    }

    #[test]
    fn plans_names_per_type_and_kind() {
        let m = Manifest {
            transaction_time: "t".into(),
            request: "r".into(),
            requires_access_token: true,
            output_organized_by: None,
            output: vec![
                file(Some("Patient"), "u1"),
                file(Some("Observation"), "u2"),
                file(Some("Patient"), "u3"),
                file(Some("../../etc"), "u4"),
            ],
            deleted: vec![file(None, "d1")],
            error: vec![file(Some("OperationOutcome"), "e1")],
            link: vec![],
            extension: None,
        };
        let paths: Vec<String> = plan(&m, false).into_iter().map(|t| t.path).collect();
        assert_eq!(
            paths,
            [
                "Patient.1.ndjson",
                "Observation.1.ndjson",
                "Patient.2.ndjson",
                "output.1.ndjson",
                "error/OperationOutcome.1.ndjson",
                "deleted/Bundle.1.ndjson"
            ]
        );
        assert_eq!(plan(&m, true)[0].path, "Patient.1.ndjson.gz");
    }

    #[test]
    fn reads_content_range() {
        assert_eq!(content_range_start("bytes 100-199/200"), Some(100));
        assert_eq!(content_range_start("bytes 0-9/*"), Some(0));
        assert_eq!(content_range_start("items 1-2/3"), None);
        assert_eq!(
            part_path(Path::new("/o/Patient.1.ndjson")),
            PathBuf::from("/o/Patient.1.ndjson.part")
        );
    }

    /// V2: a Binary resource in place of the NDJSON is decoded.
    #[tokio::test]
    async fn unwraps_binary_v2() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        let ndjson = b"{\"resourceType\":\"Patient\"}\n";
        let b64 = base64::engine::general_purpose::STANDARD.encode(ndjson);
        std::fs::write(&part, format!("{{\n  \"resourceType\": \"Binary\",\n  \"contentType\": \"application/fhir+ndjson\",\n  \"data\": \"{b64}\"\n}}")).unwrap();
        unwrap_binary(&part).await.unwrap();
        assert_eq!(std::fs::read(&part).unwrap(), ndjson);
        // Real NDJSON is left alone.
        unwrap_binary(&part).await.unwrap();
        assert_eq!(std::fs::read(&part).unwrap(), ndjson);
    }
}
