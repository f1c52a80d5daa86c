//! Tenants: adding, listing, and removing one with everything it holds.

use crate::{patient_job, put, store};
use fhir_bulk_spec::instant::Instant;
use fhir_bulk_store::{
    Credential, DEFAULT_TENANT, JobStatus, NewClient, NewTenant, SearchQuery, StoreError,
};
use serde_json::json;

fn new(id: &str) -> NewTenant {
    NewTenant {
        id: id.into(),
        max_exports: Some(2),
        rate_per_second: Some(5.5),
    }
}

#[tokio::test]
async fn add_list_remove() {
    let (store, _db) = store().await;
    // The default tenant exists from the start and cannot be added or removed.
    let default = store.tenant(DEFAULT_TENANT).await.unwrap().unwrap();
    assert_eq!((default.max_exports, default.rate_per_second), (None, None));
    assert!(matches!(
        store.create_tenant(new(DEFAULT_TENANT)).await,
        Err(StoreError::Invalid(m)) if m == "a tenant 'default' already exists"
    ));
    assert!(matches!(
        store.delete_tenant(DEFAULT_TENANT).await,
        Err(StoreError::Invalid(m)) if m == "the default tenant cannot be removed"
    ));

    let a = store.create_tenant(new("a")).await.unwrap();
    assert_eq!((a.max_exports, a.rate_per_second), (Some(2), Some(5.5)));
    assert!(a.created_at.0 > 0);
    assert!(matches!(
        store.create_tenant(new("a")).await,
        Err(StoreError::Invalid(_))
    ));
    assert_eq!(store.tenant("a").await.unwrap().unwrap(), a);
    let ids: Vec<String> = store
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["a", "default"]);

    // The same data in each tenant: a Patient (searchable by name) in a Group, a client
    // with a jti in the replay cache, a server secret, and a running job.
    let later = Instant::now().plus_seconds(300);
    for tenant in ["a", DEFAULT_TENANT] {
        store
            .write(
                tenant,
                vec![
                    put(json!({"resourceType": "Patient", "id": "p", "name": "Ann"})),
                    put(json!({"resourceType": "Group", "id": "g", "type": "person",
                        "actual": true, "member": [{"entity": {"reference": "Patient/p"}}]})),
                ],
            )
            .await
            .unwrap();
        store
            .create_client(NewClient {
                tenant: tenant.into(),
                id: "c".into(),
                name: "c".into(),
                scopes: "system/*.rs".into(),
                credential: Credential::SecretHash("h".into()),
            })
            .await
            .unwrap();
        assert!(store.record_jti(tenant, "c", "j", later).await.unwrap());
        assert_eq!(
            store.server_secret(tenant, "k", vec![1]).await.unwrap(),
            [1]
        );
        store
            .create_job(patient_job(tenant, &format!("job-{tenant}")))
            .await
            .unwrap();
    }
    assert_eq!(store.tenant_active_jobs("a").await.unwrap(), 1);

    // Removing a tenant takes its data, and only its data.
    assert!(store.delete_tenant("a").await.unwrap());
    assert!(!store.delete_tenant("a").await.unwrap());
    assert!(store.tenant("a").await.unwrap().is_none());
    let search = |tenant: &'static str| {
        let store = store.clone();
        async move {
            let q = SearchQuery {
                resource_type: "Patient".into(),
                names: vec!["ann".into()],
                count: 10,
                ..SearchQuery::default()
            };
            store.search(tenant, q).await.unwrap().total
        }
    };
    assert!(store.read("a", "Patient", "p").await.unwrap().is_none());
    assert!(store.type_counts("a").await.unwrap().is_empty());
    assert_eq!(search("a").await, 0);
    assert_eq!(store.group_members("a", "g").await.unwrap(), None);
    assert!(store.clients("a").await.unwrap().is_empty());
    assert!(store.record_jti("a", "c", "j", later).await.unwrap());
    assert_eq!(store.server_secret("a", "k", vec![2]).await.unwrap(), [2]);
    let cancelled = store.job("a", "job-a").await.unwrap().unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert_eq!(store.tenant_active_jobs("a").await.unwrap(), 0);

    assert!(
        store
            .read(DEFAULT_TENANT, "Patient", "p")
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        store.type_counts(DEFAULT_TENANT).await.unwrap(),
        [("Group".to_string(), 1), ("Patient".to_string(), 1)]
    );
    assert_eq!(search(DEFAULT_TENANT).await, 1);
    assert_eq!(
        store.group_members(DEFAULT_TENANT, "g").await.unwrap(),
        Some(vec![("Patient".to_string(), "p".to_string())])
    );
    assert_eq!(store.clients(DEFAULT_TENANT).await.unwrap().len(), 1);
    assert!(
        !store
            .record_jti(DEFAULT_TENANT, "c", "j", later)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .server_secret(DEFAULT_TENANT, "k", vec![2])
            .await
            .unwrap(),
        [1]
    );
    assert_eq!(
        store
            .job(DEFAULT_TENANT, "job-default")
            .await
            .unwrap()
            .unwrap()
            .status,
        JobStatus::Running
    );

    // The id can be taken again, empty.
    store.create_tenant(new("a")).await.unwrap();
    assert!(store.type_counts("a").await.unwrap().is_empty());
    assert!(store.clients("a").await.unwrap().is_empty());
}
