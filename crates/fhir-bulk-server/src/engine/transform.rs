//! Per-line processing of an output unit when `_typeFilter` (P8) or `_elements` (P5) apply
//! to its type. Only then are lines parsed; the plain export path copies bytes untouched.

use fhir_bulk_spec::elements;
use fhir_bulk_spec::type_filter::{self, TypeFilter};
use serde_json::Value;

/// What to do to each line of one unit.
pub(crate) struct Transform {
    filters: Vec<TypeFilter>,
    keep: Vec<String>,
}

impl Transform {
    /// The transform of `resource_type`'s unit, or `None` when lines pass unchanged.
    pub(crate) fn for_type(type_filters: &[String], element_list: &[String], resource_type: &str) -> Result<Option<Self>, String> {
        let filters: Vec<TypeFilter> = type_filter::parse_type_filters(type_filters)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|f| f.resource_type() == resource_type)
            .collect();
        let keep: Vec<String> = elements::for_type(element_list, resource_type).into_iter().map(str::to_string).collect();
        Ok((!filters.is_empty() || !keep.is_empty()).then_some(Transform { filters, keep }))
    }

    /// Appends the lines of `chunk` that pass to `out`, subsetted; returns how many.
    pub(crate) fn apply(&self, chunk: &[u8], out: &mut Vec<u8>) -> Result<u64, String> {
        let keep: Vec<&str> = self.keep.iter().map(String::as_str).collect();
        let mut n = 0;
        for line in chunk.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let mut v: Value = serde_json::from_slice(line).map_err(|e| format!("a stored resource is not JSON: {e}"))?;
            if !self.filters.is_empty() && !type_filter::passes(&self.filters, &v) {
                continue;
            }
            if keep.is_empty() {
                out.extend_from_slice(line);
            } else {
                elements::subset(&mut v, &keep);
                serde_json::to_writer(&mut *out, &v).map_err(|e| e.to_string())?;
            }
            out.push(b'\n');
            n += 1;
        }
        Ok(n)
    }
}
