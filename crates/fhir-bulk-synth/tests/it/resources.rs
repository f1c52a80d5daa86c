//! Every resource: well-formed lines, valid unique ids, resolving references, and the
//! content each type promises (codes, categories, statuses, dates).

use crate::dataset::{codings, for_each_reference, is_valid_id, shared};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const UCUM: &str = "http://unitsofmeasure.org";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

const TYPES: [&str; 13] = [
    "AllergyIntolerance",
    "Condition",
    "DiagnosticReport",
    "Encounter",
    "Group",
    "Immunization",
    "Location",
    "MedicationRequest",
    "Observation",
    "Organization",
    "Patient",
    "Practitioner",
    "Procedure",
];

fn parse_time(value: &Value) -> OffsetDateTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    OffsetDateTime::parse(text, &Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn one_file_per_type_each_line_a_resource_of_that_type_with_a_unique_valid_id() {
    let data = shared();
    let names: Vec<String> = TYPES.iter().map(|t| format!("{t}.ndjson")).collect();
    assert_eq!(data.files.keys().cloned().collect::<Vec<_>>(), names);
    for kind in TYPES {
        let resources = data.resources(kind);
        assert!(!resources.is_empty(), "{kind} has resources");
        let mut ids = HashSet::new();
        for r in &resources {
            assert_eq!(r["resourceType"], kind);
            let id = r["id"].as_str().unwrap();
            assert!(is_valid_id(id), "{kind}/{id}");
            assert!(ids.insert(id.to_owned()), "duplicate {kind}/{id}");
        }
    }
    // Compact JSON: a line is exactly what serde_json writes for its value.
    let line = data.files["Patient.ndjson"]
        .split(|&b| b == b'\n')
        .next()
        .unwrap();
    let value: Value = serde_json::from_slice(line).unwrap();
    assert_eq!(serde_json::to_vec(&value).unwrap(), line);
}

#[test]
fn every_reference_is_relative_and_resolves() {
    let data = shared();
    let index = data.index();
    let mut checked = 0;
    for (kind, resources) in &index {
        for resource in resources.values() {
            for_each_reference(resource, &mut |reference| {
                let (target, id) = reference
                    .split_once('/')
                    .unwrap_or_else(|| panic!("{kind}: {reference} is not Type/id"));
                assert!(!id.contains('/'), "{reference} is relative");
                assert!(
                    index.get(target).is_some_and(|ids| ids.contains_key(id)),
                    "{kind} points at missing {reference}"
                );
                checked += 1;
            });
        }
    }
    assert!(checked > 10_000, "{checked} references checked");
}

#[test]
fn every_resource_has_a_utc_last_updated_spread_over_years() {
    let data = shared();
    let mut years = BTreeSet::new();
    for kind in TYPES {
        for r in data.resources(kind) {
            let text = r["meta"]["lastUpdated"].as_str().unwrap();
            assert!(text.ends_with('Z'), "{kind}: {text}");
            let t = parse_time(&r["meta"]["lastUpdated"]);
            assert!((2010..=2025).contains(&t.year()), "{kind}: {text}");
            years.insert(t.year());
        }
    }
    assert!(years.len() >= 12, "{years:?}");
}

#[test]
fn patients_have_names_gender_birth_date_address_identifiers_and_telecom() {
    let patients = shared().resources("Patient");
    let mut genders = BTreeSet::new();
    let mut non_ascii_name = false;
    for p in &patients {
        let name = &p["name"][0];
        assert!(name["family"].as_str().is_some_and(|f| !f.is_empty()));
        assert!(name["given"][0].as_str().is_some_and(|g| !g.is_empty()));
        non_ascii_name |= !name["family"].as_str().unwrap().is_ascii();
        genders.insert(p["gender"].as_str().unwrap().to_owned());
        let birth = p["birthDate"].as_str().unwrap();
        let birth = time::Date::parse(
            birth,
            time::macros::format_description!("[year]-[month]-[day]"),
        )
        .unwrap();
        assert!((1930..=2025).contains(&birth.year()));
        let address = &p["address"][0];
        for field in ["city", "state", "postalCode"] {
            assert!(
                address[field].as_str().is_some_and(|v| !v.is_empty()),
                "{field}"
            );
        }
        assert!(address["line"][0].is_string());
        let identifiers = p["identifier"].as_array().unwrap();
        assert!(
            identifiers
                .iter()
                .all(|i| i["system"].is_string() && i["value"].is_string())
        );
        assert!(p["telecom"][0]["value"].is_string());
    }
    assert!(
        genders.contains("male") && genders.contains("female"),
        "{genders:?}"
    );
    assert!(non_ascii_name, "some names exercise UTF-8");
    let mrns: HashSet<&str> = patients
        .iter()
        .map(|p| p["identifier"][0]["value"].as_str().unwrap())
        .collect();
    assert_eq!(mrns.len(), patients.len(), "MRNs are unique");
}

#[test]
fn encounters_have_class_type_period_participant_location_and_provider() {
    let index = shared().index();
    let mut classes = BTreeSet::new();
    for e in index["Encounter"].values() {
        classes.insert(e["class"]["code"].as_str().unwrap().to_owned());
        assert_eq!(codings(&e["type"][0])[0].0, SNOMED);
        let start = parse_time(&e["period"]["start"]);
        let end = parse_time(&e["period"]["end"]);
        assert!(start < end);
        assert!((2010..=2025).contains(&start.year()), "{start}");
        let practitioner = e["participant"][0]["individual"]["reference"]
            .as_str()
            .unwrap();
        assert!(practitioner.starts_with("Practitioner/"));
        assert!(
            e["serviceProvider"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Organization/")
        );
        let location = e["location"][0]["location"]["reference"].as_str().unwrap();
        assert!(location.starts_with("Location/"));
        assert!(
            e["subject"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/")
        );
    }
    assert!(classes.contains("AMB") && classes.len() >= 3, "{classes:?}");
}

#[test]
fn observations_have_vital_signs_and_laboratory_with_loinc_codes_and_ucum_values() {
    let index = shared().index();
    let encounters = &index["Encounter"];
    let mut codes_by_category: [BTreeSet<String>; 2] = Default::default();
    for o in index["Observation"].values() {
        let category = codings(&o["category"][0]);
        assert_eq!(category.len(), 1);
        assert_eq!(category[0].0, CATEGORY);
        let slot = match category[0].1 {
            "vital-signs" => 0,
            "laboratory" => 1,
            other => panic!("unexpected category {other}"),
        };
        let (system, code) = codings(&o["code"])[0];
        assert_eq!(system, LOINC);
        codes_by_category[slot].insert(code.to_owned());
        parse_time(&o["effectiveDateTime"]);
        assert!(
            o["subject"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/")
        );
        // The encounter is the patient's own.
        let encounter = o["encounter"]["reference"].as_str().unwrap();
        let encounter = &encounters[encounter.strip_prefix("Encounter/").unwrap()];
        assert_eq!(encounter["subject"], o["subject"]);
        let quantities: Vec<&Value> = if code == "85354-9" {
            let components = o["component"].as_array().unwrap();
            let codes: Vec<&str> = components
                .iter()
                .map(|c| codings(&c["code"])[0].1)
                .collect();
            assert_eq!(codes, ["8480-6", "8462-4"]);
            components.iter().map(|c| &c["valueQuantity"]).collect()
        } else {
            vec![&o["valueQuantity"]]
        };
        for q in quantities {
            assert_eq!(q["system"], UCUM, "{code}");
            assert!(q["value"].is_number() && q["code"].is_string(), "{code}");
        }
    }
    let [vitals, labs] = codes_by_category;
    for code in ["8867-4", "8310-5", "29463-7", "8302-2", "85354-9"] {
        assert!(
            vitals.contains(code),
            "vital sign {code} missing from {vitals:?}"
        );
    }
    for code in ["2339-0", "718-7", "4548-4"] {
        assert!(labs.contains(code), "lab {code} missing from {labs:?}");
    }
}

#[test]
fn lab_reports_gather_their_patients_lab_observations() {
    let index = shared().index();
    for report in index["DiagnosticReport"].values() {
        assert_eq!(codings(&report["category"][0])[0].1, "LAB");
        assert_eq!(codings(&report["code"])[0].0, LOINC);
        let results = report["result"].as_array().unwrap();
        assert!(!results.is_empty());
        for result in results {
            let id = result["reference"]
                .as_str()
                .unwrap()
                .strip_prefix("Observation/")
                .unwrap();
            let observation = &index["Observation"][id];
            assert_eq!(observation["subject"], report["subject"]);
            assert_eq!(codings(&observation["category"][0])[0].1, "laboratory");
        }
    }
}

#[test]
fn medication_requests_use_rxnorm_with_varied_statuses() {
    let requests = shared().resources("MedicationRequest");
    let mut statuses = BTreeSet::new();
    for m in &requests {
        statuses.insert(m["status"].as_str().unwrap().to_owned());
        assert_eq!(m["intent"], "order");
        let (system, code) = codings(&m["medicationCodeableConcept"])[0];
        assert_eq!(system, "http://www.nlm.nih.gov/research/umls/rxnorm");
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        parse_time(&m["authoredOn"]);
        assert!(
            m["requester"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Practitioner/")
        );
        assert!(
            m["subject"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/")
        );
    }
    for status in ["active", "completed", "stopped"] {
        assert!(
            statuses.contains(status),
            "{status} missing from {statuses:?}"
        );
    }
}

#[test]
fn conditions_procedures_immunizations_and_allergies_are_coded() {
    let data = shared();
    let mut clinical = BTreeSet::new();
    for c in data.resources("Condition") {
        assert_eq!(codings(&c["code"])[0].0, SNOMED);
        clinical.insert(codings(&c["clinicalStatus"])[0].1.to_owned());
        parse_time(&c["onsetDateTime"]);
        assert!(
            c["encounter"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Encounter/")
        );
    }
    assert!(
        clinical.contains("active") && clinical.contains("resolved"),
        "{clinical:?}"
    );
    for p in data.resources("Procedure") {
        assert_eq!(codings(&p["code"])[0].0, SNOMED);
        assert!(
            parse_time(&p["performedPeriod"]["start"]) < parse_time(&p["performedPeriod"]["end"])
        );
    }
    let mut vaccines = BTreeSet::new();
    for i in data.resources("Immunization") {
        let (system, code) = codings(&i["vaccineCode"])[0];
        assert_eq!(system, "http://hl7.org/fhir/sid/cvx");
        vaccines.insert(code.to_owned());
        parse_time(&i["occurrenceDateTime"]);
        assert!(
            i["patient"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/")
        );
    }
    assert!(vaccines.len() >= 5, "{vaccines:?}");
    for a in data.resources("AllergyIntolerance") {
        assert_eq!(codings(&a["code"])[0].0, SNOMED);
        assert!(
            a["patient"]["reference"]
                .as_str()
                .unwrap()
                .starts_with("Patient/")
        );
    }
}

#[test]
fn clinical_times_stay_within_2010_to_2025() {
    let data = shared();
    let fields = [
        ("Observation", "effectiveDateTime"),
        ("Immunization", "occurrenceDateTime"),
        ("MedicationRequest", "authoredOn"),
        ("DiagnosticReport", "effectiveDateTime"),
    ];
    for (kind, field) in fields {
        let years: BTreeSet<i32> = data
            .resources(kind)
            .iter()
            .map(|r| parse_time(&r[field]).year())
            .collect();
        assert!(
            *years.first().unwrap() >= 2010 && *years.last().unwrap() <= 2025,
            "{kind}.{field}: {years:?}"
        );
        assert!(
            years.len() >= 10,
            "{kind}.{field} spread over years: {years:?}"
        );
    }
}
