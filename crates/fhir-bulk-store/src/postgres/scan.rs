//! Export scans: server-side cursors in one REPEATABLE READ transaction.
//! STUB: being written (session 2).
#![allow(unused_variables)]

use crate::{ExportChunk, ExportScan, ExportSet, OrganizedRow, Result};
use deadpool_postgres::Pool;
use futures::stream::BoxStream;

pub(super) fn export(
    pool: Pool,
    scan: ExportScan,
    chunk_bytes: usize,
) -> BoxStream<'static, Result<ExportChunk>> {
    todo!()
}

pub(super) fn export_deleted(
    pool: Pool,
    scan: ExportScan,
) -> BoxStream<'static, Result<Vec<(String, String)>>> {
    todo!()
}

pub(super) fn export_organized(
    pool: Pool,
    set: ExportSet,
    chunk_bytes: usize,
) -> BoxStream<'static, Result<Vec<OrganizedRow>>> {
    todo!()
}

pub(super) async fn export_lookup(
    pool: &Pool,
    set: ExportSet,
    refs: Vec<(String, String)>,
) -> Result<Vec<Option<Vec<u8>>>> {
    todo!()
}
