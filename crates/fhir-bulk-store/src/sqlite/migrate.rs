//! Schema migrations, embedded from `migrations/sqlite/` and tracked in `PRAGMA user_version`.
//! The PostgreSQL backend keeps the same file names (a tidy test checks it).

use crate::{Result, StoreError};
use rusqlite::Connection;

/// Migrations in order; the schema version is the number applied.
pub(crate) const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        "0002_auth.sql",
        include_str!("../../migrations/sqlite/0002_auth.sql"),
    ),
    (
        "0003_unit_order.sql",
        include_str!("../../migrations/sqlite/0003_unit_order.sql"),
    ),
    (
        "0004_tenants.sql",
        include_str!("../../migrations/sqlite/0004_tenants.sql"),
    ),
    (
        "0005_unit_slices.sql",
        include_str!("../../migrations/sqlite/0005_unit_slices.sql"),
    ),
];

/// Applies the migrations the database has not seen, each in its own transaction.
pub(crate) fn migrate(conn: &mut Connection) -> Result<()> {
    let current: usize =
        conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "the database has schema version {current}, newer than this build knows ({}); upgrade fhir-bulk",
            MIGRATIONS.len()
        )));
    }
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|e| StoreError::Database(format!("migration {name} failed: {e}")))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(migration = name, "applied schema migration");
    }
    Ok(())
}
