//! The R4 Patient compartment. (Stub: being written.)

use serde_json::Value;

/// True when resources of this type can be in a Patient compartment (Patient included).
pub fn is_compartment_type(resource_type: &str) -> bool {
    let _ = resource_type;
    false
}

/// The ids of the patients whose compartment `resource` is in, sorted and deduplicated.
pub fn patients_of(resource: &Value) -> Vec<String> {
    let _ = resource;
    Vec::new()
}
