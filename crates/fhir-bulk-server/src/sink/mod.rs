//! Where export files live, behind one object-safe trait: a local folder ([`local`], the
//! default) or an S3-compatible bucket ([`s3`]).
//!
//! Every sink keeps the rules the engine relies on: a file being written is invisible under
//! its final name until [`SinkWriter::finish`] makes it appear whole (a `.part` rename, or
//! a completed multipart upload), [`SinkWriter::abort`] leaves nothing behind, and file
//! names carry the unit's attempt, so a redone unit never clobbers the files of another.

pub mod local;
pub mod s3;

use crate::config::{FileUrls, ServerConfig};
use async_trait::async_trait;
use bytes::Bytes;
use fhir_bulk_spec::instant::Instant;
use futures::stream::BoxStream;
use std::io;
use std::ops::Range;
use std::sync::Arc;
use url::Url;

pub use local::LocalSink;
pub use s3::S3Sink;

/// Bytes per read when streaming a file out (local reads; S3 sends what it sends).
pub const STREAM_BUFFER: usize = 256 * 1024;

/// Where export files live. Job ids and file names are ours, never user input.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Starts (or restarts from scratch) a file; nothing is visible under `name` until the
    /// writer finishes.
    async fn create(&self, job_id: &str, name: &str) -> io::Result<Box<dyn SinkWriter>>;

    /// Deletes files of a job, finished or not (after a lost lease or a failed commit).
    /// Best effort: what is left is removed with the job.
    async fn delete_files(&self, job_id: &str, names: &[String]);

    /// Deletes every file of a job (purge). A job without files is fine.
    async fn delete_job(&self, job_id: &str) -> io::Result<()>;

    /// Is the sink usable (startup and readiness)?
    async fn check(&self) -> io::Result<()>;

    /// The size of a finished file (`HEAD`).
    async fn size(&self, job_id: &str, name: &str) -> io::Result<u64>;

    /// Reads a finished file, or the byte `range` of it (inside the file), as a stream.
    async fn open(
        &self,
        job_id: &str,
        name: &str,
        range: Option<Range<u64>>,
    ) -> io::Result<SinkRead>;

    /// A URL that reads the file without our token, valid at most until `expires_at`;
    /// `None` when the sink has no such thing (then files are served through us).
    async fn presigned_url(
        &self,
        job_id: &str,
        name: &str,
        expires_at: Instant,
    ) -> io::Result<Option<Url>>;
}

/// A file being written. Drop it only after `finish` or `abort`.
#[async_trait]
pub trait SinkWriter: Send {
    /// Appends bytes.
    async fn write(&mut self, bytes: &[u8]) -> io::Result<()>;

    /// Makes the file visible under its final name, whole and at once.
    async fn finish(self: Box<Self>) -> io::Result<()>;

    /// Discards the file; nothing of it is left.
    async fn abort(self: Box<Self>);
}

/// A file (or part of one) being read.
pub struct SinkRead {
    /// The whole file's size, whatever the range.
    pub size: u64,
    /// The bytes asked for.
    pub stream: BoxStream<'static, io::Result<Bytes>>,
}

/// The sink `config` asks for: its S3 bucket if one is set, else its output folder.
/// Fails when the sink is unusable, or when presigned file URLs are asked of a sink that
/// cannot make them (they would silently fall back to our own URLs).
pub async fn open(config: &ServerConfig) -> io::Result<Arc<dyn Sink>> {
    let sink: Arc<dyn Sink> = match &config.s3 {
        Some(s3) => {
            let sink = S3Sink::new(s3, config.presigned_url_ttl)?;
            tracing::info!(output = %sink.location(), file_urls = ?config.file_urls, "export files go to S3");
            Arc::new(sink)
        }
        None => {
            if config.file_urls == FileUrls::Presigned {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "presigned file URLs need an S3 output (s3://bucket/prefix); a local folder is served through this server (file URLs `proxy`)",
                ));
            }
            Arc::new(LocalSink::new(&config.output_dir))
        }
    };
    sink.check().await?;
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Presigned URLs of a folder would silently be ours, needing the token: refused.
    #[tokio::test]
    async fn presigned_urls_need_s3() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServerConfig::new("http://127.0.0.1:1", dir.path());
        config.file_urls = FileUrls::Presigned;
        let e = open(&config).await.err().expect("refused");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        config.file_urls = FileUrls::Proxy;
        assert!(open(&config).await.is_ok());
    }
}
