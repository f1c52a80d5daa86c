//! What one export unit reads from the store.

use fhir_bulk_spec::instant::Instant;
use serde::{Deserialize, Serialize};

/// Which resources of a type an export covers, by Patient compartment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum PatientScope {
    /// System level: every resource of the type.
    All,
    /// Patient level: resources in the compartment of any patient.
    AnyPatient,
    /// Group level: resources in the compartment of the Group's active Patient members.
    Group(String),
    /// Resources in the compartment of these patients (the `patient` parameter, P6).
    Patients(Vec<String>),
}

/// One scan: a type, a time window and a compartment scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportScan {
    /// Tenant.
    pub tenant: String,
    /// Resource type.
    pub resource_type: String,
    /// `_since`: modified strictly after (T1).
    pub since: Option<Instant>,
    /// min(`_until`, transactionTime): modified at or before (M1, P3). For a running job's
    /// transactionTime, versions current then are read even if superseded since (the store
    /// keeps them while a running job may need them); for an earlier `_until`, a resource
    /// changed after it is left out (files hold latest versions only, F5).
    pub until: Instant,
    /// Compartment scope.
    pub scope: PatientScope,
}

/// A run of whole NDJSON lines.
#[derive(Debug, Clone)]
pub struct ExportChunk {
    /// Lines, each ending in `\n`.
    pub bytes: Vec<u8>,
    /// Number of lines.
    pub count: u64,
}
