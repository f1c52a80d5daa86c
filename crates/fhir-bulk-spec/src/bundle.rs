//! Bundles as input: `collection`, `transaction` and `batch` Bundles become a list of writes,
//! with `urn:uuid:` references resolved to `Type/id` (how Synthea and most generators link
//! the resources of one Bundle).
//!
//! We apply a `batch` atomically like a `transaction`: one bad entry refuses the Bundle, so
//! a load is never half-applied.

use crate::{id::is_valid_id, resource_type::is_resource_type};
use serde_json::Value;
use std::collections::HashMap;

/// What one entry asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum EntryAction {
    /// Create or update this resource (it has a valid `resourceType` and `id`).
    Put {
        /// The resource.
        resource: Value,
        /// True for a POST (create with a server-assigned id).
        created: bool,
    },
    /// Delete `resource_type/id`.
    Delete {
        /// Resource type.
        resource_type: String,
        /// Logical id.
        id: String,
    },
}

/// A Bundle that cannot be applied, naming the entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match .entry { Some(i) => format!("Bundle entry {i}: {}", .message), None => format!("Bundle: {}", .message) })]
pub struct BundleError {
    /// Index of the failing entry, if the problem is an entry's.
    pub entry: Option<usize>,
    /// What is wrong.
    pub message: String,
}

/// The Bundle's `type`, if it is one we take as input.
pub fn bundle_type(bundle: &Value) -> Option<&str> {
    bundle.get("type").and_then(Value::as_str)
}

/// Splits a Bundle into writes. `new_id` makes ids for created resources.
pub fn entries(
    bundle: &Value,
    new_id: &mut dyn FnMut() -> String,
) -> Result<Vec<EntryAction>, BundleError> {
    let top = |message: String| BundleError {
        entry: None,
        message,
    };
    let kind = bundle_type(bundle).ok_or_else(|| top("the Bundle has no type".into()))?;
    let is_transaction = match kind {
        "transaction" | "batch" => true,
        "collection" => false,
        other => {
            return Err(top(format!(
                "Bundle type '{other}' cannot be loaded; send a transaction, batch or collection Bundle"
            )));
        }
    };
    let empty = Vec::new();
    let items = match bundle.get("entry") {
        None => &empty,
        Some(Value::Array(a)) => a,
        Some(_) => return Err(top("Bundle.entry must be an array".into())),
    };
    let mut actions = Vec::with_capacity(items.len());
    let mut uuid_refs: HashMap<String, String> = HashMap::new();
    for (i, entry) in items.iter().enumerate() {
        let err = |message: String| BundleError {
            entry: Some(i),
            message,
        };
        let resource = entry.get("resource");
        let full_url = entry.get("fullUrl").and_then(Value::as_str);
        let (method, url) = if is_transaction {
            let req = entry
                .get("request")
                .ok_or_else(|| err("has no request".into()))?;
            let method = req
                .get("method")
                .and_then(Value::as_str)
                .ok_or_else(|| err("request has no method".into()))?;
            if req.get("ifNoneExist").is_some()
                || req.get("ifMatch").is_some()
                || req.get("ifNoneMatch").is_some()
            {
                return Err(err(
                    "conditional requests (ifNoneExist/ifMatch/ifNoneMatch) are not supported"
                        .into(),
                ));
            }
            let url = req
                .get("url")
                .and_then(Value::as_str)
                .ok_or_else(|| err("request has no url".into()))?;
            (
                method,
                Some(url.split('?').next().unwrap_or(url).trim_matches('/')),
            )
        } else {
            ("PUT-OR-POST", None)
        };
        let action = match method {
            "DELETE" => {
                let (t, id) = url
                    .and_then(|u| u.split_once('/'))
                    .ok_or_else(|| err("DELETE needs a url Type/id".into()))?;
                if !is_resource_type(t) || !is_valid_id(id) {
                    return Err(err(format!(
                        "DELETE url '{}' is not Type/id",
                        url.unwrap_or_default()
                    )));
                }
                EntryAction::Delete {
                    resource_type: t.into(),
                    id: id.into(),
                }
            }
            "PUT" | "POST" | "PUT-OR-POST" => {
                let mut resource = resource
                    .cloned()
                    .ok_or_else(|| err("has no resource".into()))?;
                let rt = match resource.get("resourceType").and_then(Value::as_str) {
                    Some(t) if is_resource_type(t) => t.to_string(),
                    Some(t) => return Err(err(format!("unknown resourceType '{t}'"))),
                    None => return Err(err("the resource has no resourceType".into())),
                };
                let body_id = resource
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let (id, created) = match (method, url) {
                    ("PUT", Some(u)) => {
                        let (t, id) = u
                            .split_once('/')
                            .ok_or_else(|| err(format!("PUT url '{u}' is not Type/id")))?;
                        if t != rt {
                            return Err(err(format!(
                                "PUT url '{u}' does not match resourceType {rt}"
                            )));
                        }
                        if body_id.as_deref().is_some_and(|b| b != id) {
                            return Err(err(format!(
                                "the resource id '{}' differs from the url id '{id}'",
                                body_id.unwrap_or_default()
                            )));
                        }
                        (id.to_string(), false)
                    }
                    ("POST", Some(u)) => {
                        if u != rt {
                            return Err(err(format!(
                                "POST url '{u}' does not match resourceType {rt}"
                            )));
                        }
                        (new_id(), true)
                    }
                    _ => match body_id {
                        Some(id) => (id, false),
                        None => (new_id(), true),
                    },
                };
                if !is_valid_id(&id) {
                    return Err(err(format!(
                        "invalid id '{id}': an id is 1 to 64 of A-Z a-z 0-9 - ."
                    )));
                }
                if let Some(u) = full_url.filter(|u| u.starts_with("urn:uuid:")) {
                    uuid_refs.insert(u.to_string(), format!("{rt}/{id}"));
                }
                resource["id"] = Value::String(id);
                EntryAction::Put { resource, created }
            }
            other => {
                return Err(err(format!(
                    "request method {other} is not supported in a loaded Bundle"
                )));
            }
        };
        actions.push(action);
    }
    if !uuid_refs.is_empty() {
        for a in &mut actions {
            if let EntryAction::Put { resource, .. } = a {
                resolve_references(resource, &uuid_refs);
            }
        }
    }
    Ok(actions)
}

/// Rewrites every `reference` that names a `urn:uuid:` fullUrl of the Bundle.
fn resolve_references(v: &mut Value, map: &HashMap<String, String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                if k == "reference" {
                    if let Value::String(s) = child
                        && let Some(r) = map.get(s.as_str())
                    {
                        *s = r.clone();
                    }
                } else {
                    resolve_references(child, map);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|c| resolve_references(c, map)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids() -> impl FnMut() -> String {
        let mut n = 0;
        move || {
            n += 1;
            format!("new-{n}")
        }
    }

    #[test]
    fn transaction_resolves_urn_uuid() {
        let b = json!({"resourceType":"Bundle","type":"transaction","entry":[
            {"fullUrl":"urn:uuid:aaa","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
            {"fullUrl":"urn:uuid:bbb","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:aaa"}},
             "request":{"method":"POST","url":"Observation"}},
            {"resource":{"resourceType":"Patient","id":"p9"},"request":{"method":"PUT","url":"Patient/p9"}},
            {"request":{"method":"DELETE","url":"Patient/old"}}]});
        let a = entries(&b, &mut ids()).unwrap();
        assert_eq!(a.len(), 4);
        let EntryAction::Put { resource, created } = &a[1] else {
            panic!()
        };
        assert!(created);
        assert_eq!(resource["subject"]["reference"], "Patient/new-1");
        assert_eq!(resource["id"], "new-2");
        assert_eq!(
            a[3],
            EntryAction::Delete {
                resource_type: "Patient".into(),
                id: "old".into()
            }
        );
    }

    #[test]
    fn collection_keeps_ids() {
        let b = json!({"resourceType":"Bundle","type":"collection","entry":[
            {"resource":{"resourceType":"Patient","id":"x"}},{"resource":{"resourceType":"Patient"}}]});
        let a = entries(&b, &mut ids()).unwrap();
        assert!(
            matches!(&a[0], EntryAction::Put { resource, created: false } if resource["id"] == "x")
        );
        assert!(
            matches!(&a[1], EntryAction::Put { resource, created: true } if resource["id"] == "new-1")
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let e = |b: Value| entries(&b, &mut ids()).unwrap_err().to_string();
        assert!(e(json!({"type":"searchset"})).contains("searchset"));
        let msg = e(
            json!({"type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"a"},
            "request":{"method":"PUT","url":"Patient/a"}},{"resource":{"resourceType":"Patient","id":"b"},
            "request":{"method":"PUT","url":"Patient/c"}}]}),
        );
        assert!(msg.starts_with("Bundle entry 1:"), "{msg}");
        assert!(msg.contains("differs"));
        assert!(
            e(json!({"type":"collection","entry":[{"resource":{"resourceType":"Nope","id":"a"}}]}))
                .contains("Nope")
        );
        assert!(e(json!({"type":"collection","entry":[{"resource":{"resourceType":"Patient","id":"a b"}}]})).contains("invalid id"));
        assert!(
            e(json!({"type":"batch","entry":[{"request":{"method":"GET","url":"Patient"}}]}))
                .contains("GET")
        );
    }
}
