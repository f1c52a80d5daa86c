//! `serve --demo`: fills an empty store with synthetic data. (Wired once synth and ingest land.)

use fhir_bulk_store::{DEFAULT_TENANT, Store};
use std::sync::Arc;

/// Generates `patients` synthetic patients and loads them, if the store holds nothing yet.
pub async fn fill_if_empty(store: &Arc<dyn Store>, patients: u64) -> anyhow::Result<()> {
    if !store.type_counts(DEFAULT_TENANT).await?.is_empty() {
        tracing::info!("--demo: the store already holds data; not adding demo data");
        return Ok(());
    }
    let _ = patients;
    anyhow::bail!("--demo is not available yet")
}
