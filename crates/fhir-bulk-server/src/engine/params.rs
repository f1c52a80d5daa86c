//! What a job row's `params` hold: everything a worker needs to run any unit of the job.

use fhir_bulk_spec::kickoff::{ExportRequest, Level};
use fhir_bulk_store::PatientScope;
use serde::{Deserialize, Serialize};

/// The parsed kick-off, stored with the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobParams {
    /// Export level.
    pub level: Level,
    /// Parameters.
    pub request: ExportRequest,
    /// Which compartments the scans cover.
    pub scope: PatientScope,
    /// Lenient-mode warnings for the `error` file (K5).
    pub warnings: Vec<String>,
}
