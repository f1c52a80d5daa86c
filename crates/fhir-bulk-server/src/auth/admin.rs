//! The admin API for clients, off unless `serve --admin-token-file FILE` gives it a token:
//!
//! - `GET [base]/admin/clients`: the tenant's clients.
//! - `POST [base]/admin/clients`: register one; body `{"client_id", "client_name"?, "scope"?}`
//!   plus exactly one of `"jwks": {…}`, `"jwks_uri": "…"` or `"client_secret": true`.
//!   A generated secret is in the answer, once.
//! - `GET`/`DELETE [base]/admin/clients/{id}`: one client.
//! - `POST [base]/admin/clients/{id}/rotate`: a new secret (empty body, for a secret client)
//!   or a new `jwks`/`jwks_uri`/`client_secret: true`.
//!
//! Every request needs `Authorization: Bearer <admin token>`. The admin token is its own
//! credential, not a SMART token: no client scope can reach this API. Field names follow
//! RFC 7591 (dynamic registration metadata) so they read familiar.

use super::registry::{self, CredentialInput, Registered, Registration};
use super::secret::secrets_equal;
use crate::app::AppState;
use crate::base::Base;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_bulk_store::{Client, Credential};
use serde_json::{Value, json};

fn check_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.config.admin_token else {
        return Err(ApiError::NotFound(
            "the admin API is off; start the server with --admin-token-file to turn it on".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match given {
        Some(t) if secrets_equal(t, expected.expose()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized(
            "the admin token is not right".into(),
        )),
        None => Err(ApiError::Unauthorized(
            "the admin API needs Authorization: Bearer <admin token>".into(),
        )),
    }
}

/// A client as the admin API shows it; never a secret or its hash.
fn client_json(c: &Client) -> Value {
    let mut v = json!({
        "client_id": c.id,
        "client_name": c.name,
        "scope": c.scopes,
        "created": c.created_at.to_string(),
        "updated": c.updated_at.to_string(),
    });
    match &c.credential {
        Credential::Jwks(text) => {
            v["token_endpoint_auth_method"] = json!("private_key_jwt");
            v["jwks"] = serde_json::from_str(text).unwrap_or(Value::Null);
        }
        Credential::JwksUrl(url) => {
            v["token_endpoint_auth_method"] = json!("private_key_jwt");
            v["jwks_uri"] = json!(url);
        }
        Credential::SecretHash(_) => {
            v["token_endpoint_auth_method"] = json!("client_secret_basic");
        }
    }
    v
}

fn respond(status: StatusCode, body: Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn registered_json(r: &Registered) -> Value {
    let mut v = client_json(&r.client);
    if let Some(s) = &r.secret {
        v["client_secret"] = json!(s.expose());
        v["client_secret_note"] = json!("shown once: store it now; only its hash is kept");
    }
    v
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(ApiError::BadRequest(
            "the body must be a JSON object".into(),
        ))
    }
}

/// The credential fields of a body: at most one of `jwks`, `jwks_uri`, `client_secret: true`.
fn credential_input(v: &Value) -> Result<Option<CredentialInput>, ApiError> {
    let mut found = Vec::new();
    if let Some(j) = v.get("jwks") {
        found.push(CredentialInput::Jwks(j.clone()));
    }
    if let Some(u) = v.get("jwks_uri") {
        let u = u
            .as_str()
            .ok_or_else(|| ApiError::BadRequest("jwks_uri must be a string".into()))?;
        found.push(CredentialInput::JwksUrl(u.to_string()));
    }
    match v.get("client_secret") {
        None | Some(Value::Bool(false)) => {}
        Some(Value::Bool(true)) => found.push(CredentialInput::Secret),
        Some(_) => {
            return Err(ApiError::BadRequest(
                "client_secret must be true (the server generates secrets; it never takes one)"
                    .into(),
            ));
        }
    }
    if found.len() > 1 {
        return Err(ApiError::BadRequest(
            "give only one of jwks, jwks_uri and client_secret: true".into(),
        ));
    }
    Ok(found.pop())
}

fn str_field(v: &Value, name: &str) -> Result<Option<String>, ApiError> {
    match v.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::BadRequest(format!("{name} must be a string"))),
    }
}

/// `GET [base]/admin/clients`.
pub async fn list(
    State(state): State<AppState>,
    base: Base,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let clients = state.store.clients(&base.tenant).await?;
    Ok(respond(
        StatusCode::OK,
        Value::Array(clients.iter().map(client_json).collect()),
    ))
}

/// `POST [base]/admin/clients`.
pub async fn add(
    State(state): State<AppState>,
    base: Base,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let v = parse_body(&body)?;
    let id = str_field(&v, "client_id")?
        .ok_or_else(|| ApiError::BadRequest("client_id is required".into()))?;
    let credential = credential_input(&v)?.ok_or_else(|| {
        ApiError::BadRequest("give one of jwks, jwks_uri or client_secret: true".into())
    })?;
    let r = registry::register(
        state.store.as_ref(),
        Registration {
            tenant: base.tenant.clone(),
            id,
            name: str_field(&v, "client_name")?,
            scopes: str_field(&v, "scope")?,
            credential,
        },
    )
    .await?;
    Ok(respond(StatusCode::CREATED, registered_json(&r)))
}

/// `GET [base]/admin/clients/{id}`.
pub async fn get(
    State(state): State<AppState>,
    base: Base,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let c = state
        .store
        .client(&base.tenant, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no client '{id}'")))?;
    Ok(respond(StatusCode::OK, client_json(&c)))
}

/// `DELETE [base]/admin/clients/{id}`.
pub async fn remove(
    State(state): State<AppState>,
    base: Base,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    registry::remove(state.store.as_ref(), &base.tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST [base]/admin/clients/{id}/rotate`.
pub async fn rotate(
    State(state): State<AppState>,
    base: Base,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    check_admin(&state, &headers)?;
    let v = parse_body(&body)?;
    let r = registry::rotate(
        state.store.as_ref(),
        &base.tenant,
        &id,
        credential_input(&v)?,
    )
    .await?;
    Ok(respond(StatusCode::OK, registered_json(&r)))
}
