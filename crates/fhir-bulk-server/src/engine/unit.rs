//! Running one unit: scan, write files, heartbeat, commit or abandon.

use super::{JobParams, Shared, associated, organized, roller::Roller, transform::Transform};
use fhir_bulk_spec::instant::Instant;
use fhir_bulk_spec::outcome::{Severity, outcome};
use fhir_bulk_store::{ExportScan, ExportSet, FileKind, Job, JobFile, JobStatus, Unit, UnitKind};
use futures::StreamExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

/// Claims beyond this many attempts fail the job instead of retrying forever.
const MAX_ATTEMPTS: i64 = 3;

/// Deletions per `transaction` Bundle line of a `deleted` file (M5).
const DELETES_PER_BUNDLE: usize = 100;

/// Why a unit stopped before completing.
pub(super) enum Stop {
    /// The lease is gone (expired and taken, or the job was cancelled): discard.
    LeaseLost,
    /// The server is shutting down: discard and give the lease back.
    Shutdown,
    /// The unit failed.
    Failed(String),
}

pub(super) async fn run(shared: &Shared, job: Job, unit: Unit) {
    let node = shared.config.node_id.clone();
    let written = Arc::new(AtomicU64::new(0));
    let lost = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat(
        shared.clone(),
        job.id.clone(),
        unit.seq,
        Arc::clone(&written),
        lost.clone(),
    ));

    let mut roller = Roller::new(
        shared.sink.as_ref(),
        &job.id,
        unit.seq,
        file_stem(&unit),
        match unit.kind {
            UnitKind::Output | UnitKind::Organized | UnitKind::Associated => FileKind::Output,
            UnitKind::Deleted => FileKind::Deleted,
            UnitKind::Error => FileKind::Error,
        },
        match unit.kind {
            UnitKind::Error => "OperationOutcome",
            UnitKind::Deleted => "Bundle",
            UnitKind::Output | UnitKind::Organized | UnitKind::Associated => &unit.resource_type,
        },
        shared.config.file_max_resources,
        shared.config.file_max_bytes,
    );
    let result = write_unit(shared, &job, &unit, &mut roller, &written, &lost).await;
    heartbeat.abort();

    let outcome = match result {
        Ok(()) => match roller.finish().await {
            Ok(files) => commit(shared, &job, &unit, &node, files).await,
            Err(e) => {
                // finish() failed part-way: nothing was committed; files are cleaned by purge.
                Err(Stop::Failed(format!("cannot finish export files: {e}")))
            }
        },
        Err(stop) => {
            roller.abort().await;
            Err(stop)
        }
    };
    match outcome {
        Ok(()) => {}
        Err(Stop::LeaseLost) => {
            tracing::warn!(job = %job.id, unit = unit.seq, "lease lost; unit abandoned")
        }
        Err(Stop::Shutdown) => {
            match shared.store.release_unit(&job.id, unit.seq, &node).await {
                Ok(()) => {
                    tracing::info!(job = %job.id, unit = unit.seq, "unit given back at shutdown")
                }
                // Not fatal: the lease expires and another worker takes the unit then.
                Err(e) => {
                    tracing::warn!(job = %job.id, unit = unit.seq, error = %e, "cannot give the unit back at shutdown; it is taken again when its lease expires")
                }
            }
        }
        Err(Stop::Failed(reason)) => {
            if unit.attempts >= MAX_ATTEMPTS {
                tracing::error!(job = %job.id, unit = unit.seq, %reason, "unit failed; failing the job");
                let _ = shared.store.fail_job(&job.id, &reason).await;
            } else {
                tracing::warn!(job = %job.id, unit = unit.seq, %reason, "unit failed; it will be retried");
                let _ = shared.store.release_unit(&job.id, unit.seq, &node).await;
            }
        }
    }
}

fn file_stem(unit: &Unit) -> String {
    let kind = match unit.kind {
        UnitKind::Output => "",
        UnitKind::Deleted => "deleted-",
        UnitKind::Error => "error-",
        UnitKind::Organized => "by-",
        UnitKind::Associated => "associated-",
    };
    format!(
        "{kind}{}-{:03}-a{}",
        unit.resource_type, unit.seq, unit.attempts
    )
}

async fn commit(
    shared: &Shared,
    job: &Job,
    unit: &Unit,
    node: &str,
    files: Vec<JobFile>,
) -> Result<(), Stop> {
    let names: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    let tally = shared.metrics.tally(unit.kind, &files);
    match shared
        .store
        .complete_unit(&job.id, unit.seq, node, files)
        .await
    {
        Ok(true) => {
            tracing::info!(job = %job.id, unit = unit.seq, files = names.len(), "unit completed");
            shared.metrics.exported(tally);
            observe_if_last(shared, job, unit.seq).await;
            Ok(())
        }
        Ok(false) => {
            shared.sink.delete_files(&job.id, &names).await;
            Err(Stop::LeaseLost)
        }
        Err(e) => {
            shared.sink.delete_files(&job.id, &names).await;
            Err(Stop::Failed(format!("cannot commit the unit: {e}")))
        }
    }
}

/// Observes the job's duration when `seq` was its last unit. Several units can see the job
/// completed (completions on other workers or nodes commit meanwhile), but the store numbers
/// completions (`done_seq`) densely per job, so only the last has the unit count: each job
/// is observed once across nodes. The cheap job read first spares the unit list while the
/// job still runs.
async fn observe_if_last(shared: &Shared, job: &Job, seq: i64) {
    let done = match shared.store.job(&job.tenant, &job.id).await {
        Ok(Some(j)) if j.status == JobStatus::Completed => j,
        Ok(_) => return,
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "metrics: cannot read the job");
            return;
        }
    };
    match shared.store.units(&job.id).await {
        Ok(units) => {
            let last = i64::try_from(units.len()).ok();
            if units.iter().any(|u| u.seq == seq && u.done_seq == last) {
                let end = done.finished_at.unwrap_or_else(Instant::now);
                shared
                    .metrics
                    .export_completed((end.0 - done.created_at.0) as f64 / 1e6);
            }
        }
        Err(e) => tracing::warn!(job = %job.id, error = %e, "metrics: cannot read the job's units"),
    }
}

/// Renews the lease every third of its length; cancels `lost` when it is gone.
async fn heartbeat(
    shared: Shared,
    job_id: String,
    seq: i64,
    written: Arc<AtomicU64>,
    lost: CancellationToken,
) {
    let every = shared.config.lease / 3;
    loop {
        tokio::time::sleep(every).await;
        let n = written.load(Ordering::Relaxed);
        match shared
            .store
            .heartbeat(&job_id, seq, &shared.config.node_id, shared.config.lease, n)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            // A failed heartbeat is not a lost lease; try again next beat.
            Err(e) => tracing::warn!(job = %job_id, error = %e, "heartbeat failed"),
        }
    }
}

pub(super) fn check(shared: &Shared, lost: &CancellationToken) -> Result<(), Stop> {
    if lost.is_cancelled() {
        Err(Stop::LeaseLost)
    } else if shared.stop.is_cancelled() {
        Err(Stop::Shutdown)
    } else {
        Ok(())
    }
}

async fn write_unit(
    shared: &Shared,
    job: &Job,
    unit: &Unit,
    roller: &mut Roller<'_>,
    written: &AtomicU64,
    lost: &CancellationToken,
) -> Result<(), Stop> {
    let params = JobParams::of(job).map_err(Stop::Failed)?;
    let io = |e: std::io::Error| Stop::Failed(format!("cannot write export file: {e}"));
    let until = match params.request.until {
        Some(u) if u < job.transaction_time => u,
        _ => job.transaction_time,
    };
    let scan = ExportScan {
        tenant: job.tenant.clone(),
        resource_type: unit.resource_type.clone(),
        since: params.request.since,
        until,
        scope: params.scope.clone(),
        ids: unit.ids.clone(),
    };
    match unit.kind {
        UnitKind::Output => {
            let transform = Transform::for_type(
                &params.request.type_filters,
                &params.request.elements,
                &unit.resource_type,
            )
            .map_err(Stop::Failed)?
            .map(Arc::new);
            let mut chunks = shared.store.export(scan, shared.config.chunk_bytes);
            while let Some(chunk) = chunks.next().await {
                check(shared, lost)?;
                let chunk = chunk
                    .map_err(|e| Stop::Failed(format!("reading {}: {e}", unit.resource_type)))?;
                let count = chunk.count;
                match &transform {
                    None => roller.write(&chunk.bytes, count).await.map_err(io)?,
                    Some(t) => {
                        // Parsing and matching is CPU work: keep it off the async threads
                        // that answer status polls and downloads.
                        let t = Arc::clone(t);
                        let (kept, n) = tokio::task::spawn_blocking(move || {
                            let mut kept = Vec::with_capacity(chunk.bytes.len());
                            t.apply(&chunk.bytes, &mut kept).map(|n| (kept, n))
                        })
                        .await
                        .map_err(|e| Stop::Failed(format!("filtering task failed: {e}")))?
                        .map_err(Stop::Failed)?;
                        roller.write(&kept, n).await.map_err(io)?;
                    }
                }
                written.fetch_add(count, Ordering::Relaxed);
            }
        }
        UnitKind::Organized => {
            let set = ExportSet {
                tenant: job.tenant.clone(),
                types: params.types.clone(),
                since: params.request.since,
                until,
                scope: params.scope.clone(),
            };
            organized::write(shared, job, &params, set, roller, written, lost).await?;
        }
        UnitKind::Associated => {
            associated::write(shared, job, &params, until, roller, written, lost).await?;
        }
        UnitKind::Deleted => {
            let mut batches = shared.store.export_deleted(scan);
            let mut line = Vec::new();
            while let Some(batch) = batches.next().await {
                check(shared, lost)?;
                let batch = batch.map_err(|e| Stop::Failed(format!("reading deletions: {e}")))?;
                for group in batch.chunks(DELETES_PER_BUNDLE) {
                    line.clear();
                    serde_json::to_writer(&mut line, &deleted_bundle(group))
                        .map_err(|e| Stop::Failed(e.to_string()))?;
                    line.push(b'\n');
                    roller.write(&line, 1).await.map_err(io)?;
                    written.fetch_add(group.len() as u64, Ordering::Relaxed);
                }
            }
        }
        UnitKind::Error => {
            let mut text = Vec::new();
            for w in &params.warnings {
                serde_json::to_writer(&mut text, &outcome(Severity::Warning, "not-supported", w))
                    .map_err(|e| Stop::Failed(e.to_string()))?;
                text.push(b'\n');
            }
            roller
                .write(&text, params.warnings.len() as u64)
                .await
                .map_err(io)?;
        }
    }
    check(shared, lost)
}

/// M5: a `transaction` Bundle of DELETE entries.
fn deleted_bundle(deleted: &[(String, String)]) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = deleted
        .iter()
        .map(|(t, id)| serde_json::json!({"request": {"method": "DELETE", "url": format!("{t}/{id}")}}))
        .collect();
    serde_json::json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}
