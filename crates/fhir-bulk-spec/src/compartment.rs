//! The R4 Patient compartment (G5): which patients a resource belongs to.
//!
//! The rules are `CompartmentDefinition/patient`: a resource of a listed type is in the
//! compartment of every Patient that a reference at one of its compartment parameters points
//! at (e.g. Observation `subject` and `performer`). The generator resolves each parameter to its
//! SearchParameter expression and reduces that to element paths (`generated/compartment_table.rs`);
//! here we follow those paths through the parsed resource.
//!
//! [`patients_of`] runs on every write, so it allocates only the ids it returns and parses
//! references by splitting on `/` (no regex). References may be relative or absolute (K11);
//! contained (`#x`) and `urn:uuid:` references point at no stored Patient and are ignored.

use crate::generated::compartment_table::PATIENT_COMPARTMENT;
use crate::generated::{ElementPath, for_each_element};
use crate::id::is_valid_id;
use serde_json::Value;

/// True when resources of this type can be in a Patient compartment (Patient included).
///
/// By the R4 definition some types that often point at a patient are *not* in it, e.g.
/// `Device` (its `patient` is not a compartment parameter), `Practitioner`, `Organization`;
/// `Group` *is* in it, through `member.entity`.
pub fn is_compartment_type(resource_type: &str) -> bool {
    compartment_paths(resource_type).is_some()
}

/// The resource types that can be in a Patient compartment, sorted (Patient included).
pub fn compartment_types() -> impl Iterator<Item = &'static str> {
    PATIENT_COMPARTMENT.iter().map(|(ty, _)| *ty)
}

/// The ids of the patients whose compartment `resource` is in, sorted and deduplicated.
///
/// A Patient is in its own compartment and in those of the patients its `link.other` points
/// at. Resources of other types, or without `resourceType`, belong to no compartment.
pub fn patients_of(resource: &Value) -> Vec<String> {
    let Some(ty) = resource.get("resourceType").and_then(Value::as_str) else {
        return Vec::new();
    };
    let Some(paths) = compartment_paths(ty) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    if ty == "Patient"
        && let Some(id) = resource
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| is_valid_id(id))
    {
        ids.push(id.to_owned());
    }
    for path in paths {
        for_each_element(resource, path, &mut |element| {
            if let Some(id) = element
                .get("reference")
                .and_then(Value::as_str)
                .and_then(referenced_patient)
            {
                ids.push(id.to_owned());
            }
            false
        });
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The id of the Patient a literal reference points at, if it points at one.
///
/// `Patient/1`, `Patient/1/_history/2` and `https://host/fhir/Patient/1` give `1`.
pub fn referenced_patient(reference: &str) -> Option<&str> {
    reference_target(reference).and_then(|(ty, id)| (ty == "Patient").then_some(id))
}

/// The `(type, id)` a literal reference points at.
///
/// Accepts `Type/id`, `Type/id/_history/version`, and absolute URLs ending in either. Gives
/// `None` for contained (`#x`), `urn:` (e.g. `urn:uuid:`), conditional (`Type?query`) and
/// malformed references. The type is checked for shape only (`[A-Z][A-Za-z0-9]*`), so types
/// of other FHIR versions pass.
pub fn reference_target(reference: &str) -> Option<(&str, &str)> {
    if reference.starts_with('#') || reference.starts_with("urn:") || reference.contains('?') {
        return None;
    }
    let mut segments = reference.rsplit('/');
    let (mut id, mut ty) = (segments.next()?, segments.next()?);
    if ty == "_history" {
        (id, ty) = (segments.next()?, segments.next()?);
    }
    // More segments before the type: only an absolute URL may have them.
    if segments.next().is_some() && !reference.contains("://") {
        return None;
    }
    let type_shaped = ty.starts_with(|c: char| c.is_ascii_uppercase())
        && ty.bytes().all(|b| b.is_ascii_alphanumeric());
    (type_shaped && is_valid_id(id)).then_some((ty, id))
}

fn compartment_paths(resource_type: &str) -> Option<&'static [ElementPath]> {
    PATIENT_COMPARTMENT
        .binary_search_by(|(ty, _)| (*ty).cmp(resource_type))
        .ok()
        .map(|i| PATIENT_COMPARTMENT[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    #[test]
    fn compartment_types_follow_the_definition() {
        for ty in [
            "Patient",
            "Observation",
            "Encounter",
            "Group",
            "AllergyIntolerance",
            "Claim",
            "Provenance",
        ] {
            assert!(is_compartment_type(ty), "{ty}");
        }
        for ty in [
            "Practitioner",
            "Organization",
            "Device",
            "Medication",
            "Location",
            "Binary",
            "Nope",
        ] {
            assert!(!is_compartment_type(ty), "{ty}");
        }
        // 67 types of the definition list compartment parameters (Patient among them).
        assert_eq!(compartment_types().count(), 67);
    }

    #[test]
    fn references() {
        assert_eq!(reference_target("Patient/1"), Some(("Patient", "1")));
        assert_eq!(
            reference_target("Patient/1/_history/3"),
            Some(("Patient", "1"))
        );
        assert_eq!(
            reference_target("https://h.org/fhir/r4/Patient/a-b.c"),
            Some(("Patient", "a-b.c"))
        );
        assert_eq!(
            reference_target("http://h/Patient/1/_history/2"),
            Some(("Patient", "1"))
        );
        for r in [
            "#p1",
            "urn:uuid:3f6c",
            "Patient",
            "Patient/",
            "/1",
            "patient/1",
            "x/Patient/1",
            "Patient?identifier=a|b",
            "Patient/a_b",
        ] {
            assert_eq!(reference_target(r), None, "{r}");
        }
        assert_eq!(referenced_patient("Group/1"), None);
        assert_eq!(referenced_patient("Patient/7"), Some("7"));
    }

    #[test]
    fn observation_subject_and_performer() {
        let obs = json!({
            "resourceType": "Observation", "id": "o1",
            "subject": {"reference": "Patient/p2"},
            "performer": [{"reference": "Practitioner/d1"}, {"reference": "Patient/p1"}, {"reference": "Patient/p2"}],
            "encounter": {"reference": "Patient/not-a-compartment-path"}
        });
        assert_eq!(patients_of(&obs), ["p1", "p2"]);
        let group_subject =
            json!({"resourceType": "Observation", "subject": {"reference": "Group/g"}});
        assert!(patients_of(&group_subject).is_empty());
    }

    #[test]
    fn encounter_group_patient_and_absolute_references() {
        let enc = json!({"resourceType": "Encounter", "subject": {"reference": "https://x.org/fhir/Patient/p9/_history/1"},
            "participant": [{"individual": {"reference": "Patient/p8"}}]});
        // Encounter's only compartment parameter is `subject`.
        assert_eq!(patients_of(&enc), ["p9"]);
        let group = json!({"resourceType": "Group", "member": [
            {"entity": {"reference": "Patient/b"}}, {"entity": {"reference": "Patient/a"}},
            {"entity": {"reference": "Practitioner/c"}}, {"entity": {"reference": "Patient/a"}}]});
        assert_eq!(patients_of(&group), ["a", "b"]);
        let patient = json!({"resourceType": "Patient", "id": "me", "link": [
            {"other": {"reference": "Patient/old"}, "type": "replaces"},
            {"other": {"reference": "RelatedPerson/r"}, "type": "seealso"}]});
        assert_eq!(patients_of(&patient), ["me", "old"]);
        let skipped = json!({"resourceType": "Condition", "subject": {"reference": "urn:uuid:1"},
            "asserter": {"reference": "#contained"}});
        assert!(patients_of(&skipped).is_empty());
        let device = json!({"resourceType": "Device", "patient": {"reference": "Patient/p"}});
        assert!(
            patients_of(&device).is_empty(),
            "Device is not in the R4 Patient compartment"
        );
        assert!(patients_of(&json!({"subject": {"reference": "Patient/p"}})).is_empty());
    }

    /// Every clinical resource of the Synthea sample references exactly one Patient through
    /// `subject` or `patient` (data README); the compartment must find that one and no other.
    #[test]
    fn synthea_resources_map_to_their_patient() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea-100");
        if !dir.exists() {
            eprintln!("skipped: {} not found", dir.display());
            return;
        }
        let (mut clinical, mut files) = (0, 0);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "ndjson") {
                continue;
            }
            files += 1;
            for line in std::fs::read_to_string(&path).unwrap().lines() {
                let r: Value = serde_json::from_str(line).unwrap();
                let ty = r["resourceType"].as_str().unwrap();
                let expected: Vec<String> = match ty {
                    "Patient" => vec![r["id"].as_str().unwrap().to_string()],
                    "Group" => r["member"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|m| {
                            m["entity"]["reference"]
                                .as_str()
                                .unwrap()
                                .strip_prefix("Patient/")
                                .unwrap()
                                .to_string()
                        })
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                    _ => ["subject", "patient"]
                        .iter()
                        .filter_map(|k| r[k]["reference"].as_str()?.strip_prefix("Patient/"))
                        .map(str::to_string)
                        .collect(),
                };
                if ty == "Device" {
                    assert_eq!(expected.len(), 1);
                    assert!(
                        patients_of(&r).is_empty(),
                        "Device is outside the R4 Patient compartment"
                    );
                } else if ty == "Group" {
                    assert_eq!(expected.len(), 100);
                    assert_eq!(patients_of(&r), expected);
                } else if is_compartment_type(ty) {
                    assert_eq!(expected.len(), 1, "{ty}/{} references one Patient", r["id"]);
                    assert_eq!(patients_of(&r), expected, "{ty}/{}", r["id"]);
                    clinical += 1;
                } else {
                    assert!(expected.is_empty() && patients_of(&r).is_empty(), "{ty}");
                }
            }
        }
        assert_eq!(files, 18);
        // 38,473 resources minus Organization, Practitioner, Device and the Group.
        assert_eq!(clinical, 38_473 - 203 - 203 - 4 - 1);
    }
}
