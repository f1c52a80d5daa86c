//! Registered clients, the assertion replay cache, and server secrets (migration 0002).
//!
//! Rows stamped with a time (clients, secrets) take it from the store clock, as SQLite does;
//! the replay cache needs no timestamp and stays off the clock, so token requests never wait
//! for a bulk load.

use crate::{Client, Credential, NewClient, Result, StoreError};
use deadpool_postgres::Pool;
use fhir_bulk_spec::instant::Instant;
use tokio_postgres::Row;

const CLIENT_COLUMNS: &str =
    "tenant, id, name, scopes, jwks, jwks_url, secret_hash, created_at, updated_at";

fn client_from_row(r: &Row) -> Result<Client> {
    let jwks: Option<String> = r.try_get(4)?;
    let jwks_url: Option<String> = r.try_get(5)?;
    let secret_hash: Option<String> = r.try_get(6)?;
    // The CHECK constraint makes exactly one of them set.
    let credential = match (jwks, jwks_url, secret_hash) {
        (Some(j), _, _) => Credential::Jwks(j),
        (_, Some(u), _) => Credential::JwksUrl(u),
        (_, _, Some(h)) => Credential::SecretHash(h),
        (None, None, None) => Credential::Jwks(String::from("{\"keys\":[]}")),
    };
    Ok(Client {
        tenant: r.try_get(0)?,
        id: r.try_get(1)?,
        name: r.try_get(2)?,
        scopes: r.try_get(3)?,
        credential,
        created_at: Instant(r.try_get(7)?),
        updated_at: Instant(r.try_get(8)?),
    })
}

/// The three credential columns for a credential.
fn columns(c: &Credential) -> (Option<&str>, Option<&str>, Option<&str>) {
    match c {
        Credential::Jwks(j) => (Some(j), None, None),
        Credential::JwksUrl(u) => (None, Some(u), None),
        Credential::SecretHash(h) => (None, None, Some(h)),
    }
}

pub(super) async fn create(pool: &Pool, client: NewClient) -> Result<Client> {
    let (jwks, url, hash) = columns(&client.credential);
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let ts = super::tick(&tx).await?;
    // ON CONFLICT instead of catching the unique violation: the transaction stays usable and
    // a concurrent registration of the same id (another node) waits, then lands here too.
    let row = tx
        .query_opt(
            &format!(
                "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
                 ON CONFLICT (tenant, id) DO NOTHING
                 RETURNING {CLIENT_COLUMNS}"
            ),
            &[
                &client.tenant,
                &client.id,
                &client.name,
                &client.scopes,
                &jwks,
                &url,
                &hash,
                &ts.0,
            ],
        )
        .await?;
    let Some(row) = row else {
        return Err(StoreError::Invalid(format!(
            "a client '{}' is already registered in tenant '{}'; rotate or remove it instead",
            client.id, client.tenant
        )));
    };
    let created = client_from_row(&row)?;
    tx.commit().await?;
    Ok(created)
}

pub(super) async fn get(pool: &Pool, tenant: &str, id: &str) -> Result<Option<Client>> {
    let conn = pool.get().await?;
    let st = conn
        .prepare_cached(&format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = $1 AND id = $2"
        ))
        .await?;
    conn.query_opt(&st, &[&tenant, &id])
        .await?
        .map(|r| client_from_row(&r))
        .transpose()
}

pub(super) async fn list(pool: &Pool, tenant: &str) -> Result<Vec<Client>> {
    let conn = pool.get().await?;
    conn.query(
        &format!(
            "SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = $1 ORDER BY id COLLATE \"C\""
        ),
        &[&tenant],
    )
    .await?
    .iter()
    .map(client_from_row)
    .collect()
}

pub(super) async fn count(pool: &Pool) -> Result<u64> {
    let conn = pool.get().await?;
    let row = conn.query_one("SELECT count(*) FROM clients", &[]).await?;
    Ok(row.try_get::<_, i64>(0)? as u64)
}

pub(super) async fn update_credential(
    pool: &Pool,
    tenant: &str,
    id: &str,
    credential: Credential,
) -> Result<Option<Client>> {
    let (jwks, url, hash) = columns(&credential);
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let ts = super::tick(&tx).await?;
    let row = tx
        .query_opt(
            &format!(
                "UPDATE clients SET jwks = $3, jwks_url = $4, secret_hash = $5, updated_at = $6
                 WHERE tenant = $1 AND id = $2
                 RETURNING {CLIENT_COLUMNS}"
            ),
            &[&tenant, &id, &jwks, &url, &hash, &ts.0],
        )
        .await?;
    let updated = row.map(|r| client_from_row(&r)).transpose()?;
    tx.commit().await?;
    Ok(updated)
}

pub(super) async fn delete(pool: &Pool, tenant: &str, id: &str) -> Result<bool> {
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let n = tx
        .execute(
            "DELETE FROM clients WHERE tenant = $1 AND id = $2",
            &[&tenant, &id],
        )
        .await?;
    tx.execute(
        "DELETE FROM assertion_jtis WHERE tenant = $1 AND client_id = $2",
        &[&tenant, &id],
    )
    .await?;
    tx.commit().await?;
    Ok(n > 0)
}

/// Inserts the jti unless a live row has it. As in SQLite, expired rows go first (nothing
/// else removes them in a running server), but only those no other node is deleting at the
/// same moment (`SKIP LOCKED`): concurrent calls never wait on each other's clean-up.
/// The insert decides alone: on a conflict it locks the existing row and replaces it only if
/// that row, as last committed, has expired; so of two concurrent calls with the same jti
/// exactly one inserts or replaces, and the other sees its live row.
pub(super) async fn record_jti(
    pool: &Pool,
    tenant: &str,
    client_id: &str,
    jti: &str,
    expires_at: Instant,
) -> Result<bool> {
    let now = Instant::now().0;
    let mut conn = pool.get().await?;
    let tx = conn.transaction().await?;
    let purge = tx
        .prepare_cached(
            "DELETE FROM assertion_jtis a USING (
                 SELECT tenant, client_id, jti FROM assertion_jtis WHERE expires_at < $1
                 FOR UPDATE SKIP LOCKED
             ) e
             WHERE a.tenant = e.tenant AND a.client_id = e.client_id AND a.jti = e.jti",
        )
        .await?;
    tx.execute(&purge, &[&now]).await?;
    let insert = tx
        .prepare_cached(
            "INSERT INTO assertion_jtis (tenant, client_id, jti, expires_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant, client_id, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at
             WHERE assertion_jtis.expires_at < $5",
        )
        .await?;
    let n = tx
        .execute(&insert, &[&tenant, &client_id, &jti, &expires_at.0, &now])
        .await?;
    tx.commit().await?;
    Ok(n == 1)
}

pub(super) async fn purge_jtis(pool: &Pool, now: Instant) -> Result<u64> {
    let conn = pool.get().await?;
    Ok(conn
        .execute(
            "DELETE FROM assertion_jtis WHERE expires_at < $1",
            &[&now.0],
        )
        .await?)
}

/// The first value stored wins. The secret usually exists (every node reads it once per
/// tenant), so it is read first, without touching the clock.
pub(super) async fn server_secret(
    pool: &Pool,
    tenant: &str,
    name: &str,
    candidate: Vec<u8>,
) -> Result<Vec<u8>> {
    const SELECT: &str = "SELECT value FROM server_secrets WHERE tenant = $1 AND name = $2";
    let mut conn = pool.get().await?;
    if let Some(row) = conn.query_opt(SELECT, &[&tenant, &name]).await? {
        return Ok(row.try_get(0)?);
    }
    let tx = conn.transaction().await?;
    let ts = super::tick(&tx).await?;
    tx.execute(
        "INSERT INTO server_secrets (tenant, name, value, created_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant, name) DO NOTHING",
        &[&tenant, &name, &candidate, &ts.0],
    )
    .await?;
    // A new statement, so a new snapshot: it sees the row of a concurrent creator that won.
    let value: Vec<u8> = tx.query_one(SELECT, &[&tenant, &name]).await?.try_get(0)?;
    tx.commit().await?;
    Ok(value)
}
