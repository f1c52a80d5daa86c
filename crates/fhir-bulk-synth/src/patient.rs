//! A patient: the `Patient` resource and the traits their clinical history builds on.
//!
//! The demographic draws come first in the patient's random stream, and the
//! [`Profile`] they produce (age, home practice, body size, blood pressure) is what
//! [`crate::clinical`] reads, so a history stays consistent with its patient: children get
//! childhood vaccines, the deceased stop having visits, a patient's weight and BMI agree.

use crate::calendar::{DAY, Date, DateTime, Instant, days_from_civil, unix_seconds};
use crate::codes;
use crate::demographics::{self, CITIES, FAMILY};
use crate::directory::Directory;
use crate::draw::{SynthRng, gauss, pick, weighted};
use crate::fhir::{
    AllergyIntolerance, CodeableConcept, Communication, Condition, ContactPoint, DiagnosticReport,
    Encounter, HumanName, Identifier, Immunization, MedicationRequest, Meta, Observation, Patient,
    Procedure,
};
use crate::id::{Ref, ResourceKind};
use rand::Rng;

/// Start of the clinical record: no visit happens before 2010-01-01.
pub const RECORD_START: i64 = unix_seconds(2010, 1, 1);
/// End of the clinical record (exclusive): nothing happens from 2026-01-01 on.
pub const RECORD_END: i64 = unix_seconds(2026, 1, 1);

/// One patient and everything in their record, each resource type in its own list in
/// chronological order. This is the unit the generator writes, and what tests inspect.
#[derive(Debug, Clone)]
pub struct PatientRecord {
    /// The patient.
    pub patient: Patient,
    /// Visits.
    pub encounters: Vec<Encounter>,
    /// Vital signs and lab results.
    pub observations: Vec<Observation>,
    /// Diagnoses and problems.
    pub conditions: Vec<Condition>,
    /// Procedures.
    pub procedures: Vec<Procedure>,
    /// Prescriptions.
    pub medication_requests: Vec<MedicationRequest>,
    /// Vaccinations.
    pub immunizations: Vec<Immunization>,
    /// Allergies.
    pub allergies: Vec<AllergyIntolerance>,
    /// Lab reports.
    pub reports: Vec<DiagnosticReport>,
}

impl PatientRecord {
    /// Number of resources in the record, the patient included.
    pub fn len(&self) -> usize {
        1 + self.encounters.len()
            + self.observations.len()
            + self.conditions.len()
            + self.procedures.len()
            + self.medication_requests.len()
            + self.immunizations.len()
            + self.allergies.len()
            + self.reports.len()
    }

    /// Never true: a record always holds its patient. (Clippy wants it beside `len`.)
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// What the clinical history needs to know about its patient.
#[derive(Debug, Clone)]
pub struct Profile {
    /// Patient index in the population.
    pub index: u64,
    /// `Patient/<id>`.
    pub reference: Ref,
    /// Day of birth (days since the epoch).
    pub birth_day: i64,
    /// Time of death (Unix seconds), for the few who died.
    pub death: Option<i64>,
    /// `male`, `female`, `other` or `unknown`.
    pub gender: &'static str,
    /// The patient's UTC offset in minutes, used for every clinical time.
    pub offset_minutes: i32,
    /// Home organization (their practice or hospital).
    pub organization: u64,
    /// Their general practitioner.
    pub practitioner: u64,
    /// Adult height in cm.
    pub adult_height: f64,
    /// Body mass index as an adult.
    pub bmi: f64,
}

impl Profile {
    /// Age in whole years at `unix` seconds.
    pub fn age_at(&self, unix: i64) -> u32 {
        let days = unix.div_euclid(DAY) - self.birth_day;
        (days.max(0) as f64 / 365.2425) as u32
    }

    /// First and last instant (Unix seconds, end exclusive) of the patient's record.
    pub fn window(&self) -> (i64, i64) {
        let start = RECORD_START.max((self.birth_day + 1) * DAY);
        let end = self.death.unwrap_or(RECORD_END).min(RECORD_END);
        (start, end.max(start + DAY))
    }

    /// A clinical `dateTime` at `unix` seconds, in the patient's offset.
    pub fn at(&self, unix: i64) -> DateTime {
        DateTime {
            unix,
            offset_minutes: self.offset_minutes,
        }
    }
}

/// Draws the patient's demographics and profile (the first draws of `rng`).
pub fn patient(
    rng: &mut SynthRng,
    directory: &Directory,
    index: u64,
    reference: Ref,
) -> (Patient, Profile) {
    let gender = *weighted(
        rng,
        &[("female", 49), ("male", 49), ("other", 1), ("unknown", 1)],
    );
    // Ages 0 to 90 at the end of 2025, roughly flat like a practice's panel.
    let birth_day = rng.gen_range(days_from_civil(1935, 1, 1)..days_from_civil(2025, 6, 1));
    let organization = rng.gen_range(0..directory.organizations());
    let practitioner = directory.practitioner_of(organization, rng);
    // Most patients live in their practice's city; some travel in.
    let city = if rng.gen_bool(0.85) {
        directory.city_of(organization)
    } else {
        pick(rng, CITIES)
    };
    let born = birth_day * DAY;
    let death = (born < unix_seconds(1960, 1, 1) && rng.gen_bool(0.08))
        .then(|| rng.gen_range(unix_seconds(2011, 1, 1)..RECORD_END));

    let (first, middle) = demographics::given_names(rng, gender);
    let family = *pick(rng, FAMILY);
    let mut given = vec![first.0];
    given.extend(middle.map(|m| m.0));
    let adult = born < unix_seconds(2008, 1, 1);
    let prefix = match (adult, gender) {
        (false, _) => None,
        (true, "male") => Some(["Mr."]),
        (true, "female") => Some([*pick(rng, &["Mrs.", "Ms."])]),
        (true, _) => Some(["Mx."]),
    };
    let phone_use = if rng.gen_bool(0.7) { "mobile" } else { "home" };
    let mut telecom = vec![demographics::phone(rng, phone_use)];
    if adult && rng.gen_bool(0.6) {
        telecom.push(ContactPoint {
            system: "email",
            value: format!("{}.{}{}@example.com", first.1, family.1, index % 1000),
            use_: "home",
        });
    }
    let marital_status = if adult {
        *pick(rng, codes::MARITAL_STATUSES)
    } else {
        codes::MARITAL_STATUSES[1]
    };
    let language = *weighted(rng, codes::LANGUAGES);
    let (height_mean, height_sd) = if gender == "male" {
        (176.0, 7.0)
    } else {
        (163.0, 6.5)
    };
    let adult_height = gauss(rng, height_mean, height_sd, 140.0, 210.0);
    let bmi = gauss(rng, 27.0, 4.5, 17.0, 48.0);

    let profile = Profile {
        index,
        reference,
        birth_day,
        death,
        gender,
        offset_minutes: city.offset_minutes,
        organization,
        practitioner,
        adult_height,
        bmi,
    };
    // A record changes last when the patient dies, or at some visit in their window.
    let (start, end) = match death {
        Some(died) => (died, RECORD_END),
        None => profile.window(),
    };
    let last_updated = rng.gen_range(start * 1000..end * 1000);
    let resource = Patient {
        id: reference.id,
        meta: Meta {
            last_updated: Instant {
                unix_millis: last_updated,
            },
        },
        identifier: vec![
            Identifier {
                use_: Some("usual"),
                kind: Some(CodeableConcept::coded(
                    codes::IDENTIFIER_TYPE,
                    "MR",
                    "Medical record number",
                )),
                system: codes::MRN,
                value: format!("MRN{:09}", index),
            },
            Identifier {
                use_: Some("official"),
                kind: Some(CodeableConcept::coded(
                    codes::IDENTIFIER_TYPE,
                    "SS",
                    "Social Security number",
                )),
                system: codes::SSN,
                value: format!(
                    "9{:02}-{:02}-{:04}",
                    rng.gen_range(0..100),
                    rng.gen_range(1..100),
                    rng.gen_range(1..10_000)
                ),
            },
        ],
        active: death.is_none(),
        name: [HumanName {
            use_: "official",
            family: family.0,
            given,
            prefix,
        }],
        telecom,
        gender,
        birth_date: Date { days: birth_day },
        deceased_date_time: death.map(|d| profile.at(d)),
        address: [demographics::address(rng, city, "home")],
        marital_status,
        communication: [Communication {
            language,
            preferred: true,
        }],
        general_practitioner: [directory.practitioner_ref(practitioner).into()],
        managing_organization: directory.organization_ref(organization).into(),
    };
    debug_assert_eq!(reference.kind, ResourceKind::Patient);
    (resource, profile)
}
