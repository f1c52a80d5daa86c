//! The completion manifest (M1–M9).
//!
//! The server writes [`Manifest`] as is. The client reads manifests from every vendor, so
//! [`Manifest::parse_lenient`] tolerates the quirks of V9: `requiresAccessToken` as a string,
//! missing `error`/`request`, `count` as a string, `outcome` (4.0 ballot) instead of `error`,
//! `extension` as an object or an array, and unknown fields.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A completion manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// M1: the instant the export's snapshot was taken; the next `_since`.
    pub transaction_time: String,
    /// M2: the kick-off URL (without parameters for POST).
    pub request: String,
    /// M3: whether downloads need the bearer token.
    pub requires_access_token: bool,
    /// M7: set when `organizeOutputBy` was honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_organized_by: Option<String>,
    /// M4: the data files.
    pub output: Vec<OutputFile>,
    /// M5: NDJSON of `transaction` Bundles of DELETE entries.
    #[serde(default)]
    pub deleted: Vec<OutputFile>,
    /// M6: NDJSON of OperationOutcomes.
    pub error: Vec<OutputFile>,
    /// M8: `next` page of a paged or partial manifest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link: Vec<Link>,
    /// M9: vendor extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension: Option<Value>,
}

/// One file of `output`, `deleted` or `error` (M4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputFile {
    /// The resource type of every line (absent when output is organized, M4/O2).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub resource_type: Option<String>,
    /// Absolute URL of the file.
    pub url: String,
    /// Number of resources in the file, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// (3.0) the file a split block continues in (O2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues_in_file: Option<String>,
}

/// A manifest link (M8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// `next`.
    pub relation: String,
    /// Absolute URL of the next manifest page.
    pub url: String,
}

/// Why a manifest could not be read even leniently.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not JSON, or not an object.
    #[error("the manifest is not a JSON object: {0}")]
    NotJson(String),
    /// A file entry has no `url`.
    #[error("manifest entry {index} of '{field}' has no url")]
    MissingUrl {
        /// `output`, `deleted` or `error`.
        field: &'static str,
        /// Position in the array.
        index: usize,
    },
}

impl Manifest {
    /// Reads a manifest as servers really send them (V9, M9, 4.0b `outcome`).
    pub fn parse_lenient(body: &[u8]) -> Result<Manifest, ManifestError> {
        let v: Value =
            serde_json::from_slice(body).map_err(|e| ManifestError::NotJson(e.to_string()))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ManifestError::NotJson("not an object".into()))?;
        let transaction_time = match obj.get("transactionTime") {
            Some(Value::String(s)) => s.clone(),
            // Old OpenEMR docs show an object; keep its text so the client can still record it.
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let requires_access_token = match obj.get("requiresAccessToken") {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            // Unknown: sending the token to our own server is the safe default; the client
            // still never sends it cross-origin.
            _ => true,
        };
        let files = |field: &'static str| -> Result<Vec<OutputFile>, ManifestError> {
            let Some(Value::Array(items)) = obj.get(field) else {
                return Ok(Vec::new());
            };
            items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    let url = item
                        .get("url")
                        .and_then(Value::as_str)
                        .ok_or(ManifestError::MissingUrl { field, index })?;
                    Ok(OutputFile {
                        resource_type: item.get("type").and_then(Value::as_str).map(str::to_string),
                        url: url.to_string(),
                        count: match item.get("count") {
                            Some(Value::Number(n)) => n.as_u64(),
                            Some(Value::String(s)) => s.trim().parse().ok(),
                            _ => None,
                        },
                        continues_in_file: item
                            .get("continuesInFile")
                            .and_then(Value::as_str)
                            .map(str::to_string),
                    })
                })
                .collect()
        };
        let mut error = files("error")?;
        error.extend(files("outcome")?);
        let link = match obj.get("link") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|l| {
                    Some(Link {
                        relation: l.get("relation")?.as_str()?.to_string(),
                        url: l.get("url")?.as_str()?.to_string(),
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        Ok(Manifest {
            transaction_time,
            request: obj
                .get("request")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            requires_access_token,
            output_organized_by: obj
                .get("outputOrganizedBy")
                .and_then(Value::as_str)
                .map(str::to_string),
            output: files("output")?,
            deleted: files("deleted")?,
            error,
            link,
            extension: obj.get("extension").cloned(),
        })
    }

    /// The `next` link, if this is one page of a paged manifest (M8).
    pub fn next_link(&self) -> Option<&str> {
        self.link
            .iter()
            .find(|l| l.relation == "next")
            .map(|l| l.url.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_our_own_manifest() {
        let m = Manifest {
            transaction_time: "2026-01-01T00:00:00.000000Z".into(),
            request: "http://x/fhir/$export".into(),
            requires_access_token: true,
            output_organized_by: None,
            output: vec![OutputFile {
                resource_type: Some("Patient".into()),
                url: "http://x/f/1".into(),
                count: Some(3),
                continues_in_file: None,
            }],
            deleted: vec![],
            error: vec![],
            link: vec![],
            extension: None,
        };
        let text = serde_json::to_vec(&m).unwrap();
        let v: Value = serde_json::from_slice(&text).unwrap();
        // M4/M6: output and error are always present, [] when empty.
        assert_eq!(v["error"], serde_json::json!([]));
        assert_eq!(v["output"][0]["type"], "Patient");
        assert_eq!(Manifest::parse_lenient(&text).unwrap(), m);
    }

    /// V9: string booleans, missing `error`/`request`, string counts, 4.0b `outcome`.
    #[test]
    fn tolerates_vendor_quirks_v9() {
        let body = br#"{"transactionTime":"2020-01-01T00:00:00Z","requiresAccessToken":"true",
            "output":[{"type":"Patient","url":"https://x/1","count":"7"}],
            "outcome":[{"type":"OperationOutcome","url":"https://x/e"}],"message":"hapi",
            "extension":[{"url":"u"}]}"#;
        let m = Manifest::parse_lenient(body).unwrap();
        assert!(m.requires_access_token);
        assert_eq!(m.request, "");
        assert_eq!(m.output[0].count, Some(7));
        assert_eq!(m.error.len(), 1);
        assert!(m.extension.is_some());
        let m = Manifest::parse_lenient(
            br#"{"transactionTime":"t","requiresAccessToken":false,"output":[]}"#,
        )
        .unwrap();
        assert!(!m.requires_access_token);
        assert!(m.error.is_empty());
    }

    #[test]
    fn rejects_entries_without_url() {
        let err = Manifest::parse_lenient(br#"{"output":[{"type":"Patient"}]}"#).unwrap_err();
        assert!(err.to_string().contains("output"));
        assert!(Manifest::parse_lenient(b"[]").is_err());
    }
}
