//! Where export files live: one folder per job under the output directory.
//!
//! A file is written as `name.part` and renamed when its unit completes, so a reader never
//! sees a half-written file under its final name, and a unit redone after a crash starts
//! from scratch by truncating its own `.part` files.

use std::io;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

/// The local-directory sink.
#[derive(Debug, Clone)]
pub struct LocalSink {
    root: PathBuf,
}

/// A file being written.
pub struct SinkFile {
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

    /// Starts (or restarts, truncating) a file.
    pub async fn create(&self, job_id: &str, name: &str) -> io::Result<SinkFile> {
        let dir = self.job_dir(job_id);
        tokio::fs::create_dir_all(&dir).await?;
        let fin = dir.join(name);
        let part = dir.join(format!("{name}.part"));
        let file = tokio::fs::File::create(&part).await?;
        Ok(SinkFile { file, part, fin })
    }

    /// Deletes a job's folder and everything in it.
    pub async fn delete_job(&self, job_id: &str) -> io::Result<()> {
        match tokio::fs::remove_dir_all(self.job_dir(job_id)).await {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }

    /// Deletes files of a job (finished or not), e.g. after a lost lease.
    pub async fn delete_files(&self, job_id: &str, names: &[String]) {
        for name in names {
            let p = self.path(job_id, name);
            let _ = tokio::fs::remove_file(&p).await;
            let _ = tokio::fs::remove_file(part_of(&p)).await;
        }
    }

    /// Is the sink usable (for readiness)?
    pub async fn check(&self) -> io::Result<()> {
        tokio::fs::create_dir_all(&self.root).await
    }
}

fn part_of(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

impl SinkFile {
    /// Appends bytes.
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes).await
    }

    /// Flushes, syncs and gives the file its final name.
    pub async fn finish(mut self) -> io::Result<()> {
        self.file.flush().await?;
        self.file.sync_data().await?;
        drop(self.file);
        tokio::fs::rename(&self.part, &self.fin).await
    }

    /// Discards the file.
    pub async fn abort(self) {
        drop(self.file);
        let _ = tokio::fs::remove_file(&self.part).await;
    }
}
