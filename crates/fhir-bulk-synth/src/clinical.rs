//! A patient's clinical history: visits, and what each visit leaves in the record.
//!
//! The history is planned first, then written out in time order. Planning picks the visits
//! inside the patient's record window (2010 to 2025, or birth to death): check-ups every few
//! years, sick visits for acute problems, and follow-ups of chronic conditions diagnosed at
//! check-ups. Writing turns each visit into an Encounter plus what a clinician would record
//! there: vital signs (`vital-signs` Observations), lab panels (`laboratory` Observations
//! gathered by a DiagnosticReport), diagnoses (Condition), prescriptions (MedicationRequest),
//! procedures, vaccines and allergies. Values follow the patient: a diabetic has a high
//! HbA1c, a hypertensive a high blood pressure, a child grows.
//!
//! Every resource's id is `(patient index, ordinal within its type)`, numbered in the order
//! written, so ids and references come out of the same counter and always resolve.

use crate::calendar::{DAY, Instant, civil_from_days, unix_seconds};
use crate::codes::{self, Disorder, LabPanel, Measure, Medication, ProcedureCode, VisitKind};
use crate::directory::Directory;
use crate::draw::{SynthRng, gauss, pick};
use crate::fhir::{
    AllergyIntolerance, AllergyReaction, CodeableConcept, Condition, Decimal, DiagnosticReport,
    Dosage, Encounter, EncounterLocation, EncounterParticipant, Immunization, MedicationRequest,
    Meta, Observation, ObservationComponent, Period, Procedure, ProcedurePerformer, Quantity,
    Reference, ReferenceRange, Timing, TimingRepeat,
};
use crate::id::{Ref, ResourceKind};
use crate::patient::{PatientRecord, Profile, RECORD_END};
use rand::Rng;

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const YEAR: i64 = 365 * DAY;
/// Latest a meta.lastUpdated may lag behind the clinical event it records.
const UPDATE_LAG: i64 = 2 * YEAR;

/// Why a planned visit happens.
#[derive(Debug, Clone, Copy)]
enum Reason {
    /// Routine check-up (chronic diagnoses are attached to it when planned).
    Checkup,
    /// An acute problem.
    Acute(&'static Disorder),
    /// Follow-up of the chronic condition at this position in the plan.
    FollowUp(usize),
}

#[derive(Debug, Clone, Copy)]
struct PlannedVisit {
    start: i64,
    kind: VisitKind,
    reason: Reason,
}

/// A chronic condition in the plan: what, and at which planned visit it is diagnosed.
#[derive(Debug)]
struct Chronic {
    disorder: &'static Disorder,
    diagnosed_at: i64,
    /// Set once the diagnosing visit is written.
    condition: Option<Ref>,
    /// Positions in `record.medication_requests` of its prescriptions, oldest first.
    prescriptions: Vec<usize>,
}

/// Where and with whom a visit happens, once written.
#[derive(Debug, Clone, Copy)]
struct Visit {
    encounter: Ref,
    kind: VisitKind,
    start: i64,
    end: i64,
    organization: u64,
    location: u64,
    practitioner: u64,
}

/// Writes the clinical history of `profile` into `record`, drawing from `rng`.
pub fn history(
    seed: u64,
    directory: &Directory,
    profile: &Profile,
    rng: &mut SynthRng,
    record: &mut PatientRecord,
) {
    let mut writer = HistoryWriter {
        seed,
        directory,
        profile,
        rng,
        record,
        ordinals: [0; ResourceKind::ALL.len()],
        chronic: Vec::new(),
        home_site: 0,
    };
    writer.run();
}

struct HistoryWriter<'a> {
    seed: u64,
    directory: &'a Directory,
    profile: &'a Profile,
    rng: &'a mut SynthRng,
    record: &'a mut PatientRecord,
    /// Next ordinal per resource kind: the id counter.
    ordinals: [u64; ResourceKind::ALL.len()],
    chronic: Vec<Chronic>,
    /// Which of the home organization's sites the patient goes to.
    home_site: u64,
}

impl HistoryWriter<'_> {
    fn run(&mut self) {
        self.home_site = if self.directory.is_hospital(self.profile.organization) {
            2 // hospitals see outpatients at their clinic
        } else {
            self.rng.gen_range(0..3)
        };
        let mut plan = self.plan();
        plan.sort_by_key(|v| v.start);
        for (position, planned) in plan.iter().enumerate() {
            let visit = self.encounter(planned);
            if position == 0 {
                self.allergies(&visit);
            }
            match planned.reason {
                Reason::Checkup => self.checkup(&visit),
                Reason::Acute(disorder) => self.acute(&visit, disorder),
                Reason::FollowUp(c) => self.follow_up(&visit, c),
            }
        }
        self.settle_prescriptions();
    }

    /// Chooses the visits of the record window.
    fn plan(&mut self) -> Vec<PlannedVisit> {
        let (start, end) = self.profile.window();
        // Leave room after the last visit for a hospital stay and its results.
        let last_start = (end - 8 * DAY).max(start + 1);
        // How much of their care this record holds: most patients are seen here now and
        // then, a few much more often (a long tail of heavy records, as in real EHRs).
        let engagement = *pick(self.rng, &[0.5, 0.5, 0.7, 1.0, 1.0, 1.5, 2.5]);
        let mut plan = Vec::new();

        let mut t = start + self.rng.gen_range(0..YEAR.min(last_start - start));
        while t < last_start {
            plan.push(PlannedVisit {
                start: self.office_hours(t),
                kind: VisitKind::Wellness,
                reason: Reason::Checkup,
            });
            let gap = self.rng.gen_range(3.0..9.0) / engagement;
            t += (gap * YEAR as f64) as i64;
        }

        let years = (last_start - start) as f64 / YEAR as f64;
        let acute_visits = (0..years.ceil() as u32)
            .filter(|_| self.rng.gen_bool((0.08 * engagement).min(1.0)))
            .count();
        for _ in 0..acute_visits {
            let t = self.rng.gen_range(start..last_start);
            let covid_era = t >= unix_seconds(2020, 3, 1);
            let disorder = if covid_era && self.rng.gen_bool(0.15) {
                &codes::COVID19
            } else {
                pick(self.rng, codes::ACUTE)
            };
            if self.profile.age_at(t) < disorder.min_age {
                continue;
            }
            let kind = if disorder
                .procedure
                .is_some_and(|p| p.code == codes::APPENDECTOMY.code)
            {
                VisitKind::Inpatient // appendicitis means surgery
            } else if self.rng.gen_bool(0.15) {
                VisitKind::Emergency
            } else if self.rng.gen_bool(0.1) {
                VisitKind::Telehealth
            } else {
                VisitKind::Symptom
            };
            let start = match kind {
                VisitKind::Emergency | VisitKind::Inpatient => t,
                _ => self.office_hours(t),
            };
            plan.push(PlannedVisit {
                start,
                kind,
                reason: Reason::Acute(disorder),
            });
        }

        // Chronic conditions are found at check-ups, more often in older patients, and
        // bring follow-ups.
        let checkups: Vec<i64> = plan
            .iter()
            .filter(|v| matches!(v.reason, Reason::Checkup))
            .map(|v| v.start)
            .collect();
        for disorder in codes::CHRONIC {
            let eligible: Vec<i64> = checkups
                .iter()
                .copied()
                .filter(|&t| self.profile.age_at(t) >= disorder.min_age)
                .collect();
            let Some(&last) = eligible.last() else {
                continue;
            };
            let age = self.profile.age_at(last);
            let common = [
                codes::DIABETES.code,
                codes::HYPERTENSION.code,
                codes::HYPERLIPIDEMIA.code,
            ]
            .contains(&disorder.code);
            let p = match (common, age) {
                (true, 45..) => 0.22,
                (true, _) => 0.06,
                (false, 60..) => 0.06,
                (false, _) => 0.03,
            };
            if !self.rng.gen_bool(p) {
                continue;
            }
            let diagnosed_at = *pick(self.rng, &eligible);
            let c = self.chronic.len();
            self.chronic.push(Chronic {
                disorder,
                diagnosed_at,
                condition: None,
                prescriptions: Vec::new(),
            });
            let follow_ups = self.rng.gen_range(0..=((2.0 * engagement) as u32).max(1));
            for _ in 0..follow_ups {
                if last_start - diagnosed_at < 30 * DAY {
                    break;
                }
                let t = self.rng.gen_range(diagnosed_at + 30 * DAY..last_start);
                let kind = if self.rng.gen_bool(0.25) {
                    VisitKind::Telehealth
                } else {
                    VisitKind::FollowUp
                };
                plan.push(PlannedVisit {
                    start: self.office_hours(t),
                    kind,
                    reason: Reason::FollowUp(c),
                });
            }
        }
        plan
    }

    /// Moves `t` to a random time between 08:00 and 17:00 local time, on its day or, so
    /// as never to go back before `t` (and out of the window), on the next.
    fn office_hours(&mut self, t: i64) -> i64 {
        let offset = i64::from(self.profile.offset_minutes) * MINUTE;
        let local_day = (t + offset).div_euclid(DAY) * DAY;
        let minutes = self.rng.gen_range(8 * 60..17 * 60) / 5 * 5;
        let candidate = local_day + minutes * MINUTE - offset;
        if candidate < t {
            candidate + DAY
        } else {
            candidate
        }
    }

    fn next_ref(&mut self, kind: ResourceKind) -> Ref {
        let ordinal = &mut self.ordinals[kind.index()];
        let r = Ref::derive(self.seed, kind, self.profile.index, *ordinal);
        *ordinal += 1;
        r
    }

    /// `meta` for a resource about something that happened at `t`: last updated at `t` or
    /// up to two years later (corrections, status changes), never after the record ends.
    fn meta_after(&mut self, t: i64) -> Meta {
        let from = t.min(RECORD_END - 1) * 1000;
        let to = (t + UPDATE_LAG).min(RECORD_END) * 1000;
        Meta {
            last_updated: Instant {
                unix_millis: self.rng.gen_range(from..to.max(from + 1)),
            },
        }
    }

    fn patient(&self) -> Reference {
        self.profile.reference.into()
    }

    fn encounter(&mut self, planned: &PlannedVisit) -> Visit {
        let d = self.directory;
        let home = self.profile.organization;
        let (organization, site, practitioner) = match planned.kind {
            VisitKind::Emergency | VisitKind::Inpatient => {
                let hospital = if d.is_hospital(home) && self.rng.gen_bool(0.7) {
                    home
                } else {
                    d.any_hospital(self.rng)
                };
                let site = if planned.kind == VisitKind::Emergency {
                    1
                } else {
                    0
                };
                (hospital, site, d.practitioner_of(hospital, self.rng))
            }
            _ => {
                let practitioner = if self.rng.gen_bool(0.8) {
                    self.profile.practitioner
                } else {
                    d.practitioner_of(home, self.rng)
                };
                (home, self.home_site, practitioner)
            }
        };
        let length = match planned.kind {
            VisitKind::Wellness => self.rng.gen_range(20..50) * MINUTE,
            VisitKind::Symptom | VisitKind::FollowUp => self.rng.gen_range(15..35) * MINUTE,
            VisitKind::Telehealth => self.rng.gen_range(10..25) * MINUTE,
            VisitKind::Emergency => self.rng.gen_range(60..360) * MINUTE,
            VisitKind::Inpatient => {
                self.rng.gen_range(1..6) * DAY + self.rng.gen_range(0..12) * HOUR
            }
        };
        let visit = Visit {
            encounter: self.next_ref(ResourceKind::Encounter),
            kind: planned.kind,
            start: planned.start,
            end: planned.start + length,
            organization,
            location: d.location_of(organization, site),
            practitioner,
        };
        let reason_code = match planned.reason {
            Reason::Checkup => None,
            Reason::Acute(disorder) => Some([concept(disorder.code, disorder.display)]),
            Reason::FollowUp(c) => {
                let disorder = self.chronic[c].disorder;
                Some([concept(disorder.code, disorder.display)])
            }
        };
        let (class_code, class_display) = planned.kind.class();
        let (role, role_display) = match planned.kind {
            VisitKind::Emergency | VisitKind::Inpatient => ("ATND", "attender"),
            _ => ("PPRF", "primary performer"),
        };
        let encounter = Encounter {
            id: visit.encounter.id,
            meta: self.meta_after(visit.end),
            status: "finished",
            class: crate::fhir::Coding {
                system: codes::ACT_CODE,
                code: class_code,
                display: class_display,
            },
            kind: [planned.kind.kind()],
            subject: self.patient(),
            participant: [EncounterParticipant {
                kind: [CodeableConcept::coded(
                    codes::PARTICIPATION_TYPE,
                    role,
                    role_display,
                )],
                individual: d.practitioner_ref(practitioner).into(),
            }],
            period: Period {
                start: self.profile.at(visit.start),
                end: Some(self.profile.at(visit.end)),
            },
            reason_code,
            location: [EncounterLocation {
                location: d.location_ref(visit.location).into(),
            }],
            service_provider: d.organization_ref(organization).into(),
        };
        self.record.encounters.push(encounter);
        visit
    }

    fn checkup(&mut self, visit: &Visit) {
        let age = self.profile.age_at(visit.start);
        self.vital_signs(visit, VitalSet::Full, false);

        // Chronic conditions planned for this check-up.
        let found: Vec<usize> = (0..self.chronic.len())
            .filter(|&c| self.chronic[c].diagnosed_at == visit.start)
            .collect();
        for c in found {
            let disorder = self.chronic[c].disorder;
            let condition = self.condition(visit, disorder, true);
            self.chronic[c].condition = Some(condition);
            if let Some(medication) = disorder.medication {
                let position = self.prescribe(visit, &medication, Some(condition));
                self.chronic[c].prescriptions.push(position);
            }
            if let Some(procedure) = disorder.procedure
                && self.rng.gen_bool(0.5)
            {
                self.procedure(visit, &procedure, Some(condition));
            }
        }

        if age >= 18 {
            for panel in [codes::CBC, codes::BMP, codes::LIPIDS] {
                if self.rng.gen_bool(0.18) {
                    self.lab_panel(visit, &panel);
                }
            }
            if self.rng.gen_bool(0.3) {
                let screening = *pick(self.rng, codes::SCREENINGS);
                self.procedure(visit, &screening, None);
            }
            if age >= 50 && self.rng.gen_bool(0.05) {
                self.procedure(visit, &codes::COLONOSCOPY, None);
            }
        } else if self.rng.gen_bool(0.1) {
            self.lab_panel(visit, &codes::CBC);
        }
        if self
            .chronic
            .iter()
            .any(|c| c.diagnosed_at <= visit.start && !c.prescriptions.is_empty())
            && self.rng.gen_bool(0.6)
        {
            self.procedure(visit, &codes::MEDICATION_RECONCILIATION, None);
        }
        self.vaccinate(visit, age);
    }

    fn acute(&mut self, visit: &Visit, disorder: &'static Disorder) {
        let fever = !codes::AFEBRILE.contains(&disorder.code);
        match visit.kind {
            VisitKind::Telehealth => {}
            VisitKind::Emergency | VisitKind::Inpatient => {
                self.vital_signs(visit, VitalSet::Brief, fever);
                if visit.kind == VisitKind::Inpatient || self.rng.gen_bool(0.4) {
                    self.lab_panel(visit, &codes::CBC);
                }
                if visit.kind == VisitKind::Inpatient || self.rng.gen_bool(0.4) {
                    self.lab_panel(visit, &codes::BMP);
                }
            }
            _ => {
                let febrile = fever && self.rng.gen_bool(0.6);
                self.vital_signs(visit, VitalSet::Brief, febrile);
            }
        }
        let condition = self.condition(visit, disorder, false);
        if let Some(procedure) = disorder.procedure
            && (visit.kind == VisitKind::Inpatient || self.rng.gen_bool(0.6))
        {
            self.procedure(visit, &procedure, Some(condition));
        }
        if let Some(medication) = disorder.medication
            && self.rng.gen_bool(0.8)
        {
            self.prescribe(visit, &medication, Some(condition));
        }
    }

    fn follow_up(&mut self, visit: &Visit, c: usize) {
        let disorder = self.chronic[c].disorder;
        if visit.kind != VisitKind::Telehealth {
            self.vital_signs(visit, VitalSet::FollowUp, false);
            let is = |d: &Disorder| d.code == disorder.code;
            let panels: &[(LabPanel, f64)] = if is(&codes::DIABETES) {
                &[(codes::HBA1C_PANEL, 0.9), (codes::BMP, 0.3)]
            } else if is(&codes::PREDIABETES) {
                &[(codes::HBA1C_PANEL, 0.7)]
            } else if is(&codes::HYPERLIPIDEMIA) {
                &[(codes::LIPIDS, 0.8)]
            } else if is(&codes::HYPERTENSION) {
                &[(codes::BMP, 0.5)]
            } else if is(&codes::ANEMIA) {
                &[(codes::CBC, 0.8)]
            } else {
                &[]
            };
            for (panel, p) in panels {
                if self.rng.gen_bool(*p) {
                    self.lab_panel(visit, panel);
                }
            }
        }
        // A renewal, linked to the condition found earlier (the diagnosing check-up always
        // comes first, as follow-ups are planned at least 30 days after it).
        if let (Some(medication), Some(condition)) =
            (disorder.medication, self.chronic[c].condition)
            && self.rng.gen_bool(0.7)
        {
            let position = self.prescribe(visit, &medication, Some(condition));
            self.chronic[c].prescriptions.push(position);
        }
    }

    /// Final prescription statuses, known only once the whole history is written: the
    /// latest prescription of a chronic drug is still active (unless stopped, paused or the
    /// patient died), the earlier ones completed or, when switched, stopped.
    fn settle_prescriptions(&mut self) {
        let died = self.profile.death.is_some();
        for c in 0..self.chronic.len() {
            let prescriptions = std::mem::take(&mut self.chronic[c].prescriptions);
            for (n, &position) in prescriptions.iter().enumerate() {
                let latest = n + 1 == prescriptions.len();
                let status = match (latest, self.rng.gen_range(0..100)) {
                    (true, _) if died => "stopped",
                    (true, 0..80) => "active",
                    (true, 80..95) => "stopped",
                    (true, _) => "on-hold",
                    (false, 0..88) => "completed",
                    (false, _) => "stopped",
                };
                self.record.medication_requests[position].status = status;
            }
        }
    }

    fn condition(&mut self, visit: &Visit, disorder: &'static Disorder, chronic: bool) -> Ref {
        let reference = self.next_ref(ResourceKind::Condition);
        let birth = self.profile.birth_day * DAY;
        let onset = if chronic {
            (visit.start - self.rng.gen_range(0..YEAR)).max(birth)
        } else {
            (visit.start - self.rng.gen_range(HOUR..7 * DAY)).max(birth)
        };
        let (_, end) = self.profile.window();
        let resolved = if chronic {
            let remits = codes::REMITTING.contains(&disorder.code);
            (remits && self.rng.gen_bool(0.25))
                .then(|| visit.start + self.rng.gen_range(180..720) * DAY)
                .filter(|&t| t < end)
        } else {
            Some(visit.end + self.rng.gen_range(5..30) * DAY).filter(|&t| t < end)
        };
        let (status, status_display) = match (resolved, chronic) {
            (Some(_), true) => ("remission", "Remission"),
            (Some(_), false) => ("resolved", "Resolved"),
            (None, _) => ("active", "Active"),
        };
        let (category, category_display) = if chronic {
            ("problem-list-item", "Problem List Item")
        } else {
            ("encounter-diagnosis", "Encounter Diagnosis")
        };
        let condition = Condition {
            id: reference.id,
            meta: self.meta_after(resolved.unwrap_or(visit.end)),
            clinical_status: CodeableConcept::bare(
                codes::CONDITION_CLINICAL,
                status,
                status_display,
            ),
            verification_status: CodeableConcept::bare(
                codes::CONDITION_VERIFICATION,
                "confirmed",
                "Confirmed",
            ),
            category: [CodeableConcept::bare(
                codes::CONDITION_CATEGORY,
                category,
                category_display,
            )],
            code: concept(disorder.code, disorder.display),
            subject: self.patient(),
            encounter: visit.encounter.into(),
            onset_date_time: self.profile.at(onset),
            abatement_date_time: resolved.map(|t| self.profile.at(t)),
            recorded_date: self.profile.at(visit.start),
        };
        self.record.conditions.push(condition);
        reference
    }

    /// Writes a prescription and returns its position in the record.
    fn prescribe(&mut self, visit: &Visit, medication: &Medication, reason: Option<Ref>) -> usize {
        let reference = self.next_ref(ResourceKind::MedicationRequest);
        let minutes = ((visit.end - visit.start) / MINUTE).max(6);
        let authored = visit.start + self.rng.gen_range(5..minutes) * MINUTE;
        let request = MedicationRequest {
            id: reference.id,
            meta: self.meta_after(authored),
            // Acute prescriptions run their course; chronic ones are settled at the end.
            status: if self.rng.gen_bool(0.9) {
                "completed"
            } else {
                "stopped"
            },
            intent: "order",
            medication_codeable_concept: CodeableConcept::coded(
                codes::RXNORM,
                medication.code,
                medication.display,
            ),
            subject: self.patient(),
            encounter: visit.encounter.into(),
            authored_on: self.profile.at(authored.min(visit.end)),
            requester: self.directory.practitioner_ref(visit.practitioner).into(),
            reason_reference: reason.map(|r| [r.into()]),
            dosage_instruction: [Dosage {
                sequence: 1,
                text: medication.sig,
                timing: Timing {
                    repeat: TimingRepeat {
                        frequency: medication.per_day,
                        period: 1,
                        period_unit: "d",
                    },
                },
                as_needed_boolean: medication.as_needed,
            }],
        };
        self.record.medication_requests.push(request);
        self.record.medication_requests.len() - 1
    }

    fn procedure(&mut self, visit: &Visit, procedure: &ProcedureCode, reason: Option<Ref>) {
        let reference = self.next_ref(ResourceKind::Procedure);
        let latest_start = (visit.end - visit.start - procedure.minutes * MINUTE).max(1);
        let start = visit.start + self.rng.gen_range(0..latest_start);
        let end = start + procedure.minutes * MINUTE;
        let record = Procedure {
            id: reference.id,
            meta: self.meta_after(end),
            status: "completed",
            code: concept(procedure.code, procedure.display),
            subject: self.patient(),
            encounter: visit.encounter.into(),
            performed_period: Period {
                start: self.profile.at(start),
                end: Some(self.profile.at(end)),
            },
            performer: [ProcedurePerformer {
                actor: self.directory.practitioner_ref(visit.practitioner).into(),
            }],
            location: self.directory.location_ref(visit.location).into(),
            reason_reference: reason.map(|r| [r.into()]),
        };
        self.record.procedures.push(record);
    }

    fn vaccinate(&mut self, visit: &Visit, age: u32) {
        let old_enough_for_flu = visit.start - self.profile.birth_day * DAY >= 183 * DAY;
        let mut given = Vec::new();
        if old_enough_for_flu && self.rng.gen_bool(0.55) {
            given.push(codes::FLU);
        }
        let year = civil_from_days(visit.start.div_euclid(DAY)).0;
        let due: Vec<codes::Vaccine> = codes::VACCINES
            .iter()
            .copied()
            .filter(|v| (v.min_age..=v.max_age).contains(&age) && year >= v.from_year)
            .collect();
        // Children get shots at most check-ups; adults now and then.
        let p = if age < 18 { 0.8 } else { 0.25 };
        if !due.is_empty() && self.rng.gen_bool(p) {
            given.push(*pick(self.rng, &due));
        }
        for vaccine in given {
            let reference = self.next_ref(ResourceKind::Immunization);
            let when = visit.start + self.rng.gen_range(0..(visit.end - visit.start).max(1));
            let lot = format!(
                "{}{}{:05}",
                char::from(b'A' + self.rng.gen_range(0..26)),
                char::from(b'A' + self.rng.gen_range(0..26)),
                self.rng.gen_range(0..100_000)
            );
            let immunization = Immunization {
                id: reference.id,
                meta: self.meta_after(when),
                status: "completed",
                vaccine_code: CodeableConcept::coded(codes::CVX, vaccine.code, vaccine.display),
                patient: self.patient(),
                encounter: visit.encounter.into(),
                occurrence_date_time: self.profile.at(when),
                primary_source: true,
                location: self.directory.location_ref(visit.location).into(),
                lot_number: lot,
            };
            self.record.immunizations.push(immunization);
        }
    }

    fn allergies(&mut self, visit: &Visit) {
        let count = match self.rng.gen_range(0..100) {
            0..75 => 0,
            75..95 => 1,
            _ => 2,
        };
        let mut chosen: Vec<&codes::Allergy> = Vec::new();
        for _ in 0..count {
            let allergy = pick(self.rng, codes::ALLERGIES);
            if chosen.iter().any(|a| a.code == allergy.code) {
                continue;
            }
            chosen.push(allergy);
            let reference = self.next_ref(ResourceKind::AllergyIntolerance);
            let confirmed = self.rng.gen_bool(0.85);
            let reaction = self.rng.gen_bool(0.6).then(|| {
                [AllergyReaction {
                    manifestation: [*pick(self.rng, codes::REACTIONS)],
                    severity: ["mild", "moderate", "severe"][self.rng.gen_range(0..3)],
                }]
            });
            let resource = AllergyIntolerance {
                id: reference.id,
                meta: self.meta_after(visit.start),
                clinical_status: CodeableConcept::bare(codes::ALLERGY_CLINICAL, "active", "Active"),
                verification_status: if confirmed {
                    CodeableConcept::bare(codes::ALLERGY_VERIFICATION, "confirmed", "Confirmed")
                } else {
                    CodeableConcept::bare(codes::ALLERGY_VERIFICATION, "unconfirmed", "Unconfirmed")
                },
                kind: "allergy",
                category: [allergy.category],
                criticality: if allergy.code == codes::PEANUT_ALLERGY || self.rng.gen_bool(0.2) {
                    "high"
                } else {
                    "low"
                },
                code: concept(allergy.code, allergy.display),
                patient: self.patient(),
                encounter: visit.encounter.into(),
                recorded_date: self.profile.at(visit.start),
                recorder: self.directory.practitioner_ref(visit.practitioner).into(),
                reaction,
            };
            self.record.allergies.push(resource);
        }
    }

    /// Whether chronic disorder `code` affects values at `t`: from a year before its
    /// diagnosis (that is why it was diagnosed) on.
    fn affected_by(&self, code: &str, t: i64) -> bool {
        self.chronic
            .iter()
            .any(|c| c.disorder.code == code && t >= c.diagnosed_at - YEAR)
    }

    fn vital_signs(&mut self, visit: &Visit, set: VitalSet, fever: bool) {
        let t = visit.start + self.rng.gen_range(2..10) * MINUTE;
        let age = self.profile.age_at(t);
        let hypertensive = self.affected_by(codes::HYPERTENSION.code, t);

        let (height, weight, bmi) = self.body_size(age);
        let heart_rate = if age < 12 {
            gauss(self.rng, 100.0, 12.0, 60.0, 160.0)
        } else {
            gauss(self.rng, 74.0, 9.0, 45.0, 130.0) + if fever { 12.0 } else { 0.0 }
        };
        let temperature = if fever {
            gauss(self.rng, 38.4, 0.5, 37.5, 40.5)
        } else {
            gauss(self.rng, 36.8, 0.25, 35.8, 37.6)
        };
        let systolic_mean =
            108.0 + f64::from(age.min(80)) * 0.35 + if hypertensive { 22.0 } else { 0.0 };
        let systolic = gauss(self.rng, systolic_mean, 9.0, 80.0, 200.0);
        let diastolic = gauss(self.rng, systolic * 0.62, 5.0, 45.0, 120.0);
        let respiratory = gauss(
            self.rng,
            if age < 12 { 22.0 } else { 15.0 },
            2.0,
            10.0,
            40.0,
        );
        let copd = self.affected_by(codes::COPD.code, t);
        let saturation = gauss(self.rng, if copd { 93.0 } else { 97.5 }, 1.2, 85.0, 100.0);

        let mut taken: Vec<(Measure, f64)> = Vec::with_capacity(7);
        match set {
            VitalSet::Full => {
                taken.extend([
                    (codes::BODY_HEIGHT, height),
                    (codes::BODY_WEIGHT, weight),
                    (codes::BMI, bmi),
                    (codes::HEART_RATE, heart_rate),
                    (codes::RESPIRATORY_RATE, respiratory),
                    (codes::BODY_TEMPERATURE, temperature),
                    (codes::OXYGEN_SATURATION, saturation),
                ]);
            }
            VitalSet::Brief => taken.extend([
                (codes::HEART_RATE, heart_rate),
                (codes::BODY_TEMPERATURE, temperature),
                (codes::OXYGEN_SATURATION, saturation),
            ]),
            VitalSet::FollowUp => taken.extend([
                (codes::BODY_WEIGHT, weight),
                (codes::HEART_RATE, heart_rate),
            ]),
        }
        for (measure, value) in taken {
            self.observation(
                visit,
                t,
                codes::VITAL_SIGNS,
                concept_loinc(&measure),
                Some(quantity(&measure, value)),
                None,
                Vec::new(),
            );
        }
        // Blood pressure is recorded at every visit with vitals, as a panel of components.
        self.observation(
            visit,
            t,
            codes::VITAL_SIGNS,
            codes::BLOOD_PRESSURE_PANEL,
            None,
            None,
            vec![
                ObservationComponent {
                    code: concept_loinc(&codes::SYSTOLIC),
                    value_quantity: quantity(&codes::SYSTOLIC, systolic),
                },
                ObservationComponent {
                    code: concept_loinc(&codes::DIASTOLIC),
                    value_quantity: quantity(&codes::DIASTOLIC, diastolic),
                },
            ],
        );
    }

    /// Height, weight and BMI at `age`: children grow towards the adult height, and BMI
    /// rises from about 16 to the adult value through adolescence.
    fn body_size(&mut self, age: u32) -> (f64, f64, f64) {
        let growth = match age {
            0 => 0.42,
            1..=2 => 0.50 + 0.04 * f64::from(age),
            3..=17 => 0.58 + 0.42 * f64::from(age - 3) / 15.0,
            _ => 1.0,
        };
        let height = self.profile.adult_height * growth;
        let bmi_target = if age >= 18 {
            self.profile.bmi
        } else {
            16.0 + (self.profile.bmi - 16.0) * f64::from(age) / 18.0 * 0.6
        };
        let bmi = bmi_target * gauss(self.rng, 1.0, 0.02, 0.9, 1.1);
        // Round height and weight first so that the BMI we write is the one they give.
        let height = Decimal::round(height, 1).as_f64();
        let weight = Decimal::round(bmi * (height / 100.0).powi(2), 1).as_f64();
        (height, weight, weight / (height / 100.0).powi(2))
    }

    fn lab_panel(&mut self, visit: &Visit, panel: &LabPanel) {
        let minutes = ((visit.end - visit.start) / MINUTE).max(6);
        let collected = visit.start + self.rng.gen_range(5..minutes) * MINUTE;
        let results: Vec<Reference> = panel
            .tests
            .iter()
            .map(|measure| {
                let value = self.lab_value(measure, collected);
                let value = quantity(measure, value);
                let flag = if value.value.as_f64() > measure.high {
                    ("H", "High")
                } else if value.value.as_f64() < measure.low {
                    ("L", "Low")
                } else {
                    ("N", "Normal")
                };
                let range = ReferenceRange {
                    low: quantity(measure, measure.low),
                    high: quantity(measure, measure.high),
                };
                let interpretation = CodeableConcept::bare(codes::INTERPRETATION, flag.0, flag.1);
                self.observation(
                    visit,
                    collected,
                    codes::LABORATORY,
                    concept_loinc(measure),
                    Some(value),
                    Some((interpretation, range)),
                    Vec::new(),
                )
                .into()
            })
            .collect();
        let reference = self.next_ref(ResourceKind::DiagnosticReport);
        let issued = lab_issued(self.rng, collected);
        let report = DiagnosticReport {
            id: reference.id,
            meta: self.meta_after(issued / 1000),
            status: "final",
            category: [codes::LAB_SECTION],
            code: CodeableConcept::coded(codes::LOINC, panel.code, panel.display),
            subject: self.patient(),
            encounter: visit.encounter.into(),
            effective_date_time: self.profile.at(collected),
            issued: Instant {
                unix_millis: issued,
            },
            performer: [self.directory.organization_ref(visit.organization).into()],
            result: results,
        };
        self.record.reports.push(report);
    }

    /// A lab value for `measure` at `t`, shifted by the patient's conditions.
    fn lab_value(&mut self, measure: &Measure, t: i64) -> f64 {
        let diabetic = self.affected_by(codes::DIABETES.code, t);
        let prediabetic = self.affected_by(codes::PREDIABETES.code, t);
        let lipids = self.affected_by(codes::HYPERLIPIDEMIA.code, t);
        let anemic = self.affected_by(codes::ANEMIA.code, t);
        let (mean, sd) = match measure.code {
            "2339-0" if diabetic => (155.0, 35.0),
            "2339-0" if prediabetic => (112.0, 8.0),
            "4548-4" if diabetic => (7.8, 1.1),
            "4548-4" if prediabetic => (6.0, 0.2),
            "2093-3" if lipids => (240.0, 25.0),
            "18262-6" if lipids => (165.0, 20.0),
            "718-7" if anemic => (10.4, 0.8),
            "718-7" if self.profile.gender == "male" => (15.0, 1.0),
            "718-7" => (13.4, 1.0),
            _ => (
                (measure.low + measure.high) / 2.0,
                (measure.high - measure.low) / 4.5,
            ),
        };
        let span = measure.high - measure.low;
        gauss(
            self.rng,
            mean,
            sd,
            (measure.low - span).max(0.0),
            measure.high + 3.0 * span,
        )
    }

    #[allow(clippy::too_many_arguments)] // one call site per shape of observation
    fn observation(
        &mut self,
        visit: &Visit,
        t: i64,
        category: CodeableConcept,
        code: CodeableConcept,
        value: Option<Quantity>,
        lab: Option<(CodeableConcept, ReferenceRange)>,
        component: Vec<ObservationComponent>,
    ) -> Ref {
        let reference = self.next_ref(ResourceKind::Observation);
        let (issued, performer) = if lab.is_some() {
            (
                lab_issued(self.rng, t),
                self.directory.organization_ref(visit.organization),
            )
        } else {
            (
                (t + self.rng.gen_range(MINUTE..15 * MINUTE)) * 1000 + self.rng.gen_range(0..1000),
                self.directory.practitioner_ref(visit.practitioner),
            )
        };
        let (interpretation, reference_range) = match lab {
            Some((i, r)) => (Some([i]), Some([r])),
            None => (None, None),
        };
        let observation = Observation {
            id: reference.id,
            meta: self.meta_after(issued / 1000),
            status: "final",
            category: [category],
            code,
            subject: self.patient(),
            encounter: visit.encounter.into(),
            effective_date_time: self.profile.at(t),
            issued: Instant {
                unix_millis: issued,
            },
            performer: [performer.into()],
            value_quantity: value,
            interpretation,
            reference_range,
            component,
        };
        self.record.observations.push(observation);
        reference
    }
}

/// Which vital signs a visit records (blood pressure always).
#[derive(Debug, Clone, Copy)]
enum VitalSet {
    /// Check-up: height, weight, BMI, heart and breathing rate, temperature, SpO2.
    Full,
    /// Sick visit: heart rate, temperature, SpO2.
    Brief,
    /// Chronic follow-up: weight and heart rate.
    FollowUp,
}

/// Labs are released two hours to two days after collection (milliseconds), and never
/// after the record ends.
fn lab_issued(rng: &mut SynthRng, collected: i64) -> i64 {
    let issued = collected + rng.gen_range(2 * HOUR..48 * HOUR);
    issued.min(RECORD_END - 1) * 1000 + rng.gen_range(0..1000)
}

fn concept(code: &'static str, display: &'static str) -> CodeableConcept {
    CodeableConcept::coded(codes::SNOMED, code, display)
}

fn concept_loinc(measure: &Measure) -> CodeableConcept {
    CodeableConcept::coded(codes::LOINC, measure.code, measure.display)
}

fn quantity(measure: &Measure, value: f64) -> Quantity {
    Quantity {
        value: Decimal::round(value, measure.places),
        unit: measure.unit,
        system: codes::UCUM,
        code: measure.unit,
    }
}
