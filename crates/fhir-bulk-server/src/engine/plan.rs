//! The units of a new job: which types it returns and who writes them.
//!
//! - Plain output: one unit per type (P4).
//! - `organizeOutputBy=Patient` (O2): one [`UnitKind::Organized`] unit for every type instead,
//!   because a patient's block holds all its types and must not be split across units.
//! - `includeAssociatedData` (P7): one [`UnitKind::Associated`] unit for the Provenance found
//!   through the exported resources, whatever `_type` says (a `_type` without Provenance
//!   still gets it). Without `_type`, Provenance then leaves the plain types (the IG: "other
//!   Provenance resources will not be returned"); with `_type=Provenance` it stays, and the
//!   associated unit skips what the plain unit writes.
//! - `_since`: a `deleted` unit per type (M5). Lenient warnings: one `error` unit (K5).

use fhir_bulk_spec::kickoff::ExportRequest;
use fhir_bulk_store::{NewUnit, UnitKind};

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
/// (K9). Warnings found here are appended to `warnings` (they end in the `error` file).
pub(crate) fn plan(
    request: &ExportRequest,
    held: Vec<String>,
    counts: &[(String, u64)],
    provenance_readable: bool,
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
    };

    let mut units: Vec<NewUnit> = match request.organize_output_by.as_deref() {
        Some(by) if !types.is_empty() => vec![unit(
            by,
            UnitKind::Organized,
            types.iter().map(|t| estimate(t)).sum(),
        )],
        Some(_) => Vec::new(),
        None => types
            .iter()
            .map(|t| unit(t, UnitKind::Output, estimate(t)))
            .collect(),
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
        let p = plan(&req, held(), &counts, true, &mut Vec::new());
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
        let p = plan(&req, held(), &[], true, &mut Vec::new());
        assert_eq!(p.types, vec!["Observation", "Patient"]);
        assert_eq!(kinds(&p)[2], ("Provenance".into(), UnitKind::Associated));
        let typed = ExportRequest {
            types: Some(vec!["Observation".into()]),
            ..req.clone()
        };
        let p = plan(&typed, held(), &[], true, &mut Vec::new());
        assert_eq!(
            kinds(&p),
            vec![
                ("Observation".into(), UnitKind::Output),
                ("Provenance".into(), UnitKind::Associated)
            ]
        );
        let mut warnings = Vec::new();
        let p = plan(&typed, held(), &[], false, &mut warnings);
        assert_eq!(warnings.len(), 1);
        assert_eq!(kinds(&p).last().unwrap().1, UnitKind::Error);
        let none = ExportRequest {
            include_associated_data: vec!["_none".into()],
            ..Default::default()
        };
        let p = plan(&none, held(), &[], true, &mut Vec::new());
        assert_eq!(p.types, vec!["Observation", "Patient"]);
        assert_eq!(p.units.len(), 2);
    }
}
