//! Vendor variants (§21) a robust client tolerates.

use crate::fixture::{Fhir, export, manifest, ndjson, options, read};
use fhir_bulk_client::{Credentials, secret::Secret};
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

/// V1, CL3: status URLs of every style are used as given (opaque), relative ones resolved.
#[tokio::test]
async fn opaque_status_urls_of_every_style_v1() {
    // (Content-Location as sent, path polled, query that must survive)
    type Style = (
        &'static str,
        &'static str,
        Option<(&'static str, &'static str)>,
    );
    let styles: &[Style] = &[
        (
            "{base}/$export-poll-status?_jobId=7f3a",
            "/fhir/$export-poll-status",
            Some(("_jobId", "7f3a")),
        ),
        (
            "{uri}/_operations/export/abc-123",
            "/_operations/export/abc-123",
            None,
        ),
        (
            "{uri}/fhir/bulkstatus/42?page=3",
            "/fhir/bulkstatus/42",
            Some(("page", "3")),
        ),
        (
            "{base}/$bulkdata-status?job=9",
            "/fhir/$bulkdata-status",
            Some(("job", "9")),
        ),
        (
            "{uri}/r4/ten/bulk-export/jobs/5",
            "/r4/ten/bulk-export/jobs/5",
            None,
        ),
        ("{uri}/bulk-api/request/77", "/bulk-api/request/77", None),
        ("Export/0e1f", "/fhir/Export/0e1f", None),
        (
            "/fhir/$export-poll-status?_id=x%2By",
            "/fhir/$export-poll-status",
            Some(("_id", "x+y")),
        ),
    ];
    for (location, status_path, query) in styles {
        let fhir = Fhir::start().await;
        let location = location
            .replace("{base}", fhir.base.as_str())
            .replace("{uri}", &fhir.server.uri());
        // A relative Content-Location resolves against the kick-off URL (`…/fhir/$export`).
        Mock::given(method("GET"))
            .and(path("/fhir/$export"))
            .respond_with(
                ResponseTemplate::new(202).insert_header("content-location", location.as_str()),
            )
            .mount(&fhir.server)
            .await;
        let body = ndjson("Patient", 1);
        let mut status = Mock::given(method("GET")).and(path(*status_path));
        if let Some((k, v)) = query {
            status = status.and(query_param(*k, *v));
        }
        status
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(manifest("r", &[("Patient", &fhir.url("/f/1"), None)])),
            )
            .expect(1)
            .mount(&fhir.server)
            .await;
        Mock::given(method("DELETE"))
            .and(path(*status_path))
            .respond_with(ResponseTemplate::new(202))
            .expect(1)
            .mount(&fhir.server)
            .await;
        fhir.file("/f/1", &body).await;
        let dir = tempfile::tempdir().unwrap();
        let summary = export(options(&fhir.base, dir.path()))
            .await
            .0
            .unwrap_or_else(|e| panic!("{location}: {e}"));
        assert_eq!(read(dir.path(), "Patient.1.ndjson"), body, "{location}");
        assert!(summary.job_deleted);
    }
}

/// V2: `Binary/<id>/$binary-access-read` style URLs work like any other.
#[tokio::test]
async fn binary_access_read_urls_v2() {
    let fhir = Fhir::start().await;
    let body = ndjson("Observation", 2);
    fhir.kickoff(&fhir.url("/status/1")).await;
    fhir.complete(
        "/status/1",
        &manifest(
            "r",
            &[(
                "Observation",
                &fhir.url("/fhir/Binary/f1/$binary-access-read"),
                None,
            )],
        ),
    )
    .await;
    fhir.file("/fhir/Binary/f1/$binary-access-read", &body)
        .await;
    fhir.accept_delete("/status/1").await;
    let dir = tempfile::tempdir().unwrap();
    export(options(&fhir.base, dir.path())).await.0.unwrap();
    assert_eq!(read(dir.path(), "Observation.1.ndjson"), body);
}

/// V9: `requiresAccessToken` as the string `"true"` still sends the token; missing `error`
/// and `request` are fine; HAPI's extra `message` is ignored.
#[tokio::test]
async fn manifest_quirks_v9() {
    let fhir = Fhir::start().await;
    let body = ndjson("Patient", 2);
    fhir.kickoff(&fhir.url("/status/1")).await;
    let m = json!({"transactionTime": "2024-05-01T12:00:00Z", "requiresAccessToken": "true", "message": "done",
        "output": [{"type": "Patient", "url": fhir.url("/f/1"), "count": "2"}]});
    fhir.complete("/status/1", &m).await;
    fhir.file("/f/1", &body).await;
    fhir.accept_delete("/status/1").await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.auth.credentials = Credentials::Bearer(Secret::new("tok-v9"));
    export(o).await.0.unwrap();
    assert_eq!(
        fhir.requests_to("/f/1").await[0].headers["authorization"],
        "Bearer tok-v9"
    );
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), body);
}

/// V4: a 202 kick-off with an OperationOutcome body (or a 200) is accepted when it has a
/// `Content-Location`.
#[tokio::test]
async fn kickoff_with_outcome_body_v4() {
    for status in [202, 200] {
        let fhir = Fhir::start().await;
        Mock::given(method("GET"))
            .and(path("/fhir/Patient/$export"))
            .respond_with(ResponseTemplate::new(status).insert_header("content-location", fhir.url("/s/1")).set_body_json(
                json!({"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational","diagnostics":"queued"}]}),
            ))
            .mount(&fhir.server)
            .await;
        fhir.complete("/s/1", &manifest("r", &[])).await;
        fhir.accept_delete("/s/1").await;
        let dir = tempfile::tempdir().unwrap();
        let mut o = options(&fhir.base, dir.path());
        o.request.level = fhir_bulk_client::Level::Patient;
        let summary = export(o).await.0.unwrap();
        assert_eq!(summary.files.len(), 0);
    }
}

/// V8: a tenant path in the base is never stripped, for the kick-off or discovery.
#[tokio::test]
async fn tenant_base_path_is_kept_v8() {
    let fhir = Fhir::start_at("/api/FHIR/R4").await;
    let body = ndjson("Patient", 1);
    Mock::given(method("GET"))
        .and(path("/api/FHIR/R4/Group/abc/$export"))
        .and(query_param("_type", "Patient,Condition"))
        .respond_with(ResponseTemplate::new(202).insert_header(
            "content-location",
            fhir.url("/api/FHIR/R4/$export-poll-status?_jobId=1"),
        ))
        .expect(1)
        .mount(&fhir.server)
        .await;
    fhir.complete(
        "/api/FHIR/R4/$export-poll-status",
        &manifest("r", &[("Patient", &fhir.url("/f/1"), None)]),
    )
    .await;
    fhir.file("/f/1", &body).await;
    fhir.accept_delete("/api/FHIR/R4/$export-poll-status").await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.request.level = fhir_bulk_client::Level::Group("abc".into());
    o.request.types = vec!["Patient".into(), "Condition".into()];
    export(o).await.0.unwrap();
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), body);
}
