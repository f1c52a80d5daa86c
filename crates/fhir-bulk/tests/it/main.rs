//! End-to-end tests of the `fhir-bulk` binary: real processes, real signals.

mod client_e2e;
mod crash;
mod multinode;
mod support;
