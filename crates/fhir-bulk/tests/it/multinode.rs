//! Three server processes on one PostgreSQL database and one S3 endpoint (#7): a system and
//! a Group export kicked off on node 1, polled on node 2, downloaded from node 3; node 2 is
//! killed with SIGKILL mid-export. The manifests must be complete and duplicate-free,
//! compared id by id with the store, and the units node 2 held must have been redone.
//!
//! Needs PostgreSQL (`FHIR_BULK_TEST_DATABASE`) and `moto_server`; `.ci/run` provides both
//! and runs this in the PostgreSQL pass. In the SQLite pass it says so and returns.

use crate::support::{SYNTHEA_GROUP, TestDatabase, free_port, loaded_db, wait_under_way, wait_up};
use fhir_bulk_testkit::MotoServer;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `fhir-bulk serve` process, killed when dropped.
struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn node(database: &str, moto: &MotoServer, bucket: &str) -> Node {
    let port = free_port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_fhir-bulk"));
    cmd.arg("serve")
        .args(["--no-auth", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--database", database])
        .args(["--output", &format!("s3://{bucket}/exports")])
        .args(["--file-urls", "proxy"])
        .args(["--workers", "2", "--lease-seconds", "2"])
        // Small files: many uploads, so the export is still running when node 2 dies.
        .args(["--file-max-resources", "200"])
        .env("FHIR_BULK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in moto.env() {
        cmd.env(k, v);
    }
    Node {
        child: cmd.spawn().unwrap(),
        base: format!("http://127.0.0.1:{port}/fhir"),
    }
}

async fn kick_off(http: &reqwest::Client, url: String) -> String {
    let r = http
        .get(url)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string()
}

/// `status_url` of one node, on another node's base.
fn on(base: &str, status_url: &str) -> String {
    let path = status_url.split("/fhir/").nth(1).unwrap();
    format!("{base}/{path}")
}

/// Polls until the manifest is there (any node may answer).
async fn manifest(http: &reqwest::Client, url: &str) -> Value {
    let started = Instant::now();
    loop {
        let r = http.get(url).send().await.unwrap();
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the export did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Downloads every output file of `manifest` through node `base`; ids per type, asserting
/// that no resource comes twice.
async fn download(
    http: &reqwest::Client,
    base: &str,
    manifest: &Value,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut names = BTreeSet::new();
    for e in manifest["output"].as_array().unwrap() {
        let url = on(base, e["url"].as_str().unwrap());
        assert!(names.insert(url.clone()), "a file listed twice: {url}");
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let body = r.text().await.unwrap();
        let mut lines = 0;
        for l in body.lines() {
            let v: Value = serde_json::from_str(l).unwrap();
            let fresh = got
                .entry(v["resourceType"].as_str().unwrap().to_string())
                .or_default()
                .insert(v["id"].as_str().unwrap().to_string());
            assert!(fresh, "duplicate {} in {url}", v["id"]);
            lines += 1;
        }
        assert_eq!(e["count"].as_u64().unwrap(), lines, "{url}: count");
    }
    got
}

/// Ids per type the store holds (live), optionally only those a Group export covers: the
/// member Patients and the resources in their compartments.
async fn store_ids(database: &str, group: Option<&str>) -> BTreeMap<String, BTreeSet<String>> {
    let (client, conn) = tokio_postgres::connect(database, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = match group {
        None => {
            client
                .query("SELECT type, id FROM resources WHERE NOT deleted", &[])
                .await
        }
        Some(g) => {
            client
                .query(
                    "SELECT r.type, r.id FROM resources r
                     WHERE NOT r.deleted AND (
                        (r.type = 'Patient' AND r.id IN (
                            SELECT member_id FROM group_members
                            WHERE group_id = $1 AND member_type = 'Patient'))
                        OR EXISTS (
                            SELECT 1 FROM compartment c JOIN group_members m
                              ON m.tenant = c.tenant AND m.member_type = 'Patient'
                             AND m.member_id = c.patient_id AND m.group_id = $1
                            WHERE c.tenant = r.tenant AND c.type = r.type AND c.id = r.id))",
                    &[&g],
                )
                .await
        }
    }
    .unwrap();
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in rows {
        want.entry(r.get(0)).or_default().insert(r.get(1));
    }
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_one_killed_complete_and_duplicate_free() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::new(dir.path());
    if db.schema().is_none() {
        eprintln!("multi-node needs PostgreSQL: this test runs in the PostgreSQL pass of .ci/run");
        return;
    }
    let moto = MotoServer::start()
        .await
        .expect("the multi-node test needs moto_server (pip install 'moto[server]'; .ci/run does)");
    let bucket = "fhir-bulk-multinode";
    moto.create_bucket(bucket).await;
    loaded_db(db.database()).await;
    let nodes: Vec<Node> = (0..3).map(|_| node(db.database(), &moto, bucket)).collect();
    for n in &nodes {
        wait_up(&n.base).await;
    }
    let mut nodes = nodes.into_iter();
    let (n1, mut n2, n3) = (
        nodes.next().unwrap(),
        nodes.next().unwrap(),
        nodes.next().unwrap(),
    );
    let http = reqwest::Client::new();

    let system = kick_off(&http, format!("{}/$export", n1.base)).await;
    let group = kick_off(&http, format!("{}/Group/{SYNTHEA_GROUP}/$export", n1.base)).await;

    // Poll on node 2 until both exports are under way, then kill it.
    for status in [&system, &group] {
        wait_under_way(&http, &on(&n2.base, status), Duration::from_secs(60)).await;
    }
    n2.child.kill().unwrap(); // SIGKILL: no lease is handed back.
    n2.child.wait().unwrap();

    let store = fhir_bulk_store::open(db.database()).await.unwrap();
    for (status, group) in [(&system, None), (&group, Some(SYNTHEA_GROUP))] {
        let m = manifest(&http, &on(&n1.base, status)).await;
        let got = download(&http, &n3.base, &m).await;
        let want = store_ids(db.database(), group).await;
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "types"
        );
        for (t, ids) in &want {
            assert_eq!(&got[t], ids, "{t}: a gap or an extra resource");
        }
        // The Synthea data is all there (system export only).
        if group.is_none() {
            let total: usize = got.values().map(BTreeSet::len).sum();
            assert_eq!(total, 38_473);
        }
        let job = status.rsplit('/').next().unwrap();
        let units = store.units(job).await.unwrap();
        assert!(units.iter().all(|u| u.done));
        eprintln!(
            "{job}: {} units, {} redone after node 2 died",
            units.len(),
            units.iter().filter(|u| u.attempts > 1).count()
        );
    }
    // Node 2 held leases when it died (two workers, both busy): some unit was redone.
    let mut redone = 0;
    for status in [&system, &group] {
        let job = status.rsplit('/').next().unwrap();
        redone += store
            .units(job)
            .await
            .unwrap()
            .iter()
            .filter(|u| u.attempts > 1)
            .count();
    }
    assert!(
        redone > 0,
        "no unit was redone: node 2 held no lease when killed"
    );
    drop((n1, n3));
}
