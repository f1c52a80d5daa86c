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
    /// The slice of the type's ids this scan covers (a unit of a large type).
    pub ids: IdRange,
}

/// A slice of a type's ids, in the store's text order: `from` inclusive, `to` exclusive,
/// `None` open. Large types are cut into slices so several workers (of several nodes) can
/// export one type at once; the slices of a type tile the whole id space, so every id falls
/// in exactly one, whatever the ids look like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdRange {
    /// Lowest id of the slice (inclusive), `None` from the start.
    pub from: Option<String>,
    /// First id after the slice, `None` to the end.
    pub to: Option<String>,
}

impl IdRange {
    /// Every id.
    pub fn all() -> IdRange {
        IdRange::default()
    }

    /// Is this every id?
    pub fn is_all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// `parts` slices tiling the id space, cut at two-hex-digit prefixes ("40", "80", …):
    /// even for UUIDs and other hex ids, still correct (if uneven) for any other ids.
    /// `parts` is clamped to 1..=256.
    pub fn split(parts: usize) -> Vec<IdRange> {
        let parts = parts.clamp(1, 256);
        let cut = |i: usize| (i > 0 && i < parts).then(|| format!("{:02x}", i * 256 / parts));
        (0..parts)
            .map(|i| IdRange {
                from: cut(i),
                to: cut(i + 1),
            })
            .collect()
    }
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
            ids: IdRange::all(),
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

#[cfg(test)]
mod tests {
    use super::IdRange;

    #[test]
    fn slices_tile_the_id_space() {
        assert_eq!(IdRange::split(1), vec![IdRange::all()]);
        let four = IdRange::split(4);
        assert_eq!(four[0].to.as_deref(), Some("40"));
        assert_eq!(four[3].from.as_deref(), Some("c0"));
        for parts in [2, 3, 7, 16] {
            let slices = IdRange::split(parts);
            for w in slices.windows(2) {
                assert_eq!(w[0].to, w[1].from, "slices must meet");
            }
            assert!(slices[0].from.is_none() && slices[parts - 1].to.is_none());
        }
    }
}
