//! One parsed search parameter of a filter (`code=a,b`), and how it matches a resource.
//!
//! A criterion holds the table row of its parameter and the OR-list of values, already
//! parsed for the parameter's kind. Matching walks the parameter's element paths through the
//! borrowed resource and compares in place: no allocation per resource.

use super::date_range::{self, Prefix, Range};
use super::text_fold::{contains_folded, starts_with_folded};
use crate::compartment::reference_target;
use crate::generated::{SearchParam, for_each_element};
use serde_json::{Map, Value};

/// A search parameter with its values: the resource matches when an element at one of the
/// parameter's paths matches one of the values (or, for `:missing`/`:not`, as those say).
#[derive(Debug, Clone)]
pub(super) struct Criterion {
    pub(super) param: &'static SearchParam,
    pub(super) test: Test,
}

/// The comparison a criterion makes, by parameter kind and modifier.
#[derive(Debug, Clone)]
pub(super) enum Test {
    /// `:missing=true|false`: whether the resource has no element at the paths.
    Missing(bool),
    /// Token values; with `:not`, the resource matches when no element matches any value.
    Token {
        values: Vec<Token>,
        not: bool,
    },
    /// `:text`: folded substrings of CodeableConcept.text or Coding.display.
    TokenText(Vec<String>),
    Reference(Vec<ReferenceValue>),
    Date(Vec<DateValue>),
    String {
        mode: StringMode,
        values: Vec<String>,
    },
    Number(Vec<NumberValue>),
    Quantity(Vec<QuantityValue>),
    Uri {
        mode: UriMode,
        values: Vec<String>,
    },
}

impl Criterion {
    pub(super) fn matches(&self, resource: &Value) -> bool {
        match &self.test {
            Test::Missing(missing) => self.any(resource, |_| true) != *missing,
            Test::Token { values, not } => {
                self.any(resource, |e| values.iter().any(|v| v.matches(e))) != *not
            }
            Test::TokenText(needles) => self.any(resource, |e| {
                needles.iter().any(|n| token_text_matches(e, n))
            }),
            Test::Reference(values) => self.any(resource, |e| values.iter().any(|v| v.matches(e))),
            Test::Date(values) => self.any(resource, |e| {
                each_date_range(e, &mut |target| {
                    values.iter().any(|v| v.prefix.admits(v.range, target))
                })
            }),
            Test::String { mode, values } => self.any(resource, |e| {
                each_text(e, &mut |s| values.iter().any(|v| mode.matches(s, v)))
            }),
            Test::Number(values) => self.any(resource, |e| {
                e.as_f64()
                    .or_else(|| e.get("value").and_then(Value::as_f64))
                    .is_some_and(|n| values.iter().any(|v| v.matches(n)))
            }),
            Test::Quantity(values) => self.any(resource, |e| values.iter().any(|v| v.matches(e))),
            Test::Uri { mode, values } => self.any(resource, |e| {
                e.as_str()
                    .is_some_and(|s| values.iter().any(|v| mode.matches(s, v)))
            }),
        }
    }

    /// Strings one of which the JSON text of every matching resource holds verbatim (an
    /// element's value equals it or contains it), for a byte screen before parsing
    /// (`screen.rs`); `None` when a match needs no such string (`:missing`, `:not`, folded
    /// text, dates, numbers, `system|` tokens, `:above`).
    pub(super) fn needles(&self) -> Option<Vec<&str>> {
        let mut needles = Vec::new();
        match &self.test {
            Test::Token { values, not: false } => {
                for v in values {
                    // A token matches a string equal to its code, a Coding whose code (or
                    // value) equals it, or a boolean spelt like it.
                    needles.push(v.code.as_deref()?);
                }
            }
            Test::Reference(values) => {
                for v in values {
                    // The reference equals the value, or names the same resource (its id is
                    // then part of the reference), or a canonical equals it.
                    needles.push(match &v.target {
                        ReferenceTarget::Resource { id, .. } | ReferenceTarget::Id { id, .. } => {
                            id.as_str()
                        }
                        ReferenceTarget::Other => v.raw.as_str(),
                    });
                }
            }
            Test::Uri {
                mode: UriMode::Exact | UriMode::Below,
                values,
            } => needles.extend(values.iter().map(String::as_str)),
            _ => return None,
        }
        Some(needles)
    }

    /// Whether `f` holds for some element at some path of the parameter.
    fn any(&self, resource: &Value, mut f: impl FnMut(&Value) -> bool) -> bool {
        self.param
            .paths
            .iter()
            .any(|path| for_each_element(resource, path, &mut f))
    }
}

/// The system part of a token: `code` (any), `|code` (none), `system|code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TokenSystem {
    Any,
    Absent,
    Is(String),
}

/// A token value: `[system|]code`, or `system|` (any code of the system).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Token {
    pub(super) system: TokenSystem,
    pub(super) code: Option<String>,
}

impl Token {
    /// Codings and CodeableConcepts compare system and code; Identifiers and ContactPoints
    /// system and value. Plain `code`/`id`/`string`/`uri` elements and booleans have no system
    /// of their own, so only the code part is compared.
    fn matches(&self, element: &Value) -> bool {
        match element {
            Value::String(s) => self.code.as_deref().is_none_or(|c| c == s),
            Value::Bool(b) => self
                .code
                .as_deref()
                .is_none_or(|c| c == if *b { "true" } else { "false" }),
            Value::Object(o) => match o.get("coding") {
                Some(Value::Array(codings)) => codings
                    .iter()
                    .any(|c| c.as_object().is_some_and(|c| self.matches_coding(c))),
                Some(Value::Object(coding)) => self.matches_coding(coding),
                _ => self.matches_coding(o),
            },
            _ => false,
        }
    }

    fn matches_coding(&self, coding: &Map<String, Value>) -> bool {
        let text = |k: &str| coding.get(k).and_then(Value::as_str);
        let code = text("code").or_else(|| text("value"));
        let system_ok = match &self.system {
            TokenSystem::Any => true,
            TokenSystem::Absent => text("system").is_none(),
            TokenSystem::Is(s) => text("system") == Some(s.as_str()),
        };
        let code_ok = self.code.as_deref().is_none_or(|want| code == Some(want));
        system_ok && code_ok
    }
}

fn token_text_matches(element: &Value, needle: &str) -> bool {
    let has = |v: Option<&Value>| {
        v.and_then(Value::as_str)
            .is_some_and(|s| contains_folded(s, needle))
    };
    has(element.get("text"))
        || has(element.get("display"))
        || match element.get("coding") {
            Some(Value::Array(codings)) => codings.iter().any(|c| has(c.get("display"))),
            _ => false,
        }
}

/// What a reference value names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReferenceTarget {
    /// `Type/id` or an absolute URL ending in it: matches references to that resource,
    /// relative or absolute.
    Resource { resource_type: String, id: String },
    /// A bare `id`, with the type from a `:Type` modifier if given.
    Id {
        resource_type: Option<&'static str>,
        id: String,
    },
    /// Anything else (e.g. a canonical URL): compared as text only.
    Other,
}

/// A reference value (`subject=Patient/1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ReferenceValue {
    pub(super) raw: String,
    pub(super) target: ReferenceTarget,
}

impl ReferenceValue {
    fn matches(&self, element: &Value) -> bool {
        match element {
            // canonical/uri elements, possibly with a `|version`
            Value::String(s) => {
                s == &self.raw || s.split_once('|').is_some_and(|(url, _)| url == self.raw)
            }
            Value::Object(o) => {
                let Some(reference) = o.get("reference").and_then(Value::as_str) else {
                    return false;
                };
                if reference == self.raw {
                    return true;
                }
                let Some((ty, id)) = reference_target(reference) else {
                    return false;
                };
                match &self.target {
                    ReferenceTarget::Resource {
                        resource_type,
                        id: want,
                    } => ty == resource_type && id == want,
                    ReferenceTarget::Id {
                        resource_type,
                        id: want,
                    } => id == want && resource_type.is_none_or(|t| t == ty),
                    ReferenceTarget::Other => false,
                }
            }
            _ => false,
        }
    }
}

/// A date value with its prefix (`ge2015-01-01`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DateValue {
    pub(super) prefix: Prefix,
    /// The search range (for `ap`, already widened).
    pub(super) range: Range,
}

/// Calls `f` on the ranges of a date, dateTime, instant, Period or Timing (`event` and
/// `repeat.boundsPeriod`), stopping at the first `true`.
fn each_date_range(element: &Value, f: &mut impl FnMut(Range) -> bool) -> bool {
    match element {
        Value::String(s) => date_range::parse_range(s).is_some_and(f),
        Value::Object(o) if o.contains_key("start") || o.contains_key("end") => {
            period_range(o).is_some_and(f)
        }
        Value::Object(o) => {
            let events = match o.get("event") {
                Some(Value::Array(events)) => events.iter().any(|e| {
                    e.as_str()
                        .and_then(date_range::parse_range)
                        .is_some_and(&mut *f)
                }),
                _ => false,
            };
            events
                || o.get("repeat")
                    .and_then(|r| r.get("boundsPeriod"))
                    .and_then(Value::as_object)
                    .and_then(period_range)
                    .is_some_and(f)
        }
        _ => false,
    }
}

fn period_range(period: &Map<String, Value>) -> Option<Range> {
    let bound = |k: &str| match period.get(k) {
        None | Some(Value::Null) => Some(None),
        Some(v) => v.as_str().and_then(date_range::parse_range).map(Some),
    };
    let (start, end) = (bound("start")?, bound("end")?);
    Some((
        start.map_or(i64::MIN, |r| r.0),
        end.map_or(i64::MAX, |r| r.1),
    ))
}

/// How a string value compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StringMode {
    /// Default: the element, folded, starts with the value (folded).
    StartsWith,
    /// `:exact`: equal, case and accents included.
    Exact,
    /// `:contains`: the element, folded, contains the value (folded).
    Contains,
}

impl StringMode {
    fn matches(self, element: &str, value: &str) -> bool {
        match self {
            StringMode::StartsWith => starts_with_folded(element, value),
            StringMode::Exact => element == value,
            StringMode::Contains => contains_folded(element, value),
        }
    }
}

/// The parts of a HumanName or Address that string search reads.
const TEXT_PARTS: &[&str] = &[
    "text",
    "family",
    "given",
    "prefix",
    "suffix",
    "line",
    "city",
    "district",
    "state",
    "postalCode",
    "country",
];

/// Calls `f` on a string, or on the parts of a HumanName or Address, stopping at the first `true`.
fn each_text(element: &Value, f: &mut impl FnMut(&str) -> bool) -> bool {
    match element {
        Value::String(s) => f(s),
        Value::Object(o) => TEXT_PARTS.iter().any(|k| match o.get(*k) {
            Some(Value::String(s)) => f(s),
            Some(Value::Array(items)) => items.iter().any(|i| i.as_str().is_some_and(&mut *f)),
            _ => false,
        }),
        _ => false,
    }
}

/// A number with its prefix and implied precision (`100` is [99.5, 100.5)).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct NumberValue {
    pub(super) prefix: Prefix,
    pub(super) value: f64,
    pub(super) half_width: f64,
}

impl NumberValue {
    fn matches(&self, n: f64) -> bool {
        self.prefix.admits_number(self.value, self.half_width, n)
    }
}

/// A quantity (`[prefix]number[|system|code]`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct QuantityValue {
    pub(super) number: NumberValue,
    pub(super) system: Option<String>,
    pub(super) code: Option<String>,
}

impl QuantityValue {
    /// Compares `value`, then `system` and `code` when given; without a system the code may
    /// also match `unit` (or a Money's `currency`).
    fn matches(&self, element: &Value) -> bool {
        let text = |k: &str| element.get(k).and_then(Value::as_str);
        element
            .get("value")
            .and_then(Value::as_f64)
            .is_some_and(|n| self.number.matches(n))
            && self
                .system
                .as_deref()
                .is_none_or(|s| text("system") == Some(s))
            && self.code.as_deref().is_none_or(|c| {
                text("code") == Some(c)
                    || self.system.is_none()
                        && (text("unit") == Some(c) || text("currency") == Some(c))
            })
    }
}

/// How a uri value compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UriMode {
    /// Equal (a canonical's `|version` is ignored when the value has none).
    Exact,
    /// `:below`: the element starts with the value.
    Below,
    /// `:above`: the value starts with the element.
    Above,
}

impl UriMode {
    fn matches(self, element: &str, value: &str) -> bool {
        match self {
            UriMode::Exact => {
                element == value || element.split_once('|').is_some_and(|(url, _)| url == value)
            }
            UriMode::Below => element.starts_with(value),
            UriMode::Above => !element.is_empty() && value.starts_with(element),
        }
    }
}
