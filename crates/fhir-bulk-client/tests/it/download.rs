//! Downloads (§7, CL5): retries, `Range` resume, redirects and the token, content codings,
//! `Binary` wrapping (V2), line verification.

use crate::fixture::{Fhir, export, manifest, ndjson, options, read};
use base64::Engine;
use fhir_bulk_client::{Credentials, ExitClass, secret::Secret};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A kick-off and a finished job whose manifest is `m`.
async fn job(fhir: &Fhir, m: serde_json::Value) {
    fhir.kickoff(&fhir.url("/status/1")).await;
    fhir.complete("/status/1", &m).await;
    fhir.accept_delete("/status/1").await;
}

/// CL5: 429 and 5xx storms on a file are retried until it arrives.
#[tokio::test]
async fn storm_of_429_and_5xx_while_downloading_cl5() {
    let fhir = Fhir::start().await;
    let body = ndjson("Observation", 7);
    job(
        &fhir,
        manifest("r", &[("Observation", &fhir.url("/files/o1"), Some(7))]),
    )
    .await;
    for (n, status) in [(2, 429), (2, 500), (1, 503)] {
        Mock::given(method("GET"))
            .and(path("/files/o1"))
            .respond_with(ResponseTemplate::new(status).insert_header("retry-after", "0"))
            .up_to_n_times(n)
            .mount(&fhir.server)
            .await;
    }
    fhir.file("/files/o1", &body).await;
    let dir = tempfile::tempdir().unwrap();
    export(options(&fhir.base, dir.path())).await.0.unwrap();
    assert_eq!(read(dir.path(), "Observation.1.ndjson"), body);
    assert_eq!(fhir.requests_to("/files/o1").await.len(), 6);
}

/// A permanent error (404) is not retried; exit class 6.
#[tokio::test]
async fn missing_file_fails_with_class_6() {
    let fhir = Fhir::start().await;
    job(
        &fhir,
        manifest("r", &[("Observation", &fhir.url("/files/gone"), None)]),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/files/gone"))
        .respond_with(ResponseTemplate::new(404))
        .mount(&fhir.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let err = export(options(&fhir.base, dir.path())).await.0.unwrap_err();
    assert_eq!(err.exit_class(), ExitClass::Download);
    assert!(err.to_string().contains("HTTP 404"), "{err}");
    assert_eq!(fhir.requests_to("/files/gone").await.len(), 1);
}

/// What the raw file server saw in one request.
#[derive(Debug, Clone)]
struct Seen {
    range: Option<String>,
    accept_encoding: Option<String>,
}

/// A file server on raw TCP (wiremock cannot cut a body short): the first response announces
/// the whole length but sends `cut` bytes and closes; later ones honour `Range` when
/// `honour_range`, else send everything again with 200.
async fn cutting_server(
    body: Vec<u8>,
    cut: usize,
    honour_range: bool,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/data/Patient.ndjson",
        listener.local_addr().unwrap()
    );
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        // Bounded: a test makes a handful of requests.
        for _ in 0..20 {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let mut head = Vec::new();
            let mut buf = [0u8; 4096];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&head).to_string();
            let header = |name: &str| {
                text.lines().find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v.trim().to_string())
                })
            };
            let request = Seen {
                range: header("range"),
                accept_encoding: header("accept-encoding"),
            };
            let first = {
                let mut log = log.lock().unwrap();
                log.push(request.clone());
                log.len() == 1
            };
            let len = body.len();
            let start = request
                .range
                .as_deref()
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
            let (status, range_header, bytes) = match (first, start) {
                (true, _) => ("200 OK", String::new(), &body[..cut]),
                (false, Some(s)) if honour_range && s < len => (
                    "206 Partial Content",
                    format!("Content-Range: bytes {s}-{}/{len}\r\n", len - 1),
                    &body[s..],
                ),
                _ => ("200 OK", String::new(), &body[..]),
            };
            let announced = if first { len } else { bytes.len() };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/fhir+ndjson\r\nAccept-Ranges: bytes\r\n{range_header}Content-Length: {announced}\r\nConnection: close\r\n\r\n"
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.write_all(bytes).await;
            let _ = socket.shutdown().await;
        }
    });
    (url, seen)
}

/// CL5: a body cut off mid-line is resumed with `Range` from the bytes on disk, asking for
/// the identity encoding, and the file ends up byte-identical.
#[tokio::test]
async fn cut_off_download_resumes_with_range() {
    let body = ndjson("Patient", 200).into_bytes();
    let cut = body.len() / 2 + 7;
    let (url, seen) = cutting_server(body.clone(), cut, true).await;
    let fhir = Fhir::start().await;
    let mut m = manifest("r", &[("Patient", &url, Some(200))]);
    m["requiresAccessToken"] = json!(false);
    job(&fhir, m).await;
    let dir = tempfile::tempdir().unwrap();
    export(options(&fhir.base, dir.path())).await.0.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("Patient.1.ndjson")).unwrap(),
        body
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].range, None);
    let resumed_at: usize = seen[1]
        .range
        .as_deref()
        .unwrap()
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(
        resumed_at > 0 && resumed_at <= cut,
        "resumed at {resumed_at}, cut at {cut}"
    );
    assert_eq!(seen[1].accept_encoding.as_deref(), Some("identity"));
}

/// A server that ignores `Range` (200 again) gets the file restarted, not appended.
#[tokio::test]
async fn server_ignoring_range_restarts_the_file() {
    let body = ndjson("Patient", 100).into_bytes();
    let (url, seen) = cutting_server(body.clone(), 1000, false).await;
    let fhir = Fhir::start().await;
    let mut m = manifest("r", &[("Patient", &url, Some(100))]);
    m["requiresAccessToken"] = json!(false);
    job(&fhir, m).await;
    let dir = tempfile::tempdir().unwrap();
    export(options(&fhir.base, dir.path())).await.0.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("Patient.1.ndjson")).unwrap(),
        body
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

/// CL5, F2, CL7: redirects are followed, the token goes to the server's origin only; a 307
/// to storage on another origin carries no `Authorization`.
#[tokio::test]
async fn cross_origin_redirect_drops_authorization_cl5() {
    let fhir = Fhir::start().await;
    let storage = MockServer::start().await;
    let patients = ndjson("Patient", 2);
    let observations = ndjson("Observation", 3);
    job(
        &fhir,
        manifest(
            "r",
            &[
                ("Patient", &fhir.url("/files/p1"), None),
                ("Observation", &fhir.url("/files/o1"), None),
            ],
        ),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/files/p1"))
        .respond_with(ResponseTemplate::new(307).insert_header(
            "location",
            format!("{}/bucket/p1.ndjson?X-Amz-Signature=abc", storage.uri()),
        ))
        .mount(&fhir.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/bucket/p1.ndjson"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(patients.clone().into_bytes(), "application/fhir+ndjson"),
        )
        .mount(&storage)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/o1"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/files/o1-moved"))
        .mount(&fhir.server)
        .await;
    fhir.file("/files/o1-moved", &observations).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.auth.credentials = Credentials::Bearer(Secret::new("tok-A"));
    export(o).await.0.unwrap();
    assert_eq!(read(dir.path(), "Patient.1.ndjson"), patients);
    assert_eq!(read(dir.path(), "Observation.1.ndjson"), observations);
    assert_eq!(
        fhir.requests_to("/files/p1").await[0].headers["authorization"],
        "Bearer tok-A"
    );
    let at_storage = storage.received_requests().await.unwrap();
    assert_eq!(at_storage.len(), 1);
    assert!(
        at_storage[0].headers.get("authorization").is_none(),
        "the token leaked to storage"
    );
    // Same-origin redirect: the token still goes along.
    assert_eq!(
        fhir.requests_to("/files/o1-moved").await[0].headers["authorization"],
        "Bearer tok-A"
    );
}

/// F2: with `requiresAccessToken: false` no token is sent, even to the server itself.
#[tokio::test]
async fn no_token_when_not_required_f2() {
    let fhir = Fhir::start().await;
    let body = ndjson("Patient", 1);
    let mut m = manifest("r", &[("Patient", &fhir.url("/files/p1"), Some(1))]);
    m["requiresAccessToken"] = json!(false);
    job(&fhir, m).await;
    fhir.file("/files/p1", &body).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.auth.credentials = Credentials::Bearer(Secret::new("tok-A"));
    export(o).await.0.unwrap();
    assert!(
        fhir.requests_to("/files/p1").await[0]
            .headers
            .get("authorization")
            .is_none()
    );
    assert_eq!(
        fhir.requests_to("/status/1").await[0].headers["authorization"],
        "Bearer tok-A"
    );
}

/// V2: a `Binary` resource served instead of the NDJSON is decoded; the request asked for
/// `application/fhir+ndjson`.
#[tokio::test]
async fn binary_resource_is_decoded_v2() {
    let fhir = Fhir::start().await;
    let body = ndjson("Condition", 3);
    job(
        &fhir,
        manifest("r", &[("Condition", &fhir.url("/fhir/Binary/b1"), Some(3))]),
    )
    .await;
    let binary = json!({"resourceType": "Binary", "contentType": "application/fhir+ndjson",
        "data": base64::engine::general_purpose::STANDARD.encode(&body)});
    Mock::given(method("GET"))
        .and(path("/fhir/Binary/b1"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            serde_json::to_vec_pretty(&binary).unwrap(),
            "application/fhir+json",
        ))
        .mount(&fhir.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    export(options(&fhir.base, dir.path())).await.0.unwrap();
    assert_eq!(read(dir.path(), "Condition.1.ndjson"), body);
    assert_eq!(
        fhir.requests_to("/fhir/Binary/b1").await[0].headers["accept"],
        "application/fhir+ndjson"
    );
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

/// F4: `Content-Encoding: gzip` is decoded while streaming; `--gzip` stores compressed files.
#[tokio::test]
async fn gzip_transfer_and_gzip_storage_f4() {
    let fhir = Fhir::start().await;
    let body = ndjson("Encounter", 50);
    job(
        &fhir,
        manifest("r", &[("Encounter", &fhir.url("/files/e1"), Some(50))]),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/files/e1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(gzip(body.as_bytes()), "application/fhir+ndjson")
                .insert_header("content-encoding", "gzip"),
        )
        .mount(&fhir.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    export(options(&fhir.base, dir.path())).await.0.unwrap();
    assert_eq!(read(dir.path(), "Encounter.1.ndjson"), body);
    assert!(
        fhir.requests_to("/files/e1").await[0].headers["accept-encoding"]
            .to_str()
            .unwrap()
            .contains("gzip")
    );

    // A second export of the same job, stored compressed.
    fhir.server.reset().await;
    Mock::given(method("GET"))
        .and(path("/files/e1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_raw(gzip(body.as_bytes()), "application/fhir+ndjson")
                .insert_header("content-encoding", "gzip"),
        )
        .mount(&fhir.server)
        .await;
    job(
        &fhir,
        manifest("r", &[("Encounter", &fhir.url("/files/e1"), Some(50))]),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.gzip = true;
    let summary = export(o).await.0.unwrap();
    let mut plain = String::new();
    use std::io::Read;
    flate2::read::MultiGzDecoder::new(
        std::fs::File::open(dir.path().join("Encounter.1.ndjson.gz")).unwrap(),
    )
    .read_to_string(&mut plain)
    .unwrap();
    assert_eq!(plain, body);
    assert_eq!(summary.files[0].path, "Encounter.1.ndjson.gz");
}

/// `--accept-encoding identity`: files are asked for plain, and stored as they came.
#[tokio::test]
async fn identity_transfer_asks_for_plain_files() {
    let fhir = Fhir::start().await;
    let body = ndjson("Encounter", 20);
    job(
        &fhir,
        manifest("r", &[("Encounter", &fhir.url("/files/e1"), Some(20))]),
    )
    .await;
    fhir.file("/files/e1", &body).await;
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.transfer_gzip = false;
    export(o).await.0.unwrap();
    assert_eq!(read(dir.path(), "Encounter.1.ndjson"), body);
    assert_eq!(
        fhir.requests_to("/files/e1").await[0].headers["accept-encoding"],
        "identity"
    );
}

/// M4: a line whose `resourceType` is not the manifest's `type` fails the run; exit class 6.
#[tokio::test]
async fn wrong_resource_type_fails_verification_m4() {
    let fhir = Fhir::start().await;
    job(
        &fhir,
        manifest("r", &[("Patient", &fhir.url("/files/p1"), None)]),
    )
    .await;
    fhir.file(
        "/files/p1",
        &format!("{}{}", ndjson("Patient", 1), ndjson("Observation", 1)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let err = export(options(&fhir.base, dir.path())).await.0.unwrap_err();
    assert_eq!(err.exit_class(), ExitClass::Download);
    let line = err.to_string();
    assert!(
        line.contains("Patient.1.ndjson: line 2") && line.contains("Observation"),
        "{line}"
    );
    assert!(!dir.path().join("Patient.1.ndjson").exists());
}

/// M4: a `count` that does not match the file fails the run.
#[tokio::test]
async fn wrong_count_fails_verification_m4() {
    let fhir = Fhir::start().await;
    job(
        &fhir,
        manifest("r", &[("Patient", &fhir.url("/files/p1"), Some(4))]),
    )
    .await;
    fhir.file("/files/p1", &ndjson("Patient", 3)).await;
    let dir = tempfile::tempdir().unwrap();
    let err = export(options(&fhir.base, dir.path())).await.0.unwrap_err();
    assert_eq!(err.exit_class(), ExitClass::Download);
    assert!(err.to_string().contains("count 4"), "{err}");
}

/// M5, M6, CL6: `error` and `deleted` files go to their folders; the summary quotes errors.
#[tokio::test]
async fn error_and_deleted_files_m5_m6() {
    let fhir = Fhir::start().await;
    let mut m = manifest("r", &[("Patient", &fhir.url("/files/p1"), None)]);
    m["error"] = json!([{"type": "OperationOutcome", "url": fhir.url("/files/err")}]);
    m["deleted"] = json!([{"type": "Bundle", "url": fhir.url("/files/del")}]);
    job(&fhir, m).await;
    fhir.file("/files/p1", &ndjson("Patient", 2)).await;
    let outcome = json!({"resourceType":"OperationOutcome","issue":[{"severity":"warning","code":"not-supported","diagnostics":"_elements ignored"}]});
    fhir.file("/files/err", &format!("{outcome}\n")).await;
    let bundle = json!({"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"Patient/x"}}]});
    fhir.file("/files/del", &format!("{bundle}\r\n")).await;
    let dir = tempfile::tempdir().unwrap();
    let summary = export(options(&fhir.base, dir.path())).await.0.unwrap();
    assert!(dir.path().join("error/OperationOutcome.1.ndjson").exists());
    assert!(dir.path().join("deleted/Bundle.1.ndjson").exists());
    assert_eq!(
        summary.error_messages,
        vec!["_elements ignored".to_string()]
    );
    assert_eq!(
        (
            summary.resources,
            summary.deleted_resources,
            summary.error_resources
        ),
        (2, 1, 1)
    );
}
