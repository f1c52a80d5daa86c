//! What the auth tests need: fixed test keys, client assertions signed here with
//! `jsonwebtoken` directly (never with our client crate), a tiny JWKS server that counts its
//! fetches, and bulk requests that carry a bearer token.
//!
//! The keys in `keys/` were made once with `openssl genpkey` (RSA 2048 and P-384); the
//! `*.jwk.json` beside them hold their public parts. They protect nothing.

use crate::harness::{TestServer, http};
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use fhir_bulk_server::auth::registry::{self, CredentialInput, Registration};
use fhir_bulk_store::{DEFAULT_TENANT, Write};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A test key: its private PEM, public JWK, kid and algorithm.
#[derive(Clone, Copy)]
pub struct TestKey {
    pem: &'static str,
    jwk: &'static str,
    /// The algorithm it signs with.
    pub alg: Algorithm,
}

/// RSA key 1 (`kid` rsa-1, RS384).
pub const RSA1: TestKey = TestKey {
    pem: include_str!("keys/rsa1.pem"),
    jwk: include_str!("keys/rsa1.jwk.json"),
    alg: Algorithm::RS384,
};
/// RSA key 2 (`kid` rsa-2, RS384).
pub const RSA2: TestKey = TestKey {
    pem: include_str!("keys/rsa2.pem"),
    jwk: include_str!("keys/rsa2.jwk.json"),
    alg: Algorithm::RS384,
};
/// EC P-384 key 1 (`kid` ec-1, ES384).
pub const EC1: TestKey = TestKey {
    pem: include_str!("keys/ec1.pem"),
    jwk: include_str!("keys/ec1.jwk.json"),
    alg: Algorithm::ES384,
};
/// EC P-384 key 2 (`kid` ec-2, ES384).
pub const EC2: TestKey = TestKey {
    pem: include_str!("keys/ec2.pem"),
    jwk: include_str!("keys/ec2.jwk.json"),
    alg: Algorithm::ES384,
};

impl TestKey {
    /// The public JWK.
    pub fn jwk(&self) -> Value {
        serde_json::from_str(self.jwk).unwrap()
    }

    /// Its `kid`.
    pub fn kid(&self) -> String {
        self.jwk()["kid"].as_str().unwrap().to_string()
    }

    fn encoding_key(&self) -> EncodingKey {
        match self.alg {
            Algorithm::ES384 => EncodingKey::from_ec_pem(self.pem.as_bytes()).unwrap(),
            _ => EncodingKey::from_rsa_pem(self.pem.as_bytes()).unwrap(),
        }
    }

    /// Signs `claims` with this key, with `header` fields (alg, kid, typ…) as given.
    pub fn sign_with(&self, header: Header, claims: &Value) -> String {
        jsonwebtoken::encode(&header, claims, &self.encoding_key()).unwrap()
    }

    /// Signs `claims` with the header a client sends: alg, kid, typ JWT.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with(self.header(), claims)
    }

    /// alg, this key's kid, typ JWT.
    pub fn header(&self) -> Header {
        Header {
            kid: Some(self.kid()),
            typ: Some("JWT".into()),
            ..Header::new(self.alg)
        }
    }
}

/// A public JWKS of these keys.
pub fn jwks(keys: &[TestKey]) -> Value {
    json!({"keys": keys.iter().map(TestKey::jwk).collect::<Vec<_>>()})
}

/// Now, Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims of a good assertion from `client_id` for `server`'s token endpoint.
pub fn claims(server: &TestServer, client_id: &str) -> Value {
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_url(server),
        "exp": now() + 240,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// The token endpoint.
pub fn token_url(server: &TestServer) -> String {
    server.url("auth/token")
}

/// A server with authorization on (and unknown kids refetched at once).
pub async fn start() -> TestServer {
    TestServer::start_with(|c| {
        c.auth_enabled = true;
        c.jwks_refetch_interval = Duration::ZERO;
    })
    .await
}

/// Registers a client in the default tenant; returns the secret if one was generated.
pub async fn register(
    server: &TestServer,
    id: &str,
    credential: CredentialInput,
    scope: &str,
) -> Option<String> {
    register_in(server, DEFAULT_TENANT, id, credential, scope).await
}

/// Registers a client in `tenant`; returns the secret if one was generated.
pub async fn register_in(
    server: &TestServer,
    tenant: &str,
    id: &str,
    credential: CredentialInput,
    scope: &str,
) -> Option<String> {
    let r = registry::register(
        server.store.as_ref(),
        Registration {
            tenant: tenant.into(),
            id: id.into(),
            name: None,
            scopes: Some(scope.into()),
            credential,
        },
    )
    .await
    .unwrap();
    r.secret.map(|s| s.expose().to_string())
}

/// POSTs a token request form.
pub async fn token_request(server: &TestServer, form: &[(&str, &str)]) -> reqwest::Response {
    http()
        .post(token_url(server))
        .form(form)
        .send()
        .await
        .unwrap()
}

/// A token request with a client assertion.
pub async fn assertion_request(
    server: &TestServer,
    assertion: &str,
    scope: &str,
) -> reqwest::Response {
    token_request(
        server,
        &[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ],
    )
    .await
}

/// A token for `client_id` signed with `key`; panics unless granted.
pub async fn token(server: &TestServer, key: TestKey, client_id: &str, scope: &str) -> String {
    let r = assertion_request(server, &key.sign(&claims(server, client_id)), scope).await;
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "token for {client_id}: {v}");
    v["access_token"].as_str().unwrap().to_string()
}

/// A token from the token endpoint of the FHIR base `base` (any tenant's) for `client_id`,
/// with an assertion signed by `key`; panics unless granted.
pub async fn token_at(base: &str, key: TestKey, client_id: &str, scope: &str) -> String {
    let token_url = format!("{base}/auth/token");
    let assertion = key.sign(&json!({
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "exp": now() + 240,
        "jti": uuid::Uuid::new_v4().to_string(),
    }));
    let r = http()
        .post(&token_url)
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", scope),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, 200, "token for {client_id} at {token_url}: {v}");
    v["access_token"].as_str().unwrap().to_string()
}

/// Asserts an RFC 6749 error answer with this status and code; returns the description.
pub async fn assert_token_error(r: reqwest::Response, status: u16, error: &str) -> String {
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["content-type"], "application/json");
    let got = r.status().as_u16();
    let v: Value = r.json().await.unwrap();
    assert_eq!((got, v["error"].as_str().unwrap()), (status, error), "{v}");
    let d = v["error_description"].as_str().unwrap().to_string();
    assert!(!d.is_empty());
    d
}

/// A few resources: two Patients, an Observation and an Encounter of each, and a Group.
pub async fn load_small(server: &TestServer) {
    let mut writes = Vec::new();
    for p in ["p1", "p2"] {
        writes.push(json!({"resourceType": "Patient", "id": p}));
        writes.push(
            json!({"resourceType": "Observation", "id": format!("o-{p}"), "status": "final",
            "code": {"text": "x"}, "subject": {"reference": format!("Patient/{p}")}}),
        );
        writes.push(
            json!({"resourceType": "Encounter", "id": format!("e-{p}"), "status": "finished",
            "class": {"code": "AMB"}, "subject": {"reference": format!("Patient/{p}")}}),
        );
    }
    writes.push(
        json!({"resourceType": "Group", "id": "g1", "type": "person", "actual": true,
        "member": [{"entity": {"reference": "Patient/p1"}}]}),
    );
    let writes = writes.into_iter().map(|w| Write::put(w).unwrap()).collect();
    server.store.write(DEFAULT_TENANT, writes).await.unwrap();
}

/// A GET with a bearer token (or none).
pub async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = http().get(url).header("Accept", "application/fhir+json");
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.unwrap()
}

/// A kick-off with a bearer token, `Prefer` as given.
pub async fn kickoff(url: &str, token: &str, prefer: &str) -> reqwest::Response {
    http()
        .get(url)
        .header("Accept", "application/fhir+json")
        .header("Prefer", prefer)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// Kicks off with a token; returns the status URL.
pub async fn kickoff_ok(url: &str, token: &str) -> String {
    let r = kickoff(url, token, "respond-async").await;
    assert_eq!(
        r.status(),
        202,
        "kick-off {url}: {}",
        r.text().await.unwrap()
    );
    r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Polls with a token until the manifest arrives.
pub async fn manifest(status_url: &str, token: &str) -> Value {
    for _ in 0..600 {
        let r = get(status_url, Some(token)).await;
        match r.status().as_u16() {
            202 => tokio::time::sleep(Duration::from_millis(100)).await,
            200 => return r.json().await.unwrap(),
            other => panic!("poll {other}: {}", r.text().await.unwrap()),
        }
    }
    panic!("export did not finish");
}

/// Asserts a 401 with `WWW-Authenticate: Bearer` and an OperationOutcome.
pub async fn assert_401(r: reqwest::Response) {
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resourceType"], "OperationOutcome");
}

/// A JWKS served on 127.0.0.1:0 that counts its fetches and sends a chosen `Cache-Control`.
pub struct JwksServer {
    /// Its URL.
    pub url: String,
    state: Arc<JwksState>,
}

struct JwksState {
    jwks: Mutex<Value>,
    cache_control: Mutex<Option<String>>,
    fetches: AtomicUsize,
}

async fn serve_jwks(State(s): State<Arc<JwksState>>) -> impl IntoResponse {
    s.fetches.fetch_add(1, Ordering::SeqCst);
    let body = s.jwks.lock().unwrap().to_string();
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(cc) = s.cache_control.lock().unwrap().clone() {
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, cc.parse().unwrap());
    }
    resp
}

impl JwksServer {
    /// Serves `jwks` with `Cache-Control: cache_control` (none if `None`).
    pub async fn start(jwks: Value, cache_control: Option<&str>) -> JwksServer {
        let state = Arc::new(JwksState {
            jwks: Mutex::new(jwks),
            cache_control: Mutex::new(cache_control.map(str::to_string)),
            fetches: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/jwks.json", axum::routing::get(serve_jwks))
            .with_state(Arc::clone(&state));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer { url, state }
    }

    /// Fetches so far.
    pub fn fetches(&self) -> usize {
        self.state.fetches.load(Ordering::SeqCst)
    }

    /// Serves another set from now on.
    pub fn set_jwks(&self, jwks: Value) {
        *self.state.jwks.lock().unwrap() = jwks;
    }

    /// Sends another `Cache-Control` from now on.
    pub fn set_cache_control(&self, cc: Option<&str>) {
        *self.state.cache_control.lock().unwrap() = cc.map(str::to_string);
    }
}
