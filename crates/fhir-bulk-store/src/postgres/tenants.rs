//! Tenants and their limits (migration 0004).

use crate::{DEFAULT_TENANT, NewTenant, Result, StoreError, Tenant};
use deadpool_postgres::Pool;
use fhir_bulk_spec::instant::Instant;
use tokio_postgres::Row;

const COLUMNS: &str = "id, max_exports, rate_per_second, created_at";

/// Tables whose rows belong to a tenant and go with it (jobs are cancelled instead, so the
/// purge removes their files too). The same list as SQLite's.
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

fn from_row(r: &Row) -> Result<Tenant> {
    Ok(Tenant {
        id: r.try_get(0)?,
        max_exports: r.try_get::<_, Option<i64>>(1)?.map(|n| n.max(0) as u64),
        rate_per_second: r.try_get(2)?,
        created_at: Instant(r.try_get(3)?),
    })
}

pub(super) async fn create(pool: &Pool, tenant: NewTenant) -> Result<Tenant> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let ts = super::tick(&tx).await?;
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO tenants ({COLUMNS}) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO NOTHING
                 RETURNING {COLUMNS}"
            ),
            &[
                &tenant.id,
                &tenant.max_exports.map(|n| n as i64),
                &tenant.rate_per_second,
                &ts.0,
            ],
        )
        .await?;
    let Some(row) = row else {
        return Err(StoreError::Invalid(format!(
            "a tenant '{}' already exists",
            tenant.id
        )));
    };
    let created = from_row(&row)?;
    tx.commit().await?;
    Ok(created)
}

pub(super) async fn get(pool: &Pool, id: &str) -> Result<Option<Tenant>> {
    let conn = pool.get().await?;
    let st = conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"))
        .await?;
    conn.query_opt(&st, &[&id])
        .await?
        .map(|r| from_row(&r))
        .transpose()
}

pub(super) async fn list(pool: &Pool) -> Result<Vec<Tenant>> {
    let conn = pool.get().await?;
    conn.query(
        &format!("SELECT {COLUMNS} FROM tenants ORDER BY id COLLATE \"C\""),
        &[],
    )
    .await?
    .iter()
    .map(from_row)
    .collect()
}

pub(super) async fn delete(pool: &Pool, id: &str) -> Result<bool> {
    if id == DEFAULT_TENANT {
        return Err(StoreError::Invalid(
            "the default tenant cannot be removed".into(),
        ));
    }
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    // The writer lock, as SQLite's delete holds it: a write or kick-off of this tenant on
    // another node commits before (and is deleted or cancelled here) or starts after; without
    // it, rows a concurrent write has not committed yet would survive the tenant.
    super::tick(&tx).await?;
    if tx
        .execute("DELETE FROM tenants WHERE id = $1", &[&id])
        .await?
        == 0
    {
        return Ok(false);
    }
    for table in TENANT_TABLES {
        tx.execute(&format!("DELETE FROM {table} WHERE tenant = $1"), &[&id])
            .await?;
    }
    tx.execute(
        "UPDATE jobs SET status = 'cancelled' WHERE tenant = $1",
        &[&id],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn active_jobs(pool: &Pool, tenant: &str) -> Result<u64> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT count(*) FROM jobs WHERE tenant = $1 AND status = 'running'",
            &[&tenant],
        )
        .await?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

#[cfg(test)]
mod tests {
    use super::TENANT_TABLES;
    use crate::postgres::write::testing::db;
    use crate::{DEFAULT_TENANT, NewTenant, Store};

    /// Removing a tenant empties each of [`TENANT_TABLES`] of its rows, and only of its rows:
    /// one row in every table for each tenant, put there with plain SQL (those tables belong
    /// to the resource writer, and the trait cannot show all of them). What the trait shows of
    /// a removal is tested on both backends, in `tests/store/tenants.rs`.
    #[tokio::test]
    async fn delete_empties_every_tenant_table() {
        let Some(db) = db().await else { return };
        let store = &db.store;
        let a = NewTenant {
            id: "a".into(),
            max_exports: None,
            rate_per_second: None,
        };
        store.create_tenant(a).await.unwrap();
        let sql = db.schema.sql().await;
        for tenant in ["a", DEFAULT_TENANT] {
            for (table, values) in [
                ("resources", "'Patient', 'p', 1, 1, false, '\\x7b7d'::bytea"),
                (
                    "resource_versions",
                    "'Patient', 'p', 0, 0, 1, '\\x7b7d'::bytea",
                ),
                ("compartment", "'Patient', 'p', 'p'"),
                ("group_members", "'g', 'Patient', 'p'"),
                ("search_values", "'Patient', 'p', 'name', 'x'"),
                ("type_counts", "'Patient', 1"),
                ("clients", "'c', 'c', 's', NULL, NULL, 'h', 0, 0"),
                ("assertion_jtis", "'c', 'j', 0"),
                ("server_secrets", "'k', '\\x00'::bytea, 0"),
            ] {
                sql.execute(
                    &format!("INSERT INTO {table} VALUES ($1, {values})"),
                    &[&tenant],
                )
                .await
                .unwrap();
            }
        }

        assert!(store.delete_tenant("a").await.unwrap());
        for table in TENANT_TABLES {
            let count = |tenant: &'static str| {
                let sql = &sql;
                async move {
                    sql.query_one(
                        &format!("SELECT count(*) FROM {table} WHERE tenant = $1"),
                        &[&tenant],
                    )
                    .await
                    .unwrap()
                    .get::<_, i64>(0)
                }
            };
            assert_eq!(count("a").await, 0, "{table}");
            assert_eq!(count(DEFAULT_TENANT).await, 1, "{table}");
        }
    }
}
