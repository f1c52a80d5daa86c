//! The `fhir-bulk export` command against our own server, end to end: every file it writes
//! matches what the server holds (computed from the Synthea files, not from the server).

use crate::support::*;
use fhir_bulk_server::ServerConfig;
use fhir_bulk_server::ingest::{NoProgress, load_paths};
use fhir_bulk_store::DEFAULT_TENANT;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;

/// A server loaded with Synthea, running in this process; returns its FHIR base and its
/// database (keep it for the whole test).
async fn server(dir: &Path) -> (String, TestDatabase) {
    let db = TestDatabase::new(dir);
    let store = open(db.database()).await;
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
    (format!("http://{addr}/fhir"), db)
}

/// Runs `fhir-bulk export ARGS…`; returns its exit code.
async fn export(args: Vec<String>) -> i32 {
    let mut all = vec!["export".to_string()];
    all.extend(args);
    run(all).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_export_downloads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _db) = server(dir.path()).await;
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
    let (base, _db) = server(dir.path()).await;
    let out = dir.path().join("group");
    let code = export(vec![
        base.clone(),
        "--group".into(),
        SYNTHEA_GROUP.into(),
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

/// SMART Backend Services end to end: keys made by `keygen`, clients registered with
/// `clients add`, the server process with auth on, and exports signed with ES384, RS384 and a
/// client secret (checklist §12–§15, CL1–CL2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_exports_with_es384_rs384_and_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).display().to_string();
    let test_db = TestDatabase::new(dir.path());
    let db = test_db.database().to_string();
    loaded_db(&db).await;
    for alg in ["ES384", "RS384"] {
        let (code, _) = run(vec![
            "keygen".into(),
            "--alg".into(),
            alg.into(),
            "--out".into(),
            p(alg),
        ])
        .await;
        assert_eq!(code, 0);
        let jwks = format!("{}/jwks.json", p(alg));
        let add = vec![
            "clients",
            "add",
            "--database",
            &db,
            "--id",
            alg,
            "--jwks",
            &jwks,
            "--scope",
            "system/*.rs",
        ];
        assert_eq!(run(add.into_iter().map(String::from).collect()).await.0, 0);
    }
    let add = vec![
        "clients",
        "add",
        "--database",
        &db,
        "--id",
        "etl",
        "--secret",
        "--scope",
        "system/*.read",
    ];
    let (code, secret) = run(add.into_iter().map(String::from).collect()).await;
    assert_eq!(code, 0);
    std::fs::write(p("etl.secret"), secret.trim()).unwrap();

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let mut server = spawn_server(&db, Path::new(&p("files")), port, &[]);
    wait_up(&base).await;

    let key = |alg: &str| format!("{}/private-key.pem", p(alg));
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let code = export(args(&[
        &base,
        "--client-id",
        "ES384",
        "--key",
        &key("ES384"),
        "--type",
        "Patient,Device",
        "--out",
        &p("o1"),
    ]))
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        downloaded(Path::new(&p("o1"))),
        synthea_ids(Some(&["Patient", "Device"]))
    );

    let code = export(args(&[
        &base,
        "--patient-level",
        "--client-id",
        "RS384",
        "--key",
        &key("RS384"),
        "--type",
        "Patient,Condition",
        "--out",
        &p("o2"),
    ]))
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        downloaded(Path::new(&p("o2"))),
        synthea_ids(Some(&["Patient", "Condition"]))
    );

    let secret_file = p("etl.secret");
    let code = export(args(&[
        &base,
        "--group",
        SYNTHEA_GROUP,
        "--client-id",
        "etl",
        "--secret-file",
        &secret_file,
        "--scope",
        "system/*.read",
        "--type",
        "Patient",
        "--out",
        &p("o3"),
    ]))
    .await;
    assert_eq!(code, 0);
    assert_eq!(
        downloaded(Path::new(&p("o3"))),
        synthea_ids(Some(&["Patient"]))
    );

    // No credentials against a protected server: an auth failure (exit 3), not a crash.
    let code = export(args(&[&base, "--type", "Patient", "--out", &p("o4")])).await;
    assert_eq!(code, 3);
    // A wrong key for a registered client is refused at the token endpoint.
    let code = export(args(&[
        &base,
        "--client-id",
        "ES384",
        "--key",
        &key("RS384"),
        "--out",
        &p("o5"),
    ]))
    .await;
    assert_eq!(code, 3);
    server.kill().unwrap();
    let _ = server.wait();
}

/// `--since`, `--until`, `--patient` (POST) and `--lenient` pass through to our server and
/// select exactly (P2, P3, P6, K5).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn since_until_patient_and_lenient() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _db) = server(dir.path()).await;
    let out = |n: &str| dir.path().join(n).display().to_string();
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        export(args(&[&base, "--type", "Patient", "--out", &out("a")])).await,
        0
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("a/manifest.json")).unwrap())
            .unwrap();
    let t = manifest["transactionTime"].as_str().unwrap().to_string();

    let patients = synthea_ids(Some(&["Patient"]))["Patient"].clone();
    let changed = patients.iter().next().unwrap().clone();
    let body = format!(r#"{{"resourceType":"Patient","id":"{changed}","gender":"other"}}"#);
    let r = reqwest::Client::new()
        .put(format!("{base}/Patient/{changed}"))
        .header("Content-Type", "application/fhir+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    assert_eq!(
        export(args(&[
            &base,
            "--type",
            "Patient",
            "--since",
            &t,
            "--out",
            &out("b")
        ]))
        .await,
        0
    );
    assert_eq!(
        downloaded(Path::new(&out("b")))["Patient"],
        BTreeSet::from([changed.clone()])
    );

    assert_eq!(
        export(args(&[
            &base,
            "--type",
            "Patient",
            "--until",
            &t,
            "--out",
            &out("c")
        ]))
        .await,
        0
    );
    let mut before = patients.clone();
    before.remove(&changed);
    assert_eq!(downloaded(Path::new(&out("c")))["Patient"], before);

    let other = patients.iter().nth(1).unwrap().clone();
    let reference = format!("Patient/{other}");
    let code = export(args(&[
        &base,
        "--patient-level",
        "--patient",
        &reference,
        "--type",
        "Patient,Condition",
        "--out",
        &out("d"),
    ]))
    .await;
    assert_eq!(code, 0);
    let got = downloaded(Path::new(&out("d")));
    assert_eq!(got["Patient"], BTreeSet::from([other.clone()]));
    let conditions: BTreeSet<String> =
        std::fs::read_to_string(synthea_dir().join("Condition.ndjson"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|c| c["subject"]["reference"] == reference.as_str())
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect();
    assert_eq!(
        got.get("Condition").cloned().unwrap_or_default(),
        conditions
    );

    let code = export(args(&[
        &base,
        "--lenient",
        "--type",
        "Device,Banana",
        "--out",
        &out("e"),
    ]))
    .await;
    assert_eq!(code, 0);
    assert_eq!(downloaded(Path::new(&out("e")))["Device"].len(), 4);
    let errors: Vec<_> = std::fs::read_dir(dir.path().join("e/error"))
        .unwrap()
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "the lenient warning arrives as an error file"
    );
}
