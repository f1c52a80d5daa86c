//! The units of a new job: which types it returns and who writes them.
//!
//! - Plain output: one unit per type (P4); with `slice_above`, a type with more resources is
//!   cut into id slices of about that many, one unit each (several workers and nodes share it).
//! - `organizeOutputBy=Patient` (O2): one [`UnitKind::Organized`] unit for every type instead,
//!   because a patient's block holds all its types and must not be split across units.
//! - `includeAssociatedData` (P7): one [`UnitKind::Associated`] unit for the Provenance found
//!   through the exported resources, whatever `_type` says (a `_type` without Provenance
//!   still gets it). Without `_type`, Provenance then leaves the plain types (the IG: "other
//!   Provenance resources will not be returned"); with `_type=Provenance` it stays, and the
//!   associated unit skips what the plain unit writes.
//! - `_since`: a `deleted` unit per type (M5). Lenient warnings: one `error` unit (K5).

use fhir_bulk_spec::kickoff::ExportRequest;
use fhir_bulk_store::{IdRange, NewUnit, UnitKind};

/// At most this many slices per type: past that, units are already seconds of work each.
const MAX_SLICES: u64 = 64;

/// The planned job.
pub(crate) struct Plan {
    /// The types the export returns (what `_type` asked for, or every type in scope).
    pub types: Vec<String>,
    /// Its units, in planned order.
    pub units: Vec<NewUnit>,
}

/// Plans the units of `request`. `held` are the types to export without `_type` (held by the
/// tenant, covered by the level, readable by the caller), `counts` the live resources per type
/// (estimates for `X-Progress`), `provenance_readable` whether the caller may read Provenance
/// (K9), `slice_above` the size above which a type is cut into id slices (`None`: never).
/// Warnings found here are appended to `warnings` (they end in the `error` file).
pub(crate) fn plan(
    request: &ExportRequest,
    held: Vec<String>,
    counts: &[(String, u64)],
    provenance_readable: bool,
    slice_above: Option<u64>,
    warnings: &mut Vec<String>,
) -> Plan {
    let associated = request.associated_data();
    let types: Vec<String> = match &request.types {
        Some(ts) => ts.clone(),
        None if associated.drops_default_provenance() => {
            held.into_iter().filter(|t| t != "Provenance").collect()
        }
        None => held,
    };
    let estimate = |t: &str| counts.iter().find(|(c, _)| c == t).map_or(0, |(_, n)| *n);
    let unit = |t: &str, kind, estimate| NewUnit {
        resource_type: t.to_string(),
        kind,
        estimate,
        ids: IdRange::all(),
    };
    let output_units = |t: &str| -> Vec<NewUnit> {
        let n = estimate(t);
        let slices = match slice_above {
            Some(max) if max > 0 && n > max => n.div_ceil(max).min(MAX_SLICES),
            _ => 1,
        };
        IdRange::split(slices as usize)
            .into_iter()
            .map(|ids| NewUnit {
                ids,
                ..unit(t, UnitKind::Output, n / slices)
            })
            .collect()
    };

    let mut units: Vec<NewUnit> = match request.organize_output_by.as_deref() {
        Some(by) if !types.is_empty() => vec![unit(
            by,
            UnitKind::Organized,
            types.iter().map(|t| estimate(t)).sum(),
        )],
        Some(_) => Vec::new(),
        None => types.iter().flat_map(|t| output_units(t)).collect(),
    };
    if associated.adds_provenance() {
        if provenance_readable {
            units.push(unit(
                "Provenance",
                UnitKind::Associated,
                estimate("Provenance"),
            ));
        } else {
            warnings.push(
                "includeAssociatedData: the access token does not allow reading Provenance, so no \
                 associated Provenance was exported (K9)"
                    .into(),
            );
        }
    }
    if request.since.is_some() {
        units.extend(types.iter().map(|t| unit(t, UnitKind::Deleted, 0)));
    }
    if !warnings.is_empty() {
        units.push(unit("OperationOutcome", UnitKind::Error, 0));
    }
    Plan { types, units }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(p: &Plan) -> Vec<(String, UnitKind)> {
        p.units
            .iter()
            .map(|u| (u.resource_type.clone(), u.kind))
            .collect()
    }

    fn held() -> Vec<String> {
        ["Observation", "Patient", "Provenance"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn organized_output_is_one_unit_o2() {
        let req = ExportRequest {
            organize_output_by: Some("Patient".into()),
            since: Some(fhir_bulk_spec::instant::Instant(1)),
            ..Default::default()
        };
        let counts = [("Observation".to_string(), 5), ("Patient".to_string(), 2)];
        let p = plan(&req, held(), &counts, true, None, &mut Vec::new());
        assert_eq!(p.units[0].estimate, 7);
        assert_eq!(
            kinds(&p),
            vec![
                ("Patient".into(), UnitKind::Organized),
                ("Observation".into(), UnitKind::Deleted),
                ("Patient".into(), UnitKind::Deleted),
                ("Provenance".into(), UnitKind::Deleted),
            ]
        );
    }

    /// P7: associated Provenance replaces the default Provenance unit, is added whatever
    /// `_type` says, and needs read access to Provenance.
    #[test]
    fn associated_provenance_p7() {
        let req = ExportRequest {
            include_associated_data: vec!["RelevantProvenanceResources".into()],
            ..Default::default()
        };
        let p = plan(&req, held(), &[], true, None, &mut Vec::new());
        assert_eq!(p.types, vec!["Observation", "Patient"]);
        assert_eq!(kinds(&p)[2], ("Provenance".into(), UnitKind::Associated));
        let typed = ExportRequest {
            types: Some(vec!["Observation".into()]),
            ..req.clone()
        };
        let p = plan(&typed, held(), &[], true, None, &mut Vec::new());
        assert_eq!(
            kinds(&p),
            vec![
                ("Observation".into(), UnitKind::Output),
                ("Provenance".into(), UnitKind::Associated)
            ]
        );
        let mut warnings = Vec::new();
        let p = plan(&typed, held(), &[], false, None, &mut warnings);
        assert_eq!(warnings.len(), 1);
        assert_eq!(kinds(&p).last().unwrap().1, UnitKind::Error);
        let none = ExportRequest {
            include_associated_data: vec!["_none".into()],
            ..Default::default()
        };
        let p = plan(&none, held(), &[], true, None, &mut Vec::new());
        assert_eq!(p.types, vec!["Observation", "Patient"]);
        assert_eq!(p.units.len(), 2);
    }

    /// Large types are cut into id slices that tile the id space; small ones stay whole.
    #[test]
    fn large_types_are_sliced() {
        let counts = [
            ("Observation".to_string(), 1_000_000),
            ("Patient".to_string(), 10),
        ];
        let held = vec!["Observation".to_string(), "Patient".to_string()];
        let p = plan(
            &ExportRequest::default(),
            held.clone(),
            &counts,
            true,
            Some(250_000),
            &mut Vec::new(),
        );
        let obs: Vec<_> = p
            .units
            .iter()
            .filter(|u| u.resource_type == "Observation")
            .collect();
        assert_eq!(obs.len(), 4);
        assert!(obs.iter().all(|u| u.estimate == 250_000));
        assert_eq!(obs[0].ids.from, None);
        assert_eq!(obs[3].ids.to, None);
        let patient: Vec<_> = p
            .units
            .iter()
            .filter(|u| u.resource_type == "Patient")
            .collect();
        assert_eq!(patient.len(), 1);
        assert!(patient[0].ids.is_all());
        let whole = plan(
            &ExportRequest::default(),
            held,
            &counts,
            true,
            None,
            &mut Vec::new(),
        );
        assert_eq!(whole.units.len(), 2);
    }
}
