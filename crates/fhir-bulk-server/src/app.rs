//! Shared state, the router, and `serve`.
//!
//! The router is the API map (house rule 8): one route per line, in the order of the spec.
//! Every FHIR base has the same routes: `/fhir`, and with tenants on `/{tenant}/fhir`, which
//! [`tenant::route`] maps onto them before routing.

use crate::auth::{self, Auth};
use crate::config::ServerConfig;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::metrics::{self, Metrics};
use crate::sink::{self, Sink};
use crate::tenant::{self, RateLimiter};
use crate::{files, health, kickoff, metadata, rest, status};
use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post};
use fhir_bulk_store::Store;
use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::Layer;

/// How long stopping workers may take to give their leases back.
const ENGINE_GRACE: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish after a shutdown signal (a slow download
/// is cut; clients resume it with `Range`).
const DRAIN_GRACE: Duration = Duration::from_secs(15);

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Configuration.
    pub config: Arc<ServerConfig>,
    /// Export files.
    pub sink: Arc<dyn Sink>,
    /// Wakes idle export workers when a job is created.
    pub wake: Arc<Notify>,
    /// JWKS cache and access token keys (SMART Backend Services).
    pub auth: Arc<Auth>,
    /// The tenants' request rates (per node; see [`tenant`]).
    pub limiter: Arc<RateLimiter>,
    /// This server's metrics (`/metrics`; shared with the engine).
    pub metrics: Arc<Metrics>,
}

/// The HTTP API.
pub fn router(state: AppState) -> Router {
    let fhir = Router::new()
        // Discovery.
        .route("/metadata", get(metadata::capability_statement))
        .route(
            "/.well-known/smart-configuration",
            get(auth::smart::configuration),
        )
        // SMART Backend Services token endpoint (§15) and the client admin API.
        .route("/auth/token", post(auth::token::token))
        .route(
            "/admin/clients",
            get(auth::admin::list).post(auth::admin::add),
        )
        .route(
            "/admin/clients/{id}",
            get(auth::admin::get).delete(auth::admin::remove),
        )
        .route("/admin/clients/{id}/rotate", post(auth::admin::rotate))
        // Bulk data kick-off (K1, K2), status (ST*), cancel (D*), files (F*).
        .route("/$export", get(kickoff::system).post(kickoff::system))
        .route(
            "/Patient/$export",
            get(kickoff::patient).post(kickoff::patient),
        )
        .route(
            "/Group/{id}/$export",
            get(kickoff::group).post(kickoff::group),
        )
        .route(
            "/bulk-status/{job}",
            get(status::poll).delete(status::cancel),
        )
        .route("/bulk-files/{job}/{file}", get(files::download))
        // FHIR REST around export.
        .route("/", axum::routing::post(rest::transaction))
        .route("/{type}", get(rest::search).post(rest::create))
        .route(
            "/{type}/{id}",
            get(rest::read).put(rest::update).delete(rest::delete),
        )
        .route_layer(from_fn(metrics::tag_route))
        .method_not_allowed_fallback(method_not_allowed);
    // Operations, at the root: no FHIR base, no tenant, no bearer token.
    let ops = Router::new()
        .route("/health/live", get(health::live))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(metrics::scrape))
        .route_layer(from_fn(metrics::tag_route))
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone());
    let bases = Router::new()
        .nest("/fhir", fhir)
        .fallback(not_found)
        .with_state(state.clone());
    // Tenants are mapped onto `/fhir` before routing, so the gate wraps the whole router.
    let metrics = Arc::clone(&state.metrics);
    let gated = from_fn_with_state(state, tenant::route).layer(bases);
    ops.fallback_service(gated)
        .layer(from_fn_with_state(metrics, metrics::track_http))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

async fn not_found(State(state): State<AppState>, uri: Uri) -> ApiError {
    let bases = if state.config.tenants_enabled {
        "/fhir, or /{tenant}/fhir for a tenant"
    } else {
        "/fhir"
    };
    ApiError::NotFound(format!(
        "there is nothing at {}; the FHIR base is {bases}",
        uri.path()
    ))
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not supported on {}", uri.path()))
}

/// Runs the server on a bound listener until `shutdown` resolves: HTTP and the export engine
/// share the shutdown, and draining is bounded so a stuck client cannot hold it forever.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = Arc::new(config);
    let sink = sink::open(&config).await?;
    let auth = Arc::new(Auth::new(&config).map_err(std::io::Error::other)?);
    let metrics = Arc::new(Metrics::new());
    let engine = Engine::start(
        Arc::clone(&store),
        Arc::clone(&sink),
        Arc::clone(&config),
        Arc::clone(&metrics),
    );
    let state = AppState {
        store,
        config,
        sink,
        wake: engine.waker(),
        auth,
        limiter: Arc::new(RateLimiter::default()),
        metrics,
    };
    let app = router(state);
    // On the signal, workers give their leases back while HTTP drains, at once: waiting for
    // the drain first would keep units leased behind a long download until the process is
    // killed, and then until their leases expire.
    let stop = CancellationToken::new();
    let http = axum::serve(listener, app)
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .into_future();
    tokio::pin!(http, shutdown);
    let ended = tokio::select! {
        result = &mut http => Some(result),
        () = &mut shutdown => None,
    };
    stop.cancel();
    let drained = async {
        match ended {
            Some(result) => Some(result),
            None => tokio::time::timeout(DRAIN_GRACE, &mut http).await.ok(),
        }
    };
    let ((), drained) = tokio::join!(engine.shutdown(ENGINE_GRACE), drained);
    drained.unwrap_or_else(|| {
        tracing::warn!(
            seconds = DRAIN_GRACE.as_secs(),
            "requests still running after the drain period were cut"
        );
        Ok(())
    })
}
