//! Export jobs, units with leases (`FOR UPDATE SKIP LOCKED`), and their files.
//!
//! Locks, always taken in this order so nodes never deadlock: a unit row, then its job row.
//! Claims lock only the unit and skip locked ones, so they never wait. Heartbeat, completion
//! and release lock the unit, so a completion and a lease takeover cannot interleave; a
//! completion also locks its job row, which serialises the completions of one job (dense
//! `done_seq`, and exactly one of them sees that it was the last unit).

use crate::{
    FileKind, IdRange, Job, JobFile, JobStatus, NewJob, QueueCounts, Result, Unit, UnitKind,
};
use deadpool_postgres::{GenericClient, Pool};
use fhir_bulk_spec::instant::Instant;
use std::time::Duration;
use tokio_postgres::Row;

const JOB_COLUMNS: &str = "tenant, id, client_id, status, request_url, params, transaction_time,
    created_at, finished_at, expires_at, error";

/// Number of [`JOB_COLUMNS`].
const JOB_WIDTH: usize = 11;

/// A job from the columns of [`JOB_COLUMNS`] starting at `at`.
fn job_from_row(r: &Row, at: usize) -> Result<Job> {
    let status: &str = r.try_get(at + 3)?;
    let params: &str = r.try_get(at + 5)?;
    Ok(Job {
        tenant: r.try_get(at)?,
        id: r.try_get(at + 1)?,
        client_id: r.try_get(at + 2)?,
        status: JobStatus::parse(status).unwrap_or(JobStatus::Failed),
        request_url: r.try_get(at + 4)?,
        params: serde_json::from_str(params).unwrap_or_default(),
        transaction_time: Instant(r.try_get(at + 6)?),
        created_at: Instant(r.try_get(at + 7)?),
        finished_at: r.try_get::<_, Option<i64>>(at + 8)?.map(Instant),
        expires_at: Instant(r.try_get(at + 9)?),
        error: r.try_get(at + 10)?,
    })
}

const UNIT_COLUMNS: &str = "job_id, seq, resource_type, kind, estimate, status, written, attempts, done_seq, id_from, id_to";

/// A unit from the columns of [`UNIT_COLUMNS`] starting at `at`.
fn unit_from_row(r: &Row, at: usize) -> Result<Unit> {
    let kind: &str = r.try_get(at + 3)?;
    let status: &str = r.try_get(at + 5)?;
    Ok(Unit {
        job_id: r.try_get(at)?,
        seq: r.try_get(at + 1)?,
        resource_type: r.try_get(at + 2)?,
        kind: UnitKind::parse(kind).unwrap_or(UnitKind::Output),
        estimate: r.try_get::<_, i64>(at + 4)? as u64,
        done: status == "done",
        written: r.try_get::<_, i64>(at + 6)? as u64,
        attempts: r.try_get(at + 7)?,
        done_seq: r.try_get(at + 8)?,
        ids: IdRange {
            from: r.try_get(at + 9)?,
            to: r.try_get(at + 10)?,
        },
    })
}

/// Creates a job and its units; its transactionTime is the clock tick that opens the
/// transaction (under the writer lock, as every resource write).
pub(super) async fn create(pool: &Pool, job: NewJob) -> Result<Job> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let ts = super::tick(&tx).await?;
    let expires_at = ts.plus_seconds(job.ttl_seconds);
    // Nothing to do: the manifest is ready at once (an empty `output`, M4).
    let (status, finished_at) = if job.units.is_empty() {
        (JobStatus::Completed, Some(ts.0))
    } else {
        (JobStatus::Running, None)
    };
    let row = tx
        .query_one(
            &format!(
                "INSERT INTO jobs ({JOB_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9, NULL)
                 RETURNING {JOB_COLUMNS}"
            ),
            &[
                &job.tenant,
                &job.id,
                &job.client_id,
                &status.as_str(),
                &job.request_url,
                &job.params.to_string(),
                &ts.0,
                &finished_at,
                &expires_at.0,
            ],
        )
        .await?;
    let created = job_from_row(&row, 0)?;
    if !job.units.is_empty() {
        // One statement for all units, whatever their number.
        let seqs: Vec<i64> = (0..job.units.len() as i64).collect();
        let types: Vec<&str> = job.units.iter().map(|u| u.resource_type.as_str()).collect();
        let kinds: Vec<&str> = job.units.iter().map(|u| u.kind.as_str()).collect();
        let estimates: Vec<i64> = job.units.iter().map(|u| u.estimate as i64).collect();
        let froms: Vec<Option<&str>> = job.units.iter().map(|u| u.ids.from.as_deref()).collect();
        let tos: Vec<Option<&str>> = job.units.iter().map(|u| u.ids.to.as_deref()).collect();
        tx.execute(
            "INSERT INTO job_units (job_id, seq, resource_type, kind, estimate, status, id_from, id_to)
             SELECT $1, u.seq, u.resource_type, u.kind, u.estimate, 'pending', u.id_from, u.id_to
             FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[])
                  AS u (seq, resource_type, kind, estimate, id_from, id_to)",
            &[&job.id, &seqs, &types, &kinds, &estimates, &froms, &tos],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(created)
}

pub(super) async fn get(pool: &Pool, tenant: &str, id: &str) -> Result<Option<Job>> {
    let conn = pool.get().await?;
    let row = conn
        .query_opt(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND tenant = $2"),
            &[&id, &tenant],
        )
        .await?;
    row.map(|r| job_from_row(&r, 0)).transpose()
}

pub(super) async fn units(pool: &Pool, job_id: &str) -> Result<Vec<Unit>> {
    let conn = pool.get().await?;
    let st = conn
        .prepare_cached(&format!(
            "SELECT {UNIT_COLUMNS} FROM job_units WHERE job_id = $1 ORDER BY seq"
        ))
        .await?;
    conn.query(&st, &[&job_id])
        .await?
        .iter()
        .map(|r| unit_from_row(r, 0))
        .collect()
}

pub(super) async fn files(pool: &Pool, job_id: &str) -> Result<Vec<JobFile>> {
    let conn = pool.get().await?;
    let st = conn
        .prepare_cached(
            "SELECT name, unit_seq, kind, resource_type, count, bytes FROM job_files
             WHERE job_id = $1 ORDER BY unit_seq, name COLLATE \"C\"",
        )
        .await?;
    conn.query(&st, &[&job_id])
        .await?
        .iter()
        .map(|r| {
            let kind: &str = r.try_get(2)?;
            Ok(JobFile {
                name: r.try_get(0)?,
                unit_seq: r.try_get(1)?,
                kind: FileKind::parse(kind).unwrap_or(FileKind::Output),
                resource_type: r.try_get(3)?,
                count: r.try_get::<_, i64>(4)? as u64,
                bytes: r.try_get::<_, i64>(5)? as u64,
            })
        })
        .collect()
}

pub(super) async fn active(pool: &Pool, tenant: &str, client_id: Option<&str>) -> Result<u64> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT count(*) FROM jobs
             WHERE tenant = $1 AND client_id IS NOT DISTINCT FROM $2 AND status = 'running'",
            &[&tenant, &client_id],
        )
        .await?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

fn micros(d: Duration) -> i64 {
    d.as_micros() as i64
}

/// Claims the next unit in SQLite's order (oldest job first, then by seq). One statement:
/// the unit is picked and locked (`SKIP LOCKED`: a unit another node is claiming or
/// completing is passed over, never waited for), then leased, and the job read with it.
pub(super) async fn claim(pool: &Pool, node: &str, lease: Duration) -> Result<Option<(Job, Unit)>> {
    let now = Instant::now().0;
    let conn = pool.get().await?;
    let st = conn
        .prepare_cached(&format!(
            "WITH next AS (
                 SELECT u.job_id, u.seq FROM job_units u JOIN jobs j ON j.id = u.job_id
                 WHERE j.status = 'running'
                   AND (u.status = 'pending' OR (u.status = 'leased' AND u.lease_until < $1))
                 ORDER BY j.created_at, u.job_id, u.seq
                 LIMIT 1
                 FOR UPDATE OF u SKIP LOCKED
             )
             UPDATE job_units u
             SET status = 'leased', lease_owner = $2, lease_until = $3,
                 attempts = u.attempts + 1, written = 0
             FROM next JOIN jobs j ON j.id = next.job_id
             WHERE u.job_id = next.job_id AND u.seq = next.seq
             RETURNING {}, {}",
            prefixed("j", JOB_COLUMNS),
            prefixed("u", UNIT_COLUMNS),
        ))
        .await?;
    let row = conn
        .query_opt(&st, &[&now, &node, &(now + micros(lease))])
        .await?;
    row.map(|r| Ok((job_from_row(&r, 0)?, unit_from_row(&r, JOB_WIDTH)?)))
        .transpose()
}

/// `a, b` → `p.a, p.b`.
fn prefixed(p: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{p}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Locks the unit row and tells whether `node` holds its lease while its job runs. After
/// waiting for the lock, the row read is the latest committed one, so a takeover that
/// committed meanwhile is seen.
async fn holds_lease(tx: &impl GenericClient, job_id: &str, seq: i64, node: &str) -> Result<bool> {
    let st = tx
        .prepare_cached(
            "SELECT u.status = 'leased' AND u.lease_owner = $3 AND j.status = 'running'
             FROM job_units u JOIN jobs j ON j.id = u.job_id
             WHERE u.job_id = $1 AND u.seq = $2
             FOR UPDATE OF u",
        )
        .await?;
    let row = tx.query_opt(&st, &[&job_id, &seq, &node]).await?;
    Ok(match row {
        Some(r) => r.try_get::<_, Option<bool>>(0)?.unwrap_or(false),
        None => false,
    })
}

pub(super) async fn heartbeat(
    pool: &Pool,
    job_id: &str,
    seq: i64,
    node: &str,
    lease: Duration,
    written: u64,
) -> Result<bool> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    // Dropping the transaction without commit rolls it back (and frees the lock).
    if !holds_lease(&tx, job_id, seq, node).await? {
        return Ok(false);
    }
    tx.execute(
        "UPDATE job_units SET lease_until = $3, written = $4 WHERE job_id = $1 AND seq = $2",
        &[
            &job_id,
            &seq,
            &(Instant::now().0 + micros(lease)),
            &(written as i64),
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn complete(
    pool: &Pool,
    job_id: &str,
    seq: i64,
    node: &str,
    files: Vec<JobFile>,
) -> Result<bool> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    if !holds_lease(&tx, job_id, seq, node).await? {
        return Ok(false);
    }
    // The job row lock serialises this job's completions: `done_seq` below sees every
    // earlier completion committed, and only the last unit's completion finds none left.
    // It also waits out a concurrent cancel or failure, which then wins.
    let job_status: Option<String> = tx
        .query_opt(
            "SELECT status FROM jobs WHERE id = $1 FOR UPDATE",
            &[&job_id],
        )
        .await?
        .map(|r| r.try_get(0))
        .transpose()?;
    if job_status.as_deref() != Some(JobStatus::Running.as_str()) {
        return Ok(false);
    }
    // A unit redone after a lost lease replaces whatever an earlier attempt committed
    // (none can have: completion needs the lease), keeping the manifest duplicate-free.
    tx.execute(
        "DELETE FROM job_files WHERE job_id = $1 AND unit_seq = $2",
        &[&job_id, &seq],
    )
    .await?;
    let written: u64 = files
        .iter()
        .filter(|f| f.kind != FileKind::Error)
        .map(|f| f.count)
        .sum();
    if !files.is_empty() {
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        let kinds: Vec<&str> = files.iter().map(|f| f.kind.as_str()).collect();
        let types: Vec<&str> = files.iter().map(|f| f.resource_type.as_str()).collect();
        let counts: Vec<i64> = files.iter().map(|f| f.count as i64).collect();
        let bytes: Vec<i64> = files.iter().map(|f| f.bytes as i64).collect();
        tx.execute(
            "INSERT INTO job_files (job_id, name, unit_seq, kind, resource_type, count, bytes)
             SELECT $1, f.name, $2, f.kind, f.resource_type, f.count, f.bytes
             FROM unnest($3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])
                  AS f (name, kind, resource_type, count, bytes)",
            &[&job_id, &seq, &names, &kinds, &types, &counts, &bytes],
        )
        .await?;
    }
    tx.execute(
        "UPDATE job_units SET status = 'done', lease_owner = NULL, lease_until = NULL, written = $3,
           done_seq = (SELECT coalesce(max(done_seq), 0) + 1 FROM job_units WHERE job_id = $1),
           done_by = $4
         WHERE job_id = $1 AND seq = $2",
        &[&job_id, &seq, &(written as i64), &node],
    )
    .await?;
    tx.execute(
        "UPDATE jobs SET status = 'completed', finished_at = $2
         WHERE id = $1 AND status = 'running'
           AND NOT EXISTS (SELECT 1 FROM job_units WHERE job_id = $1 AND status <> 'done')",
        &[&job_id, &Instant::now().0],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// One statement: it locks the unit row and re-checks the owner on the latest version, so a
/// release never undoes another node's takeover.
pub(super) async fn release(pool: &Pool, job_id: &str, seq: i64, node: &str) -> Result<()> {
    let conn = pool.get().await?;
    conn.execute(
        "UPDATE job_units SET status = 'pending', lease_owner = NULL, lease_until = NULL
         WHERE job_id = $1 AND seq = $2 AND lease_owner = $3 AND status = 'leased'",
        &[&job_id, &seq, &node],
    )
    .await?;
    Ok(())
}

pub(super) async fn fail(pool: &Pool, job_id: &str, reason: &str) -> Result<()> {
    let conn = pool.get().await?;
    conn.execute(
        "UPDATE jobs SET status = 'failed', error = $2, finished_at = $3
         WHERE id = $1 AND status = 'running'",
        &[&job_id, &reason, &Instant::now().0],
    )
    .await?;
    Ok(())
}

pub(super) async fn cancel(pool: &Pool, tenant: &str, id: &str) -> Result<bool> {
    let conn = pool.get().await?;
    let n = conn
        .execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = $3
             WHERE id = $1 AND tenant = $2 AND status <> 'cancelled'",
            &[&id, &tenant, &Instant::now().0],
        )
        .await?;
    Ok(n == 1)
}

pub(super) async fn purgeable(pool: &Pool, now: Instant) -> Result<Vec<String>> {
    let conn = pool.get().await?;
    conn.query(
        "SELECT id FROM jobs WHERE status = 'cancelled' OR expires_at <= $1",
        &[&now.0],
    )
    .await?
    .iter()
    .map(|r| Ok(r.try_get(0)?))
    .collect()
}

pub(super) async fn delete(pool: &Pool, job_id: &str) -> Result<()> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    // Units first (the lock order of completions): a completion in flight finishes before
    // its files are deleted, so none of them outlive the job.
    tx.execute("DELETE FROM job_units WHERE job_id = $1", &[&job_id])
        .await?;
    tx.execute("DELETE FROM job_files WHERE job_id = $1", &[&job_id])
        .await?;
    tx.execute("DELETE FROM jobs WHERE id = $1", &[&job_id])
        .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn queue_counts(pool: &Pool) -> Result<QueueCounts> {
    let conn = pool.get().await?;
    let count = async |sql: &str| -> Result<Vec<(String, u64)>> {
        conn.query(sql, &[])
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get::<_, i64>(1)? as u64)))
            .collect()
    };
    Ok(QueueCounts {
        jobs: count(
            "SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status COLLATE \"C\"",
        )
        .await?,
        units: count(
            "SELECT u.status, count(*) FROM job_units u JOIN jobs j ON j.id = u.job_id
             WHERE j.status = 'running' GROUP BY u.status ORDER BY u.status COLLATE \"C\"",
        )
        .await?,
    })
}

/// What only PostgreSQL can show: row locks held by another transaction. The behaviour of
/// jobs through the trait is tested on both backends, in `tests/store/jobs.rs`.
#[cfg(test)]
mod tests {
    use super::super::write::testing::db;
    use crate::{FileKind, IdRange, JobFile, NewJob, NewUnit, Store, UnitKind};
    use serde_json::json;
    use std::time::Duration;

    const LONG: Duration = Duration::from_secs(60);

    /// Job `j` of the default tenant, with `units` Patient units.
    fn job(units: usize) -> NewJob {
        let unit = NewUnit {
            resource_type: "Patient".into(),
            kind: UnitKind::Output,
            estimate: 1,
            ids: IdRange::all(),
        };
        NewJob {
            tenant: "default".into(),
            id: "j".into(),
            client_id: None,
            request_url: "http://x/fhir/$export".into(),
            params: json!({}),
            units: vec![unit; units],
            ttl_seconds: 3600,
        }
    }

    /// A unit locked by a transaction in flight (a completion) is passed over, not waited for.
    #[tokio::test]
    async fn claim_skips_a_locked_unit() {
        let Some(db) = db().await else { return };
        let s = &db.store;
        s.create_job(job(2)).await.unwrap();
        s.claim_unit("a", Duration::from_millis(1)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut sql = db.schema.sql().await;
        let tx = sql.transaction().await.unwrap();
        tx.execute(
            "SELECT 1 FROM job_units WHERE job_id = 'j' AND seq = 0 FOR UPDATE",
            &[],
        )
        .await
        .unwrap();
        let claimed = tokio::time::timeout(Duration::from_secs(5), s.claim_unit("b", LONG))
            .await
            .expect("claim waited for a locked unit")
            .unwrap()
            .unwrap();
        assert_eq!(claimed.1.seq, 1);
        tx.commit().await.unwrap();
        // Unlocked, the expired lease is taken over.
        let (_, u) = s.claim_unit("c", LONG).await.unwrap().unwrap();
        assert_eq!((u.seq, u.attempts), (0, 2));
    }

    /// A completion that waits for a takeover in flight sees it once it commits.
    #[tokio::test]
    async fn completion_after_concurrent_takeover_is_refused() {
        let Some(db) = db().await else { return };
        let s = &db.store;
        s.create_job(job(1)).await.unwrap();
        s.claim_unit("a", LONG).await.unwrap();
        let mut sql = db.schema.sql().await;
        let tx = sql.transaction().await.unwrap();
        tx.execute(
            "UPDATE job_units SET lease_owner = 'b', attempts = attempts + 1
             WHERE job_id = 'j' AND seq = 0",
            &[],
        )
        .await
        .unwrap();
        let s2 = s.clone();
        let completing = tokio::spawn(async move {
            let files = vec![JobFile {
                name: "a.ndjson".into(),
                unit_seq: 0,
                kind: FileKind::Output,
                resource_type: "Patient".into(),
                count: 1,
                bytes: 100,
            }];
            s2.complete_unit("j", 0, "a", files).await.unwrap()
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !completing.is_finished(),
            "completion must wait for the row lock"
        );
        tx.commit().await.unwrap();
        assert!(!completing.await.unwrap());
        assert!(s.files("j").await.unwrap().is_empty());
        assert!(s.heartbeat("j", 0, "b", LONG, 0).await.unwrap());
    }
}
