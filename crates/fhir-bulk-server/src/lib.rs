//! The fhir-bulk server: the HTTP surface (axum) and the export engine.
//!
//! # Layout
//! - [`config`]: what `fhir-bulk serve` configures.
//! - [`app`]: shared state and the router — the API map, one route per line in spec order.
//! - [`error`]: the one mapping from errors to HTTP status + `OperationOutcome`.
//! - [`base`]: which tenant and FHIR base URL a request is for.
//! - [`tenant`]: tenants at the edge: routing `/{tenant}/fhir`, unknown tenants, rate limits.
//! - [`kickoff`], [`status`], [`files`]: the bulk data endpoints (§1–§7); [`manifest`] builds
//!   the manifest and its pages from a job's committed files.
//! - [`engine`]: the export job runner — workers claim units with leases and write files.
//! - [`sink`]: where export files live (a local directory, or an S3-compatible bucket).
//! - [`rest`]: the small FHIR REST surface around export (CRUD, search, transaction).
//! - [`metadata`]: the CapabilityStatement.
//! - [`ingest`]: loading NDJSON and Bundles from files (used by `load` and `serve --demo`).
//! - [`health`], [`metrics`]: operations at the root: `/health/live`, `/health/ready`,
//!   `/metrics` (Prometheus).
//!
//! Only this crate knows axum and HTTP status codes (see `ARCHITECTURE.md`).

pub mod app;
pub mod auth;
pub mod base;
pub mod body;
pub mod config;
pub mod engine;
pub mod error;
pub mod files;
pub mod health;
pub mod ingest;
pub mod kickoff;
pub mod manifest;
pub mod metadata;
pub mod metrics;
pub mod rest;
pub mod sink;
pub mod status;
pub mod tenant;

pub use app::{AppState, router, serve};
pub use config::ServerConfig;
