//! Terminology: code systems and the real codes the generator draws from.
//!
//! All codes are genuine LOINC, SNOMED CT, RxNorm and CVX codes with their usual displays
//! (mostly those that Synthea's US Core data uses), so that data loaded from this generator
//! looks like an EHR export to anyone who filters on codes (`_typeFilter`, analytics).
//! Ranges on measures are adult reference ranges; they drive both the values we draw and
//! the `H`/`L`/`N` interpretation we write.

use crate::fhir::CodeableConcept;

/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// SNOMED CT.
pub const SNOMED: &str = "http://snomed.info/sct";
/// RxNorm.
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
/// CDC vaccine codes.
pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";
/// UCUM units.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// US National Provider Identifier.
pub const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
/// US Social Security number.
pub const SSN: &str = "http://hl7.org/fhir/sid/us-ssn";
/// Our own medical record numbers (`.example` is reserved, so this never names a real site).
pub const MRN: &str = "https://synth.fhir-bulk.example/identifiers/mrn";
/// Observation category.
pub const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
/// Observation interpretation.
pub const INTERPRETATION: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation";
/// Condition clinical status.
pub const CONDITION_CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
/// Condition verification status.
pub const CONDITION_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/condition-ver-status";
/// Condition category.
pub const CONDITION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";
/// AllergyIntolerance clinical status.
pub const ALLERGY_CLINICAL: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
/// AllergyIntolerance verification status.
pub const ALLERGY_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
/// Encounter class.
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// Encounter participant type.
pub const PARTICIPATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
/// Diagnostic service section (DiagnosticReport category).
pub const DIAGNOSTIC_SERVICE: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
/// Identifier type.
pub const IDENTIFIER_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
/// Marital status.
pub const MARITAL_STATUS: &str = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus";
/// Languages.
pub const BCP47: &str = "urn:ietf:bcp:47";
/// Organization type.
pub const ORGANIZATION_TYPE: &str = "http://terminology.hl7.org/CodeSystem/organization-type";
/// Service delivery location role.
pub const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
/// Location physical type.
pub const LOCATION_PHYSICAL_TYPE: &str =
    "http://terminology.hl7.org/CodeSystem/location-physical-type";

/// `vital-signs` observation category.
pub const VITAL_SIGNS: CodeableConcept =
    CodeableConcept::bare(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs");
/// `laboratory` observation category.
pub const LABORATORY: CodeableConcept =
    CodeableConcept::bare(OBSERVATION_CATEGORY, "laboratory", "Laboratory");
/// `LAB` diagnostic service section.
pub const LAB_SECTION: CodeableConcept =
    CodeableConcept::bare(DIAGNOSTIC_SERVICE, "LAB", "Laboratory");

/// Something measured, with its LOINC code, UCUM unit and normal range.
#[derive(Debug, Clone, Copy)]
pub struct Measure {
    /// LOINC code.
    pub code: &'static str,
    /// LOINC display.
    pub display: &'static str,
    /// UCUM code (also used as the display unit).
    pub unit: &'static str,
    /// Low end of normal.
    pub low: f64,
    /// High end of normal.
    pub high: f64,
    /// Decimals a lab would report.
    pub places: u8,
}

#[rustfmt::skip]
const fn measure(code: &'static str, display: &'static str, unit: &'static str, low: f64, high: f64, places: u8) -> Measure {
    Measure { code, display, unit, low, high, places }
}

// The tables below are laid out one entry per line, as tables; rustfmt would spread each
// entry over a dozen lines.

/// Heart rate.
#[rustfmt::skip]
pub const HEART_RATE: Measure = measure("8867-4", "Heart rate", "/min", 60.0, 100.0, 0);
/// Respiratory rate.
#[rustfmt::skip]
pub const RESPIRATORY_RATE: Measure = measure("9279-1", "Respiratory rate", "/min", 12.0, 20.0, 0);
/// Body temperature.
#[rustfmt::skip]
pub const BODY_TEMPERATURE: Measure = measure("8310-5", "Body temperature", "Cel", 36.1, 37.2, 1);
/// Body weight.
#[rustfmt::skip]
pub const BODY_WEIGHT: Measure = measure("29463-7", "Body weight", "kg", 50.0, 100.0, 1);
/// Body height.
#[rustfmt::skip]
pub const BODY_HEIGHT: Measure = measure("8302-2", "Body height", "cm", 150.0, 195.0, 1);
/// Body mass index.
#[rustfmt::skip]
pub const BMI: Measure = measure("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 18.5, 25.0, 1);
/// Oxygen saturation by pulse oximetry.
#[rustfmt::skip]
pub const OXYGEN_SATURATION: Measure = measure("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", 95.0, 100.0, 0);
/// Blood pressure panel (the value lives in its components).
pub const BLOOD_PRESSURE_PANEL: CodeableConcept = CodeableConcept::coded(
    LOINC,
    "85354-9",
    "Blood pressure panel with all children optional",
);
/// Systolic blood pressure.
#[rustfmt::skip]
pub const SYSTOLIC: Measure = measure("8480-6", "Systolic blood pressure", "mm[Hg]", 90.0, 120.0, 0);
/// Diastolic blood pressure.
#[rustfmt::skip]
pub const DIASTOLIC: Measure = measure("8462-4", "Diastolic blood pressure", "mm[Hg]", 60.0, 80.0, 0);

/// Blood glucose.
#[rustfmt::skip]
pub const GLUCOSE: Measure = measure("2339-0", "Glucose [Mass/volume] in Blood", "mg/dL", 70.0, 99.0, 0);
/// Hemoglobin A1c.
#[rustfmt::skip]
pub const HBA1C: Measure = measure("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", 4.0, 5.6, 1);
/// Hemoglobin.
#[rustfmt::skip]
pub const HEMOGLOBIN: Measure = measure("718-7", "Hemoglobin [Mass/volume] in Blood", "g/dL", 12.0, 17.5, 1);
/// LDL cholesterol.
#[rustfmt::skip]
pub const LDL: Measure = measure("18262-6", "Cholesterol in LDL [Mass/volume] in Serum or Plasma by Direct assay", "mg/dL", 50.0, 130.0, 0);
/// Total cholesterol.
#[rustfmt::skip]
pub const CHOLESTEROL: Measure = measure("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma", "mg/dL", 125.0, 200.0, 0);

/// A lab panel: the DiagnosticReport code and the Observations it results in.
#[derive(Debug, Clone, Copy)]
pub struct LabPanel {
    /// LOINC code of the panel (the report's code).
    pub code: &'static str,
    /// LOINC display of the panel.
    pub display: &'static str,
    /// Its tests, one Observation each.
    pub tests: &'static [Measure],
}

/// Complete blood count.
#[rustfmt::skip]
pub const CBC: LabPanel = LabPanel {
    code: "58410-2",
    display: "CBC panel - Blood by Automated count",
    tests: &[
        measure("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "10*3/uL", 4.5, 11.0, 1),
        measure("789-8", "Erythrocytes [#/volume] in Blood by Automated count", "10*6/uL", 4.2, 5.9, 2),
        HEMOGLOBIN,
        measure("4544-3", "Hematocrit [Volume Fraction] of Blood by Automated count", "%", 36.0, 50.0, 1),
        measure("777-3", "Platelets [#/volume] in Blood by Automated count", "10*3/uL", 150.0, 400.0, 0),
    ],
};

/// Basic metabolic panel.
#[rustfmt::skip]
pub const BMP: LabPanel = LabPanel {
    code: "51990-0",
    display: "Basic metabolic panel - Blood",
    tests: &[
        GLUCOSE,
        measure("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma", "mg/dL", 7.0, 20.0, 0),
        measure("2160-0", "Creatinine [Mass/volume] in Serum or Plasma", "mg/dL", 0.6, 1.3, 2),
        measure("17861-6", "Calcium [Mass/volume] in Serum or Plasma", "mg/dL", 8.5, 10.2, 1),
        measure("2951-2", "Sodium [Moles/volume] in Serum or Plasma", "mmol/L", 135.0, 145.0, 0),
        measure("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "mmol/L", 3.5, 5.1, 1),
    ],
};

/// Lipid panel.
#[rustfmt::skip]
pub const LIPIDS: LabPanel = LabPanel {
    code: "57698-3",
    display: "Lipid panel with direct LDL - Serum or Plasma",
    tests: &[
        CHOLESTEROL,
        measure("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma", "mg/dL", 40.0, 150.0, 0),
        measure("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma", "mg/dL", 40.0, 80.0, 0),
        LDL,
    ],
};

/// HbA1c on its own (diabetes follow-up); the report carries the test's own code.
pub const HBA1C_PANEL: LabPanel = LabPanel {
    code: "4548-4",
    display: "Hemoglobin A1c/Hemoglobin.total in Blood",
    tests: &[HBA1C],
};

/// The kinds of visit, each with its class and SNOMED type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitKind {
    /// Yearly check-up: full vitals, screening labs, vaccines.
    Wellness,
    /// Sick visit for an acute problem.
    Symptom,
    /// Follow-up of a chronic condition.
    FollowUp,
    /// Emergency department.
    Emergency,
    /// Hospital stay of days.
    Inpatient,
    /// Video visit: no vitals taken.
    Telehealth,
}

impl VisitKind {
    /// `(class code, class display)` in v3-ActCode.
    pub const fn class(self) -> (&'static str, &'static str) {
        match self {
            VisitKind::Wellness | VisitKind::Symptom | VisitKind::FollowUp => ("AMB", "ambulatory"),
            VisitKind::Emergency => ("EMER", "emergency"),
            VisitKind::Inpatient => ("IMP", "inpatient encounter"),
            VisitKind::Telehealth => ("VR", "virtual"),
        }
    }

    /// SNOMED encounter type.
    #[rustfmt::skip]
    pub const fn kind(self) -> CodeableConcept {
        let (code, display) = match self {
            VisitKind::Wellness => ("185349003", "Encounter for check up (procedure)"),
            VisitKind::Symptom => ("185345009", "Encounter for symptom (procedure)"),
            VisitKind::FollowUp => ("390906007", "Follow-up encounter (procedure)"),
            VisitKind::Emergency => ("50849002", "Emergency room admission (procedure)"),
            VisitKind::Inpatient => ("32485007", "Hospital admission (procedure)"),
            VisitKind::Telehealth => ("448337001", "Telemedicine consultation with patient (procedure)"),
        };
        CodeableConcept::coded(SNOMED, code, display)
    }
}

/// A drug (RxNorm clinical drug) and how it is usually taken.
#[derive(Debug, Clone, Copy)]
pub struct Medication {
    /// RxNorm code.
    pub code: &'static str,
    /// RxNorm display.
    pub display: &'static str,
    /// Sig.
    pub sig: &'static str,
    /// Doses a day.
    pub per_day: u32,
    /// Taken as needed.
    pub as_needed: bool,
}

#[rustfmt::skip]
const fn drug(code: &'static str, display: &'static str, sig: &'static str, per_day: u32, as_needed: bool) -> Medication {
    Medication { code, display, sig, per_day, as_needed }
}

/// Acetaminophen, for pain and fever.
#[rustfmt::skip]
const ACETAMINOPHEN: Medication = drug("313782", "Acetaminophen 325 MG Oral Tablet", "Take 2 tablets by mouth every 6 hours as needed for pain or fever", 4, true);

/// A procedure (SNOMED).
#[derive(Debug, Clone, Copy)]
pub struct ProcedureCode {
    /// SNOMED code.
    pub code: &'static str,
    /// SNOMED display.
    pub display: &'static str,
    /// Typical duration in minutes.
    pub minutes: i64,
}

#[rustfmt::skip]
const fn procedure(code: &'static str, display: &'static str, minutes: i64) -> ProcedureCode {
    ProcedureCode { code, display, minutes }
}

/// Spirometry, for lung disease.
const SPIROMETRY: ProcedureCode = procedure("127783003", "Spirometry (procedure)", 20);
/// Appendectomy: an acute disorder treated with it needs a hospital stay.
pub const APPENDECTOMY: ProcedureCode = procedure("80146002", "Appendectomy (procedure)", 60);
/// Medication reconciliation, at check-ups of patients on drugs.
pub const MEDICATION_RECONCILIATION: ProcedureCode =
    procedure("430193006", "Medication reconciliation (procedure)", 15);
/// Screening procedures done at adult check-ups.
#[rustfmt::skip]
pub const SCREENINGS: &[ProcedureCode] = &[
    procedure("171207006", "Depression screening (procedure)", 10),
    procedure("710824005", "Assessment of health and social care needs (procedure)", 15),
];
/// Colonoscopy, for patients of 50 and over.
pub const COLONOSCOPY: ProcedureCode = procedure("73761001", "Colonoscopy (procedure)", 45);

/// A disorder or finding (SNOMED) and how it is treated. Whether it is chronic is given by
/// the table it is in ([`CHRONIC`] or [`ACUTE`]).
#[derive(Debug, Clone, Copy)]
pub struct Disorder {
    /// SNOMED code.
    pub code: &'static str,
    /// SNOMED display.
    pub display: &'static str,
    /// Youngest age (years) at which it is diagnosed.
    pub min_age: u32,
    /// The usual drug, if any.
    pub medication: Option<Medication>,
    /// The usual procedure, if any.
    pub procedure: Option<ProcedureCode>,
}

#[rustfmt::skip]
const fn disorder(
    code: &'static str,
    display: &'static str,
    min_age: u32,
    medication: Option<Medication>,
    procedure: Option<ProcedureCode>,
) -> Disorder {
    Disorder { code, display, min_age, medication, procedure }
}

/// Type 2 diabetes; diabetics get higher glucose and HbA1c.
#[rustfmt::skip]
pub const DIABETES: Disorder = disorder("44054006", "Diabetes mellitus type 2 (disorder)", 30,
    Some(drug("860975", "24 HR Metformin hydrochloride 500 MG Extended Release Oral Tablet", "Take 1 tablet by mouth once daily with the evening meal", 1, false)),
    None);
/// Prediabetes; slightly raised glucose and HbA1c.
pub const PREDIABETES: Disorder = disorder("15777000", "Prediabetes (finding)", 18, None, None);
/// Essential hypertension; hypertensives get higher blood pressure.
#[rustfmt::skip]
pub const HYPERTENSION: Disorder = disorder("59621000", "Essential hypertension (disorder)", 25,
    Some(drug("314076", "lisinopril 10 MG Oral Tablet", "Take 1 tablet by mouth once daily", 1, false)),
    None);
/// Hyperlipidemia; raises cholesterol and LDL.
#[rustfmt::skip]
pub const HYPERLIPIDEMIA: Disorder = disorder("55822004", "Hyperlipidemia (disorder)", 30,
    Some(drug("312961", "Simvastatin 20 MG Oral Tablet", "Take 1 tablet by mouth at bedtime", 1, false)),
    None);
/// COPD; lowers oxygen saturation.
#[rustfmt::skip]
pub const COPD: Disorder = disorder("13645005", "Chronic obstructive lung disease (disorder)", 45,
    Some(drug("895994", "120 ACTUAT Fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler", "Inhale 2 puffs twice daily", 2, false)),
    Some(SPIROMETRY));
/// Anemia; lowers hemoglobin.
pub const ANEMIA: Disorder = disorder("271737000", "Anemia (disorder)", 1, None, None);

/// Chronic conditions, diagnosed at check-ups and followed up.
#[rustfmt::skip]
pub const CHRONIC: &[Disorder] = &[
    DIABETES,
    HYPERTENSION,
    HYPERLIPIDEMIA,
    PREDIABETES,
    COPD,
    ANEMIA,
    disorder("195967001", "Asthma (disorder)", 2,
        Some(drug("745679", "200 ACTUAT Albuterol 0.09 MG/ACTUAT Metered Dose Inhaler", "Inhale 2 puffs every 4 to 6 hours as needed for wheezing", 4, true)),
        Some(SPIROMETRY)),
    disorder("49436004", "Atrial fibrillation (disorder)", 50,
        Some(drug("855332", "Warfarin Sodium 5 MG Oral Tablet", "Take 1 tablet by mouth once daily", 1, false)),
        Some(procedure("29303009", "Electrocardiographic procedure (procedure)", 15))),
    disorder("53741008", "Coronary arteriosclerosis (disorder)", 45,
        Some(drug("309362", "Clopidogrel 75 MG Oral Tablet", "Take 1 tablet by mouth once daily", 1, false)),
        Some(procedure("36969009", "Placement of stent in coronary artery (procedure)", 90))),
    disorder("35489007", "Depressive disorder (disorder)", 12, None, None),
    disorder("162864005", "Body mass index 30+ - obesity (finding)", 18, None, None),
    disorder("40055000", "Chronic sinusitis (disorder)", 10, None, None),
];

/// Chronic conditions that may go into remission.
pub const REMITTING: &[&str] = &["195967001", "35489007", "40055000"];

/// Acute problems: a sick visit, maybe a drug, resolved within weeks.
#[rustfmt::skip]
pub const ACUTE: &[Disorder] = &[
    disorder("195662009", "Acute viral pharyngitis (disorder)", 0, Some(ACETAMINOPHEN), None),
    disorder("43878008", "Streptococcal sore throat (disorder)", 2,
        Some(drug("834061", "Penicillin V Potassium 250 MG Oral Tablet", "Take 1 tablet by mouth four times daily for 10 days", 4, false)),
        Some(procedure("117015009", "Throat culture (procedure)", 10))),
    disorder("10509002", "Acute bronchitis (disorder)", 0, Some(ACETAMINOPHEN),
        Some(procedure("399208008", "Plain chest X-ray (procedure)", 20))),
    disorder("444814009", "Viral sinusitis (disorder)", 0, None, None),
    disorder("65363002", "Otitis media (disorder)", 0,
        Some(drug("308182", "Amoxicillin 250 MG Oral Capsule", "Take 1 capsule by mouth three times daily for 10 days", 3, false)),
        None),
    disorder("68566005", "Urinary tract infectious disease (disorder)", 5, None, None),
    disorder("44465007", "Sprain of ankle (disorder)", 5,
        Some(drug("310965", "Ibuprofen 200 MG Oral Tablet", "Take 1 tablet by mouth every 6 hours as needed for pain", 4, true)),
        None),
    disorder("70704007", "Sprain of wrist (disorder)", 5,
        Some(drug("849574", "Naproxen sodium 220 MG Oral Tablet", "Take 1 tablet by mouth every 12 hours as needed for pain", 2, true)),
        None),
    disorder("62106007", "Concussion with no loss of consciousness (disorder)", 3, None, None),
    disorder("74400008", "Appendicitis (disorder)", 5,
        Some(drug("1049221", "Acetaminophen 325 MG / Oxycodone Hydrochloride 5 MG Oral Tablet", "Take 1 tablet by mouth every 6 hours as needed for severe pain", 4, true)),
        Some(APPENDECTOMY)),
];

/// Acute problems that come without fever (injuries).
pub const AFEBRILE: &[&str] = &["44465007", "70704007", "62106007"];

/// COVID-19, only diagnosed from March 2020 on.
#[rustfmt::skip]
pub const COVID19: Disorder = disorder("840539006", "Disease caused by severe acute respiratory syndrome coronavirus 2 (disorder)", 0,
    Some(ACETAMINOPHEN), None);

/// A vaccine (CVX) and who gets it.
#[derive(Debug, Clone, Copy)]
pub struct Vaccine {
    /// CVX code.
    pub code: &'static str,
    /// CVX short description.
    pub display: &'static str,
    /// Youngest age in years.
    pub min_age: u32,
    /// Oldest age in years.
    pub max_age: u32,
    /// First year it was given (new vaccines).
    pub from_year: i32,
}

#[rustfmt::skip]
const fn vaccine(code: &'static str, display: &'static str, min_age: u32, max_age: u32, from_year: i32) -> Vaccine {
    Vaccine { code, display, min_age, max_age, from_year }
}

/// Seasonal flu: offered at most check-ups.
pub const FLU: Vaccine = vaccine(
    "140",
    "Influenza, seasonal, injectable, preservative free",
    0,
    200,
    1900,
);
/// The schedule beyond flu, by age.
#[rustfmt::skip]
pub const VACCINES: &[Vaccine] = &[
    vaccine("08", "Hep B, adolescent or pediatric", 0, 18, 1900),
    vaccine("20", "DTaP", 0, 6, 1900),
    vaccine("10", "IPV", 0, 6, 1900),
    vaccine("133", "Pneumococcal conjugate PCV 13", 0, 5, 2010),
    vaccine("03", "MMR", 1, 6, 1900),
    vaccine("21", "varicella", 1, 12, 1900),
    vaccine("83", "Hep A, ped/adol, 2 dose", 1, 18, 1900),
    vaccine("62", "HPV, quadrivalent", 9, 26, 1900),
    vaccine("114", "meningococcal MCV4P", 11, 18, 1900),
    vaccine("115", "Tdap", 11, 200, 1900),
    vaccine("113", "Td (adult) preservative free", 19, 200, 1900),
    vaccine("187", "zoster vaccine recombinant", 50, 200, 2018),
    vaccine("33", "pneumococcal polysaccharide vaccine, 23 valent", 65, 200, 1900),
    vaccine("208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose", 12, 200, 2021),
];

/// An allergy (SNOMED finding) and its FHIR category.
#[derive(Debug, Clone, Copy)]
pub struct Allergy {
    /// SNOMED code.
    pub code: &'static str,
    /// SNOMED display.
    pub display: &'static str,
    /// food, medication or environment.
    pub category: &'static str,
}

#[rustfmt::skip]
const fn allergy(code: &'static str, display: &'static str, category: &'static str) -> Allergy {
    Allergy { code, display, category }
}

/// Allergies.
#[rustfmt::skip]
pub const ALLERGIES: &[Allergy] = &[
    allergy("91936005", "Allergy to penicillin (finding)", "medication"),
    allergy("294505008", "Allergy to sulfonamides (finding)", "medication"),
    allergy("91935009", "Allergy to peanuts (finding)", "food"),
    allergy("91930004", "Allergy to eggs (finding)", "food"),
    allergy("300913006", "Shellfish allergy (finding)", "food"),
    allergy("417532002", "Allergy to fish (finding)", "food"),
    allergy("425525006", "Allergy to dairy product (finding)", "food"),
    allergy("418689008", "Allergy to grass pollen (finding)", "environment"),
    allergy("232350006", "House dust mite allergy (finding)", "environment"),
    allergy("232347008", "Dander (animal) allergy (finding)", "environment"),
    allergy("419474003", "Allergy to mould (finding)", "environment"),
    allergy("300916003", "Latex allergy (finding)", "environment"),
];

/// Peanut allergy, always of high criticality.
pub const PEANUT_ALLERGY: &str = "91935009";

/// Allergic reactions (SNOMED).
#[rustfmt::skip]
pub const REACTIONS: &[CodeableConcept] = &[
    CodeableConcept::coded(SNOMED, "247472004", "Wheal (finding)"),
    CodeableConcept::coded(SNOMED, "271807003", "Eruption of skin (disorder)"),
    CodeableConcept::coded(SNOMED, "39579001", "Anaphylaxis (disorder)"),
    CodeableConcept::coded(SNOMED, "49727002", "Cough (finding)"),
    CodeableConcept::coded(SNOMED, "267036007", "Dyspnea (finding)"),
    CodeableConcept::coded(SNOMED, "422587007", "Nausea (finding)"),
    CodeableConcept::coded(SNOMED, "76067001", "Sneezing (finding)"),
];

/// Marital statuses (v3-MaritalStatus); index 1 is "Never Married", used for children.
pub const MARITAL_STATUSES: &[CodeableConcept] = &[
    CodeableConcept::coded(MARITAL_STATUS, "M", "Married"),
    CodeableConcept::coded(MARITAL_STATUS, "S", "Never Married"),
    CodeableConcept::coded(MARITAL_STATUS, "D", "Divorced"),
    CodeableConcept::coded(MARITAL_STATUS, "W", "Widowed"),
];

/// Languages (BCP-47) with US-like weights out of 100.
#[rustfmt::skip]
pub const LANGUAGES: &[(CodeableConcept, u32)] = &[
    (CodeableConcept::coded(BCP47, "en-US", "English (United States)"), 80),
    (CodeableConcept::coded(BCP47, "es", "Spanish"), 13),
    (CodeableConcept::coded(BCP47, "zh", "Chinese"), 3),
    (CodeableConcept::coded(BCP47, "vi", "Vietnamese"), 2),
    (CodeableConcept::coded(BCP47, "de", "German"), 2),
];
