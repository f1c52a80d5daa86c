//! Project automation behind `cargo xtask`, as a library so that tests elsewhere in the
//! workspace (e.g. the freshness test of `fhir-bulk-spec`'s generated tables) can call it.

pub mod codegen;
