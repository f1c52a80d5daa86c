//! The slice of FHIR R4 the generator writes, as plain structs that serde serializes.
//!
//! Typed structs rather than `serde_json::Value`: serializing a struct writes straight into
//! the output buffer with no intermediate maps, which is what makes millions of resources per
//! minute possible, and the compiler checks the shape of every resource. Field order follows
//! the R4 element order, so the output reads like the spec's examples. Strings that come from
//! our own tables are `&'static str`; serde_json escapes every string on the way out, so even
//! names with quotes or non-ASCII letters are written correctly.

use crate::calendar::{Date, DateTime, Instant};
use crate::id::{Ref, ResourceId};
use serde::{Serialize, Serializer};

/// `Coding`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Coding {
    /// Code system URI.
    pub system: &'static str,
    /// The code.
    pub code: &'static str,
    /// Human-readable display.
    pub display: &'static str,
}

/// `CodeableConcept` with one coding and an optional text.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CodeableConcept {
    /// The one coding.
    pub coding: [Coding; 1],
    /// Plain text, as a clinician would have typed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'static str>,
}

impl CodeableConcept {
    /// A concept of one coding whose `text` repeats the display, as EHR exports usually do.
    pub const fn coded(system: &'static str, code: &'static str, display: &'static str) -> Self {
        CodeableConcept {
            coding: [Coding {
                system,
                code,
                display,
            }],
            text: Some(display),
        }
    }

    /// A concept of one coding with no `text` (for status-like fields).
    pub const fn bare(system: &'static str, code: &'static str, display: &'static str) -> Self {
        CodeableConcept {
            coding: [Coding {
                system,
                code,
                display,
            }],
            text: None,
        }
    }
}

/// `Reference` with a relative `Type/id`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Reference {
    /// `Type/id`.
    pub reference: Ref,
}

impl From<Ref> for Reference {
    fn from(reference: Ref) -> Self {
        Reference { reference }
    }
}

/// A FHIR `decimal` held as a scaled integer, so that `72` stays an integer and `36.7` is
/// written with exactly the digits we meant, never `36.699999`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decimal {
    /// The value times `10^places`.
    pub scaled: i64,
    /// Digits after the decimal point (0 to 3).
    pub places: u8,
}

impl Decimal {
    /// Rounds `value` to `places` decimals.
    pub fn round(value: f64, places: u8) -> Decimal {
        let factor = 10f64.powi(i32::from(places));
        Decimal {
            scaled: (value * factor).round() as i64,
            places,
        }
    }

    /// The value as `f64` (for comparisons with reference ranges).
    pub fn as_f64(self) -> f64 {
        self.scaled as f64 / 10f64.powi(i32::from(self.places))
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.places == 0 {
            serializer.serialize_i64(self.scaled)
        } else {
            // A correctly rounded division gives the double nearest the decimal, and
            // serde_json prints the shortest text that reads back as that double: the decimal.
            serializer.serialize_f64(self.as_f64())
        }
    }
}

/// `Quantity` with a UCUM unit.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Quantity {
    /// The value.
    pub value: Decimal,
    /// Unit as displayed.
    pub unit: &'static str,
    /// Always UCUM.
    pub system: &'static str,
    /// UCUM code.
    pub code: &'static str,
}

/// `Period`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Period {
    /// Start.
    pub start: DateTime,
    /// End, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime>,
}

/// `Meta`: only `lastUpdated`, which a server may overwrite on load.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    /// When the resource last changed.
    pub last_updated: Instant,
}

/// `Identifier`.
#[derive(Debug, Clone, Serialize)]
pub struct Identifier {
    /// `usual`, `official`, …
    #[serde(rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<&'static str>,
    /// Kind of identifier (v2-0203).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<CodeableConcept>,
    /// Namespace URI.
    pub system: &'static str,
    /// The value.
    pub value: String,
}

/// `HumanName`.
#[derive(Debug, Clone, Serialize)]
pub struct HumanName {
    /// Always `official` here.
    #[serde(rename = "use")]
    pub use_: &'static str,
    /// Family name.
    pub family: &'static str,
    /// Given names, first one first.
    pub given: Vec<&'static str>,
    /// `Mr.`, `Dr.`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<[&'static str; 1]>,
}

/// `ContactPoint`.
#[derive(Debug, Clone, Serialize)]
pub struct ContactPoint {
    /// `phone` or `email`.
    pub system: &'static str,
    /// Number or address.
    pub value: String,
    /// `home`, `work`, `mobile`.
    #[serde(rename = "use")]
    pub use_: &'static str,
}

/// `Address`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// `home` or `work`.
    #[serde(rename = "use")]
    pub use_: &'static str,
    /// Street lines.
    pub line: [String; 1],
    /// City.
    pub city: &'static str,
    /// US state (two letters).
    pub state: &'static str,
    /// ZIP code.
    pub postal_code: String,
    /// Always `US`.
    pub country: &'static str,
}

/// `Patient.communication`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Communication {
    /// BCP-47 language.
    pub language: CodeableConcept,
    /// Whether this is the preferred language.
    pub preferred: bool,
}

/// `Patient`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct Patient {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// MRN and SSN.
    pub identifier: Vec<Identifier>,
    /// Whether the record is in use.
    pub active: bool,
    /// Official name.
    pub name: [HumanName; 1],
    /// Phone and email.
    pub telecom: Vec<ContactPoint>,
    /// `male`, `female`, `other`, `unknown`.
    pub gender: &'static str,
    /// Date of birth.
    pub birth_date: Date,
    /// Date of death, for the few who died.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deceased_date_time: Option<DateTime>,
    /// Home address.
    pub address: [Address; 1],
    /// Marital status (v3-MaritalStatus).
    pub marital_status: CodeableConcept,
    /// Preferred language.
    pub communication: [Communication; 1],
    /// The primary care practitioner.
    pub general_practitioner: [Reference; 1],
    /// The organization that keeps the record.
    pub managing_organization: Reference,
}

/// `Encounter.participant`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EncounterParticipant {
    /// Participation type (v3-ParticipationType).
    #[serde(rename = "type")]
    pub kind: [CodeableConcept; 1],
    /// The practitioner.
    pub individual: Reference,
}

/// `Encounter.location`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct EncounterLocation {
    /// The location.
    pub location: Reference,
}

/// `Encounter`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct Encounter {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// Always `finished`: the data is historical.
    pub status: &'static str,
    /// AMB, EMER, IMP or VR (v3-ActCode).
    pub class: Coding,
    /// SNOMED encounter type.
    #[serde(rename = "type")]
    pub kind: [CodeableConcept; 1],
    /// The patient.
    pub subject: Reference,
    /// The attending practitioner.
    pub participant: [EncounterParticipant; 1],
    /// When it happened.
    pub period: Period,
    /// Why, for visits that were not planned check-ups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<[CodeableConcept; 1]>,
    /// Where.
    pub location: [EncounterLocation; 1],
    /// The organization responsible.
    pub service_provider: Reference,
}

/// `Observation.referenceRange`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReferenceRange {
    /// Low bound.
    pub low: Quantity,
    /// High bound.
    pub high: Quantity,
}

/// `Observation.component`.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationComponent {
    /// LOINC code of the component.
    pub code: CodeableConcept,
    /// Its value.
    pub value_quantity: Quantity,
}

/// `Observation`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct Observation {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// Always `final`.
    pub status: &'static str,
    /// `vital-signs` or `laboratory`.
    pub category: [CodeableConcept; 1],
    /// LOINC code.
    pub code: CodeableConcept,
    /// The patient.
    pub subject: Reference,
    /// The encounter it was taken in.
    pub encounter: Reference,
    /// When it was taken.
    pub effective_date_time: DateTime,
    /// When the result was released.
    pub issued: Instant,
    /// Who took it (vital signs) or the lab (results).
    pub performer: [Reference; 1],
    /// The value; absent for panels that only have components.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_quantity: Option<Quantity>,
    /// H, L or N (v3-ObservationInterpretation), for lab results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpretation: Option<[CodeableConcept; 1]>,
    /// Normal range, for lab results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_range: Option<[ReferenceRange; 1]>,
    /// Components (blood pressure).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub component: Vec<ObservationComponent>,
}

/// `Condition`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct Condition {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// active, resolved, … (condition-clinical).
    pub clinical_status: CodeableConcept,
    /// confirmed (condition-ver-status).
    pub verification_status: CodeableConcept,
    /// encounter-diagnosis or problem-list-item.
    pub category: [CodeableConcept; 1],
    /// SNOMED code.
    pub code: CodeableConcept,
    /// The patient.
    pub subject: Reference,
    /// Where it was diagnosed.
    pub encounter: Reference,
    /// Onset.
    pub onset_date_time: DateTime,
    /// Resolution, for conditions that resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abatement_date_time: Option<DateTime>,
    /// When it was recorded.
    pub recorded_date: DateTime,
}

/// `Procedure.performer`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ProcedurePerformer {
    /// The practitioner.
    pub actor: Reference,
}

/// `Procedure`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct Procedure {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// Always `completed`.
    pub status: &'static str,
    /// SNOMED code.
    pub code: CodeableConcept,
    /// The patient.
    pub subject: Reference,
    /// The encounter it was done in.
    pub encounter: Reference,
    /// When.
    pub performed_period: Period,
    /// Who.
    pub performer: [ProcedurePerformer; 1],
    /// Where.
    pub location: Reference,
    /// The condition it treats, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_reference: Option<[Reference; 1]>,
}

/// `Timing.repeat`.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimingRepeat {
    /// Times per period.
    pub frequency: u32,
    /// Period length.
    pub period: u32,
    /// Period unit (`d`).
    pub period_unit: &'static str,
}

/// `Timing`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timing {
    /// The repeat rule.
    pub repeat: TimingRepeat,
}

/// `Dosage`.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dosage {
    /// Order of this instruction.
    pub sequence: u32,
    /// Free text sig.
    pub text: &'static str,
    /// When.
    pub timing: Timing,
    /// PRN.
    pub as_needed_boolean: bool,
}

/// `MedicationRequest`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct MedicationRequest {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// active, completed, stopped or on-hold.
    pub status: &'static str,
    /// Always `order`.
    pub intent: &'static str,
    /// RxNorm code.
    pub medication_codeable_concept: CodeableConcept,
    /// The patient.
    pub subject: Reference,
    /// The encounter it was written in.
    pub encounter: Reference,
    /// When.
    pub authored_on: DateTime,
    /// The prescriber.
    pub requester: Reference,
    /// The condition it treats, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason_reference: Option<[Reference; 1]>,
    /// How to take it.
    pub dosage_instruction: [Dosage; 1],
}

/// `Immunization`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct Immunization {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// Always `completed`.
    pub status: &'static str,
    /// CVX code.
    pub vaccine_code: CodeableConcept,
    /// The patient.
    pub patient: Reference,
    /// The encounter it was given in.
    pub encounter: Reference,
    /// When.
    pub occurrence_date_time: DateTime,
    /// Recorded by the giver.
    pub primary_source: bool,
    /// Where.
    pub location: Reference,
    /// Vaccine lot.
    pub lot_number: String,
}

/// `AllergyIntolerance.reaction`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct AllergyReaction {
    /// SNOMED manifestation.
    pub manifestation: [CodeableConcept; 1],
    /// mild, moderate, severe.
    pub severity: &'static str,
}

/// `AllergyIntolerance`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct AllergyIntolerance {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// active or inactive (allergyintolerance-clinical).
    pub clinical_status: CodeableConcept,
    /// confirmed or unconfirmed (allergyintolerance-verification).
    pub verification_status: CodeableConcept,
    /// Always `allergy`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// food, medication or environment.
    pub category: [&'static str; 1],
    /// low or high.
    pub criticality: &'static str,
    /// SNOMED code.
    pub code: CodeableConcept,
    /// The patient.
    pub patient: Reference,
    /// The encounter it was recorded in.
    pub encounter: Reference,
    /// When it was recorded.
    pub recorded_date: DateTime,
    /// Who recorded it.
    pub recorder: Reference,
    /// The reaction, when one was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reaction: Option<[AllergyReaction; 1]>,
}

/// `DiagnosticReport`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct DiagnosticReport {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// Always `final`.
    pub status: &'static str,
    /// LAB (v2-0074).
    pub category: [CodeableConcept; 1],
    /// LOINC panel code.
    pub code: CodeableConcept,
    /// The patient.
    pub subject: Reference,
    /// The encounter the specimen was taken in.
    pub encounter: Reference,
    /// Specimen time.
    pub effective_date_time: DateTime,
    /// Release time.
    pub issued: Instant,
    /// The lab.
    pub performer: [Reference; 1],
    /// The Observations of the panel.
    pub result: Vec<Reference>,
}

/// `Practitioner`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct Practitioner {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// NPI.
    pub identifier: [Identifier; 1],
    /// Whether they practise.
    pub active: bool,
    /// Name.
    pub name: [HumanName; 1],
    /// Work phone.
    pub telecom: [ContactPoint; 1],
    /// Work address.
    pub address: [Address; 1],
    /// Gender.
    pub gender: &'static str,
}

/// `Organization`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct Organization {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// Organization NPI.
    pub identifier: [Identifier; 1],
    /// Whether it operates.
    pub active: bool,
    /// prov (organization-type).
    #[serde(rename = "type")]
    pub kind: [CodeableConcept; 1],
    /// Name.
    pub name: String,
    /// Phone.
    pub telecom: [ContactPoint; 1],
    /// Address.
    pub address: [Address; 1],
}

/// `Location`.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "resourceType", rename_all = "camelCase")]
pub struct Location {
    /// Logical id.
    pub id: ResourceId,
    /// Meta.
    pub meta: Meta,
    /// Always `active`.
    pub status: &'static str,
    /// Name.
    pub name: String,
    /// Always `instance`.
    pub mode: &'static str,
    /// Service delivery location role (v3-RoleCode).
    #[serde(rename = "type")]
    pub kind: [CodeableConcept; 1],
    /// Address.
    pub address: Address,
    /// Building, wing, … (location-physical-type).
    pub physical_type: CodeableConcept,
    /// The owner.
    pub managing_organization: Reference,
}
