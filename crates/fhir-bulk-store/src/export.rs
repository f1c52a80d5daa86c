//! What export units read from the store: one type ([`ExportScan`]), or several types of
//! one export ([`ExportSet`]) for organized output and associated Provenance.

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

/// Several types of one export at once, for organized output (O2) and for checking the
/// targets of associated Provenance (P7): the same window and scope as [`ExportScan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportSet {
    /// Tenant.
    pub tenant: String,
    /// Resource types.
    pub types: Vec<String>,
    /// `_since`: modified strictly after (T1).
    pub since: Option<Instant>,
    /// min(`_until`, transactionTime), as in [`ExportScan::until`].
    pub until: Instant,
    /// Compartment scope.
    pub scope: PatientScope,
}

impl ExportSet {
    /// The scan of one of the set's types.
    pub fn scan(&self, resource_type: &str) -> ExportScan {
        ExportScan {
            tenant: self.tenant.clone(),
            resource_type: resource_type.to_string(),
            since: self.since,
            until: self.until,
            scope: self.scope.clone(),
        }
    }
}

/// One resource of an organized scan: in the compartment of `patient_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizedRow {
    /// The patient whose block the resource goes in.
    pub patient_id: String,
    /// Resource type.
    pub resource_type: String,
    /// The resource's JSON (one line, no newline).
    pub json: Vec<u8>,
}
