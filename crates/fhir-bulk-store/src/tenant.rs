//! Tenants of a multi-tenant server and their limits.
//!
//! Every row of the store already carries a tenant id; this is the list of ids that exist.
//! The store keeps the limits without interpreting them: the server enforces the request
//! rate per node and counts running exports here, so that limit holds across nodes.

use fhir_bulk_spec::instant::Instant;

/// A tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Tenant {
    /// Its id: the first segment of its FHIR base (`/{id}/fhir`).
    pub id: String,
    /// Running exports allowed at once in the tenant, across all nodes; `None`: no limit.
    pub max_exports: Option<u64>,
    /// Requests per second allowed per node; `None`: no limit.
    pub rate_per_second: Option<f64>,
    /// When it was added.
    pub created_at: Instant,
}

/// A tenant to add.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTenant {
    /// Its id (checked by the caller: the store does not know URL rules).
    pub id: String,
    /// See [`Tenant::max_exports`].
    pub max_exports: Option<u64>,
    /// See [`Tenant::rate_per_second`].
    pub rate_per_second: Option<f64>,
}
