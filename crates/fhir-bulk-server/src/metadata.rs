//! `GET [base]/metadata`: the CapabilityStatement (CS1–CS4). It instantiates the bulk data
//! CapabilityStatement, lists the three export operations by their canonical URLs (§22),
//! and lists the resource types held with the interactions implemented.

use crate::app::AppState;
use crate::base::Base;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use fhir_bulk_spec::instant::Instant;
use serde_json::{Value, json};

/// OperationDefinition canonicals (§22).
pub const OP_EXPORT: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export";
/// Patient-level export.
pub const OP_PATIENT_EXPORT: &str =
    "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export";
/// Group-level export.
pub const OP_GROUP_EXPORT: &str =
    "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export";
/// The bulk data CapabilityStatement canonical (CS1).
pub const BULK_DATA_CS: &str = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data";

/// The CapabilityStatement.
pub async fn capability_statement(
    State(state): State<AppState>,
    base: Base,
) -> Result<Response, ApiError> {
    let held = state.store.type_counts(&base.tenant).await?;
    let mut types: Vec<String> = held.into_iter().map(|(t, _)| t).collect();
    for t in ["Group", "Patient"] {
        if !types.iter().any(|x| x == t) {
            types.push(t.to_string());
        }
    }
    types.sort();
    let resources: Vec<Value> = types.iter().map(|t| resource_entry(t)).collect();
    let mut body = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": Instant::now().to_string(),
        "kind": "instance",
        "instantiates": [BULK_DATA_CS],
        "software": {"name": "fhir-bulk", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "fhir-bulk FHIR Bulk Data server", "url": base.url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json"],
        "rest": [{
            "mode": "server",
            "documentation": "Bulk export at system, Patient and Group level (GET and POST kick-off). \
                Patient and Group exports return the resources of the R4 Patient compartment of the patients \
                (no referenced non-compartment resources). _since and _until apply to meta.lastUpdated. \
                Files are NDJSON, one type per file, rolled over by count and size; gzip on request. \
                Parameters: _outputFormat (application/fhir+ndjson, application/ndjson, ndjson), _since, _until, \
                _type, patient (POST), _typeFilter, _elements, organizeOutputBy, allowPartialManifests, \
                includeAssociatedData. organizeOutputBy=Patient (Patient and Group level only): files of blocks \
                (a Parameters header naming the patient, the Patient, then the rest of its compartment); a \
                resource in several patients' compartments is repeated in each of their blocks; blocks are \
                never split, so a file may exceed the size limit by one large block. allowPartialManifests=true: \
                while the job runs, status answers 202 with a manifest of the files ready so far, one page per \
                finished unit of work in completion order (?page=n, linked by link.next); pages never change. \
                includeAssociatedData: RelevantProvenanceResources (every Provenance whose target is a \
                non-Provenance resource the export returns), LatestProvenanceResources (for each such resource, \
                the Provenance targeting it with the latest recorded), _none (no Provenance unless _type names it); \
                with either IG value, Provenance is exported only as associated data unless _type names it. \
                Without the parameter, Provenance is exported like any type (at Patient and Group level, those \
                targeting a patient of the export).",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "operation": [{"name": "export", "definition": OP_EXPORT}],
        }]
    });
    if state.config.auth_enabled {
        body["rest"][0]["security"] = crate::auth::smart::security(&base);
    }
    let mut resp = body.to_string().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fhir_bulk_spec::FHIR_JSON),
    );
    Ok(resp)
}

fn resource_entry(t: &str) -> Value {
    let mut interactions = vec![
        json!({"code": "read"}),
        json!({"code": "create"}),
        json!({"code": "update"}),
        json!({"code": "delete"}),
    ];
    let mut entry = json!({"type": t});
    if t == "Patient" || t == "Group" {
        interactions.push(json!({"code": "search-type"}));
        let mut params = vec![
            json!({"name": "_id", "type": "token"}),
            json!({"name": "identifier", "type": "token"}),
            json!({"name": "_count", "type": "number"}),
        ];
        if t == "Group" {
            params.push(json!({"name": "name", "type": "string"}));
        }
        entry["searchParam"] = Value::Array(params);
    }
    entry["interaction"] = Value::Array(interactions);
    if t == "Patient" {
        entry["operation"] = json!([{"name": "export", "definition": OP_PATIENT_EXPORT}]);
    }
    if t == "Group" {
        entry["operation"] = json!([{"name": "export", "definition": OP_GROUP_EXPORT}]);
    }
    entry
}
