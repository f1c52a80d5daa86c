//! Per-line processing of an output unit when `_typeFilter` (P8) or `_elements` (P5) apply
//! to its type. Only then are lines parsed; the plain export path copies bytes untouched.

use fhir_bulk_spec::elements;
use fhir_bulk_spec::type_filter::{self, TypeFilter};
use serde_json::Value;
use std::collections::HashMap;

/// What to do to each line of one unit.
pub(crate) struct Transform {
    filters: Vec<TypeFilter>,
    keep: Vec<String>,
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
        Ok((!filters.is_empty() || !keep.is_empty()).then_some(Transform { filters, keep }))
    }

    /// Appends the lines of `chunk` that pass to `out`, subsetted; returns how many.
    pub(crate) fn apply(&self, chunk: &[u8], out: &mut Vec<u8>) -> Result<u64, String> {
        let mut n = 0;
        for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(line)
                .map_err(|e| format!("a stored resource is not JSON: {e}"))?;
            if self.write(line, v, out)? {
                n += 1;
            }
        }
        Ok(n)
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
            Some(t) => {
                let v: Value = serde_json::from_slice(line)
                    .map_err(|e| format!("a stored resource is not JSON: {e}"))?;
                t.write(line, v, out)
            }
        }
    }
}
