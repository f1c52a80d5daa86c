//! The fhir-bulk store: the [`Store`] trait and its backends.
//!
//! The store keeps resources as the JSON bytes we serialised at write time (with
//! `meta.versionId` and `meta.lastUpdated` set), plus the few columns export needs: the
//! Patient-compartment index, Group membership, tombstones, superseded versions still needed
//! by a running export's snapshot, and the export jobs with their leased units and files.
//!
//! Only this crate knows SQL (see `ARCHITECTURE.md`). The trait is backend-neutral: no
//! SQLite types or assumptions leak through it, so the PostgreSQL backend implements the
//! same calls. Every call is async; the SQLite backend runs its blocking work on tokio's
//! blocking pool.
//!
//! # Layout
//! - [`resource`]: writes and stored resources.
//! - [`search`]: the small REST search (Patient/Group by `_id`, `identifier`, `name`).
//! - [`export`]: what an export unit reads ([`ExportScan`]) and the chunks it gets back.
//! - [`job`]: export jobs, units, leases and files.
//! - [`client`]: registered SMART Backend Services clients.
//! - [`tenant`]: the tenants of a multi-tenant server and their limits.
//! - [`sqlite`]: the embedded default backend.
//! - [`postgres`]: the backend for several nodes sharing one database.
//! - [`open`]: picks the backend from a `--database` value.

pub mod client;
pub mod error;
pub mod export;
pub mod job;
pub mod open;
pub mod postgres;
pub mod resource;
pub mod search;
pub mod sqlite;
pub mod tenant;

pub use client::{Client, Credential, NewClient};
pub use error::StoreError;
pub use export::{ExportChunk, ExportScan, ExportSet, IdRange, OrganizedRow, PatientScope};
pub use job::{FileKind, Job, JobFile, JobStatus, NewJob, NewUnit, QueueCounts, Unit, UnitKind};
pub use open::open;
pub use resource::{StoredResource, Write, WriteResult, WriteSummary};
pub use search::{SearchPage, SearchQuery};
pub use tenant::{NewTenant, Tenant};

use async_trait::async_trait;
use fhir_bulk_spec::instant::Instant;
use futures::stream::BoxStream;
use std::time::Duration;

/// The tenant of single-tenant installs, served at the plain `/fhir` base. It always exists.
pub const DEFAULT_TENANT: &str = "default";

/// Result of store calls.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The persistence boundary of the server. Implemented by [`sqlite::SqliteStore`] and, for
/// scale-out, [`postgres::PgStore`]. Every method takes the tenant: nothing crosses tenants.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // ---- resources ----

    /// Applies all writes atomically (one transaction) and returns one result per write.
    async fn write(&self, tenant: &str, writes: Vec<Write>) -> Result<Vec<WriteResult>>;

    /// Applies a stream of batches in ONE transaction: all or nothing. An `Err` item from the
    /// stream rolls everything back and is returned. Memory stays bounded by one batch, so a
    /// file of millions of lines loads atomically.
    async fn write_stream(
        &self,
        tenant: &str,
        batches: BoxStream<'static, Result<Vec<Write>>>,
    ) -> Result<WriteSummary>;

    /// The latest version of a resource, or its tombstone.
    async fn read(
        &self,
        tenant: &str,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<StoredResource>>;

    /// Searches live resources of one type.
    async fn search(&self, tenant: &str, query: SearchQuery) -> Result<SearchPage>;

    /// Live resources per type (types with none are left out), sorted by type.
    async fn type_counts(&self, tenant: &str) -> Result<Vec<(String, u64)>>;

    /// Active members of a Group as `(member type, member id)`; `None` if there is no such
    /// live Group.
    async fn group_members(
        &self,
        tenant: &str,
        group_id: &str,
    ) -> Result<Option<Vec<(String, String)>>>;

    // ---- export ----

    /// Streams the NDJSON of one export scan in chunks of whole lines (each about `chunk_bytes`).
    /// The stream is lazy and bounded: memory does not grow with the export.
    fn export(
        &self,
        scan: ExportScan,
        chunk_bytes: usize,
    ) -> BoxStream<'static, Result<ExportChunk>>;

    /// Streams the tombstones of a scan (deleted in `(since, until]`) as `(type, id)` lists.
    fn export_deleted(&self, scan: ExportScan)
    -> BoxStream<'static, Result<Vec<(String, String)>>>;

    /// Streams the resources of `set` that are in its patients' compartments, grouped by
    /// patient (ascending id), each patient's own Patient resource first: organized output
    /// (O2). A resource in several compartments comes once per patient. Chunks hold about
    /// `chunk_bytes` of JSON; only the rows of one patient are ever sorted.
    fn export_organized(
        &self,
        set: ExportSet,
        chunk_bytes: usize,
    ) -> BoxStream<'static, Result<Vec<OrganizedRow>>>;

    /// For each `(type, id)` of `refs`, the JSON an export of `set` returns for it (its
    /// version at `until`, if modified in the window, in scope and of one of the set's
    /// types), else `None`. One indexed lookup per reference.
    async fn export_lookup(
        &self,
        set: ExportSet,
        refs: Vec<(String, String)>,
    ) -> Result<Vec<Option<Vec<u8>>>>;

    // ---- jobs ----

    /// Creates a job and its units. The store fixes `transactionTime` under its writer lock, so
    /// every write committed before has a smaller timestamp and every later one a larger.
    async fn create_job(&self, job: NewJob) -> Result<Job>;

    /// A job of a tenant (any status; the caller decides what a cancelled job answers).
    async fn job(&self, tenant: &str, id: &str) -> Result<Option<Job>>;

    /// The units of a job, by `seq`.
    async fn units(&self, job_id: &str) -> Result<Vec<Unit>>;

    /// The files committed so far for a job, by name.
    async fn files(&self, job_id: &str) -> Result<Vec<JobFile>>;

    /// Jobs of a client that are not finished (queued or running), for the concurrency limit.
    async fn active_jobs(&self, tenant: &str, client_id: Option<&str>) -> Result<u64>;

    /// Jobs of all clients of a tenant that are not finished, for the tenant's limit. Counted
    /// in the store, so the limit holds across nodes.
    async fn tenant_active_jobs(&self, tenant: &str) -> Result<u64>;

    /// Claims the next unit whose job is running and whose unit is pending or whose lease
    /// expired. The lease lasts `lease`; the owner renews it with [`Store::heartbeat`].
    async fn claim_unit(&self, node: &str, lease: Duration) -> Result<Option<(Job, Unit)>>;

    /// Renews a lease and records progress. `false` if the lease is no longer ours (expired
    /// and taken, or the job was cancelled): the worker must stop and discard its output.
    async fn heartbeat(
        &self,
        job_id: &str,
        seq: i64,
        node: &str,
        lease: Duration,
        written: u64,
    ) -> Result<bool>;

    /// Completes a unit: its files and count commit in the same transaction as its status,
    /// and the job completes with its last unit. `false` if the lease was lost, in which case
    /// nothing is written and the caller deletes its files.
    async fn complete_unit(
        &self,
        job_id: &str,
        seq: i64,
        node: &str,
        files: Vec<JobFile>,
    ) -> Result<bool>;

    /// Gives a leased unit back (graceful shutdown), so another worker takes it at once.
    async fn release_unit(&self, job_id: &str, seq: i64, node: &str) -> Result<()>;

    /// Marks a job failed with a reason shown to the client.
    async fn fail_job(&self, job_id: &str, reason: &str) -> Result<()>;

    /// Marks a job cancelled (DELETE, D1). `false` if there was no such job for the tenant.
    async fn cancel_job(&self, tenant: &str, id: &str) -> Result<bool>;

    /// Jobs to purge: expired at `now`, or cancelled.
    async fn purgeable_jobs(&self, now: Instant) -> Result<Vec<String>>;

    /// Deletes a job's rows (after its files were removed from the sink).
    async fn delete_job(&self, job_id: &str) -> Result<()>;

    /// Drops superseded versions that no unfinished job's snapshot can still need.
    async fn prune_versions(&self) -> Result<u64>;

    /// Jobs and units by status, across tenants (metrics; the queue is shared by all nodes,
    /// so every node reports the same numbers).
    async fn queue_counts(&self) -> Result<QueueCounts>;

    /// Checks that the database answers (readiness probe).
    async fn ping(&self) -> Result<()>;

    // ---- authorization ----

    /// Registers a client. [`StoreError::Invalid`] if the tenant already has one with that id.
    async fn create_client(&self, client: NewClient) -> Result<Client>;

    /// A registered client.
    async fn client(&self, tenant: &str, id: &str) -> Result<Option<Client>>;

    /// The clients of a tenant, by id.
    async fn clients(&self, tenant: &str) -> Result<Vec<Client>>;

    /// Clients registered in all tenants (start-up tells when nobody can log in).
    async fn client_count(&self) -> Result<u64>;

    /// Replaces a client's credential (rotation); `None` if there is no such client.
    async fn update_client_credential(
        &self,
        tenant: &str,
        id: &str,
        credential: Credential,
    ) -> Result<Option<Client>>;

    /// Removes a client. `false` if there was none. Its jobs stay until they expire.
    async fn delete_client(&self, tenant: &str, id: &str) -> Result<bool>;

    /// Records the `jti` of a client assertion until `expires_at` (J3). `true` if it is new,
    /// `false` if it was already recorded and has not expired (a replay). Atomic across
    /// nodes: of two concurrent calls with the same jti exactly one gets `true`.
    async fn record_jti(
        &self,
        tenant: &str,
        client_id: &str,
        jti: &str,
        expires_at: Instant,
    ) -> Result<bool>;

    /// Forgets jtis that expired before `now`; returns how many.
    async fn purge_jtis(&self, now: Instant) -> Result<u64>;

    /// The server secret `name` of a tenant, created from `candidate` if it does not exist
    /// yet. Every caller (every node) gets the same value: the first one stored wins.
    async fn server_secret(&self, tenant: &str, name: &str, candidate: Vec<u8>) -> Result<Vec<u8>>;

    // ---- tenants ----

    /// Adds a tenant. [`StoreError::Invalid`] if it exists (the default tenant always does).
    async fn create_tenant(&self, tenant: NewTenant) -> Result<Tenant>;

    /// A tenant; the default tenant is always there.
    async fn tenant(&self, id: &str) -> Result<Option<Tenant>>;

    /// All tenants, by id (the default tenant included).
    async fn tenants(&self) -> Result<Vec<Tenant>>;

    /// Removes a tenant with everything it holds: resources, Groups, clients, secrets and
    /// the replay cache are deleted, its jobs are marked cancelled (servers purge their
    /// files). `false` if there was no such tenant. [`StoreError::Invalid`] for the default
    /// tenant, which cannot be removed.
    async fn delete_tenant(&self, id: &str) -> Result<bool>;
}
