//! Schema migrations, embedded from `migrations/postgres/` (same file names as SQLite's).
//! STUB: being written (session 2).
#![allow(unused_variables)]

use crate::Result;

pub(super) async fn migrate(conn: &mut deadpool_postgres::Object) -> Result<()> {
    todo!()
}
