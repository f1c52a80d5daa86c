//! Resuming after a crash, Ctrl-C or a lost network (the run state), and `--since auto` (CL6).

use crate::fixture::{Fhir, export, manifest, ndjson, options, read, simple_export};
use fhir_bulk_client::state::{RunState, STATE_FILE};
use fhir_bulk_client::{ExitClass, Since};
use std::time::Duration;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

/// A run "killed" mid-download (one file keeps failing after the state was written) is
/// completed by a second run: no new kick-off, no new poll, the finished file not fetched
/// again, and the output identical to an uninterrupted run.
#[tokio::test]
async fn killed_mid_download_then_rerun_completes_identically() {
    let fhir = Fhir::start().await;
    let patients = ndjson("Patient", 3);
    let observations = ndjson("Observation", 40);
    let m = manifest(
        "r",
        &[
            ("Patient", &fhir.url("/files/p1"), Some(3)),
            ("Observation", &fhir.url("/files/o1"), Some(40)),
        ],
    );
    fhir.kickoff(&fhir.url("/status/1")).await;
    fhir.complete("/status/1", &m).await;
    fhir.file("/files/p1", &patients).await;
    Mock::given(method("GET"))
        .and(path("/files/o1"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&fhir.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.timings.max_retries = 2;
    let err = export(o.clone()).await.0.unwrap_err();
    assert_eq!(err.exit_class(), ExitClass::Download);
    let state = RunState::load(dir.path()).unwrap().unwrap();
    assert!(state.manifest.is_some() && !state.completed);
    assert_eq!(state.files.keys().collect::<Vec<_>>(), ["Patient.1.ndjson"]);

    // The network is back; the server still has the job. Only the missing file may be fetched.
    fhir.server.reset().await;
    fhir.file("/files/o1", &observations).await;
    fhir.accept_delete("/status/1").await;
    let (result, _) = export(o).await;
    let summary = result.unwrap();
    assert!(summary.resumed);
    let paths: Vec<String> = fhir
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_string())
        .collect();
    assert_eq!(
        paths,
        ["/files/o1", "/status/1"],
        "only the missing file and the final DELETE"
    );
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), patients);
    assert_eq!(read(dir.path(), "Observation.1.ndjson"), observations);
    assert_eq!(summary.resources, 43);
    assert!(RunState::load(dir.path()).unwrap().unwrap().completed);

    // The same bytes as a run that was never interrupted.
    let clean = tempfile::tempdir().unwrap();
    fhir.server.reset().await;
    simple_export_same(&fhir, &patients, &observations).await;
    export(options(&fhir.base, clean.path())).await.0.unwrap();
    for f in ["Patient.1.ndjson", "Observation.1.ndjson"] {
        assert_eq!(
            std::fs::read(dir.path().join(f)).unwrap(),
            std::fs::read(clean.path().join(f)).unwrap(),
            "{f}"
        );
    }
}

async fn simple_export_same(fhir: &Fhir, patients: &str, observations: &str) {
    let m = manifest(
        "r",
        &[
            ("Patient", &fhir.url("/files/p1"), Some(3)),
            ("Observation", &fhir.url("/files/o1"), Some(40)),
        ],
    );
    fhir.kickoff(&fhir.url("/status/1")).await;
    fhir.complete("/status/1", &m).await;
    fhir.file("/files/p1", patients).await;
    fhir.file("/files/o1", observations).await;
    fhir.accept_delete("/status/1").await;
}

/// A run interrupted while the server was still working polls the same status URL again
/// instead of starting a new export.
#[tokio::test]
async fn interrupted_while_polling_continues_the_same_job() {
    let fhir = Fhir::start().await;
    fhir.kickoff(&fhir.url("/status/1")).await;
    Mock::given(method("GET"))
        .and(path("/status/1"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&fhir.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.timings.timeout = Duration::from_millis(200);
    let err = export(o.clone()).await.0.unwrap_err();
    assert_eq!(err.exit_class(), ExitClass::ExportFailed);

    fhir.server.reset().await;
    let body = ndjson("Patient", 2);
    Mock::given(method("GET"))
        .and(path("/fhir/$export"))
        .respond_with(ResponseTemplate::new(500))
        .expect(0)
        .mount(&fhir.server)
        .await;
    fhir.complete(
        "/status/1",
        &manifest("r", &[("Patient", &fhir.url("/f/1"), None)]),
    )
    .await;
    fhir.file("/f/1", &body).await;
    fhir.accept_delete("/status/1").await;
    o.timings.timeout = Duration::from_secs(20);
    export(o).await.0.unwrap();
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), body);
}

/// A directory holding an unfinished export of another request is a usage error (exit 2),
/// not silently overwritten.
#[tokio::test]
async fn unfinished_export_of_another_request_is_refused() {
    let fhir = Fhir::start().await;
    fhir.kickoff(&fhir.url("/status/1")).await;
    Mock::given(method("GET"))
        .and(path("/status/1"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&fhir.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.timings.timeout = Duration::from_millis(100);
    export(o.clone()).await.0.unwrap_err();
    o.request.types = vec!["Patient".into()];
    let err = export(o).await.0.unwrap_err();
    assert_eq!(err.exit_class(), ExitClass::Usage);
    assert!(err.to_string().contains(STATE_FILE), "{err}");
}

/// CL6, M1: `--since auto` sends the previous complete run's `transactionTime`; the first run
/// (no previous) is a full export.
#[tokio::test]
async fn since_auto_uses_the_last_transaction_time_cl6() {
    let fhir = Fhir::start().await;
    simple_export(&fhir).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.request.since = Some(Since::Auto);
    export(o.clone()).await.0.unwrap();
    assert!(
        !fhir.requests_to("/fhir/$export").await[0]
            .url
            .query()
            .unwrap()
            .contains("_since")
    );

    fhir.server.reset().await;
    Mock::given(method("GET"))
        .and(path("/fhir/$export"))
        .and(query_param("_since", "2024-05-01T12:00:00.000Z"))
        .respond_with(
            ResponseTemplate::new(202).insert_header("content-location", fhir.url("/status/2")),
        )
        .expect(1)
        .mount(&fhir.server)
        .await;
    fhir.complete(
        "/status/2",
        &manifest("r", &[("Patient", &fhir.url("/files/p2"), None)]),
    )
    .await;
    fhir.file("/files/p2", &ndjson("Patient", 1)).await;
    fhir.accept_delete("/status/2").await;
    let summary = export(o).await.0.unwrap();
    assert_eq!(summary.since.as_deref(), Some("2024-05-01T12:00:00.000Z"));
    assert!(!summary.resumed);
    // The previous run's files were replaced by this run's.
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), ndjson("Patient", 1));
    assert!(!dir.path().join("Observation.1.ndjson").exists());
}

/// CL6: the sync log is not written when a run does not finish.
#[tokio::test]
async fn failed_run_does_not_advance_since_cl6() {
    let fhir = Fhir::start().await;
    fhir.kickoff(&fhir.url("/status/1")).await;
    fhir.complete(
        "/status/1",
        &manifest("r", &[("Patient", &fhir.url("/files/p1"), None)]),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/files/p1"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&fhir.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.request.since = Some(Since::Auto);
    export(o).await.0.unwrap_err();
    assert!(!dir.path().join(fhir_bulk_client::state::SYNC_FILE).exists());
}
