//! The store's behaviour through the [`Store`] trait, one suite for both backends: every
//! test gets a fresh database from `fhir_bulk_testkit` (a SQLite file by default, a schema of
//! its own with `FHIR_BULK_TEST_DATABASE=postgres://…`) and opens it with
//! [`fhir_bulk_store::open`], never naming a backend.
//!
//! Tests of one backend's internals (raw SQL, locks, migrations, and the PostgreSQL backend
//! compared with SQLite) stay beside that backend's code.

mod clients;
mod export;
mod jobs;
mod tenants;

use fhir_bulk_store::{IdRange, NewJob, NewUnit, Store, UnitKind, Write};
use fhir_bulk_testkit::TestDatabase;
use serde_json::{Value, json};
use std::sync::Arc;

/// A fresh database for one test, on the backend of this run.
struct Db {
    db: TestDatabase,
    _dir: tempfile::TempDir,
}

impl Db {
    fn new() -> Db {
        let dir = tempfile::tempdir().unwrap();
        Db {
            db: TestDatabase::new(dir.path()),
            _dir: dir,
        }
    }

    /// A store on the database. Each call opens another one: another node on PostgreSQL,
    /// another handle of the same file on SQLite.
    async fn store(&self) -> Arc<dyn Store> {
        fhir_bulk_store::open(self.db.database()).await.unwrap()
    }
}

/// A fresh database and a store on it.
async fn store() -> (Arc<dyn Store>, Db) {
    let db = Db::new();
    (db.store().await, db)
}

fn put(v: Value) -> Write {
    Write::put(v).unwrap()
}

/// An Observation in `subject`'s compartment.
fn obs(id: &str, subject: &str, status: &str) -> Write {
    put(
        json!({"resourceType": "Observation", "id": id, "status": status, "code": {},
        "subject": {"reference": format!("Patient/{subject}")}}),
    )
}

/// A running job of one Patient unit, as an export starts it.
fn patient_job(tenant: &str, id: &str) -> NewJob {
    NewJob {
        tenant: tenant.into(),
        id: id.into(),
        client_id: None,
        request_url: "http://x/$export".into(),
        params: json!({}),
        units: vec![NewUnit {
            resource_type: "Patient".into(),
            kind: UnitKind::Output,
            estimate: 0,
            ids: IdRange::all(),
        }],
        ttl_seconds: 60,
    }
}
