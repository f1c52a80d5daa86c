//! The `fhir-bulk export` command against our own server, end to end: every file it writes
//! matches what the server holds (computed from the Synthea files, not from the server).

use fhir_bulk_server::ServerConfig;
use fhir_bulk_server::ingest::{NoProgress, load_paths};
use fhir_bulk_store::sqlite::SqliteStore;
use fhir_bulk_store::{DEFAULT_TENANT, Store};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn synthea_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/synthea-100");
    assert!(
        dir.is_dir(),
        "the Synthea data set is missing at {}",
        dir.display()
    );
    dir
}

/// A server loaded with Synthea, running in this process; returns its FHIR base.
async fn server(dir: &Path) -> String {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.join("db.sqlite")).await.unwrap());
    load_paths(
        store.as_ref(),
        DEFAULT_TENANT,
        &[synthea_dir()],
        &NoProgress,
    )
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServerConfig::new(format!("http://{addr}"), dir.join("files"));
    tokio::spawn(fhir_bulk_server::serve(
        listener,
        store,
        config,
        std::future::pending(),
    ));
    format!("http://{addr}/fhir")
}

/// Runs `fhir-bulk export` (blocking, off the runtime threads) and returns its exit code.
async fn export(args: Vec<String>) -> i32 {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_fhir-bulk"))
            .arg("export")
            .args(&args)
            .output()
            .unwrap();
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        }
        out.status.code().unwrap_or(-1)
    })
    .await
    .unwrap()
}

/// Ids per type of the NDJSON files the client wrote, asserting no duplicate.
fn downloaded(out: &Path) -> BTreeMap<String, BTreeSet<String>> {
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
            assert!(
                got.entry(t)
                    .or_default()
                    .insert(v["id"].as_str().unwrap().to_string()),
                "duplicate"
            );
        }
    }
    got
}

fn synthea_ids(types: Option<&[&str]>) -> BTreeMap<String, BTreeSet<String>> {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_export_downloads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let base = server(dir.path()).await;
    let out = dir.path().join("out");
    let code = export(vec![
        base.clone(),
        "--out".into(),
        out.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0);
    assert_eq!(downloaded(&out), synthea_ids(None));
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert!(summary.to_string().contains("38473"), "{summary}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["output"].as_array().unwrap().len() >= 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_and_patient_exports_with_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let base = server(dir.path()).await;
    let out = dir.path().join("group");
    let code = export(vec![
        base.clone(),
        "--group".into(),
        "d9f31445-f448-48c0-af57-295c005e07df".into(),
        "--type".into(),
        "Patient,Condition".into(),
        "--out".into(),
        out.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        downloaded(&out),
        synthea_ids(Some(&["Patient", "Condition"]))
    );

    // _typeFilter and _elements pass through to the server (P8, P5).
    let out = dir.path().join("patients");
    let code = export(vec![
        base.clone(),
        "--patient-level".into(),
        "--type".into(),
        "MedicationRequest,Patient".into(),
        "--type-filter".into(),
        "MedicationRequest?status=active".into(),
        "--elements".into(),
        "Patient.gender".into(),
        "--out".into(),
        out.display().to_string(),
    ])
    .await;
    assert_eq!(code, 0);
    let got = downloaded(&out);
    let active: BTreeSet<String> =
        std::fs::read_to_string(synthea_dir().join("MedicationRequest.ndjson"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["status"] == "active")
            .map(|v| v["id"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(got["MedicationRequest"], active);
    let patient_file = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Patient.")
        })
        .unwrap();
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(patient_file)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert!(first.get("name").is_none() && first.get("gender").is_some());

    // A bad parameter is one clear line and exit code 4 (the server rejected the request).
    let code = export(vec![
        base,
        "--type".into(),
        "Banana".into(),
        "--out".into(),
        dir.path().join("bad").display().to_string(),
    ])
    .await;
    assert_eq!(code, 4);
}
