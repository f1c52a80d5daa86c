//! Shared state, the router, and `serve`.
//!
//! The router is the API map (house rule 8): one route per line, in the order of the spec.
//! Every FHIR base has the same routes: `/fhir`, and with tenants on `/{tenant}/fhir`, which
//! [`tenant::route`] maps onto them before routing.

use crate::auth::{self, Auth};
use crate::config::ServerConfig;
use crate::engine::Engine;
use crate::error::ApiError;
use crate::sink::LocalSink;
use crate::tenant::{self, RateLimiter};
use crate::{files, kickoff, metadata, rest, status};
use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use fhir_bulk_store::Store;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::Layer;

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Configuration.
    pub config: Arc<ServerConfig>,
    /// Export files.
    pub sink: LocalSink,
    /// Wakes idle export workers when a job is created.
    pub wake: Arc<Notify>,
    /// JWKS cache and access token keys (SMART Backend Services).
    pub auth: Arc<Auth>,
    /// The tenants' request rates (per node; see [`tenant`]).
    pub limiter: Arc<RateLimiter>,
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
        .method_not_allowed_fallback(method_not_allowed);
    let bases = Router::new()
        .nest("/fhir", fhir)
        .fallback(not_found)
        .with_state(state.clone());
    // Tenants are mapped onto `/fhir` before routing, so the gate wraps the whole router.
    let gated = from_fn_with_state(state, tenant::route).layer(bases);
    Router::new()
        .fallback_service(gated)
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
    let sink = LocalSink::new(&config.output_dir);
    sink.check().await?;
    let auth = Arc::new(Auth::new(&config).map_err(std::io::Error::other)?);
    let engine = Engine::start(Arc::clone(&store), sink.clone(), Arc::clone(&config));
    let state = AppState {
        store,
        config,
        sink,
        wake: engine.waker(),
        auth,
        limiter: Arc::new(RateLimiter::default()),
    };
    let app = router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    engine.shutdown(Duration::from_secs(10)).await;
    result
}
