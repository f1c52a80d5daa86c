//! Kick-off (§1–§3, CL3, CL7) and the end-to-end happy path.

use crate::fixture::{Fhir, export, manifest, ndjson, options, read, simple_export};
use fhir_bulk_client::{ExitClass, Level};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// CL3, KR1, CL7: headers, `_outputFormat`, files named per type, manifest and summary saved,
/// job deleted.
#[tokio::test]
async fn system_export_end_to_end() {
    let fhir = Fhir::start().await;
    let (patients, observations) = simple_export(&fhir).await;
    let dir = tempfile::tempdir().unwrap();
    let (result, _) = export(options(&fhir.base, dir.path())).await;
    let summary = result.unwrap();

    let kick = &fhir.requests_to("/fhir/$export").await[0];
    assert_eq!(kick.headers["accept"], "application/fhir+json");
    assert_eq!(kick.headers["prefer"], "respond-async");
    assert_eq!(
        kick.url.query(),
        Some("_outputFormat=application%2Ffhir%2Bndjson")
    );
    assert_eq!(
        fhir.requests_to("/status/1").await[0].headers["accept"],
        "application/json"
    );
    let file = &fhir.requests_to("/files/p1").await[0];
    assert_eq!(file.headers["accept"], "application/fhir+ndjson");
    assert!(
        file.headers["accept-encoding"]
            .to_str()
            .unwrap()
            .contains("gzip")
    );

    assert_eq!(read(dir.path(), "Patient.1.ndjson"), patients);
    assert_eq!(read(dir.path(), "Observation.1.ndjson"), observations);
    assert_eq!(summary.resources, 8);
    assert_eq!(summary.types["Patient"].resources, 3);
    assert!(summary.job_deleted);
    let deletes: Vec<_> = fhir
        .server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.method.as_str() == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    let saved: Value = serde_json::from_str(&read(dir.path(), "manifest.json")).unwrap();
    assert_eq!(saved["output"].as_array().unwrap().len(), 2);
    let summary_json: Value = serde_json::from_str(&read(dir.path(), "summary.json")).unwrap();
    assert_eq!(summary_json["resources"], 8);
    assert_eq!(summary_json["types"]["Observation"]["resources"], 5);
}

/// `--keep` leaves the job alone.
#[tokio::test]
async fn keep_skips_the_delete() {
    let fhir = Fhir::start().await;
    simple_export(&fhir).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.keep = true;
    let summary = export(o).await.0.unwrap();
    assert!(!summary.job_deleted);
    assert!(
        fhir.server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .all(|r| r.method.as_str() != "DELETE")
    );
}

/// K8, P6, K5: `patient` forces POST with a `Parameters` body; lenient goes in `Prefer`.
#[tokio::test]
async fn patient_export_posts_parameters_k8() {
    let fhir = Fhir::start().await;
    Mock::given(method("POST"))
        .and(path("/fhir/Group/g1/$export"))
        .respond_with(
            ResponseTemplate::new(202).insert_header("content-location", fhir.url("/status/9")),
        )
        .expect(1)
        .mount(&fhir.server)
        .await;
    let body = ndjson("Patient", 2);
    fhir.complete(
        "/status/9",
        &manifest(
            &fhir.url("/fhir/Group/g1/$export"),
            &[("Patient", &fhir.url("/f/1"), Some(2))],
        ),
    )
    .await;
    fhir.file("/f/1", &body).await;
    fhir.accept_delete("/status/9").await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.request.level = Level::Group("g1".into());
    o.request.patients = vec!["p1".into()];
    o.request.types = vec!["Patient".into()];
    o.request.since = Some(fhir_bulk_client::Since::At(
        "2024-01-01T00:00:00+02:00".into(),
    ));
    o.request.lenient = true;
    export(o).await.0.unwrap();
    let req = &fhir.requests_to("/fhir/Group/g1/$export").await[0];
    assert_eq!(req.headers["content-type"], "application/fhir+json");
    assert_eq!(req.headers["prefer"], "respond-async, handling=lenient");
    let sent: Value = req.body_json().unwrap();
    assert_eq!(sent["resourceType"], "Parameters");
    let params = sent["parameter"].as_array().unwrap();
    assert!(
        params.contains(&json!({"name":"_outputFormat","valueString":"application/fhir+ndjson"}))
    );
    assert!(params.contains(&json!({"name":"_since","valueInstant":"2024-01-01T00:00:00+02:00"})));
    assert!(
        params.contains(&json!({"name":"patient","valueReference":{"reference":"Patient/p1"}}))
    );
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), body);
}

/// KR2: a refused kick-off shows the OperationOutcome's diagnostics; exit class 4.
#[tokio::test]
async fn rejected_kickoff_shows_diagnostics_kr2() {
    let fhir = Fhir::start().await;
    Mock::given(method("GET"))
        .and(path("/fhir/$export"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"resourceType":"OperationOutcome",
            "issue":[{"severity":"error","code":"not-supported","diagnostics":"_type 'Foo' is not supported"}]})))
        .expect(1)
        .mount(&fhir.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let err = export(options(&fhir.base, dir.path())).await.0.unwrap_err();
    assert_eq!(err.exit_class(), ExitClass::Rejected);
    let line = err.to_string();
    assert!(
        line.contains("HTTP 400") && line.contains("_type 'Foo' is not supported"),
        "{line}"
    );
    assert!(!line.contains('\n'));
}

/// KR3: 429 "another export running" is waited out, honouring `Retry-After`.
#[tokio::test]
async fn kickoff_429_is_waited_out_kr3() {
    let fhir = Fhir::start().await;
    Mock::given(method("GET"))
        .and(path("/fhir/$export"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(2)
        .mount(&fhir.server)
        .await;
    simple_export(&fhir).await;
    let dir = tempfile::tempdir().unwrap();
    export(options(&fhir.base, dir.path())).await.0.unwrap();
    assert_eq!(fhir.requests_to("/fhir/$export").await.len(), 3);
}

/// A 2xx without `Content-Location` is not a usable kick-off.
#[tokio::test]
async fn kickoff_without_content_location_is_rejected() {
    let fhir = Fhir::start().await;
    Mock::given(method("GET"))
        .and(path("/fhir/$export"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&fhir.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let err = export(options(&fhir.base, dir.path())).await.0.unwrap_err();
    assert_eq!(err.exit_class(), ExitClass::Rejected);
    assert!(err.to_string().contains("Content-Location"));
}
