//! NDJSON input: one resource per line, read and validated on a blocking thread.
//!
//! Every line must be a JSON object with a known `resourceType` and a valid `id` (bulk data
//! NDJSON always carries ids, so a resource without one is an error, not a create). Blank
//! lines (a trailing newline, `\r\n` endings) are tolerated, and so is a UTF-8 byte order mark.

use super::{BATCH_BYTES, BATCH_WRITES, BatchSender, Counters, IngestError, send_batch};
use fhir_bulk_store::Write;
use flate2::read::MultiGzDecoder;
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Read buffer: large, so reading costs few system calls next to parsing.
const READ_BUFFER: usize = 1 << 20;

/// Parses `path` and sends its writes in batches. `Ok` also when the store stopped listening
/// (its error is the one reported).
pub(super) fn parse(
    path: &Path,
    gzip: bool,
    counters: &Arc<Counters>,
    tx: &BatchSender,
) -> Result<(), IngestError> {
    let io = |line: Option<u64>, source: std::io::Error| match line {
        // An I/O error mid-file (often a corrupt gzip stream) is worth locating.
        Some(line) => IngestError::Invalid {
            path: path.into(),
            line: Some(line),
            message: format!("cannot read: {source}"),
        },
        None => IngestError::Io {
            path: path.into(),
            source,
        },
    };
    let file = File::open(path).map_err(|e| io(None, e))?;
    // Progress counts bytes as on disk (compressed for gzip), the scale of the total.
    let counted = Counted {
        inner: file,
        counters: Arc::clone(counters),
    };
    let mut reader: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(counted),
        ))
    } else {
        Box::new(BufReader::with_capacity(READ_BUFFER, counted))
    };

    let mut buf = Vec::with_capacity(64 << 10);
    let mut line_no = 0u64;
    let mut batch = Vec::with_capacity(BATCH_WRITES);
    let mut batch_bytes = 0;
    loop {
        buf.clear();
        let n = reader
            .read_until(b'\n', &mut buf)
            .map_err(|e| io(Some(line_no + 1), e))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let mut line = buf.as_slice();
        if line_no == 1 {
            line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        batch.push(parse_line(line).map_err(|message| IngestError::Invalid {
            path: path.into(),
            line: Some(line_no),
            message,
        })?);
        batch_bytes += n;
        if batch.len() >= BATCH_WRITES || batch_bytes >= BATCH_BYTES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_WRITES));
            batch_bytes = 0;
            if !send_batch(tx, counters, full) {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        send_batch(tx, counters, batch);
    }
    Ok(())
}

/// One line → one write, or what is wrong with it.
fn parse_line(line: &[u8]) -> Result<Write, String> {
    // The fast path gives the same write; what it leaves (errors included) goes through `put`.
    if let Some(write) = Write::put_slice(line) {
        return Ok(write);
    }
    let value: Value = serde_json::from_slice(line).map_err(|e| not_json(&e))?;
    Write::put(value).map_err(|e| e.to_string())
}

/// serde_json's message without its "at line L column N": our errors name the line already
/// (and within one NDJSON line only the column means anything).
pub(super) fn not_json(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let what = full.strip_suffix(&position).unwrap_or(&full);
    format!("not valid JSON: {what} (column {})", e.column())
}

/// Counts the bytes read from the file into the shared progress counter.
struct Counted {
    inner: File,
    counters: Arc<Counters>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counters.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Format;

    /// On real data, the fast path prepares exactly what `Write::put` does.
    #[test]
    fn fast_path_matches_put_on_synthea() {
        let (mut lines, mut fast) = (0, 0);
        for entry in std::fs::read_dir(fhir_bulk_testkit::synthea_dir()).unwrap() {
            let path = entry.unwrap().path();
            if Format::of(&path) != Some(Format::Ndjson) {
                continue;
            }
            let text = std::fs::read(path).unwrap();
            let nonblank = |l: &&[u8]| !l.iter().all(u8::is_ascii_whitespace);
            for line in text.split(|&b| b == b'\n').filter(nonblank) {
                lines += 1;
                let slow = Write::put(serde_json::from_slice(line).unwrap()).unwrap();
                if let Some(write) = Write::put_slice(line) {
                    fast += 1;
                    assert_eq!(format!("{write:?}"), format!("{slow:?}"));
                }
            }
        }
        // Only Patient and Group resources take the slow path.
        assert!(fast * 10 > lines * 9, "{fast} of {lines}");
    }

    #[test]
    fn json_errors_keep_the_column_only() {
        let e = serde_json::from_slice::<Value>(b"{\"a\": ?}").unwrap_err();
        let msg = not_json(&e);
        assert!(
            msg.starts_with("not valid JSON: expected value (column"),
            "{msg}"
        );
        assert!(!msg.contains("line"), "{msg}");
    }
}
