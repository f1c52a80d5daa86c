//! Export jobs, units with leases (`FOR UPDATE SKIP LOCKED`), and their files.
//! STUB: being written (session 2).
#![allow(unused_variables)]

use crate::{Job, JobFile, NewJob, QueueCounts, Result, Unit};
use deadpool_postgres::Pool;
use fhir_bulk_spec::instant::Instant;
use std::time::Duration;

pub(super) async fn create(pool: &Pool, job: NewJob) -> Result<Job> {
    todo!()
}

pub(super) async fn get(pool: &Pool, tenant: &str, id: &str) -> Result<Option<Job>> {
    todo!()
}

pub(super) async fn units(pool: &Pool, job_id: &str) -> Result<Vec<Unit>> {
    todo!()
}

pub(super) async fn files(pool: &Pool, job_id: &str) -> Result<Vec<JobFile>> {
    todo!()
}

pub(super) async fn active(pool: &Pool, tenant: &str, client_id: Option<&str>) -> Result<u64> {
    todo!()
}

pub(super) async fn claim(pool: &Pool, node: &str, lease: Duration) -> Result<Option<(Job, Unit)>> {
    todo!()
}

pub(super) async fn heartbeat(
    pool: &Pool,
    job_id: &str,
    seq: i64,
    node: &str,
    lease: Duration,
    written: u64,
) -> Result<bool> {
    todo!()
}

pub(super) async fn complete(
    pool: &Pool,
    job_id: &str,
    seq: i64,
    node: &str,
    files: Vec<JobFile>,
) -> Result<bool> {
    todo!()
}

pub(super) async fn release(pool: &Pool, job_id: &str, seq: i64, node: &str) -> Result<()> {
    todo!()
}

pub(super) async fn fail(pool: &Pool, job_id: &str, reason: &str) -> Result<()> {
    todo!()
}

pub(super) async fn cancel(pool: &Pool, tenant: &str, id: &str) -> Result<bool> {
    todo!()
}

pub(super) async fn purgeable(pool: &Pool, now: Instant) -> Result<Vec<String>> {
    todo!()
}

pub(super) async fn delete(pool: &Pool, job_id: &str) -> Result<()> {
    todo!()
}

pub(super) async fn queue_counts(pool: &Pool) -> Result<QueueCounts> {
    todo!()
}
