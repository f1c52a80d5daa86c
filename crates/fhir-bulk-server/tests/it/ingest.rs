//! Loading files into the store (`ingest`): the synthea-100 set against counts taken from
//! its files, idempotent reloads, folders, and every kind of bad input refused whole with
//! the file and line named. Each test has its own fresh database (see `fhir-bulk-testkit`).

use fhir_bulk_server::ingest::{self, FileReport, IngestError, LoadProgress, NoProgress};
use fhir_bulk_store::{DEFAULT_TENANT, SearchQuery, Store};
use fhir_bulk_testkit::{SYNTHEA_GROUP, TestDatabase, synthea_dir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A fresh database and a folder for input files.
/// (Fields drop in order: the store, then the database, then the folder.)
struct Fixture {
    store: Arc<dyn Store>,
    _db: TestDatabase,
    dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::new(dir.path());
    let store = fhir_bulk_store::open(db.database())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "opening the {} test database: {e}",
                fhir_bulk_testkit::backend()
            )
        });
    std::fs::create_dir(dir.path().join("in")).unwrap();
    Fixture {
        store,
        _db: db,
        dir,
    }
}

impl Fixture {
    /// Writes an input file (creating folders) and returns its path.
    fn file(&self, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join("in").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, content).unwrap();
        path
    }

    fn input(&self) -> PathBuf {
        self.dir.path().join("in")
    }

    async fn load<P: AsRef<Path>>(
        &self,
        paths: impl IntoIterator<Item = P>,
    ) -> Result<ingest::LoadReport, IngestError> {
        let paths: Vec<PathBuf> = paths
            .into_iter()
            .map(|p| p.as_ref().to_path_buf())
            .collect();
        ingest::load_paths(self.store.as_ref(), DEFAULT_TENANT, &paths, &NoProgress).await
    }

    async fn counts(&self) -> BTreeMap<String, u64> {
        self.store
            .type_counts(DEFAULT_TENANT)
            .await
            .unwrap()
            .into_iter()
            .collect()
    }

    async fn version(&self, resource_type: &str, id: &str) -> Option<i64> {
        let r = self
            .store
            .read(DEFAULT_TENANT, resource_type, id)
            .await
            .unwrap();
        r.filter(|r| !r.deleted).map(|r| r.version)
    }

    async fn json(&self, resource_type: &str, id: &str) -> Value {
        let r = self
            .store
            .read(DEFAULT_TENANT, resource_type, id)
            .await
            .unwrap()
            .unwrap();
        serde_json::from_slice(&r.json.unwrap()).unwrap()
    }
}

/// Records what the loader reports.
#[derive(Default)]
struct Recorder {
    started: Mutex<Option<(usize, u64)>>,
    skipped: Mutex<Vec<PathBuf>>,
    loaded: Mutex<Vec<PathBuf>>,
    last: Mutex<(u64, u64)>,
}

impl LoadProgress for Recorder {
    fn start(&self, files: usize, total_bytes: u64) {
        *self.started.lock().unwrap() = Some((files, total_bytes));
    }
    fn skipped(&self, path: &Path, _reason: &str) {
        self.skipped.lock().unwrap().push(path.into());
    }
    fn advanced(&self, bytes_read: u64, resources: u64) {
        *self.last.lock().unwrap() = (bytes_read, resources);
    }
    fn file_loaded(&self, report: &FileReport) {
        self.loaded.lock().unwrap().push(report.path.clone());
    }
}

/// Lines per `<Type>.ndjson` file: what the store must hold, counted without our loader.
fn synthea_line_counts(dir: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .strip_suffix(".ndjson")
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path).unwrap();
        counts.insert(
            name.to_string(),
            text.lines().filter(|l| !l.trim().is_empty()).count() as u64,
        );
    }
    counts
}

fn ids_in(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn synthea_loads_with_the_counts_of_its_files_and_reloads_idempotently() {
    let f = fixture().await;
    let dir = synthea_dir();
    let expected = synthea_line_counts(&dir);
    assert_eq!(expected.len(), 18, "README: 18 files");
    assert_eq!(
        expected.values().sum::<u64>(),
        38_473,
        "README: 38,473 resources"
    );

    let progress = Recorder::default();
    let report = ingest::load_paths(
        f.store.as_ref(),
        DEFAULT_TENANT,
        std::slice::from_ref(&dir),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(f.counts().await, expected);
    assert_eq!(report.per_type, expected);
    assert_eq!(report.files.len(), 18);
    // The README is skipped with a note; every byte of the data was read.
    assert_eq!(
        *progress.skipped.lock().unwrap(),
        vec![dir.join("README.md")]
    );
    let (files, total) = progress.started.lock().unwrap().unwrap();
    assert_eq!(files, 18);
    assert_eq!(*progress.last.lock().unwrap(), (total, 38_473));

    let members = f
        .store
        .group_members(DEFAULT_TENANT, SYNTHEA_GROUP)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(members.len(), 100);
    assert!(members.iter().all(|(t, _)| t == "Patient"), "{members:?}");
    let mut patients = ids_in(&dir.join("Patient.ndjson"));
    patients.sort();
    let mut member_ids: Vec<_> = members.into_iter().map(|(_, id)| id).collect();
    member_ids.sort();
    assert_eq!(member_ids, patients);
    let patient = &patients[0];
    assert_eq!(f.version("Patient", patient).await, Some(1));

    f.load([dir]).await.unwrap();
    assert_eq!(f.counts().await, expected);
    assert_eq!(f.version("Patient", patient).await, Some(2));
    assert_eq!(f.version("Group", SYNTHEA_GROUP).await, Some(2));
}

const GOOD: &str = r#"{"resourceType":"Patient","id":"good"}"#;

/// A file whose line 2 is `bad` (after a good line 1) is refused whole, naming file and line.
async fn check_bad_line(bad: &str, want: &str) {
    let f = fixture().await;
    let path = f.file("Patient.ndjson", format!("{GOOD}\n{bad}\n"));
    let err = f.load([&path]).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("{}:2: ", path.display())), "{msg}");
    assert!(msg.contains(want), "{msg} should contain {want}");
    assert!(
        matches!(err, IngestError::Invalid { line: Some(2), .. }),
        "{err:?}"
    );
    assert_eq!(err.path(), path);
    assert_eq!(
        f.counts().await,
        BTreeMap::new(),
        "nothing of the file is written"
    );
    assert_eq!(f.version("Patient", "good").await, None);
}

#[tokio::test]
async fn a_line_that_is_not_json_refuses_the_file() {
    check_bad_line(r#"{"resourceType":"Patient","id":"x""#, "not valid JSON").await;
    check_bad_line("resourceType=Patient", "not valid JSON").await;
    check_bad_line(
        &format!("{GOOD} {GOOD}"),
        "not valid JSON: trailing characters",
    )
    .await;
}

#[tokio::test]
async fn a_resource_without_resource_type_refuses_the_file() {
    check_bad_line(r#"{"id":"x"}"#, "no resourceType").await;
    check_bad_line(r#"{"resourceType":7,"id":"x"}"#, "no resourceType").await;
}

#[tokio::test]
async fn an_unknown_resource_type_refuses_the_file() {
    check_bad_line(
        r#"{"resourceType":"Banana","id":"x"}"#,
        "unknown resourceType 'Banana'",
    )
    .await;
    check_bad_line(
        r#"{"resourceType":"patient","id":"x"}"#,
        "unknown resourceType 'patient'",
    )
    .await;
}

#[tokio::test]
async fn an_invalid_or_missing_id_refuses_the_file() {
    check_bad_line(
        r#"{"resourceType":"Patient","id":"a b"}"#,
        "invalid id 'a b'",
    )
    .await;
    check_bad_line(
        &format!(r#"{{"resourceType":"Patient","id":"{}"}}"#, "x".repeat(65)),
        "invalid id",
    )
    .await;
    check_bad_line(
        r#"{"resourceType":"Patient","id":5}"#,
        "id must be a string",
    )
    .await;
    check_bad_line(r#"{"resourceType":"Patient"}"#, "has no id").await;
}

#[tokio::test]
async fn a_line_that_is_not_an_object_refuses_the_file() {
    check_bad_line(r#"[{"resourceType":"Patient","id":"x"}]"#, "JSON object").await;
    check_bad_line(r#""Patient""#, "JSON object").await;
    check_bad_line("null", "JSON object").await;
}

#[tokio::test]
async fn a_bad_last_line_of_a_big_file_leaves_nothing_of_it() {
    let f = fixture().await;
    // Several batches reach the store before the bad line: the rollback must undo them all.
    let n = 5 * ingest::BATCH_WRITES + 17;
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!(
            r#"{{"resourceType":"Patient","id":"p{i}","active":true}}"#
        ));
        text.push('\n');
    }
    text.push_str(r#"{"resourceType":"Patient","id":"bad id"}"#);
    let path = f.file("big.ndjson", text);
    let msg = f.load([&path]).await.unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "{}:{}: invalid id 'bad id'",
            path.display(),
            n + 1
        )),
        "{msg}"
    );
    assert_eq!(f.counts().await, BTreeMap::new());
    assert_eq!(f.version("Patient", "p0").await, None);
    assert_eq!(f.version("Patient", &format!("p{}", n - 1)).await, None);
}

#[tokio::test]
async fn gzip_ndjson_loads_including_concatenated_members() {
    let f = fixture().await;
    let gz = |text: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    // `cat a.gz b.gz` is a valid gzip file of two members; both must be read.
    let mut bytes = gz("{\"resourceType\":\"Patient\",\"id\":\"a\"}\n");
    bytes.extend(gz("{\"resourceType\":\"Observation\",\"id\":\"o\",\"subject\":{\"reference\":\"Patient/a\"}}\n"));
    let path = f.file("mixed.ndjson.gz", bytes);
    let report = f.load([path]).await.unwrap();
    assert_eq!(report.resources, 2);
    assert_eq!(
        f.counts().await,
        BTreeMap::from([("Observation".into(), 1), ("Patient".into(), 1)])
    );

    let bad = f.file(
        "bad.ndjson.gz",
        gz(&format!("{GOOD}\n{GOOD}\n{{\"id\":\"x\"}}\n")),
    );
    let msg = f.load([&bad]).await.unwrap_err().to_string();
    assert!(msg.starts_with(&format!("{}:3: ", bad.display())), "{msg}");
    assert_eq!(f.version("Patient", "good").await, None);
}

#[tokio::test]
async fn blank_lines_crlf_and_a_byte_order_mark_are_tolerated() {
    let f = fixture().await;
    let path = f.file(
        "Patient.ndjson",
        "\u{feff}{\"resourceType\":\"Patient\",\"id\":\"a\"}\r\n\r\n{\"resourceType\":\"Patient\",\"id\":\"b\"}\n\n",
    );
    f.load([path]).await.unwrap();
    assert_eq!(f.counts().await, BTreeMap::from([("Patient".into(), 2)]));
}

#[tokio::test]
async fn duplicate_ids_in_one_file_keep_the_last_and_bump_the_version() {
    let f = fixture().await;
    let path = f.file(
        "Patient.ndjson",
        "{\"resourceType\":\"Patient\",\"id\":\"a\",\"gender\":\"male\"}\n\
         {\"resourceType\":\"Patient\",\"id\":\"a\",\"gender\":\"female\"}\n",
    );
    f.load([path]).await.unwrap();
    assert_eq!(f.counts().await, BTreeMap::from([("Patient".into(), 1)]));
    assert_eq!(f.version("Patient", "a").await, Some(2));
    assert_eq!(f.json("Patient", "a").await["gender"], "female");
}

#[tokio::test]
async fn a_transaction_bundle_loads_with_urn_uuid_references_resolved() {
    let f = fixture().await;
    let bundle = serde_json::json!({"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:4a9e6b1e-0000-4000-8000-000000000001",
         "resource":{"resourceType":"Patient","id":"pat"},
         "request":{"method":"PUT","url":"Patient/pat"}},
        {"fullUrl":"urn:uuid:4a9e6b1e-0000-4000-8000-000000000002",
         "resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:4a9e6b1e-0000-4000-8000-000000000001"}},
         "request":{"method":"POST","url":"Observation"}}]});
    let path = f.file("bundle.json", bundle.to_string());
    let report = f.load([path]).await.unwrap();
    assert_eq!(report.resources, 2);
    assert_eq!(
        f.counts().await,
        BTreeMap::from([("Observation".into(), 1), ("Patient".into(), 1)])
    );
    // The POSTed Observation got an id of the loader's making: find it by searching its type.
    let query = SearchQuery {
        resource_type: "Observation".into(),
        count: 10,
        ..Default::default()
    };
    let page = f.store.search(DEFAULT_TENANT, query).await.unwrap();
    assert_eq!(page.resources.len(), 1);
    let obs: Value = serde_json::from_slice(&page.resources[0]).unwrap();
    assert_eq!(obs["subject"]["reference"], "Patient/pat");
}

#[tokio::test]
async fn a_collection_bundle_and_a_single_resource_json_load() {
    let f = fixture().await;
    let collection = serde_json::json!({"resourceType":"Bundle","type":"collection","entry":[
        {"resource":{"resourceType":"Patient","id":"a"}},
        {"resource":{"resourceType":"Patient","id":"b"}}]});
    let a = f.file("collection.json", collection.to_string());
    let b = f.file("one.json", r#"{"resourceType":"Practitioner","id":"dr"}"#);
    let doc = f.file(
        "doc.json",
        r#"{"resourceType":"Bundle","id":"doc","type":"document"}"#,
    );
    f.load([a, b, doc]).await.unwrap();
    assert_eq!(
        f.counts().await,
        BTreeMap::from([
            ("Bundle".into(), 1),
            ("Patient".into(), 2),
            ("Practitioner".into(), 1)
        ])
    );
}

#[tokio::test]
async fn a_bad_bundle_entry_refuses_the_bundle() {
    let f = fixture().await;
    let bundle = serde_json::json!({"resourceType":"Bundle","type":"transaction","entry":[
        {"resource":{"resourceType":"Patient","id":"ok"},"request":{"method":"PUT","url":"Patient/ok"}},
        {"resource":{"resourceType":"Patient","id":"b"},"request":{"method":"PUT","url":"Patient/c"}}]});
    let path = f.file("bundle.json", bundle.to_string());
    let err = f.load([&path]).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("{}: Bundle entry 1: ", path.display())),
        "{msg}"
    );
    assert!(matches!(err, IngestError::Bundle { .. }), "{err:?}");
    assert_eq!(f.counts().await, BTreeMap::new());

    let bad_type = f.file(
        "search.json",
        r#"{"resourceType":"Bundle","type":"searchset","entry":[]}"#,
    );
    let msg = f.load([bad_type]).await.unwrap_err().to_string();
    assert!(msg.contains("searchset"), "{msg}");

    let unknown = serde_json::json!({"resourceType":"Bundle","type":"collection","entry":[
        {"resource":{"resourceType":"Patient","id":"a"}}, {"resource":{"resourceType":"Nope","id":"a"}}]});
    let msg = f
        .load([f.file("unknown.json", unknown.to_string())])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Bundle entry 1: unknown resourceType 'Nope'"),
        "{msg}"
    );
    assert_eq!(f.counts().await, BTreeMap::new());
}

#[tokio::test]
async fn a_json_file_that_is_not_json_names_the_line() {
    let f = fixture().await;
    let path = f.file(
        "broken.json",
        "{\n  \"resourceType\": \"Patient\",\n  \"id\": oops\n}\n",
    );
    let msg = f.load([&path]).await.unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}:3: not valid JSON", path.display())),
        "{msg}"
    );
    let one = f.file("anon.json", r#"{"resourceType":"Patient"}"#);
    let msg = f.load([&one]).await.unwrap_err().to_string();
    assert_eq!(msg, format!("{}: the Patient has no id", one.display()));
}

#[tokio::test]
async fn folders_load_in_path_order_and_stop_at_the_first_bad_file() {
    let f = fixture().await;
    f.file(
        "a/Patient.ndjson",
        "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n",
    );
    f.file("b.ndjson", "{\"resourceType\":\"Patient\",\"id\":\"b\"}\n");
    f.file(".hidden.ndjson", "not even json\n");
    f.file(".git/x.ndjson", "not even json\n");
    f.file("notes.txt", "hello");
    let bad = f.file(
        "c/bad.ndjson",
        "{\"resourceType\":\"Patient\",\"id\":\"c\"}\n{}\n",
    );
    f.file("d.ndjson", "{\"resourceType\":\"Patient\",\"id\":\"d\"}\n");

    let progress = Recorder::default();
    let err = ingest::load_paths(f.store.as_ref(), DEFAULT_TENANT, &[f.input()], &progress)
        .await
        .unwrap_err();
    assert_eq!(err.path(), bad);
    assert!(
        err.to_string()
            .starts_with(&format!("{}:2: ", bad.display())),
        "{err}"
    );
    let input = f.input();
    assert_eq!(
        *progress.loaded.lock().unwrap(),
        vec![input.join("a/Patient.ndjson"), input.join("b.ndjson")]
    );
    assert_eq!(
        *progress.skipped.lock().unwrap(),
        vec![input.join("notes.txt")]
    );
    assert_eq!(f.version("Patient", "a").await, Some(1));
    assert_eq!(f.version("Patient", "b").await, Some(1));
    assert_eq!(f.version("Patient", "c").await, None);
    assert_eq!(f.version("Patient", "d").await, None);
}

#[tokio::test]
async fn named_paths_must_exist_and_have_a_known_format() {
    let f = fixture().await;
    let txt = f.file("notes.txt", "hello");
    let err = f.load([&txt]).await.unwrap_err();
    assert!(matches!(err, IngestError::UnknownFormat { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&txt.display().to_string()),
        "{err}"
    );
    let missing = f.input().join("missing.ndjson");
    let err = f.load([&missing]).await.unwrap_err();
    assert!(matches!(err, IngestError::Io { .. }), "{err:?}");
    assert_eq!(err.path(), missing);
}

#[tokio::test]
async fn a_load_writes_only_its_tenant() {
    let f = fixture().await;
    let path = f.file("Patient.ndjson", format!("{GOOD}\n"));
    ingest::load_paths(f.store.as_ref(), "other", &[path], &NoProgress)
        .await
        .unwrap();
    assert_eq!(f.counts().await, BTreeMap::new());
    let other: BTreeMap<_, _> = f
        .store
        .type_counts("other")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(other, BTreeMap::from([("Patient".into(), 1)]));
}
