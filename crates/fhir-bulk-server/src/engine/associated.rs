//! Associated Provenance (`includeAssociatedData`, P7).
//!
//! A Provenance is *relevant* when one of its `target`s is a non-Provenance resource this
//! export returns: of an exported type, in the compartment scope, modified in the export's
//! window (`_since`, `_until`, transactionTime) and passing its type's `_typeFilter`. The
//! Provenance itself is read at the job's snapshot whatever its own update time (like a
//! referenced resource, T2), and goes through the Provenance `_typeFilter`/`_elements`.
//! - `RelevantProvenanceResources`: every relevant Provenance.
//! - `LatestProvenanceResources`: for each returned target, the Provenance with the latest
//!   `recorded` (ties: the larger id) among those passing the Provenance `_typeFilter`; a
//!   Provenance is written once even when it is the latest for several targets.
//!
//! There is no index from targets to Provenance, so the unit scans the tenant's Provenance
//! and looks each target up in the store ([`Store::export_lookup`]), batched per chunk:
//! the cost is one scan of all Provenance (two for Latest) plus one primary-key lookup per
//! distinct target per chunk, whatever the export's size. Latest also keeps a map from each
//! target referenced by any Provenance to its newest Provenance (memory grows with the number
//! of distinct targets, about a hundred bytes each). When `_type` names Provenance too, the
//! plain Provenance unit already writes those in scope; this unit skips them (one more
//! lookup each), so no Provenance is written twice.
//!
//! [`Store::export_lookup`]: fhir_bulk_store::Store::export_lookup

use super::transform::{Transform, Transforms};
use super::unit::{Stop, check};
use super::{JobParams, Shared, roller::Roller};
use fhir_bulk_spec::compartment::reference_target;
use fhir_bulk_spec::instant::Instant;
use fhir_bulk_spec::kickoff::AssociatedData;
use fhir_bulk_store::{ExportScan, ExportSet, IdRange, Job, PatientScope};
use futures::StreamExt;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

type Ref = (String, String);

/// One Provenance line of a chunk.
struct Prov<'a> {
    line: &'a [u8],
    value: Value,
    id: String,
    /// `recorded` (else `meta.lastUpdated`) in µs, for Latest.
    recorded: i64,
    targets: Vec<Ref>,
}

/// What the unit needs to decide about each Provenance.
struct Context<'a> {
    shared: &'a Shared,
    /// The returned resources: the export's types but Provenance, scope and window.
    targets: ExportSet,
    /// The plain Provenance unit's scan when `_type` names Provenance (to skip its lines).
    plain: Option<ExportSet>,
    target_filters: Transforms<'a>,
    provenance: Option<Transform>,
}

pub(super) async fn write(
    shared: &Shared,
    job: &Job,
    params: &JobParams,
    until: Instant,
    roller: &mut Roller<'_>,
    written: &AtomicU64,
    lost: &CancellationToken,
) -> Result<(), Stop> {
    let window = |types: Vec<String>| ExportSet {
        tenant: job.tenant.clone(),
        types,
        since: params.request.since,
        until,
        scope: params.scope.clone(),
    };
    let req = &params.request;
    let mut cx = Context {
        shared,
        targets: window(
            params
                .types
                .iter()
                .filter(|t| *t != "Provenance")
                .cloned()
                .collect(),
        ),
        plain: params
            .types
            .iter()
            .any(|t| t == "Provenance")
            .then(|| window(vec!["Provenance".into()])),
        target_filters: Transforms::new(&req.type_filters, &req.elements),
        provenance: Transform::for_type(&req.type_filters, &req.elements, "Provenance")
            .map_err(Stop::Failed)?,
    };
    // Every Provenance of the tenant as of the snapshot: targets decide, not its own scope.
    let scan = ExportScan {
        tenant: job.tenant.clone(),
        resource_type: "Provenance".into(),
        since: None,
        until,
        scope: PatientScope::All,
        ids: IdRange::all(),
    };
    let latest = match req.associated_data() {
        AssociatedData::Latest => Some(latest_per_target(&cx, scan.clone(), lost).await?),
        _ => None,
    };

    let mut chunks = shared.store.export(scan, shared.config.chunk_bytes);
    let mut out = Vec::new();
    while let Some(chunk) = chunks.next().await {
        check(shared, lost)?;
        let chunk = chunk.map_err(|e| Stop::Failed(format!("reading Provenance: {e}")))?;
        let mut provs = parse_chunk(&chunk.bytes)?;
        if let Some(latest) = &latest {
            // Only the targets this Provenance is the latest for can make it count.
            for p in &mut provs {
                p.targets
                    .retain(|r| latest.get(r).is_some_and(|(_, id)| *id == p.id));
            }
        }
        let relevant = cx.relevant_targets(&provs).await?;
        let skip = cx.written_by_plain_unit(&provs).await?;
        out.clear();
        let mut n = 0;
        for p in provs {
            if skip.contains(&p.id) || !p.targets.iter().any(|r| relevant.contains(r)) {
                continue;
            }
            let kept = match &cx.provenance {
                None => {
                    out.extend_from_slice(p.line);
                    out.push(b'\n');
                    true
                }
                Some(t) => t.write(p.line, p.value, &mut out).map_err(Stop::Failed)?,
            };
            n += u64::from(kept);
        }
        roller
            .write(&out, n)
            .await
            .map_err(|e| Stop::Failed(format!("cannot write export file: {e}")))?;
        written.fetch_add(chunk.count, Ordering::Relaxed);
    }
    Ok(())
}

/// Parses the Provenance lines of a chunk with their targets.
fn parse_chunk(bytes: &[u8]) -> Result<Vec<Prov<'_>>, Stop> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            let value: Value = serde_json::from_slice(line)
                .map_err(|e| Stop::Failed(format!("a stored Provenance is not JSON: {e}")))?;
            let instant = |v: Option<&Value>| {
                v.and_then(Value::as_str)
                    .and_then(|s| Instant::parse(s).ok())
            };
            let recorded = instant(value.get("recorded"))
                .or_else(|| instant(value.pointer("/meta/lastUpdated")))
                .map_or(i64::MIN, |i| i.0);
            let mut targets: Vec<Ref> = value
                .get("target")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|t| t.get("reference").and_then(Value::as_str))
                .filter_map(reference_target)
                .filter(|(t, _)| *t != "Provenance")
                .map(|(t, id)| (t.to_string(), id.to_string()))
                .collect();
            targets.sort();
            targets.dedup();
            Ok(Prov {
                line,
                id: value
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                value,
                recorded,
                targets,
            })
        })
        .collect()
}

/// Latest: for each target, the `(recorded, id)` of its newest Provenance that passes the
/// Provenance `_typeFilter`. Targets of types the export does not return are left out.
async fn latest_per_target(
    cx: &Context<'_>,
    scan: ExportScan,
    lost: &CancellationToken,
) -> Result<HashMap<Ref, (i64, String)>, Stop> {
    let mut best: HashMap<Ref, (i64, String)> = HashMap::new();
    let mut chunks = cx.shared.store.export(scan, cx.shared.config.chunk_bytes);
    while let Some(chunk) = chunks.next().await {
        check(cx.shared, lost)?;
        let chunk = chunk.map_err(|e| Stop::Failed(format!("reading Provenance: {e}")))?;
        for p in parse_chunk(&chunk.bytes)? {
            if cx.provenance.as_ref().is_some_and(|t| !t.passes(&p.value)) {
                continue;
            }
            for r in p.targets {
                if !cx.targets.types.contains(&r.0) {
                    continue;
                }
                let candidate = (p.recorded, p.id.clone());
                match best.get_mut(&r) {
                    Some(b) if *b >= candidate => {}
                    Some(b) => *b = candidate,
                    None => {
                        best.insert(r, candidate);
                    }
                }
            }
        }
    }
    Ok(best)
}

impl Context<'_> {
    /// The targets of `provs` that the export returns.
    async fn relevant_targets(&mut self, provs: &[Prov<'_>]) -> Result<HashSet<Ref>, Stop> {
        let refs: Vec<Ref> = provs
            .iter()
            .flat_map(|p| p.targets.iter().cloned())
            .filter(|(t, _)| self.targets.types.contains(t))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if refs.is_empty() {
            return Ok(HashSet::new());
        }
        let found = self
            .shared
            .store
            .export_lookup(self.targets.clone(), refs.clone())
            .await
            .map_err(|e| Stop::Failed(format!("looking up Provenance targets: {e}")))?;
        let mut relevant = HashSet::new();
        for (r, json) in refs.into_iter().zip(found) {
            let Some(json) = json else { continue };
            let passes = match self.target_filters.get(&r.0).map_err(Stop::Failed)? {
                None => true,
                Some(t) => {
                    let v: Value = serde_json::from_slice(&json)
                        .map_err(|e| Stop::Failed(format!("a stored resource is not JSON: {e}")))?;
                    t.passes(&v)
                }
            };
            if passes {
                relevant.insert(r);
            }
        }
        Ok(relevant)
    }

    /// Ids of `provs` that the plain Provenance unit writes (in its window and scope).
    async fn written_by_plain_unit(&self, provs: &[Prov<'_>]) -> Result<HashSet<String>, Stop> {
        let Some(plain) = &self.plain else {
            return Ok(HashSet::new());
        };
        let refs: Vec<Ref> = provs
            .iter()
            .map(|p| ("Provenance".to_string(), p.id.clone()))
            .collect();
        let found = self
            .shared
            .store
            .export_lookup(plain.clone(), refs)
            .await
            .map_err(|e| Stop::Failed(format!("looking up Provenance: {e}")))?;
        Ok(provs
            .iter()
            .zip(found)
            .filter(|(_, json)| json.is_some())
            .map(|(p, _)| p.id.clone())
            .collect())
    }
}
