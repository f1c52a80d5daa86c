//! Tenants and their limits.
//! STUB: being written (session 2).
#![allow(unused_variables)]

use crate::{NewTenant, Result, Tenant};
use deadpool_postgres::Pool;

pub(super) async fn create(pool: &Pool, tenant: NewTenant) -> Result<Tenant> {
    todo!()
}

pub(super) async fn get(pool: &Pool, id: &str) -> Result<Option<Tenant>> {
    todo!()
}

pub(super) async fn list(pool: &Pool) -> Result<Vec<Tenant>> {
    todo!()
}

pub(super) async fn delete(pool: &Pool, id: &str) -> Result<bool> {
    todo!()
}

pub(super) async fn active_jobs(pool: &Pool, tenant: &str) -> Result<u64> {
    todo!()
}
