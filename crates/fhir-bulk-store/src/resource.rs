//! Writes and stored resources.

use crate::StoreError;
use fhir_bulk_spec::{
    compartment, id::is_valid_id, instant::Instant, resource_type::is_resource_type,
};
use serde_json::Value;

/// One write to the store. Build it with [`Write::put`] / [`Write::delete`], which validate
/// and prepare it: everything that can be computed without the store (serialisation, the
/// Patient compartment, Group members, search values) is done by the caller's thread, so the
/// store's single writer only splices in `meta` and inserts rows.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create or update (upsert) a resource; the store sets `meta.versionId`/`meta.lastUpdated`.
    Put(Box<PreparedPut>),
    /// Delete a resource, leaving a tombstone.
    Delete {
        /// Resource type (validated).
        resource_type: String,
        /// Logical id (validated).
        id: String,
    },
}

/// A validated resource, ready for the writer.
#[derive(Debug, Clone)]
pub struct PreparedPut {
    /// Resource type.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// The resource as compact JSON without `meta`: an object, so it ends with `}`.
    body: Vec<u8>,
    /// The other fields of the resource's `meta` (profile, tag, …) as `"k":v,…`, or empty.
    meta_rest: Vec<u8>,
    /// Patients whose compartment the resource is in.
    pub(crate) patients: Vec<String>,
    /// For a Group: active members as (type, id).
    pub(crate) members: Vec<(String, String)>,
    /// Values for the REST search (`identifier`, `identifier:value`, `name`).
    pub(crate) search: Vec<(&'static str, String)>,
}

impl PreparedPut {
    /// The stored JSON: the body with `meta` (versionId, lastUpdated, then the rest) appended.
    pub(crate) fn json_with_meta(&self, version: i64, last_updated: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.body.len() + self.meta_rest.len() + 80);
        out.extend_from_slice(&self.body[..self.body.len() - 1]);
        if self.body.len() > 2 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"meta\":{\"versionId\":\"");
        out.extend_from_slice(version.to_string().as_bytes());
        out.extend_from_slice(b"\",\"lastUpdated\":\"");
        out.extend_from_slice(last_updated.as_bytes());
        out.push(b'"');
        if !self.meta_rest.is_empty() {
            out.push(b',');
            out.extend_from_slice(&self.meta_rest);
        }
        out.extend_from_slice(b"}}");
        out
    }
}

impl Write {
    /// A create-or-update of `resource`, which must be a JSON object with a known R4
    /// `resourceType` and a valid `id`.
    pub fn put(mut resource: Value) -> Result<Write, StoreError> {
        let Value::Object(obj) = &mut resource else {
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
        let meta_rest = match obj.shift_remove("meta") {
            Some(Value::Object(mut meta)) => {
                meta.shift_remove("versionId");
                meta.shift_remove("lastUpdated");
                let text =
                    serde_json::to_vec(&meta).map_err(|e| StoreError::Invalid(e.to_string()))?;
                // `{"k":v,...}` → `"k":v,...`
                text[1..text.len() - 1].to_vec()
            }
            Some(_) => return Err(StoreError::Invalid("meta must be a JSON object".into())),
            None => Vec::new(),
        };
        let patients = if compartment::is_compartment_type(&resource_type) {
            compartment::patients_of(&resource)
        } else {
            Vec::new()
        };
        let members = if resource_type == "Group" {
            group_members(&resource)
        } else {
            Vec::new()
        };
        let search = if resource_type == "Group" || resource_type == "Patient" {
            search_values(&resource)
        } else {
            Vec::new()
        };
        let body = serde_json::to_vec(&resource).map_err(|e| {
            StoreError::Invalid(format!("cannot serialise {resource_type}/{id}: {e}"))
        })?;
        Ok(Write::Put(Box::new(PreparedPut {
            resource_type,
            id,
            body,
            meta_rest,
            patients,
            members,
            search,
        })))
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
            Write::Put(p) => &p.resource_type,
            Write::Delete { resource_type, .. } => resource_type,
        }
    }
}

/// Active members of a Group (`member.entity`, skipping `inactive: true`).
fn group_members(group: &Value) -> Vec<(String, String)> {
    group
        .get("member")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|m| m.get("inactive").and_then(Value::as_bool) != Some(true))
        .filter_map(|m| m.pointer("/entity/reference").and_then(Value::as_str))
        .filter_map(compartment::reference_target)
        .map(|(t, i)| (t.to_string(), i.to_string()))
        .collect()
}

/// `identifier` (as `system|value` and bare value) and a lowercased `name`.
fn search_values(resource: &Value) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for ident in resource
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(value) = ident.get("value").and_then(Value::as_str) else {
            continue;
        };
        let system = ident.get("system").and_then(Value::as_str).unwrap_or("");
        out.push(("identifier", format!("{system}|{value}")));
        out.push(("identifier:value", value.to_string()));
    }
    if let Some(name) = resource.get("name").and_then(Value::as_str) {
        out.push(("name", name.to_lowercase()));
    }
    out
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
    /// The JSON stored (for puts, when asked for), as served back by reads.
    pub json: Option<Vec<u8>>,
    /// Bytes of JSON stored (0 for deletes).
    pub bytes: u64,
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
    fn meta_is_spliced_in() {
        let Write::Put(p) = Write::put(json!({"resourceType":"Patient","id":"p1",
            "meta":{"versionId":"9","profile":["x"]},"gender":"male"}))
        .unwrap() else {
            panic!()
        };
        let v: Value =
            serde_json::from_slice(&p.json_with_meta(3, "2026-01-01T00:00:00.000000Z")).unwrap();
        assert_eq!(
            v,
            json!({"resourceType":"Patient","id":"p1","gender":"male",
            "meta":{"versionId":"3","lastUpdated":"2026-01-01T00:00:00.000000Z","profile":["x"]}})
        );
        let Write::Put(p) = Write::put(json!({"resourceType":"Patient","id":"p2"})).unwrap() else {
            panic!()
        };
        let v: Value = serde_json::from_slice(&p.json_with_meta(1, "t")).unwrap();
        assert_eq!(v["meta"], json!({"versionId":"1","lastUpdated":"t"}));
    }

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
        assert!(e(json!({"resourceType":"Patient","id":"a","meta":1})).contains("meta"));
        assert!(Write::delete("Patient", "x/y").is_err());
    }
}
