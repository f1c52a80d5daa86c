//! What survives a crash: the run state (`DIR/.fhir-bulk-state.json`) and the incremental
//! sync log (`DIR/.fhir-bulk-sync.json`).
//!
//! The run state records the request's identity, the status URL as soon as the kick-off is
//! accepted, the manifest once complete, and every file once verified (size and SHA-256). A
//! second run of the same command reads it and continues where the first stopped: polling the
//! same job, skipping verified files, resuming partial ones. Both files are written atomically
//! (temp file, fsync, rename), so a kill at any moment leaves the old or the new version,
//! never half of one. Neither file holds a token or secret.
//!
//! The sync log maps "server + level + types" to the `transactionTime` of the last complete
//! run, for `--since auto`; it is written only after every file was processed (CL6).

use crate::error::{Error, Result};
use crate::kickoff::Level;
use fhir_bulk_spec::manifest::Manifest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

/// The run state file's name inside the output directory.
pub const STATE_FILE: &str = ".fhir-bulk-state.json";
/// The sync log's name inside the output directory.
pub const SYNC_FILE: &str = ".fhir-bulk-sync.json";
/// Bumped when the state format changes incompatibly.
const STATE_VERSION: u32 = 1;

/// The run state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState {
    /// Format version.
    pub version: u32,
    /// The FHIR base URL.
    pub base_url: String,
    /// The kick-off's identity (method, URL with query, body): a run continues only the same request.
    pub request: String,
    /// The `--since auto` key of this request.
    pub sync_key: String,
    /// The `_since` actually sent.
    pub since: Option<String>,
    /// The status URL, once the kick-off was accepted.
    pub status_url: Option<String>,
    /// Unix seconds of the kick-off.
    pub kicked_off_at: Option<i64>,
    /// The complete manifest (pages merged), once the job finished.
    pub manifest: Option<Manifest>,
    /// Verified files by path relative to the output directory.
    pub files: BTreeMap<String, FileRecord>,
    /// Every file verified; the next run starts a new export.
    pub completed: bool,
    /// The `DELETE` was sent.
    pub job_deleted: bool,
}

/// Which manifest list a file came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    /// `output` (M4).
    Output,
    /// `error` (M6): OperationOutcomes.
    Error,
    /// `deleted` (M5): transaction Bundles of DELETEs.
    Deleted,
}

/// One downloaded and verified file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The manifest list it came from.
    pub kind: FileKind,
    /// The manifest entry's `type`.
    pub resource_type: Option<String>,
    /// The manifest entry's `url`.
    pub url: String,
    /// Path relative to the output directory, `/`-separated.
    pub path: String,
    /// Size on disk.
    pub bytes: u64,
    /// SHA-256 of the file on disk, hex.
    pub sha256: String,
    /// Resources (non-blank lines) in it.
    pub resources: u64,
}

impl RunState {
    /// A fresh state for a new export.
    pub fn new(
        base_url: String,
        request: String,
        sync_key: String,
        since: Option<String>,
    ) -> RunState {
        RunState {
            version: STATE_VERSION,
            base_url,
            request,
            sync_key,
            since,
            status_url: None,
            kicked_off_at: None,
            manifest: None,
            files: BTreeMap::new(),
            completed: false,
            job_deleted: false,
        }
    }

    /// The state in `dir`, if any.
    pub fn load(dir: &Path) -> Result<Option<RunState>> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let state: RunState = serde_json::from_slice(&bytes).map_err(|e| {
            Error::State(format!(
                "{} is unreadable ({e}); remove it to start a new export",
                path.display()
            ))
        })?;
        if state.version != STATE_VERSION {
            return Err(Error::State(format!(
                "{} has format version {}, this client writes {STATE_VERSION}; remove it to start a new export",
                path.display(),
                state.version
            )));
        }
        Ok(Some(state))
    }

    /// Writes the state atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).expect("the state serializes");
        write_atomic(&dir.join(STATE_FILE), &bytes)
    }
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, so readers
/// (and the next run after a crash) see the old or the new content, never a torn write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// Size and SHA-256 (hex) of a file, read in blocks.
pub fn sha256_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// True when `record`'s file is on disk with the recorded size and SHA-256.
pub fn is_intact(dir: &Path, record: &FileRecord) -> bool {
    let path = dir.join(&record.path);
    match std::fs::metadata(&path) {
        Ok(m) if m.len() == record.bytes => {
            sha256_file(&path).is_ok_and(|(len, sha)| len == record.bytes && sha == record.sha256)
        }
        _ => false,
    }
}

/// The `--since auto` key: server, level and (sorted) types.
pub fn sync_key(base_url: &str, level: &Level, types: &[String]) -> String {
    let mut types = types.to_vec();
    types.sort();
    types.dedup();
    let types = if types.is_empty() {
        "*".to_string()
    } else {
        types.join(",")
    };
    format!("{} {} {types}", base_url.trim_end_matches('/'), level.key())
}

fn read_sync_log(dir: &Path) -> Result<BTreeMap<String, String>> {
    let path = dir.join(SYNC_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::State(format!(
                "{} is unreadable ({e}); fix or remove it",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// The `transactionTime` of the last complete run for `key`.
pub fn last_transaction_time(dir: &Path, key: &str) -> Result<Option<String>> {
    Ok(read_sync_log(dir)?.remove(key))
}

/// Records `transaction_time` as the next `_since` for `key` (CL6: call only when every file
/// was processed).
pub fn record_transaction_time(dir: &Path, key: &str, transaction_time: &str) -> Result<()> {
    let mut log = read_sync_log(dir)?;
    log.insert(key.to_string(), transaction_time.to_string());
    write_atomic(
        &dir.join(SYNC_FILE),
        &serde_json::to_vec_pretty(&log).expect("a map serializes"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(RunState::load(dir.path()).unwrap().is_none());
        let mut s = RunState::new(
            "https://x/fhir".into(),
            "GET https://x/fhir/$export".into(),
            "k".into(),
            None,
        );
        s.status_url = Some("https://x/status/1".into());
        s.files.insert(
            "Patient.1.ndjson".into(),
            FileRecord {
                kind: FileKind::Output,
                resource_type: Some("Patient".into()),
                url: "https://x/f/1".into(),
                path: "Patient.1.ndjson".into(),
                bytes: 3,
                sha256: "00".into(),
                resources: 1,
            },
        );
        s.save(dir.path()).unwrap();
        s.save(dir.path()).unwrap();
        let back = RunState::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.status_url, s.status_url);
        assert_eq!(back.files, s.files);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATE_FILE)]);
    }

    #[test]
    fn corrupt_state_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{not json").unwrap();
        let err = RunState::load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::State(_)), "{err}");
        assert!(err.to_string().contains("remove it"));
    }

    #[test]
    fn intact_files_are_recognized_by_size_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.ndjson"), b"{}\n").unwrap();
        let (bytes, sha256) = sha256_file(&dir.path().join("a.ndjson")).unwrap();
        assert_eq!(
            sha256,
            "ca3d163bab055381827226140568f3bef7eaac187cebd76878e0b63e9e442356"
        );
        let rec = FileRecord {
            kind: FileKind::Output,
            resource_type: None,
            url: String::new(),
            path: "a.ndjson".into(),
            bytes,
            sha256,
            resources: 1,
        };
        assert!(is_intact(dir.path(), &rec));
        std::fs::write(dir.path().join("a.ndjson"), b"{]\n").unwrap();
        assert!(!is_intact(dir.path(), &rec));
    }

    /// CL6: `--since auto` keys by server, level and types, whatever their order.
    #[test]
    fn sync_log_is_keyed_by_server_level_and_types_cl6() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = sync_key(
            "https://x/fhir/",
            &Level::System,
            &["Patient".into(), "Condition".into()],
        );
        let k2 = sync_key(
            "https://x/fhir",
            &Level::System,
            &["Condition".into(), "Patient".into()],
        );
        assert_eq!(k1, k2);
        assert_ne!(
            k1,
            sync_key("https://x/fhir", &Level::Group("g".into()), &[])
        );
        assert_eq!(last_transaction_time(dir.path(), &k1).unwrap(), None);
        record_transaction_time(dir.path(), &k1, "2024-01-01T00:00:00Z").unwrap();
        assert_eq!(
            last_transaction_time(dir.path(), &k2).unwrap().as_deref(),
            Some("2024-01-01T00:00:00Z")
        );
    }
}
