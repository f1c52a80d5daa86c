//! `OperationOutcome`: the body of every 4xx/5xx the server sends (KR2, ST5, D2) and the
//! lines of the manifest's `error` files (M6).

use serde_json::{Value, json};

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The request failed.
    Error,
    /// Something was ignored or degraded, e.g. a parameter skipped under `handling=lenient` (K5).
    Warning,
    /// For the record.
    Information,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// Builds a one-issue OperationOutcome. `code` is from the FHIR `issue-type` value set
/// (`invalid`, `not-found`, `not-supported`, `security`, `throttled`, `exception`, `transient`…).
pub fn outcome(severity: Severity, code: &str, diagnostics: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": severity.as_str(),
            "code": code,
            "diagnostics": diagnostics,
        }]
    })
}

/// The `diagnostics` of every issue of an OperationOutcome, joined with "; ", for one-line
/// error messages. `None` when `v` is not an OperationOutcome or has no diagnostics or text.
pub fn diagnostics(v: &Value) -> Option<String> {
    if v.get("resourceType")?.as_str()? != "OperationOutcome" {
        return None;
    }
    let parts: Vec<String> = v
        .get("issue")?
        .as_array()?
        .iter()
        .filter_map(|i| {
            i.get("diagnostics")
                .and_then(Value::as_str)
                .or_else(|| i.pointer("/details/text").and_then(Value::as_str))
                .map(str::to_string)
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_reads_back() {
        let o = outcome(Severity::Error, "invalid", "bad _since");
        assert_eq!(o["resourceType"], "OperationOutcome");
        assert_eq!(o["issue"][0]["severity"], "error");
        assert_eq!(diagnostics(&o).as_deref(), Some("bad _since"));
    }

    #[test]
    fn reads_details_text_and_several_issues() {
        let o = json!({"resourceType":"OperationOutcome","issue":[
            {"severity":"error","code":"x","details":{"text":"one"}},
            {"severity":"error","code":"x","diagnostics":"two"}]});
        assert_eq!(diagnostics(&o).as_deref(), Some("one; two"));
        assert_eq!(diagnostics(&json!({"resourceType":"Patient"})), None);
    }
}
