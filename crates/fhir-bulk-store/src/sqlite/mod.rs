//! The embedded SQLite backend (the default): one database file, created on first use.
//!
//! Concurrency: SQLite has one writer at a time. All writes go through [`Pool::write`],
//! which holds the one writer connection (a `std::sync::Mutex`, because the connection is
//! used only inside blocking tasks) for a `BEGIN IMMEDIATE` transaction; `busy_timeout`
//! covers writers in other processes (`fhir-bulk load` next to `serve`). Reads use a small
//! pool of connections; in WAL mode they never block the writer nor wait for it, and each
//! read transaction sees one committed snapshot.

mod clients;
mod jobs;
mod migrate;
mod scan;
mod search;
mod tenants;
mod write;

use crate::{
    Client, Credential, ExportChunk, ExportScan, ExportSet, Job, JobFile, NewClient, NewJob,
    NewTenant, OrganizedRow, QueueCounts, Result, SearchPage, SearchQuery, Store, StoreError,
    StoredResource, Tenant, Unit, Write, WriteResult, WriteSummary,
};
use async_trait::async_trait;
use fhir_bulk_spec::instant::Instant;
use futures::StreamExt;
use futures::stream::BoxStream;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many idle reader connections are kept. Each holds its page cache and schema; more
/// than the reads that run at once ([`MAX_READS`] plus export scans) are never needed.
const MAX_IDLE_READERS: usize = 8;

/// Short reads ([`Pool::read`]: status, REST, job lookups) running at once. With 200
/// pollers each one took a blocking thread and a connection of its own, and the server's
/// memory grew with the number of concurrent requests; two cores gain nothing from more.
/// Export scans do not count: they hold their connection for the whole unit, and are
/// bounded by the workers.
const MAX_READS: usize = 16;

/// SQLite's default `wal_autocheckpoint` (pages), restored after a load's transaction.
const WAL_AUTOCHECKPOINT: i64 = 1000;

/// Page cache of every connection (negative: KiB), and of the writer during a load. The
/// load's cache holds the pages of the key and compartment indexes, which take random
/// inserts: loading 100,000 patients ran at 43,700–44,800 resources/s with 256 MiB (peak RSS
/// 0.4 GB, 53 s of its 145 s of CPU in the kernel re-reading and re-writing spilled pages),
/// at 57,300–61,600 with 1 GiB (peak RSS 1.2–1.7 GB, 24–30 s in the kernel). Allocated as
/// pages are touched, so small loads use little; 10,000 patients load as fast with either.
const CACHE_KIB: i64 = -2048;
const LOAD_CACHE_KIB: i64 = -1_048_576;

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    pool: Arc<Pool>,
}

/// Connections to one database file.
struct Pool {
    path: PathBuf,
    /// The one writer connection; locked for the length of a write transaction.
    writer: Mutex<Connection>,
    /// Idle reader connections; a reader is taken out for one blocking task and put back.
    readers: Mutex<Vec<Connection>>,
    /// Short reads ([`Pool::read`]) running at once.
    reads: Arc<tokio::sync::Semaphore>,
    /// Checkpoints after loads, off the writer (see [`Pool::request_checkpoint`]).
    checkpoints: Arc<CheckpointShared>,
    checkpoint_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// State shared with the background checkpoint thread.
#[derive(Default)]
struct CheckpointShared {
    state: Mutex<Checkpoints>,
    /// Notified when the thread stops (`running` cleared).
    idle: std::sync::Condvar,
}

#[derive(Default)]
struct Checkpoints {
    /// A checkpoint was asked for since the thread last started one.
    requested: bool,
    /// The thread is running (it clears this, under the lock, when it finds no request).
    running: bool,
    /// The last load transaction began while a checkpoint was running, so it appended to
    /// the WAL instead of restarting it.
    appended: bool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Database(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
            let mut writer = open_connection(&path)?;
            migrate::migrate(&mut writer)?;
            Ok(SqliteStore {
                pool: Arc::new(Pool {
                    path,
                    writer: Mutex::new(writer),
                    readers: Mutex::new(Vec::new()),
                    reads: Arc::new(tokio::sync::Semaphore::new(MAX_READS)),
                    checkpoints: Arc::default(),
                    checkpoint_thread: Mutex::new(None),
                }),
            })
        })
        .await?
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.pool.path
    }
}

fn open_connection(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(60))?;
    // `page_size` first: it only takes effect on a database that is still empty, before WAL
    // mode fixes the size (existing databases keep theirs). 16 KiB pages instead of 4 KiB
    // halve the B-tree work and WAL frames of a load (10,000 patients: 1.3 s less CPU) and
    // speed up export scans; caches are sized in KiB, so memory is unchanged. Readers get
    // 2 MiB of cache (the writer more during loads, see `load_blocking`): export scans read
    // each page once, and 8 MiB per reader made the server's peak memory grow with
    // concurrent readers (100,000 patients, three exports under 200 pollers: 227 MB, with
    // 2 MiB 170 MB, same speed).
    conn.execute_batch(
        "PRAGMA page_size = 16384;
         PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA mmap_size = 0;",
    )?;
    conn.pragma_update(None, "cache_size", CACHE_KIB)?;

    Ok(conn)
}

impl Pool {
    /// Runs `f` on a reader connection in a blocking task.
    async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        // Moved into the blocking task: a cancelled caller does not free the permit of a
        // read still running. `f` is short and awaits nothing, so permits always come back.
        let permit = Arc::clone(&self.reads)
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let out = pool.read_blocking(f);
            drop(permit);
            out
        })
        .await?
    }

    fn read_blocking<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.take_reader()?;
        let out = f(&conn);
        self.put_reader(conn);
        out
    }

    fn take_reader(&self) -> Result<Connection> {
        let idle = self.readers.lock().expect("reader pool poisoned").pop();
        match idle {
            Some(c) => Ok(c),
            None => open_connection(&self.path),
        }
    }

    fn put_reader(&self, conn: Connection) {
        let mut idle = self.readers.lock().expect("reader pool poisoned");
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on the writer, in a blocking task.
    /// `f` gets the transaction's timestamp from the store clock. An `Err` rolls back.
    async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, Instant) -> Result<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || pool.write_blocking(f)).await?
    }

    fn write_blocking<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, Instant) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let ts = tick(&tx)?;
        let out = f(&tx, ts)?;
        tx.commit()?;
        Ok(out)
    }

    /// Like [`Pool::write_blocking`] for a load's large transaction, but its commit does not
    /// checkpoint: copying a whole file's pages from the WAL into the database took a fifth
    /// of the writer's time, and the next file could not start meanwhile. A background
    /// thread checkpoints instead, while the next file is parsed and written. Durability is
    /// unchanged: the commit is the same, only the checkpoint moves.
    fn load_blocking<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>, Instant) -> Result<T>,
    ) -> Result<T> {
        let out = {
            let mut conn = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            self.bound_wal();
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            // A load is one transaction per file: a large page cache keeps index pages of
            // the growing B-trees in memory instead of re-reading them (allocated on use).
            // Only for the load: a server's writer that kept it would fill it with whatever
            // pages its small writes touch, and its RSS would grow with the database.
            conn.pragma_update(None, "cache_size", LOAD_CACHE_KIB)?;
            let out: Result<T> = (|| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let ts = tick(&tx)?;
                let out = f(&tx, ts)?;
                tx.commit()?;
                Ok(out)
            })();
            conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT)?;
            conn.pragma_update(None, "cache_size", CACHE_KIB)?;
            conn.execute_batch("PRAGMA shrink_memory")?;
            out?
        };
        self.request_checkpoint();
        Ok(out)
    }

    /// Keeps the WAL to about two load transactions. A transaction that begins while a
    /// checkpoint is copying appends to the WAL (it can only restart from the beginning once
    /// everything in it was copied); so every other transaction waits for the checkpoint
    /// first, and the WAL restarts. Without this a load of many files grew the WAL to the
    /// size of all of them (8 GB for 100,000 patients). Called under the writer lock.
    fn bound_wal(&self) {
        let shared = &self.checkpoints;
        let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
        if !state.running {
            state.appended = false;
        } else if !state.appended {
            state.appended = true;
        } else {
            while state.running {
                state = shared.idle.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            state.appended = false;
        }
    }

    /// Asks the checkpoint thread for a checkpoint, starting it if it is not running. The
    /// thread owns its own connection and runs PASSIVE checkpoints, which never block the
    /// writer or readers; it exits when no request is left. It holds no `Arc<Pool>`, so
    /// dropping the pool joins it (a load's process then exits with its WAL copied back).
    fn request_checkpoint(&self) {
        let mut state = self
            .checkpoints
            .state
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        state.requested = true;
        if state.running {
            return;
        }
        state.running = true;
        drop(state);
        let (path, checkpoints) = (self.path.clone(), Arc::clone(&self.checkpoints));
        let spawned = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(&path, &checkpoints));
        let mut slot = self
            .checkpoint_thread
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match spawned {
            // The previous thread, if any, has cleared `running`: it is done or about to be.
            Ok(handle) => {
                if let Some(previous) = slot.replace(handle) {
                    let _ = previous.join();
                }
            }
            Err(e) => {
                // The next commit's automatic checkpoint does the work instead.
                tracing::warn!(error = %e, "cannot start the checkpoint thread");
                self.checkpoints
                    .state
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .running = false;
                self.checkpoints.idle.notify_all();
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let handle = self
            .checkpoint_thread
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

/// The checkpoint thread: checkpoints until no request is left.
fn checkpoint_loop(path: &Path, checkpoints: &CheckpointShared) {
    let mut conn = None;
    loop {
        {
            let mut state = checkpoints.state.lock().unwrap_or_else(|p| p.into_inner());
            if !state.requested {
                state.running = false;
                checkpoints.idle.notify_all();
                return;
            }
            state.requested = false;
        }
        let result = match &conn {
            Some(c) => checkpoint(c),
            None => open_connection(path).and_then(|c| checkpoint(conn.insert(c))),
        };
        if let Err(e) = result {
            // Not fatal: the WAL is checkpointed by a later commit or when the store closes.
            tracing::warn!(error = %e, "background checkpoint failed");
        }
    }
}

fn checkpoint(conn: &Connection) -> Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}

/// Advances the store clock: strictly after the last timestamp handed out, and not before
/// the wall clock. Called under the writer lock at the start of every write transaction.
fn tick(tx: &rusqlite::Transaction<'_>) -> Result<Instant> {
    let last: i64 = tx.query_row("SELECT last FROM clock WHERE singleton = 1", [], |r| {
        r.get(0)
    })?;
    let ts = Instant::now().0.max(last + 1);
    tx.execute(
        "UPDATE clock SET last = ?1 WHERE singleton = 1",
        params![ts],
    )?;
    Ok(Instant(ts))
}

#[async_trait]
impl Store for SqliteStore {
    async fn write(&self, tenant: &str, writes: Vec<Write>) -> Result<Vec<WriteResult>> {
        let tenant = tenant.to_string();
        self.pool
            .write(move |tx, ts| {
                let mut batch = write::Batch::new(tx, &tenant, ts)?;
                let results = writes
                    .into_iter()
                    .map(|w| batch.apply(w, true))
                    .collect::<Result<Vec<_>>>()?;
                batch.finish()?;
                Ok(results)
            })
            .await
    }

    async fn write_stream(
        &self,
        tenant: &str,
        mut batches: BoxStream<'static, Result<Vec<Write>>>,
    ) -> Result<WriteSummary> {
        // The blocking writer pulls batches from a small channel that this task fills, so at
        // most a couple of batches are in memory whatever the input size.
        let (tx_batches, mut rx_batches) = tokio::sync::mpsc::channel::<Result<Vec<Write>>>(2);
        let tenant = tenant.to_string();
        let pool = Arc::clone(&self.pool);
        let writer = tokio::task::spawn_blocking(move || {
            pool.load_blocking(move |tx, ts| {
                // Writes are dropped on a thread of their own: freeing what the parser
                // allocated took the writer a tenth of its time, mostly waiting for the
                // allocator's lock that the parser holds.
                let (dropper, dropped) = std::sync::mpsc::sync_channel::<Vec<Write>>(2);
                let drop_thread = std::thread::Builder::new()
                    .name("sqlite-load-drop".into())
                    .spawn(move || dropped.into_iter().for_each(drop))
                    .ok();
                let mut batch = write::Batch::new(tx, &tenant, ts)?;
                let mut summary = WriteSummary::default();
                while let Some(item) = rx_batches.blocking_recv() {
                    let writes = item?;
                    for w in &writes {
                        summary.bytes += batch.apply_ref(w)?;
                        match summary.per_type.get_mut(w.resource_type()) {
                            Some(n) => *n += 1,
                            None => {
                                summary.per_type.insert(w.resource_type().to_string(), 1);
                            }
                        }
                    }
                    if drop_thread.is_some() {
                        let _ = dropper.send(writes);
                    }
                }
                drop(dropper);
                if let Some(t) = drop_thread {
                    let _ = t.join();
                }
                batch.finish()?;
                Ok(summary)
            })
        });
        let feeder = async move {
            while let Some(item) = batches.next().await {
                let stop = item.is_err();
                if tx_batches.send(item).await.is_err() || stop {
                    break;
                }
            }
        };
        let (result, ()) = tokio::join!(writer, feeder);
        result?
    }

    async fn read(
        &self,
        tenant: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>> {
        let (tenant, rt, id) = (
            tenant.to_string(),
            resource_type.to_string(),
            id.to_string(),
        );
        self.pool
            .read(move |c| {
                c.query_row(
                    "SELECT version, last_updated, deleted, json FROM resources
                     WHERE tenant = ?1 AND type = ?2 AND id = ?3",
                    params![tenant, rt, id],
                    |r| {
                        Ok(StoredResource {
                            resource_type: rt.clone(),
                            id: id.clone(),
                            version: r.get(0)?,
                            last_updated: Instant(r.get(1)?),
                            deleted: r.get::<_, i64>(2)? != 0,
                            json: r.get(3)?,
                        })
                    },
                )
                .optional()
                .map_err(Into::into)
            })
            .await
    }

    async fn search(&self, tenant: &str, query: SearchQuery) -> Result<SearchPage> {
        let tenant = tenant.to_string();
        self.pool
            .read(move |c| search::search(c, &tenant, &query))
            .await
    }

    async fn type_counts(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
        let tenant = tenant.to_string();
        self.pool
            .read(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT type, live FROM type_counts WHERE tenant = ?1 AND live > 0 ORDER BY type",
                )?;
                let rows = st.query_map(params![tenant], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
                rows.collect::<rusqlite::Result<Vec<_>>>().map_err(Into::into)
            })
            .await
    }

    async fn group_members(
        &self,
        tenant: &str,
        group_id: &str,
    ) -> Result<Option<Vec<(String, String)>>> {
        let (tenant, group_id) = (tenant.to_string(), group_id.to_string());
        self.pool
            .read(move |c| {
                let live: Option<i64> = c
                    .query_row(
                        "SELECT deleted FROM resources WHERE tenant = ?1 AND type = 'Group' AND id = ?2",
                        params![tenant, group_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                if live != Some(0) {
                    return Ok(None);
                }
                let mut st = c.prepare_cached(
                    "SELECT member_type, member_id FROM group_members
                     WHERE tenant = ?1 AND group_id = ?2 ORDER BY member_type, member_id",
                )?;
                let rows = st.query_map(params![tenant, group_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(Some(rows.collect::<rusqlite::Result<Vec<_>>>()?))
            })
            .await
    }

    fn export(
        &self,
        scan: ExportScan,
        chunk_bytes: usize,
    ) -> BoxStream<'static, Result<ExportChunk>> {
        scan::export(Arc::clone(&self.pool), scan, chunk_bytes)
    }

    fn export_deleted(
        &self,
        scan: ExportScan,
    ) -> BoxStream<'static, Result<Vec<(String, String)>>> {
        scan::export_deleted(Arc::clone(&self.pool), scan)
    }

    fn export_organized(
        &self,
        set: ExportSet,
        chunk_bytes: usize,
    ) -> BoxStream<'static, Result<Vec<OrganizedRow>>> {
        scan::export_organized(Arc::clone(&self.pool), set, chunk_bytes)
    }

    async fn export_lookup(
        &self,
        set: ExportSet,
        refs: Vec<(String, String)>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.pool
            .read(move |c| scan::export_lookup(c, &set, &refs))
            .await
    }

    async fn create_job(&self, job: NewJob) -> Result<Job> {
        self.pool
            .write(move |tx, ts| jobs::create(tx, job, ts))
            .await
    }

    async fn job(&self, tenant: &str, id: &str) -> Result<Option<Job>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.pool
            .read(move |c| jobs::get(c, Some(&tenant), &id))
            .await
    }

    async fn units(&self, job_id: &str) -> Result<Vec<Unit>> {
        let job_id = job_id.to_string();
        self.pool.read(move |c| jobs::units(c, &job_id)).await
    }

    async fn files(&self, job_id: &str) -> Result<Vec<JobFile>> {
        let job_id = job_id.to_string();
        self.pool.read(move |c| jobs::files(c, &job_id)).await
    }

    async fn active_jobs(&self, tenant: &str, client_id: Option<&str>) -> Result<u64> {
        let (tenant, client) = (tenant.to_string(), client_id.map(str::to_string));
        self.pool
            .read(move |c| jobs::active(c, &tenant, client.as_deref()))
            .await
    }

    async fn tenant_active_jobs(&self, tenant: &str) -> Result<u64> {
        let tenant = tenant.to_string();
        self.pool
            .read(move |c| tenants::active_jobs(c, &tenant))
            .await
    }

    async fn claim_unit(&self, node: &str, lease: Duration) -> Result<Option<(Job, Unit)>> {
        let node = node.to_string();
        self.pool
            .write(move |tx, _| jobs::claim(tx, &node, lease))
            .await
    }

    async fn heartbeat(
        &self,
        job_id: &str,
        seq: i64,
        node: &str,
        lease: Duration,
        written: u64,
    ) -> Result<bool> {
        let (job_id, node) = (job_id.to_string(), node.to_string());
        self.pool
            .write(move |tx, _| jobs::heartbeat(tx, &job_id, seq, &node, lease, written))
            .await
    }

    async fn complete_unit(
        &self,
        job_id: &str,
        seq: i64,
        node: &str,
        files: Vec<JobFile>,
    ) -> Result<bool> {
        let (job_id, node) = (job_id.to_string(), node.to_string());
        self.pool
            .write(move |tx, _| jobs::complete(tx, &job_id, seq, &node, &files))
            .await
    }

    async fn release_unit(&self, job_id: &str, seq: i64, node: &str) -> Result<()> {
        let (job_id, node) = (job_id.to_string(), node.to_string());
        self.pool
            .write(move |tx, _| jobs::release(tx, &job_id, seq, &node))
            .await
    }

    async fn fail_job(&self, job_id: &str, reason: &str) -> Result<()> {
        let (job_id, reason) = (job_id.to_string(), reason.to_string());
        self.pool
            .write(move |tx, _| jobs::fail(tx, &job_id, &reason))
            .await
    }

    async fn cancel_job(&self, tenant: &str, id: &str) -> Result<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.pool
            .write(move |tx, _| jobs::cancel(tx, &tenant, &id))
            .await
    }

    async fn purgeable_jobs(&self, now: Instant) -> Result<Vec<String>> {
        self.pool.read(move |c| jobs::purgeable(c, now)).await
    }

    async fn delete_job(&self, job_id: &str) -> Result<()> {
        let job_id = job_id.to_string();
        self.pool
            .write(move |tx, _| jobs::delete(tx, &job_id))
            .await
    }

    async fn prune_versions(&self) -> Result<u64> {
        self.pool
            .write(move |tx, _| write::prune_versions(tx))
            .await
    }

    async fn queue_counts(&self) -> Result<QueueCounts> {
        self.pool.read(jobs::queue_counts).await
    }

    async fn ping(&self) -> Result<()> {
        self.pool
            .read(|c| {
                Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                    .map(drop)?)
            })
            .await
    }

    async fn create_client(&self, client: NewClient) -> Result<Client> {
        self.pool
            .write(move |tx, ts| clients::create(tx, client, ts))
            .await
    }

    async fn client(&self, tenant: &str, id: &str) -> Result<Option<Client>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.pool.read(move |c| clients::get(c, &tenant, &id)).await
    }

    async fn clients(&self, tenant: &str) -> Result<Vec<Client>> {
        let tenant = tenant.to_string();
        self.pool.read(move |c| clients::list(c, &tenant)).await
    }

    async fn client_count(&self) -> Result<u64> {
        self.pool.read(clients::count).await
    }

    async fn update_client_credential(
        &self,
        tenant: &str,
        id: &str,
        credential: Credential,
    ) -> Result<Option<Client>> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.pool
            .write(move |tx, ts| clients::update_credential(tx, &tenant, &id, &credential, ts))
            .await
    }

    async fn delete_client(&self, tenant: &str, id: &str) -> Result<bool> {
        let (tenant, id) = (tenant.to_string(), id.to_string());
        self.pool
            .write(move |tx, _| clients::delete(tx, &tenant, &id))
            .await
    }

    async fn record_jti(
        &self,
        tenant: &str,
        client_id: &str,
        jti: &str,
        expires_at: Instant,
    ) -> Result<bool> {
        let (tenant, client_id, jti) = (tenant.to_string(), client_id.to_string(), jti.to_string());
        self.pool
            .write(move |tx, _| clients::record_jti(tx, &tenant, &client_id, &jti, expires_at))
            .await
    }

    async fn purge_jtis(&self, now: Instant) -> Result<u64> {
        self.pool
            .write(move |tx, _| clients::purge_jtis(tx, now))
            .await
    }

    async fn server_secret(&self, tenant: &str, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.pool
            .write(move |tx, ts| clients::server_secret(tx, &tenant, &name, &candidate, ts))
            .await
    }

    async fn create_tenant(&self, tenant: NewTenant) -> Result<Tenant> {
        self.pool
            .write(move |tx, ts| tenants::create(tx, tenant, ts))
            .await
    }

    async fn tenant(&self, id: &str) -> Result<Option<Tenant>> {
        let id = id.to_string();
        self.pool.read(move |c| tenants::get(c, &id)).await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        self.pool.read(tenants::list).await
    }

    async fn delete_tenant(&self, id: &str) -> Result<bool> {
        let id = id.to_string();
        self.pool.write(move |tx, _| tenants::delete(tx, &id)).await
    }
}
