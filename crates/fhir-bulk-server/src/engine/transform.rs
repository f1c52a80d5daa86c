//! Per-line processing of an output unit when `_typeFilter` (P8) or `_elements` (P5) apply
//! to its type. Only then are lines parsed; the plain export path copies bytes untouched.

use fhir_bulk_spec::elements;
use fhir_bulk_spec::type_filter::{self, TypeFilter};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::HashMap;

/// What to do to each line of one unit.
pub(crate) struct Transform {
    filters: Vec<TypeFilter>,
    keep: Vec<String>,
    /// With filters and no `_elements`: the top-level elements the filters read, the only
    /// ones a line needs parsed (see [`Transform::parse`]).
    filter_elements: Option<Vec<&'static str>>,
}

impl Transform {
    /// The transform of `resource_type`'s unit, or `None` when lines pass unchanged.
    pub(crate) fn for_type(
        type_filters: &[String],
        element_list: &[String],
        resource_type: &str,
    ) -> Result<Option<Self>, String> {
        let filters: Vec<TypeFilter> = type_filter::parse_type_filters(type_filters)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|f| f.resource_type() == resource_type)
            .collect();
        let keep: Vec<String> = elements::for_type(element_list, resource_type)
            .into_iter()
            .map(str::to_string)
            .collect();
        let filter_elements = if keep.is_empty() {
            filters
                .iter()
                .map(TypeFilter::top_level_elements)
                .collect::<Option<Vec<_>>>()
                .map(|names| names.concat())
        } else {
            None
        };
        Ok(
            (!filters.is_empty() || !keep.is_empty()).then_some(Transform {
                filters,
                keep,
                filter_elements,
            }),
        )
    }

    /// `line` parsed as far as this transform needs. A filter without `_elements` reads a
    /// few top-level elements, and a passing line is written as stored: so the line is
    /// split into its top-level members without building them (borrowed raw JSON), and only
    /// the elements the filters read are parsed, into an object holding just them. Full
    /// parses spent their time building every member of every line (a profile of
    /// Observation `category=laboratory`: `Value` deserialisation, IndexMap inserts and
    /// malloc/free over 60%). A line this cannot split (a key with an escape) is parsed whole.
    fn parse(&self, line: &[u8]) -> Result<Value, String> {
        if let Some(names) = &self.filter_elements {
            let mut de = serde_json::Deserializer::from_slice(line);
            if let Ok(members) = (Members { names }).deserialize(&mut de) {
                let mut partial = serde_json::Map::new();
                for (name, raw) in members {
                    let v: Value = serde_json::from_str(raw.get())
                        .map_err(|e| format!("a stored resource is not JSON: {e}"))?;
                    partial.insert(name.to_string(), v);
                }
                return Ok(Value::Object(partial));
            }
        }
        serde_json::from_slice(line).map_err(|e| format!("a stored resource is not JSON: {e}"))
    }

    /// Appends the lines of `chunk` that pass to `out`, subsetted; returns how many.
    pub(crate) fn apply(&self, chunk: &[u8], out: &mut Vec<u8>) -> Result<u64, String> {
        let mut n = 0;
        for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if self.emit(line, out)? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Appends `line` to `out` (with its newline) as the export writes it, subsetted, if it
    /// passes. A line no filter can match by its bytes is dropped before any parse: with a
    /// selective filter that is most lines (P8, `TypeFilter::may_match`).
    fn emit(&self, line: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        if !self.filters.is_empty() && !self.filters.iter().any(|f| f.may_match(line)) {
            return Ok(false);
        }
        let v = self.parse(line)?;
        self.write(line, v, out)
    }

    /// True when `resource` passes the type's filters (P8b: any of them).
    pub(crate) fn passes(&self, resource: &Value) -> bool {
        self.filters.is_empty() || type_filter::passes(&self.filters, resource)
    }

    /// Appends `line` (parsed as `v`) to `out` with its newline, subsetted, if it passes.
    pub(crate) fn write(
        &self,
        line: &[u8],
        mut v: Value,
        out: &mut Vec<u8>,
    ) -> Result<bool, String> {
        if !self.passes(&v) {
            return Ok(false);
        }
        if self.keep.is_empty() {
            out.extend_from_slice(line);
        } else {
            let keep: Vec<&str> = self.keep.iter().map(String::as_str).collect();
            elements::subset(&mut v, &keep);
            serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())?;
        }
        out.push(b'\n');
        Ok(true)
    }
}

/// Picks the members `names` (and `resourceType`) out of a JSON object as borrowed raw JSON,
/// skipping the others unbuilt. Fails on a key it cannot borrow (one with an escape).
struct Members<'n> {
    names: &'n [&'static str],
}

impl<'de> DeserializeSeed<'de> for Members<'_> {
    type Value = Vec<(&'de str, &'de RawValue)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Members<'_> {
    type Value = Vec<(&'de str, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut picked = Vec::with_capacity(self.names.len() + 1);
        while let Some(key) = map.next_key::<&'de str>()? {
            if key == "resourceType" || self.names.contains(&key) {
                picked.push((key, map.next_value::<&'de RawValue>()?));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(picked)
    }
}

/// The transforms of every type a unit meets (organized output holds many types), built
/// once per type on first use.
pub(crate) struct Transforms<'a> {
    type_filters: &'a [String],
    elements: &'a [String],
    by_type: HashMap<String, Option<Transform>>,
}

impl<'a> Transforms<'a> {
    /// Transforms for the job's `_typeFilter` and `_elements`.
    pub(crate) fn new(type_filters: &'a [String], elements: &'a [String]) -> Self {
        Transforms {
            type_filters,
            elements,
            by_type: HashMap::new(),
        }
    }

    /// The transform of `resource_type`, or `None` when its lines pass unchanged.
    pub(crate) fn get(&mut self, resource_type: &str) -> Result<Option<&Transform>, String> {
        if !self.by_type.contains_key(resource_type) {
            let t = Transform::for_type(self.type_filters, self.elements, resource_type)?;
            self.by_type.insert(resource_type.to_string(), t);
        }
        Ok(self.by_type[resource_type].as_ref())
    }

    /// Appends `line` of `resource_type` to `out` (with its newline) as the export writes it:
    /// unchanged, subsetted, or not at all when it fails the type's filters.
    pub(crate) fn write(
        &mut self,
        resource_type: &str,
        line: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, String> {
        match self.get(resource_type)? {
            None => {
                out.extend_from_slice(line);
                out.push(b'\n');
                Ok(true)
            }
            Some(t) => t.emit(line, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Transform;

    #[test]
    fn filter_only_lines_pass_as_stored() {
        let t = Transform::for_type(
            &["Observation?category=laboratory".into()],
            &[],
            "Observation",
        )
        .unwrap()
        .unwrap();
        let lab = r#"{"resourceType":"Observation","id":"a","category":[{"coding":[{"code":"laboratory"}]}],"valueQuantity":{"value":1.50}}"#;
        let vital = r#"{"resourceType":"Observation","id":"b","category":[{"coding":[{"code":"vital-signs"}]}]}"#;
        // A key with an escape cannot be borrowed: the line is parsed whole, same verdict.
        let escaped = r#"{"resourceType":"Observation","id":"c","categ\u006fry":[{"coding":[{"code":"laboratory"}]}]}"#;
        let chunk = format!("{lab}\n{vital}\n{escaped}\n");
        let mut out = Vec::new();
        assert_eq!(t.apply(chunk.as_bytes(), &mut out).unwrap(), 2);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{lab}\n{escaped}\n")
        );
        // A line the screen passes must parse.
        assert!(t.apply(b"{\"laboratory\":", &mut Vec::new()).is_err());
    }
}
