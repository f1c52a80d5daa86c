//! Export jobs, units with leases, and their files.

use crate::{
    FileKind, IdRange, Job, JobFile, JobStatus, NewJob, QueueCounts, Result, StoreError, Unit,
    UnitKind,
};
use fhir_bulk_spec::instant::Instant;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use std::time::Duration;

const JOB_COLUMNS: &str = "tenant, id, client_id, status, request_url, params, transaction_time,
    created_at, finished_at, expires_at, error";

fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
    let status: String = r.get(3)?;
    let params: String = r.get(5)?;
    Ok(Job {
        tenant: r.get(0)?,
        id: r.get(1)?,
        client_id: r.get(2)?,
        status: JobStatus::parse(&status).unwrap_or(JobStatus::Failed),
        request_url: r.get(4)?,
        params: serde_json::from_str(&params).unwrap_or_default(),
        transaction_time: Instant(r.get(6)?),
        created_at: Instant(r.get(7)?),
        finished_at: r.get::<_, Option<i64>>(8)?.map(Instant),
        expires_at: Instant(r.get(9)?),
        error: r.get(10)?,
    })
}

const UNIT_COLUMNS: &str = "job_id, seq, resource_type, kind, estimate, status, written, attempts, done_seq, id_from, id_to";

fn unit_from_row(r: &Row<'_>) -> rusqlite::Result<Unit> {
    let kind: String = r.get(3)?;
    let status: String = r.get(5)?;
    Ok(Unit {
        job_id: r.get(0)?,
        seq: r.get(1)?,
        resource_type: r.get(2)?,
        kind: UnitKind::parse(&kind).unwrap_or(UnitKind::Output),
        estimate: r.get::<_, i64>(4)? as u64,
        done: status == "done",
        written: r.get::<_, i64>(6)? as u64,
        attempts: r.get(7)?,
        done_seq: r.get(8)?,
        ids: IdRange {
            from: r.get(9)?,
            to: r.get(10)?,
        },
    })
}

/// Creates a job at the transaction's timestamp: its transactionTime.
pub(super) fn create(tx: &Transaction<'_>, job: NewJob, ts: Instant) -> Result<Job> {
    let params_text = job.params.to_string();
    let expires_at = ts.plus_seconds(job.ttl_seconds);
    tx.execute(
        &format!("INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?6, NULL, ?7, NULL)"),
        params![job.tenant, job.id, job.client_id, job.request_url, params_text, ts.0, expires_at.0],
    )?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO job_units (job_id, seq, resource_type, kind, estimate, status, id_from, id_to)
         VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, ?7)",
    )?;
    for (seq, u) in job.units.iter().enumerate() {
        ins.execute(params![
            job.id,
            seq as i64,
            u.resource_type,
            u.kind.as_str(),
            u.estimate as i64,
            u.ids.from,
            u.ids.to
        ])?;
    }
    if job.units.is_empty() {
        // Nothing to do: the manifest is ready at once (an empty `output`, M4).
        tx.execute(
            "UPDATE jobs SET status = 'completed', finished_at = ?2 WHERE id = ?1",
            params![job.id, ts.0],
        )?;
    }
    get_tx(tx, &job.id)?.ok_or_else(|| StoreError::Database("job vanished after insert".into()))
}

fn get_tx(c: &Connection, id: &str) -> Result<Option<Job>> {
    get(c, None, id)
}

pub(super) fn get(c: &Connection, tenant: Option<&str>, id: &str) -> Result<Option<Job>> {
    let job = c
        .query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            params![id],
            job_from_row,
        )
        .optional()?;
    Ok(job.filter(|j| tenant.is_none_or(|t| t == j.tenant)))
}

pub(super) fn units(c: &Connection, job_id: &str) -> Result<Vec<Unit>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {UNIT_COLUMNS} FROM job_units WHERE job_id = ?1 ORDER BY seq"
    ))?;
    let rows = st.query_map(params![job_id], unit_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn files(c: &Connection, job_id: &str) -> Result<Vec<JobFile>> {
    let mut st = c.prepare_cached(
        "SELECT name, unit_seq, kind, resource_type, count, bytes FROM job_files WHERE job_id = ?1 ORDER BY unit_seq, name",
    )?;
    let rows = st.query_map(params![job_id], |r| {
        let kind: String = r.get(2)?;
        Ok(JobFile {
            name: r.get(0)?,
            unit_seq: r.get(1)?,
            kind: FileKind::parse(&kind).unwrap_or(FileKind::Output),
            resource_type: r.get(3)?,
            count: r.get::<_, i64>(4)? as u64,
            bytes: r.get::<_, i64>(5)? as u64,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn active(c: &Connection, tenant: &str, client: Option<&str>) -> Result<u64> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM jobs WHERE tenant = ?1 AND client_id IS ?2 AND status = 'running'",
        params![tenant, client],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

fn micros(d: Duration) -> i64 {
    d.as_micros() as i64
}

pub(super) fn claim(
    tx: &Transaction<'_>,
    node: &str,
    lease: Duration,
) -> Result<Option<(Job, Unit)>> {
    let now = Instant::now().0;
    let next: Option<(String, i64)> = tx
        .query_row(
            "SELECT u.job_id, u.seq FROM job_units u JOIN jobs j ON j.id = u.job_id
             WHERE j.status = 'running'
               AND (u.status = 'pending' OR (u.status = 'leased' AND u.lease_until < ?1))
             ORDER BY j.created_at, u.seq LIMIT 1",
            params![now],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((job_id, seq)) = next else {
        return Ok(None);
    };
    tx.execute(
        "UPDATE job_units SET status = 'leased', lease_owner = ?3, lease_until = ?4, attempts = attempts + 1, written = 0
         WHERE job_id = ?1 AND seq = ?2",
        params![job_id, seq, node, now + micros(lease)],
    )?;
    let job = get_tx(tx, &job_id)?
        .ok_or_else(|| StoreError::Database("claimed unit has no job".into()))?;
    let unit = tx.query_row(
        &format!("SELECT {UNIT_COLUMNS} FROM job_units WHERE job_id = ?1 AND seq = ?2"),
        params![job_id, seq],
        unit_from_row,
    )?;
    Ok(Some((job, unit)))
}

/// True when the unit is leased by `node` and its job still runs.
fn holds_lease(tx: &Transaction<'_>, job_id: &str, seq: i64, node: &str) -> Result<bool> {
    let n: i64 = tx.query_row(
        "SELECT count(*) FROM job_units u JOIN jobs j ON j.id = u.job_id
         WHERE u.job_id = ?1 AND u.seq = ?2 AND u.status = 'leased' AND u.lease_owner = ?3 AND j.status = 'running'",
        params![job_id, seq, node],
        |r| r.get(0),
    )?;
    Ok(n == 1)
}

pub(super) fn heartbeat(
    tx: &Transaction<'_>,
    job_id: &str,
    seq: i64,
    node: &str,
    lease: Duration,
    written: u64,
) -> Result<bool> {
    if !holds_lease(tx, job_id, seq, node)? {
        return Ok(false);
    }
    tx.execute(
        "UPDATE job_units SET lease_until = ?3, written = ?4 WHERE job_id = ?1 AND seq = ?2",
        params![
            job_id,
            seq,
            Instant::now().0 + micros(lease),
            written as i64
        ],
    )?;
    Ok(true)
}

pub(super) fn complete(
    tx: &Transaction<'_>,
    job_id: &str,
    seq: i64,
    node: &str,
    files: &[JobFile],
) -> Result<bool> {
    if !holds_lease(tx, job_id, seq, node)? {
        return Ok(false);
    }
    // A unit redone after a lost lease replaces whatever an earlier attempt committed
    // (none can have: completion needs the lease), keeping the manifest duplicate-free.
    tx.execute(
        "DELETE FROM job_files WHERE job_id = ?1 AND unit_seq = ?2",
        params![job_id, seq],
    )?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO job_files (job_id, name, unit_seq, kind, resource_type, count, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut written = 0u64;
    for f in files {
        ins.execute(params![
            job_id,
            f.name,
            seq,
            f.kind.as_str(),
            f.resource_type,
            f.count as i64,
            f.bytes as i64
        ])?;
        if f.kind != FileKind::Error {
            written += f.count;
        }
    }
    // done_seq numbers completions in commit order; the writer lock serialises completions,
    // so the numbers are dense and never reused (the pages of a partial manifest, ST4).
    tx.execute(
        "UPDATE job_units SET status = 'done', lease_owner = NULL, lease_until = NULL, written = ?3,
           done_seq = (SELECT coalesce(max(done_seq), 0) + 1 FROM job_units WHERE job_id = ?1),
           done_by = ?4
         WHERE job_id = ?1 AND seq = ?2",
        params![job_id, seq, written as i64, node],
    )?;
    let remaining: i64 = tx.query_row(
        "SELECT count(*) FROM job_units WHERE job_id = ?1 AND status != 'done'",
        params![job_id],
        |r| r.get(0),
    )?;
    if remaining == 0 {
        tx.execute(
            "UPDATE jobs SET status = 'completed', finished_at = ?2 WHERE id = ?1 AND status = 'running'",
            params![job_id, Instant::now().0],
        )?;
    }
    Ok(true)
}

pub(super) fn release(tx: &Transaction<'_>, job_id: &str, seq: i64, node: &str) -> Result<()> {
    tx.execute(
        "UPDATE job_units SET status = 'pending', lease_owner = NULL, lease_until = NULL
         WHERE job_id = ?1 AND seq = ?2 AND lease_owner = ?3 AND status = 'leased'",
        params![job_id, seq, node],
    )?;
    Ok(())
}

pub(super) fn fail(tx: &Transaction<'_>, job_id: &str, reason: &str) -> Result<()> {
    tx.execute(
        "UPDATE jobs SET status = 'failed', error = ?2, finished_at = ?3 WHERE id = ?1 AND status = 'running'",
        params![job_id, reason, Instant::now().0],
    )?;
    Ok(())
}

pub(super) fn cancel(tx: &Transaction<'_>, tenant: &str, id: &str) -> Result<bool> {
    let n = tx.execute(
        "UPDATE jobs SET status = 'cancelled', finished_at = ?3 WHERE id = ?1 AND tenant = ?2 AND status != 'cancelled'",
        params![id, tenant, Instant::now().0],
    )?;
    Ok(n == 1)
}

pub(super) fn purgeable(c: &Connection, now: Instant) -> Result<Vec<String>> {
    let mut st =
        c.prepare_cached("SELECT id FROM jobs WHERE status = 'cancelled' OR expires_at <= ?1")?;
    let rows = st.query_map(params![now.0], |r| r.get(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn delete(tx: &Transaction<'_>, job_id: &str) -> Result<()> {
    tx.execute("DELETE FROM job_files WHERE job_id = ?1", params![job_id])?;
    tx.execute("DELETE FROM job_units WHERE job_id = ?1", params![job_id])?;
    tx.execute("DELETE FROM jobs WHERE id = ?1", params![job_id])?;
    Ok(())
}

pub(super) fn queue_counts(c: &Connection) -> Result<QueueCounts> {
    let count = |sql: &str| -> Result<Vec<(String, u64)>> {
        let mut st = c.prepare_cached(sql)?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    };
    Ok(QueueCounts {
        jobs: count("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status")?,
        units: count(
            "SELECT u.status, count(*) FROM job_units u JOIN jobs j ON j.id = u.job_id
             WHERE j.status = 'running' GROUP BY u.status ORDER BY u.status",
        )?,
    })
}
