//! Integration tests of `fhir-bulk-synth`.
