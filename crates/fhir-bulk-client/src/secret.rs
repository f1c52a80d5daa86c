//! What must never be printed: tokens, client secrets, private keys, signed URLs.
//!
//! Every type that holds a secret wraps it in [`Secret`], whose `Debug` and `Display` print
//! `***`, so a stray `{:?}` in a log line or an error cannot leak it. URLs are printed through
//! [`redact_url`], because signed storage URLs (V2: S3, Azure Blob) carry their credential in
//! the query string.

pub use fhir_bulk_spec::secret::Secret;

/// Query parameter names whose values are credentials in signed URLs (AWS `X-Amz-Signature`,
/// `X-Amz-Credential`, Azure `sig`, GCS `X-Goog-Signature`, generic `token`/`key`).
fn is_secret_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "sig",
        "token",
        "key",
        "credential",
        "secret",
        "password",
        "auth",
        "security",
    ]
    .iter()
    .any(|word| n.contains(word))
}

/// `url` fit for logs and error messages: the password of the userinfo and the values of
/// credential-like query parameters become `***`. Text that is not a URL is returned as is.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    "***".to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        if pairs.iter().any(|(_, v)| v == "***") {
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_never_formatted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn signed_urls_lose_their_signature() {
        let u = redact_url(
            "https://b.s3.amazonaws.com/x.ndjson?X-Amz-Credential=AK%2F1&X-Amz-Signature=abc&part=2",
        );
        assert!(!u.contains("abc") && !u.contains("AK"), "{u}");
        assert!(u.contains("part=2"));
        assert_eq!(
            redact_url("https://x/fhir/$export-poll-status?_jobId=1"),
            "https://x/fhir/$export-poll-status?_jobId=1"
        );
        assert!(!redact_url("https://u:pw@x/").contains("pw"));
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
