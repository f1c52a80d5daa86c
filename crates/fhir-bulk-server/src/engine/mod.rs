//! The export engine: workers that claim units of export jobs and write their files.
//!
//! Jobs are rows (house rule 11). Every worker loops: claim a unit with a lease, write its
//! files while a heartbeat task renews the lease, then commit the files together with the
//! unit's completion. A unit whose lease is lost (node killed, job cancelled) is abandoned
//! and its files deleted; another worker redoes it from scratch under a new attempt number,
//! so files of two attempts never share a name and the manifest never holds a duplicate.
//!
//! Tasks and who ends them: the workers and the purger run until the engine's `stop`
//! token is cancelled (server shutdown); a worker stopped mid-unit gives its lease back so
//! the next start (or another node) takes the unit at once.

mod associated;
mod organized;
mod params;
mod plan;
mod purge;
mod roller;
mod transform;
mod unit;

pub use params::JobParams;
pub(crate) use plan::{Plan, plan};

use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::sink::Sink;
use fhir_bulk_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Handle to the running engine.
pub struct Engine {
    wake: Arc<Notify>,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// What every worker shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub sink: Arc<dyn Sink>,
    pub config: Arc<ServerConfig>,
    pub wake: Arc<Notify>,
    pub stop: CancellationToken,
    pub metrics: Arc<Metrics>,
}

impl Engine {
    /// Starts `config.workers` workers (0 makes a node that only serves HTTP) and the purger.
    pub fn start(
        store: Arc<dyn Store>,
        sink: Arc<dyn Sink>,
        config: Arc<ServerConfig>,
        metrics: Arc<Metrics>,
    ) -> Engine {
        let wake = Arc::new(Notify::new());
        let stop = CancellationToken::new();
        let shared = Shared {
            store,
            sink,
            config: Arc::clone(&config),
            wake: Arc::clone(&wake),
            stop: stop.clone(),
            metrics,
        };
        let mut tasks = JoinSet::new();
        for n in 0..config.workers {
            tasks.spawn(worker(shared.clone(), n));
        }
        tasks.spawn(purge::purger(shared));
        Engine { wake, stop, tasks }
    }

    /// A handle that wakes idle workers (kick-off calls it after creating a job).
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Stops the workers (giving back their leases) and waits for them, at most `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop.cancel();
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }
}

async fn worker(shared: Shared, n: usize) {
    let node = shared.config.node_id.clone();
    tracing::debug!(worker = n, "export worker started");
    while !shared.stop.is_cancelled() {
        match shared.store.claim_unit(&node, shared.config.lease).await {
            Ok(Some((job, u))) => {
                tracing::info!(job = %job.id, unit = u.seq, r#type = %u.resource_type, attempt = u.attempts, "unit claimed");
                unit::run(&shared, job, u).await;
                // Other workers may be idle while this job still has units.
                shared.wake.notify_one();
            }
            Ok(None) => {
                tokio::select! {
                    _ = shared.wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shared.stop.cancelled() => {}
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "claiming an export unit failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shared.stop.cancelled() => {}
                }
            }
        }
    }
    tracing::debug!(worker = n, "export worker stopped");
}
