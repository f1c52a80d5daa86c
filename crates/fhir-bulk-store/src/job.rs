//! Export jobs: rows, not tasks. Work is cut into units that any worker (of any node) claims
//! with a lease; a unit's files commit together with its completion.

use crate::IdRange;
use fhir_bulk_spec::instant::Instant;
use serde_json::Value;

/// Job state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Units are being worked on.
    Running,
    /// Every unit finished; the manifest is ready.
    Completed,
    /// The export failed; `error` says why.
    Failed,
    /// Cancelled by DELETE (D1); files are purged and polls answer 404 (D3).
    Cancelled,
}

impl JobStatus {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a column value.
    pub fn parse(s: &str) -> Option<JobStatus> {
        Some(match s {
            "running" => JobStatus::Running,
            "completed" => JobStatus::Completed,
            "failed" => JobStatus::Failed,
            "cancelled" => JobStatus::Cancelled,
            _ => return None,
        })
    }
}

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Tenant.
    pub tenant: String,
    /// Job id (opaque, unguessable).
    pub id: String,
    /// The client that started it (`None` with auth off).
    pub client_id: Option<String>,
    /// M2: the kick-off URL.
    pub request_url: String,
    /// The parsed kick-off request, as the server wants to read it back.
    pub params: Value,
    /// The units.
    pub units: Vec<NewUnit>,
    /// How long the job and its files live after kick-off, in seconds.
    pub ttl_seconds: i64,
}

/// What a unit writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitKind {
    /// Resources of one type (`output`).
    Output,
    /// Tombstones of one type (`deleted`, M5).
    Deleted,
    /// Warnings known at kick-off (`error`, K5).
    Error,
    /// Resources of several types in blocks per patient (`organizeOutputBy=Patient`, O2);
    /// `resource_type` is the organizing type. Its files have no `type` in the manifest (M4).
    Organized,
    /// Provenance found through the resources the export returns (`includeAssociatedData`,
    /// P7); `resource_type` is `Provenance`.
    Associated,
}

impl UnitKind {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            UnitKind::Output => "output",
            UnitKind::Deleted => "deleted",
            UnitKind::Error => "error",
            UnitKind::Organized => "organized",
            UnitKind::Associated => "associated",
        }
    }

    /// Parses a column value.
    pub fn parse(s: &str) -> Option<UnitKind> {
        Some(match s {
            "output" => UnitKind::Output,
            "deleted" => UnitKind::Deleted,
            "error" => UnitKind::Error,
            "organized" => UnitKind::Organized,
            "associated" => UnitKind::Associated,
            _ => return None,
        })
    }
}

/// A unit to create.
#[derive(Debug, Clone)]
pub struct NewUnit {
    /// Resource type it covers.
    pub resource_type: String,
    /// What it writes.
    pub kind: UnitKind,
    /// Estimated resources (for `X-Progress`).
    pub estimate: u64,
    /// The slice of the type's ids it covers.
    pub ids: IdRange,
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct Job {
    /// Tenant.
    pub tenant: String,
    /// Job id.
    pub id: String,
    /// Owner.
    pub client_id: Option<String>,
    /// State.
    pub status: JobStatus,
    /// M2.
    pub request_url: String,
    /// The parsed kick-off request.
    pub params: Value,
    /// M1: fixed at kick-off.
    pub transaction_time: Instant,
    /// Kick-off time.
    pub created_at: Instant,
    /// When it completed, failed or was cancelled.
    pub finished_at: Option<Instant>,
    /// When it and its files expire.
    pub expires_at: Instant,
    /// Why it failed.
    pub error: Option<String>,
}

/// A unit as stored.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Job.
    pub job_id: String,
    /// Position in the job.
    pub seq: i64,
    /// Resource type.
    pub resource_type: String,
    /// What it writes.
    pub kind: UnitKind,
    /// Estimated resources.
    pub estimate: u64,
    /// The slice of the type's ids it covers.
    pub ids: IdRange,
    /// True once completed.
    pub done: bool,
    /// Resources written so far (as of the last heartbeat, or final).
    pub written: u64,
    /// How many times it was claimed (a retry after a lost lease counts).
    pub attempts: i64,
    /// Its place in the job's completion order (1 for the first unit done), once done. Pages
    /// of a partial manifest follow it, so a page never changes once it exists (ST4).
    pub done_seq: Option<i64>,
}

/// Which manifest list a file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// `output` (M4).
    Output,
    /// `error` (M6).
    Error,
    /// `deleted` (M5).
    Deleted,
}

impl FileKind {
    /// Column value.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Output => "output",
            FileKind::Error => "error",
            FileKind::Deleted => "deleted",
        }
    }

    /// Parses a column value.
    pub fn parse(s: &str) -> Option<FileKind> {
        Some(match s {
            "output" => FileKind::Output,
            "error" => FileKind::Error,
            "deleted" => FileKind::Deleted,
            _ => return None,
        })
    }
}

/// A finished file of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFile {
    /// File name, unique in the job (also its name in the sink and in the URL).
    pub name: String,
    /// The unit that wrote it.
    pub unit_seq: i64,
    /// Manifest list.
    pub kind: FileKind,
    /// `type` in the manifest; for files of an [`UnitKind::Organized`] unit, the organizing
    /// type (the manifest then leaves `type` out, M4).
    pub resource_type: String,
    /// Lines.
    pub count: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// How many jobs and units are in each status (for `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// `(job status, count)`, by status.
    pub jobs: Vec<(String, u64)>,
    /// `(unit status, count)` of units of running jobs, by status.
    pub units: Vec<(String, u64)>,
}
