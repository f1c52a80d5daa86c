//! Writes: row-by-row for REST (`write`), `COPY` into a staging table for loads (`write_stream`).
//! STUB: being written (session 2).
#![allow(unused_variables)]

use crate::{Result, Write, WriteResult, WriteSummary};
use deadpool_postgres::Pool;
use futures::stream::BoxStream;

pub(super) async fn write(
    pool: &Pool,
    tenant: &str,
    writes: Vec<Write>,
) -> Result<Vec<WriteResult>> {
    todo!()
}

pub(super) async fn write_stream(
    pool: &Pool,
    tenant: &str,
    batches: BoxStream<'static, Result<Vec<Write>>>,
) -> Result<WriteSummary> {
    todo!()
}

pub(super) async fn prune_versions(pool: &Pool) -> Result<u64> {
    todo!()
}
