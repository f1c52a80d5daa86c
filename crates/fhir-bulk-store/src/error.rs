//! Errors of the store.

/// Everything a store call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The input is not acceptable (bad resource, bad id…). Safe to show to the client.
    #[error("{0}")]
    Invalid(String),
    /// A referenced thing does not exist. Safe to show to the client.
    #[error("{0}")]
    NotFound(String),
    /// The database failed. Logged; clients only learn that an internal error occurred.
    #[error("database error: {0}")]
    Database(String),
    /// A blocking task panicked or was cancelled.
    #[error("store task failed: {0}")]
    Task(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<tokio::task::JoinError> for StoreError {
    fn from(e: tokio::task::JoinError) -> Self {
        StoreError::Task(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's own message (with its detail) says more than the Display of the
        // wrapper ("db error").
        match e.as_db_error() {
            Some(db) => StoreError::Database(match db.detail() {
                Some(detail) => format!("{}: {detail}", db.message()),
                None => db.message().to_string(),
            }),
            None => StoreError::Database(e.to_string()),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Database(format!("no database connection: {e}"))
    }
}
