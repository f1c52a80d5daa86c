//! Tenants and their limits (migration 0004).

use crate::{DEFAULT_TENANT, NewTenant, Result, StoreError, Tenant};
use fhir_bulk_spec::instant::Instant;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

const COLUMNS: &str = "id, max_exports, rate_per_second, created_at";

/// Tables whose rows belong to a tenant and go with it (jobs are cancelled instead, so the
/// purge removes their files too).
const TENANT_TABLES: &[&str] = &[
    "resources",
    "resource_versions",
    "compartment",
    "group_members",
    "search_values",
    "type_counts",
    "clients",
    "assertion_jtis",
    "server_secrets",
];

fn from_row(r: &Row<'_>) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        id: r.get(0)?,
        max_exports: r.get::<_, Option<i64>>(1)?.map(|n| n.max(0) as u64),
        rate_per_second: r.get(2)?,
        created_at: Instant(r.get(3)?),
    })
}

pub(super) fn create(tx: &Transaction<'_>, t: NewTenant, ts: Instant) -> Result<Tenant> {
    let inserted = tx.execute(
        &format!(
            "INSERT INTO tenants ({COLUMNS}) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO NOTHING"
        ),
        params![
            t.id,
            t.max_exports.map(|n| n as i64),
            t.rate_per_second,
            ts.0
        ],
    )?;
    if inserted == 0 {
        return Err(StoreError::Invalid(format!(
            "a tenant '{}' already exists",
            t.id
        )));
    }
    get(tx, &t.id)?.ok_or_else(|| StoreError::Database("tenant vanished after insert".into()))
}

pub(super) fn get(c: &Connection, id: &str) -> Result<Option<Tenant>> {
    Ok(c.query_row(
        &format!("SELECT {COLUMNS} FROM tenants WHERE id = ?1"),
        params![id],
        from_row,
    )
    .optional()?)
}

pub(super) fn list(c: &Connection) -> Result<Vec<Tenant>> {
    let mut st = c.prepare_cached(&format!("SELECT {COLUMNS} FROM tenants ORDER BY id"))?;
    let rows = st.query_map([], from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn delete(tx: &Transaction<'_>, id: &str) -> Result<bool> {
    if id == DEFAULT_TENANT {
        return Err(StoreError::Invalid(
            "the default tenant cannot be removed".into(),
        ));
    }
    if tx.execute("DELETE FROM tenants WHERE id = ?1", params![id])? == 0 {
        return Ok(false);
    }
    for table in TENANT_TABLES {
        tx.execute(
            &format!("DELETE FROM {table} WHERE tenant = ?1"),
            params![id],
        )?;
    }
    tx.execute(
        "UPDATE jobs SET status = 'cancelled' WHERE tenant = ?1",
        params![id],
    )?;
    Ok(true)
}

pub(super) fn active_jobs(c: &Connection, tenant: &str) -> Result<u64> {
    let n: i64 = c.query_row(
        "SELECT count(*) FROM jobs WHERE tenant = ?1 AND status = 'running'",
        params![tenant],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}
