//! Writes NDJSON lines into files that roll over at a resource count or a size, whichever
//! comes first. Whole chunks are written with one call when they fit (the common case);
//! only a chunk that crosses a limit is split at line ends. Blocks of organized output
//! ([`Roller::write_block`]) are never split: files roll over between blocks.

use crate::sink::{Sink, SinkWriter};
use fhir_bulk_store::{FileKind, JobFile};
use std::io;

/// One open file of a roller.
struct Open {
    file: Box<dyn SinkWriter>,
    name: String,
    count: u64,
    bytes: u64,
}

/// Rolls the output of one unit into `{stem}-{part:03}.ndjson` files.
pub(crate) struct Roller<'a> {
    sink: &'a dyn Sink,
    job_id: &'a str,
    stem: String,
    kind: FileKind,
    resource_type: String,
    max_count: u64,
    max_bytes: u64,
    part: u32,
    open: Option<Open>,
    /// Finished files, and the names of every file started (for cleanup on abort).
    pub done: Vec<JobFile>,
    pub started: Vec<String>,
    unit_seq: i64,
}

impl<'a> Roller<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sink: &'a dyn Sink,
        job_id: &'a str,
        unit_seq: i64,
        stem: String,
        kind: FileKind,
        resource_type: &str,
        max_count: u64,
        max_bytes: u64,
    ) -> Self {
        Roller {
            sink,
            job_id,
            stem,
            kind,
            resource_type: resource_type.to_string(),
            max_count: max_count.max(1),
            max_bytes: max_bytes.max(1),
            part: 0,
            open: None,
            done: Vec::new(),
            started: Vec::new(),
            unit_seq,
        }
    }

    async fn current(&mut self) -> io::Result<&mut Open> {
        if self.open.is_none() {
            self.part += 1;
            let name = format!("{}-{:03}.ndjson", self.stem, self.part);
            let file = self.sink.create(self.job_id, &name).await?;
            self.started.push(name.clone());
            self.open = Some(Open {
                file,
                name,
                count: 0,
                bytes: 0,
            });
        }
        Ok(self.open.as_mut().expect("just opened"))
    }

    /// Writes whole lines (`bytes` ends with `\n`, holds `count` lines).
    pub(crate) async fn write(&mut self, mut bytes: &[u8], mut count: u64) -> io::Result<()> {
        while count > 0 {
            let (max_count, max_bytes) = (self.max_count, self.max_bytes);
            let open = self.current().await?;
            if open.count + count <= max_count && open.bytes + bytes.len() as u64 <= max_bytes {
                open.file.write(bytes).await?;
                open.count += count;
                open.bytes += bytes.len() as u64;
                return Ok(());
            }
            // Take as many lines as fit (at least one, so a huge line still gets a file).
            let mut cut = 0usize;
            let mut taken = 0u64;
            while taken < count && open.count + taken < max_count {
                let end = match memchr::memchr(b'\n', &bytes[cut..]) {
                    Some(i) => cut + i + 1,
                    None => bytes.len(),
                };
                if open.bytes + end as u64 > max_bytes && (open.count + taken) > 0 {
                    break;
                }
                cut = end;
                taken += 1;
            }
            if taken > 0 {
                open.file.write(&bytes[..cut]).await?;
                open.count += taken;
                open.bytes += cut as u64;
                bytes = &bytes[cut..];
                count -= taken;
            }
            self.roll().await?;
        }
        Ok(())
    }

    /// Writes one block of organized output (O2): a header line and `count` resources, never
    /// split. The open file rolls over first when the block would take it past a limit, so
    /// only a block bigger than the limits on its own makes a file exceed them.
    pub(crate) async fn write_block(&mut self, bytes: &[u8], count: u64) -> io::Result<()> {
        if self.open.as_ref().is_some_and(|o| {
            o.bytes > 0
                && (o.count + count > self.max_count
                    || o.bytes + bytes.len() as u64 > self.max_bytes)
        }) {
            self.roll().await?;
        }
        let open = self.current().await?;
        open.file.write(bytes).await?;
        open.count += count;
        open.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Finishes the open file, if any.
    async fn roll(&mut self) -> io::Result<()> {
        if let Some(open) = self.open.take() {
            open.file.finish().await?;
            self.done.push(JobFile {
                name: open.name,
                unit_seq: self.unit_seq,
                kind: self.kind,
                resource_type: self.resource_type.clone(),
                count: open.count,
                bytes: open.bytes,
            });
        }
        Ok(())
    }

    /// Finishes the last file and returns every file written (none when nothing was).
    pub(crate) async fn finish(mut self) -> io::Result<Vec<JobFile>> {
        if self.open.as_ref().is_some_and(|o| o.count == 0)
            && let Some(open) = self.open.take()
        {
            open.file.abort().await;
        }
        self.roll().await?;
        Ok(self.done)
    }

    /// Abandons the unit: deletes every file it started.
    pub(crate) async fn abort(mut self) {
        if let Some(open) = self.open.take() {
            open.file.abort().await;
        }
        self.sink.delete_files(self.job_id, &self.started).await;
    }
}
