//! The CapabilityStatement (CS1, CS2, §22).

use crate::harness::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_statement_declares_bulk_export() {
    let s = TestServer::start().await;
    let r = http()
        .put(s.url("Observation/o1"))
        .header("Content-Type", "application/fhir+json")
        .body(r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http().get(s.url("metadata")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/fhir+json");
    let cs: Value = r.json().await.unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    assert!(
        cs["instantiates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data")
    );
    let rest = &cs["rest"][0];
    // CS2: system export in rest.operation, Patient and Group exports on their resources, all named "export".
    let op = |ops: &Value, def: &str| {
        ops.as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "export" && o["definition"] == def)
    };
    assert!(op(
        &rest["operation"],
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
    ));
    let resource = |t: &str| {
        rest["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == t)
            .cloned()
            .unwrap()
    };
    assert!(op(
        &resource("Patient")["operation"],
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"
    ));
    assert!(op(
        &resource("Group")["operation"],
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"
    ));
    // The types held are listed.
    assert!(
        resource("Observation")["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["code"] == "read")
    );
}
