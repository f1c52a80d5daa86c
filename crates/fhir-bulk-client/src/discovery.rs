//! Finding the token endpoint: SMART `.well-known/smart-configuration` (§12), falling back to
//! the deprecated CapabilityStatement `rest.security` oauth-uris extension.
//!
//! Discovery URLs are built by appending to the full base, never by replacing its path (W1,
//! V8): tenant bases such as `…/r4/<tenant>` or `…/api/FHIR/R4` keep every segment. The token
//! endpoint itself may live on another host.

use crate::backoff::Timings;
use crate::error::{Error, Phase, Result};
use crate::transport::{Request, follow_redirects, is_retryable_status};
use reqwest::header::ACCEPT;
use serde_json::Value;
use url::Url;

/// The CapabilityStatement extension that carried OAuth endpoints before `.well-known`.
pub const OAUTH_URIS_EXTENSION: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// What the client needs from `.well-known/smart-configuration` (W2).
#[derive(Debug, Clone, PartialEq)]
pub struct SmartConfiguration {
    /// `token_endpoint`, resolved against the base if a server sent it relative (W1).
    pub token_endpoint: Url,
    /// `capabilities`, e.g. `client-confidential-asymmetric`, `permission-v2`.
    pub capabilities: Vec<String>,
    /// `scopes_supported` (may be partial).
    pub scopes_supported: Vec<String>,
    /// `token_endpoint_auth_signing_alg_values_supported`.
    pub signing_algs: Vec<String>,
}

impl SmartConfiguration {
    /// The scope to ask for when the user gave none (CL1): v2 `system/*.rs`, unless the server
    /// says it only speaks v1.
    pub fn default_scope(&self) -> &'static str {
        let has = |list: &[String], s: &str| list.iter().any(|x| x == s);
        let v1_only_caps =
            has(&self.capabilities, "permission-v1") && !has(&self.capabilities, "permission-v2");
        let v1_only_scopes = has(&self.scopes_supported, "system/*.read")
            && !has(&self.scopes_supported, "system/*.rs");
        if v1_only_caps || v1_only_scopes {
            V1_SCOPE
        } else {
            V2_SCOPE
        }
    }
}

/// SMART v2 scope for reading everything (SC2).
pub const V2_SCOPE: &str = "system/*.rs";
/// SMART v1 scope for reading everything (SC1), the fallback of CL1.
pub const V1_SCOPE: &str = "system/*.read";

/// `base` + `/` + `segments`, keeping every segment of the base (W1, V8).
pub fn append_path(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.set_fragment(None);
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url
}

/// `[base]/.well-known/smart-configuration` (W1).
pub fn well_known_url(base: &Url) -> Url {
    let mut url = append_path(base, &[".well-known", "smart-configuration"]);
    url.set_query(None);
    url
}

/// Reads a smart-configuration document.
pub fn parse_smart_configuration(body: &[u8], base: &Url) -> Result<SmartConfiguration, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let token = v
        .get("token_endpoint")
        .and_then(Value::as_str)
        .ok_or("it has no token_endpoint")?;
    let token_endpoint = base
        .join(token)
        .map_err(|e| format!("bad token_endpoint '{token}': {e}"))?;
    let list = |k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(SmartConfiguration {
        token_endpoint,
        capabilities: list("capabilities"),
        scopes_supported: list("scopes_supported"),
        signing_algs: list("token_endpoint_auth_signing_alg_values_supported"),
    })
}

/// The `token` URI of the oauth-uris extension in any `rest[].security` of a CapabilityStatement.
pub fn token_url_from_capability_statement(v: &Value, base: &Url) -> Option<Url> {
    v.get("rest")?.as_array()?.iter().find_map(|rest| {
        rest.pointer("/security/extension")?
            .as_array()?
            .iter()
            .filter(|e| e.get("url").and_then(Value::as_str) == Some(OAUTH_URIS_EXTENSION))
            .flat_map(|e| {
                e.get("extension")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
            })
            .find(|e| e.get("url").and_then(Value::as_str) == Some("token"))
            .and_then(|e| e.get("valueUri").or_else(|| e.get("valueUrl")))
            .and_then(Value::as_str)
            .and_then(|s| base.join(s).ok())
    })
}

/// GET with a few retries of network errors and transient statuses; discovery runs before any
/// token exists, so it never carries one.
async fn fetch(
    http: &reqwest::Client,
    url: Url,
    accept: &'static str,
    timings: &Timings,
    verbose: bool,
) -> Result<(u16, Vec<u8>)> {
    let req = Request::get(url.clone()).header(ACCEPT, accept);
    let origin = url.origin();
    let mut backoff = crate::backoff::Backoff::new(timings.retry_initial, timings.retry_max);
    loop {
        let last_try = backoff.attempts() >= timings.max_retries.min(3);
        match follow_redirects(http, Phase::Discovery, &req, None, &origin, verbose).await {
            Ok(resp) if is_retryable_status(resp.status()) && !last_try => {
                tokio::time::sleep(crate::backoff::retry_after_or(
                    resp.headers(),
                    backoff.next_delay(),
                ))
                .await;
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.bytes().await.map_err(|e| Error::Http {
                    phase: Phase::Discovery,
                    url: url.to_string(),
                    message: crate::transport::describe(e),
                    connect: false,
                })?;
                return Ok((status, body.to_vec()));
            }
            Err(Error::Http { .. }) if !last_try => tokio::time::sleep(backoff.next_delay()).await,
            Err(e) => return Err(e),
        }
    }
}

/// Discovers the token endpoint of `base` (§12), falling back to `[base]/metadata`.
pub(crate) async fn discover(
    http: &reqwest::Client,
    base: &Url,
    timings: &Timings,
    verbose: bool,
) -> Result<SmartConfiguration> {
    let well_known = well_known_url(base);
    let first = match fetch(
        http,
        well_known.clone(),
        "application/json",
        timings,
        verbose,
    )
    .await?
    {
        (200, body) => match parse_smart_configuration(&body, base) {
            Ok(config) => return Ok(config),
            Err(e) => format!("{well_known}: {e}"),
        },
        (status, _) => format!("{well_known}: HTTP {status}"),
    };
    let mut metadata = append_path(base, &["metadata"]);
    metadata.set_query(None);
    let second = match fetch(
        http,
        metadata.clone(),
        "application/fhir+json",
        timings,
        verbose,
    )
    .await?
    {
        (200, body) => {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if let Some(token_endpoint) = token_url_from_capability_statement(&v, base) {
                tracing::info!(
                    "no smart-configuration; using the token endpoint of the CapabilityStatement"
                );
                return Ok(SmartConfiguration {
                    token_endpoint,
                    capabilities: Vec::new(),
                    scopes_supported: Vec::new(),
                    signing_algs: Vec::new(),
                });
            }
            format!("{metadata}: no oauth-uris token extension in rest.security")
        }
        (status, _) => format!("{metadata}: HTTP {status}"),
    };
    Err(Error::Discovery {
        base: base.to_string(),
        reason: format!("{first}; {second}; pass --token-url"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// W1, V8: the path of a tenant base is kept, with or without a trailing slash.
    #[test]
    fn well_known_keeps_tenant_paths_w1_v8() {
        for base in ["https://h/r4/ten-ant", "https://h/r4/ten-ant/"] {
            let base = Url::parse(base).unwrap();
            assert_eq!(
                well_known_url(&base).as_str(),
                "https://h/r4/ten-ant/.well-known/smart-configuration"
            );
        }
        let base = Url::parse("https://h/v/r4/sim/eyJh/fhir").unwrap();
        assert_eq!(
            append_path(&base, &["Group", "g 1", "$export"]).as_str(),
            "https://h/v/r4/sim/eyJh/fhir/Group/g%201/$export"
        );
    }

    #[test]
    fn reads_smart_configuration_and_resolves_relative_urls() {
        let base = Url::parse("https://h/fhir/").unwrap();
        let c = parse_smart_configuration(
            br#"{"token_endpoint":"auth/token","capabilities":["permission-v1"],"scopes_supported":["system/*.read"]}"#,
            &base,
        )
        .unwrap();
        assert_eq!(c.token_endpoint.as_str(), "https://h/fhir/auth/token");
        assert_eq!(c.default_scope(), V1_SCOPE);
        let c = parse_smart_configuration(br#"{"token_endpoint":"https://idp/t","capabilities":["permission-v1","permission-v2"]}"#, &base).unwrap();
        assert_eq!(c.default_scope(), V2_SCOPE);
        assert!(parse_smart_configuration(b"{}", &base).is_err());
    }

    #[test]
    fn finds_the_token_url_in_a_capability_statement() {
        let base = Url::parse("https://h/fhir").unwrap();
        let cs = json!({"resourceType":"CapabilityStatement","rest":[{"mode":"server","security":{"extension":[
            {"url": OAUTH_URIS_EXTENSION, "extension":[
                {"url":"authorize","valueUri":"https://h/auth/authorize"},
                {"url":"token","valueUri":"https://h/auth/token"}]}]}}]});
        assert_eq!(
            token_url_from_capability_statement(&cs, &base)
                .unwrap()
                .as_str(),
            "https://h/auth/token"
        );
        assert_eq!(
            token_url_from_capability_statement(&json!({"rest":[{}]}), &base),
            None
        );
    }
}
