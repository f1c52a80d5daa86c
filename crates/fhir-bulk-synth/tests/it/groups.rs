//! The three Groups: everyone, a 10% cohort with a few inactive members, a small sample.

use crate::dataset::{PATIENTS, shared};
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

fn groups() -> BTreeMap<String, Value> {
    shared()
        .resources("Group")
        .into_iter()
        .map(|g| (g["id"].as_str().unwrap().to_owned(), g))
        .collect()
}

/// `(patient id, inactive)` of each member, checking the entry's shape on the way.
fn members(group: &Value) -> Vec<(String, bool)> {
    group["member"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let reference = m["entity"]["reference"].as_str().unwrap();
            let id = reference
                .strip_prefix("Patient/")
                .expect("members are patients");
            (id.to_owned(), m.get("inactive") == Some(&Value::Bool(true)))
        })
        .collect()
}

#[test]
fn groups_are_actual_person_groups_with_matching_quantity() {
    let groups = groups();
    assert_eq!(
        groups.keys().collect::<Vec<_>>(),
        ["all-patients", "cohort-10pct", "small-sample"]
    );
    for (id, group) in &groups {
        assert_eq!(group["type"], "person", "{id}");
        assert_eq!(group["actual"], true, "{id}");
        assert!(
            group["name"].as_str().is_some_and(|n| !n.is_empty()),
            "{id}"
        );
        let members = members(group);
        assert_eq!(
            group["quantity"].as_u64(),
            Some(members.len() as u64),
            "{id}"
        );
        let unique: HashSet<_> = members.iter().map(|(p, _)| p).collect();
        assert_eq!(unique.len(), members.len(), "{id}: no duplicate members");
    }
}

#[test]
fn group_sizes_are_all_ten_percent_and_small() {
    let patients: HashSet<String> = shared()
        .resources("Patient")
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    let groups = groups();

    let all: HashSet<String> = members(&groups["all-patients"])
        .into_iter()
        .map(|m| m.0)
        .collect();
    assert_eq!(
        all, patients,
        "the all-patients Group lists exactly every patient"
    );

    let cohort = members(&groups["cohort-10pct"]);
    assert_eq!(cohort.len() as u64, PATIENTS / 10);
    assert!(cohort.iter().all(|(p, _)| patients.contains(p)));
    let inactive = cohort.iter().filter(|(_, inactive)| *inactive).count();
    assert!(
        inactive >= 1 && inactive * 10 <= cohort.len(),
        "a few inactive: {inactive}"
    );

    let small = members(&groups["small-sample"]);
    assert_eq!(small.len(), 10);
    assert!(
        small
            .iter()
            .all(|(p, inactive)| patients.contains(p) && !inactive)
    );
    assert!(
        members(&groups["all-patients"])
            .iter()
            .all(|(_, inactive)| !inactive)
    );
}
