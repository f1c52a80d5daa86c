//! Multi-tenancy (`serve --tenants`): two tenants with the Synthea data (one of them
//! changed), each exported by its own client with a token from its own token endpoint; every
//! cross-tenant attempt is refused; unknown tenants are 404; per-tenant limits answer 429.
//! Expectations come from the Synthea files, never from our own code's output.

use crate::auth_support::{
    EC1, RSA1, get, jwks, kickoff, kickoff_ok, manifest, register_in, token_at,
};
use crate::harness::{TestServer, assert_outcome, http, synthea, synthea_dir};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhir_bulk_server::auth::registry::CredentialInput;
use fhir_bulk_server::ingest::{NoProgress, load_paths};
use fhir_bulk_store::{DEFAULT_TENANT, NewTenant, Write};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The types exported in the main test (enough to show separate data, small to download).
const TYPES: &[&str] = &["Condition", "Patient"];

/// A server with tenants and authorization on.
async fn start(workers: usize) -> TestServer {
    TestServer::start_with(|c| {
        c.auth_enabled = true;
        c.tenants_enabled = true;
        c.workers = workers;
    })
    .await
}

/// The origin of a test server (its base without `/fhir`).
fn origin(server: &TestServer) -> String {
    server.base.trim_end_matches("/fhir").to_string()
}

/// A tenant's FHIR base.
fn base_of(server: &TestServer, tenant: &str) -> String {
    format!("{}/{tenant}/fhir", origin(server))
}

async fn add_tenant(server: &TestServer, id: &str, max_exports: Option<u64>, rate: Option<f64>) {
    server
        .store
        .create_tenant(NewTenant {
            id: id.into(),
            max_exports,
            rate_per_second: rate,
        })
        .await
        .unwrap();
}

/// Downloads a manifest's output files with a token: type → ids (no duplicates).
async fn download_ids(m: &Value, token: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in m["output"].as_array().unwrap() {
        let r = get(entry["url"].as_str().unwrap(), Some(token)).await;
        assert_eq!(r.status(), 200);
        let body = r.text().await.unwrap();
        for line in body.lines().filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_str(line).unwrap();
            let t = v["resourceType"].as_str().unwrap().to_string();
            let id = v["id"].as_str().unwrap().to_string();
            assert!(out.entry(t).or_default().insert(id), "duplicate in export");
        }
    }
    out
}

/// A token with its payload changed by `edit`, keeping its signature (a forgery).
fn tamper(token: &str, edit: impl FnOnce(&mut Value)) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    edit(&mut payload);
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_export_their_own_data_and_nothing_crosses() {
    let s = start(2).await;
    add_tenant(&s, "alpha", None, None).await;
    add_tenant(&s, "beta", None, None).await;
    for t in ["alpha", "beta"] {
        load_paths(s.store.as_ref(), t, &[synthea_dir()], &NoProgress)
            .await
            .unwrap();
    }
    let files = synthea();
    // Beta differs: 3 Patients deleted, one changed, and a Group only beta has.
    let patients: Vec<String> = files["Patient"].keys().cloned().collect();
    let deleted: BTreeSet<String> = patients[..3].iter().cloned().collect();
    let changed = &patients[3];
    let mut writes: Vec<Write> = deleted
        .iter()
        .map(|id| Write::delete("Patient", id).unwrap())
        .collect();
    let mut p = files["Patient"][changed].clone();
    p["gender"] = json!("unknown");
    p["meta"] = json!({});
    writes.push(Write::put(p).unwrap());
    writes.push(
        Write::put(
            json!({"resourceType": "Group", "id": "only-beta", "type": "person",
            "actual": true, "member": [{"entity": {"reference": format!("Patient/{changed}")}}]}),
        )
        .unwrap(),
    );
    s.store.write("beta", writes).await.unwrap();

    // The same client id in both tenants, with different keys.
    let (a, b) = (base_of(&s, "alpha"), base_of(&s, "beta"));
    register_in(
        &s,
        "alpha",
        "app",
        CredentialInput::Jwks(jwks(&[RSA1])),
        "system/*.rs",
    )
    .await;
    register_in(
        &s,
        "beta",
        "app",
        CredentialInput::Jwks(jwks(&[EC1])),
        "system/*.rs",
    )
    .await;
    // Each tenant's discovery points at its own token endpoint.
    for base in [&a, &b] {
        let r = get(&format!("{base}/.well-known/smart-configuration"), None).await;
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["token_endpoint"], format!("{base}/auth/token"));
        let r = get(&format!("{base}/metadata"), None).await;
        assert_eq!(r.status(), 200);
    }
    // A client assertion for alpha's endpoint, from beta's key, gets nothing there.
    let r = http()
        .post(format!("{a}/auth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            (
                "client_assertion",
                &EC1.sign(
                    &json!({"iss": "app", "sub": "app", "aud": format!("{b}/auth/token"),
                    "exp": crate::auth_support::now() + 60, "jti": "x"}),
                ),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let ta = token_at(&a, RSA1, "app", "system/*.rs").await;
    let tb = token_at(&b, EC1, "app", "system/*.rs").await;

    // Exports, each with its own client: exact, separate results.
    let query = format!("$export?_type={}", TYPES.join(","));
    let status_a = kickoff_ok(&format!("{a}/{query}"), &ta).await;
    let status_b = kickoff_ok(&format!("{b}/{query}"), &tb).await;
    assert!(
        status_a.starts_with(&format!("{a}/bulk-status/")),
        "{status_a}"
    );
    assert!(
        status_b.starts_with(&format!("{b}/bulk-status/")),
        "{status_b}"
    );
    let (ma, mb) = (
        manifest(&status_a, &ta).await,
        manifest(&status_b, &tb).await,
    );
    for (m, base) in [(&ma, &a), (&mb, &b)] {
        assert_eq!(m["request"], format!("{base}/{query}"));
        for e in m["output"].as_array().unwrap() {
            let url = e["url"].as_str().unwrap();
            assert!(url.starts_with(&format!("{base}/bulk-files/")), "{url}");
        }
    }
    let expected_a: BTreeMap<String, BTreeSet<String>> = TYPES
        .iter()
        .map(|t| (t.to_string(), files[*t].keys().cloned().collect()))
        .collect();
    let mut expected_b = expected_a.clone();
    expected_b
        .get_mut("Patient")
        .unwrap()
        .retain(|id| !deleted.contains(id));
    assert_eq!(download_ids(&ma, &ta).await, expected_a);
    assert_eq!(download_ids(&mb, &tb).await, expected_b);
    assert_eq!(expected_b["Patient"].len(), files["Patient"].len() - 3);

    // The same ids live in both tenants without clashing.
    let read = |base: &str, token: &str, path: String| {
        let url = format!("{base}/{path}");
        let token = token.to_string();
        async move { get(&url, Some(&token)).await }
    };
    let v: Value = read(&a, &ta, format!("Patient/{changed}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["gender"], files["Patient"][changed]["gender"]);
    let v: Value = read(&b, &tb, format!("Patient/{changed}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["gender"], "unknown");
    let gone = deleted.iter().next().unwrap();
    assert_eq!(read(&a, &ta, format!("Patient/{gone}")).await.status(), 200);
    assert_eq!(read(&b, &tb, format!("Patient/{gone}")).await.status(), 410);

    // A token of alpha on beta's base: 403, for every kind of request.
    for url in [
        format!("{b}/Patient/{changed}"),
        format!("{b}/{query}"),
        status_b.clone(),
        mb["output"][0]["url"].as_str().unwrap().to_string(),
    ] {
        assert_outcome(get(&url, Some(&ta)).await, 403, "not valid for this tenant").await;
    }
    let r = kickoff(&format!("{b}/$export"), &ta, "respond-async").await;
    assert_outcome(r, 403, "not valid for this tenant").await;
    // Both checks hold: naming beta is not enough without beta's key (alpha signed it).
    let forged = tamper(&ta, |c| {
        c["tenant"] = json!("beta");
        c["iss"] = json!(b);
        c["aud"] = json!(b);
    });
    assert_eq!(
        get(&format!("{b}/Patient/{changed}"), Some(&forged))
            .await
            .status(),
        401
    );
    // …and a token naming alpha, re-pointed at beta's base, is still alpha's.
    let renamed = tamper(&ta, |c| {
        c["iss"] = json!(b);
        c["aud"] = json!(b);
    });
    assert_outcome(
        get(&format!("{b}/Patient/{changed}"), Some(&renamed)).await,
        403,
        "not valid for this tenant",
    )
    .await;

    // Alpha's status and file URLs under beta's base, with beta's own token: 404.
    let job_a = status_a.rsplit('/').next().unwrap();
    assert_outcome(
        get(&format!("{b}/bulk-status/{job_a}"), Some(&tb)).await,
        404,
        "no export job",
    )
    .await;
    let file_a = ma["output"][0]["url"].as_str().unwrap();
    let file_a_under_b = file_a.replace(&a, &b);
    assert_ne!(file_a, file_a_under_b);
    assert_outcome(get(&file_a_under_b, Some(&tb)).await, 404, "no export job").await;
    let r = http()
        .delete(format!("{b}/bulk-status/{job_a}"))
        .bearer_auth(&tb)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Beta's Group from alpha: 404 (read and export).
    assert_outcome(read(&a, &ta, "Group/only-beta".into()).await, 404, "").await;
    let r = kickoff(
        &format!("{a}/Group/only-beta/$export"),
        &ta,
        "respond-async",
    )
    .await;
    assert_outcome(r, 404, "Group/only-beta").await;
    // Alpha's own job still answers alpha.
    assert_eq!(get(&status_a, Some(&ta)).await.status(), 200);

    // Unknown tenants are 404 OperationOutcomes, whatever the path under their base.
    for path in ["nobody/fhir/metadata", "nobody/fhir/Patient", "nobody/fhir"] {
        let r = get(&format!("{}/{path}", origin(&s)), Some(&ta)).await;
        assert_outcome(r, 404, "no tenant 'nobody'").await;
    }
    // The default tenant keeps /fhir (and only /fhir); it holds none of the tenants' data.
    assert_eq!(get(&s.url("metadata"), None).await.status(), 200);
    assert_outcome(get(&base_of(&s, DEFAULT_TENANT), None).await, 404, "/fhir").await;
    assert!(
        s.store
            .type_counts(DEFAULT_TENANT)
            .await
            .unwrap()
            .is_empty()
    );
    // A token of alpha is not the default tenant's either.
    assert_outcome(
        get(&s.url("Patient"), Some(&ta)).await,
        403,
        "not valid for this tenant",
    )
    .await;
}

#[tokio::test]
async fn tenant_export_limit_and_request_rate_answer_429() {
    // No workers: kicked-off jobs stay running, so the limit is deterministic.
    let s = TestServer::start_with(|c| {
        c.tenants_enabled = true;
        c.workers = 0;
    })
    .await;
    add_tenant(&s, "small", Some(1), None).await;
    add_tenant(&s, "other", Some(1), None).await;
    add_tenant(&s, "slow", None, Some(1.0)).await;
    // A job with nothing to export would complete at once.
    for t in ["small", "other"] {
        let p = Write::put(json!({"resourceType": "Patient", "id": "p"})).unwrap();
        s.store.write(t, vec![p]).await.unwrap();
    }
    let small = base_of(&s, "small");
    let kick = |url: String| async move {
        http()
            .get(url)
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .send()
            .await
            .unwrap()
    };
    let r = kick(format!("{small}/$export")).await;
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let r = kick(format!("{small}/$export")).await;
    assert!(
        r.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_outcome(r, 429, "tenant 'small'").await;
    // Another tenant has its own count.
    assert_eq!(
        kick(format!("{}/$export", base_of(&s, "other")))
            .await
            .status(),
        202
    );
    // Cancelling frees the slot.
    let r = http().delete(&status).send().await.unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(kick(format!("{small}/$export")).await.status(), 202);

    // One request per second: a second one at once is 429 with Retry-After; others are free.
    let slow = base_of(&s, "slow");
    assert_eq!(get(&format!("{slow}/metadata"), None).await.status(), 200);
    let r = get(&format!("{slow}/metadata"), None).await;
    assert_eq!(r.headers()["retry-after"], "1");
    assert_outcome(r, 429, "request rate").await;
    assert_eq!(get(&format!("{small}/metadata"), None).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(get(&format!("{slow}/metadata"), None).await.status(), 200);
}

#[tokio::test]
async fn without_tenants_only_fhir_is_served() {
    let s = TestServer::start().await;
    add_tenant(&s, "alpha", None, None).await;
    let r = get(&format!("{}/metadata", base_of(&s, "alpha")), None).await;
    assert_outcome(r, 404, "the FHIR base is /fhir").await;
    assert_eq!(get(&s.url("metadata"), None).await.status(), 200);
}
