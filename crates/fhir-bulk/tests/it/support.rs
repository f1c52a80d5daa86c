//! What the binary's tests share: the Synthea data, a loaded database, a server process.
//! Databases come from `fhir-bulk-testkit` (SQLite, or PostgreSQL under
//! `FHIR_BULK_TEST_DATABASE`), and reach `fhir-bulk` processes as `--database` values.

use fhir_bulk_server::ingest::{NoProgress, load_paths};
use fhir_bulk_store::DEFAULT_TENANT;
pub use fhir_bulk_testkit::{SYNTHEA_GROUP, TestDatabase, synthea_dir};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Opens the test database `database` (a SQLite path or a PostgreSQL URL).
pub async fn open(database: &str) -> std::sync::Arc<dyn fhir_bulk_store::Store> {
    fhir_bulk_store::open(database).await.unwrap_or_else(|e| {
        panic!(
            "opening the {} test database: {e}",
            fhir_bulk_testkit::backend()
        )
    })
}

/// Loads Synthea into a new database.
pub async fn loaded_db(database: &str) {
    let store = open(database).await;
    load_paths(
        store.as_ref(),
        DEFAULT_TENANT,
        &[synthea_dir()],
        &NoProgress,
    )
    .await
    .unwrap();
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `fhir-bulk serve --database DATABASE` as a child process on `port`, with extra flags.
pub fn spawn_server(database: &str, out: &Path, port: u16, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fhir-bulk"))
        .arg("serve")
        .args(extra)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--database")
        .arg(database)
        .arg("--output")
        .arg(out)
        .env("FHIR_BULK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until the server answers `metadata`.
pub async fn wait_up(base: &str) {
    let started = Instant::now();
    while reqwest::get(format!("{base}/metadata")).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `fhir-bulk ARGS…` off the runtime threads; returns (exit code, stdout).
pub async fn run(args: Vec<String>) -> (i32, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_fhir-bulk"))
            .args(&args)
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!(
                "fhir-bulk {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// Ids per type of the NDJSON files an export wrote into `out`, asserting no duplicate and
/// that each file holds its own type.
pub fn downloaded(out: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in std::fs::read_dir(out).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("ndjson") {
            continue;
        }
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            let t = v["resourceType"].as_str().unwrap().to_string();
            assert!(
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&format!("{t}."))
            );
            let fresh = got
                .entry(t)
                .or_default()
                .insert(v["id"].as_str().unwrap().to_string());
            assert!(fresh, "duplicate in {}", p.display());
        }
    }
    got
}

/// Ids per type of the Synthea files (of `types` only, when given).
pub fn synthea_ids(types: Option<&[&str]>) -> BTreeMap<String, BTreeSet<String>> {
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in std::fs::read_dir(synthea_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("ndjson") {
            continue;
        }
        let t = p.file_stem().unwrap().to_str().unwrap().to_string();
        if types.is_some_and(|ts| !ts.contains(&t.as_str())) {
            continue;
        }
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            let v: Value = serde_json::from_str(line).unwrap();
            want.entry(t.clone())
                .or_default()
                .insert(v["id"].as_str().unwrap().to_string());
        }
    }
    want
}

/// Polls `status_url` until the export is under way (`X-Progress` past 0%), so a test can
/// kill a server mid-export; fails if it finishes first or takes longer than `limit`.
pub async fn wait_under_way(http: &reqwest::Client, status_url: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let r = http.get(status_url).send().await.unwrap();
        assert_eq!(
            r.status(),
            202,
            "the export finished before it could be killed"
        );
        let progress = r.headers()["x-progress"].to_str().unwrap().to_string();
        if !progress.starts_with("in-progress: 0%") {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "the export did not start within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
