//! The scene every test plays on: a mock FHIR server (wiremock on 127.0.0.1), expected NDJSON
//! bodies built independently of the client, and options with millisecond timings.

use fhir_bulk_client::{Error, Event, ExportOptions, Exporter, Observer, Summary, Timings, Url};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Waits in milliseconds so the whole suite runs in seconds; retries stay bounded.
pub fn fast_timings() -> Timings {
    Timings {
        min_poll_interval: Duration::from_millis(5),
        initial_poll_interval: Duration::from_millis(5),
        max_poll_interval: Duration::from_millis(40),
        retry_initial: Duration::from_millis(5),
        retry_max: Duration::from_millis(20),
        max_retries: 6,
        timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(5),
    }
}

/// `n` resources of `resource_type`, one per line, as a server would write them.
pub fn ndjson(resource_type: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"resourceType\":\"{resource_type}\",\"id\":\"{}-{i}\",\"meta\":{{\"versionId\":\"1\"}}}}\n", resource_type.to_lowercase()))
        .collect()
}

/// A mock FHIR server whose base is `<uri><base_path>`.
pub struct Fhir {
    pub server: MockServer,
    pub base: Url,
}

impl Fhir {
    pub async fn start() -> Fhir {
        Fhir::start_at("/fhir").await
    }

    /// With a tenant path such as `/r4/<tenant>` (V8).
    pub async fn start_at(base_path: &str) -> Fhir {
        let server = MockServer::start().await;
        let base = Url::parse(&format!("{}{base_path}", server.uri())).unwrap();
        Fhir { server, base }
    }

    /// An absolute URL on this server.
    pub fn url(&self, p: &str) -> String {
        format!("{}{p}", self.server.uri())
    }

    /// `GET <base>/$export` → 202 with `Content-Location: status`, expected once.
    pub async fn kickoff(&self, status: &str) {
        Mock::given(method("GET"))
            .and(path(format!("{}/$export", self.base.path())))
            .respond_with(ResponseTemplate::new(202).insert_header("content-location", status))
            .expect(1)
            .mount(&self.server)
            .await;
    }

    /// `GET status_path` → 200 with `manifest`.
    pub async fn complete(&self, status_path: &str, manifest: &Value) {
        Mock::given(method("GET"))
            .and(path(status_path))
            .respond_with(ResponseTemplate::new(200).set_body_json(manifest))
            .mount(&self.server)
            .await;
    }

    /// `GET file_path` → 200 NDJSON `body`.
    pub async fn file(&self, file_path: &str, body: &str) {
        Mock::given(method("GET"))
            .and(path(file_path))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_raw(body.as_bytes().to_vec(), "application/fhir+ndjson"),
            )
            .mount(&self.server)
            .await;
    }

    /// Accepts the final `DELETE` of the job (CL7).
    pub async fn accept_delete(&self, status_path: &str) {
        Mock::given(method("DELETE"))
            .and(path(status_path))
            .respond_with(ResponseTemplate::new(202))
            .mount(&self.server)
            .await;
    }

    /// The requests this server got for `p`, any method.
    pub async fn requests_to(&self, p: &str) -> Vec<wiremock::Request> {
        self.server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.url.path() == p)
            .collect()
    }

    /// The GET requests this server got for `p` (polls, without the final DELETE).
    pub async fn gets_to(&self, p: &str) -> Vec<wiremock::Request> {
        self.requests_to(p)
            .await
            .into_iter()
            .filter(|r| r.method.as_str() == "GET")
            .collect()
    }
}

/// A manifest as a server sends it: `files` are `(type, url, count)`.
pub fn manifest(request: &str, files: &[(&str, &str, Option<u64>)]) -> Value {
    let output: Vec<Value> = files
        .iter()
        .map(|(t, url, count)| {
            let mut item = json!({"type": t, "url": url});
            if let Some(c) = count {
                item["count"] = json!(c);
            }
            item
        })
        .collect();
    json!({
        "transactionTime": "2024-05-01T12:00:00.000Z",
        "request": request,
        "requiresAccessToken": true,
        "output": output,
        "error": []
    })
}

/// Records every event.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<Event>>);

impl Observer for Recorder {
    fn event(&self, event: &Event) {
        self.0.lock().unwrap().push(event.clone());
    }
}

/// Options for `base` into `dir` with fast timings and no auth.
pub fn options(base: &Url, dir: &Path) -> ExportOptions {
    let mut o = ExportOptions::new(base.clone(), dir);
    o.timings = fast_timings();
    o
}

/// Runs one export and returns its result and events.
pub async fn export(options: ExportOptions) -> (Result<Summary, Error>, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let result = match Exporter::new(options) {
        Ok(exporter) => exporter.with_observer(recorder.clone()).run().await,
        Err(e) => Err(e),
    };
    (result, recorder)
}

/// A ready system export of Patient (3) and Observation (5) files, no auth needed.
pub async fn simple_export(fhir: &Fhir) -> (String, String) {
    let patients = ndjson("Patient", 3);
    let observations = ndjson("Observation", 5);
    fhir.kickoff(&fhir.url("/status/1")).await;
    let m = manifest(
        &fhir.url("/fhir/$export"),
        &[
            ("Patient", &fhir.url("/files/p1"), Some(3)),
            ("Observation", &fhir.url("/files/o1"), Some(5)),
        ],
    );
    fhir.complete("/status/1", &m).await;
    fhir.file("/files/p1", &patients).await;
    fhir.file("/files/o1", &observations).await;
    fhir.accept_delete("/status/1").await;
    (patients, observations)
}

/// The file at `rel` in `dir`, as text.
pub fn read(dir: &Path, rel: &str) -> String {
    std::fs::read_to_string(dir.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// A token endpoint that checks what the client sends the way an authorization server would
/// (J3, TK1) and hands out `tokens` in turn (the last one repeats).
pub struct TokenIssuer {
    pub tokens: Vec<&'static str>,
    /// `Some(jwk)`: require a client assertion signed by this public key (§14).
    pub public_jwk: Option<Value>,
    pub client_id: String,
    /// The token URL the assertion's `aud` must name.
    pub token_url: String,
    /// Sent as `expires_in` when set; left out otherwise (V10).
    pub expires_in: Option<u64>,
    pub calls: std::sync::atomic::AtomicUsize,
    pub jtis: Mutex<Vec<String>>,
    pub scopes: Mutex<Vec<String>>,
}

impl TokenIssuer {
    pub fn new(
        tokens: Vec<&'static str>,
        client_id: &str,
        token_url: &str,
        public_jwk: Option<Value>,
    ) -> Arc<TokenIssuer> {
        Arc::new(TokenIssuer {
            tokens,
            public_jwk,
            client_id: client_id.into(),
            token_url: token_url.into(),
            expires_in: None,
            calls: Default::default(),
            jtis: Default::default(),
            scopes: Default::default(),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn check_assertion(
        &self,
        form: &std::collections::HashMap<String, String>,
    ) -> Result<(), String> {
        use jsonwebtoken::{DecodingKey, Validation, decode, decode_header, jwk::Jwk};
        let Some(jwk) = &self.public_jwk else {
            return Ok(());
        };
        if form.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return Err("bad client_assertion_type".into());
        }
        let jwt = form.get("client_assertion").ok_or("no client_assertion")?;
        let header = decode_header(jwt).map_err(|e| e.to_string())?;
        if header.typ.as_deref() != Some("JWT") || header.kid.as_deref() != jwk["kid"].as_str() {
            return Err(format!("bad header {header:?}"));
        }
        let key = DecodingKey::from_jwk(&serde_json::from_value::<Jwk>(jwk.clone()).unwrap())
            .map_err(|e| e.to_string())?;
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[&self.token_url]);
        validation.set_issuer(&[&self.client_id]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let claims = decode::<Value>(jwt, &key, &validation)
            .map_err(|e| e.to_string())?
            .claims;
        if claims["sub"] != json!(self.client_id) {
            return Err("sub != client_id".into());
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let exp = claims["exp"].as_i64().ok_or("exp not an integer")?;
        if exp > now + 300 {
            return Err("exp more than 5 minutes ahead (J2)".into());
        }
        let jti = claims["jti"].as_str().ok_or("no jti")?.to_string();
        let mut jtis = self.jtis.lock().unwrap();
        if jtis.contains(&jti) {
            return Err("replayed jti (J3)".into());
        }
        jtis.push(jti);
        Ok(())
    }
}

/// Lets a shared [`TokenIssuer`] answer requests while the test keeps a handle on it.
pub struct IssuerHandle(pub Arc<TokenIssuer>);

impl wiremock::Respond for IssuerHandle {
    fn respond(&self, request: &wiremock::Request) -> ResponseTemplate {
        let me = &self.0;
        let form: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(&request.body)
                .into_owned()
                .collect();
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return ResponseTemplate::new(400)
                .set_body_json(json!({"error": "unsupported_grant_type"}));
        }
        if let Err(why) = me.check_assertion(&form) {
            return ResponseTemplate::new(401)
                .set_body_json(json!({"error": "invalid_client", "error_description": why}));
        }
        me.scopes
            .lock()
            .unwrap()
            .push(form.get("scope").cloned().unwrap_or_default());
        let n = me.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let token = me.tokens[n.min(me.tokens.len() - 1)];
        let mut body =
            json!({"access_token": token, "token_type": "Bearer", "scope": form.get("scope")});
        if let Some(e) = me.expires_in {
            body["expires_in"] = json!(e);
        }
        ResponseTemplate::new(200).set_body_json(body)
    }
}

/// Serves `.well-known/smart-configuration` under `fhir.base` pointing at `token_url`.
pub async fn smart_configuration(fhir: &Fhir, token_url: &str) {
    Mock::given(method("GET"))
        .and(path(format!(
            "{}/.well-known/smart-configuration",
            fhir.base.path()
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "token_endpoint": token_url,
            "grant_types_supported": ["client_credentials"],
            "capabilities": ["client-confidential-asymmetric", "permission-v2", "permission-v1"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"]
        })))
        .mount(&fhir.server)
        .await;
}
