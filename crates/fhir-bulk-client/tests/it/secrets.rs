//! Secrets never show up in `Debug` output or logs, `--verbose` included.

use crate::fixture::{
    Fhir, IssuerHandle, TokenIssuer, export, manifest, ndjson, options, smart_configuration,
};
use fhir_bulk_client::key::{KeyAlg, SigningKey, generate};
use fhir_bulk_client::{Credentials, SecretMethod, secret::Secret};
use std::sync::{Arc, Mutex};
use tracing::instrument::WithSubscriber;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

/// Collects log output in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn secrets_stay_out_of_debug_and_logs() {
    const SECRET: &str = "s3cr3t-client-value";
    const TOKEN: &str = "tok-very-secret-123";
    let fhir = Fhir::start().await;
    let issuer = TokenIssuer::new(vec![TOKEN], "c", &fhir.url("/auth/token"), None);
    smart_configuration(&fhir, &fhir.url("/auth/token")).await;
    Mock::given(method("POST"))
        .and(path("/auth/token"))
        .respond_with(IssuerHandle(issuer.clone()))
        .mount(&fhir.server)
        .await;
    fhir.kickoff(&fhir.url("/status/1")).await;
    // One 401 so the renewal path logs too.
    Mock::given(method("GET"))
        .and(path("/status/1"))
        .respond_with(ResponseTemplate::new(401))
        .up_to_n_times(1)
        .mount(&fhir.server)
        .await;
    let signed = fhir.url("/f/1?X-Amz-Signature=sig-SECRET-9&part=1");
    fhir.complete("/status/1", &manifest("r", &[("Patient", &signed, None)]))
        .await;
    Mock::given(method("GET"))
        .and(path("/f/1"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .mount(&fhir.server)
        .await;
    fhir.file("/f/1", &ndjson("Patient", 1)).await;
    fhir.accept_delete("/status/1").await;

    let dir = tempfile::tempdir().unwrap();
    let mut o = options(&fhir.base, dir.path());
    o.verbose = true;
    o.auth.credentials = Credentials::ClientSecret {
        client_id: "c".into(),
        secret: Secret::new(SECRET),
        method: SecretMethod::Post,
    };
    let debug = format!("{o:?}");
    assert!(!debug.contains(SECRET), "{debug}");

    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let (result, _) = export(o).with_subscriber(subscriber).await;
    result.unwrap();
    assert_eq!(issuer.calls(), 2);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("$export") && text.contains("token request"),
        "verbose logs the requests:\n{text}"
    );
    for secret in [SECRET, TOKEN, "sig-SECRET-9"] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the logs:\n{text}"
        );
    }

    let key = generate(KeyAlg::Es384, None).unwrap();
    let loaded = SigningKey::from_text(key.private_pem.expose(), None).unwrap();
    let pem_body = key.private_pem.expose().lines().nth(1).unwrap().to_string();
    for shown in [
        format!("{loaded:?}"),
        format!("{key:?}"),
        format!("{:?}", Credentials::Bearer(Secret::new(TOKEN))),
    ] {
        assert!(
            !shown.contains(&pem_body) && !shown.contains(TOKEN),
            "{shown}"
        );
    }
}
