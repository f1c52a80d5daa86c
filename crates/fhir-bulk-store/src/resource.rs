//! Writes and stored resources.

use crate::StoreError;
use fhir_bulk_spec::{id::is_valid_id, instant::Instant, resource_type::is_resource_type};
use serde_json::Value;

/// One write to the store. Build it with [`Write::put`] / [`Write::delete`], which validate.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create or update (upsert) a resource; the store sets `meta.versionId`/`meta.lastUpdated`.
    Put {
        /// Resource type (validated).
        resource_type: String,
        /// Logical id (validated).
        id: String,
        /// The resource.
        resource: Value,
    },
    /// Delete a resource, leaving a tombstone.
    Delete {
        /// Resource type (validated).
        resource_type: String,
        /// Logical id (validated).
        id: String,
    },
}

impl Write {
    /// A create-or-update of `resource`, which must be a JSON object with a known R4
    /// `resourceType` and a valid `id`.
    pub fn put(resource: Value) -> Result<Write, StoreError> {
        let Value::Object(obj) = &resource else {
            return Err(StoreError::Invalid(
                "a resource must be a JSON object".into(),
            ));
        };
        let resource_type = match obj.get("resourceType") {
            Some(Value::String(t)) if is_resource_type(t) => t.clone(),
            Some(Value::String(t)) => {
                return Err(StoreError::Invalid(format!(
                    "unknown resourceType '{t}' (not an R4 resource type)"
                )));
            }
            _ => {
                return Err(StoreError::Invalid(
                    "the resource has no resourceType".into(),
                ));
            }
        };
        let id = match obj.get("id") {
            Some(Value::String(id)) if is_valid_id(id) => id.clone(),
            Some(Value::String(id)) => {
                return Err(StoreError::Invalid(format!(
                    "invalid id '{id}': an id is 1 to 64 of A-Z a-z 0-9 - ."
                )));
            }
            Some(_) => {
                return Err(StoreError::Invalid(
                    "the resource id must be a string".into(),
                ));
            }
            None => {
                return Err(StoreError::Invalid(format!(
                    "the {resource_type} has no id"
                )));
            }
        };
        Ok(Write::Put {
            resource_type,
            id,
            resource,
        })
    }

    /// A delete of `resource_type/id`.
    pub fn delete(resource_type: &str, id: &str) -> Result<Write, StoreError> {
        if !is_resource_type(resource_type) {
            return Err(StoreError::Invalid(format!(
                "unknown resource type '{resource_type}'"
            )));
        }
        if !is_valid_id(id) {
            return Err(StoreError::Invalid(format!("invalid id '{id}'")));
        }
        Ok(Write::Delete {
            resource_type: resource_type.into(),
            id: id.into(),
        })
    }

    /// The resource type written.
    pub fn resource_type(&self) -> &str {
        match self {
            Write::Put { resource_type, .. } | Write::Delete { resource_type, .. } => resource_type,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteResult {
    /// Resource type.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// The new version (for a delete: the tombstone's version).
    pub version: i64,
    /// When it was written.
    pub last_updated: Instant,
    /// True when no live version existed before (a create).
    pub created: bool,
    /// For a delete: whether there was a live resource to delete.
    pub existed: bool,
    /// The JSON stored (for puts), as served back by reads.
    pub json: Option<Vec<u8>>,
}

/// Counts of a [`crate::Store::write_stream`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Writes per resource type, sorted.
    pub per_type: std::collections::BTreeMap<String, u64>,
    /// Bytes of JSON stored.
    pub bytes: u64,
}

/// A stored resource (latest version) or its tombstone.
#[derive(Debug, Clone)]
pub struct StoredResource {
    /// Resource type.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// Version id.
    pub version: i64,
    /// `meta.lastUpdated`, or the deletion time of a tombstone.
    pub last_updated: Instant,
    /// True for a tombstone.
    pub deleted: bool,
    /// The JSON, `None` for tombstones.
    pub json: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn put_validates() {
        assert!(Write::put(json!({"resourceType":"Patient","id":"p1"})).is_ok());
        let e = |v| Write::put(v).unwrap_err().to_string();
        assert!(e(json!([])).contains("JSON object"));
        assert!(e(json!({"id":"p1"})).contains("no resourceType"));
        assert!(
            e(json!({"resourceType":"Banana","id":"p1"})).contains("unknown resourceType 'Banana'")
        );
        assert!(e(json!({"resourceType":"Patient","id":"a b"})).contains("invalid id 'a b'"));
        assert!(e(json!({"resourceType":"Patient"})).contains("no id"));
        assert!(Write::delete("Patient", "x/y").is_err());
    }
}
