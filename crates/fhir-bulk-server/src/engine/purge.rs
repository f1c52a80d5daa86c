//! Purges expired and cancelled jobs (their files, then their rows), and superseded
//! versions no running export needs any more.

use super::Shared;
use fhir_bulk_spec::instant::Instant;

pub(super) async fn purger(shared: Shared) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(shared.config.purge_interval) => {}
            _ = shared.stop.cancelled() => return,
        }
        if let Err(e) = purge_once(&shared).await {
            tracing::warn!(error = %e, "purging expired jobs failed; will retry");
        }
    }
}

/// One purge pass.
pub(crate) async fn purge_once(shared: &Shared) -> Result<(), fhir_bulk_store::StoreError> {
    for job_id in shared.store.purgeable_jobs(Instant::now()).await? {
        if let Err(e) = shared.sink.delete_job(&job_id).await {
            tracing::warn!(job = %job_id, error = %e, "cannot delete job files; will retry");
            continue;
        }
        shared.store.delete_job(&job_id).await?;
        tracing::info!(job = %job_id, "purged job and its files");
    }
    let pruned = shared.store.prune_versions().await?;
    if pruned > 0 {
        tracing::debug!(pruned, "pruned superseded versions");
    }
    Ok(())
}
