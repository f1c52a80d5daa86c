//! SMART Backend Services (§12–§17): discovery, the token endpoint with assertions signed
//! here (RS384, ES384; JWKS by value and by URL) and client secrets, scopes, and what the
//! bulk and REST endpoints do with tokens (401/403/404). Assertions are built by hand with
//! `jsonwebtoken`, independent of our client crate.

use crate::auth_support::*;
use crate::harness::{TestServer, http};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use fhir_bulk_server::auth::registry::CredentialInput;
use fhir_bulk_server::config::ExternalIssuer;
use fhir_bulk_store::DEFAULT_TENANT;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn discovery_w1_w2_and_capability_security() {
    let s = start().await;
    // W1: JSON whatever the Accept.
    let r = http()
        .get(s.url(".well-known/smart-configuration"))
        .header("Accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_endpoint"], token_url(&s));
    assert!(
        v["token_endpoint"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    let has = |field: &str, value: &str| v[field].as_array().unwrap().iter().any(|x| x == value);
    for m in [
        "private_key_jwt",
        "client_secret_basic",
        "client_secret_post",
    ] {
        assert!(has("token_endpoint_auth_methods_supported", m), "{m}");
    }
    assert!(has(
        "token_endpoint_auth_signing_alg_values_supported",
        "RS384"
    ));
    assert!(has(
        "token_endpoint_auth_signing_alg_values_supported",
        "ES384"
    ));
    assert!(has("grant_types_supported", "client_credentials"));
    assert!(has("scopes_supported", "system/*.rs"));
    for c in [
        "client-confidential-asymmetric",
        "client-confidential-symmetric",
        "permission-v1",
        "permission-v2",
    ] {
        assert!(has("capabilities", c), "{c}");
    }
    assert_eq!(v["code_challenge_methods_supported"], json!(["S256"]));

    // The CapabilityStatement points at the same token endpoint (and stays open).
    let cs: Value = get(&s.url("metadata"), None).await.json().await.unwrap();
    let security = &cs["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let ext = &security["extension"][0];
    assert_eq!(
        ext["url"],
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    );
    assert_eq!(ext["extension"][0]["url"], "token");
    assert_eq!(ext["extension"][0]["valueUri"], token_url(&s));

    // Without auth there is no security section.
    let open = TestServer::start().await;
    let cs: Value = get(&open.url("metadata"), None).await.json().await.unwrap();
    assert!(cs["rest"][0].get("security").is_none());
}

/// A token for every algorithm and key source, used for a whole export (kick-off, poll,
/// download) whose manifest says `requiresAccessToken: true`.
#[tokio::test]
async fn rs384_and_es384_with_inline_jwks_export_end_to_end() {
    let s = start().await;
    load_small(&s).await;
    register(
        &s,
        "rsa-client",
        CredentialInput::Jwks(jwks(&[RSA1])),
        "system/*.rs",
    )
    .await;
    register(
        &s,
        "ec-client",
        CredentialInput::Jwks(jwks(&[EC1])),
        "system/*.rs",
    )
    .await;
    for (key, client) in [(RSA1, "rsa-client"), (EC1, "ec-client")] {
        let r = assertion_request(&s, &key.sign(&claims(&s, client)), "system/*.rs").await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let v: Value = r.json().await.unwrap();
        assert!(
            v["token_type"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case("bearer")
        );
        assert!(v["expires_in"].as_u64().unwrap() <= 300);
        assert_eq!(v["scope"], "system/*.rs");
        let token = v["access_token"].as_str().unwrap();

        let status = kickoff_ok(&s.url("$export?_type=Patient,Observation"), token).await;
        let m = manifest(&status, token).await;
        assert_eq!(m["requiresAccessToken"], true);
        let outputs = m["output"].as_array().unwrap();
        assert_eq!(outputs.len(), 2);
        for o in outputs {
            let url = o["url"].as_str().unwrap();
            assert_401(get(url, None).await).await;
            let r = get(url, Some(token)).await;
            assert_eq!(r.status(), 200);
            assert_eq!(
                r.text().await.unwrap().lines().count() as u64,
                o["count"].as_u64().unwrap()
            );
        }
        let r = http()
            .delete(&status)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
}

#[tokio::test]
async fn jwks_url_is_cached_per_cache_control_and_refetched_for_an_unknown_kid() {
    let s = start().await;
    let keys = JwksServer::start(jwks(&[EC1]), Some("max-age=60")).await;
    register(
        &s,
        "url-client",
        CredentialInput::JwksUrl(keys.url.clone()),
        "system/*.rs",
    )
    .await;

    token(&s, EC1, "url-client", "system/*.rs").await;
    assert_eq!(keys.fetches(), 1);
    token(&s, EC1, "url-client", "system/*.rs").await;
    assert_eq!(keys.fetches(), 1, "max-age=60: served from the cache");

    // The client rotates in a new key: the unknown kid makes one refetch.
    keys.set_jwks(jwks(&[EC1, RSA2]));
    token(&s, RSA2, "url-client", "system/*.rs").await;
    assert_eq!(keys.fetches(), 2);
    token(&s, RSA2, "url-client", "system/*.rs").await;
    assert_eq!(keys.fetches(), 2);

    // A kid that is nowhere: one refetch, then invalid_client.
    let mut h = EC1.header();
    h.kid = Some("nowhere".into());
    let r = assertion_request(
        &s,
        &EC1.sign_with(h, &claims(&s, "url-client")),
        "system/*.rs",
    )
    .await;
    let d = assert_token_error(r, 401, "invalid_client").await;
    assert!(d.contains("nowhere"), "{d}");
    assert_eq!(keys.fetches(), 3);

    // no-store: nothing is kept, every use fetches.
    keys.set_cache_control(Some("no-store"));
    let r = assertion_request(
        &s,
        &EC1.sign_with(EC1.header(), &claims(&s, "url-client")),
        "system/*.rs",
    )
    .await;
    assert_eq!(r.status(), 200); // from the max-age=60 copy fetched above
    let before = keys.fetches();
    // The copy fetched with max-age=60 is still fresh; force a fetch that sees no-store.
    let mut h = EC1.header();
    h.kid = Some("still-nowhere".into());
    let r = assertion_request(
        &s,
        &EC1.sign_with(h, &claims(&s, "url-client")),
        "system/*.rs",
    )
    .await;
    assert_token_error(r, 401, "invalid_client").await;
    assert_eq!(keys.fetches(), before + 1);
    token(&s, EC1, "url-client", "system/*.rs").await;
    token(&s, EC1, "url-client", "system/*.rs").await;
    assert_eq!(
        keys.fetches(),
        before + 3,
        "no-store: fetched for every assertion"
    );

    // jku equal to the registered URL is fine.
    let mut h = EC1.header();
    h.jku = Some(keys.url.clone());
    let r = assertion_request(
        &s,
        &EC1.sign_with(h, &claims(&s, "url-client")),
        "system/*.rs",
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn bad_assertions_are_invalid_client_j2_j3_j4() {
    let s = start().await;
    let keys = JwksServer::start(jwks(&[RSA1]), None).await;
    register(
        &s,
        "c",
        CredentialInput::Jwks(jwks(&[RSA1, EC1])),
        "system/*.rs",
    )
    .await;
    register(
        &s,
        "u",
        CredentialInput::JwksUrl(keys.url.clone()),
        "system/*.rs",
    )
    .await;
    let good = claims(&s, "c");
    let with = |patch: Value| {
        let mut c = claims(&s, "c");
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let header_with = |f: &dyn Fn(&mut Header)| {
        let mut h = RSA1.header();
        f(&mut h);
        h
    };
    let unsigned = |alg: &str| {
        let h =
            URL_SAFE_NO_PAD.encode(json!({"alg": alg, "kid": "rsa-1", "typ": "JWT"}).to_string());
        let p = URL_SAFE_NO_PAD.encode(claims(&s, "c").to_string());
        format!("{h}.{p}.")
    };
    let hs256 = jsonwebtoken::encode(
        &Header {
            kid: Some("rsa-1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &good,
        &EncodingKey::from_secret(b"a shared secret is not a key pair"),
    )
    .unwrap();
    let cases: Vec<(&str, String, &str)> = vec![
        ("wrong aud", RSA1.sign(&with(json!({"aud": s.base}))), "aud"),
        (
            "aud with a trailing slash",
            RSA1.sign(&with(json!({"aud": format!("{}/", token_url(&s))}))),
            "aud",
        ),
        (
            "expired",
            RSA1.sign(&with(json!({"exp": now() - 120}))),
            "expired",
        ),
        (
            "exp too far ahead",
            RSA1.sign(&with(json!({"exp": now() + 3600}))),
            "ahead",
        ),
        ("no exp", RSA1.sign(&with(json!({"exp": null}))), "exp"),
        ("no jti", RSA1.sign(&with(json!({"jti": null}))), "jti"),
        (
            "unknown kid",
            RSA1.sign_with(header_with(&|h| h.kid = Some("nope".into())), &good),
            "nope",
        ),
        (
            "no kid",
            RSA1.sign_with(header_with(&|h| h.kid = None), &good),
            "kid",
        ),
        (
            "wrong key for the kid",
            RSA2.sign_with(header_with(&|h| h.kid = Some("rsa-1".into())), &good),
            "signature",
        ),
        (
            "EC kid with an RSA alg",
            RSA1.sign_with(header_with(&|h| h.kid = Some("ec-1".into())), &good),
            "ec-1",
        ),
        ("alg none", unsigned("none"), "none"),
        ("alg HS256", hs256, "HS256"),
        (
            "alg RS256",
            RSA1.sign_with(header_with(&|h| h.alg = Algorithm::RS256), &good),
            "RS256",
        ),
        (
            "typ not JWT",
            RSA1.sign_with(header_with(&|h| h.typ = Some("JWE".into())), &good),
            "typ",
        ),
        (
            "unregistered iss",
            RSA1.sign(&with(json!({"iss": "stranger", "sub": "stranger"}))),
            "not registered",
        ),
        (
            "sub differs from iss",
            RSA1.sign(&with(json!({"sub": "someone-else"}))),
            "sub",
        ),
        ("no iss", RSA1.sign(&with(json!({"iss": null}))), "iss"),
        (
            "jku on a client registered by value",
            RSA1.sign_with(header_with(&|h| h.jku = Some(keys.url.clone())), &good),
            "jku",
        ),
        ("garbage", "not.a.jwt".to_string(), "base64url"),
    ];
    for (what, assertion, needle) in cases {
        let r = assertion_request(&s, &assertion, "system/*.rs").await;
        let d = assert_token_error(r, 401, "invalid_client").await;
        assert!(d.contains(needle), "{what}: {d}");
    }

    // jku that is not the registered URL (J4.1).
    let mut h = RSA1.header();
    h.jku = Some("http://127.0.0.1:9/evil.json".into());
    let r = assertion_request(&s, &RSA1.sign_with(h, &claims(&s, "u")), "system/*.rs").await;
    let d = assert_token_error(r, 401, "invalid_client").await;
    assert!(d.contains("jku"), "{d}");

    // Replay: the same assertion twice (J3). The first use succeeds.
    let assertion = RSA1.sign(&claims(&s, "c"));
    assert_eq!(
        assertion_request(&s, &assertion, "system/*.rs")
            .await
            .status(),
        200
    );
    let d = assert_token_error(
        assertion_request(&s, &assertion, "system/*.rs").await,
        401,
        "invalid_client",
    )
    .await;
    assert!(d.contains("jti"), "{d}");
    // A new assertion reusing the jti is a replay too, and so after a restart (the cache is
    // in the store).
    let mut c = claims(&s, "c");
    c["jti"] = good["jti"].clone();
    assert_eq!(
        assertion_request(&s, &RSA1.sign(&c), "system/*.rs")
            .await
            .status(),
        200
    );
    let db = s.db.clone();
    let out = s.output.clone();
    let dir = s.stop().await;
    let s = TestServer::start_on(db, out, |c| c.auth_enabled = true).await;
    c["aud"] = json!(token_url(&s));
    let d = assert_token_error(
        assertion_request(&s, &RSA1.sign(&c), "system/*.rs").await,
        401,
        "invalid_client",
    )
    .await;
    assert!(d.contains("jti"), "{d}");
    drop(dir);
}

#[tokio::test]
async fn client_secret_basic_and_post() {
    let s = start().await;
    let secret = register(&s, "sec", CredentialInput::Secret, "system/*.rs")
        .await
        .unwrap();
    register(
        &s,
        "keyed",
        CredentialInput::Jwks(jwks(&[EC1])),
        "system/*.rs",
    )
    .await;
    let basic =
        |id: &str, secret: &str| format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")));
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "system/*.rs"),
    ];

    // Basic, right and wrong.
    let r = http()
        .post(token_url(&s))
        .header("Authorization", basic("sec", &secret))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["scope"], "system/*.rs");
    let r = http()
        .post(token_url(&s))
        .header("Authorization", basic("sec", "wrong"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    assert_token_error(r, 401, "invalid_client").await;

    // Post, right and wrong, and an unknown client.
    let post = |id: &'static str, secret: String| {
        let s = &s;
        async move {
            token_request(
                s,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "system/*.rs"),
                    ("client_id", id),
                    ("client_secret", &secret),
                ],
            )
            .await
        }
    };
    assert_eq!(post("sec", secret.clone()).await.status(), 200);
    assert_token_error(
        post("sec", format!("{secret}x")).await,
        401,
        "invalid_client",
    )
    .await;
    assert_token_error(post("nobody", secret.clone()).await, 401, "invalid_client").await;
    // A key client cannot use a secret, and a secret client cannot use an assertion.
    let d = assert_token_error(post("keyed", secret.clone()).await, 401, "invalid_client").await;
    assert!(d.contains("client_assertion"), "{d}");
    let r = assertion_request(&s, &EC1.sign(&claims(&s, "sec")), "system/*.rs").await;
    assert_token_error(r, 401, "invalid_client").await;
}

/// Form fields of a token request.
type Form = Vec<(&'static str, String)>;

#[tokio::test]
async fn token_request_errors_tk4() {
    let s = start().await;
    register(
        &s,
        "c",
        CredentialInput::Jwks(jwks(&[EC1])),
        "system/Patient.rs",
    )
    .await;
    let a = || EC1.sign(&claims(&s, "c"));
    let at = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
    let cases: Vec<(Form, u16, &str)> = vec![
        (
            vec![
                ("grant_type", "password".into()),
                ("scope", "system/*.rs".into()),
            ],
            400,
            "unsupported_grant_type",
        ),
        (
            vec![
                ("scope", "system/*.rs".into()),
                ("client_assertion_type", at.into()),
                ("client_assertion", a()),
            ],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials".into()),
                ("client_assertion_type", "urn:other".into()),
                ("client_assertion", a()),
            ],
            400,
            "invalid_request",
        ),
        (
            vec![
                ("grant_type", "client_credentials".into()),
                ("scope", "system/*.rs".into()),
            ],
            401,
            "invalid_client",
        ),
        (
            vec![
                ("grant_type", "client_credentials".into()),
                ("client_assertion_type", at.into()),
                ("client_assertion", a()),
            ],
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials".into()),
                ("scope", "system/Observation.rs".into()),
                ("client_assertion_type", at.into()),
                ("client_assertion", a()),
            ],
            400,
            "invalid_scope",
        ),
        (
            vec![
                ("grant_type", "client_credentials".into()),
                ("scope", "user/*.read patient/*.read".into()),
                ("client_assertion_type", at.into()),
                ("client_assertion", a()),
            ],
            400,
            "invalid_scope",
        ),
    ];
    for (form, status, error) in cases {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_token_error(token_request(&s, &form).await, status, error).await;
    }
    // Not a form.
    let r = http()
        .post(token_url(&s))
        .json(&json!({"grant_type": "client_credentials"}))
        .send()
        .await
        .unwrap();
    assert_token_error(r, 400, "invalid_request").await;
    // A repeated parameter.
    let body = format!(
        "grant_type=client_credentials&scope=system%2F*.rs&scope=system%2F*.rs&client_assertion_type={at}&client_assertion={}",
        a()
    );
    let r = http()
        .post(token_url(&s))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_token_error(r, 400, "invalid_request").await;
}

#[tokio::test]
async fn scopes_are_narrowed_to_the_registration_tk2_sc3_v6() {
    let s = start().await;
    register(
        &s,
        "c",
        CredentialInput::Jwks(jwks(&[EC1])),
        "system/Patient.rs system/Observation.rs",
    )
    .await;
    for (requested, granted) in [
        ("system/*.rs", "system/Patient.rs system/Observation.rs"),
        (
            "system/*.read",
            "system/Patient.read system/Observation.read",
        ),
        ("system/Patient.Read", "system/Patient.read"),
        ("system/*.cruds", "system/Patient.rs system/Observation.rs"),
        (
            "system/Patient.rs system/Encounter.rs launch",
            "system/Patient.rs",
        ),
        ("system/Observation.r", "system/Observation.r"),
    ] {
        let r = assertion_request(&s, &EC1.sign(&claims(&s, "c")), requested).await;
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["scope"], granted, "{requested}: {v}");
    }
}

#[tokio::test]
async fn missing_expired_and_garbage_tokens_are_401_a1() {
    let s = start().await;
    load_small(&s).await;
    register(&s, "c", CredentialInput::Jwks(jwks(&[EC1])), "system/*.rs").await;
    let token = token(&s, EC1, "c", "system/*.rs").await;
    let status = kickoff_ok(&s.url("$export?_type=Patient"), &token).await;
    let m = manifest(&status, &token).await;
    let file = m["output"][0]["url"].as_str().unwrap().to_string();

    // An expired token signed with the server's own key (read from the store here).
    let key = s
        .store
        .server_secret(DEFAULT_TENANT, "access-token-hs256", vec![])
        .await
        .unwrap();
    let expired = jsonwebtoken::encode(
        &Header {
            typ: Some("at+jwt".into()),
            ..Header::new(Algorithm::HS256)
        },
        &json!({"iss": s.base, "aud": s.base, "sub": "c", "client_id": "c", "scope": "system/*.rs",
                "tenant": "default", "iat": now() - 600, "exp": now() - 300, "jti": "x"}),
        &EncodingKey::from_secret(&key),
    )
    .unwrap();
    // The same, not expired, is accepted: the check above is about expiry only.
    let fresh = jsonwebtoken::encode(
        &Header {
            typ: Some("at+jwt".into()),
            ..Header::new(Algorithm::HS256)
        },
        &json!({"iss": s.base, "aud": s.base, "sub": "c", "client_id": "c", "scope": "system/*.rs",
                "tenant": "default", "iat": now(), "exp": now() + 60, "jti": "y"}),
        &EncodingKey::from_secret(&key),
    )
    .unwrap();
    assert_eq!(get(&s.url("Patient/p1"), Some(&fresh)).await.status(), 200);

    let urls = [
        s.url("Patient/p1"),
        s.url("Patient"),
        status.clone(),
        file.clone(),
        s.url("$export"),
    ];
    for url in &urls {
        for bad in [None, Some(expired.as_str()), Some("garbage"), Some("a.b.c")] {
            assert_401(get(url, bad).await).await;
        }
    }
    let r = http().delete(&status).send().await.unwrap();
    assert_401(r).await;
    // Open endpoints stay open.
    assert_eq!(get(&s.url("metadata"), None).await.status(), 200);
    assert_eq!(
        get(&s.url(".well-known/smart-configuration"), None)
            .await
            .status(),
        200
    );

    // A removed client's tokens stop at once.
    fhir_bulk_server::auth::registry::remove(s.store.as_ref(), DEFAULT_TENANT, "c")
        .await
        .unwrap();
    assert_401(get(&s.url("Patient/p1"), Some(&token)).await).await;
}

#[tokio::test]
async fn scopes_limit_exports_and_rest_403_k9_a2() {
    let s = start().await;
    load_small(&s).await;
    register(
        &s,
        "narrow",
        CredentialInput::Jwks(jwks(&[EC1])),
        "system/Patient.rs system/Observation.rs",
    )
    .await;
    let narrow = token(&s, EC1, "narrow", "system/Patient.rs system/Observation.rs").await;

    // Strict: a _type outside the scopes is refused.
    let r = kickoff(
        &s.url("$export?_type=Patient,Encounter"),
        &narrow,
        "respond-async",
    )
    .await;
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("Encounter")
    );

    // Lenient: dropped, and said so in the error file.
    let r = kickoff(
        &s.url("$export?_type=Patient,Encounter"),
        &narrow,
        "respond-async, handling=lenient",
    )
    .await;
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let m = manifest(&status, &narrow).await;
    let types: Vec<&str> = m["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Patient"]);
    let err = get(m["error"][0]["url"].as_str().unwrap(), Some(&narrow))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        err.contains("Encounter") && err.contains("OperationOutcome"),
        "{err}"
    );

    // Without _type: only the readable types.
    let status = kickoff_ok(&s.url("$export"), &narrow).await;
    let m = manifest(&status, &narrow).await;
    let mut types: Vec<&str> = m["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["type"].as_str().unwrap())
        .collect();
    types.sort();
    assert_eq!(types, ["Observation", "Patient"]);

    // G3: a Group export needs read access to Group.
    let r = kickoff(&s.url("Group/g1/$export"), &narrow, "respond-async").await;
    assert_eq!(r.status(), 403);
    register(
        &s,
        "grouper",
        CredentialInput::Jwks(jwks(&[EC2])),
        "system/*.rs",
    )
    .await;
    let group_token = token(&s, EC2, "grouper", "system/*.rs").await;
    kickoff_ok(&s.url("Group/g1/$export"), &group_token).await;

    // REST: read with .rs, no write with it.
    assert_eq!(get(&s.url("Patient/p1"), Some(&narrow)).await.status(), 200);
    assert_eq!(
        get(&s.url("Patient?_id=p1"), Some(&narrow)).await.status(),
        200
    );
    assert_eq!(
        get(&s.url("Encounter/e-p1"), Some(&narrow)).await.status(),
        403
    );
    let body = json!({"resourceType": "Patient", "id": "p1"}).to_string();
    let put = http()
        .put(s.url("Patient/p1"))
        .bearer_auth(&narrow)
        .header("Content-Type", "application/fhir+json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 403);
    let del = http()
        .delete(s.url("Patient/p1"))
        .bearer_auth(&narrow)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 403);
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p9"}, "request": {"method": "PUT", "url": "Patient/p9"}}]});
    let tx = http()
        .post(&s.base)
        .bearer_auth(&narrow)
        .header("Content-Type", "application/fhir+json")
        .body(bundle.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(tx.status(), 403);

    // With a write scope (v1 .write = .cud) the same PUT works.
    register(
        &s,
        "writer",
        CredentialInput::Jwks(jwks(&[RSA1])),
        "system/Patient.read system/Patient.write",
    )
    .await;
    let w = token(
        &s,
        RSA1,
        "writer",
        "system/Patient.read system/Patient.write",
    )
    .await;
    let put = http()
        .put(s.url("Patient/p1"))
        .bearer_auth(&w)
        .header("Content-Type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
}

#[tokio::test]
async fn jobs_belong_to_their_client_a3() {
    let s = start().await;
    load_small(&s).await;
    register(
        &s,
        "alice",
        CredentialInput::Jwks(jwks(&[EC1])),
        "system/*.rs",
    )
    .await;
    register(
        &s,
        "bob",
        CredentialInput::Jwks(jwks(&[RSA1])),
        "system/*.rs",
    )
    .await;
    let alice1 = token(&s, EC1, "alice", "system/*.rs").await;
    let bob = token(&s, RSA1, "bob", "system/*.rs").await;

    let status = kickoff_ok(&s.url("$export?_type=Patient"), &alice1).await;
    // A later token of the same client polls and downloads (A3).
    let alice2 = token(&s, EC1, "alice", "system/*.rs").await;
    assert_ne!(alice1, alice2);
    let m = manifest(&status, &alice2).await;
    let file = m["output"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(get(&file, Some(&alice2)).await.status(), 200);

    // Bob sees nothing of it: poll, download and delete are 404, as for no job at all.
    for r in [
        get(&status, Some(&bob)).await,
        get(&file, Some(&bob)).await,
        http()
            .delete(&status)
            .bearer_auth(&bob)
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status(), 404);
    }
    // Bob's own export is his alone.
    let bobs = kickoff_ok(&s.url("$export?_type=Observation"), &bob).await;
    assert_eq!(get(&bobs, Some(&alice1)).await.status(), 404);
    manifest(&bobs, &bob).await;
    // Alice's job is intact after Bob's attempts.
    assert_eq!(get(&status, Some(&alice1)).await.status(), 200);
    let r = http()
        .delete(&status)
        .bearer_auth(&alice1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    // The test runtime is single-threaded, so the server's tasks run under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = start().await;
    register(&s, "c", CredentialInput::Jwks(jwks(&[RSA1])), "system/*.rs").await;
    let secret = register(&s, "sec", CredentialInput::Secret, "system/*.rs")
        .await
        .unwrap();

    // Signed with the wrong key: refused, and the refusal is logged.
    let mut h = RSA2.header();
    h.kid = Some("rsa-1".into());
    let bad = RSA2.sign_with(h, &claims(&s, "c"));
    let r = assertion_request(&s, &bad, "system/*.rs").await;
    let body = r.text().await.unwrap();
    assert!(!body.contains(&bad));
    // A wrong secret, close to the right one.
    let wrong = format!("{secret}-wrong");
    let r = token_request(
        &s,
        &[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
            ("client_id", "sec"),
            ("client_secret", &wrong),
        ],
    )
    .await;
    assert_eq!(r.status(), 401);
    // And a good one, whose token must not be logged either.
    let good = token(&s, RSA1, "c", "system/*.rs").await;
    assert_eq!(get(&s.url("Patient"), Some(&good)).await.status(), 200);
    assert_401(get(&s.url("Patient"), Some(&format!("{good}x"))).await).await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("token request refused"),
        "the capture works: {text}"
    );
    let signature = bad.rsplit('.').next().unwrap();
    for (what, needle) in [
        ("assertion", bad.as_str()),
        ("assertion signature", signature),
        ("secret", secret.as_str()),
        ("wrong secret", wrong.as_str()),
        ("access token", good.as_str()),
    ] {
        assert!(!text.contains(needle), "the {what} is in the logs");
    }
}

#[tokio::test]
async fn admin_api_manages_clients() {
    // Off by default.
    let off = start().await;
    assert_eq!(
        http()
            .get(off.url("admin/clients"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    let admin = "an-admin-token-for-tests-0123456789";
    let s = TestServer::start_with(|c| {
        c.auth_enabled = true;
        c.admin_token = Some(fhir_bulk_server::auth::Secret::new(admin));
    })
    .await;
    let url = s.url("admin/clients");
    assert_eq!(http().get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        http()
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // A SMART token is not an admin token.
    register(&s, "c", CredentialInput::Jwks(jwks(&[EC1])), "system/*.rs").await;
    let smart = token(&s, EC1, "c", "system/*.rs").await;
    assert_eq!(
        http()
            .get(&url)
            .bearer_auth(&smart)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Add a secret client; the secret comes back once.
    let r = http()
        .post(&url)
        .bearer_auth(admin)
        .json(&json!({"client_id": "svc", "client_name": "Service", "scope": "system/Patient.rs", "client_secret": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    let secret = v["client_secret"].as_str().unwrap().to_string();
    assert_eq!(v["scope"], "system/Patient.rs");
    let login = |secret: String| {
        let s = &s;
        async move {
            token_request(
                s,
                &[
                    ("grant_type", "client_credentials"),
                    ("scope", "system/*.rs"),
                    ("client_id", "svc"),
                    ("client_secret", &secret),
                ],
            )
            .await
            .status()
        }
    };
    assert_eq!(login(secret.clone()).await, 200);

    // Bad registrations are 400.
    for bad in [
        json!({"client_id": "x"}),
        json!({"client_id": "x", "client_secret": true, "jwks_uri": "http://h/j"}),
        json!({"client_id": "a:b", "client_secret": true}),
        json!({"client_id": "x", "client_secret": true, "scope": "user/*.read"}),
        json!({"client_id": "x", "jwks": {"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB", "e": "AQAB", "d": "AQAB"}]}}),
        json!({"client_id": "svc", "client_secret": true}),
    ] {
        let r = http()
            .post(&url)
            .bearer_auth(admin)
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }

    // List and read never show a secret.
    let list: Value = http()
        .get(&url)
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["client_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["c", "svc"]);
    assert!(!list.to_string().contains(&secret) && !list.to_string().contains("sha256$"));
    let one: Value = http()
        .get(format!("{url}/svc"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["token_endpoint_auth_method"], "client_secret_basic");

    // Rotate: the old secret stops, the new one works.
    let r = http()
        .post(format!("{url}/svc/rotate"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rotated: Value = r.json().await.unwrap();
    let new_secret = rotated["client_secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    assert_eq!(login(secret).await, 401);
    assert_eq!(login(new_secret.clone()).await, 200);

    // Rotate to a key set, then remove.
    let r = http()
        .post(format!("{url}/svc/rotate"))
        .bearer_auth(admin)
        .json(&json!({"jwks": jwks(&[EC2])}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(login(new_secret).await, 401);
    token(&s, EC2, "svc", "system/*.rs").await;
    let r = http()
        .delete(format!("{url}/svc"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = assertion_request(&s, &EC2.sign(&claims(&s, "svc")), "system/*.rs").await;
    assert_token_error(r, 401, "invalid_client").await;
    let r = http()
        .delete(format!("{url}/svc"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn external_issuer_tokens_are_trusted() {
    let idp = JwksServer::start(jwks(&[RSA2]), Some("max-age=300")).await;
    let issuer = "https://idp.hospital.example/realms/bulk";
    let s = TestServer::start_with(|c| {
        c.auth_enabled = true;
        c.external_issuer = Some(ExternalIssuer {
            issuer: issuer.into(),
            jwks_url: idp.url.clone(),
            audience: "fhir-bulk".into(),
        });
    })
    .await;
    load_small(&s).await;
    let idp_token = |patch: Value| {
        let mut c = json!({"iss": issuer, "aud": ["fhir-bulk", "account"], "exp": now() + 300, "iat": now(),
            "azp": "hospital-etl", "scope": "openid system/Patient.rs system/Observation.rs"});
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        RSA2.sign_with(
            Header {
                kid: Some("rsa-2".into()),
                ..Header::new(Algorithm::RS384)
            },
            &c,
        )
    };

    let t = idp_token(json!({}));
    assert_eq!(get(&s.url("Patient/p1"), Some(&t)).await.status(), 200);
    assert_eq!(get(&s.url("Encounter/e-p1"), Some(&t)).await.status(), 403);
    let status = kickoff_ok(&s.url("$export"), &t).await;
    let m = manifest(&status, &t).await;
    assert_eq!(m["output"].as_array().unwrap().len(), 2);
    assert_eq!(idp.fetches(), 1);

    // `scp` as an array, client from `client_id`.
    let t2 =
        idp_token(json!({"scope": null, "scp": ["system/Encounter.rs"], "client_id": "other-app"}));
    assert_eq!(get(&s.url("Encounter/e-p1"), Some(&t2)).await.status(), 200);
    // Another IdP client does not see the first one's job.
    assert_eq!(get(&status, Some(&t2)).await.status(), 404);

    // Wrong audience, expired, wrong key, symmetric alg: 401.
    let wrong_key = RSA1.sign_with(
        Header { kid: Some("rsa-2".into()), ..Header::new(Algorithm::RS384) },
        &json!({"iss": issuer, "aud": "fhir-bulk", "exp": now() + 300, "azp": "x", "scope": "system/*.rs"}),
    );
    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": issuer, "aud": "fhir-bulk", "exp": now() + 300, "azp": "x", "scope": "system/*.rs"}),
        &EncodingKey::from_secret(b"guess"),
    )
    .unwrap();
    for bad in [
        idp_token(json!({"aud": "someone-else"})),
        idp_token(json!({"exp": now() - 600})),
        wrong_key,
        hs,
    ] {
        assert_401(get(&s.url("Patient/p1"), Some(&bad)).await).await;
    }
}
