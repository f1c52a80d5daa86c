//! `serve --demo`: fills an empty store with synthetic patients (`fhir-bulk-synth`), loaded
//! through the same ingest path as `fhir-bulk load`.

use anyhow::Context;
use fhir_bulk_server::ingest::{NoProgress, load_paths};
use fhir_bulk_store::{DEFAULT_TENANT, Store};
use fhir_bulk_synth::{SynthConfig, generate};
use std::sync::Arc;

/// Generates `patients` synthetic patients and loads them, if the store holds nothing yet.
pub async fn fill_if_empty(store: &Arc<dyn Store>, patients: u64) -> anyhow::Result<()> {
    if !store.type_counts(DEFAULT_TENANT).await?.is_empty() {
        tracing::info!("--demo: the store already holds data; not adding demo data");
        return Ok(());
    }
    let dir = tempfile::tempdir().context("creating a temporary folder for demo data")?;
    let out = dir.path().to_path_buf();
    let config = SynthConfig { patients, seed: 1 };
    tokio::task::spawn_blocking(move || generate(&config, &out, &mut |_| {}))
        .await?
        .context("generating demo data")?;
    let report = load_paths(
        store.as_ref(),
        DEFAULT_TENANT,
        &[dir.path().to_path_buf()],
        &NoProgress,
    )
    .await
    .context("loading demo data")?;
    tracing::info!(
        patients,
        resources = report.resources,
        groups = "all-patients, cohort-10pct, small-sample",
        "--demo: loaded synthetic data"
    );
    Ok(())
}
