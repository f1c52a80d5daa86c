//! One module per subcommand: its clap `Args` and its `run`.

pub mod clients;
pub mod demo;
pub mod export;
pub mod keygen;
pub mod load;
pub mod serve;
pub mod synth;
pub mod tenants;

use anyhow::Context;
use fhir_bulk_store::Store;
use std::sync::Arc;

/// Opens the store a `--database` value names: a SQLite file path, or a `postgres://` URL.
pub async fn open_store(database: &str) -> anyhow::Result<Arc<dyn Store>> {
    fhir_bulk_store::open(database).await.with_context(|| {
        format!(
            "cannot open the database {}",
            fhir_bulk_store::open::redacted(database)
        )
    })
}
