//! The local-directory sink: one folder per job under the output directory.
//!
//! A file is written as `name.part` and renamed when it is finished, so a reader never
//! sees a half-written file under its final name, and a unit redone after a crash starts
//! from scratch by truncating its own `.part` files.

use super::{STREAM_BUFFER, Sink, SinkRead, SinkWriter};
use async_trait::async_trait;
use fhir_bulk_spec::instant::Instant;
use futures::StreamExt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;
use url::Url;

/// The local-directory sink.
#[derive(Debug, Clone)]
pub struct LocalSink {
    root: PathBuf,
}

/// A file being written.
pub struct LocalFile {
    file: tokio::fs::File,
    part: PathBuf,
    fin: PathBuf,
}

impl LocalSink {
    /// A sink under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalSink { root: root.into() }
    }

    fn job_dir(&self, job_id: &str) -> PathBuf {
        self.root.join(job_id)
    }

    /// The final path of a file (job ids and names are ours, never user input).
    pub fn path(&self, job_id: &str, name: &str) -> PathBuf {
        self.job_dir(job_id).join(name)
    }
}

#[async_trait]
impl Sink for LocalSink {
    async fn create(&self, job_id: &str, name: &str) -> io::Result<Box<dyn SinkWriter>> {
        let dir = self.job_dir(job_id);
        tokio::fs::create_dir_all(&dir).await?;
        let fin = dir.join(name);
        let part = dir.join(format!("{name}.part"));
        let file = tokio::fs::File::create(&part).await?;
        Ok(Box::new(LocalFile { file, part, fin }))
    }

    async fn delete_files(&self, job_id: &str, names: &[String]) {
        for name in names {
            let p = self.path(job_id, name);
            let _ = tokio::fs::remove_file(&p).await;
            let _ = tokio::fs::remove_file(part_of(&p)).await;
        }
    }

    async fn delete_job(&self, job_id: &str) -> io::Result<()> {
        match tokio::fs::remove_dir_all(self.job_dir(job_id)).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    async fn check(&self) -> io::Result<()> {
        tokio::fs::create_dir_all(&self.root).await
    }

    async fn size(&self, job_id: &str, name: &str) -> io::Result<u64> {
        let path = self.path(job_id, name);
        let meta = tokio::fs::metadata(&path)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        Ok(meta.len())
    }

    async fn open(
        &self,
        job_id: &str,
        name: &str,
        range: Option<Range<u64>>,
    ) -> io::Result<SinkRead> {
        let path = self.path(job_id, name);
        let mut f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", path.display())))?;
        let size = f.metadata().await?.len();
        let stream = match range {
            Some(r) => {
                f.seek(io::SeekFrom::Start(r.start)).await?;
                ReaderStream::with_capacity(f.take(r.end - r.start), STREAM_BUFFER).boxed()
            }
            None => ReaderStream::with_capacity(f, STREAM_BUFFER).boxed(),
        };
        Ok(SinkRead { size, stream })
    }

    async fn presigned_url(&self, _: &str, _: &str, _: Instant) -> io::Result<Option<Url>> {
        Ok(None)
    }
}

fn part_of(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

#[async_trait]
impl SinkWriter for LocalFile {
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes).await
    }

    /// Flushes, syncs and gives the file its final name.
    async fn finish(mut self: Box<Self>) -> io::Result<()> {
        self.file.flush().await?;
        self.file.sync_data().await?;
        let LocalFile { file, part, fin } = *self;
        drop(file);
        tokio::fs::rename(&part, &fin).await
    }

    async fn abort(self: Box<Self>) {
        let LocalFile { file, part, .. } = *self;
        drop(file);
        let _ = tokio::fs::remove_file(&part).await;
    }
}
