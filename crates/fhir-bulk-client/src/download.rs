//! Downloading the manifest's files: parallel, streamed, retried, resumed, verified (§7, CL5).
//!
//! Each file streams into `<dest>.part` in 1 MiB blocks, so memory stays flat whatever its
//! size: a blocking task writes each block with one call and checks and hashes it
//! ([`crate::verify`]) while the next one arrives, so a finished part is only renamed. A failure (429, 5xx, a reset connection, a body cut short) is retried with backoff,
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
use crate::verify::{BLOCK, Inline};
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
    pub transfer_gzip: bool,
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
        let expected = task.entry.resource_type.clone();
        let fetched = match self
            .fetch(&url, &part, &task.path, expected.as_deref())
            .await
        {
            Ok(f) => f,
            Err(e @ Error::Verify { .. }) => {
                crate::verify::reject(&part, &dest);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let inline = match fetched.inline {
            Some(inline) => inline.finish(task.entry.count).map_err(|(line, reason)| {
                crate::verify::reject(&part, &dest);
                Error::Verify {
                    path: task.path.clone(),
                    line,
                    reason,
                }
            })?,
            None => None,
        };
        let stored = match inline {
            // Checked and hashed while it arrived: the part is the file.
            Some(stored) => {
                tokio::fs::rename(&part, &dest)
                    .await
                    .map_err(|e| Error::io(&dest, e))?;
                stored
            }
            None => {
                if fetched.json_like && expected.as_deref() != Some("Binary") {
                    unwrap_binary(&part).await?;
                }
                let (p, d, rel, count, gzip) = (
                    part.clone(),
                    dest.clone(),
                    task.path.clone(),
                    task.entry.count,
                    self.gzip,
                );
                tokio::task::spawn_blocking(move || {
                    crate::verify::store_verified(&p, &d, &rel, expected.as_deref(), count, gzip)
                })
                .await
                .map_err(|e| Error::io(&dest, std::io::Error::other(e)))??
            }
        };
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

    /// Streams `url` into `part`, resuming what is there, checking plain NDJSON as it
    /// arrives (`rel` names the file in errors).
    async fn fetch(
        &self,
        url: &Url,
        part: &Path,
        rel: &str,
        expected: Option<&str>,
    ) -> Result<Fetched> {
        let shown = redact_url(url.as_str());
        let mut backoff = Backoff::new(self.timings.retry_initial, self.timings.retry_max);
        // The inline check of what the part holds, kept across retries; `deferred` once the
        // part needs the post-download pass (a JSON body, `--gzip` storage).
        let mut checked: Option<Inline> = None;
        let mut deferred = self.gzip;
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
                let coding = if self.transfer_gzip {
                    "gzip"
                } else {
                    "identity"
                };
                req.headers
                    .insert(ACCEPT_ENCODING, HeaderValue::from_static(coding));
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
            if !append {
                checked = None;
                deferred = self.gzip;
            }
            // A JSON body may be a V2 `Binary` wrapper: checked after it is unwrapped.
            deferred |= json_like;
            let inline = if deferred {
                None
            } else {
                match checked.take() {
                    Some(c) if append && c.bytes() == offset => Some(c),
                    _ if append => {
                        // A part from an earlier run or attempt: read it once to resume the check.
                        let (p, e) = (part.to_path_buf(), expected.map(str::to_string));
                        let rebuilt = tokio::task::spawn_blocking(move || Inline::from_part(&p, e))
                            .await
                            .map_err(|e| Error::io(part, std::io::Error::other(e)))?
                            .map_err(|e| Error::io(part, e))?;
                        Some(rebuilt)
                    }
                    _ => Some(Inline::new(expected.map(str::to_string))),
                }
            };
            let (result, inline) = self
                .stream_body(resp, part, rel, append, gzipped, inline)
                .await;
            checked = inline;
            match result {
                Ok(()) => {
                    return Ok(Fetched {
                        json_like,
                        inline: checked,
                    });
                }
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

    /// Streams the body into `part`, in [`BLOCK`]s: each full block goes to a blocking task
    /// that writes it with one call and feeds `inline`, while the next block fills (one block
    /// in flight, two buffers in all). Returns the inline state, which has seen exactly the
    /// bytes now in the part, for a resumed attempt.
    async fn stream_body(
        &self,
        resp: reqwest::Response,
        part: &Path,
        rel: &str,
        append: bool,
        gzipped: bool,
        inline: Option<Inline>,
    ) -> (Result<(), StreamError>, Option<Inline>) {
        let local = |e: std::io::Error| StreamError::Local(Error::io(part, e));
        let file = match tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(part)
            .await
        {
            Ok(f) => f.into_std().await,
            Err(e) => return (Err(local(e)), inline),
        };
        let mut sink = BlockSink {
            part,
            idle: Some(Blocks { file, inline }),
            busy: None,
            spare: Vec::new(),
        };
        // flate2's write-side decoder turns each compressed chunk into plain bytes in its
        // `Vec`, which is the block being filled: streaming decompression without an async
        // codec and without another copy.
        let mut decoder = gzipped
            .then(|| flate2::write::MultiGzDecoder::new(Vec::with_capacity(BLOCK + 64 * 1024)));
        let mut plain = if gzipped {
            Vec::new()
        } else {
            Vec::with_capacity(BLOCK + 64 * 1024)
        };
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
            let block = match decoder.as_mut() {
                Some(d) => {
                    let before = d.get_ref().len();
                    if let Err(e) = d.write_all(&chunk) {
                        failure = Some(format!("bad gzip data: {e}"));
                        break;
                    }
                    self.observer.event(&Event::Bytes {
                        n: (d.get_ref().len() - before) as u64,
                    });
                    d.get_mut()
                }
                None => {
                    plain.extend_from_slice(&chunk);
                    self.observer.event(&Event::Bytes {
                        n: chunk.len() as u64,
                    });
                    &mut plain
                }
            };
            if block.len() >= BLOCK
                && let Err(e) = sink.send(block, rel).await
            {
                return (Err(e), sink.into_inline().await);
            }
        }
        if failure.is_none()
            && let Some(d) = decoder.as_mut()
        {
            let before = d.get_ref().len();
            match d.try_finish() {
                Ok(()) => self.observer.event(&Event::Bytes {
                    n: (d.get_ref().len() - before) as u64,
                }),
                Err(e) => failure = Some(format!("bad gzip data: {e}")),
            }
        }
        if let Some(reason) = failure.take_if(|r| r.starts_with("bad gzip")) {
            // A corrupt compressed body can neither be resumed nor judged by its decoded prefix.
            drop(sink.into_inline().await);
            if let Err(e) = remove_part(part).await {
                return (Err(StreamError::Local(e)), None);
            }
            let failed = StreamError::Remote {
                reason,
                progressed: false,
            };
            return (Err(failed), None);
        }
        // What arrived is written and checked even when the transfer failed: a resumed
        // request starts after it.
        let last = match decoder.as_mut() {
            Some(d) => d.get_mut(),
            None => &mut plain,
        };
        if let Err(e) = sink.send(last, rel).await {
            return (Err(e), sink.into_inline().await);
        }
        if let Err(e) = sink.wait(rel).await {
            return (Err(e), sink.into_inline().await);
        }
        let inline = sink.into_inline().await;
        let result = match failure {
            None => Ok(()),
            Some(reason) => Err(StreamError::Remote {
                reason: format!("transfer cut off: {reason}"),
                progressed,
            }),
        };
        (result, inline)
    }
}

/// The part file and its inline check, owned by whichever side holds them.
struct Blocks {
    file: std::fs::File,
    inline: Option<Inline>,
}

/// What a block write can fail with.
enum BlockError {
    Io(std::io::Error),
    Verify(crate::verify::LineError),
}

impl Blocks {
    fn write(&mut self, block: &[u8]) -> std::result::Result<(), BlockError> {
        // Written before it is checked, so a rejected part shows the offending line.
        self.file.write_all(block).map_err(BlockError::Io)?;
        match self.inline.as_mut() {
            Some(inline) => inline.feed(block).map_err(BlockError::Verify),
            None => Ok(()),
        }
    }
}

type Busy = tokio::task::JoinHandle<(Blocks, Vec<u8>, std::result::Result<(), BlockError>)>;

/// Hands full blocks to a blocking task, one at a time, and recycles their buffers.
struct BlockSink<'p> {
    part: &'p Path,
    /// Present while no block is in flight.
    idle: Option<Blocks>,
    busy: Option<Busy>,
    /// The buffer of the last finished block, reused for the next one.
    spare: Vec<u8>,
}

impl BlockSink<'_> {
    /// Waits for the block in flight, if any.
    async fn wait(&mut self, rel: &str) -> std::result::Result<(), StreamError> {
        let Some(busy) = self.busy.take() else {
            return Ok(());
        };
        let part = self.part;
        let (blocks, mut buf, result) = busy
            .await
            .map_err(|e| StreamError::Local(Error::io(part, std::io::Error::other(e))))?;
        self.idle = Some(blocks);
        buf.clear();
        self.spare = buf;
        result.map_err(|e| {
            StreamError::Local(match e {
                BlockError::Io(e) => Error::io(part, e),
                BlockError::Verify((line, reason)) => Error::Verify {
                    path: rel.to_string(),
                    line,
                    reason,
                },
            })
        })
    }

    /// Sends the bytes in `block` to be written and checked, leaving `block` empty (with the
    /// spare buffer's capacity).
    async fn send(
        &mut self,
        block: &mut Vec<u8>,
        rel: &str,
    ) -> std::result::Result<(), StreamError> {
        if block.is_empty() {
            return Ok(());
        }
        self.wait(rel).await?;
        let Some(mut blocks) = self.idle.take() else {
            // Only after a failed `wait`, which ended the transfer.
            return Err(StreamError::Local(Error::io(
                self.part,
                std::io::Error::other("the block writer was lost"),
            )));
        };
        let mut full = std::mem::take(&mut self.spare);
        std::mem::swap(&mut full, block);
        if block.capacity() < BLOCK {
            block.reserve(BLOCK + 64 * 1024);
        }
        self.busy = Some(tokio::task::spawn_blocking(move || {
            let result = blocks.write(&full);
            (blocks, full, result)
        }));
        Ok(())
    }

    /// The inline state once nothing is in flight (`None` if a block task was lost).
    async fn into_inline(mut self) -> Option<Inline> {
        if let Some(busy) = self.busy.take() {
            self.idle = busy.await.ok().map(|(blocks, _, _)| blocks);
        }
        self.idle.and_then(|b| b.inline)
    }
}

/// What [`Downloader::fetch`] leaves for the final check.
struct Fetched {
    /// The body was JSON rather than NDJSON: a candidate for the V2 `Binary` unwrapping.
    json_like: bool,
    /// The check made while downloading; `None` when the part needs [`crate::verify::store_verified`].
    inline: Option<Inline>,
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
