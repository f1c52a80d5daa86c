//! `_elements` (P5): keep only the listed top-level elements of a resource, plus the ones
//! that are always kept (`resourceType`, `id`, `meta`), and tag the result `SUBSETTED`.

use serde_json::{Map, Value, json};

/// The `SUBSETTED` tag FHIR requires on a subsetted resource.
pub const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// Why an `_elements` entry cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("_elements '{0}' is not an element name or Type.element")]
pub struct ElementsError(pub String);

/// Checks one `_elements` entry: `element` or `Type.element`, top level only (P5).
pub fn check(entry: &str) -> Result<(), ElementsError> {
    let bad = || ElementsError(entry.to_string());
    let name = match entry.split_once('.') {
        Some((t, e)) if crate::resource_type::is_resource_type(t) => e,
        Some(_) => return Err(bad()),
        None => entry,
    };
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.contains('.');
    if ok { Ok(()) } else { Err(bad()) }
}

/// The element names that apply to `resource_type`: bare entries and `Type.element` entries
/// for this type. Empty: `_elements` does not restrict this type.
pub fn for_type<'a>(entries: &'a [String], resource_type: &str) -> Vec<&'a str> {
    entries
        .iter()
        .filter_map(|e| match e.split_once('.') {
            Some((t, name)) if t == resource_type => Some(name),
            Some(_) => None,
            None => Some(e.as_str()),
        })
        .collect()
}

/// Keeps `keep` (plus `resourceType`, `id`, `meta`) and adds the `SUBSETTED` tag.
pub fn subset(resource: &mut Value, keep: &[&str]) {
    let Value::Object(obj) = resource else { return };
    obj.retain(|k, _| {
        k == "resourceType" || k == "id" || k == "meta" || keep.contains(&k.as_str())
            // A primitive's extension sibling (`_birthDate`) follows its element.
            || k.strip_prefix('_').is_some_and(|base| keep.contains(&base))
    });
    let meta = obj
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(m) = meta {
        let tags = m.entry("tag").or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(tags) = tags {
            let present = tags
                .iter()
                .any(|t| t["system"] == SUBSETTED_SYSTEM && t["code"] == "SUBSETTED");
            if !present {
                tags.push(json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"}));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_entries_p5() {
        assert!(check("id").is_ok());
        assert!(check("Observation.code").is_ok());
        assert!(check("Banana.code").is_err());
        assert!(check("code.coding").is_err());
        assert!(check("Observation.code.coding").is_err());
        assert!(check("").is_err());
        assert!(check("1x").is_err());
    }

    #[test]
    fn picks_entries_for_a_type() {
        let e: Vec<String> = ["id", "Observation.code", "Patient.name"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(for_type(&e, "Observation"), vec!["id", "code"]);
        assert_eq!(for_type(&e, "Condition"), vec!["id"]);
    }

    #[test]
    fn subsets_and_tags() {
        let mut r = json!({"resourceType":"Patient","id":"p","meta":{"versionId":"1"},
            "name":[{"family":"X"}],"gender":"male","birthDate":"2000","_birthDate":{"extension":[]}});
        subset(&mut r, &["birthDate"]);
        assert_eq!(r["birthDate"], "2000");
        assert!(r.get("_birthDate").is_some());
        assert!(r.get("name").is_none() && r.get("gender").is_none());
        assert_eq!(r["meta"]["versionId"], "1");
        assert_eq!(r["meta"]["tag"][0]["code"], "SUBSETTED");
        subset(&mut r, &["birthDate"]);
        assert_eq!(r["meta"]["tag"].as_array().unwrap().len(), 1, "tagged once");
    }
}
