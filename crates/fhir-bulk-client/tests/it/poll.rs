//! Status polling (§4, CL4): pacing, storms, failures, progress, manifest pages.

use crate::fixture::{Fhir, export, manifest, ndjson, options, read};
use fhir_bulk_client::{Event, ExitClass};
use serde_json::json;
use std::time::{Duration, Instant, SystemTime};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

async fn ready_files(fhir: &Fhir) -> String {
    let body = ndjson("Patient", 4);
    fhir.kickoff(&fhir.url("/status/1")).await;
    fhir.file("/files/p1", &body).await;
    fhir.accept_delete("/status/1").await;
    body
}

async fn then(fhir: &Fhir, times: u64, response: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path("/status/1"))
        .respond_with(response)
        .up_to_n_times(times)
        .mount(&fhir.server)
        .await;
}

/// CL4, ST2, ST3, V3: 429s and 5xx in a row are waited out; `X-Progress` is shown with its
/// percentage; the job then completes.
#[tokio::test]
async fn storm_of_429_and_5xx_while_polling_cl4() {
    let fhir = Fhir::start().await;
    let body = ready_files(&fhir).await;
    then(
        &fhir,
        3,
        ResponseTemplate::new(429).insert_header("retry-after", "0"),
    )
    .await;
    then(
        &fhir,
        3,
        ResponseTemplate::new(503).set_body_string("<html>busy</html>"),
    )
    .await;
    then(
        &fhir,
        1,
        ResponseTemplate::new(202).insert_header("x-progress", "Running (42% complete)"),
    )
    .await;
    then(&fhir, 2, ResponseTemplate::new(502)).await;
    then(
        &fhir,
        1,
        ResponseTemplate::new(202).insert_header("x-progress", "in-progress"),
    )
    .await;
    fhir.complete(
        "/status/1",
        &manifest("r", &[("Patient", &fhir.url("/files/p1"), Some(4))]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (result, events) = export(options(&fhir.base, dir.path())).await;
    result.unwrap();
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), body);
    assert_eq!(fhir.gets_to("/status/1").await.len(), 11);
    let events = events.0.lock().unwrap();
    let progress: Vec<(Option<String>, Option<u8>)> = events
        .iter()
        .filter_map(|e| match e {
            Event::Polling {
                progress, percent, ..
            } => Some((progress.clone(), *percent)),
            _ => None,
        })
        .collect();
    assert_eq!(
        progress,
        vec![
            (Some("Running (42% complete)".into()), Some(42)),
            (Some("in-progress".into()), None)
        ]
    );
    assert!(events.iter().any(|e| matches!(e, Event::Retrying { .. })));
}

/// ST1: `Retry-After` as an HTTP-date is honoured, not polled through.
#[tokio::test]
async fn retry_after_http_date_is_honoured_st1() {
    let fhir = Fhir::start().await;
    ready_files(&fhir).await;
    let at = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(2));
    then(
        &fhir,
        1,
        ResponseTemplate::new(202).insert_header("retry-after", at.as_str()),
    )
    .await;
    fhir.complete(
        "/status/1",
        &manifest("r", &[("Patient", &fhir.url("/files/p1"), None)]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    export(options(&fhir.base, dir.path())).await.0.unwrap();
    // The date has whole seconds, so the wait is between 1 and 2 s.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(fhir.gets_to("/status/1").await.len(), 2);
}

/// ST5: a failed job prints its OperationOutcome; exit class 5.
#[tokio::test]
async fn failed_job_reports_its_outcome_st5() {
    let fhir = Fhir::start().await;
    ready_files(&fhir).await;
    then(&fhir, 5, ResponseTemplate::new(500).set_body_json(json!({"resourceType":"OperationOutcome",
        "issue":[{"severity":"error","code":"processing","diagnostics":"export worker ran out of disk"}]}))).await;
    let dir = tempfile::tempdir().unwrap();
    let err = export(options(&fhir.base, dir.path())).await.0.unwrap_err();
    assert_eq!(err.exit_class(), ExitClass::ExportFailed);
    assert!(
        err.to_string().contains("export worker ran out of disk"),
        "{err}"
    );
    assert_eq!(
        fhir.gets_to("/status/1").await.len(),
        1,
        "a failed job is not polled again"
    );
}

/// ST5: transient issue codes mean "retry".
#[tokio::test]
async fn transient_outcome_is_retried_st5() {
    let fhir = Fhir::start().await;
    let body = ready_files(&fhir).await;
    then(
        &fhir,
        2,
        ResponseTemplate::new(500).set_body_json(json!({"resourceType":"OperationOutcome",
        "issue":[{"severity":"error","code":"transient","diagnostics":"database failover"}]})),
    )
    .await;
    fhir.complete(
        "/status/1",
        &manifest("r", &[("Patient", &fhir.url("/files/p1"), Some(4))]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    export(options(&fhir.base, dir.path())).await.0.unwrap();
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), body);
}

/// CL4: the overall deadline ends a job that never finishes; exit class 5.
#[tokio::test]
async fn overall_timeout_cl4() {
    let fhir = Fhir::start().await;
    ready_files(&fhir).await;
    then(&fhir, 10_000, ResponseTemplate::new(202)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.timings.timeout = Duration::from_millis(300);
    let err = export(o).await.0.unwrap_err();
    assert_eq!(err.exit_class(), ExitClass::ExportFailed);
    assert!(err.to_string().contains("did not complete"), "{err}");
}

/// M8: `link` next pages are fetched and their files downloaded too.
#[tokio::test]
async fn manifest_pages_are_followed_m8() {
    let fhir = Fhir::start().await;
    let patients = ready_files(&fhir).await;
    let conditions = ndjson("Condition", 2);
    fhir.file("/files/c1", &conditions).await;
    let mut first = manifest("r", &[("Patient", &fhir.url("/files/p1"), None)]);
    first["link"] = json!([{"relation": "next", "url": fhir.url("/status/1/page/2")}]);
    let second = manifest("r", &[("Condition", &fhir.url("/files/c1"), None)]);
    fhir.complete("/status/1", &first).await;
    fhir.complete("/status/1/page/2", &second).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = export(options(&fhir.base, dir.path())).await.0.unwrap();
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), patients);
    assert_eq!(read(dir.path(), "Condition.1.ndjson"), conditions);
    assert_eq!(summary.resources, 6);
    let saved: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "manifest.json")).unwrap();
    assert_eq!(saved["output"].as_array().unwrap().len(), 2);
    assert!(saved.get("link").is_none());
}

/// K6: `X-Export-Status` on a 200 carries the job state.
#[tokio::test]
async fn separate_export_status_k6() {
    let fhir = Fhir::start().await;
    let body = ready_files(&fhir).await;
    then(
        &fhir,
        2,
        ResponseTemplate::new(200).insert_header("x-export-status", "202 Accepted"),
    )
    .await;
    let m = manifest("r", &[("Patient", &fhir.url("/files/p1"), None)]);
    Mock::given(method("GET"))
        .and(path("/status/1"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-export-status", "200 OK")
                .set_body_json(m),
        )
        .mount(&fhir.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    export(options(&fhir.base, dir.path())).await.0.unwrap();
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), body);
    assert_eq!(fhir.gets_to("/status/1").await.len(), 3);
}
