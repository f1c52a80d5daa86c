//! Registered clients, the assertion replay cache, and server secrets.

use crate::{Db, store};
use fhir_bulk_spec::instant::Instant;
use fhir_bulk_store::{Credential, NewClient, StoreError};

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
    let (s, _db) = store().await;
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
    let (s, _db) = store().await;
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
    let (s, _db) = store().await;
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
    // Recording removes expired entries.
    assert!(s.record_jti("default", "a", "gone2", past).await.unwrap());
    assert!(s.record_jti("default", "a", "j2", later).await.unwrap());
    assert_eq!(s.purge_jtis(Instant::now()).await.unwrap(), 0);
}

/// The replay cache is in the database: a restarted server still refuses the jti.
#[tokio::test]
async fn jti_survives_reopen() {
    let db = Db::new();
    let later = Instant::now().plus_seconds(300);
    let s = db.store().await;
    assert!(s.record_jti("default", "a", "j", later).await.unwrap());
    drop(s);
    let s = db.store().await;
    assert!(!s.record_jti("default", "a", "j", later).await.unwrap());
}

/// Two stores on one database (two nodes), several concurrent calls each with the same jti:
/// exactly one is new, for a fresh jti as for one whose earlier entry expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jti_replay_is_exactly_once_across_nodes() {
    let db = Db::new();
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
                tokio::spawn(
                    async move { store.record_jti("default", "a", &jti, later).await.unwrap() },
                )
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
    let db = Db::new();
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
