//! `.json` input: a Bundle, split into its entries, or a single resource.
//!
//! The file is read whole: `urn:uuid:` references can point to any entry, so a Bundle is
//! resolved as one value (Synthea writes one such Bundle per patient, a few MB each).
//!
//! A Bundle of type `collection`, `transaction` or `batch` loads its entries (a `batch`
//! atomically too, see [`fhir_bulk_spec::bundle`]). `document` and `message` Bundles are
//! resources in their own right and are stored as one Bundle. Other Bundle types (`searchset`,
//! `history`, responses) are refused: storing a search result as a resource is never what
//! was meant, and loading its entries would silently drop what the type says about them.

use super::ndjson::not_json;
use super::{BATCH_WRITES, BatchSender, Counters, IngestError, send_batch};
use fhir_bulk_spec::bundle::{BundleError, EntryAction, bundle_type, entries};
use fhir_bulk_store::Write;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Parses `path` and sends its writes in batches.
pub(super) fn parse(
    path: &Path,
    counters: &Arc<Counters>,
    tx: &BatchSender,
) -> Result<(), IngestError> {
    let bytes = std::fs::read(path).map_err(|source| IngestError::Io {
        path: path.into(),
        source,
    })?;
    counters
        .bytes
        .fetch_add(bytes.len() as u64, Ordering::Relaxed);
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let value: Value = serde_json::from_slice(bytes).map_err(|e| IngestError::Invalid {
        path: path.into(),
        line: Some(e.line() as u64),
        message: not_json(&e),
    })?;
    let invalid = |message: String| IngestError::Invalid {
        path: path.into(),
        line: None,
        message,
    };

    let is_bundle = value.get("resourceType").and_then(Value::as_str) == Some("Bundle");
    let writes = if is_bundle && !matches!(bundle_type(&value), Some("document" | "message")) {
        let bundle_error = |source| IngestError::Bundle {
            path: path.into(),
            source,
        };
        let actions =
            entries(&value, &mut || uuid::Uuid::new_v4().to_string()).map_err(bundle_error)?;
        drop(value);
        let mut writes = Vec::with_capacity(actions.len());
        for (i, action) in actions.into_iter().enumerate() {
            let write = match action {
                EntryAction::Put { resource, .. } => Write::put(resource),
                EntryAction::Delete { resource_type, id } => Write::delete(&resource_type, &id),
            };
            // `entries` already validated; this only guards against the two rule sets drifting.
            writes.push(write.map_err(|e| {
                bundle_error(BundleError {
                    entry: Some(i),
                    message: e.to_string(),
                })
            })?);
        }
        writes
    } else {
        vec![Write::put(value).map_err(|e| invalid(e.to_string()))?]
    };

    let mut writes = writes.into_iter().peekable();
    while writes.peek().is_some() {
        if !send_batch(tx, counters, writes.by_ref().take(BATCH_WRITES).collect()) {
            break;
        }
    }
    Ok(())
}
