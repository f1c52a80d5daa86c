//! Deterministic synthetic FHIR R4 data, streamed as NDJSON per resource type.
//!
//! [`generate`] writes `<dir>/<ResourceType>.ndjson` for Patient, Encounter, Observation,
//! Condition, Procedure, MedicationRequest, Immunization, AllergyIntolerance,
//! DiagnosticReport, Practitioner, Organization, Location and Group: one compact JSON
//! resource per line, `\n` line endings. It is both our demo data and our scale generator:
//! 100 000 patients give about five million resources in well under two minutes, in
//! constant memory.
//!
//! # Guarantees
//! - **Deterministic.** The same `patients` and `seed` give byte-identical files. Each
//!   patient draws from its own random stream (seed, patient index), so output does not
//!   depend on generation order (the `draw` module explains the streams).
//! - **Closed.** Every reference is relative (`Type/id`) and resolves to a resource in the
//!   output: ids are computed from `(seed, type, owner, ordinal)` ([`ResourceId`]), never
//!   remembered.
//! - **Valid ids.** UUID-shaped, unique per type. The three Groups have readable ids
//!   (`all-patients`, `cohort-10pct`, `small-sample`, see [`group`]).
//! - **Streaming.** Memory is independent of `patients`: one buffer per file, one patient's
//!   record at a time; the all-patients Group's members are serialized as they are computed.
//!
//! # Layout
//! - [`Population`]: the data set of one config; [`Population::patient`] is the pure
//!   per-patient function (a [`PatientRecord`]), [`Population::directory`] the providers.
//! - `patient` draws demographics, `clinical` the visits and everything recorded at them,
//!   `directory` the Organizations, Locations and Practitioners, `group` the Groups.
//! - `codes` (terminology) and `demographics` (names, places) are the tables; `fhir` the
//!   serde structs; `calendar` FHIR dates; `id` ids and references; `writer` the files.
//!
//! Clinical times lie between 2010-01-01 and 2025-12-31 (or the patient's birth or death)
//! and carry the patient's UTC offset; `meta.lastUpdated` is a UTC instant at or after the
//! event it records, spread over the same years.

mod calendar;
mod clinical;
mod codes;
mod demographics;
mod directory;
mod draw;
pub mod fhir;
pub mod group;
mod id;
mod patient;
mod writer;

pub use calendar::{Date, DateTime, Instant};
pub use directory::Directory;
pub use group::{GroupKind, Membership};
pub use id::{Ref, ResourceId, ResourceKind};
pub use patient::PatientRecord;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use writer::NdjsonFiles;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthConfig {
    /// Number of patients (at least 1).
    pub patients: u64,
    /// Seed of every random choice.
    pub seed: u64,
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// Resources written per resource type (every type is present, possibly with 0).
    pub resources: BTreeMap<String, u64>,
    /// Bytes written per resource type.
    pub bytes_per_type: BTreeMap<String, u64>,
    /// Total bytes written.
    pub bytes: u64,
    /// The files written, one per type.
    pub files: Vec<PathBuf>,
}

impl SynthSummary {
    /// Total number of resources.
    pub fn total(&self) -> u64 {
        self.resources.values().sum()
    }
}

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// `patients` was 0: a data set needs at least one patient.
    #[error("the number of patients must be at least 1")]
    NoPatients,
    /// `patients` is beyond what the id scheme can number (2^40, about 10^12).
    #[error("{patients} patients is more than the generator can number ({max})")]
    TooManyPatients {
        /// Requested.
        patients: u64,
        /// Largest accepted.
        max: u64,
    },
    /// The output directory could not be created.
    #[error("cannot create output directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// An output file could not be created, written, flushed or renamed into place.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The data set of one [`SynthConfig`]: everything is computed from it on demand.
#[derive(Debug, Clone)]
pub struct Population {
    seed: u64,
    patients: u64,
    directory: Directory,
    membership: Membership,
}

impl Population {
    /// Validates `config` and prepares the (small) directory tables.
    pub fn new(config: &SynthConfig) -> Result<Population, SynthError> {
        let max = (1u64 << id::OWNER_BITS) - 1;
        match config.patients {
            0 => return Err(SynthError::NoPatients),
            n if n > max => {
                return Err(SynthError::TooManyPatients { patients: n, max });
            }
            _ => {}
        }
        Ok(Population {
            seed: config.seed,
            patients: config.patients,
            directory: Directory::new(config.seed, config.patients),
            membership: Membership::new(config.seed, config.patients),
        })
    }

    /// Number of patients.
    pub fn patients(&self) -> u64 {
        self.patients
    }

    /// The providers.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Group membership.
    pub fn membership(&self) -> &Membership {
        &self.membership
    }

    /// `Patient/<id>` of patient `index`.
    pub fn patient_ref(&self, index: u64) -> Ref {
        Ref::derive(self.seed, ResourceKind::Patient, index, 0)
    }

    /// Patient `index` (below [`Population::patients`]) and their whole record. Pure: the
    /// same population and index always give the same record.
    pub fn patient(&self, index: u64) -> PatientRecord {
        let mut rng = draw::stream(self.seed, draw::Domain::Patient, index);
        let (patient, profile) =
            patient::patient(&mut rng, &self.directory, index, self.patient_ref(index));
        let mut record = PatientRecord {
            patient,
            encounters: Vec::new(),
            observations: Vec::new(),
            conditions: Vec::new(),
            procedures: Vec::new(),
            medication_requests: Vec::new(),
            immunizations: Vec::new(),
            allergies: Vec::new(),
            reports: Vec::new(),
        };
        clinical::history(self.seed, &self.directory, &profile, &mut rng, &mut record);
        record
    }
}

/// How often (in patients) `progress` is called.
const PROGRESS_EVERY: u64 = 128;

/// Writes the data set of `config` into `out_dir` (created if missing; existing files of
/// the same names are replaced), calling `progress` with the number of patients done every
/// so often and once at the end.
pub fn generate(
    config: &SynthConfig,
    out_dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<SynthSummary, SynthError> {
    let population = Population::new(config)?;
    let mut files = NdjsonFiles::create(out_dir)?;

    let directory = population.directory();
    for o in 0..directory.organizations() {
        files.write(ResourceKind::Organization, &directory.organization(o))?;
    }
    for l in 0..directory.locations() {
        files.write(ResourceKind::Location, &directory.location(l))?;
    }
    for j in 0..directory.practitioners() {
        files.write(ResourceKind::Practitioner, &directory.practitioner(j))?;
    }

    for index in 0..population.patients() {
        write_record(&mut files, &population.patient(index))?;
        if (index + 1) % PROGRESS_EVERY == 0 {
            progress(index + 1);
        }
    }

    for group in GroupKind::ALL {
        files.write(ResourceKind::Group, &population.membership().group(group))?;
    }
    let written = files.finish()?;
    progress(population.patients());

    let mut summary = SynthSummary {
        resources: BTreeMap::new(),
        bytes_per_type: BTreeMap::new(),
        bytes: 0,
        files: Vec::new(),
    };
    for w in written {
        summary
            .resources
            .insert(w.kind.name().to_owned(), w.resources);
        summary
            .bytes_per_type
            .insert(w.kind.name().to_owned(), w.bytes);
        summary.bytes += w.bytes;
        summary
            .files
            .push(out_dir.join(format!("{}.ndjson", w.kind.name())));
    }
    Ok(summary)
}

/// Writes one patient's record, each resource to its type's file.
fn write_record(files: &mut NdjsonFiles, record: &PatientRecord) -> Result<(), SynthError> {
    files.write(ResourceKind::Patient, &record.patient)?;
    for r in &record.encounters {
        files.write(ResourceKind::Encounter, r)?;
    }
    for r in &record.observations {
        files.write(ResourceKind::Observation, r)?;
    }
    for r in &record.conditions {
        files.write(ResourceKind::Condition, r)?;
    }
    for r in &record.procedures {
        files.write(ResourceKind::Procedure, r)?;
    }
    for r in &record.medication_requests {
        files.write(ResourceKind::MedicationRequest, r)?;
    }
    for r in &record.immunizations {
        files.write(ResourceKind::Immunization, r)?;
    }
    for r in &record.allergies {
        files.write(ResourceKind::AllergyIntolerance, r)?;
    }
    for r in &record.reports {
        files.write(ResourceKind::DiagnosticReport, r)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn population(patients: u64, seed: u64) -> Population {
        Population::new(&SynthConfig { patients, seed }).unwrap()
    }

    fn json<T: serde::Serialize>(value: &T) -> Value {
        serde_json::to_value(value).unwrap()
    }

    #[test]
    fn a_patient_record_depends_only_on_seed_and_index() {
        let a = population(100, 5);
        let b = population(100, 5);
        // Generate in different orders: patient 42 must not notice.
        for i in 0..42 {
            a.patient(i);
        }
        let first = a.patient(42);
        let second = b.patient(42);
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
        assert_ne!(
            json(&first.patient),
            json(&population(100, 6).patient(42).patient)
        );
        assert_eq!(first.patient.id, a.patient_ref(42).id);
    }

    #[test]
    fn a_record_is_chronological_and_points_into_itself() {
        let population = population(300, 11);
        for index in 0..300 {
            let record = population.patient(index);
            let patient = format!("Patient/{}", record.patient.id);
            let encounters: Vec<Value> = record.encounters.iter().map(json).collect();
            let starts: Vec<i64> = record
                .encounters
                .iter()
                .map(|e| e.period.start.unix)
                .collect();
            assert!(
                starts.windows(2).all(|w| w[0] <= w[1]),
                "visits in time order"
            );
            let encounter_refs: Vec<String> = encounters
                .iter()
                .map(|e| format!("Encounter/{}", e["id"].as_str().unwrap()))
                .collect();
            for o in record.observations.iter().map(json) {
                assert_eq!(o["subject"]["reference"], patient.as_str());
                let encounter = o["encounter"]["reference"].as_str().unwrap();
                assert!(encounter_refs.iter().any(|e| e == encounter));
            }
            for c in record.conditions.iter().map(json) {
                assert_eq!(c["subject"]["reference"], patient.as_str());
            }
            assert_eq!(
                record.len(),
                1 + record.encounters.len()
                    + record.observations.len()
                    + record.conditions.len()
                    + record.procedures.len()
                    + record.medication_requests.len()
                    + record.immunizations.len()
                    + record.allergies.len()
                    + record.reports.len()
            );
        }
    }

    #[test]
    fn values_follow_the_patient() {
        // Diabetics have higher HbA1c than others, and BMI agrees with weight and height.
        let population = population(600, 3);
        let (mut diabetic, mut other) = (Vec::new(), Vec::new());
        for index in 0..600 {
            let record = population.patient(index);
            let is_diabetic = record
                .conditions
                .iter()
                .any(|c| c.code.coding[0].code == codes::DIABETES.code);
            for o in &record.observations {
                let code = o.code.coding[0].code;
                let Some(value) = o.value_quantity.map(|q| q.value.as_f64()) else {
                    continue;
                };
                if code == codes::HBA1C.code {
                    if is_diabetic {
                        &mut diabetic
                    } else {
                        &mut other
                    }
                    .push(value);
                }
                if code == codes::BMI.code {
                    let at = |wanted: &str| {
                        record
                            .observations
                            .iter()
                            .find(|p| {
                                p.code.coding[0].code == wanted
                                    && p.effective_date_time == o.effective_date_time
                            })
                            .and_then(|p| p.value_quantity)
                            .map(|q| q.value.as_f64())
                            .unwrap()
                    };
                    let (weight, height) =
                        (at(codes::BODY_WEIGHT.code), at(codes::BODY_HEIGHT.code));
                    let bmi = weight / (height / 100.0).powi(2);
                    assert!((bmi - value).abs() < 0.06, "{bmi} vs {value}");
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(!diabetic.is_empty() && !other.is_empty());
        // Those who are not diabetic but get HbA1c tests are mostly prediabetic (about 6%).
        let (d, o) = (mean(&diabetic), mean(&other));
        assert!(d > 7.0 && o < 6.5 && d > o + 1.0, "{d} vs {o}");
    }
}
