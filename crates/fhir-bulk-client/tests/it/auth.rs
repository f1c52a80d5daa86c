//! SMART Backend Services (§12–§15, CL1, CL2, V10): the assertion as an authorization server
//! checks it, renewal on 401, scope fallback, client secrets, discovery fallback.

use crate::fixture::{
    Fhir, IssuerHandle, TokenIssuer, export, manifest, ndjson, options, read, smart_configuration,
};
use fhir_bulk_client::key::{KeyAlg, SigningKey, generate};
use fhir_bulk_client::{Credentials, ExitClass, SecretMethod, secret::Secret};
use serde_json::json;
use std::sync::Arc;
use wiremock::matchers::{body_string_contains, header, method, path};
use wiremock::{Mock, ResponseTemplate};

/// Mounts a token endpoint at `/auth/token` and the smart-configuration pointing at it.
async fn token_endpoint(fhir: &Fhir, issuer: &Arc<TokenIssuer>) {
    smart_configuration(fhir, &fhir.url("/auth/token")).await;
    Mock::given(method("POST"))
        .and(path("/auth/token"))
        .respond_with(IssuerHandle(issuer.clone()))
        .mount(&fhir.server)
        .await;
}

/// A job whose every request needs `Authorization: Bearer <token>`.
async fn protected_job(fhir: &Fhir, token: &str) -> String {
    let body = ndjson("Patient", 2);
    let bearer = format!("Bearer {token}");
    Mock::given(method("GET"))
        .and(path("/fhir/$export"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(
            ResponseTemplate::new(202).insert_header("content-location", fhir.url("/status/1")),
        )
        .mount(&fhir.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/status/1"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(manifest(
            "r",
            &[("Patient", &fhir.url("/files/p1"), Some(2))],
        )))
        .mount(&fhir.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/p1"))
        .and(header("authorization", bearer.as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(body.clone().into_bytes(), "application/fhir+ndjson"),
        )
        .mount(&fhir.server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/status/1"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&fhir.server)
        .await;
    // Anything without the right token is refused like a resource server would (A1).
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).insert_header("www-authenticate", "Bearer"))
        .with_priority(10)
        .mount(&fhir.server)
        .await;
    body
}

async fn private_key_jwt(alg: KeyAlg) {
    let fhir = Fhir::start().await;
    let key = generate(alg, None).unwrap();
    let jwk = key.public_jwks["keys"][0].clone();
    let issuer = TokenIssuer::new(
        vec!["tok-1"],
        "bulk-client",
        &fhir.url("/auth/token"),
        Some(jwk),
    );
    token_endpoint(&fhir, &issuer).await;
    let body = protected_job(&fhir, "tok-1").await;
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("key.pem");
    std::fs::write(&key_file, key.private_pem.expose()).unwrap();
    let mut o = options(&fhir.base, &dir.path().join("out"));
    o.auth.credentials = Credentials::PrivateKey {
        client_id: "bulk-client".into(),
        key: SigningKey::from_file(&key_file, None).unwrap(),
        jku: None,
    };
    export(o).await.0.unwrap();
    assert_eq!(read(&dir.path().join("out"), "Patient.1.ndjson"), body);
    assert_eq!(issuer.calls(), 1, "one token for the whole export");
    assert_eq!(
        issuer.scopes.lock().unwrap().as_slice(),
        ["system/*.rs"],
        "CL1: v2 scope by default"
    );
}

/// J1, J2, R3: an ES384 assertion from a PEM key verifies against the public JWK.
#[tokio::test]
async fn private_key_jwt_es384_j1_j2() {
    private_key_jwt(KeyAlg::Es384).await;
}

/// J1, J2, R3: the same with RS384.
#[tokio::test]
async fn private_key_jwt_rs384_j1_j2() {
    private_key_jwt(KeyAlg::Rs384).await;
}

/// CL2: a token that expires mid-export (401) is renewed, with a new assertion (new `jti`),
/// and the request retried once; the download then uses the new token.
#[tokio::test]
async fn token_expiring_mid_export_is_renewed_cl2() {
    let fhir = Fhir::start().await;
    let key = generate(KeyAlg::Es384, Some("k-1")).unwrap();
    let issuer = TokenIssuer::new(
        vec!["tok-old", "tok-new"],
        "c1",
        &fhir.url("/auth/token"),
        Some(key.public_jwks["keys"][0].clone()),
    );
    token_endpoint(&fhir, &issuer).await;
    // The kick-off still takes the old token; everything after it needs the new one.
    Mock::given(method("GET"))
        .and(path("/fhir/$export"))
        .and(header("authorization", "Bearer tok-old"))
        .respond_with(
            ResponseTemplate::new(202).insert_header("content-location", fhir.url("/status/1")),
        )
        .with_priority(1)
        .mount(&fhir.server)
        .await;
    let body = protected_job(&fhir, "tok-new").await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.auth.credentials = Credentials::PrivateKey {
        client_id: "c1".into(),
        key: SigningKey::from_text(key.private_jwks.expose(), None).unwrap(),
        jku: None,
    };
    export(o).await.0.unwrap();
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), body);
    assert_eq!(issuer.calls(), 2);
    assert_eq!(
        issuer.jtis.lock().unwrap().len(),
        2,
        "each assertion has its own jti"
    );
    let polls = fhir.gets_to("/status/1").await;
    let auths: Vec<_> = polls
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_string())
        .collect();
    assert_eq!(auths, ["Bearer tok-old", "Bearer tok-new"]);
}

/// CL2: a 401 that a fresh token does not cure is an auth failure (exit class 3), after
/// exactly one renewal.
#[tokio::test]
async fn persistent_401_is_an_auth_failure_cl2() {
    let fhir = Fhir::start().await;
    let issuer = TokenIssuer::new(vec!["t1", "t2", "t3"], "c1", &fhir.url("/auth/token"), None);
    token_endpoint(&fhir, &issuer).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .with_priority(10)
        .mount(&fhir.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.auth.credentials = Credentials::ClientSecret {
        client_id: "c1".into(),
        secret: Secret::new("s"),
        method: SecretMethod::Basic,
    };
    let err = export(o).await.0.unwrap_err();
    assert_eq!(err.exit_class(), ExitClass::Auth);
    assert!(err.to_string().contains("even after"), "{err}");
    assert_eq!(issuer.calls(), 2);
}

/// V10: `invalid_client` (and `invalid_grant`) are configuration errors, never retried.
#[tokio::test]
async fn invalid_client_is_not_retried_v10() {
    for code in ["invalid_client", "invalid_grant", "unauthorized_client"] {
        let fhir = Fhir::start().await;
        smart_configuration(&fhir, &fhir.url("/auth/token")).await;
        Mock::given(method("POST"))
            .and(path("/auth/token"))
            .respond_with(
                ResponseTemplate::new(400)
                    .set_body_json(json!({"error": code, "error_description": "unknown kid"})),
            )
            .expect(1)
            .mount(&fhir.server)
            .await;
        let dir = tempfile::tempdir().unwrap();
        let mut o = options(&fhir.base, dir.path());
        o.auth.credentials = Credentials::ClientSecret {
            client_id: "c".into(),
            secret: Secret::new("s"),
            method: SecretMethod::Post,
        };
        let err = export(o).await.0.unwrap_err();
        assert_eq!(err.exit_class(), ExitClass::Auth);
        assert!(
            err.to_string().contains(code) && err.to_string().contains("unknown kid"),
            "{err}"
        );
    }
}

/// CL1: `invalid_scope` for the default v2 scope retries once with `system/*.read`.
#[tokio::test]
async fn invalid_scope_falls_back_to_v1_cl1() {
    let fhir = Fhir::start().await;
    let issuer = TokenIssuer::new(vec!["tok-1"], "c", &fhir.url("/auth/token"), None);
    smart_configuration(&fhir, &fhir.url("/auth/token")).await;
    Mock::given(method("POST"))
        .and(path("/auth/token"))
        .and(body_string_contains("scope=system%2F*.rs"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_scope"})))
        .expect(1)
        .mount(&fhir.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/auth/token"))
        .respond_with(IssuerHandle(issuer.clone()))
        .mount(&fhir.server)
        .await;
    protected_job(&fhir, "tok-1").await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.auth.credentials = Credentials::ClientSecret {
        client_id: "c".into(),
        secret: Secret::new("s"),
        method: SecretMethod::Basic,
    };
    export(o).await.0.unwrap();
    assert_eq!(issuer.scopes.lock().unwrap().as_slice(), ["system/*.read"]);
}

/// RFC 6749 §2.3.1: `client_secret_basic` and `client_secret_post`; a given `--scope` is sent
/// as is (V6).
#[tokio::test]
async fn client_secret_basic_and_post() {
    for (secret_method, scope) in [
        (SecretMethod::Basic, "system/Patient.Read"),
        (SecretMethod::Post, "system/*.$export"),
    ] {
        let fhir = Fhir::start().await;
        let issuer = TokenIssuer::new(vec!["tok-s"], "my client", &fhir.url("/auth/token"), None);
        token_endpoint(&fhir, &issuer).await;
        protected_job(&fhir, "tok-s").await;
        let dir = tempfile::tempdir().unwrap();
        let mut o = options(&fhir.base, dir.path());
        o.auth.credentials = Credentials::ClientSecret {
            client_id: "my client".into(),
            secret: Secret::new("p@ss:word"),
            method: secret_method,
        };
        o.auth.scope = Some(scope.into());
        export(o).await.0.unwrap();
        let token_req = &fhir.requests_to("/auth/token").await[0];
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(&token_req.body)
                .into_owned()
                .collect();
        assert_eq!(form["scope"], scope);
        match secret_method {
            SecretMethod::Basic => {
                let expected = base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    "my+client:p%40ss%3Aword",
                );
                assert_eq!(
                    token_req.headers["authorization"],
                    format!("Basic {expected}").as_str()
                );
                assert!(!form.contains_key("client_secret"));
            }
            SecretMethod::Post => {
                assert_eq!(form["client_id"], "my client");
                assert_eq!(form["client_secret"], "p@ss:word");
                assert!(token_req.headers.get("authorization").is_none());
            }
        }
    }
}

/// §12: without smart-configuration, the CapabilityStatement's oauth-uris give the token URL;
/// V8: both are looked up under the full tenant base; the token endpoint is on another host.
#[tokio::test]
async fn discovery_falls_back_to_capability_statement_v8() {
    let fhir = Fhir::start_at("/r4/tenant-7").await;
    let idp = Fhir::start().await;
    let issuer = TokenIssuer::new(vec!["tok-c"], "c", &idp.url("/oauth2/token"), None);
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(IssuerHandle(issuer.clone()))
        .mount(&idp.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/r4/tenant-7/metadata"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"resourceType": "CapabilityStatement", "rest": [{"mode": "server",
            "security": {"extension": [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "token", "valueUri": idp.url("/oauth2/token")}]}]}}]})))
        .mount(&fhir.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/r4/tenant-7/$export"))
        .and(header("authorization", "Bearer tok-c"))
        .respond_with(ResponseTemplate::new(202).insert_header(
            "content-location",
            fhir.url("/r4/tenant-7/bulk-export/jobs/1"),
        ))
        .mount(&fhir.server)
        .await;
    fhir.complete("/r4/tenant-7/bulk-export/jobs/1", &manifest("r", &[]))
        .await;
    fhir.accept_delete("/r4/tenant-7/bulk-export/jobs/1").await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.auth.credentials = Credentials::ClientSecret {
        client_id: "c".into(),
        secret: Secret::new("s"),
        method: SecretMethod::Basic,
    };
    export(o).await.0.unwrap();
    assert_eq!(
        fhir.requests_to("/r4/tenant-7/.well-known/smart-configuration")
            .await
            .len(),
        1
    );
    assert_eq!(issuer.calls(), 1);
}

/// CL2: a token is renewed before `expires_in` runs out, without waiting for a 401.
#[tokio::test]
async fn token_is_renewed_before_it_expires_cl2() {
    let fhir = Fhir::start().await;
    let mut issuer = TokenIssuer::new(vec!["tok-1"], "c", &fhir.url("/auth/token"), None);
    Arc::get_mut(&mut issuer).unwrap().expires_in = Some(1);
    token_endpoint(&fhir, &issuer).await;
    // The server asks for a pause longer than the token's life.
    Mock::given(method("GET"))
        .and(path("/status/1"))
        .respond_with(ResponseTemplate::new(202).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&fhir.server)
        .await;
    protected_job(&fhir, "tok-1").await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.auth.credentials = Credentials::ClientSecret {
        client_id: "c".into(),
        secret: Secret::new("s"),
        method: SecretMethod::Basic,
    };
    export(o).await.0.unwrap();
    assert_eq!(issuer.calls(), 2, "renewed once, ahead of expiry");
    let refused = fhir.server.received_requests().await.unwrap();
    assert_eq!(
        refused
            .iter()
            .filter(|r| r.url.path() == "/status/1")
            .count(),
        3,
        "two polls and the DELETE, no 401 retry"
    );
}
