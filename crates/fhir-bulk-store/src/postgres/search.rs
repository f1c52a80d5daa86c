//! Reads and the small REST search.
//! STUB: being written (session 2).
#![allow(unused_variables)]

use crate::{Result, SearchPage, SearchQuery, StoredResource};
use deadpool_postgres::Pool;

pub(super) async fn read(
    pool: &Pool,
    tenant: &str,
    resource_type: &str,
    id: &str,
) -> Result<Option<StoredResource>> {
    todo!()
}

pub(super) async fn search(pool: &Pool, tenant: &str, query: SearchQuery) -> Result<SearchPage> {
    todo!()
}

pub(super) async fn type_counts(pool: &Pool, tenant: &str) -> Result<Vec<(String, u64)>> {
    todo!()
}

pub(super) async fn group_members(
    pool: &Pool,
    tenant: &str,
    group_id: &str,
) -> Result<Option<Vec<(String, String)>>> {
    todo!()
}
