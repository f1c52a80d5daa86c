//! Integration tests of the fhir-bulk server: one binary, one module per feature. Every test
//! starts a real server on a free loopback port and talks HTTP to it.

mod auth;
mod auth_support;
mod export;
mod harness;
mod ingest;
mod kickoff;
mod metadata;
mod ops;
mod organize;
mod parameters;
mod rest;
mod s3;
mod tenants;
