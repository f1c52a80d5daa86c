//! The PostgreSQL backend: several server nodes share one database, one job queue, one
//! client registry and one replay cache.
//!
//! Same tables and columns as the SQLite backend (`migrations/postgres/`), the same store
//! clock (one row whose lock every write transaction takes first, so timestamps are strictly
//! increasing in commit order across nodes), and the same unit logic: units are claimed with
//! `FOR UPDATE SKIP LOCKED`, so nodes never wait on each other's claims. Bulk loads use
//! `COPY`; export scans stream through server-side cursors (portals) inside one
//! `REPEATABLE READ` transaction, so a scan sees one snapshot however long it runs.
//!
//! Connections come from a deadpool pool; TLS is not built in (run PostgreSQL on a private
//! network or through a TLS-terminating proxy).

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
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use fhir_bulk_spec::instant::Instant;
use futures::stream::BoxStream;
use std::time::Duration;
use tokio_postgres::{NoTls, Transaction};

/// Connections per node.
const POOL_SIZE: usize = 16;

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user[:password]@host[:port]/db[?options=…]`) and brings
    /// the schema up to date. Nodes starting together migrate one at a time (advisory lock).
    pub async fn connect(url: &str) -> Result<PgStore> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| {
            StoreError::Database(format!(
                "not a PostgreSQL URL ({}): {e}",
                crate::open::redacted(url)
            ))
        })?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StoreError::Database(e.to_string()))?;
        let mut conn = pool.get().await?;
        migrate::migrate(&mut conn).await?;
        Ok(PgStore { pool })
    }
}

/// Advances the store clock: strictly after the last timestamp handed out, and not before
/// the wall clock. The row lock it takes is held until the transaction ends, so it must be
/// the first write of every write transaction that stamps rows (see the module docs).
pub(super) async fn tick(tx: &Transaction<'_>) -> Result<Instant> {
    let row = tx
        .query_one(
            "UPDATE clock SET last = GREATEST(last + 1, $1) WHERE singleton = 1 RETURNING last",
            &[&Instant::now().0],
        )
        .await?;
    Ok(Instant(row.get(0)))
}

#[async_trait]
impl Store for PgStore {
    async fn write(&self, tenant: &str, writes: Vec<Write>) -> Result<Vec<WriteResult>> {
        write::write(&self.pool, tenant, writes).await
    }

    async fn write_stream(
        &self,
        tenant: &str,
        batches: BoxStream<'static, Result<Vec<Write>>>,
    ) -> Result<WriteSummary> {
        write::write_stream(&self.pool, tenant, batches).await
    }

    async fn read(
        &self,
        tenant: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>> {
        search::read(&self.pool, tenant, resource_type, id).await
    }

    async fn search(&self, tenant: &str, query: SearchQuery) -> Result<SearchPage> {
        search::search(&self.pool, tenant, query).await
    }

    async fn type_counts(&self, tenant: &str) -> Result<Vec<(String, u64)>> {
        search::type_counts(&self.pool, tenant).await
    }

    async fn group_members(
        &self,
        tenant: &str,
        group_id: &str,
    ) -> Result<Option<Vec<(String, String)>>> {
        search::group_members(&self.pool, tenant, group_id).await
    }

    fn export(
        &self,
        scan: ExportScan,
        chunk_bytes: usize,
    ) -> BoxStream<'static, Result<ExportChunk>> {
        scan::export(self.pool.clone(), scan, chunk_bytes)
    }

    fn export_deleted(
        &self,
        scan: ExportScan,
    ) -> BoxStream<'static, Result<Vec<(String, String)>>> {
        scan::export_deleted(self.pool.clone(), scan)
    }

    fn export_organized(
        &self,
        set: ExportSet,
        chunk_bytes: usize,
    ) -> BoxStream<'static, Result<Vec<OrganizedRow>>> {
        scan::export_organized(self.pool.clone(), set, chunk_bytes)
    }

    async fn export_lookup(
        &self,
        set: ExportSet,
        refs: Vec<(String, String)>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        scan::export_lookup(&self.pool, set, refs).await
    }

    async fn create_job(&self, job: NewJob) -> Result<Job> {
        jobs::create(&self.pool, job).await
    }

    async fn job(&self, tenant: &str, id: &str) -> Result<Option<Job>> {
        jobs::get(&self.pool, tenant, id).await
    }

    async fn units(&self, job_id: &str) -> Result<Vec<Unit>> {
        jobs::units(&self.pool, job_id).await
    }

    async fn files(&self, job_id: &str) -> Result<Vec<JobFile>> {
        jobs::files(&self.pool, job_id).await
    }

    async fn active_jobs(&self, tenant: &str, client_id: Option<&str>) -> Result<u64> {
        jobs::active(&self.pool, tenant, client_id).await
    }

    async fn tenant_active_jobs(&self, tenant: &str) -> Result<u64> {
        tenants::active_jobs(&self.pool, tenant).await
    }

    async fn claim_unit(&self, node: &str, lease: Duration) -> Result<Option<(Job, Unit)>> {
        jobs::claim(&self.pool, node, lease).await
    }

    async fn heartbeat(
        &self,
        job_id: &str,
        seq: i64,
        node: &str,
        lease: Duration,
        written: u64,
    ) -> Result<bool> {
        jobs::heartbeat(&self.pool, job_id, seq, node, lease, written).await
    }

    async fn complete_unit(
        &self,
        job_id: &str,
        seq: i64,
        node: &str,
        files: Vec<JobFile>,
    ) -> Result<bool> {
        jobs::complete(&self.pool, job_id, seq, node, files).await
    }

    async fn release_unit(&self, job_id: &str, seq: i64, node: &str) -> Result<()> {
        jobs::release(&self.pool, job_id, seq, node).await
    }

    async fn fail_job(&self, job_id: &str, reason: &str) -> Result<()> {
        jobs::fail(&self.pool, job_id, reason).await
    }

    async fn cancel_job(&self, tenant: &str, id: &str) -> Result<bool> {
        jobs::cancel(&self.pool, tenant, id).await
    }

    async fn purgeable_jobs(&self, now: Instant) -> Result<Vec<String>> {
        jobs::purgeable(&self.pool, now).await
    }

    async fn delete_job(&self, job_id: &str) -> Result<()> {
        jobs::delete(&self.pool, job_id).await
    }

    async fn prune_versions(&self) -> Result<u64> {
        write::prune_versions(&self.pool).await
    }

    async fn queue_counts(&self) -> Result<QueueCounts> {
        jobs::queue_counts(&self.pool).await
    }

    async fn ping(&self) -> Result<()> {
        self.pool.get().await?.simple_query("SELECT 1").await?;
        Ok(())
    }

    async fn create_client(&self, client: NewClient) -> Result<Client> {
        clients::create(&self.pool, client).await
    }

    async fn client(&self, tenant: &str, id: &str) -> Result<Option<Client>> {
        clients::get(&self.pool, tenant, id).await
    }

    async fn clients(&self, tenant: &str) -> Result<Vec<Client>> {
        clients::list(&self.pool, tenant).await
    }

    async fn client_count(&self) -> Result<u64> {
        clients::count(&self.pool).await
    }

    async fn update_client_credential(
        &self,
        tenant: &str,
        id: &str,
        credential: Credential,
    ) -> Result<Option<Client>> {
        clients::update_credential(&self.pool, tenant, id, credential).await
    }

    async fn delete_client(&self, tenant: &str, id: &str) -> Result<bool> {
        clients::delete(&self.pool, tenant, id).await
    }

    async fn record_jti(
        &self,
        tenant: &str,
        client_id: &str,
        jti: &str,
        expires_at: Instant,
    ) -> Result<bool> {
        clients::record_jti(&self.pool, tenant, client_id, jti, expires_at).await
    }

    async fn purge_jtis(&self, now: Instant) -> Result<u64> {
        clients::purge_jtis(&self.pool, now).await
    }

    async fn server_secret(&self, tenant: &str, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>> {
        clients::server_secret(&self.pool, tenant, name, candidate).await
    }

    async fn create_tenant(&self, tenant: NewTenant) -> Result<Tenant> {
        tenants::create(&self.pool, tenant).await
    }

    async fn tenant(&self, id: &str) -> Result<Option<Tenant>> {
        tenants::get(&self.pool, id).await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>> {
        tenants::list(&self.pool).await
    }

    async fn delete_tenant(&self, id: &str) -> Result<bool> {
        tenants::delete(&self.pool, id).await
    }
}
