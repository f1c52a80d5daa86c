//! Organized output (`organizeOutputBy=Patient`, O2): files of blocks, each a header line
//! naming the patient, then the patient's own Patient resource (when exported), then every
//! other exported resource of its compartment.
//!
//! O3 leaves resources of several compartments to the server: they are repeated in the block
//! of each patient in scope (the store yields one row per compartment). A block is built in
//! memory and handed whole to the roller, which rolls files over only between blocks; so
//! memory holds one patient's block (not the export), and only a block that alone exceeds
//! the file limits makes a file bigger than them.

use super::transform::Transforms;
use super::unit::{Stop, check};
use super::{JobParams, Shared, roller::Roller};
use fhir_bulk_store::{ExportSet, Job};
use futures::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

/// The O2 header line of `patient_id`'s block.
fn header(patient_id: &str, out: &mut Vec<u8>) -> Result<(), Stop> {
    let h = serde_json::json!({"resourceType": "Parameters", "parameter": [
        {"name": "header", "valueReference": {"reference": format!("Patient/{patient_id}")}}]});
    serde_json::to_writer(&mut *out, &h).map_err(|e| Stop::Failed(e.to_string()))?;
    out.push(b'\n');
    Ok(())
}

/// A block being built: its bytes (header included) and its resources.
struct Block {
    patient_id: String,
    bytes: Vec<u8>,
    count: u64,
}

impl Block {
    /// Writes the block if it holds any resource (a patient whose resources were all
    /// filtered out gets no block).
    async fn flush(&mut self, roller: &mut Roller<'_>) -> Result<(), Stop> {
        if self.count > 0 {
            roller
                .write_block(&self.bytes, self.count)
                .await
                .map_err(|e| Stop::Failed(format!("cannot write export file: {e}")))?;
        }
        self.bytes.clear();
        self.count = 0;
        Ok(())
    }
}

pub(super) async fn write(
    shared: &Shared,
    job: &Job,
    params: &JobParams,
    set: ExportSet,
    roller: &mut Roller<'_>,
    written: &AtomicU64,
    lost: &CancellationToken,
) -> Result<(), Stop> {
    let mut transforms = Transforms::new(&params.request.type_filters, &params.request.elements);
    let mut rows = shared
        .store
        .export_organized(set, shared.config.chunk_bytes);
    let mut block = Block {
        patient_id: String::new(),
        bytes: Vec::new(),
        count: 0,
    };
    while let Some(chunk) = rows.next().await {
        check(shared, lost)?;
        let chunk = chunk.map_err(|e| Stop::Failed(format!("reading job {}: {e}", job.id)))?;
        for row in chunk {
            if block.patient_id != row.patient_id || block.bytes.is_empty() {
                block.flush(roller).await?;
                header(&row.patient_id, &mut block.bytes)?;
                block.patient_id = row.patient_id;
            }
            if transforms
                .write(&row.resource_type, &row.json, &mut block.bytes)
                .map_err(Stop::Failed)?
            {
                block.count += 1;
                written.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    block.flush(roller).await
}
