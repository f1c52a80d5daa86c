//! A server killed with SIGKILL in the middle of an export finishes the job after a restart,
//! with every resource exactly once (design: jobs are rows, work is leased).

use crate::support::{
    TestDatabase, free_port, loaded_db, spawn_server, synthea_dir, wait_under_way, wait_up,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

fn start(db: &str, out: &Path, port: u16) -> Child {
    spawn_server(
        db,
        out,
        port,
        &[
            "--no-auth",
            "--lease-seconds",
            "2",
            "--file-max-resources",
            "100",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_export_then_restart_completes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (db, out) = (TestDatabase::new(dir.path()), dir.path().join("files"));
    loaded_db(db.database()).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}/fhir");
    let mut server = start(db.database(), &out, port);
    wait_up(&base).await;

    let http = reqwest::Client::new();
    let r = http
        .get(format!("{base}/$export"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let status = r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();

    // Kill it once some files are written but the job is not done.
    wait_under_way(&http, &status, Duration::from_secs(30)).await;
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();

    let mut server = start(db.database(), &out, port);
    wait_up(&base).await;
    let started = Instant::now();
    let manifest: Value = loop {
        let r = http.get(&status).send().await.unwrap();
        if r.status() == 200 {
            break r.json().await.unwrap();
        }
        assert_eq!(r.status(), 202);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the job did not finish after restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for e in manifest["output"].as_array().unwrap() {
        assert!(
            names.insert(e["url"].as_str().unwrap().to_string()),
            "a file listed twice"
        );
        let body = http
            .get(e["url"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lines: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(e["count"].as_u64().unwrap(), lines.len() as u64);
        for l in lines {
            got.entry(l["resourceType"].as_str().unwrap().into())
                .or_default()
                .push(l["id"].as_str().unwrap().into());
        }
    }
    server.kill().unwrap();
    let _ = server.wait();

    // Expected: every line of every Synthea file, exactly once.
    for entry in std::fs::read_dir(synthea_dir()).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().and_then(|e| e.to_str()) != Some("ndjson") {
            continue;
        }
        let t = p.file_stem().unwrap().to_str().unwrap().to_string();
        let mut want: Vec<String> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        want.sort();
        let mut have = got.remove(&t).unwrap_or_default();
        have.sort();
        assert_eq!(have.len(), want.len(), "{t}: count (a duplicate or a gap)");
        assert_eq!(have, want, "{t}: ids");
    }
    assert!(got.is_empty(), "unexpected types: {:?}", got.keys());
}
