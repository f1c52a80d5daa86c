//! `$export` kick-off requests (§1–§2): the level, the `Prefer` header, and the parameters
//! from a GET query or a POST `Parameters` body, parsed into one [`ExportRequest`].
//!
//! Parsing is strict or lenient (K5). Strict: every unknown, unsupported or malformed
//! parameter is a [`KickoffError`] naming the parameter and value (a 400). Lenient: the
//! parameter is dropped and a warning is returned for the manifest's `error` file.
//! Which optional parameters are implemented is the server's to say ([`Supported`]); the
//! values of the implemented ones are checked here: `organizeOutputBy` is `Patient` at
//! Patient and Group level only (P9), `includeAssociatedData` takes the IG's two codes and
//! our `_none` ([`AssociatedData`], P7).

use crate::{
    compartment, elements, instant::Instant, resource_type::is_resource_type, type_filter,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The export level (K2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "level", content = "group", rename_all = "snake_case")]
pub enum Level {
    /// `[base]/$export`.
    System,
    /// `[base]/Patient/$export`.
    Patient,
    /// `[base]/Group/[id]/$export`.
    Group(String),
}

/// `Prefer: handling=` (K5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Handling {
    /// Unsupported or invalid parameters are errors (the default).
    #[default]
    Strict,
    /// Unsupported or invalid parameters are ignored with a warning.
    Lenient,
}

/// The `Prefer` header(s), merged as one comma list (K5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prefer {
    /// `respond-async` present (K4).
    pub respond_async: bool,
    /// `handling=`.
    pub handling: Handling,
}

impl Prefer {
    /// Parses every `Prefer` header value given.
    pub fn parse<'a>(values: impl IntoIterator<Item = &'a str>) -> Prefer {
        let mut p = Prefer::default();
        for token in values.into_iter().flat_map(|v| v.split([',', ';'])) {
            let token = token.trim();
            if token.eq_ignore_ascii_case("respond-async") {
                p.respond_async = true;
            } else if let Some((k, v)) = token.split_once('=')
                && k.trim().eq_ignore_ascii_case("handling")
            {
                let v = v.trim().trim_matches('"');
                if v.eq_ignore_ascii_case("lenient") {
                    p.handling = Handling::Lenient;
                } else if v.eq_ignore_ascii_case("strict") {
                    p.handling = Handling::Strict;
                }
            }
        }
        p
    }
}

/// The optional parameters a server implements (the rest are "unsupported", K5).
#[derive(Debug, Clone, Copy, Default)]
pub struct Supported {
    /// `_typeFilter` (P8).
    pub type_filter: bool,
    /// `_elements` (P5).
    pub elements: bool,
    /// `includeAssociatedData` (P7).
    pub include_associated_data: bool,
    /// `organizeOutputBy` (P9).
    pub organize_output_by: bool,
    /// `allowPartialManifests` (P10).
    pub allow_partial_manifests: bool,
}

/// A parsed kick-off request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExportRequest {
    /// `_since` (P2, T1).
    pub since: Option<Instant>,
    /// `_until` (P3).
    pub until: Option<Instant>,
    /// `_type` (P4), validated, deduplicated, in request order; `None` = every type in scope.
    pub types: Option<Vec<String>>,
    /// `patient` ids (P6).
    pub patients: Vec<String>,
    /// `_typeFilter` values (P8), one query each, as received.
    pub type_filters: Vec<String>,
    /// `_elements` (P5).
    pub elements: Vec<String>,
    /// `includeAssociatedData` (P7).
    pub include_associated_data: Vec<String>,
    /// `organizeOutputBy` (P9).
    pub organize_output_by: Option<String>,
    /// `allowPartialManifests` (P10).
    pub allow_partial_manifests: bool,
}

impl ExportRequest {
    /// What `includeAssociatedData` asks for, resolved (P7).
    pub fn associated_data(&self) -> AssociatedData {
        AssociatedData::resolve(&self.include_associated_data)
    }
}

/// `includeAssociatedData` (P7) as this server applies it: the least restrictive of the
/// values given (P7: conflicting values SHALL resolve that way), ordered from most to least
/// restrictive so that resolving is a `max`.
///
/// "Associated" Provenance is what `Provenance.target` links to a non-Provenance resource the
/// export returns (the IG's code system; the 4.0 ballot wording names `target` outright).
/// The IG's STU2/STU3 text says the other Provenance "will not be returned", so with
/// [`Latest`](Self::Latest) or [`Relevant`](Self::Relevant) Provenance leaves the default type
/// list and comes only as associated data; a `_type` that names Provenance still gets every
/// Provenance in scope as well (the 4.0 ballot: the values do not exclude what would
/// otherwise be returned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AssociatedData {
    /// `_none` (our custom value): no associated Provenance, and Provenance leaves the
    /// default type list; a `_type` that names Provenance still exports it.
    Nothing,
    /// The parameter is absent: Provenance is a type like any other (P7: all Provenance at
    /// system level, those in the Patient compartment at Patient and Group level).
    Default,
    /// `LatestProvenanceResources`: for each returned resource, the Provenance targeting it
    /// with the latest `recorded`.
    Latest,
    /// `RelevantProvenanceResources`: every Provenance targeting a returned resource.
    Relevant,
}

impl AssociatedData {
    /// The IG code of [`AssociatedData::Latest`].
    pub const LATEST: &'static str = "LatestProvenanceResources";
    /// The IG code of [`AssociatedData::Relevant`].
    pub const RELEVANT: &'static str = "RelevantProvenanceResources";
    /// Our server-defined code (P7 allows `_`-prefixed ones) of [`AssociatedData::Nothing`].
    pub const NONE: &'static str = "_none";

    /// One value of the parameter; `None` if this server does not know it.
    pub fn parse(value: &str) -> Option<AssociatedData> {
        match value {
            Self::LATEST => Some(AssociatedData::Latest),
            Self::RELEVANT => Some(AssociatedData::Relevant),
            Self::NONE => Some(AssociatedData::Nothing),
            _ => None,
        }
    }

    /// The least restrictive of `values` (known ones only); [`Default`](Self::Default) when
    /// there is none.
    pub fn resolve(values: &[String]) -> AssociatedData {
        values
            .iter()
            .filter_map(|v| AssociatedData::parse(v))
            .max()
            .unwrap_or(AssociatedData::Default)
    }

    /// True when the export adds Provenance found through its targets.
    pub fn adds_provenance(self) -> bool {
        matches!(self, AssociatedData::Latest | AssociatedData::Relevant)
    }

    /// True when Provenance is left out of the default type list (no `_type`).
    pub fn drops_default_provenance(self) -> bool {
        self != AssociatedData::Default
    }
}

/// A kick-off parameter that cannot be accepted: a 400 that names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KickoffError {
    /// The parameter.
    pub param: String,
    /// What is wrong and what to send instead.
    pub message: String,
}

/// A parameter as received: name and value (a GET value, or a POST `value[x]` as text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawParam {
    /// Parameter name.
    pub name: String,
    /// Its value as text (`valueReference.reference` for references).
    pub value: String,
}

/// Reads a POST `Parameters` body (K1, K8) into raw parameters.
pub fn params_from_body(body: &Value) -> Result<Vec<RawParam>, KickoffError> {
    let bad = |message: String| KickoffError {
        param: "body".into(),
        message,
    };
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(bad(
            "a POST kick-off needs a FHIR Parameters resource as its body (application/fhir+json)"
                .into(),
        ));
    }
    let mut out = Vec::new();
    for (i, p) in body
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("Parameters.parameter[{i}] has no name")))?;
        let value = p.as_object().and_then(|o| {
            o.iter()
                .find(|(k, _)| k.starts_with("value"))
                .map(|(k, v)| match (k.as_str(), v) {
                    ("valueReference", v) => v
                        .get("reference")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    ("valueCoding", v) => v.get("code").and_then(Value::as_str).map(str::to_string),
                    (_, Value::String(s)) => Some(s.clone()),
                    (_, Value::Bool(b)) => Some(b.to_string()),
                    (_, Value::Number(n)) => Some(n.to_string()),
                    _ => None,
                })
        });
        let value = value.flatten().ok_or_else(|| {
            bad(format!(
                "parameter '{name}' has no value[x] that can be read"
            ))
        })?;
        out.push(RawParam {
            name: name.to_string(),
            value,
        });
    }
    Ok(out)
}

/// Reads GET query pairs (already percent-decoded) into raw parameters.
pub fn params_from_query(pairs: impl IntoIterator<Item = (String, String)>) -> Vec<RawParam> {
    pairs
        .into_iter()
        .map(|(name, value)| RawParam { name, value })
        .collect()
}

/// The accepted `_outputFormat` values (P1), including `+` decoded as a space.
fn is_ndjson_format(v: &str) -> bool {
    matches!(
        v.trim(),
        "application/fhir+ndjson" | "application/ndjson" | "ndjson" | "application/fhir ndjson"
    )
}

/// Parses the parameters of a kick-off at `level`. `is_post` says where they came from
/// (`patient` is POST-only, P6). Returns the request and the lenient-mode warnings.
pub fn parse(
    params: &[RawParam],
    level: &Level,
    is_post: bool,
    handling: Handling,
    supported: Supported,
) -> Result<(ExportRequest, Vec<String>), KickoffError> {
    let mut req = ExportRequest::default();
    let mut warnings = Vec::new();
    // Strict: the first problem is the answer. Lenient: note it and go on (K5).
    let mut problem = |param: &str, message: String| -> Result<(), KickoffError> {
        match handling {
            Handling::Strict => Err(KickoffError {
                param: param.to_string(),
                message,
            }),
            Handling::Lenient => {
                warnings.push(format!("{message} (ignored: Prefer handling=lenient)"));
                Ok(())
            }
        }
    };
    let unsupported =
        |name: &str| format!("the parameter '{name}' is not supported by this server at this time");
    let mut types: Vec<String> = Vec::new();
    let mut saw_type = false;
    for RawParam { name, value } in params {
        match name.as_str() {
            "_outputFormat" => {
                if !is_ndjson_format(value) {
                    problem(
                        name,
                        format!(
                            "_outputFormat '{value}' is not supported; use application/fhir+ndjson (or application/ndjson, ndjson)"
                        ),
                    )?;
                }
            }
            "_since" | "_until" => match Instant::parse(value) {
                Ok(t) if name == "_since" => req.since = Some(t),
                Ok(t) => req.until = Some(t),
                Err(e) => problem(name, format!("{name}: {e}"))?,
            },
            "_type" => {
                saw_type = true;
                // K7: repeats and comma lists are one list.
                for t in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !is_resource_type(t) {
                        problem(name, format!("_type '{t}' is not an R4 resource type"))?;
                    } else if *level != Level::System && !compartment::is_compartment_type(t) {
                        problem(
                            name,
                            format!(
                                "_type '{t}' is not in the Patient compartment, so a Patient or Group export has none of it (P4)"
                            ),
                        )?;
                    } else if !types.iter().any(|x| x == t) {
                        types.push(t.to_string());
                    }
                }
            }
            "patient" => {
                if *level == Level::System {
                    problem(name, "'patient' is not allowed on a system-level export (P6); use Patient/$export or Group/[id]/$export".into())?;
                } else if !is_post {
                    problem(
                        name,
                        "'patient' is only accepted in a POST Parameters body (P6)".into(),
                    )?;
                } else {
                    for r in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        let id = r.strip_prefix("Patient/").unwrap_or(r);
                        let id = id.rsplit("/Patient/").next().unwrap_or(id);
                        if !crate::id::is_valid_id(id) {
                            problem(
                                name,
                                format!("patient '{r}' is not a Patient reference (Patient/[id])"),
                            )?;
                        } else if !req.patients.iter().any(|p| p == id) {
                            req.patients.push(id.to_string());
                        }
                    }
                }
            }
            "_typeFilter" if supported.type_filter => {
                // P8e: one value may hold several queries; each is checked on its own, so
                // lenient handling drops only the bad ones.
                for text in type_filter::split_filter_list(value) {
                    match type_filter::TypeFilter::parse(text) {
                        Ok(_) => req.type_filters.push(text.to_string()),
                        Err(e) => problem(name, e.to_string())?,
                    }
                }
            }
            "_elements" if supported.elements => {
                for e in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    match elements::check(e) {
                        Ok(()) => req.elements.push(e.to_string()),
                        Err(err) => problem(name, err.to_string())?,
                    }
                }
            }
            "includeAssociatedData" if supported.include_associated_data => {
                for v in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
                    if AssociatedData::parse(v).is_none() {
                        problem(
                            name,
                            format!(
                                "includeAssociatedData '{v}' is not supported; use {}, {} or {} (P7)",
                                AssociatedData::LATEST,
                                AssociatedData::RELEVANT,
                                AssociatedData::NONE
                            ),
                        )?;
                    } else if !req.include_associated_data.iter().any(|x| x == v) {
                        req.include_associated_data.push(v.to_string());
                    }
                }
            }
            "organizeOutputBy" if supported.organize_output_by => match value.trim() {
                "Patient" if *level == Level::System => problem(
                    name,
                    "organizeOutputBy=Patient needs a Patient or Group export: a system export also \
                     holds resources in no patient's compartment (Practitioner, Organization, ...), \
                     which no Patient block could hold (P9)"
                        .into(),
                )?,
                "Patient" => req.organize_output_by = Some("Patient".into()),
                other => problem(
                    name,
                    format!(
                        "organizeOutputBy '{other}' is not supported; this server organizes output by Patient only (P9)"
                    ),
                )?,
            },
            "allowPartialManifests" if supported.allow_partial_manifests => match value.trim() {
                "true" => req.allow_partial_manifests = true,
                "false" => req.allow_partial_manifests = false,
                other => problem(
                    name,
                    format!("allowPartialManifests '{other}' is not a boolean"),
                )?,
            },
            "_typeFilter"
            | "_elements"
            | "includeAssociatedData"
            | "organizeOutputBy"
            | "allowPartialManifests" => problem(name, unsupported(name))?,
            _ => problem(
                name,
                format!("'{name}' is not a kick-off parameter of $export"),
            )?,
        }
    }
    if let (Some(s), Some(u)) = (req.since, req.until)
        && u <= s
    {
        problem("_until", "_until must be later than _since".into())?;
        req.until = None;
    }
    // Associated Provenance lands in typed files of its own; organized output has only
    // Patient blocks, and a Provenance has no block of its own (it targets resources).
    if req.organize_output_by.is_some() && req.associated_data().adds_provenance() {
        problem(
            "includeAssociatedData",
            "includeAssociatedData=LatestProvenanceResources or RelevantProvenanceResources cannot be \
             combined with organizeOutputBy: associated Provenance is not in any Patient block (P7, P9)"
                .into(),
        )?;
        req.include_associated_data
            .retain(|v| v == AssociatedData::NONE);
    }
    if saw_type {
        if types.is_empty() {
            // Every listed type was dropped (lenient): nothing valid was asked for.
            return Err(KickoffError {
                param: "_type".into(),
                message: "_type names no resource type this export can return".into(),
            });
        }
        req.types = Some(types);
    }
    Ok((req, warnings))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Vec<RawParam> {
        params_from_query(pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    fn strict(pairs: &[(&str, &str)], level: Level) -> Result<ExportRequest, KickoffError> {
        parse(
            &q(pairs),
            &level,
            false,
            Handling::Strict,
            Supported::default(),
        )
        .map(|(r, _)| r)
    }

    #[test]
    fn prefer_is_a_merged_comma_list_k5() {
        let p = Prefer::parse(["respond-async, handling=lenient"]);
        assert!(p.respond_async);
        assert_eq!(p.handling, Handling::Lenient);
        let p = Prefer::parse(["handling=strict", "respond-async"]);
        assert!(p.respond_async);
        assert_eq!(p.handling, Handling::Strict);
        assert!(!Prefer::parse(["handling=lenient"]).respond_async);
    }

    /// P1: the three spellings, and `+` decoded as a space.
    #[test]
    fn output_format_aliases_p1() {
        for f in [
            "application/fhir+ndjson",
            "application/ndjson",
            "ndjson",
            "application/fhir ndjson",
        ] {
            assert!(
                strict(&[("_outputFormat", f)], Level::System).is_ok(),
                "{f}"
            );
        }
        let e = strict(&[("_outputFormat", "text/csv")], Level::System).unwrap_err();
        assert_eq!(e.param, "_outputFormat");
        assert!(e.message.contains("text/csv"));
    }

    /// K7: repeated `_type` and comma lists are one list; unknown types name the value.
    #[test]
    fn types_merge_and_validate_k7_p4() {
        let r = strict(
            &[
                ("_type", "Patient,Observation"),
                ("_type", "Condition,Patient"),
            ],
            Level::System,
        )
        .unwrap();
        assert_eq!(
            r.types.unwrap(),
            vec!["Patient", "Observation", "Condition"]
        );
        let e = strict(&[("_type", "Patient,Banana")], Level::System).unwrap_err();
        assert!(e.message.contains("'Banana'"), "{e}");
        // P4: non-compartment type at Patient level.
        let e = strict(&[("_type", "Practitioner")], Level::Patient).unwrap_err();
        assert!(e.message.contains("Practitioner"));
    }

    /// T5: malformed instants are named with their value; `+` as space is explained.
    #[test]
    fn instants_t1_t5() {
        let r = strict(
            &[
                ("_since", "2020-01-01T00:00:00Z"),
                ("_until", "2021-01-01T00:00:00+01:00"),
            ],
            Level::System,
        )
        .unwrap();
        assert_eq!(r.since.unwrap().to_string(), "2020-01-01T00:00:00.000000Z");
        assert_eq!(r.until.unwrap().to_string(), "2020-12-31T23:00:00.000000Z");
        let e = strict(&[("_since", "2020-01-01")], Level::System).unwrap_err();
        assert_eq!(e.param, "_since");
        assert!(e.message.contains("2020-01-01"));
        let e = strict(&[("_since", "2020-01-01T00:00:00 01:00")], Level::System).unwrap_err();
        assert!(e.message.contains("%2B"), "{e}");
        let e = strict(
            &[
                ("_since", "2021-01-01T00:00:00Z"),
                ("_until", "2020-01-01T00:00:00Z"),
            ],
            Level::System,
        )
        .unwrap_err();
        assert_eq!(e.param, "_until");
    }

    /// K5: strict rejects unknown and unsupported parameters; lenient warns once per parameter.
    #[test]
    fn strict_and_lenient_k5() {
        let e = strict(&[("_typeFilter", "Observation?code=1")], Level::System).unwrap_err();
        assert!(e.message.contains("_typeFilter"));
        let e = strict(&[("foo", "bar")], Level::System).unwrap_err();
        assert!(e.message.contains("'foo'"));
        let (r, w) = parse(
            &q(&[
                ("foo", "bar"),
                ("_elements", "id"),
                ("_type", "Patient,Nope"),
            ]),
            &Level::System,
            false,
            Handling::Lenient,
            Supported::default(),
        )
        .unwrap();
        assert_eq!(w.len(), 3, "{w:?}");
        assert_eq!(r.types.unwrap(), vec!["Patient"]);
        let s = Supported {
            type_filter: true,
            elements: true,
            ..Default::default()
        };
        let (r, w) = parse(
            &q(&[("_elements", "id,name")]),
            &Level::System,
            false,
            Handling::Strict,
            s,
        )
        .unwrap();
        assert!(w.is_empty());
        assert_eq!(r.elements, vec!["id", "name"]);
        // P8, P5: bad filters and elements are named; lenient keeps the good ones.
        let e = parse(
            &q(&[("_typeFilter", "Observation?foo=1")]),
            &Level::System,
            false,
            Handling::Strict,
            s,
        )
        .unwrap_err();
        assert!(e.message.contains("foo"), "{e}");
        let e = parse(
            &q(&[("_elements", "Banana.x")]),
            &Level::System,
            false,
            Handling::Strict,
            s,
        )
        .unwrap_err();
        assert!(e.message.contains("Banana.x"));
        let (r, w) = parse(
            &q(&[("_typeFilter", "Observation?status=final,Condition?nope=1,MedicationRequest?status=active,completed")]),
            &Level::System,
            false,
            Handling::Lenient,
            s,
        )
        .unwrap();
        assert_eq!(
            r.type_filters,
            vec![
                "Observation?status=final",
                "MedicationRequest?status=active,completed"
            ]
        );
        assert_eq!(w.len(), 1);
    }

    /// P7, P9, P10: the values this server knows; strict rejects the rest with the reason,
    /// lenient drops them with a warning; conflicting values resolve to the least restrictive.
    #[test]
    fn associated_data_organize_and_partial_manifests_p7_p9_p10() {
        let all = Supported {
            include_associated_data: true,
            organize_output_by: true,
            allow_partial_manifests: true,
            ..Default::default()
        };
        let run = |pairs: &[(&str, &str)], level: Level, handling| {
            parse(&q(pairs), &level, false, handling, all)
        };
        let (r, _) = run(
            &[
                ("includeAssociatedData", "_none,LatestProvenanceResources"),
                ("includeAssociatedData", "RelevantProvenanceResources"),
            ],
            Level::System,
            Handling::Strict,
        )
        .unwrap();
        assert_eq!(r.associated_data(), AssociatedData::Relevant);
        assert_eq!(
            ExportRequest::default().associated_data(),
            AssociatedData::Default
        );
        let e = run(
            &[("includeAssociatedData", "Bogus")],
            Level::System,
            Handling::Strict,
        )
        .unwrap_err();
        assert!(
            e.message.contains("'Bogus'") && e.message.contains("_none"),
            "{e}"
        );
        let (r, w) = run(
            &[("includeAssociatedData", "Bogus,_none")],
            Level::System,
            Handling::Lenient,
        )
        .unwrap();
        assert_eq!((r.associated_data(), w.len()), (AssociatedData::Nothing, 1));

        let (r, _) = run(
            &[("organizeOutputBy", "Patient")],
            Level::Group("g".into()),
            Handling::Strict,
        )
        .unwrap();
        assert_eq!(r.organize_output_by.as_deref(), Some("Patient"));
        let e = run(
            &[("organizeOutputBy", "Patient")],
            Level::System,
            Handling::Strict,
        )
        .unwrap_err();
        assert!(e.message.contains("system export"), "{e}");
        let e = run(
            &[("organizeOutputBy", "Organization")],
            Level::Patient,
            Handling::Strict,
        )
        .unwrap_err();
        assert!(e.message.contains("not supported"), "{e}");
        let (r, w) = run(
            &[("organizeOutputBy", "Patient")],
            Level::System,
            Handling::Lenient,
        )
        .unwrap();
        assert_eq!((r.organize_output_by, w.len()), (None, 1));
        // Associated Provenance has no Patient block to go in.
        let both = [
            ("organizeOutputBy", "Patient"),
            ("includeAssociatedData", "LatestProvenanceResources"),
        ];
        let e = run(&both, Level::Patient, Handling::Strict).unwrap_err();
        assert_eq!(e.param, "includeAssociatedData");
        let (r, w) = run(&both, Level::Patient, Handling::Lenient).unwrap();
        assert_eq!(
            (r.associated_data(), r.organize_output_by.is_some(), w.len()),
            (AssociatedData::Default, true, 1)
        );

        let (r, _) = run(
            &[("allowPartialManifests", "false")],
            Level::System,
            Handling::Strict,
        )
        .unwrap();
        assert!(!r.allow_partial_manifests);
        assert!(
            run(
                &[("allowPartialManifests", "yes")],
                Level::System,
                Handling::Strict
            )
            .is_err()
        );
    }

    /// P6: `patient` only in POST, never at system level; K8 value types from Parameters.
    #[test]
    fn patient_from_post_body_p6_k8() {
        let body = json!({"resourceType":"Parameters","parameter":[
            {"name":"_type","valueString":"Observation"},
            {"name":"_since","valueInstant":"2020-01-01T00:00:00Z"},
            {"name":"patient","valueReference":{"reference":"Patient/a"}},
            {"name":"patient","valueReference":{"reference":"https://x/fhir/Patient/b"}},
            {"name":"allowPartialManifests","valueBoolean":true}]});
        let raw = params_from_body(&body).unwrap();
        let s = Supported {
            allow_partial_manifests: true,
            ..Default::default()
        };
        let (r, _) = parse(&raw, &Level::Patient, true, Handling::Strict, s).unwrap();
        assert_eq!(r.patients, vec!["a", "b"]);
        assert!(r.allow_partial_manifests);
        assert!(parse(&raw, &Level::System, true, Handling::Strict, s).is_err());
        let e = strict(&[("patient", "Patient/a")], Level::Patient).unwrap_err();
        assert!(e.message.contains("POST"));
        assert!(params_from_body(&json!({"resourceType":"Patient"})).is_err());
    }
}
