//! One buffered NDJSON file per resource type.
//!
//! Resources are serialized straight into a `BufWriter` (no per-resource `String`), so
//! memory stays at one buffer per type however many resources go through, and the
//! all-patients Group can be a multi-megabyte line without ever being in memory. Each file
//! is written as `<Type>.ndjson.part` and renamed to `<Type>.ndjson` only when everything
//! succeeded, so a failed or interrupted run never leaves a file that looks complete.
//! Files are not fsynced: the data can always be generated again, and syncing gigabytes
//! made a 100 000-patient run half as fast again.

use crate::SynthError;
use crate::id::ResourceKind;
use serde::Serialize;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Bytes buffered per file: large enough that the kernel sees few, big writes.
const BUFFER: usize = 256 * 1024;

/// The open output files, indexed by [`ResourceKind::index`].
pub(crate) struct NdjsonFiles {
    files: Vec<TypeFile>,
}

struct TypeFile {
    part: PathBuf,
    path: PathBuf,
    out: Counting<BufWriter<File>>,
    resources: u64,
}

/// What was written to one file.
pub(crate) struct Written {
    pub kind: ResourceKind,
    pub resources: u64,
    pub bytes: u64,
}

impl NdjsonFiles {
    /// Creates `dir` if needed and opens one `.part` file per type.
    pub fn create(dir: &Path) -> Result<NdjsonFiles, SynthError> {
        std::fs::create_dir_all(dir).map_err(|source| SynthError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let files = ResourceKind::ALL
            .iter()
            .map(|kind| {
                let path = dir.join(format!("{}.ndjson", kind.name()));
                let part = dir.join(format!("{}.ndjson.part", kind.name()));
                let file = File::create(&part).map_err(|source| SynthError::Write {
                    path: part.clone(),
                    source,
                })?;
                Ok(TypeFile {
                    part,
                    path,
                    out: Counting {
                        inner: BufWriter::with_capacity(BUFFER, file),
                        bytes: 0,
                    },
                    resources: 0,
                })
            })
            .collect::<Result<Vec<_>, SynthError>>()?;
        Ok(NdjsonFiles { files })
    }

    /// Appends `resource` as one compact JSON line to its type's file.
    pub fn write<T: Serialize>(
        &mut self,
        kind: ResourceKind,
        resource: &T,
    ) -> Result<(), SynthError> {
        let file = &mut self.files[kind.index()];
        let result = serde_json::to_writer(&mut file.out, resource)
            .map_err(io::Error::from)
            .and_then(|()| file.out.write_all(b"\n"));
        result.map_err(|source| SynthError::Write {
            path: file.part.clone(),
            source,
        })?;
        file.resources += 1;
        Ok(())
    }

    /// Flushes and syncs every file, then renames each to its final name.
    pub fn finish(self) -> Result<Vec<Written>, SynthError> {
        let mut written = Vec::with_capacity(self.files.len());
        for (kind, file) in ResourceKind::ALL.into_iter().zip(self.files) {
            let bytes = file.out.bytes;
            let fail = |source| SynthError::Write {
                path: file.part.clone(),
                source,
            };
            let inner = file
                .out
                .inner
                .into_inner()
                .map_err(|e| fail(e.into_error()))?;
            drop(inner);
            std::fs::rename(&file.part, &file.path).map_err(|source| SynthError::Write {
                path: file.path.clone(),
                source,
            })?;
            written.push(Written {
                kind,
                resources: file.resources,
                bytes,
            });
        }
        Ok(written)
    }
}

/// Counts the bytes that go through, for the summary.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.write_all(buf)?;
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
