//! Operations: health probes, Prometheus metrics, and graceful shutdown handing back leases.

use crate::harness::*;
use async_trait::async_trait;
use fhir_bulk_server::ServerConfig;
use fhir_bulk_server::auth::Secret;
use fhir_bulk_server::ingest::{NoProgress, load_paths};
use fhir_bulk_spec::instant::Instant;
use fhir_bulk_store::{
    Client, Credential, DEFAULT_TENANT, ExportChunk, ExportScan, ExportSet, Job, JobFile,
    NewClient, NewJob, NewTenant, OrganizedRow, QueueCounts, SearchPage, SearchQuery, Store,
    StoreError, StoredResource, Tenant, Unit, Write, WriteResult, WriteSummary,
};
use fhir_bulk_testkit::TestDatabase;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The server root (health and metrics live there, not under `/fhir`).
fn root(base: &str) -> String {
    base.strip_suffix("/fhir").unwrap().to_string()
}

/// The value of the sample `series` (name with its labels, exactly as written) in a scrape.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The sum of every sample of `name` whose labels contain all of `labels`.
fn sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix('{')?;
            let (set, value) = rest.split_once("} ")?;
            labels
                .iter()
                .all(|want| set.split(',').any(|have| have == *want))
                .then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

async fn scrape(base: &str) -> String {
    let r = http()
        .get(format!("{}/metrics", root(base)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_and_ready_answer_at_the_root() {
    let s = TestServer::start().await;
    for probe in ["health/live", "health/ready"] {
        let r = http()
            .get(format!("{}/{probe}", root(&s.base)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{probe}");
        assert_eq!(r.headers()["cache-control"], "no-store");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["resourceType"], "OperationOutcome");
        assert_eq!(v["issue"][0]["severity"], "information");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_when_the_database_fails() {
    let s = FlakyServer::start(|_| {}).await;
    s.store.ping_fails.store(true, Ordering::SeqCst);
    let r = http()
        .get(format!("{}/health/ready", s.root))
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("hunter2") && !text.contains("db.internal"),
        "the cause leaked: {text}"
    );
    let r = http()
        .get(format!("{}/health/ready", s.root))
        .send()
        .await
        .unwrap();
    assert_outcome(r, 503, "the database does not answer").await;
    // Liveness does not depend on the database: restarting us would not fix it.
    let r = http()
        .get(format!("{}/health/live", s.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    s.store.ping_fails.store(false, Ordering::SeqCst);
    let r = http()
        .get(format!("{}/health/ready", s.root))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_503_when_the_sink_fails() {
    let s = TestServer::start().await;
    let ready = format!("{}/health/ready", root(&s.base));
    // Up first: startup checks the sink too.
    assert_eq!(http().get(&ready).send().await.unwrap().status(), 200);
    // A file where the output folder should be: unusable even for root.
    let _ = std::fs::remove_dir_all(&s.output);
    std::fs::write(&s.output, b"not a folder").unwrap();
    let r = http().get(&ready).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    let d = v["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(d.contains("sink") && !d.contains("database"), "{d}");
    assert!(
        !d.contains(s.output.to_str().unwrap()),
        "the path leaked: {d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_an_export() {
    let s = TestServer::start().await;
    s.load_synthea().await;
    let status = kickoff_get(&s.url("$export")).await;
    let job_id = status.rsplit('/').next().unwrap().to_string();
    let m = wait_manifest(&status).await;
    let exported: u64 = m["output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(exported, 38_473);
    let first = m["output"][0]["url"].as_str().unwrap();
    download(first).await;

    let text = scrape(&s.base).await;
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(
        sample(&text, "fhir_bulk_export_jobs{state=\"completed\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "fhir_bulk_export_jobs{state=\"running\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "fhir_bulk_export_units{state=\"leased\"}"),
        Some(0.0)
    );
    assert_eq!(
        sum(
            &text,
            "fhir_bulk_exported_resources_total",
            &["kind=\"output\""]
        ),
        exported as f64
    );
    assert_eq!(
        sample(
            &text,
            "fhir_bulk_exported_resources_total{kind=\"output\",resource_type=\"Patient\"}"
        ),
        Some(100.0)
    );
    assert!(
        sum(
            &text,
            "fhir_bulk_exported_bytes_total",
            &["kind=\"output\""]
        ) > 1e6
    );
    assert_eq!(
        sample(&text, "fhir_bulk_export_duration_seconds_count"),
        Some(1.0)
    );
    // HTTP by route template, never by raw path.
    assert_eq!(
        sample(
            &text,
            "fhir_bulk_http_requests_total{method=\"GET\",route=\"/fhir/$export\",status=\"202\"}"
        ),
        Some(1.0)
    );
    let polls = sum(
        &text,
        "fhir_bulk_http_requests_total",
        &["route=\"/fhir/bulk-status/{job}\""],
    );
    assert!(polls >= 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            "fhir_bulk_http_requests_total{method=\"GET\",route=\"/fhir/bulk-files/{job}/{file}\",status=\"200\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        sum(
            &text,
            "fhir_bulk_http_request_duration_seconds_count",
            &["route=\"/fhir/$export\""]
        ),
        1.0
    );
    assert!(!text.contains(&job_id), "a job id became a label");

    // A path no route knows is `unmatched`, not its own series.
    let r = http()
        .get(format!("{}/nowhere/abc123", root(&s.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let text = scrape(&s.base).await;
    assert_eq!(
        sample(
            &text,
            "fhir_bulk_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ),
        Some(1.0)
    );
    assert!(!text.contains("abc123"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_failures_are_counted_by_reason() {
    let s = TestServer::start().await;
    let token = s.url("auth/token");
    let form = |body: &'static str| {
        http()
            .post(&token)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
    };
    // Not a form.
    let r = http().post(&token).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Unknown client, twice.
    for _ in 0..2 {
        let r = form("grant_type=client_credentials&scope=system/*.rs&client_id=ghost-client&client_secret=s3cr3t-value")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Another grant type.
    let r = form("grant_type=password").send().await.unwrap();
    assert_eq!(r.status(), 400);

    let text = scrape(&s.base).await;
    let reason = |r: &str| {
        sample(
            &text,
            &format!("fhir_bulk_token_failures_total{{reason=\"{r}\"}}"),
        )
    };
    assert_eq!(reason("invalid_request"), Some(1.0));
    assert_eq!(reason("unknown_client"), Some(2.0));
    assert_eq!(reason("unsupported_grant_type"), Some(1.0));
    assert_eq!(reason("replay"), None, "only reasons that happened");
    assert!(!text.contains("ghost-client") && !text.contains("s3cr3t-value"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_token_when_configured() {
    let s = TestServer::start_with(|c| {
        c.metrics_token = Some(Secret::new("metrics-token-0123456789"));
    })
    .await;
    let url = format!("{}/metrics", root(&s.base));
    let r = http().get(&url).send().await.unwrap();
    assert_outcome(r, 401, "metrics token").await;
    let r = http().get(&url).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .get(&url)
        .bearer_auth("metrics-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Probes stay open: orchestrators do not send tokens.
    let r = http()
        .get(format!("{}/health/ready", root(&s.base)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A stop signal mid-export gives the unit in progress back at once (not after its lease
/// expires), even while a slow request keeps HTTP draining.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_leases_back_at_once() {
    let mut s = FlakyServer::start(|c| {
        c.workers = 1;
        // Far longer than the test: only a release can make the unit claimable again.
        c.lease = Duration::from_secs(120);
        c.chunk_bytes = 64 * 1024;
    })
    .await;
    load_paths(
        s.store.as_ref(),
        DEFAULT_TENANT,
        &[synthea_dir()],
        &NoProgress,
    )
    .await
    .unwrap();
    s.store.chunk_delay_ms.store(100, Ordering::SeqCst);
    kickoff_get(&format!("{}/$export", s.base)).await;
    let leased = |q: &QueueCounts| {
        q.units
            .iter()
            .find(|(st, _)| st == "leased")
            .map_or(0, |(_, n)| *n)
    };
    let started = std::time::Instant::now();
    while leased(&s.store.queue_counts().await.unwrap()) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no unit was claimed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A request that holds the HTTP drain open.
    s.store.search_delay_ms.store(60_000, Ordering::SeqCst);
    let slow = tokio::spawn({
        let url = format!("{}/Patient?_id=slow", s.base);
        async move { http().get(url).send().await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let _ = s.stop.take().unwrap().send(());
    let signalled = std::time::Instant::now();
    let q = loop {
        let q = s.store.queue_counts().await.unwrap();
        if leased(&q) == 0 {
            break q;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(5),
            "the lease was not given back: {q:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        !s.task.is_finished(),
        "HTTP should still be draining the slow request"
    );
    let pending = q
        .units
        .iter()
        .find(|(st, _)| st == "pending")
        .map_or(0, |(_, n)| *n);
    assert!(pending >= 1, "{q:?}");
    // Pending, not leased: another node claims it now, long before the lease would expire.
    let (job, unit) = s
        .store
        .claim_unit("other-node", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a released unit is claimable at once");
    assert!(!unit.done);
    let units = s.store.units(&job.id).await.unwrap();
    assert!(units.iter().any(|u| !u.done));
    // The abandoned unit's `.part` files are gone.
    let parts = walk(&s.output)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "part"))
        .count();
    assert_eq!(parts, 0);
    slow.abort();
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A server on a [`Flaky`] store.
struct FlakyServer {
    root: String,
    base: String,
    store: Arc<Flaky>,
    output: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _db: TestDatabase,
    _dir: tempfile::TempDir,
}

impl FlakyServer {
    async fn start(adjust: impl FnOnce(&mut ServerConfig)) -> FlakyServer {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDatabase::new(dir.path());
        let inner = fhir_bulk_store::open(db.database()).await.unwrap();
        let store = Arc::new(Flaky {
            inner,
            ping_fails: AtomicBool::new(false),
            chunk_delay_ms: AtomicU64::new(0),
            search_delay_ms: AtomicU64::new(0),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let output = dir.path().join("files");
        let mut config = ServerConfig::new(format!("http://{addr}"), &output);
        config.purge_interval = Duration::from_millis(200);
        adjust(&mut config);
        let (tx, rx) = oneshot::channel::<()>();
        let dyn_store: Arc<dyn Store> = store.clone();
        let task = tokio::spawn(async move {
            fhir_bulk_server::serve(listener, dyn_store, config, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        FlakyServer {
            root: format!("http://{addr}"),
            base: format!("http://{addr}/fhir"),
            store,
            output,
            stop: Some(tx),
            task,
            _db: db,
            _dir: dir,
        }
    }
}

/// A store that fails its ping or slows down on demand; everything else is the real store.
struct Flaky {
    inner: Arc<dyn Store>,
    ping_fails: AtomicBool,
    chunk_delay_ms: AtomicU64,
    search_delay_ms: AtomicU64,
}

#[async_trait]
impl Store for Flaky {
    async fn write(&self, tenant: &str, writes: Vec<Write>) -> Result<Vec<WriteResult>> {
        self.inner.write(tenant, writes).await
    }
    async fn write_stream(
        &self,
        tenant: &str,
        batches: BoxStream<'static, Result<Vec<Write>>>,
    ) -> Result<WriteSummary> {
        self.inner.write_stream(tenant, batches).await
    }
    async fn read(
        &self,
        tenant: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>> {
        self.inner.read(tenant, resource_type, id).await
    }
    async fn search(&self, tenant: &str, query: SearchQuery) -> Result<SearchPage> {
        let delay = self.search_delay_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        self.inner.search(tenant, query).await
    }
    async fn type_counts(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
        self.inner.type_counts(tenant).await
    }
    async fn group_members(
        &self,
        tenant: &str,
        group_id: &str,
    ) -> Result<Option<Vec<(String, String)>>> {
        self.inner.group_members(tenant, group_id).await
    }
    fn export(
        &self,
        scan: ExportScan,
        chunk_bytes: usize,
    ) -> BoxStream<'static, Result<ExportChunk>> {
        let delay = Duration::from_millis(self.chunk_delay_ms.load(Ordering::SeqCst));
        self.inner
            .export(scan, chunk_bytes)
            .then(move |c| async move {
                tokio::time::sleep(delay).await;
                c
            })
            .boxed()
    }
    fn export_deleted(
        &self,
        scan: ExportScan,
    ) -> BoxStream<'static, Result<Vec<(String, String)>>> {
        self.inner.export_deleted(scan)
    }
    fn export_organized(
        &self,
        set: ExportSet,
        chunk_bytes: usize,
    ) -> BoxStream<'static, Result<Vec<OrganizedRow>>> {
        self.inner.export_organized(set, chunk_bytes)
    }
    async fn export_lookup(
        &self,
        set: ExportSet,
        refs: Vec<(String, String)>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.inner.export_lookup(set, refs).await
    }
    async fn create_job(&self, job: NewJob) -> Result<Job> {
        self.inner.create_job(job).await
    }
    async fn job(&self, tenant: &str, id: &str) -> Result<Option<Job>> {
        self.inner.job(tenant, id).await
    }
    async fn units(&self, job_id: &str) -> Result<Vec<Unit>> {
        self.inner.units(job_id).await
    }
    async fn files(&self, job_id: &str) -> Result<Vec<JobFile>> {
        self.inner.files(job_id).await
    }
    async fn active_jobs(&self, tenant: &str, client_id: Option<&str>) -> Result<u64> {
        self.inner.active_jobs(tenant, client_id).await
    }
    async fn tenant_active_jobs(&self, tenant: &str) -> Result<u64> {
        self.inner.tenant_active_jobs(tenant).await
    }
    async fn claim_unit(&self, node: &str, lease: Duration) -> Result<Option<(Job, Unit)>> {
        self.inner.claim_unit(node, lease).await
    }
    async fn heartbeat(
        &self,
        job_id: &str,
        seq: i64,
        node: &str,
        lease: Duration,
        written: u64,
    ) -> Result<bool> {
        self.inner
            .heartbeat(job_id, seq, node, lease, written)
            .await
    }
    async fn complete_unit(
        &self,
        job_id: &str,
        seq: i64,
        node: &str,
        files: Vec<JobFile>,
    ) -> Result<bool> {
        self.inner.complete_unit(job_id, seq, node, files).await
    }
    async fn release_unit(&self, job_id: &str, seq: i64, node: &str) -> Result<()> {
        self.inner.release_unit(job_id, seq, node).await
    }
    async fn fail_job(&self, job_id: &str, reason: &str) -> Result<()> {
        self.inner.fail_job(job_id, reason).await
    }
    async fn cancel_job(&self, tenant: &str, id: &str) -> Result<bool> {
        self.inner.cancel_job(tenant, id).await
    }
    async fn purgeable_jobs(&self, now: Instant) -> Result<Vec<String>> {
        self.inner.purgeable_jobs(now).await
    }
    async fn delete_job(&self, job_id: &str) -> Result<()> {
        self.inner.delete_job(job_id).await
    }
    async fn prune_versions(&self) -> Result<u64> {
        self.inner.prune_versions().await
    }
    async fn queue_counts(&self) -> Result<QueueCounts> {
        self.inner.queue_counts().await
    }
    async fn ping(&self) -> Result<()> {
        if self.ping_fails.load(Ordering::SeqCst) {
            // What a real driver error may carry: it must never reach a client.
            return Err(StoreError::Database(
                "cannot connect to postgres://bulk:hunter2@db.internal:5432/bulk".into(),
            ));
        }
        self.inner.ping().await
    }
    async fn create_client(&self, client: NewClient) -> Result<Client> {
        self.inner.create_client(client).await
    }
    async fn client(&self, tenant: &str, id: &str) -> Result<Option<Client>> {
        self.inner.client(tenant, id).await
    }
    async fn clients(&self, tenant: &str) -> Result<Vec<Client>> {
        self.inner.clients(tenant).await
    }
    async fn client_count(&self) -> Result<u64> {
        self.inner.client_count().await
    }
    async fn update_client_credential(
        &self,
        tenant: &str,
        id: &str,
        credential: Credential,
    ) -> Result<Option<Client>> {
        self.inner
            .update_client_credential(tenant, id, credential)
            .await
    }
    async fn delete_client(&self, tenant: &str, id: &str) -> Result<bool> {
        self.inner.delete_client(tenant, id).await
    }
    async fn record_jti(
        &self,
        tenant: &str,
        client_id: &str,
        jti: &str,
        expires_at: Instant,
    ) -> Result<bool> {
        self.inner
            .record_jti(tenant, client_id, jti, expires_at)
            .await
    }
    async fn purge_jtis(&self, now: Instant) -> Result<u64> {
        self.inner.purge_jtis(now).await
    }
    async fn server_secret(&self, tenant: &str, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>> {
        self.inner.server_secret(tenant, name, candidate).await
    }
    async fn create_tenant(&self, tenant: NewTenant) -> Result<Tenant> {
        self.inner.create_tenant(tenant).await
    }
    async fn tenant(&self, id: &str) -> Result<Option<Tenant>> {
        self.inner.tenant(id).await
    }
    async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.inner.tenants().await
    }
    async fn delete_tenant(&self, id: &str) -> Result<bool> {
        self.inner.delete_tenant(id).await
    }
}
