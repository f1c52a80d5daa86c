//! Registered clients, the assertion replay cache, and server secrets.
//! STUB: being written (session 2).
#![allow(unused_variables)]

use crate::{Client, Credential, NewClient, Result};
use deadpool_postgres::Pool;
use fhir_bulk_spec::instant::Instant;

pub(super) async fn create(pool: &Pool, client: NewClient) -> Result<Client> {
    todo!()
}

pub(super) async fn get(pool: &Pool, tenant: &str, id: &str) -> Result<Option<Client>> {
    todo!()
}

pub(super) async fn list(pool: &Pool, tenant: &str) -> Result<Vec<Client>> {
    todo!()
}

pub(super) async fn count(pool: &Pool) -> Result<u64> {
    todo!()
}

pub(super) async fn update_credential(
    pool: &Pool,
    tenant: &str,
    id: &str,
    credential: Credential,
) -> Result<Option<Client>> {
    todo!()
}

pub(super) async fn delete(pool: &Pool, tenant: &str, id: &str) -> Result<bool> {
    todo!()
}

pub(super) async fn record_jti(
    pool: &Pool,
    tenant: &str,
    client_id: &str,
    jti: &str,
    expires_at: Instant,
) -> Result<bool> {
    todo!()
}

pub(super) async fn purge_jtis(pool: &Pool, now: Instant) -> Result<u64> {
    todo!()
}

pub(super) async fn server_secret(
    pool: &Pool,
    tenant: &str,
    name: &str,
    candidate: Vec<u8>,
) -> Result<Vec<u8>> {
    todo!()
}
