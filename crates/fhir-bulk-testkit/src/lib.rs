//! What the workspace's test suites share (a dev-dependency only, never published): the
//! Synthea data set beside the project, and [`TestDatabase`], a fresh database for one test on
//! the backend the run was asked for.
//!
//! One suite, two backends: by default every test gets its own SQLite file; with
//! `FHIR_BULK_TEST_DATABASE=postgres://…` set, every test gets its own schema in that
//! PostgreSQL database instead (created empty, dropped at the end of the test), so tests run in
//! parallel without seeing each other's rows. Tests open the store with
//! `fhir_bulk_store::open(db.database())`, or pass the same string to `--database` of a
//! `fhir-bulk` process, and never name a backend themselves.
//!
//! ```text
//! cargo nextest run --workspace                                        # SQLite
//! FHIR_BULK_TEST_DATABASE=postgres://root@127.0.0.1:5432/test \
//!     cargo nextest run -p fhir-bulk-store -p fhir-bulk-server -p fhir-bulk  # PostgreSQL
//! ```

mod moto;

pub use moto::MotoServer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that switches the suite to PostgreSQL: a `postgres://` URL of a
/// database the tests may create schemas in.
pub const DATABASE_ENV: &str = "FHIR_BULK_TEST_DATABASE";

/// The id of the one Group of the Synthea data (all 100 patients).
pub const SYNTHEA_GROUP: &str = "d9f31445-f448-48c0-af57-295c005e07df";

/// The Synthea data set beside the project (`../shared/data/synthea-100`; CI always has it).
/// Panics when it is missing: tests that need it never skip.
pub fn synthea_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea-100");
    assert!(
        dir.join("Patient.ndjson").is_file(),
        "the Synthea data set is missing at {} (CI always provides it; tests do not skip)",
        dir.display()
    );
    dir
}

/// The backend this run tests, for messages: `"postgres"` when [`DATABASE_ENV`] is set,
/// else `"sqlite"`.
pub fn backend() -> &'static str {
    if postgres_url().is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

/// The PostgreSQL URL of [`DATABASE_ENV`], if set (and not empty). Panics on anything that is
/// not a `postgres://` URL, rather than quietly testing SQLite.
fn postgres_url() -> Option<String> {
    let url = match std::env::var(DATABASE_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        Ok(_) | Err(std::env::VarError::NotPresent) => return None,
        Err(e) => panic!("{DATABASE_ENV}: {e}"),
    };
    assert!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "{DATABASE_ENV} must be a postgres:// URL, not {:?}",
        redacted(&url)
    );
    Some(url)
}

/// A database for one test: a SQLite file in the test's folder, or a schema of its own in the
/// PostgreSQL database of [`DATABASE_ENV`].
///
/// Keep it alive for as long as the test uses the database (across server restarts too).
/// Dropping it drops the PostgreSQL schema with everything in it; a SQLite file goes with the
/// test's temporary folder.
#[derive(Debug)]
pub struct TestDatabase {
    database: String,
    schema: Option<Schema>,
}

#[derive(Debug)]
struct Schema {
    /// The URL without the schema option, to create and drop the schema with.
    admin_url: String,
    name: String,
}

impl TestDatabase {
    /// A fresh database for one test: `dir/db.sqlite`, or with [`DATABASE_ENV`] set, a new
    /// empty schema `t_<uuid>` and the URL whose connections use it (`options=-csearch_path=…`).
    ///
    /// Works inside or outside a tokio runtime (the schema is created on a thread of its own).
    /// Panics when PostgreSQL was asked for and cannot be reached: a run on PostgreSQL never
    /// falls back to SQLite.
    pub fn new(dir: &Path) -> TestDatabase {
        let Some(url) = postgres_url() else {
            return TestDatabase {
                database: dir.join("db.sqlite").display().to_string(),
                schema: None,
            };
        };
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let sql = format!("CREATE SCHEMA \"{name}\"");
        on_own_thread({
            let url = url.clone();
            async move {
                let client = connect(&url).await?;
                client.batch_execute(&sql).await
            }
        })
        .unwrap_or_else(|e| {
            panic!(
                "{DATABASE_ENV}={}: cannot create the test schema {name} (is PostgreSQL running?): {}",
                redacted(&url),
                describe(&e)
            )
        });
        TestDatabase {
            database: with_schema(&url, &name),
            schema: Some(Schema {
                admin_url: url,
                name,
            }),
        }
    }

    /// What `fhir_bulk_store::open` and `--database` take: a SQLite path or a PostgreSQL URL.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The PostgreSQL schema of this test, if the run is on PostgreSQL.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_ref().map(|s| s.name.as_str())
    }
}

impl Drop for TestDatabase {
    /// Drops the test's schema. Connections of the test's servers may still be open (a server
    /// task the test did not stop, a killed process): any that holds a lock in the schema is
    /// terminated first, so the drop never waits on a test that is over. Failing to drop only
    /// warns (a panic here would abort a test that is already unwinding); the schema is then
    /// left behind under its `t_` name.
    fn drop(&mut self) {
        let Some(Schema { admin_url, name }) = self.schema.take() else {
            return;
        };
        let result = on_own_thread({
            let (url, name) = (admin_url.clone(), name.clone());
            async move { drop_schema(&url, &name).await }
        });
        if let Err(e) = result {
            eprintln!(
                "warning: could not drop the test schema {name} in {}: {}",
                redacted(&admin_url),
                describe(&e)
            );
        }
    }
}

/// `url` with connections' `search_path` set to `schema` (tokio-postgres sends `options` in
/// the startup packet, percent-decoded: `-csearch_path=<schema>`).
pub fn with_schema(url: &str, schema: &str) -> String {
    assert!(
        !url.contains("options="),
        "{DATABASE_ENV} must not set `options` itself (the tests set search_path)"
    );
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Terminates the backends that hold locks on relations of `name`, then drops it; retried,
/// because a still-running server may start a new transaction in between.
async fn drop_schema(url: &str, name: &str) -> Result<(), tokio_postgres::Error> {
    let client = connect(url).await?;
    client
        .batch_execute("SET lock_timeout = '2s'; SET client_min_messages = warning")
        .await?;
    let mut last = None;
    for _ in 0..5 {
        client
            .execute(
                "SELECT pg_terminate_backend(pid) FROM (
                     SELECT DISTINCT l.pid FROM pg_locks l, pg_namespace n
                     WHERE n.nspname = $1 AND l.pid <> pg_backend_pid() AND (
                         (l.locktype = 'object' AND l.classid = 'pg_namespace'::regclass
                             AND l.objid = n.oid)
                         OR l.relation IN (SELECT oid FROM pg_class WHERE relnamespace = n.oid))
                 ) lockers",
                &[&name],
            )
            .await?;
        match client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
            .await
        {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.expect("five attempts"))
}

/// Runs `fut` to completion on a new thread with a runtime of its own, so callers may be
/// inside a runtime (even a current-thread one) or outside any.
fn on_own_thread<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
            .block_on(fut)
    })
    .join()
    .expect("the database helper thread panicked")
}

/// An error with the server's message (tokio-postgres' `Display` says only "db error").
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// `url` with any password replaced by `***`.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((auth, host)) if auth.contains(':') => {
            let user = auth.split_once(':').map_or(auth, |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_option_is_what_tokio_postgres_sends() {
        for (url, dbname) in [
            ("postgres://root@127.0.0.1:5432/test", "test"),
            ("postgresql://u:pw@db/fhir?connect_timeout=5", "fhir"),
        ] {
            let with = with_schema(url, "t_0123abcd");
            let config: tokio_postgres::Config = with.parse().unwrap();
            assert_eq!(config.get_options(), Some("-csearch_path=t_0123abcd"));
            assert_eq!(config.get_dbname(), Some(dbname));
        }
        assert_eq!(
            with_schema("postgres://root@h/test", "t_1"),
            "postgres://root@h/test?options=-csearch_path%3Dt_1"
        );
    }

    #[test]
    fn passwords_never_print() {
        assert_eq!(redacted("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn synthea_is_there() {
        assert!(synthea_dir().join("Patient.ndjson").is_file());
    }

    /// On SQLite: a file in the test's folder. On PostgreSQL: connections of the URL land in
    /// a schema of their own, which is gone once the `TestDatabase` is dropped, even while a
    /// connection still holds a lock in it.
    #[tokio::test]
    async fn a_fresh_database_per_test() {
        let dir = std::env::temp_dir();
        let db = TestDatabase::new(&dir);
        let Some(schema) = db.schema().map(str::to_string) else {
            assert_eq!(backend(), "sqlite");
            assert_eq!(db.database(), dir.join("db.sqlite").display().to_string());
            return;
        };
        assert_eq!(backend(), "postgres");
        let other = TestDatabase::new(&dir);
        assert_ne!(other.schema(), Some(schema.as_str()));

        let client = connect(db.database()).await.unwrap();
        let row = client
            .query_one("SELECT current_schema()", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), schema);
        client
            .batch_execute("CREATE TABLE t (x int); BEGIN; LOCK TABLE t IN ACCESS SHARE MODE")
            .await
            .unwrap();
        drop(db); // the open transaction's lock must not block this

        let admin = connect(&postgres_url().unwrap()).await.unwrap();
        let left = admin
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
            .await
            .unwrap();
        assert!(left.is_none(), "schema {schema} was not dropped");
        drop(other);
    }
}
