//! `_typeFilter` (P8): parsing filters and matching resources against them, without I/O.
//!
//! A filter is a FHIR search on one type, `Observation?code=http://loinc.org|1234-5&date=ge2020`.
//! Rules, by checklist item:
//! - P8a/P8e: a `_typeFilter` value arrives decoded once; it may hold several filters joined
//!   by commas, split only where a comma is followed by `Type?` ([`split_filter_list`]).
//! - P8b: several filters for one type are OR'ed; within a filter `&` is AND and a comma in a
//!   value is OR; types without a filter are not filtered ([`passes`]).
//! - P8c: result parameters (`_include`, `_sort`, `_count`, `_elements`, …) are rejected, and
//!   so is anything we cannot evaluate exactly (P8d: better an error than a wrong export).
//!
//! Parameters come from the generated R4 search parameter table ([`search_param`]). Supported:
//! - token: `code`, `system|code`, `|code`, `system|` on CodeableConcept, Coding, Identifier,
//!   ContactPoint, code/id/string/uri elements (system not compared) and booleans; modifiers
//!   `:not` (no element matches any value; resources without the element match) and `:text`
//!   (case-insensitive substring of CodeableConcept.text / Coding.display).
//! - reference: `Type/id`, `id`, absolute URLs ending in `Type/id` (relative and absolute
//!   references compare by type and id), canonical URLs (as text, `|version` ignored), the
//!   `:Type` modifier; `where(resolve() is Patient)` paths only match Patient references.
//! - date: prefixes `eq ne gt lt ge le sa eb ap`, partial dates to full date-times with
//!   timezone, against date, dateTime, instant, Period and Timing (`event`,
//!   `repeat.boundsPeriod`) elements, as ranges (see `date_range.rs`); `_lastUpdated` too.
//! - string: case- and accent-insensitive prefix (default), `:exact`, `:contains`, on strings
//!   and on the parts of HumanName and Address.
//! - number and quantity: prefixes, implied precision (`100` is [99.5, 100.5)); quantity
//!   `number|system|code` and `number||code` (code or unit).
//! - uri: exact (canonical `|version` ignored), `:below`, `:above` (`_profile`, `_source`).
//! - every kind: `:missing=true|false`.
//!
//! Not supported (rejected with an error): composite and special parameters, chained
//! (`subject.name`) and reverse-chained (`_has`) parameters, `_list`, `_filter`, `_text`,
//! `_content`, `_query`, `phonetic`, Bundle `composition`/`message`, Patient `deceased`, the
//! modifiers `:in`, `:not-in`, `:above`/`:below` on tokens, `:of-type`, `:identifier`, and
//! quantity values against Range/SampledData elements (those never match).

mod criterion;
mod date_range;
mod query;
mod screen;
mod text_fold;

#[cfg(test)]
mod tests;

use crate::generated::search_params::SEARCH_PARAMS;
use crate::resource_type::is_resource_type;
use criterion::Criterion;
use screen::Screen;
use serde_json::Value;
use std::fmt;

pub use crate::generated::{ElementPath, ParamKind, SearchParam, Step};

/// One parsed filter: a resource type and the criteria a resource of that type must meet.
#[derive(Debug, Clone)]
pub struct TypeFilter {
    /// The filter as given (decoded once), for logs and messages.
    text: String,
    resource_type: &'static str,
    /// AND'ed.
    criteria: Vec<Criterion>,
    /// The byte check of [`TypeFilter::may_match`], built from `criteria`.
    screen: Screen,
}

impl TypeFilter {
    /// Parses one filter, `Type?param=value&…` (no comma list; see [`parse_type_filters`]).
    pub fn parse(text: &str) -> Result<TypeFilter, TypeFilterError> {
        query::parse_filter(text)
    }

    /// The resource type the filter applies to, so the server can tell early which types it
    /// must parse and test.
    pub fn resource_type(&self) -> &'static str {
        self.resource_type
    }

    /// The filter text as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The top-level elements the filter's criteria read (`resourceType` aside), so that a
    /// caller may parse only those and pass [`TypeFilter::matches`] an object holding just
    /// them; `None` when some path does not start at a named element.
    pub fn top_level_elements(&self) -> Option<Vec<&'static str>> {
        let mut names = Vec::new();
        for path in self.criteria.iter().flat_map(|c| c.param.paths) {
            match path.first() {
                Some(Step::Field(name)) => {
                    if !names.contains(name) {
                        names.push(*name);
                    }
                }
                _ => return None,
            }
        }
        Some(names)
    }

    /// False only when no resource whose JSON text is `json` can match: a byte check (each
    /// token, reference or uri criterion needs one of its values verbatim in the text) that
    /// lets an export skip parsing most of the lines a filter rejects. A `true` decides
    /// nothing; [`TypeFilter::matches`] does.
    pub fn may_match(&self, json: &[u8]) -> bool {
        self.screen.may_match(json)
    }

    /// Whether `resource` is of the filter's type and meets every criterion.
    pub fn matches(&self, resource: &Value) -> bool {
        resource.get("resourceType").and_then(Value::as_str) == Some(self.resource_type)
            && self.criteria.iter().all(|c| c.matches(resource))
    }
}

impl fmt::Display for TypeFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why a `_typeFilter` value was rejected; the message names the filter and the parameter,
/// ready for an OperationOutcome's diagnostics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TypeFilterError {
    /// The text is not `Type?param=value&…`, or a parameter has no `=value`.
    #[error("_typeFilter '{filter}': {reason}")]
    Malformed {
        /// The filter.
        filter: String,
        /// What is wrong.
        reason: String,
    },
    /// The type before `?` is not an R4 resource type.
    #[error("_typeFilter '{filter}': '{resource_type}' is not an R4 resource type")]
    UnknownType {
        /// The filter.
        filter: String,
        /// The type as written.
        resource_type: String,
    },
    /// A result parameter, which a filter SHALL NOT hold (P8c).
    #[error("_typeFilter '{filter}': result parameter '{param}' is not allowed in a filter")]
    ResultParam {
        /// The filter.
        filter: String,
        /// The parameter.
        param: String,
    },
    /// The type has no search parameter of that name.
    #[error("_typeFilter '{filter}': {resource_type} has no search parameter '{param}'")]
    UnknownParam {
        /// The filter.
        filter: String,
        /// The filter's type.
        resource_type: String,
        /// The parameter, without modifier.
        param: String,
    },
    /// A parameter that exists but that we cannot evaluate (composite, special, chained, …).
    #[error("_typeFilter '{filter}': search parameter '{param}' is not supported: {reason}")]
    UnsupportedParam {
        /// The filter.
        filter: String,
        /// The parameter as written.
        param: String,
        /// Why.
        reason: &'static str,
    },
    /// A modifier the parameter's kind does not support (here).
    #[error(
        "_typeFilter '{filter}': modifier ':{modifier}' is not supported on {kind} parameter '{param}'"
    )]
    UnsupportedModifier {
        /// The filter.
        filter: String,
        /// The parameter, without modifier.
        param: String,
        /// The modifier, without `:`.
        modifier: String,
        /// The parameter's kind.
        kind: ParamKind,
    },
    /// A value that does not parse for the parameter's kind.
    #[error("_typeFilter '{filter}': invalid value '{value}' for '{param}': {reason}")]
    InvalidValue {
        /// The filter.
        filter: String,
        /// The parameter as written.
        param: String,
        /// The value.
        value: String,
        /// What was expected.
        reason: &'static str,
    },
}

/// Parses every `_typeFilter` value of a request (repeats already collected, K7).
///
/// Each value may hold several filters joined by commas (P8e). An empty value is an error.
pub fn parse_type_filters(values: &[String]) -> Result<Vec<TypeFilter>, TypeFilterError> {
    let mut filters = Vec::new();
    for value in values {
        for text in split_filter_list(value) {
            filters.push(TypeFilter::parse(text)?);
        }
    }
    Ok(filters)
}

/// Splits a decoded `_typeFilter` value at each comma followed by `Type?` for a known
/// resource type (P8e); commas inside search values (`status=a,b`) stay. Pieces are trimmed.
pub fn split_filter_list(value: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (comma, _) in value.match_indices(',') {
        let rest = value[comma + 1..].trim_start();
        if rest
            .split_once('?')
            .is_some_and(|(ty, _)| is_resource_type(ty))
        {
            pieces.push(value[start..comma].trim());
            start = comma + 1;
        }
    }
    pieces.push(value[start..].trim());
    pieces
}

/// Whether `resource` passes `filters` (P8b): true when no filter targets its type, else
/// when at least one of the filters for its type matches.
pub fn passes(filters: &[TypeFilter], resource: &Value) -> bool {
    let resource_type = resource.get("resourceType").and_then(Value::as_str);
    let mut targeted = false;
    for filter in filters
        .iter()
        .filter(|f| Some(f.resource_type) == resource_type)
    {
        if filter.matches(resource) {
            return true;
        }
        targeted = true;
    }
    !targeted
}

/// The R4 search parameter `code` of `resource_type`, its own or inherited from
/// `Resource`/`DomainResource` (`_id`, `_lastUpdated`, `_tag`, …).
pub fn search_param(resource_type: &str, code: &str) -> Option<&'static SearchParam> {
    table_rows(resource_type).into_iter().find_map(|ty| {
        let params = table_row(ty)?;
        params
            .binary_search_by(|p| p.code.cmp(code))
            .ok()
            .map(|i| &params[i])
    })
}

/// Every R4 search parameter of `resource_type`: its own (sorted by code), then those of
/// `Resource` and `DomainResource`. Use [`SearchParam::is_supported`] to list the ones
/// `_typeFilter` accepts (CS3).
pub fn search_params(resource_type: &str) -> impl Iterator<Item = &'static SearchParam> {
    table_rows(resource_type)
        .into_iter()
        .filter_map(table_row)
        .flatten()
}

/// The table rows that hold the parameters of `resource_type` (none for unknown types).
fn table_rows(resource_type: &str) -> [&str; 3] {
    match resource_type {
        // Not DomainResources: no `_text`.
        "Binary" | "Bundle" => [resource_type, "Resource", ""],
        _ if is_resource_type(resource_type) => [resource_type, "Resource", "DomainResource"],
        _ => [""; 3],
    }
}

fn table_row(base: &str) -> Option<&'static [SearchParam]> {
    SEARCH_PARAMS
        .binary_search_by(|(ty, _)| (*ty).cmp(base))
        .ok()
        .map(|i| SEARCH_PARAMS[i].1)
}
