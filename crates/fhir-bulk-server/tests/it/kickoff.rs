//! Kick-off errors and lenient handling (K3–K5, P1–P6, T5, KR2): each is the right status
//! with an OperationOutcome whose diagnostics name the problem.

use crate::harness::*;
use serde_json::json;

async fn get(s: &TestServer, path_and_query: &str) -> reqwest::Response {
    http()
        .get(s.url(path_and_query))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_errors_say_what_to_send() {
    let s = TestServer::start().await;
    let url = s.url("$export");
    let r = http()
        .get(&url)
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_outcome(r, 400, "Accept: application/fhir+json").await;
    let r = http()
        .get(&url)
        .header("Accept", "text/html")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_outcome(r, 400, "'text/html'").await;
    let r = http()
        .get(&url)
        .header("Accept", "application/fhir+json")
        .send()
        .await
        .unwrap();
    assert_outcome(r, 400, "Prefer: respond-async").await;
    // K5: Prefer is a comma list and may be repeated.
    let r = http()
        .get(&url)
        .header("Accept", "application/fhir+json")
        .header("Prefer", "handling=lenient")
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameter_errors_name_parameter_and_value() {
    let s = TestServer::start().await;
    s.load_synthea().await;
    assert_outcome(
        get(&s, "$export?_since=2020-01-01").await,
        400,
        "'2020-01-01' is not a FHIR instant",
    )
    .await;
    // `+` sent unencoded arrives as a space (P2, T5).
    assert_outcome(
        get(&s, "$export?_since=2020-01-01T00:00:00+02:00").await,
        400,
        "%2B",
    )
    .await;
    assert_outcome(
        get(&s, "$export?_until=yesterday").await,
        400,
        "'yesterday'",
    )
    .await;
    assert_outcome(
        get(&s, "$export?_type=Patient,Banana").await,
        400,
        "'Banana'",
    )
    .await;
    assert_outcome(
        get(&s, "$export?_outputFormat=text/csv").await,
        400,
        "text/csv",
    )
    .await;
    assert_outcome(get(&s, "$export?color=blue").await, 400, "'color'").await;
    // Unsupported values of optional parameters are errors under strict handling (K5, P7).
    assert_outcome(
        get(&s, "$export?includeAssociatedData=Bogus").await,
        400,
        "includeAssociatedData 'Bogus'",
    )
    .await;
    assert_outcome(
        get(&s, "$export?_elements=Observation.code.coding").await,
        400,
        "Observation.code.coding",
    )
    .await;
    assert_outcome(
        get(&s, "$export?_typeFilter=Observation%3Ffoo%3D1").await,
        400,
        "no search parameter 'foo'",
    )
    .await;
    assert_outcome(
        get(&s, "Patient/$export?_type=Practitioner").await,
        400,
        "Patient compartment",
    )
    .await;
    assert_outcome(get(&s, "Group/nope/$export").await, 404, "Group/nope").await;
    assert_outcome(
        get(&s, "$export?patient=Patient/x").await,
        400,
        "system-level",
    )
    .await;
    assert_outcome(
        get(&s, "Patient/$export?patient=Patient/x").await,
        400,
        "POST",
    )
    .await;

    let post = |path: &str, body: serde_json::Value| {
        http()
            .post(s.url(path))
            .header("Accept", "application/fhir+json")
            .header("Prefer", "respond-async")
            .header("Content-Type", "application/fhir+json")
            .body(body.to_string())
            .send()
    };
    let param = |p: &str| json!({"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": p}}]});
    assert_outcome(
        post("Patient/$export", param("Patient/nobody"))
            .await
            .unwrap(),
        400,
        "'Patient/nobody' does not exist",
    )
    .await;
    // A real patient who is not a member of the Group.
    let r = http()
        .put(s.url("Group/empty"))
        .header("Content-Type", "application/fhir+json")
        .body(
            json!({"resourceType": "Group", "id": "empty", "type": "person", "actual": true})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let pid = synthea()["Patient"].keys().next().unwrap().clone();
    assert_outcome(
        post("Group/empty/$export", param(&format!("Patient/{pid}")))
            .await
            .unwrap(),
        400,
        "not a member",
    )
    .await;
    assert_outcome(
        post("$export", json!({"resourceType": "Patient"}))
            .await
            .unwrap(),
        400,
        "Parameters",
    )
    .await;
    let r = http()
        .post(s.url("$export"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async")
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_outcome(r, 400, "not JSON").await;
}

/// K5: under `handling=lenient` unknown parameters are ignored, each with an
/// OperationOutcome in the manifest's `error` file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lenient_ignores_with_warnings() {
    let s = TestServer::start().await;
    s.load_synthea().await;
    let r = http()
        .get(s.url("$export?_type=Device,Banana&color=blue&includeAssociatedData=Bogus"))
        .header("Accept", "application/fhir+json")
        .header("Prefer", "respond-async, handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let m = wait_manifest(r.headers()["content-location"].to_str().unwrap()).await;
    let got = ids(&download_output(&m).await);
    assert_eq!(got["Device"].len(), 4);
    assert_eq!(got.len(), 1);
    let errors = m["error"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["type"], "OperationOutcome");
    let text = String::from_utf8(download(errors[0]["url"].as_str().unwrap()).await).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        3,
        "one OperationOutcome per ignored parameter: {text}"
    );
    assert!(lines.iter().all(|l| l["issue"][0]["severity"] == "warning"));
    assert!(
        text.contains("Banana") && text.contains("color") && text.contains("includeAssociatedData")
    );
}
