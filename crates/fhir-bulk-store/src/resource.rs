//! Writes and stored resources.

use crate::StoreError;
use fhir_bulk_spec::{
    compartment, id::is_valid_id, instant::Instant, resource_type::is_resource_type,
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::Serializer as _;
use serde_json::{Map, Value};
use std::fmt;

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
        let mut out = Vec::new();
        self.write_json_with_meta(&mut out, version, last_updated);
        out
    }

    /// [`PreparedPut::json_with_meta`] into `out` (cleared first), so a writer can reuse one
    /// buffer.
    pub(crate) fn write_json_with_meta(&self, out: &mut Vec<u8>, version: i64, last_updated: &str) {
        use std::io::Write as _;
        out.clear();
        out.reserve(self.body.len() + self.meta_rest.len() + 80);
        out.extend_from_slice(&self.body[..self.body.len() - 1]);
        if self.body.len() > 2 {
            out.push(b',');
        }
        out.extend_from_slice(b"\"meta\":{\"versionId\":\"");
        let _ = write!(out, "{version}");
        out.extend_from_slice(b"\",\"lastUpdated\":\"");
        out.extend_from_slice(last_updated.as_bytes());
        out.push(b'"');
        if !self.meta_rest.is_empty() {
            out.push(b',');
            out.extend_from_slice(&self.meta_rest);
        }
        out.extend_from_slice(b"}}");
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
            Some(Value::Object(meta)) => meta_rest(meta)?,
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

    /// The same as `Write::put(serde_json::from_slice(json)?)`, byte for byte, without
    /// building the resource as a `Value`: the JSON is re-serialised compactly as it is
    /// parsed, and only `meta`, `resourceType`, `id` and the members that hold a `reference`
    /// (all the Patient compartment can look at) become `Value`s. Loading spent most of its
    /// parse time allocating and freeing the `Value` tree.
    ///
    /// `None` when this path does not apply: input that is not valid JSON or not a valid
    /// resource, an object with a repeated key (a `Value` keeps the last one in the place of
    /// the first), an object with very many keys, and Patient and Group resources (their search
    /// values and members need the whole resource). Call [`Write::put`] then: it gives the
    /// result or the error.
    pub fn put_slice(json: &[u8]) -> Option<Write> {
        let mut out = Out::with_capacity(json.len());
        // Checking UTF-8 once for the line costs less than string by string (`from_slice`);
        // `from_str` accepts exactly what `from_slice` accepts from valid UTF-8.
        let mut de = serde_json::Deserializer::from_str(std::str::from_utf8(json).ok()?);
        let top = de.deserialize_any(TopVisitor { out: &mut out }).ok()?;
        de.end().ok()?;
        let body = out.buf;
        let resource_type = match top.resource_type {
            Some(t) if is_resource_type(&t) && t != "Patient" && t != "Group" => t,
            _ => return None,
        };
        let id = top.id.filter(|id| is_valid_id(id))?;
        // Only a Patient is in a compartment without a reference to a Patient (its own).
        let patients =
            if compartment::is_compartment_type(&resource_type) && !top.references.is_empty() {
                let mut partial = Vec::with_capacity(128);
                partial.extend_from_slice(b"{\"resourceType\":");
                write_str(&mut partial, &resource_type);
                for &(start, end) in &top.references {
                    partial.push(b',');
                    partial.extend_from_slice(&body[start..end]);
                }
                partial.push(b'}');
                compartment::patients_of(&serde_json::from_slice(&partial).ok()?)
            } else {
                Vec::new()
            };
        Some(Write::Put(Box::new(PreparedPut {
            resource_type,
            id,
            body,
            meta_rest: top.meta_rest,
            patients,
            members: Vec::new(),
            search: Vec::new(),
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

/// The stored rest of `meta`: without versionId and lastUpdated (the store sets them), as
/// `"k":v,…`.
fn meta_rest(mut meta: Map<String, Value>) -> Result<Vec<u8>, StoreError> {
    meta.shift_remove("versionId");
    meta.shift_remove("lastUpdated");
    let text = serde_json::to_vec(&meta).map_err(|e| StoreError::Invalid(e.to_string()))?;
    // `{"k":v,...}` → `"k":v,...`
    Ok(text[1..text.len() - 1].to_vec())
}

/// More keys than this in one object: [`Write::put_slice`] leaves it to [`Write::put`]
/// (repeated keys are found by comparing with each earlier key of the object).
const MAX_KEYS: usize = 64;

/// Compact JSON as `serde_json` writes a `Value`, written by [`Write::put_slice`] while it
/// parses. Each value goes through `deserialize_any` as it would into a `Value`, so the
/// same input is accepted and the same numbers and strings come out.
struct Out {
    buf: Vec<u8>,
    /// Where the keys of the objects being written are in `buf` (quoted, escaped), to find
    /// repeated keys: equal keys are equal once escaped.
    keys: Vec<(usize, usize)>,
    /// A `reference` to a Patient was written (since [`TopVisitor`] last cleared it).
    patient_ref: bool,
}

/// Escapes and quotes `s` exactly as `serde_json` serialises a string.
fn write_str(buf: &mut Vec<u8>, s: &str) {
    let _ = serde_json::Serializer::new(buf).serialize_str(s);
}

/// Gives up on the fast path; [`Write::put`] then does the work (or reports the error).
fn bail<E: de::Error>() -> E {
    E::custom("not for the fast path")
}

impl Out {
    fn with_capacity(bytes: usize) -> Out {
        Out {
            buf: Vec::with_capacity(bytes),
            keys: Vec::with_capacity(32),
            patient_ref: false,
        }
    }

    /// Writes a string. One borrowed from the input had no escape, and `serde_json` refuses
    /// raw control characters in strings, so it has nothing to escape: it is copied.
    fn string(&mut self, s: &str, borrowed: bool) {
        if borrowed {
            self.buf.reserve(s.len() + 2);
            self.buf.push(b'"');
            self.buf.extend_from_slice(s.as_bytes());
            self.buf.push(b'"');
        } else {
            write_str(&mut self.buf, s);
        }
    }

    /// Writes `,`? `"key":` in the object written from `obj_start` whose keys start at
    /// `keys[first]`; an error when the key repeats an earlier one or is one `serde_json`
    /// gives a meaning to (`$serde_json::private::…`).
    fn key<E: de::Error>(
        &mut self,
        first: usize,
        obj_start: usize,
        key: &str,
        borrowed: bool,
    ) -> Result<(), E> {
        if key.starts_with('$') || self.keys.len() - first >= MAX_KEYS {
            return Err(bail());
        }
        if self.buf.len() > obj_start + 1 {
            self.buf.push(b',');
        }
        let start = self.buf.len();
        self.string(key, borrowed);
        let new = &self.buf[start..];
        if self.keys[first..]
            .iter()
            .any(|&(s, e)| &self.buf[s..e] == new)
        {
            return Err(bail());
        }
        self.keys.push((start, self.buf.len()));
        self.buf.push(b':');
        Ok(())
    }
}

/// Re-serialises any JSON value into [`Out`]; `reference` when it is the value of a
/// `reference` key.
struct Any<'a> {
    out: &'a mut Out,
    reference: bool,
}

impl<'de> DeserializeSeed<'de> for Any<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Any<'_> {
    fn string(self, v: &str, borrowed: bool) {
        if self.reference && compartment::referenced_patient(v).is_some() {
            self.out.patient_ref = true;
        }
        self.out.string(v, borrowed);
    }
}

impl<'de> Visitor<'de> for Any<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.buf.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.out
            .buf
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        let _ = serde_json::Serializer::new(&mut self.out.buf).serialize_i64(v);
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        let _ = serde_json::Serializer::new(&mut self.out.buf).serialize_u64(v);
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        // A `Value` holds a non-finite float as `null`, which is also what this writes.
        let _ = serde_json::Serializer::new(&mut self.out.buf).serialize_f64(v);
        Ok(())
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<(), E> {
        self.string(v, true);
        Ok(())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.string(v, false);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let out = self.out;
        out.buf.push(b'[');
        let mut first = true;
        loop {
            let mark = out.buf.len();
            if !first {
                out.buf.push(b',');
            }
            let item = Any {
                out: &mut *out,
                reference: false,
            };
            if seq.next_element_seed(item)?.is_none() {
                out.buf.truncate(mark);
                break;
            }
            first = false;
        }
        out.buf.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.out;
        let (first, obj_start) = (out.keys.len(), out.buf.len());
        out.buf.push(b'{');
        while let Some(member) = map.next_key_seed(Key {
            out: &mut *out,
            first,
            obj_start,
            skip: &[],
        })? {
            let reference = matches!(member, Member::Written(Name::Reference));
            map.next_value_seed(Any {
                out: &mut *out,
                reference,
            })?;
        }
        out.keys.truncate(first);
        out.buf.push(b'}');
        Ok(())
    }
}

/// Writes an object key (see [`Out::key`]) unless it is one of `skip`, and tells which.
struct Key<'a> {
    out: &'a mut Out,
    first: usize,
    obj_start: usize,
    skip: &'static [&'static str],
}

/// An object key [`Key`] read.
#[derive(PartialEq)]
enum Member {
    /// One of `skip`: not written.
    Skipped,
    /// Written.
    Written(Name),
}

/// Keys the fast path looks for.
#[derive(PartialEq)]
enum Name {
    ResourceType,
    Id,
    Reference,
    Other,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Member;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Member, D::Error> {
        d.deserialize_str(self)
    }
}

impl Key<'_> {
    fn key<E: de::Error>(self, key: &str, borrowed: bool) -> Result<Member, E> {
        if self.skip.contains(&key) {
            return Ok(Member::Skipped);
        }
        self.out.key(self.first, self.obj_start, key, borrowed)?;
        Ok(Member::Written(match key {
            "resourceType" => Name::ResourceType,
            "id" => Name::Id,
            "reference" => Name::Reference,
            _ => Name::Other,
        }))
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Member;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Member, E> {
        self.key(key, true)
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Member, E> {
        self.key(key, false)
    }
}

/// A string value (`resourceType`, `id`): written, and returned.
struct Text<'a>(&'a mut Out);

impl<'de> DeserializeSeed<'de> for Text<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<String, E> {
        self.0.string(v, true);
        Ok(v.to_owned())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.0.string(v, false);
        Ok(v.to_owned())
    }
}

/// `meta` as the store keeps it (see [`meta_rest`]): its members but versionId and
/// lastUpdated, as `"k":v,…`.
struct Meta;

impl<'de> DeserializeSeed<'de> for Meta {
    type Value = Vec<u8>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Meta {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Out::with_capacity(64);
        out.buf.push(b'{');
        while let Some(member) = map.next_key_seed(Key {
            out: &mut out,
            first: 0,
            obj_start: 0,
            skip: &["versionId", "lastUpdated"],
        })? {
            // A skipped value is still parsed as a `Value` would be (same errors), then
            // dropped; repeating a skipped key changes nothing, as both go.
            let mark = out.buf.len();
            map.next_value_seed(Any {
                out: &mut out,
                reference: false,
            })?;
            if member == Member::Skipped {
                out.buf.truncate(mark);
            }
        }
        out.buf.remove(0);
        Ok(out.buf)
    }
}

/// The resource object: its members are written to [`Out`], but `meta`.
struct TopVisitor<'a> {
    out: &'a mut Out,
}

/// What [`TopVisitor`] found besides the body.
#[derive(Default)]
struct Top {
    resource_type: Option<String>,
    id: Option<String>,
    meta_rest: Vec<u8>,
    meta_seen: bool,
    /// `"key":value` of the members with a reference to a Patient, in `Out::buf`: all the
    /// compartment rules can find a patient in.
    references: Vec<(usize, usize)>,
}

impl<'de> Visitor<'de> for TopVisitor<'_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a resource")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let out = self.out;
        let mut top = Top::default();
        out.buf.push(b'{');
        loop {
            out.patient_ref = false;
            let mark = out.buf.len();
            let Some(member) = map.next_key_seed(Key {
                out: &mut *out,
                first: 0,
                obj_start: 0,
                skip: &["meta"],
            })?
            else {
                break;
            };
            let key_start = if out.buf.get(mark) == Some(&b',') {
                mark + 1
            } else {
                mark
            };
            match member {
                Member::Skipped => {
                    if std::mem::replace(&mut top.meta_seen, true) {
                        return Err(bail());
                    }
                    top.meta_rest = map.next_value_seed(Meta)?;
                }
                Member::Written(Name::ResourceType) => {
                    top.resource_type = Some(map.next_value_seed(Text(out))?);
                }
                Member::Written(Name::Id) => top.id = Some(map.next_value_seed(Text(out))?),
                Member::Written(name) => {
                    map.next_value_seed(Any {
                        out: &mut *out,
                        reference: name == Name::Reference,
                    })?;
                    if out.patient_ref {
                        top.references.push((key_start, out.buf.len()));
                    }
                }
            }
        }
        out.buf.push(b'}');
        Ok(top)
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

    /// `put_slice` prepares exactly what `put` of the parsed value does.
    fn same_as_put(json: &str) {
        let fast = Write::put_slice(json.as_bytes()).unwrap_or_else(|| panic!("fell back: {json}"));
        let slow = Write::put(serde_json::from_str(json).unwrap()).unwrap();
        assert_eq!(format!("{fast:?}"), format!("{slow:?}"), "{json}");
    }

    #[test]
    fn put_slice_writes_what_put_writes() {
        same_as_put(
            r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/p1"}}"#,
        );
        // Whitespace, escapes, unicode, numbers in every form, nesting, empty containers.
        same_as_put(
            r#" { "id" : "o2", "resourceType" : "Observation",
                "valueQuantity": {"value": 1.50, "comparator": "\u003c", "x": 1e2, "y": -0,
                  "z": 18446744073709551615, "w": -9223372036854775808, "v": 0.1, "u": 1E-7},
                "note": [{"text": "tab\there \"quoted\" \/ \u00e9 é \ud83d\ude00 \u0001 \u007f"}],
                "a": [], "b": {}, "c": [null, true, false, [[]], {"d": {}}],
                "performer": [{"reference": "Practitioner/x"}, {"reference": "Patient/p2"},
                  {"reference": "Patient/p1"}], "subject": {"reference": "Patient/p1"} } "#,
        );
        // meta anywhere, with and without store-managed fields.
        same_as_put(
            r#"{"meta":{"versionId":"3","profile":["x"],"lastUpdated":"y"},"resourceType":"Encounter","id":"e"}"#,
        );
        same_as_put(r#"{"resourceType":"Encounter","meta":{},"id":"e"}"#);
        same_as_put(r#"{"resourceType":"Encounter","id":"e","meta":{"tag":[{"code":"t"}]}}"#);
        same_as_put(r#"{"resourceType":"Practitioner","id":"d","name":[{"family":"X"}]}"#);
        same_as_put(
            r#"{"resourceType":"Encounter","id":"e","meta":{"versionId":"1","versionId":"2"}}"#,
        );
        same_as_put(
            r#"{"resourceType":"Encounter","id":"e","meta":{"lastUpdated":"x","s\u0065curity":[]}}"#,
        );
        // References to other types, and Patient references outside compartment paths.
        same_as_put(
            r#"{"resourceType":"Observation","id":"o4","encounter":{"reference":"Patient/p"},"subject":{"reference":"Group/g"},"performer":[{"reference":["Patient/q"]}]}"#,
        );
        // Escaped keys, including one that spells `reference`.
        same_as_put(
            r#"{"resourceType":"Observation","id":"o3","subject":{"\u0072eference":"Patient/p9"},"k\"ey":1}"#,
        );
        // A top-level member that holds references only deep down.
        same_as_put(
            r#"{"resourceType":"CarePlan","id":"c","activity":[{"detail":{"performer":[{"reference":"Patient/z"}]}}]}"#,
        );
    }

    #[test]
    fn put_slice_leaves_the_rest_to_put() {
        for json in [
            // Not for the fast path: the whole resource is needed, or a key repeats.
            r#"{"resourceType":"Patient","id":"p1"}"#,
            r#"{"resourceType":"Group","id":"g1","type":"person","actual":true}"#,
            r#"{"resourceType":"Observation","id":"o","status":"a","status":"b"}"#,
            r#"{"resourceType":"Observation","id":"o","code":{"text":"a","text":"b"}}"#,
            r#"{"resourceType":"Observation","id":"o","meta":{},"meta":{}}"#,
            r#"{"resourceType":"Observation","id":"o","x":{"$serde_json::private::RawValue":"1"}}"#,
            // Invalid: `put` reports it.
            r#"{"resourceType":"Observation","id":"o"} x"#,
            r#"{"resourceType":"Observation","id":"o""#,
            r#"{"resourceType":"Banana","id":"o"}"#,
            r#"{"resourceType":"Observation","id":"a b"}"#,
            r#"{"resourceType":"Observation","id":7}"#,
            r#"{"resourceType":"Observation"}"#,
            r#"{"resourceType":"Observation","id":"o","meta":[]}"#,
            r#"["resourceType"]"#,
            "",
            // Refused by `put` as by `serde_json`, even where the value would be dropped.
            r#"{"resourceType":"Observation","id":"o","meta":{"versionId":1e999}}"#,
            r#"{"resourceType":"Observation","id":"o","x":"a	b"}"#,
        ] {
            assert!(Write::put_slice(json.as_bytes()).is_none(), "{json}");
        }
        let bad_utf8 =
            b"{\"resourceType\":\"Observation\",\"id\":\"o\",\"meta\":{\"versionId\":\"\xff\"}}";
        assert!(Write::put_slice(bad_utf8).is_none());
        assert!(serde_json::from_slice::<Value>(bad_utf8).is_err());
        let many: Vec<String> = (0..=MAX_KEYS).map(|i| format!(r#""k{i}":{i}"#)).collect();
        let json = format!(
            r#"{{"resourceType":"Observation","id":"o",{}}}"#,
            many.join(",")
        );
        assert!(Write::put_slice(json.as_bytes()).is_none());
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
