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

#[cfg(test)]
mod tests {
    use crate::postgres::jobs::testing::TestDb;
    use crate::{Credential, NewClient, Store, StoreError};
    use fhir_bulk_spec::instant::Instant;

    fn new(tenant: &str, id: &str, credential: Credential) -> NewClient {
        NewClient {
            tenant: tenant.into(),
            id: id.into(),
            name: format!("{id} name"),
            scopes: "system/*.rs".into(),
            credential,
        }
    }

    #[tokio::test]
    async fn clients_are_per_tenant_and_unique() {
        let Some(db) = TestDb::new().await else {
            return;
        };
        let s = db.store().await;
        let c = s
            .create_client(new(
                "default",
                "a",
                Credential::JwksUrl("https://x/jwks".into()),
            ))
            .await
            .unwrap();
        assert_eq!(c.credential, Credential::JwksUrl("https://x/jwks".into()));
        assert_eq!(
            (c.name.as_str(), c.scopes.as_str()),
            ("a name", "system/*.rs")
        );
        assert_eq!(c.created_at, c.updated_at);
        let dup = s
            .create_client(new("default", "a", Credential::SecretHash("h".into())))
            .await;
        assert!(
            matches!(dup, Err(StoreError::Invalid(m)) if m == "a client 'a' is already registered in tenant 'default'; rotate or remove it instead")
        );
        // The failed registration changed nothing.
        assert_eq!(
            s.client("default", "a").await.unwrap().unwrap().credential,
            Credential::JwksUrl("https://x/jwks".into())
        );
        s.create_client(new("other", "a", Credential::SecretHash("h".into())))
            .await
            .unwrap();
        s.create_client(new(
            "default",
            "b",
            Credential::Jwks("{\"keys\":[]}".into()),
        ))
        .await
        .unwrap();
        let ids: Vec<String> = s
            .clients("default")
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["a", "b"]);
        assert_eq!(s.client_count().await.unwrap(), 3);
        assert_eq!(
            s.client("other", "a").await.unwrap().unwrap().credential,
            Credential::SecretHash("h".into())
        );
        assert!(s.client("other", "b").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn rotate_and_remove() {
        let Some(db) = TestDb::new().await else {
            return;
        };
        let s = db.store().await;
        s.create_client(new("default", "a", Credential::SecretHash("old".into())))
            .await
            .unwrap();
        let c = s
            .update_client_credential("default", "a", Credential::Jwks("{\"keys\":[]}".into()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.credential.kind(), "jwks");
        assert!(c.updated_at.0 > c.created_at.0);
        assert!(
            s.update_client_credential("default", "nope", Credential::SecretHash("x".into()))
                .await
                .unwrap()
                .is_none()
        );
        let later = Instant::now().plus_seconds(300);
        assert!(s.record_jti("default", "a", "j", later).await.unwrap());
        assert!(s.delete_client("default", "a").await.unwrap());
        assert!(!s.delete_client("default", "a").await.unwrap());
        assert!(s.client("default", "a").await.unwrap().is_none());
        // Its replay cache went with it.
        assert!(s.record_jti("default", "a", "j", later).await.unwrap());
    }

    #[tokio::test]
    async fn jti_replay_cache() {
        let Some(db) = TestDb::new().await else {
            return;
        };
        let s = db.store().await;
        let later = Instant::now().plus_seconds(300);
        assert!(s.record_jti("default", "a", "j1", later).await.unwrap());
        assert!(
            !s.record_jti("default", "a", "j1", later).await.unwrap(),
            "replay"
        );
        // Per client and per tenant.
        assert!(s.record_jti("default", "b", "j1", later).await.unwrap());
        assert!(s.record_jti("t2", "a", "j1", later).await.unwrap());
        // An expired entry no longer blocks, and is purged.
        let past = Instant::now().plus_seconds(-10);
        assert!(s.record_jti("default", "a", "old", past).await.unwrap());
        assert!(s.record_jti("default", "a", "old", later).await.unwrap());
        assert!(s.record_jti("default", "a", "gone", past).await.unwrap());
        assert_eq!(s.purge_jtis(Instant::now()).await.unwrap(), 1);
        assert!(
            !s.record_jti("default", "a", "j1", later).await.unwrap(),
            "live entries survive the purge"
        );
        // Recording removes expired entries, as SQLite does.
        assert!(s.record_jti("default", "a", "gone2", past).await.unwrap());
        assert!(s.record_jti("default", "a", "j2", later).await.unwrap());
        assert_eq!(s.purge_jtis(Instant::now()).await.unwrap(), 0);
    }

    /// Two nodes, several concurrent calls each with the same jti: exactly one is new, for a
    /// fresh jti as for one whose earlier entry expired.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn jti_replay_is_exactly_once_across_nodes() {
        let Some(db) = TestDb::new().await else {
            return;
        };
        let nodes = [db.store().await, db.store().await];
        let later = Instant::now().plus_seconds(300);
        let past = Instant::now().plus_seconds(-10);
        for round in 0..20 {
            let jti = format!("j{round}");
            if round % 2 == 1 {
                assert!(
                    nodes[0]
                        .record_jti("default", "a", &jti, past)
                        .await
                        .unwrap()
                );
            }
            let calls: Vec<_> = (0..8)
                .map(|i| {
                    let store = nodes[i % 2].clone();
                    let jti = jti.clone();
                    tokio::spawn(async move {
                        store.record_jti("default", "a", &jti, later).await.unwrap()
                    })
                })
                .collect();
            let mut new = 0;
            for c in calls {
                new += usize::from(c.await.unwrap());
            }
            assert_eq!(new, 1, "round {round}: {new} calls saw the jti as new");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn server_secret_is_created_once() {
        let Some(db) = TestDb::new().await else {
            return;
        };
        let s = db.store().await;
        let first = s
            .server_secret("default", "k", vec![1, 2, 3])
            .await
            .unwrap();
        assert_eq!(first, [1, 2, 3]);
        assert_eq!(
            s.server_secret("default", "k", vec![9]).await.unwrap(),
            [1, 2, 3]
        );
        assert_eq!(s.server_secret("other", "k", vec![9]).await.unwrap(), [9]);
        // Racing creators (two nodes) all get the one value stored.
        let nodes = [s, db.store().await];
        let calls: Vec<_> = (0..8u8)
            .map(|i| {
                let store = nodes[usize::from(i) % 2].clone();
                tokio::spawn(async move { store.server_secret("t3", "k", vec![i]).await.unwrap() })
            })
            .collect();
        let mut values = Vec::new();
        for c in calls {
            values.push(c.await.unwrap());
        }
        assert!(
            values
                .iter()
                .all(|v| *v == values[0] && v.len() == 1 && v[0] < 8)
        );
    }
}
