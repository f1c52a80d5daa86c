//! Status polling (§4), the manifest (§5) and cancel (§6) on the `Content-Location` URL.
//! The manifest and its pages are built in [`crate::manifest`].
//!
//! Polls of one job share store reads ([`SharedReads`]), so a burst of pollers costs a
//! couple of reads instead of two or three each. The job row an answer is based on is always
//! read after the request arrived: a job completed or deleted on any node is seen at once.
//! Only its units and files may come from a read up to [`DETAILS_MAX_AGE`] old, and only
//! one made after the job was seen in the same state: progress may lag that much, a
//! completed job's manifest never does (its files are all committed before it completes).

use crate::app::AppState;
use crate::auth::Caller;
use crate::base::Base;
use crate::config::FileUrls;
use crate::error::ApiError;
use crate::manifest::{Manifests, presigned_urls, requested_page};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_bulk_spec::instant::Instant;
use fhir_bulk_spec::manifest::Manifest;
use fhir_bulk_spec::outcome::{Severity, outcome};
use fhir_bulk_store::{Job, JobFile, JobStatus, Unit};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant as Clock;

/// The job `id` as its owner may see it: 404 for unknown, cancelled (D3) and other
/// tenants' or clients' jobs alike, so a job id reveals nothing; 404 after expiry too.
pub(crate) async fn visible_job(
    state: &AppState,
    base: &Base,
    caller: &Caller,
    id: &str,
) -> Result<Job, ApiError> {
    let job = state.store.job(&base.tenant, id).await?;
    visible(job.as_ref(), caller, id).cloned()
}

/// [`visible_job`]'s rules on a job already read.
fn visible<'j>(job: Option<&'j Job>, caller: &Caller, id: &str) -> Result<&'j Job, ApiError> {
    let not_found = || {
        ApiError::NotFound(format!(
            "no export job '{id}': it never existed, was cancelled with DELETE, expired, or belongs to another client"
        ))
    };
    let job = job.ok_or_else(not_found)?;
    // A3: status and files belong to the client that started the job, not to a token.
    if job.client_id != caller.client_id
        || job.status == JobStatus::Cancelled
        || job.expires_at <= Instant::now()
    {
        return Err(not_found());
    }
    Ok(job)
}

/// A job's units and, when a poll can show them, its files.
struct Details {
    units: Vec<Unit>,
    files: Vec<JobFile>,
}

/// Which shared reads: (store, tenant, job id), plus for details whether the job was seen
/// completed. The store's address keeps two servers in one process (tests) apart.
type ReadKey = (usize, String, String, bool);

/// How old a details read may be and still answer. A running job polled more often than
/// this on one node shows progress up to this old; a completed job's details are only ever
/// read after it completed, and then do not change.
const DETAILS_MAX_AGE: Duration = Duration::from_millis(200);

static JOBS: LazyLock<SharedReads<ReadKey, Option<Job>>> =
    LazyLock::new(|| SharedReads::new(Duration::ZERO));
static DETAILS: LazyLock<SharedReads<ReadKey, Details>> =
    LazyLock::new(|| SharedReads::new(DETAILS_MAX_AGE));

fn read_key(state: &AppState, tenant: &str, id: &str, completed: bool) -> ReadKey {
    let store = Arc::as_ptr(&state.store) as *const () as usize;
    (store, tenant.to_string(), id.to_string(), completed)
}

/// The job as read by a store read that started after this call, shared with the polls of
/// the same job waiting at the same time.
async fn fresh_job(state: &AppState, tenant: &str, id: &str) -> Result<Arc<Option<Job>>, ApiError> {
    let read = || {
        let (state, tenant, id) = (state.clone(), tenant.to_string(), id.to_string());
        async move { state.store.job(&tenant, &id).await.ok() }
    };
    match JOBS.get(read_key(state, tenant, id, false), read).await {
        Some(job) => Ok(job),
        // The shared read failed: read alone, to answer with this request's own error.
        None => Ok(Arc::new(state.store.job(tenant, id).await?)),
    }
}

/// The units (and with `files`, the files) of `job`, which a fresh read found in its
/// current state; shared as described on [`DETAILS_MAX_AGE`].
async fn details(state: &AppState, job: &Job, files: bool) -> Result<Arc<Details>, ApiError> {
    let completed = job.status == JobStatus::Completed;
    let read = || {
        let (state, id) = (state.clone(), job.id.clone());
        async move { read_details(&state, &id, files).await.ok() }
    };
    match DETAILS
        .get(read_key(state, &job.tenant, &job.id, completed), read)
        .await
    {
        Some(d) => Ok(d),
        None => Ok(Arc::new(read_details(state, &job.id, files).await?)),
    }
}

async fn read_details(state: &AppState, id: &str, with_files: bool) -> Result<Details, ApiError> {
    let files = async {
        if with_files {
            state.store.files(id).await
        } else {
            Ok(Vec::new())
        }
    };
    let (units, files) = tokio::try_join!(state.store.units(id), files)?;
    Ok(Details { units, files })
}

/// Reads shared among the callers of one key. A caller gets the last read if it started
/// less than `max_age` ago (starting a fresh one in the background once it is a quarter of
/// that old), else the result of a read that *started after it arrived*: it joins the read
/// that starts next, or starts one itself if none is running (as a task, so a caller that
/// goes away does not strand the others). A burst of callers thus costs at most two reads,
/// and a stalled read does not stall the callers a young result can answer.
struct SharedReads<K, T> {
    max_age: Duration,
    inner: Mutex<Flights<K, T>>,
}

struct Flights<K, T> {
    by_key: HashMap<K, Flight<T>>,
    /// When entries whose last read grew old are next dropped.
    next_sweep: Clock,
}

/// One key's reads: how many started and completed, their results, who waits.
struct Flight<T> {
    started: u64,
    completed: u64,
    running: bool,
    /// The result of read number `completed` (`None`: it failed), for its waiters.
    result: Option<Arc<T>>,
    /// The last successful read and when it started, for callers while it is young.
    last: Option<(Clock, Arc<T>)>,
    waiters: usize,
    done: Arc<Notify>,
}

impl<K, T> SharedReads<K, T>
where
    K: Eq + std::hash::Hash + Clone + Send + 'static,
    T: Send + Sync + 'static,
{
    fn new(max_age: Duration) -> Self {
        SharedReads {
            max_age,
            inner: Mutex::new(Flights {
                by_key: HashMap::new(),
                next_sweep: Clock::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Flights<K, T>> {
        // Updated only in short sections that cannot panic halfway.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A result for `key` as described on [`SharedReads`]; `read` makes the read if this
    /// caller has to start one. `None` when the read this caller waited for failed.
    async fn get<F, Fut>(&'static self, key: K, read: F) -> Option<Arc<T>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Option<T>> + Send + 'static,
    {
        let need = {
            let mut all = self.lock();
            self.sweep(&mut all);
            let f = all.by_key.entry(key.clone()).or_insert_with(|| Flight {
                started: 0,
                completed: 0,
                running: false,
                result: None,
                last: None,
                waiters: 0,
                done: Arc::new(Notify::new()),
            });
            let young = f
                .last
                .as_ref()
                .map(|(at, last)| (at.elapsed(), last))
                .filter(|(age, _)| *age < self.max_age)
                .map(|(age, last)| (age, Arc::clone(last)));
            if let Some((age, last)) = young {
                if !f.running && age >= self.max_age / 4 {
                    self.start(f, &key, &read);
                }
                return Some(last);
            }
            f.waiters += 1;
            f.started + 1
        };
        let _waiting = Waiting {
            reads: self,
            key: &key,
        };
        loop {
            let done;
            let notified;
            {
                let mut all = self.lock();
                let f = all
                    .by_key
                    .get_mut(&key)
                    .expect("an entry lives while it has waiters");
                if f.completed >= need {
                    return f.result.clone();
                }
                // Registered before the lock is released: the read's wake-up cannot be missed.
                done = Arc::clone(&f.done);
                notified = done.notified();
                if !f.running {
                    self.start(f, &key, &read);
                }
            }
            notified.await;
        }
    }

    /// Starts the next read of `key` as a task.
    fn start<F, Fut>(&'static self, f: &mut Flight<T>, key: &K, read: &F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Option<T>> + Send + 'static,
    {
        f.running = true;
        f.started += 1;
        let finish = Finish {
            reads: self,
            key: key.clone(),
            seq: f.started,
            started_at: Clock::now(),
            result: None,
        };
        let read = read();
        tokio::spawn(async move { finish.publish(read.await) });
    }

    /// Once a second, drops the entries nobody uses and whose last read is too old to answer.
    fn sweep(&self, all: &mut Flights<K, T>) {
        if Clock::now() < all.next_sweep {
            return;
        }
        all.next_sweep = Clock::now() + Duration::from_secs(1);
        let max_age = self.max_age;
        all.by_key.retain(|_, f| {
            f.waiters > 0
                || f.running
                || f.last
                    .as_ref()
                    .is_some_and(|(at, _)| at.elapsed() < max_age)
        });
    }
}

/// Deregisters a waiting caller, also when its future is dropped.
struct Waiting<'k, K, T>
where
    K: Eq + std::hash::Hash + Clone + Send + 'static,
    T: Send + Sync + 'static,
{
    reads: &'static SharedReads<K, T>,
    key: &'k K,
}

impl<K, T> Drop for Waiting<'_, K, T>
where
    K: Eq + std::hash::Hash + Clone + Send + 'static,
    T: Send + Sync + 'static,
{
    fn drop(&mut self) {
        let mut all = self.reads.lock();
        if let Some(f) = all.by_key.get_mut(self.key) {
            f.waiters -= 1;
            if f.waiters == 0 && !f.running && f.last.is_none() {
                all.by_key.remove(self.key);
            }
        }
    }
}

/// Publishes a read's result and wakes its waiters, also when the read task panicked or was
/// cancelled (then with no result).
struct Finish<K, T>
where
    K: Eq + std::hash::Hash + Clone + Send + 'static,
    T: Send + Sync + 'static,
{
    reads: &'static SharedReads<K, T>,
    key: K,
    seq: u64,
    started_at: Clock,
    result: Option<Arc<T>>,
}

impl<K, T> Finish<K, T>
where
    K: Eq + std::hash::Hash + Clone + Send + 'static,
    T: Send + Sync + 'static,
{
    fn publish(mut self, result: Option<T>) {
        self.result = result.map(Arc::new);
    }
}

impl<K, T> Drop for Finish<K, T>
where
    K: Eq + std::hash::Hash + Clone + Send + 'static,
    T: Send + Sync + 'static,
{
    fn drop(&mut self) {
        let max_age = self.reads.max_age;
        let mut all = self.reads.lock();
        if let Some(f) = all.by_key.get_mut(&self.key) {
            f.running = false;
            f.completed = self.seq;
            f.result = self.result.take();
            if let Some(result) = &f.result
                && !max_age.is_zero()
            {
                f.last = Some((self.started_at, Arc::clone(result)));
            }
            f.done.notify_waiters();
            if f.waiters == 0 && f.last.is_none() {
                all.by_key.remove(&self.key);
            }
        }
    }
}

/// `GET` status: 202 with `X-Progress`/`Retry-After` while running (ST3), 200 with the
/// manifest when complete (ST7), 500 with an OperationOutcome when failed (ST5). With
/// `allowPartialManifests`, a 202 carries the manifest pages ready so far and `?page=n`
/// selects a page (ST4, M8).
pub async fn poll(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let job = fresh_job(&state, &base.tenant, &id).await?;
    let job = visible(job.as_ref().as_ref(), &caller, &id)?;
    let page = requested_page(query.as_deref())?;
    // M3: presigned URLs need no token; ours need it whenever auth is on.
    let presigned = state.config.file_urls == FileUrls::Presigned;
    let manifests = Manifests::new(&base, job, state.config.auth_enabled && !presigned)?;
    match job.status {
        JobStatus::Running => {
            // Only a paged job shows files before it completes.
            let details = details(&state, job, manifests.paged()).await?;
            let (units, files) = (&details.units, &details.files);
            let manifests = if presigned {
                manifests.with_signed_urls(presigned_urls(&state, job, files).await?)
            } else {
                manifests
            };
            let (progress, retry_after) = progress(job, units, Instant::now());
            let mut resp = match manifests.page(units, files, page, false)? {
                Some(partial) => json_response(StatusCode::ACCEPTED, &partial)?,
                None => StatusCode::ACCEPTED.into_response(),
            };
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&progress) {
                h.insert("x-progress", v);
            }
            h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            Ok(resp)
        }
        JobStatus::Failed => Err(ApiError::JobFailed(format!(
            "export job {id} failed: {}",
            job.error.as_deref().unwrap_or("unknown reason")
        ))),
        JobStatus::Completed => {
            let details = details(&state, job, true).await?;
            let (units, files) = (&details.units, &details.files);
            let manifests = if presigned {
                manifests.with_signed_urls(presigned_urls(&state, job, files).await?)
            } else {
                manifests
            };
            let manifest = manifests
                .page(units, files, page, true)?
                .ok_or_else(|| ApiError::Internal("a completed job has no manifest".into()))?;
            let mut resp = json_response(StatusCode::OK, &manifest)?;
            let h = resp.headers_mut();
            let expires = httpdate::fmt_http_date(job.expires_at.to_offset().into());
            if let Ok(v) = HeaderValue::from_str(&expires) {
                h.insert(header::EXPIRES, v);
            }
            Ok(resp)
        }
        JobStatus::Cancelled => unreachable!("visible_job hides cancelled jobs"),
    }
}

/// `DELETE` status: cancels a running job or releases a finished one (D1, D2); files are
/// purged by the engine and later polls answer 404 (D3).
pub async fn cancel(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = visible_job(&state, &base, &caller, &id).await?;
    if !state.store.cancel_job(&base.tenant, &job.id).await? {
        return Err(ApiError::NotFound(format!("no export job '{id}'")));
    }
    tracing::info!(job = %id, "export job deleted by client");
    let body = outcome(
        Severity::Information,
        "informational",
        &format!("export job {id} deleted; its files will be removed"),
    );
    let mut resp = (StatusCode::ACCEPTED, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fhir_bulk_spec::FHIR_JSON),
    );
    Ok(resp)
}

/// `X-Progress` text (under 100 characters, ST3) and `Retry-After` seconds from the rate
/// so far: about a fifth of the time left, between 1 and 120 seconds.
pub(crate) fn progress(job: &Job, units: &[Unit], now: Instant) -> (String, u64) {
    let written: u64 = units.iter().map(|u| u.written).sum();
    let estimate: u64 = units.iter().map(|u| u.estimate).sum::<u64>().max(written);
    let done = units.iter().filter(|u| u.done).count();
    let pct = (written * 100).checked_div(estimate).unwrap_or(0).min(99);
    let text = format!(
        "in-progress: {pct}% ({} of ~{} resources, {done}/{} units)",
        group_digits(written),
        group_digits(estimate),
        units.len()
    );
    let elapsed = ((now.0 - job.created_at.0).max(0) as f64) / 1e6;
    let retry = if written == 0 || elapsed <= 0.0 {
        2
    } else {
        let rate = written as f64 / elapsed;
        let left = (estimate - written) as f64 / rate;
        (left / 5.0).ceil() as u64
    };
    (text, retry.clamp(1, 120))
}

fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A manifest (or manifest page) as `application/json` (ST4, ST7: plain JSON, not FHIR).
fn json_response(status: StatusCode, manifest: &Manifest) -> Result<Response, ApiError> {
    let body = serde_json::to_string(manifest).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    fn key(id: &str) -> ReadKey {
        (0, "t".into(), id.into(), false)
    }

    /// A burst of callers shares reads, and each sees a value written before it called.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shared_reads_are_fresh_and_few() {
        static READS: LazyLock<SharedReads<ReadKey, u64>> =
            LazyLock::new(|| SharedReads::new(Duration::ZERO));
        static VALUE: AtomicU64 = AtomicU64::new(0);
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let read = || async {
            COUNT.fetch_add(1, Ordering::SeqCst);
            let v = VALUE.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some(v)
        };
        let callers: Vec<_> = (0..200)
            .map(|i| {
                tokio::spawn(async move {
                    if i == 100 {
                        // Arrives while the first read runs, after a change it must see.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        VALUE.store(7, Ordering::SeqCst);
                        return *READS.get(key("a"), read).await.unwrap() == 7;
                    }
                    READS.get(key("a"), read).await.is_some()
                })
            })
            .collect();
        for c in callers {
            assert!(c.await.unwrap());
        }
        let reads = COUNT.load(Ordering::SeqCst);
        assert!((1..=3).contains(&reads), "{reads} reads");
        // Nothing is kept once nobody waits: the next caller reads again.
        assert!(READS.lock().by_key.is_empty());
        VALUE.store(8, Ordering::SeqCst);
        assert_eq!(*READS.get(key("a"), read).await.unwrap(), 8);
        assert_eq!(COUNT.load(Ordering::SeqCst), reads + 1);
    }

    /// A caller that goes away does not strand the others, and a failed read is `None`.
    #[tokio::test]
    async fn a_dropped_caller_does_not_strand_the_others() {
        static READS: LazyLock<SharedReads<ReadKey, u64>> =
            LazyLock::new(|| SharedReads::new(Duration::ZERO));
        let slow = || async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            Some(1)
        };
        let leader = tokio::spawn(READS.get(key("b"), slow));
        tokio::time::sleep(Duration::from_millis(5)).await;
        let follower = tokio::spawn(READS.get(key("b"), slow));
        leader.abort();
        assert_eq!(follower.await.unwrap().as_deref(), Some(&1));
        assert!(READS.get(key("c"), || async { None }).await.is_none());
        assert!(READS.lock().by_key.is_empty());
    }

    /// A young read answers at once (and is refreshed in the background once a quarter of
    /// its age limit old); an old one is never served.
    #[tokio::test]
    async fn young_reads_answer_old_ones_do_not() {
        static READS: LazyLock<SharedReads<ReadKey, u64>> =
            LazyLock::new(|| SharedReads::new(Duration::from_secs(2)));
        static VALUE: AtomicU64 = AtomicU64::new(1);
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let read = || async {
            COUNT.fetch_add(1, Ordering::SeqCst);
            let v = VALUE.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(5)).await;
            Some(v)
        };
        let get = || async { *READS.get(key("d"), read).await.unwrap() };
        assert_eq!(get().await, 1);
        VALUE.store(2, Ordering::SeqCst);
        // Young: served, and not refreshed yet.
        assert_eq!(get().await, 1);
        assert_eq!(COUNT.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(600)).await;
        // Old enough to refresh: still served, while a new read runs.
        assert_eq!(get().await, 1);
        let refreshed = async {
            while get().await != 2 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), refreshed)
            .await
            .expect("the background read lands");
        assert_eq!(COUNT.load(Ordering::SeqCst), 2);
        // Too old: the next caller waits for a new read.
        VALUE.store(3, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(get().await, 3);
        // An entry nobody uses and too old to answer goes at the next sweep.
        tokio::time::sleep(Duration::from_millis(2100)).await;
        let mut all = READS.lock();
        all.next_sweep = Clock::now();
        READS.sweep(&mut all);
        assert!(all.by_key.is_empty());
    }

    #[test]
    fn digits() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(38473), "38,473");
        assert_eq!(group_digits(1234567), "1,234,567");
    }
}
