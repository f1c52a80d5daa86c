//! Schema migrations, embedded from `migrations/postgres/` (same file names as SQLite's) and
//! tracked in `schema_migrations`. Nodes starting together take turns under an advisory lock;
//! everything lives in the connection's current schema (never schema-qualified), so several
//! installations (or tests) can share one database, each in its own schema.

use crate::{Result, StoreError};

/// Migrations in order; the schema version is the number applied.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init.sql",
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_auth.sql",
        include_str!("../../migrations/postgres/0002_auth.sql"),
    ),
    (
        "0003_unit_order.sql",
        include_str!("../../migrations/postgres/0003_unit_order.sql"),
    ),
    (
        "0004_tenants.sql",
        include_str!("../../migrations/postgres/0004_tenants.sql"),
    ),
    (
        "0005_unit_slices.sql",
        include_str!("../../migrations/postgres/0005_unit_slices.sql"),
    ),
];

/// First key of the advisory lock (an arbitrary constant: "fhbk"); the second is the schema's
/// hash, so installations in different schemas of one database do not wait for each other.
const LOCK_CLASS: i32 = 0x6668_626b;

/// Applies the migrations the database has not seen, each in its own transaction, each
/// under the advisory lock (held until that transaction ends). Another node that migrated
/// meanwhile is seen after the lock is granted, so nothing is applied twice.
pub(super) async fn migrate(conn: &mut deadpool_postgres::Object) -> Result<()> {
    loop {
        let tx = conn.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(coalesce(current_schema(), '')))",
            &[&LOCK_CLASS],
        )
        .await?;
        // Under the lock, so two nodes never race on creating it. `SET LOCAL` keeps the
        // "already exists, skipping" NOTICE of every later start out of the logs.
        tx.batch_execute(
            "SET LOCAL client_min_messages = warning;
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    bigint      PRIMARY KEY,
                 name       text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
        let current: i64 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )
            .await?
            .get(0);
        let current = current as usize;
        if current > MIGRATIONS.len() {
            tx.rollback().await?;
            return Err(StoreError::Database(format!(
                "the database has schema version {current}, newer than this build knows ({}); upgrade fhir-bulk",
                MIGRATIONS.len()
            )));
        }
        let Some((name, sql)) = MIGRATIONS.get(current) else {
            tx.commit().await?;
            return Ok(());
        };
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Database(format!("migration {name} failed: {}", StoreError::from(e)))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&((current + 1) as i64), name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(migration = name, "applied schema migration");
    }
}

#[cfg(test)]
mod tests {
    use super::super::PgStore;
    use super::super::write::testing::Schema;
    use super::MIGRATIONS;

    /// Nodes starting at once apply each migration once; a restart applies nothing.
    #[tokio::test]
    async fn concurrent_starts_migrate_once() {
        let Some(schema) = Schema::new() else {
            return;
        };
        let starts = (0..4).map(|_| PgStore::connect(schema.url()));
        for s in futures::future::join_all(starts).await {
            s.unwrap();
        }
        let s = PgStore::connect(schema.url()).await.unwrap();
        let conn = s.pool.get().await.unwrap();
        let rows = conn
            .query(
                "SELECT version, name FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap();
        let applied: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let want: Vec<(i64, String)> = MIGRATIONS
            .iter()
            .enumerate()
            .map(|(i, (name, _))| (i as i64 + 1, name.to_string()))
            .collect();
        assert_eq!(applied, want);
        // Everything is in the test's schema, nothing elsewhere.
        let n: i64 = conn
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()
                   AND tablename IN ('resources', 'jobs', 'clients', 'tenants', 'clock')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 5);
    }

    /// A database migrated by a newer build is refused, not downgraded.
    #[tokio::test]
    async fn newer_schema_is_refused() {
        let Some(schema) = Schema::new() else {
            return;
        };
        let s = PgStore::connect(schema.url()).await.unwrap();
        s.pool
            .get()
            .await
            .unwrap()
            .execute(
                "INSERT INTO schema_migrations (version, name) VALUES (99, 'future.sql')",
                &[],
            )
            .await
            .unwrap();
        let e = PgStore::connect(schema.url())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("newer than this build"), "{e}");
    }
}
