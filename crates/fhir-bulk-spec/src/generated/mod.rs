//! Tables generated from the official FHIR R4 definitions, and the shapes they are made of.
//!
//! `resource_types.rs`, `search_params.rs` and `compartment_table.rs` are written by
//! `cargo xtask gen` from `shared/fhir-r4` (see `xtask/src/codegen.rs`) and checked in, so the
//! crate builds without the definitions; this file is hand-written. A test below fails when the
//! checked-in tables differ from a fresh generation (it skips when the definitions are absent).
//!
//! A table path is a list of [`Step`]s from the resource root. [`for_each_element`] follows one
//! through a parsed resource without allocating: arrays met on the way flatten, like FHIRPath.

#[rustfmt::skip]
pub(crate) mod compartment_table;
#[rustfmt::skip]
pub(crate) mod resource_types;
#[rustfmt::skip]
pub(crate) mod search_params;

use serde_json::Value;
use std::fmt;

/// One step of an element path reduced from a FHIRPath expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Descend into the JSON property of this name (choice elements carry their type suffix,
    /// e.g. `valueQuantity`); an array found there contributes each of its items.
    Field(&'static str),
    /// Keep only the elements whose property `.0` is the string `.1` (`where(system='email')`).
    Where(&'static str, &'static str),
    /// Keep only References whose target is of this resource type (`where(resolve() is Patient)`).
    ResolvesTo(&'static str),
}

/// A path from the resource root to the elements a search parameter or compartment rule reads.
pub type ElementPath = &'static [Step];

/// The kind (`SearchParameter.type`) of a search parameter, which decides how values compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A number, with prefixes (`gt5`).
    Number,
    /// A date, dateTime, instant or Period, compared as time ranges.
    Date,
    /// A string, HumanName or Address, matched by case- and accent-insensitive prefix.
    String,
    /// A code, Coding, CodeableConcept, Identifier, ContactPoint or boolean (`system|code`).
    Token,
    /// A Reference (`Type/id`) or canonical URL.
    Reference,
    /// A combination of other parameters (`code-value-quantity`); not supported in filters.
    Composite,
    /// A Quantity (`5.4|http://unitsofmeasure.org|mg`).
    Quantity,
    /// A URI (`_profile`).
    Uri,
    /// A parameter with its own algorithm (`near`); not supported in filters.
    Special,
}

impl ParamKind {
    /// The FHIR name of the kind (`token`, `reference`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            ParamKind::Number => "number",
            ParamKind::Date => "date",
            ParamKind::String => "string",
            ParamKind::Token => "token",
            ParamKind::Reference => "reference",
            ParamKind::Composite => "composite",
            ParamKind::Quantity => "quantity",
            ParamKind::Uri => "uri",
            ParamKind::Special => "special",
        }
    }
}

impl fmt::Display for ParamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An R4 search parameter as it applies to one resource type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchParam {
    /// The name used in queries (`code`, `_lastUpdated`, `patient`).
    pub code: &'static str,
    /// How values compare.
    pub kind: ParamKind,
    /// The elements it reads; empty when its expression does not reduce to paths.
    pub paths: &'static [ElementPath],
}

impl SearchParam {
    /// A table row (used by the generated code).
    pub const fn new(code: &'static str, kind: ParamKind, paths: &'static [ElementPath]) -> Self {
        SearchParam { code, kind, paths }
    }

    /// Whether `_typeFilter` can evaluate it: it has paths and is not composite or special.
    pub fn is_supported(&self) -> bool {
        !self.paths.is_empty() && !matches!(self.kind, ParamKind::Composite | ParamKind::Special)
    }
}

/// Calls `f` on each element `path` reaches from `root`, stopping at the first `true`.
///
/// Returns whether some call returned `true`. `null` items (placeholders in primitive arrays
/// that carry extensions) are skipped.
pub fn for_each_element<'a>(
    root: &'a Value,
    path: &[Step],
    f: &mut impl FnMut(&'a Value) -> bool,
) -> bool {
    match root {
        Value::Array(items) => items.iter().any(|item| for_each_element(item, path, f)),
        Value::Null => false,
        _ => match path.split_first() {
            None => f(root),
            Some((Step::Field(name), rest)) => root
                .get(*name)
                .is_some_and(|v| for_each_element(v, rest, f)),
            Some((Step::Where(key, value), rest)) => {
                root.get(*key).and_then(Value::as_str) == Some(*value)
                    && for_each_element(root, rest, f)
            }
            Some((Step::ResolvesTo(ty), rest)) => {
                let target = root
                    .get("reference")
                    .and_then(Value::as_str)
                    .and_then(crate::compartment::reference_target);
                target.is_some_and(|(t, _)| t == *ty) && for_each_element(root, rest, f)
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    /// The checked-in tables are what `cargo xtask gen` makes from the definitions today.
    #[test]
    fn generated_tables_are_fresh() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let fhir_dir = xtask::codegen::fhir_dir(&workspace);
        if !fhir_dir.exists() {
            eprintln!("skipped: {} not found", fhir_dir.display());
            return;
        }
        let generation = xtask::codegen::generate(&fhir_dir).expect("generation runs");
        let stale = xtask::codegen::stale_files(&workspace, &generation);
        assert!(stale.is_empty(), "run `cargo xtask gen`: stale {stale:?}");
    }

    #[test]
    fn paths_flatten_arrays_and_filter() {
        let r = json!({
            "telecom": [{"system": "email", "value": "a@x"}, {"system": "phone", "value": "1"}, null],
            "link": [{"other": {"reference": "Patient/1"}}, {"other": [{"reference": "Group/2"}]}]
        });
        let mut seen = Vec::new();
        for_each_element(
            &r,
            &[
                Step::Field("telecom"),
                Step::Where("system", "email"),
                Step::Field("value"),
            ],
            &mut |v| {
                seen.push(v.clone());
                false
            },
        );
        assert_eq!(seen, [json!("a@x")]);
        let mut refs = 0;
        for_each_element(
            &r,
            &[
                Step::Field("link"),
                Step::Field("other"),
                Step::ResolvesTo("Patient"),
            ],
            &mut |_| {
                refs += 1;
                false
            },
        );
        assert_eq!(refs, 1);
        assert!(for_each_element(
            &r,
            &[Step::Field("link"), Step::Field("other")],
            &mut |v| v["reference"] == "Group/2"
        ));
        assert!(!for_each_element(
            &r,
            &[Step::Field("missing")],
            &mut |_| true
        ));
    }
}
