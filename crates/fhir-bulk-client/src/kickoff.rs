//! The `$export` kick-off request (§1–§3).
//!
//! GET by default, with every value percent-encoded (P1, P2, P8a) and `_outputFormat` always
//! sent (CL3: some EHRs reject a kick-off without it); POST `Parameters` with `--post` and
//! whenever `patient` is given (P6 is POST-only), with the value types of K8. Any 2xx with a
//! `Content-Location` is success (KR1, V4), whatever its body; the status URL is then opaque
//! (V1), only resolved if a server sent it relative (CL3).

use crate::backoff::{Backoff, Timings, retry_after_or};
use crate::discovery::append_path;
use crate::error::{Error, Phase, Result};
use crate::transport::{Request, Transport};
use fhir_bulk_spec::instant::Instant as FhirInstant;
use fhir_bulk_spec::{FHIR_JSON, FHIR_NDJSON};
use reqwest::header::{ACCEPT, CONTENT_LOCATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Instant;
use url::Url;

/// Which `$export` operation (K2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Level {
    /// `[base]/$export`.
    System,
    /// `[base]/Patient/$export`.
    Patient,
    /// `[base]/Group/[id]/$export`.
    Group(String),
}

impl Level {
    /// `system`, `patient` or `group/<id>`: a stable name for keys and summaries.
    pub fn key(&self) -> String {
        match self {
            Level::System => "system".into(),
            Level::Patient => "patient".into(),
            Level::Group(id) => format!("group/{id}"),
        }
    }
}

/// The `_since` of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Since {
    /// A FHIR instant with timezone (P2).
    At(String),
    /// The `transactionTime` of the last complete run against the same server, level and types
    /// (CL6, M1); a full export when there is none.
    Auto,
}

/// What to export: the kick-off parameters (§2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    /// The operation.
    pub level: Level,
    /// `_type` (P4).
    pub types: Vec<String>,
    /// `_since` (P2).
    pub since: Option<Since>,
    /// `_until` (P3).
    pub until: Option<String>,
    /// `_typeFilter`, one search query each (P8; sent one per parameter, P8e).
    pub type_filters: Vec<String>,
    /// `_elements` (P5).
    pub elements: Vec<String>,
    /// `patient` ids or `Patient/<id>` references (P6; forces POST).
    pub patients: Vec<String>,
    /// Use POST even without `patient`.
    pub post: bool,
    /// Add `handling=lenient` to `Prefer` (K5).
    pub lenient: bool,
}

impl Default for ExportRequest {
    fn default() -> ExportRequest {
        ExportRequest {
            level: Level::System,
            types: Vec::new(),
            since: None,
            until: None,
            type_filters: Vec::new(),
            elements: Vec::new(),
            patients: Vec::new(),
            post: false,
            lenient: false,
        }
    }
}

/// A resource type name as a server could know it: letters and digits, starting upper-case.
fn is_type_name(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && s.chars().all(|c| c.is_ascii_alphanumeric())
}

impl ExportRequest {
    /// Checks the values the server would reject anyway, so the user hears it before any
    /// request: instants without timezone (T5), odd type names, `patient` on a system export (P6).
    pub fn validate(&self) -> Result<()> {
        let instant = |flag: &str, v: &str| {
            FhirInstant::parse(v)
                .map(|_| ())
                .map_err(|e| Error::Usage(format!("{flag}: {e}")))
        };
        if let Some(Since::At(v)) = &self.since {
            instant("--since", v)?;
        }
        if let Some(v) = &self.until {
            instant("--until", v)?;
        }
        if let Some(bad) = self.types.iter().find(|t| !is_type_name(t)) {
            return Err(Error::Usage(format!(
                "--type: '{bad}' is not a resource type name"
            )));
        }
        if let Some(bad) = self.type_filters.iter().find(|f| {
            !f.split_once('?')
                .is_some_and(|(t, q)| is_type_name(t) && !q.is_empty())
        }) {
            return Err(Error::Usage(format!(
                "--type-filter: '{bad}' is not of the form Type?param=value (P8a)"
            )));
        }
        if !self.patients.is_empty() && self.level == Level::System {
            return Err(Error::Usage(
                "--patient needs --patient-level or --group (P6: not for system exports)".into(),
            ));
        }
        if let Level::Group(id) = &self.level
            && id.trim().is_empty()
        {
            return Err(Error::Usage("--group needs an id".into()));
        }
        Ok(())
    }

    /// Whether the kick-off goes as POST.
    pub fn uses_post(&self) -> bool {
        self.post || !self.patients.is_empty()
    }
}

/// The kick-off as it goes on the wire.
#[derive(Debug, Clone)]
pub(crate) struct Kickoff {
    pub method: Method,
    pub url: Url,
    pub body: Option<Value>,
    pub prefer: &'static str,
}

/// The operation URL for `level` under `base`, keeping the base path (V8).
pub fn operation_url(base: &Url, level: &Level) -> Url {
    let mut url = match level {
        Level::System => append_path(base, &["$export"]),
        Level::Patient => append_path(base, &["Patient", "$export"]),
        Level::Group(id) => append_path(base, &["Group", id, "$export"]),
    };
    url.set_query(None);
    url
}

impl Kickoff {
    /// Builds the request; `since` is the resolved `_since` (after `--since auto`).
    pub fn build(base: &Url, req: &ExportRequest, since: Option<&str>, lenient: bool) -> Kickoff {
        let url = operation_url(base, &req.level);
        let prefer = if lenient {
            "respond-async, handling=lenient"
        } else {
            "respond-async"
        };
        if req.uses_post() {
            let mut parameter = vec![json!({"name": "_outputFormat", "valueString": FHIR_NDJSON})];
            // K7/4.0b: repeated parameters rather than comma lists.
            parameter.extend(
                req.types
                    .iter()
                    .map(|t| json!({"name": "_type", "valueString": t})),
            );
            if let Some(since) = since {
                parameter.push(json!({"name": "_since", "valueInstant": since}));
            }
            if let Some(until) = &req.until {
                parameter.push(json!({"name": "_until", "valueInstant": until}));
            }
            parameter.extend(
                req.type_filters
                    .iter()
                    .map(|f| json!({"name": "_typeFilter", "valueString": f})),
            );
            parameter.extend(
                req.elements
                    .iter()
                    .map(|e| json!({"name": "_elements", "valueString": e})),
            );
            parameter.extend(req.patients.iter().map(|p| {
                let reference = if p.contains('/') {
                    p.clone()
                } else {
                    format!("Patient/{p}")
                };
                json!({"name": "patient", "valueReference": {"reference": reference}})
            }));
            let body = json!({"resourceType": "Parameters", "parameter": parameter});
            Kickoff {
                method: Method::POST,
                url,
                body: Some(body),
                prefer,
            }
        } else {
            let mut url = url;
            {
                // `query_pairs_mut` form-encodes: `+` → %2B (P1, P2), `?&=` → %3F %26 %3D (P8a).
                let mut q = url.query_pairs_mut();
                q.append_pair("_outputFormat", FHIR_NDJSON);
                if !req.types.is_empty() {
                    q.append_pair("_type", &req.types.join(","));
                }
                if let Some(since) = since {
                    q.append_pair("_since", since);
                }
                if let Some(until) = &req.until {
                    q.append_pair("_until", until);
                }
                for f in &req.type_filters {
                    q.append_pair("_typeFilter", f);
                }
                if !req.elements.is_empty() {
                    q.append_pair("_elements", &req.elements.join(","));
                }
            }
            Kickoff {
                method: Method::GET,
                url,
                body: None,
                prefer,
            }
        }
    }

    /// What makes two runs "the same export" for resuming: method, URL with query, body.
    pub fn identity(&self) -> String {
        match &self.body {
            Some(body) => format!("{} {} {}", self.method, self.url, body),
            None => format!("{} {}", self.method, self.url),
        }
    }

    /// Sends the kick-off and returns the absolute status URL.
    ///
    /// 429 (KR3: another export running) and 503 are retried after `Retry-After` until the
    /// deadline, and so are connection failures, since those never reached the server; other
    /// failures are not, because a kick-off that did reach the server may have started a job.
    pub async fn send(
        &self,
        transport: &Transport,
        timings: &Timings,
        deadline: Instant,
    ) -> Result<Url> {
        let mut req = Request {
            method: self.method.clone(),
            url: self.url.clone(),
            headers: Default::default(),
            body: self.body.as_ref().map(|b| b.to_string().into_bytes()),
            with_token: true,
        };
        req.headers
            .insert(ACCEPT, HeaderValue::from_static(FHIR_JSON));
        req.headers
            .insert("prefer", HeaderValue::from_static(self.prefer));
        if self.body.is_some() {
            req.headers
                .insert(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        }
        let mut backoff = Backoff::new(timings.retry_initial, timings.retry_max);
        // Waits only while retries are left and the deadline allows; else the caller gets the
        // failure itself (a refused connection, a 429), which says more than a timeout.
        let may_wait = |backoff: &Backoff, delay: std::time::Duration| {
            backoff.attempts() <= timings.max_retries && Instant::now() + delay <= deadline
        };
        loop {
            let resp = match transport.send(Phase::Kickoff, &req).await {
                Err(e @ Error::Http { connect: true, .. }) => {
                    let delay = backoff.next_delay();
                    if !may_wait(&backoff, delay) {
                        return Err(e);
                    }
                    tracing::warn!("{e}; retrying in {}", crate::error::humanize(delay));
                    tokio::time::sleep(delay).await;
                    continue;
                }
                other => other?,
            };
            let status = resp.status();
            if matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                let delay = retry_after_or(resp.headers(), backoff.next_delay());
                if may_wait(&backoff, delay) {
                    tracing::warn!(
                        "kick-off: HTTP {status} (another export running?), retrying in {}",
                        crate::error::humanize(delay)
                    );
                    tokio::time::sleep(delay).await;
                    continue;
                }
            }
            if status.is_success() {
                let location = resp
                    .headers()
                    .get(CONTENT_LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let final_url = resp.url().clone();
                return match location.and_then(|l| final_url.join(l.trim()).ok()) {
                    Some(status_url) => Ok(status_url),
                    None => Err(Error::Rejected {
                        status: status.as_u16(),
                        message: "the answer has no Content-Location status URL (KR1)".into(),
                    }),
                };
            }
            let body = resp.bytes().await.unwrap_or_default();
            return Err(Error::Rejected {
                status: status.as_u16(),
                message: body_message(&body, status),
            });
        }
    }
}

/// One line describing an error body: the OperationOutcome's diagnostics (KR2), else the start
/// of the body, else the status reason.
pub(crate) fn body_message(body: &[u8], status: StatusCode) -> String {
    let reason = || status.canonical_reason().unwrap_or("error").to_string();
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        if let Some(d) = fhir_bulk_spec::outcome::diagnostics(&v) {
            return d;
        }
        if let Some(codes) = v.get("issue").and_then(Value::as_array) {
            let codes: Vec<&str> = codes
                .iter()
                .filter_map(|i| i.get("code").and_then(Value::as_str))
                .collect();
            if !codes.is_empty() {
                return format!("{} (issue code {})", reason(), codes.join(", "));
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        reason()
    } else if line.chars().count() > 200 {
        format!("{}…", line.chars().take(200).collect::<String>())
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Url {
        Url::parse("https://ehr.example/r4/3f2a-tenant/").unwrap()
    }

    /// CL3, P1, P2, P8a: `_outputFormat` always, everything percent-encoded, base path kept (V8).
    #[test]
    fn get_query_is_encoded_cl3_p8a() {
        let req = ExportRequest {
            level: Level::Group("g-1".into()),
            types: vec!["Patient".into(), "MedicationRequest".into()],
            type_filters: vec!["MedicationRequest?status=completed&date=gt2018-07-01".into()],
            elements: vec!["id".into(), "meta".into()],
            until: Some("2024-01-01T00:00:00+02:00".into()),
            ..Default::default()
        };
        let k = Kickoff::build(&base(), &req, Some("2020-01-01T00:00:00+01:00"), false);
        assert_eq!(k.method, Method::GET);
        assert_eq!(
            k.url.as_str(),
            "https://ehr.example/r4/3f2a-tenant/Group/g-1/$export?_outputFormat=application%2Ffhir%2Bndjson\
             &_type=Patient%2CMedicationRequest&_since=2020-01-01T00%3A00%3A00%2B01%3A00\
             &_until=2024-01-01T00%3A00%3A00%2B02%3A00\
             &_typeFilter=MedicationRequest%3Fstatus%3Dcompleted%26date%3Dgt2018-07-01&_elements=id%2Cmeta"
        );
        assert_eq!(k.prefer, "respond-async");
    }

    /// K8: POST value types; P6 patient forces POST.
    #[test]
    fn post_parameters_use_k8_value_types() {
        let req = ExportRequest {
            level: Level::Patient,
            types: vec!["Observation".into()],
            patients: vec!["p1".into(), "Patient/p2".into()],
            until: Some("2024-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        assert!(req.uses_post());
        let k = Kickoff::build(&base(), &req, Some("2020-01-01T00:00:00Z"), true);
        assert_eq!(k.method, Method::POST);
        assert_eq!(
            k.url.as_str(),
            "https://ehr.example/r4/3f2a-tenant/Patient/$export"
        );
        assert_eq!(k.prefer, "respond-async, handling=lenient");
        let p = &k.body.as_ref().unwrap()["parameter"];
        assert_eq!(
            p[0],
            json!({"name":"_outputFormat","valueString":"application/fhir+ndjson"})
        );
        assert_eq!(p[1], json!({"name":"_type","valueString":"Observation"}));
        assert_eq!(
            p[2],
            json!({"name":"_since","valueInstant":"2020-01-01T00:00:00Z"})
        );
        assert_eq!(
            p[3],
            json!({"name":"_until","valueInstant":"2024-01-01T00:00:00Z"})
        );
        assert_eq!(
            p[4],
            json!({"name":"patient","valueReference":{"reference":"Patient/p1"}})
        );
        assert_eq!(
            p[5],
            json!({"name":"patient","valueReference":{"reference":"Patient/p2"}})
        );
    }

    #[test]
    fn validation_catches_usage_errors_t5_p6() {
        let bad_since = ExportRequest {
            since: Some(Since::At("2020-01-01".into())),
            ..Default::default()
        };
        assert!(matches!(bad_since.validate(), Err(Error::Usage(_))));
        let system_patient = ExportRequest {
            patients: vec!["p".into()],
            ..Default::default()
        };
        assert!(system_patient.validate().is_err());
        let bad_type = ExportRequest {
            types: vec!["../x".into()],
            ..Default::default()
        };
        assert!(bad_type.validate().is_err());
        let bad_filter = ExportRequest {
            type_filters: vec!["status=active".into()],
            ..Default::default()
        };
        assert!(bad_filter.validate().is_err());
        assert!(
            ExportRequest {
                since: Some(Since::Auto),
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn error_bodies_become_one_line() {
        let oo = br#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"bad _type"}]}"#;
        assert_eq!(body_message(oo, StatusCode::BAD_REQUEST), "bad _type");
        assert_eq!(
            body_message(
                b"<html>\n<b>Bad\ngateway</b></html>",
                StatusCode::BAD_GATEWAY
            ),
            "<html> <b>Bad gateway</b></html>"
        );
        assert_eq!(body_message(b"", StatusCode::FORBIDDEN), "Forbidden");
    }
}
