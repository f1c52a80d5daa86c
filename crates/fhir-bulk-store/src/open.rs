//! Picks the backend from a `--database` value: a `postgres://` (or `postgresql://`) URL is
//! the PostgreSQL backend, anything else is the path of a SQLite file.

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::{Result, Store};
use std::sync::Arc;

/// Is `database` a PostgreSQL connection URL?
pub fn is_postgres(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// Opens (creating and migrating if needed) the store `database` names.
pub async fn open(database: &str) -> Result<Arc<dyn Store>> {
    Ok(if is_postgres(database) {
        Arc::new(PgStore::connect(database).await?)
    } else {
        Arc::new(SqliteStore::open(database).await?)
    })
}

/// `database` with any password replaced by `***`, for logs and error messages.
pub fn redacted(database: &str) -> String {
    if !is_postgres(database) {
        return database.to_string();
    }
    // postgres://user:password@host/db → postgres://user:***@host/db
    let Some((scheme, rest)) = database.split_once("://") else {
        return database.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(parts) => parts,
        None => return database.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => database.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_print() {
        assert_eq!(
            redacted("postgres://app:s3cret@db:5432/fhir"),
            "postgres://app:***@db:5432/fhir"
        );
        assert_eq!(redacted("postgres://app@db/fhir"), "postgres://app@db/fhir");
        assert_eq!(redacted("data/fhir-bulk.db"), "data/fhir-bulk.db");
        assert!(is_postgres("postgresql://x/y") && !is_postgres("postgres.db"));
    }
}
