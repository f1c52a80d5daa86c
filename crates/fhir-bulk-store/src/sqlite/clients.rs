//! Registered clients, the assertion replay cache, and server secrets (migration 0002).

use crate::{Client, Credential, NewClient, Result, StoreError};
use fhir_bulk_spec::instant::Instant;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

const CLIENT_COLUMNS: &str =
    "tenant, id, name, scopes, jwks, jwks_url, secret_hash, created_at, updated_at";

fn client_from_row(r: &Row<'_>) -> rusqlite::Result<Client> {
    let jwks: Option<String> = r.get(4)?;
    let jwks_url: Option<String> = r.get(5)?;
    let secret_hash: Option<String> = r.get(6)?;
    // The CHECK constraint makes exactly one of them set.
    let credential = match (jwks, jwks_url, secret_hash) {
        (Some(j), _, _) => Credential::Jwks(j),
        (_, Some(u), _) => Credential::JwksUrl(u),
        (_, _, Some(h)) => Credential::SecretHash(h),
        (None, None, None) => Credential::Jwks(String::from("{\"keys\":[]}")),
    };
    Ok(Client {
        tenant: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        scopes: r.get(3)?,
        credential,
        created_at: Instant(r.get(7)?),
        updated_at: Instant(r.get(8)?),
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

pub(super) fn create(tx: &Transaction<'_>, c: NewClient, ts: Instant) -> Result<Client> {
    let (jwks, url, hash) = columns(&c.credential);
    let inserted = tx.execute(
        &format!(
            "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
             ON CONFLICT (tenant, id) DO NOTHING"
        ),
        params![c.tenant, c.id, c.name, c.scopes, jwks, url, hash, ts.0],
    )?;
    if inserted == 0 {
        return Err(StoreError::Invalid(format!(
            "a client '{}' is already registered in tenant '{}'; rotate or remove it instead",
            c.id, c.tenant
        )));
    }
    get(tx, &c.tenant, &c.id)?
        .ok_or_else(|| StoreError::Database("client vanished after insert".into()))
}

pub(super) fn get(c: &Connection, tenant: &str, id: &str) -> Result<Option<Client>> {
    Ok(c.query_row(
        &format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = ?1 AND id = ?2"),
        params![tenant, id],
        client_from_row,
    )
    .optional()?)
}

pub(super) fn list(c: &Connection, tenant: &str) -> Result<Vec<Client>> {
    let mut st = c.prepare_cached(&format!(
        "SELECT {CLIENT_COLUMNS} FROM clients WHERE tenant = ?1 ORDER BY id"
    ))?;
    let rows = st.query_map(params![tenant], client_from_row)?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn count(c: &Connection) -> Result<u64> {
    let n: i64 = c.query_row("SELECT count(*) FROM clients", [], |r| r.get(0))?;
    Ok(n as u64)
}

pub(super) fn update_credential(
    tx: &Transaction<'_>,
    tenant: &str,
    id: &str,
    credential: &Credential,
    ts: Instant,
) -> Result<Option<Client>> {
    let (jwks, url, hash) = columns(credential);
    let n = tx.execute(
        "UPDATE clients SET jwks = ?3, jwks_url = ?4, secret_hash = ?5, updated_at = ?6
         WHERE tenant = ?1 AND id = ?2",
        params![tenant, id, jwks, url, hash, ts.0],
    )?;
    if n == 0 {
        return Ok(None);
    }
    get(tx, tenant, id)
}

pub(super) fn delete(tx: &Transaction<'_>, tenant: &str, id: &str) -> Result<bool> {
    let n = tx.execute(
        "DELETE FROM clients WHERE tenant = ?1 AND id = ?2",
        params![tenant, id],
    )?;
    tx.execute(
        "DELETE FROM assertion_jtis WHERE tenant = ?1 AND client_id = ?2",
        params![tenant, id],
    )?;
    Ok(n > 0)
}

/// Inserts the jti unless a live row has it. Expired rows go first (all of them: there are
/// few, found by the expiry index), so an expired row with the same jti frees it: the
/// assertion it belonged to can no longer be accepted anyway.
pub(super) fn record_jti(
    tx: &Transaction<'_>,
    tenant: &str,
    client_id: &str,
    jti: &str,
    expires_at: Instant,
) -> Result<bool> {
    let now = Instant::now().0;
    tx.execute(
        "DELETE FROM assertion_jtis WHERE expires_at < ?1",
        params![now],
    )?;
    let inserted = tx.execute(
        "INSERT INTO assertion_jtis (tenant, client_id, jti, expires_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant, client_id, jti) DO NOTHING",
        params![tenant, client_id, jti, expires_at.0],
    )?;
    Ok(inserted == 1)
}

pub(super) fn purge_jtis(tx: &Transaction<'_>, now: Instant) -> Result<u64> {
    let n = tx.execute(
        "DELETE FROM assertion_jtis WHERE expires_at < ?1",
        params![now.0],
    )?;
    Ok(n as u64)
}

pub(super) fn server_secret(
    tx: &Transaction<'_>,
    tenant: &str,
    name: &str,
    candidate: &[u8],
    ts: Instant,
) -> Result<Vec<u8>> {
    tx.execute(
        "INSERT INTO server_secrets (tenant, name, value, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (tenant, name) DO NOTHING",
        params![tenant, name, candidate, ts.0],
    )?;
    Ok(tx.query_row(
        "SELECT value FROM server_secrets WHERE tenant = ?1 AND name = ?2",
        params![tenant, name],
        |r| r.get(0),
    )?)
}
