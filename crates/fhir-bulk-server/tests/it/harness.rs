//! A real server on `127.0.0.1:0` with a fresh database (SQLite, or a schema of its own in
//! PostgreSQL under `FHIR_BULK_TEST_DATABASE`: see `fhir-bulk-testkit`), plus what tests need
//! to drive an export and to compute expectations independently from the Synthea files.

use fhir_bulk_server::ServerConfig;
use fhir_bulk_server::ingest::{NoProgress, load_paths};
use fhir_bulk_store::{DEFAULT_TENANT, Store};
use fhir_bulk_testkit::TestDatabase;
pub use fhir_bulk_testkit::{SYNTHEA_GROUP, synthea_dir};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// A running server.
pub struct TestServer {
    /// FHIR base URL.
    pub base: String,
    /// Its store (for checks behind the API).
    pub store: Arc<dyn Store>,
    /// Its database: a SQLite path or a PostgreSQL URL (what `--database` takes).
    pub db: String,
    /// Export files.
    pub output: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    kept: Kept,
}

/// The database and folder of a test, kept until dropped (across restarts: see
/// [`TestServer::stop`]). The database goes first: a PostgreSQL schema is dropped, a SQLite file
/// goes with the folder.
#[derive(Default)]
pub struct Kept {
    _db: Option<TestDatabase>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server with test-friendly settings (short leases and purge interval).
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// A server with settings adjusted by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDatabase::new(dir.path());
        let mut s =
            Self::start_on(db.database().to_string(), dir.path().join("files"), adjust).await;
        s.kept = Kept {
            _db: Some(db),
            _dir: Some(dir),
        };
        s
    }

    /// A server on an existing database and output folder (restarts).
    pub async fn start_on(
        db: String,
        output: PathBuf,
        adjust: impl FnOnce(&mut ServerConfig),
    ) -> TestServer {
        init_logs();
        let store = fhir_bulk_store::open(&db).await.unwrap_or_else(|e| {
            panic!(
                "opening the {} test database: {e}",
                fhir_bulk_testkit::backend()
            )
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut config = ServerConfig::new(format!("http://{addr}"), &output);
        config.lease = Duration::from_secs(3);
        config.purge_interval = Duration::from_millis(200);
        adjust(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                fhir_bulk_server::serve(listener, store, config, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
            }
        });
        TestServer {
            base: format!("http://{addr}/fhir"),
            store,
            db,
            output,
            stop: Some(tx),
            task: Some(task),
            kept: Kept::default(),
        }
    }

    /// Stops the server (graceful) and keeps its database and files; returns their owner (hold
    /// it while a restarted server uses them).
    pub async fn stop(mut self) -> Kept {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
        std::mem::take(&mut self.kept)
    }

    /// Loads the Synthea data set through the ingest path.
    pub async fn load_synthea(&self) {
        load_paths(
            self.store.as_ref(),
            DEFAULT_TENANT,
            &[synthea_dir()],
            &NoProgress,
        )
        .await
        .expect("loading Synthea");
    }

    /// A URL under the base.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }
}

/// With `RUST_LOG` set, the server's logs go to the test's output (shown when it fails).
fn init_logs() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// An HTTP client that does not decompress (so tests see what the server sent).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().no_gzip().build().unwrap()
}

/// GETs a URL and parses the JSON body (no status check: callers assert on the body).
pub async fn get_json(url: impl reqwest::IntoUrl) -> Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

/// GET kick-off with the headers the IG asks for; returns the status URL.
pub async fn kickoff_get(url: &str) -> String {
    let r = http()
        .get(url)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
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

/// POST kick-off with a Parameters body; returns the status URL.
pub async fn kickoff_post(url: &str, parameters: &Value) -> String {
    let r = http()
        .post(url)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .header("Content-Type", "application/fhir+json")
        .body(parameters.to_string())
        .send()
        .await
        .unwrap();
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

/// Polls until the manifest (200) arrives; panics on anything but 202/200 or after 60 s.
pub async fn wait_manifest(status_url: &str) -> Value {
    let started = Instant::now();
    loop {
        let r = http()
            .get(status_url)
            .header("Accept", "application/json")
            .send()
            .await
            .unwrap();
        let progress = match r.status().as_u16() {
            202 => {
                assert!(r.headers().contains_key("x-progress"));
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!((1..=120).contains(&retry));
                r.headers()["x-progress"].to_str().unwrap().to_string()
            }
            200 => {
                assert_eq!(r.headers()["content-type"], "application/json");
                return r.json().await.unwrap();
            }
            other => panic!("status {other}: {}", r.text().await.unwrap()),
        };
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "export did not finish in 60 s on {} (last X-Progress: {progress:?})",
            fhir_bulk_testkit::backend()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Downloads every `output` file: resources per type (as parsed JSON), checking that each
/// line's `resourceType` matches the entry's `type` and `count` matches the lines.
pub async fn download_output(manifest: &Value) -> BTreeMap<String, Vec<Value>> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for entry in manifest["output"].as_array().unwrap() {
        let t = entry["type"].as_str().unwrap().to_string();
        let body = download(entry["url"].as_str().unwrap()).await;
        let lines: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(
            entry["count"].as_u64().unwrap(),
            lines.len() as u64,
            "count of {}",
            entry["url"]
        );
        for l in &lines {
            assert_eq!(l["resourceType"], t.as_str());
        }
        out.entry(t).or_default().extend(lines);
    }
    out
}

/// GETs a file, asserting 200 and the NDJSON content type.
pub async fn download(url: &str) -> Vec<u8> {
    let r = http().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200, "download {url}");
    assert_eq!(r.headers()["content-type"], "application/fhir+ndjson");
    r.bytes().await.unwrap().to_vec()
}

/// Ids per type of downloaded resources, asserting there is no duplicate.
pub fn ids(resources: &BTreeMap<String, Vec<Value>>) -> BTreeMap<String, BTreeSet<String>> {
    resources
        .iter()
        .map(|(t, rs)| {
            let set: BTreeSet<String> = rs
                .iter()
                .map(|r| r["id"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(set.len(), rs.len(), "duplicate {t} in the export");
            (t.clone(), set)
        })
        .collect()
}

/// The Synthea resources, read from the files: type → id → resource.
pub fn synthea() -> BTreeMap<String, BTreeMap<String, Value>> {
    let mut out: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for e in std::fs::read_dir(synthea_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("ndjson") {
            continue;
        }
        for line in std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
        {
            let v: Value = serde_json::from_str(line).unwrap();
            let t = v["resourceType"].as_str().unwrap().to_string();
            let id = v["id"].as_str().unwrap().to_string();
            out.entry(t).or_default().insert(id, v);
        }
    }
    out
}

/// Resource types of the Patient compartment, read from the official definition (not from
/// our generated tables).
pub fn compartment_types() -> BTreeSet<String> {
    let p = synthea_dir().join("../../fhir-r4/compartmentdefinition-patient.json");
    let def: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    def["resource"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r.get("param")
                .is_some_and(|p| !p.as_array().unwrap().is_empty())
                || r["code"] == "Patient"
        })
        .map(|r| r["code"].as_str().unwrap().to_string())
        .collect()
}

/// Every `Patient/<id>` reference anywhere in a resource (outside `contained`).
pub fn patient_refs(v: &Value, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for (k, c) in o {
                if k == "contained" {
                    continue;
                }
                if k == "reference" {
                    if let Some(id) = c.as_str().and_then(|s| s.strip_prefix("Patient/")) {
                        out.insert(id.to_string());
                    }
                } else {
                    patient_refs(c, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| patient_refs(c, out)),
        _ => {}
    }
}

/// Expected ids per type of a Patient-compartment export of `patients` (all when `None`),
/// computed from the files: Patients themselves, and compartment-type resources that
/// reference one of the patients.
pub fn expected_compartment(
    patients: Option<&BTreeSet<String>>,
) -> BTreeMap<String, BTreeSet<String>> {
    let types = compartment_types();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (t, rs) in synthea() {
        if !types.contains(&t) {
            continue;
        }
        for (id, r) in rs {
            let mut refs = BTreeSet::new();
            if t == "Patient" {
                refs.insert(id.clone());
            }
            patient_refs(&r, &mut refs);
            let hit = match patients {
                None => !refs.is_empty(),
                Some(ps) => refs.iter().any(|p| ps.contains(p)),
            };
            if hit {
                out.entry(t.clone()).or_default().insert(id);
            }
        }
    }
    out
}

/// Asserts an error response is an OperationOutcome with diagnostics containing `needle`.
pub async fn assert_outcome(r: reqwest::Response, status: u16, needle: &str) {
    assert_eq!(r.status().as_u16(), status, "expected {status}");
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resourceType"], "OperationOutcome");
    let d = v["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(
        d.contains(needle),
        "diagnostics {d:?} should contain {needle:?}"
    );
}
