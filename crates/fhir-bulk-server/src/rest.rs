//! The FHIR REST surface users need around export: read, create, update, delete, the
//! transaction/batch endpoint, and search of Patient and Group (G2).
//!
//! Every write goes through the store's validation ([`Write::put`]); a Bundle is applied in
//! one transaction, so a failing entry leaves nothing written.

use crate::app::AppState;
use crate::auth::Caller;
use crate::base::Base;
use crate::body::Body;
use crate::error::ApiError;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_bulk_spec::bundle::{self, EntryAction};
use fhir_bulk_spec::instant::Instant;
use fhir_bulk_spec::resource_type::is_resource_type;
use fhir_bulk_spec::scope::Permissions;
use fhir_bulk_store::{SearchQuery, StoreError, Write, WriteResult};
use serde_json::Value;

/// Default and largest `_count` of a search page.
const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 1000;

fn known_type(t: &str) -> Result<(), ApiError> {
    if is_resource_type(t) {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "'{t}' is not an R4 resource type"
        )))
    }
}

fn fhir_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(fhir_bulk_spec::FHIR_JSON),
    );
    resp
}

/// The version of a resource a response is about.
struct Version<'a> {
    resource_type: &'a str,
    id: &'a str,
    version: i64,
    last_updated: Instant,
}

/// Adds `ETag`, `Last-Modified` and (for writes) `Location` of a version.
fn version_headers(mut resp: Response, base: &Base, v: Version<'_>, location: bool) -> Response {
    let h = resp.headers_mut();
    if let Ok(val) = HeaderValue::from_str(&format!("W/\"{}\"", v.version)) {
        h.insert(header::ETAG, val);
    }
    if let Ok(val) =
        HeaderValue::from_str(&httpdate::fmt_http_date(v.last_updated.to_offset().into()))
    {
        h.insert(header::LAST_MODIFIED, val);
    }
    if location {
        let url = base.join(&format!(
            "{}/{}/_history/{}",
            v.resource_type, v.id, v.version
        ));
        if let Ok(val) = HeaderValue::from_str(&url) {
            h.insert(header::LOCATION, val);
        }
    }
    resp
}

/// Writes one resource and answers it as stored, with its version headers (201 if created).
async fn put_one(state: &AppState, base: &Base, resource: Value) -> Result<Response, ApiError> {
    let write = Write::put(resource)?;
    let r = single(state.store.write(&base.tenant, vec![write]).await?)?;
    let status = if r.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let resp = fhir_response(status, r.json.clone().unwrap_or_default());
    let v = Version {
        resource_type: &r.resource_type,
        id: &r.id,
        version: r.version,
        last_updated: r.last_updated,
    };
    Ok(version_headers(resp, base, v, true))
}

/// Parses a request body as a JSON resource (415/400 with a clear message otherwise).
fn parse_resource(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime != "application/fhir+json"
            && mime != "application/json"
            && mime != "application/json+fhir"
        {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Content-Type '{ct}' is not supported; send application/fhir+json"
            )));
        }
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "the body must be a JSON object (a FHIR resource)".into(),
        ));
    }
    Ok(v)
}

/// `GET [base]/{type}/{id}`.
pub async fn read(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    Path((rt, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    known_type(&rt)?;
    caller.require(&rt, Permissions::READ, "read")?;
    let r = state
        .store
        .read(&base.tenant, &rt, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{rt}/{id} does not exist")))?;
    let Some(json) = r.json else {
        return Err(ApiError::Gone(format!("{rt}/{id} was deleted")));
    };
    let resp = fhir_response(StatusCode::OK, json);
    let v = Version {
        resource_type: &rt,
        id: &id,
        version: r.version,
        last_updated: r.last_updated,
    };
    Ok(version_headers(resp, &base, v, false))
}

/// `PUT [base]/{type}/{id}`: create or update.
pub async fn update(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    known_type(&rt)?;
    require_put(&state, &base, &caller, &rt, &id).await?;
    let mut resource = parse_resource(&headers, &body)?;
    check_type(&resource, &rt)?;
    match resource.get("id") {
        None => resource["id"] = Value::String(id.clone()),
        Some(Value::String(b)) if *b == id => {}
        Some(b) => {
            return Err(ApiError::BadRequest(format!(
                "the resource id {b} differs from the id '{id}' in the URL"
            )));
        }
    }
    put_one(&state, &base, resource).await
}

/// `POST [base]/{type}`: create with a server-assigned id.
pub async fn create(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    Path(rt): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    known_type(&rt)?;
    caller.require(&rt, Permissions::CREATE, "create")?;
    let mut resource = parse_resource(&headers, &body)?;
    check_type(&resource, &rt)?;
    resource["id"] = Value::String(uuid::Uuid::new_v4().to_string());
    put_one(&state, &base, resource).await
}

/// `DELETE [base]/{type}/{id}`: leaves a tombstone (reported by `_since` exports).
pub async fn delete(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    Path((rt, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    known_type(&rt)?;
    caller.require(&rt, Permissions::DELETE, "delete")?;
    let write = Write::delete(&rt, &id)?;
    state.store.write(&base.tenant, vec![write]).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A PUT creates or updates: it needs `u` on an existing resource and `c` on a new one.
async fn require_put(
    state: &AppState,
    base: &Base,
    caller: &Caller,
    rt: &str,
    id: &str,
) -> Result<(), ApiError> {
    if caller.can(rt, Permissions::CREATE.union(Permissions::UPDATE)) {
        return Ok(());
    }
    let exists = state
        .store
        .read(&base.tenant, rt, id)
        .await?
        .is_some_and(|r| !r.deleted);
    if exists {
        caller.require(rt, Permissions::UPDATE, "update")
    } else {
        caller.require(rt, Permissions::CREATE, "create")
    }
}

/// The scope one Bundle entry needs (as if it were sent on its own).
async fn require_entry(
    state: &AppState,
    base: &Base,
    caller: &Caller,
    action: &EntryAction,
) -> Result<(), ApiError> {
    match action {
        EntryAction::Put { resource, created } => {
            let rt = resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let id = resource
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if *created {
                caller.require(rt, Permissions::CREATE, "create")
            } else {
                require_put(state, base, caller, rt, id).await
            }
        }
        EntryAction::Delete { resource_type, .. } => {
            caller.require(resource_type, Permissions::DELETE, "delete")
        }
    }
}

fn check_type(resource: &Value, rt: &str) -> Result<(), ApiError> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == rt => Ok(()),
        Some(t) => Err(ApiError::BadRequest(format!(
            "the body is a {t}, but the URL is for {rt}"
        ))),
        None => Err(ApiError::BadRequest(
            "the resource has no resourceType".into(),
        )),
    }
}

fn single(mut results: Vec<WriteResult>) -> Result<WriteResult, ApiError> {
    results
        .pop()
        .ok_or_else(|| ApiError::Internal("the store returned no write result".into()))
}

/// `POST [base]` with a `transaction` or `batch` Bundle, applied atomically.
pub async fn transaction(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let bundle_value = parse_resource(&headers, &body)?;
    if bundle_value.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::BadRequest(
            "POST to the base takes a transaction or batch Bundle".into(),
        ));
    }
    let kind = bundle::bundle_type(&bundle_value)
        .unwrap_or_default()
        .to_string();
    if kind != "transaction" && kind != "batch" {
        return Err(ApiError::BadRequest(format!(
            "Bundle type '{kind}' cannot be POSTed to the base; use transaction or batch"
        )));
    }
    let mut new_id = || uuid::Uuid::new_v4().to_string();
    let actions = bundle::entries(&bundle_value, &mut new_id)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    for action in &actions {
        require_entry(&state, &base, &caller, action).await?;
    }
    let writes = actions
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            match a {
                EntryAction::Put { resource, .. } => Write::put(resource),
                EntryAction::Delete { resource_type, id } => Write::delete(&resource_type, &id),
            }
            .map_err(|e| match e {
                StoreError::Invalid(m) => ApiError::BadRequest(format!("Bundle entry {i}: {m}")),
                other => other.into(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let results = state.store.write(&base.tenant, writes).await?;
    let entries: Vec<Value> = results
        .iter()
        .map(|r| {
            let status = match (&r.json, r.created) {
                (None, _) => "204 No Content",
                (Some(_), true) => "201 Created",
                (Some(_), false) => "200 OK",
            };
            let mut response =
                serde_json::json!({"status": status, "lastModified": r.last_updated.to_string()});
            if r.json.is_some() {
                response["location"] = Value::String(format!(
                    "{}/{}/_history/{}",
                    r.resource_type, r.id, r.version
                ));
                response["etag"] = Value::String(format!("W/\"{}\"", r.version));
            }
            serde_json::json!({"response": response})
        })
        .collect();
    let out = serde_json::json!({"resourceType": "Bundle", "type": format!("{kind}-response"), "entry": entries});
    Ok(fhir_response(StatusCode::OK, out.to_string().into_bytes()))
}

/// `GET [base]/Patient` and `GET [base]/Group` (G2): `_id`, `identifier`, `name` (Group),
/// `_count`, `_summary=count`, paged with `_offset`.
pub async fn search(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    Path(rt): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    known_type(&rt)?;
    caller.require(&rt, Permissions::SEARCH, "search")?;
    if rt != "Patient" && rt != "Group" {
        return Err(ApiError::BadRequest(format!(
            "search is supported on Patient and Group only; use $export for {rt}"
        )));
    }
    let mut q = SearchQuery {
        resource_type: rt.clone(),
        count: DEFAULT_COUNT,
        ..Default::default()
    };
    let mut summary_count = false;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (name, value) in
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()).into_owned()
    {
        let list = || {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        };
        match name.as_str() {
            "_id" => q.ids.extend(list()),
            "identifier" => q
                .identifiers
                .extend(list().map(|v| match v.split_once('|') {
                    Some(("", val)) => (Some(String::new()), val.to_string()),
                    Some((sys, val)) => (Some(sys.to_string()), val.to_string()),
                    None => (None, v),
                })),
            "name" if rt == "Group" => q.names.extend(list()),
            "_count" => {
                q.count = value
                    .parse::<usize>()
                    .map_err(|_| ApiError::BadRequest(format!("_count '{value}' is not a number")))?
                    .min(MAX_COUNT);
            }
            "_offset" => {
                q.offset = value.parse().map_err(|_| {
                    ApiError::BadRequest(format!("_offset '{value}' is not a number"))
                })?;
                continue;
            }
            "_summary" if value == "count" => summary_count = true,
            "_format" => continue,
            other => {
                return Err(ApiError::BadRequest(format!(
                    "search parameter '{other}' is not supported on {rt} (supported: _id, identifier{}, _count, _summary=count)",
                    if rt == "Group" { ", name" } else { "" }
                )));
            }
        }
        kept.push((name, value));
    }
    if summary_count {
        q.count = 0;
    }
    let page = state.store.search(&base.tenant, q.clone()).await?;
    let link = |offset: usize| {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &kept {
            ser.append_pair(k, v);
        }
        ser.append_pair("_offset", &offset.to_string());
        format!("{}?{}", base.join(&rt), ser.finish())
    };
    let mut links = vec![serde_json::json!({"relation": "self", "url": link(q.offset)})];
    if q.count > 0 && (q.offset + q.count) < page.total as usize {
        links.push(serde_json::json!({"relation": "next", "url": link(q.offset + q.count)}));
    }
    if q.count > 0 && q.offset > 0 {
        links.push(serde_json::json!({"relation": "previous", "url": link(q.offset.saturating_sub(q.count))}));
    }
    // Entries embed the stored bytes as they are (no re-serialisation).
    let mut out = format!(
        "{{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"total\":{},\"link\":{},\"entry\":[",
        page.total,
        Value::Array(links)
    )
    .into_bytes();
    for (i, json) in page.resources.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let id = stored_id(json);
        out.extend_from_slice(
            format!(
                "{{\"fullUrl\":{},\"resource\":",
                Value::String(base.join(&format!("{rt}/{id}")))
            )
            .as_bytes(),
        );
        out.extend_from_slice(json);
        out.extend_from_slice(b",\"search\":{\"mode\":\"match\"}}");
    }
    out.extend_from_slice(b"]}");
    Ok(fhir_response(StatusCode::OK, out))
}

/// The `id` of a stored resource, read without building the rest: a Group's `member` list can
/// be megabytes (100,000 members: 8 MB, which parsed into a `Value` took the server's RSS
/// from 40 to 117 MB for one search).
fn stored_id(json: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: Option<std::borrow::Cow<'a, str>>,
    }
    serde_json::from_slice::<Id<'_>>(json)
        .ok()
        .and_then(|r| r.id)
        .map(std::borrow::Cow::into_owned)
        .unwrap_or_default()
}
