//! Export scans: rows stream from a read transaction to the caller in chunks of whole
//! NDJSON lines, through a channel of two chunks, so memory is bounded by bytes whatever
//! the export size. The reading runs on a blocking thread that owns its connection until
//! the scan ends or the receiver is dropped (a cancelled unit stops reading at once).

use super::Pool;
use crate::{ExportChunk, ExportScan, PatientScope, Result, StoreError};
use futures::stream::{self, BoxStream};
use rusqlite::types::Value as SqlValue;
use std::sync::Arc;
use tokio::sync::mpsc;

/// The compartment condition on alias `{a}` (`r` for resources, `v` for versions).
fn scope_sql(scope: &PatientScope, a: &str) -> String {
    match scope {
        PatientScope::All => String::new(),
        PatientScope::AnyPatient => format!(
            " AND EXISTS (SELECT 1 FROM compartment c
                 WHERE c.tenant = {a}.tenant AND c.type = {a}.type AND c.id = {a}.id)"
        ),
        PatientScope::Group(_) => format!(
            " AND EXISTS (SELECT 1 FROM compartment c JOIN group_members m
                 ON m.tenant = c.tenant AND m.member_type = 'Patient' AND m.member_id = c.patient_id
                 WHERE c.tenant = {a}.tenant AND c.type = {a}.type AND c.id = {a}.id AND m.group_id = ?5)"
        ),
        PatientScope::Patients(_) => format!(
            " AND EXISTS (SELECT 1 FROM compartment c
                 WHERE c.tenant = {a}.tenant AND c.type = {a}.type AND c.id = {a}.id
                 AND c.patient_id IN (SELECT value FROM json_each(?5)))"
        ),
    }
}

fn scan_params(scan: &ExportScan) -> Vec<SqlValue> {
    let mut p = vec![
        SqlValue::Text(scan.tenant.clone()),
        SqlValue::Text(scan.resource_type.clone()),
        SqlValue::Integer(scan.since.map_or(i64::MIN, |s| s.0)),
        SqlValue::Integer(scan.until.0),
    ];
    match &scan.scope {
        PatientScope::Group(g) => p.push(SqlValue::Text(g.clone())),
        PatientScope::Patients(ids) => p.push(SqlValue::Text(
            serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()),
        )),
        PatientScope::All | PatientScope::AnyPatient => {}
    }
    p
}

/// Live resources modified in `(since, until]`, plus superseded versions that were current
/// at `until` (the job's snapshot, M1).
fn export_sql(scope: &PatientScope) -> String {
    format!(
        "SELECT r.json FROM resources r
         WHERE r.tenant = ?1 AND r.type = ?2 AND r.deleted = 0
           AND r.last_updated > ?3 AND r.last_updated <= ?4{}
         UNION ALL
         SELECT v.json FROM resource_versions v
         WHERE v.tenant = ?1 AND v.type = ?2
           AND v.last_updated > ?3 AND v.last_updated <= ?4 AND v.superseded_at > ?4{}",
        scope_sql(scope, "r"),
        scope_sql(scope, "v")
    )
}

/// Tombstones: deleted in `(since, until]`.
fn deleted_sql(scope: &PatientScope) -> String {
    format!(
        "SELECT r.id FROM resources r
         WHERE r.tenant = ?1 AND r.type = ?2 AND r.deleted = 1
           AND r.last_updated > ?3 AND r.last_updated <= ?4{}",
        scope_sql(scope, "r")
    )
}

fn receiver_stream<T: Send + 'static>(
    rx: mpsc::Receiver<Result<T>>,
) -> BoxStream<'static, Result<T>> {
    Box::pin(stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

pub(super) fn export(
    pool: Arc<Pool>,
    scan: ExportScan,
    chunk_bytes: usize,
) -> BoxStream<'static, Result<ExportChunk>> {
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let result = pool.read_blocking(|c| {
            let mut st = c.prepare(&export_sql(&scan.scope))?;
            let mut rows = st.query(rusqlite::params_from_iter(scan_params(&scan)))?;
            let mut chunk = ExportChunk {
                bytes: Vec::with_capacity(chunk_bytes + 64 * 1024),
                count: 0,
            };
            while let Some(row) = rows.next()? {
                let json = row
                    .get_ref(0)?
                    .as_blob()
                    .map_err(|e| StoreError::Database(e.to_string()))?;
                chunk.bytes.extend_from_slice(json);
                chunk.bytes.push(b'\n');
                chunk.count += 1;
                if chunk.bytes.len() >= chunk_bytes {
                    let full = std::mem::replace(
                        &mut chunk,
                        ExportChunk {
                            bytes: Vec::with_capacity(chunk_bytes + 64 * 1024),
                            count: 0,
                        },
                    );
                    if tx.blocking_send(Ok(full)).is_err() {
                        return Ok(()); // the reader went away: stop scanning
                    }
                }
            }
            if chunk.count > 0 {
                let _ = tx.blocking_send(Ok(chunk));
            }
            Ok(())
        });
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    receiver_stream(rx)
}

pub(super) fn export_deleted(
    pool: Arc<Pool>,
    scan: ExportScan,
) -> BoxStream<'static, Result<Vec<(String, String)>>> {
    const BATCH: usize = 1000;
    let (tx, rx) = mpsc::channel(2);
    tokio::task::spawn_blocking(move || {
        let result = pool.read_blocking(|c| {
            let mut st = c.prepare(&deleted_sql(&scan.scope))?;
            let mut rows = st.query(rusqlite::params_from_iter(scan_params(&scan)))?;
            let mut batch = Vec::with_capacity(BATCH);
            while let Some(row) = rows.next()? {
                batch.push((scan.resource_type.clone(), row.get::<_, String>(0)?));
                if batch.len() == BATCH && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err()
                {
                    return Ok(());
                }
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(Ok(batch));
            }
            Ok(())
        });
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    receiver_stream(rx)
}
