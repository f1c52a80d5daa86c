//! The S3 sink: a job's files are objects `{prefix}/{job}/{name}` of one bucket, through
//! `object_store` (AWS S3, or any S3-compatible server given as the endpoint).
//!
//! A file is a multipart upload: parts go out while the file is written, with at most
//! [`PARTS_IN_FLIGHT`] uploading at once, so a writer holds a few parts of memory, never
//! the file. Completing the upload makes the object appear whole and at once (S3 has no
//! partial objects); aborting it leaves nothing. Any node reads any job's files, so nodes
//! share nothing but the bucket and the database.

use super::{Sink, SinkRead, SinkWriter};
use crate::config::S3Output;
use async_trait::async_trait;
use fhir_bulk_spec::instant::Instant;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{GetOptions, GetRange, MultipartUpload, ObjectStore, PutPayload};
use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use url::Url;

/// Parts of one file uploading at once (back pressure on the writer beyond).
const PARTS_IN_FLIGHT: usize = 2;

/// The longest a SigV4 presigned URL may live.
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// S3's smallest part but for the last.
const MIN_PART: usize = 5 * 1024 * 1024;

/// The S3 sink. No `Debug`: the store holds credentials.
#[derive(Clone)]
pub struct S3Sink {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: Path,
    part_bytes: usize,
    url_ttl: Duration,
}

impl S3Sink {
    /// A sink on `output`, with presigned URLs living at most `url_ttl`. Nothing is sent
    /// until the first call (see [`Sink::check`]).
    pub fn new(output: &S3Output, url_ttl: Duration) -> io::Result<S3Sink> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&output.bucket);
        let endpoint = output.endpoint.clone().or_else(|| {
            ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
                .iter()
                .find_map(|k| std::env::var(k).ok())
        });
        if let Some(endpoint) = &endpoint {
            builder = builder.with_endpoint(endpoint);
            // A local S3-compatible server is plain HTTP; asking for it by URL is consent.
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
        }
        if let Some(region) = &output.region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &output.access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &output.secret_access_key {
            builder = builder.with_secret_access_key(secret.expose());
        }
        let store = builder.build().map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("S3 output s3://{}: {e}", output.bucket),
            )
        })?;
        let prefix = Path::parse(&output.prefix).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("S3 prefix '{}': {e}", output.prefix),
            )
        })?;
        Ok(S3Sink {
            store: Arc::new(store),
            bucket: output.bucket.clone(),
            prefix,
            part_bytes: output.part_bytes.max(MIN_PART),
            url_ttl,
        })
    }

    /// `s3://bucket/prefix`, for logs.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn job_prefix(&self, job_id: &str) -> Path {
        self.prefix.child(job_id)
    }

    /// The object key of a file.
    pub fn key(&self, job_id: &str, name: &str) -> Path {
        self.job_prefix(job_id).child(name)
    }

    /// Deletes objects, reporting the first failure (a missing object is no failure).
    async fn delete_all(&self, keys: Vec<Path>) -> io::Result<()> {
        let keys = stream::iter(keys.into_iter().map(Ok)).boxed();
        let mut results = self.store.delete_stream(keys);
        let mut first_error = None;
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), |e| Err(io_error(e)))
    }
}

/// object_store's errors as `io::Error`, keeping "not found" recognisable. They name the
/// bucket and key, never credentials.
fn io_error(e: object_store::Error) -> io::Error {
    match e {
        object_store::Error::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, e),
        e => io::Error::other(e),
    }
}

#[async_trait]
impl Sink for S3Sink {
    async fn create(&self, job_id: &str, name: &str) -> io::Result<Box<dyn SinkWriter>> {
        let key = self.key(job_id, name);
        let upload = self.store.put_multipart(&key).await.map_err(io_error)?;
        Ok(Box::new(S3File::new(upload, self.part_bytes)))
    }

    async fn delete_files(&self, job_id: &str, names: &[String]) {
        let keys = names.iter().map(|n| self.key(job_id, n)).collect();
        if let Err(e) = self.delete_all(keys).await {
            tracing::warn!(job = %job_id, error = %e, "cannot delete abandoned files; purge will");
        }
    }

    async fn delete_job(&self, job_id: &str) -> io::Result<()> {
        let keys: Vec<Path> = self
            .store
            .list(Some(&self.job_prefix(job_id)))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(io_error)?;
        self.delete_all(keys).await
    }

    async fn check(&self) -> io::Result<()> {
        // One small list request: fails on a missing bucket, bad credentials or no network,
        // writes nothing.
        self.store
            .list_with_delimiter(Some(&self.prefix.child("readiness-check")))
            .await
            .map(|_| ())
            .map_err(|e| io::Error::other(format!("S3 output {}: {e}", self.location())))
    }

    async fn size(&self, job_id: &str, name: &str) -> io::Result<u64> {
        let meta = self
            .store
            .head(&self.key(job_id, name))
            .await
            .map_err(io_error)?;
        Ok(meta.size)
    }

    async fn open(
        &self,
        job_id: &str,
        name: &str,
        range: Option<Range<u64>>,
    ) -> io::Result<SinkRead> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let got = self
            .store
            .get_opts(&self.key(job_id, name), options)
            .await
            .map_err(io_error)?;
        let size = got.meta.size;
        let stream = got.into_stream().map_err(io_error).boxed();
        Ok(SinkRead { size, stream })
    }

    async fn presigned_url(
        &self,
        job_id: &str,
        name: &str,
        expires_at: Instant,
    ) -> io::Result<Option<Url>> {
        // Rounded down to whole seconds (SigV4's unit), so the URL ends with the job at the
        // latest; 1 s at least, since 0 is not a valid expiry.
        let left =
            Duration::from_secs(((expires_at.0 - Instant::now().0).max(0) / 1_000_000) as u64);
        let expires_in = self
            .url_ttl
            .min(left)
            .min(MAX_PRESIGN)
            .max(Duration::from_secs(1));
        let url = self
            .store
            .signed_url(reqwest::Method::GET, &self.key(job_id, name), expires_in)
            .await
            .map_err(io_error)?;
        Ok(Some(url))
    }
}

/// A file being uploaded: the part being filled, and the parts on their way.
struct S3File {
    /// `None` once finished or aborted.
    upload: Option<Box<dyn MultipartUpload>>,
    buffer: Vec<u8>,
    part_bytes: usize,
    in_flight: JoinSet<object_store::Result<()>>,
}

impl S3File {
    fn new(upload: Box<dyn MultipartUpload>, part_bytes: usize) -> S3File {
        S3File {
            upload: Some(upload),
            buffer: Vec::new(),
            part_bytes,
            in_flight: JoinSet::new(),
        }
    }

    /// Waits until fewer than `limit` parts are uploading (none, for 0); a failed part fails
    /// it.
    async fn wait_below(&mut self, limit: usize) -> io::Result<()> {
        while !self.in_flight.is_empty() && self.in_flight.len() >= limit {
            match self.in_flight.join_next().await {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => return Err(io_error(e)),
                Some(Err(e)) => return Err(io::Error::other(e)),
                None => break,
            }
        }
        Ok(())
    }

    /// Sends the buffer as the next part (parts are numbered in call order).
    async fn send_part(&mut self) -> io::Result<()> {
        self.wait_below(PARTS_IN_FLIGHT).await?;
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.part_bytes));
        let upload = self.upload.as_mut().ok_or_else(gone)?;
        self.in_flight
            .spawn(upload.put_part(PutPayload::from(part)));
        Ok(())
    }

    async fn complete(&mut self) -> io::Result<()> {
        if !self.buffer.is_empty() {
            self.send_part().await?;
        }
        self.wait_below(0).await?;
        let upload = self.upload.as_mut().ok_or_else(gone)?;
        upload.complete().await.map_err(io_error)?;
        self.upload = None;
        Ok(())
    }

    async fn abort_upload(&mut self) -> object_store::Result<()> {
        self.in_flight.shutdown().await;
        match self.upload.take() {
            Some(mut upload) => upload.abort().await,
            None => Ok(()),
        }
    }
}

fn gone() -> io::Error {
    io::Error::other("the upload was already finished or aborted")
}

#[async_trait]
impl SinkWriter for S3File {
    async fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let take = (self.part_bytes - self.buffer.len()).min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buffer.len() == self.part_bytes {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> io::Result<()> {
        let result = self.complete().await;
        if result.is_err() {
            // A failed part or completion: leave no parts behind.
            let _ = self.abort_upload().await;
        }
        result
    }

    async fn abort(mut self: Box<Self>) {
        if let Err(e) = self.abort_upload().await {
            tracing::warn!(error = %e, "cannot abort an S3 upload; its parts stay until the bucket's lifecycle rule removes them");
        }
    }
}

impl Drop for S3File {
    /// A writer dropped mid-file (a cancelled task) still aborts its upload, so S3 keeps
    /// no orphaned parts.
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let _ = upload.abort().await;
            });
        }
    }
}
