//! The S3 sink against a real S3-compatible server: `moto_server` (PyPI `moto[server]`)
//! started on a free loopback port per test. Exports through the S3 sink must equal the
//! same export through the local sink, with presigned and with proxied file URLs; aborted
//! and abandoned files must leave no object and no open upload; purge empties a job.

use crate::auth_support::{RSA1, jwks, kickoff_ok, manifest, register, token};
use crate::harness::*;
use fhir_bulk_server::auth::registry::CredentialInput;
use fhir_bulk_server::config::{FileUrls, S3Output};
use fhir_bulk_server::sink::{S3Sink, Sink};
use futures::TryStreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The test's S3 server, with what these tests ask of it.
struct Moto {
    server: fhir_bulk_testkit::MotoServer,
    endpoint: String,
}

impl Moto {
    /// `None` (the test is skipped) only when `moto_server` is not installed.
    async fn start() -> Option<Moto> {
        let server = fhir_bulk_testkit::MotoServer::start().await?;
        let endpoint = server.endpoint().to_string();
        Some(Moto { server, endpoint })
    }

    async fn create_bucket(&self, bucket: &str) {
        self.server.create_bucket(bucket).await
    }

    /// The output config of a bucket and prefix on this server.
    fn output(&self, bucket: &str, prefix: &str) -> S3Output {
        let mut o = S3Output::from_url(&format!("s3://{bucket}/{prefix}")).unwrap();
        o.endpoint = Some(self.endpoint.clone());
        o.region = Some("us-east-1".into());
        o.access_key_id = Some("testing".into());
        o.secret_access_key = Some(fhir_bulk_server::auth::Secret::new("testing"));
        o
    }

    /// Keys of the objects under `prefix`.
    async fn keys(&self, bucket: &str, prefix: &str) -> BTreeSet<String> {
        let xml = http()
            .get(format!("{}/{bucket}", self.endpoint))
            .query(&[("list-type", "2"), ("prefix", prefix)])
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(!xml.contains("<IsTruncated>true"), "more than a page");
        xml_values(&xml, "Key").into_iter().collect()
    }

    /// Multipart uploads started and neither completed nor aborted.
    async fn open_uploads(&self, bucket: &str) -> Vec<String> {
        let xml = http()
            .get(format!("{}/{bucket}?uploads", self.endpoint))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        xml_values(&xml, "Key")
    }
}

/// The text of every `<tag>` element (our keys need no unescaping).
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open)
        .skip(1)
        .map(|s| s[..s.find(&close).unwrap()].to_string())
        .collect()
}

/// Every file of a manifest (output, deleted, error) by file name, downloaded with the
/// token when given and without any otherwise.
async fn files(manifest: &Value, token: Option<&str>) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for list in ["output", "deleted", "error"] {
        for entry in manifest[list].as_array().unwrap() {
            let url = entry["url"].as_str().unwrap();
            let mut req = http().get(url);
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200, "download {url}");
            let name = url::Url::parse(url)
                .unwrap()
                .path_segments()
                .unwrap()
                .next_back()
                .unwrap()
                .to_string();
            out.insert(name, r.bytes().await.unwrap().to_vec());
        }
    }
    out
}

/// The job id of a status URL.
fn job_of(status: &str) -> String {
    status.rsplit('/').next().unwrap().to_string()
}

const SCOPE: &str = "system/*.read";

/// Types whose files are bigger than one 8 MiB part (Observation, ExplanationOfBenefit)
/// and small ones, so uploads of one and of several parts are both exercised.
const QUERY: &str = "$export?_type=Patient,Observation,ExplanationOfBenefit,Device";

/// An S3 export equals the local one byte for byte: with presigned URLs (no token,
/// `requiresAccessToken: false`, M3; expiry within the job's) and with proxied URLs (token
/// needed, Range, HEAD and gzip as for local files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_export_matches_local_in_both_url_modes() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.create_bucket("exports").await;
    let auth = |c: &mut fhir_bulk_server::ServerConfig| {
        c.auth_enabled = true;
        c.jwks_refetch_interval = Duration::ZERO;
    };

    // The local-sink export everything is compared with.
    let local = TestServer::start_with(auth).await;
    local.load_synthea().await;
    register(&local, "c1", CredentialInput::Jwks(jwks(&[RSA1])), SCOPE).await;
    let tok = token(&local, RSA1, "c1", SCOPE).await;
    let m = manifest(&kickoff_ok(&local.url(QUERY), &tok).await, &tok).await;
    assert_eq!(m["requiresAccessToken"], true);
    let want = files(&m, Some(&tok)).await;
    assert!(
        want.values().any(|f| f.len() > 2 * 8 * 1024 * 1024),
        "a file of several parts"
    );
    let (db, out) = (local.db.clone(), local.output.clone());
    let dir = local.stop().await;

    // Presigned: the URLs are S3's, need no token, and expire with the job at the latest.
    let s = TestServer::start_on(db.clone(), out.clone(), |c| {
        auth(c);
        c.s3 = Some(moto.output("exports", "fhir/presigned"));
        c.file_urls = FileUrls::Presigned;
        c.job_ttl = Duration::from_secs(600);
    })
    .await;
    let tok = token(&s, RSA1, "c1", SCOPE).await;
    let status = kickoff_ok(&s.url(QUERY), &tok).await;
    let m = manifest(&status, &tok).await;
    assert_eq!(m["requiresAccessToken"], false, "M3: presigned URLs");
    let job = job_of(&status);
    let prefix = format!("{}/exports/fhir/presigned/{job}/", moto.endpoint);
    for entry in m["output"].as_array().unwrap() {
        let url = url::Url::parse(entry["url"].as_str().unwrap()).unwrap();
        assert!(url.as_str().starts_with(&prefix), "{url}");
        let expires: u64 = url
            .query_pairs()
            .find(|(k, _)| k == "X-Amz-Expires")
            .unwrap()
            .1
            .parse()
            .unwrap();
        assert!(
            (1..=600).contains(&expires),
            "bounded by the job's 600 s: {expires}"
        );
    }
    let got = files(&m, None).await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    assert!(got == want, "presigned S3 files differ from the local ones");
    // Exactly the committed files are objects: no parts, no strays.
    let keys = moto
        .keys("exports", &format!("fhir/presigned/{job}/"))
        .await;
    let names: BTreeSet<String> = want
        .keys()
        .map(|n| format!("fhir/presigned/{job}/{n}"))
        .collect();
    assert_eq!(keys, names);
    assert!(moto.open_uploads("exports").await.is_empty());
    s.stop().await;

    // Proxied: our URLs, streamed from S3, token required.
    let s = TestServer::start_on(db, out, |c| {
        auth(c);
        c.s3 = Some(moto.output("exports", "fhir/proxy"));
    })
    .await;
    let tok = token(&s, RSA1, "c1", SCOPE).await;
    let m = manifest(&kickoff_ok(&s.url(QUERY), &tok).await, &tok).await;
    assert_eq!(
        m["requiresAccessToken"], true,
        "M3: our URLs need the token"
    );
    let first = m["output"][0]["url"].as_str().unwrap().to_string();
    assert!(first.starts_with(&s.url("bulk-files/")), "{first}");
    assert_eq!(http().get(&first).send().await.unwrap().status(), 401);
    let got = files(&m, Some(&tok)).await;
    assert!(got == want, "proxied S3 files differ from the local ones");

    // Range, HEAD and gzip on the biggest file, as for local files.
    let (name, plain) = want.iter().max_by_key(|(_, f)| f.len()).unwrap();
    let url = m["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["url"].as_str().unwrap())
        .find(|u| u.ends_with(name.as_str()))
        .unwrap()
        .to_string();
    let cut = 9_000_001;
    let r = http()
        .get(&url)
        .bearer_auth(&tok)
        .header("Range", format!("bytes={cut}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes {cut}-{}/{}", plain.len() - 1, plain.len()).as_str()
    );
    let tail = r.bytes().await.unwrap();
    assert_eq!([&plain[..cut], &tail[..]].concat(), *plain);
    let r = http()
        .get(&url)
        .bearer_auth(&tok)
        .header("Range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap(), plain[plain.len() - 100..]);
    let r = http()
        .get(&url)
        .bearer_auth(&tok)
        .header("Range", format!("bytes={}-", plain.len()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    let r = http().head(&url).bearer_auth(&tok).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-length"],
        plain.len().to_string().as_str()
    );
    let r = http()
        .get(&url)
        .bearer_auth(&tok)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let gz = r.bytes().await.unwrap();
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::MultiGzDecoder::new(&gz[..]),
        &mut unzipped,
    )
    .unwrap();
    assert!(unzipped == *plain, "gzip round trip");
    s.stop().await;
    drop(dir);
}

/// A file is invisible until finished, and an aborted or dropped writer leaves no object
/// and no open upload, even after parts went out; a missing bucket fails the check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_writers_finish_whole_or_leave_nothing() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.create_bucket("exports").await;
    let sink = S3Sink::new(&moto.output("exports", "unit"), Duration::from_secs(60)).unwrap();
    sink.check().await.unwrap();
    let missing = S3Sink::new(&moto.output("no-such-bucket", ""), Duration::from_secs(60)).unwrap();
    assert!(
        missing.check().await.is_err(),
        "a missing bucket is not ready"
    );
    let mib = vec![b'x'; 1024 * 1024];

    // Aborted after two parts were sent.
    let mut w = sink.create("job-a", "aborted.ndjson").await.unwrap();
    for _ in 0..20 {
        w.write(&mib).await.unwrap();
    }
    assert_eq!(moto.open_uploads("exports").await.len(), 1);
    assert!(moto.keys("exports", "unit/").await.is_empty());
    w.abort().await;
    assert!(moto.open_uploads("exports").await.is_empty());
    assert!(moto.keys("exports", "unit/").await.is_empty());

    // Finished: appears whole, only then.
    let mut w = sink.create("job-a", "done.ndjson").await.unwrap();
    for _ in 0..9 {
        w.write(&mib).await.unwrap();
    }
    w.write(b"tail\n").await.unwrap();
    assert!(
        moto.keys("exports", "unit/").await.is_empty(),
        "not before finish"
    );
    w.finish().await.unwrap();
    assert_eq!(
        moto.keys("exports", "unit/").await,
        BTreeSet::from(["unit/job-a/done.ndjson".to_string()])
    );
    let size = 9 * mib.len() as u64 + 5;
    assert_eq!(sink.size("job-a", "done.ndjson").await.unwrap(), size);
    let read = sink
        .open("job-a", "done.ndjson", Some(size - 7..size))
        .await
        .unwrap();
    assert_eq!(read.size, size);
    let bytes: Vec<bytes::Bytes> = read.stream.try_collect().await.unwrap();
    assert_eq!(bytes.concat(), b"xxtail\n");

    // Dropped mid-file (a cancelled task): the upload is aborted all the same.
    let mut w = sink.create("job-a", "dropped.ndjson").await.unwrap();
    for _ in 0..9 {
        w.write(&mib).await.unwrap();
    }
    drop(w);
    let mut open = 1;
    for _ in 0..50 {
        open = moto.open_uploads("exports").await.len();
        if open == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open, 0, "the dropped upload was aborted");

    // Deleting files and jobs.
    sink.delete_files(
        "job-a",
        &["done.ndjson".into(), "never-written.ndjson".into()],
    )
    .await;
    assert!(moto.keys("exports", "unit/").await.is_empty());
    sink.delete_job("job-a").await.unwrap();
    sink.delete_job("no-such-job").await.unwrap();
}

/// A unit whose lease is lost (here: the job is cancelled while it writes) leaves no
/// object and no open upload behind: what remains is exactly the committed files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_lost_lease_leaves_only_committed_files() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.create_bucket("exports").await;
    let s = TestServer::start_with(|c| {
        c.s3 = Some(moto.output("exports", "lease"));
        c.workers = 1;
        c.file_max_resources = 2_000;
        // No purge, so only the engine's own cleanup is seen.
        c.purge_interval = Duration::from_secs(3600);
    })
    .await;
    s.load_synthea().await;
    let status = kickoff_get(&s.url("$export")).await;
    let job = job_of(&status);
    // Cancel once a unit has committed and another file is being uploaded.
    let mut ready = false;
    for _ in 0..600 {
        let committed = s.store.files(&job).await.unwrap();
        if !committed.is_empty() && !moto.open_uploads("exports").await.is_empty() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the export never had a file in flight");
    assert_eq!(http().delete(&status).send().await.unwrap().status(), 202);

    let committed = || async {
        let files = s.store.files(&job).await.unwrap();
        files
            .iter()
            .map(|f| format!("lease/{job}/{}", f.name))
            .collect::<BTreeSet<_>>()
    };
    let settled = || async {
        moto.open_uploads("exports").await.is_empty()
            && moto.keys("exports", &format!("lease/{job}/")).await == committed().await
    };
    let mut ok = false;
    for _ in 0..150 {
        if settled().await {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the abandoned unit left objects or uploads behind");
    // The lease is 3 s: once a heartbeat has surely seen the cancel, nothing changes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(settled().await);
    let units = s.store.units(&job).await.unwrap();
    assert!(units.iter().any(|u| !u.done), "the job was cut short");
}

/// Purge deletes a cancelled job's objects and nothing of another job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_purge_deletes_job_objects() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.create_bucket("exports").await;
    let s = TestServer::start_with(|c| c.s3 = Some(moto.output("exports", "purge"))).await;
    crate::auth_support::load_small(&s).await;
    let one = kickoff_get(&s.url("$export")).await;
    let two = kickoff_get(&s.url("$export")).await;
    let m = wait_manifest(&one).await;
    wait_manifest(&two).await;
    // Proxied without auth: the plain harness download works.
    assert!(
        !download(m["output"][0]["url"].as_str().unwrap())
            .await
            .is_empty()
    );
    let (j1, j2) = (job_of(&one), job_of(&two));
    let before2 = moto.keys("exports", &format!("purge/{j2}/")).await;
    assert!(
        !moto
            .keys("exports", &format!("purge/{j1}/"))
            .await
            .is_empty()
    );
    assert!(!before2.is_empty());

    assert_eq!(http().delete(&one).send().await.unwrap().status(), 202);
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = moto.keys("exports", &format!("purge/{j1}/")).await.len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "purge deleted the cancelled job's objects");
    assert_eq!(moto.keys("exports", &format!("purge/{j2}/")).await, before2);
}

/// Nodes share nothing but the database and the bucket: a job kicked off on a node without
/// workers is written by another node, and either node serves its status, its files
/// (proxied) and its DELETE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_any_node_serves_any_job() {
    let Some(moto) = Moto::start().await else {
        return;
    };
    moto.create_bucket("exports").await;
    let a = TestServer::start_with(|c| {
        c.s3 = Some(moto.output("exports", "nodes"));
        c.workers = 0;
    })
    .await;
    crate::auth_support::load_small(&a).await;
    let b = TestServer::start_on(a.db.clone(), a.output.clone(), |c| {
        c.s3 = Some(moto.output("exports", "nodes"));
    })
    .await;
    let status = kickoff_get(&a.url("$export")).await;
    let on_b = b.url(&status[status.find("bulk-status/").unwrap()..]);
    let m = wait_manifest(&status).await;
    // The same manifest but for the origin of its URLs.
    let from_b = wait_manifest(&on_b).await.to_string();
    let (origin_a, origin_b) = (&a.base[..a.base.len() - 5], &b.base[..b.base.len() - 5]);
    assert_eq!(from_b.replace(origin_b, origin_a), m.to_string());
    for entry in m["output"].as_array().unwrap() {
        let url = entry["url"].as_str().unwrap();
        let path = &url[url.find("bulk-files/").unwrap()..];
        assert_eq!(download(url).await, download(&b.url(path)).await);
    }
    let job = job_of(&status);
    assert_eq!(http().delete(&on_b).send().await.unwrap().status(), 202);
    assert_outcome(
        http().get(&status).send().await.unwrap(),
        404,
        "no export job",
    )
    .await;
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = moto.keys("exports", &format!("nodes/{job}/")).await.len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "purged by whichever node got there first");
    b.stop().await;
}
