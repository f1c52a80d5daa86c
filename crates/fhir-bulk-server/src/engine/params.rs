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
    /// The types the export returns, resolved at kick-off (`_type`, or every type in scope):
    /// what organized output holds and what associated Provenance must target.
    #[serde(default)]
    pub types: Vec<String>,
}

impl JobParams {
    /// The parameters of a stored job.
    pub fn of(job: &fhir_bulk_store::Job) -> Result<JobParams, String> {
        serde_json::from_value(job.params.clone())
            .map_err(|e| format!("the job's parameters cannot be read: {e}"))
    }
}
