//! Pure types and rules of the HL7 FHIR Bulk Data Access IG and SMART Backend Services.
//!
//! Both sides of fhir-bulk share this crate: the server parses kick-off requests and writes
//! manifests with it, the client reads manifests and status headers with it. It does no I/O
//! and knows nothing of HTTP libraries, async runtimes or SQL (see `ARCHITECTURE.md`), so
//! every rule here is unit-tested directly against the numbered items of
//! `shared/spec/bulk-data-checklist.md` (K*, P*, M*, T*, …).
//!
//! # Layout
//! - [`resource_type`]: the 145 R4 resource types (generated from the official definitions).
//! - [`compartment`]: which patients a resource belongs to (R4 Patient CompartmentDefinition).
//! - [`id`], [`instant`]: FHIR `id` and `instant` values.
//! - [`outcome`]: `OperationOutcome`, the error body of every 4xx/5xx.
//! - [`bundle`]: splitting Bundles into resources, resolving `urn:uuid:` references.
//! - [`kickoff`]: `$export` kick-off parameters (GET query or POST `Parameters`).
//! - [`type_filter`]: `_typeFilter` parsing and matching (P8).
//! - [`elements`]: `_elements` subsetting (P5).
//! - [`manifest`]: the completion manifest, written by the server and read leniently by the client.
//! - [`progress`]: `X-Progress` and `Retry-After` as clients meet them in the wild.
//! - [`scope`]: SMART v1/v2 scopes and what they allow.
//! - [`secret`]: credentials that never print.

pub mod bundle;
pub mod compartment;
pub mod elements;
mod generated;
pub mod id;
pub mod instant;
pub mod kickoff;
pub mod manifest;
pub mod outcome;
pub mod progress;
pub mod resource_type;
pub mod scope;
pub mod secret;
pub mod type_filter;

/// The FHIR `application/fhir+json` media type.
pub const FHIR_JSON: &str = "application/fhir+json";
/// The bulk data output media type (P1).
pub const FHIR_NDJSON: &str = "application/fhir+ndjson";
