//! End-to-end tests of the `fhir-bulk` binary: real processes, real signals.

mod crash;
