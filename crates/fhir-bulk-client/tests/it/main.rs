//! Integration tests of `fhir-bulk-client` against mock servers on 127.0.0.1: wiremock for
//! the FHIR, token and storage endpoints, and a raw TCP server where a body must be cut off.
//! One binary, one module per feature; checklist numbers (§18 CL*, §21 V*) name what each
//! test holds the client to.

mod auth;
mod download;
mod fixture;
mod kickoff;
mod poll;
mod resume;
mod secrets;
mod vendor;
