//! `POST [base]/auth/token`: the SMART Backend Services token endpoint (§15).
//!
//! `grant_type=client_credentials`, with the client authenticated by one of:
//! - `private_key_jwt` (§14): `client_assertion_type` jwt-bearer and a `client_assertion`
//!   signed RS384 or ES384 with a key of the client's registered JWKS (by value or URL);
//! - `client_secret_basic`: HTTP Basic with the client id and secret (RFC 6749 §2.3.1);
//! - `client_secret_post`: `client_id` and `client_secret` form fields.
//!
//! The answer is `access_token`, `token_type: bearer`, `expires_in` and the granted `scope`
//! (requested ∩ registered, [`fhir_bulk_spec::scope::grant`]) with `Cache-Control: no-store`
//! (TK3). Errors are RFC 6749 §5.2 JSON, not OperationOutcome: `invalid_request`,
//! `unsupported_grant_type`, `invalid_scope` (400) and `invalid_client` (401, for every
//! authentication failure, J5). Each carries an `error_description` that says what to fix;
//! none quotes the assertion or the secret, and the refusal is logged with the same words.

use super::assertion::{self, ASSERTION_TYPE, CLOCK_SKEW_SECONDS};
use super::jwks::{Fetched, NoKey, select_key};
use super::secret::{Secret, verify_client_secret};
use crate::app::AppState;
use crate::base::Base;
use crate::error::ApiError;
use crate::metrics::TokenFailure;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use fhir_bulk_spec::instant::Instant;
use fhir_bulk_spec::scope::{ScopeSet, grant};
use fhir_bulk_store::{Client, Credential};
use serde_json::{Value, json};
use std::sync::Arc;

/// An RFC 6749 §5.2 error answer.
#[derive(Debug)]
pub struct TokenError {
    status: StatusCode,
    /// The `error` code.
    pub error: &'static str,
    /// The `error_description`: what was wrong, never a credential.
    pub description: String,
    /// The client tried HTTP Basic: a 401 must then challenge with `Basic` (RFC 6749 §5.2).
    basic: bool,
    /// The metrics label: `error`, or a finer reason (unknown client, replay).
    pub reason: TokenFailure,
}

impl TokenError {
    fn invalid_request(d: impl Into<String>) -> TokenError {
        TokenError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: d.into(),
            basic: false,
            reason: TokenFailure::InvalidRequest,
        }
    }

    fn invalid_client(d: impl Into<String>) -> TokenError {
        TokenError {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: d.into(),
            basic: false,
            reason: TokenFailure::InvalidClient,
        }
    }

    fn invalid_scope(d: impl Into<String>) -> TokenError {
        TokenError {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_scope",
            description: d.into(),
            basic: false,
            reason: TokenFailure::InvalidScope,
        }
    }

    fn server_error() -> TokenError {
        TokenError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: "server_error",
            description: "an internal error occurred; the server log has the details".into(),
            basic: false,
            reason: TokenFailure::ServerError,
        }
    }
}

impl From<ApiError> for TokenError {
    fn from(e: ApiError) -> Self {
        tracing::error!(cause = %e, "token endpoint failed");
        TokenError::server_error()
    }
}

impl From<fhir_bulk_store::StoreError> for TokenError {
    fn from(e: fhir_bulk_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut resp = (self.status, body.to_string()).into_response();
        let h = resp.headers_mut();
        no_store(h);
        if self.status == StatusCode::UNAUTHORIZED && self.basic {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"fhir-bulk\""),
            );
        }
        resp
    }
}

fn no_store(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// How the client authenticates in this request.
enum ClientAuth {
    Assertion {
        assertion: Secret,
        form_client_id: Option<String>,
    },
    Secret {
        client_id: String,
        secret: Secret,
        basic: bool,
    },
}

/// The form fields, each at most once (RFC 6749 §3.2). Values stay out of `Debug`.
struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Result<Form, TokenError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(TokenError::invalid_request(format!(
                    "the parameter '{k}' is sent more than once"
                )));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Form(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// `POST [base]/auth/token`.
pub async fn token(
    State(state): State<AppState>,
    base: Base,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut client_hint: Option<String> = None;
    match issue(&state, &base, &headers, &body, &mut client_hint).await {
        Ok(resp) => resp,
        Err(e) => {
            state.metrics.token_failure(e.reason);
            // The description is the whole story; it never holds a credential.
            tracing::info!(
                client_id = client_hint.as_deref().unwrap_or("-"),
                error = e.error,
                description = %e.description,
                "token request refused"
            );
            e.into_response()
        }
    }
}

async fn issue(
    state: &AppState,
    base: &Base,
    headers: &HeaderMap,
    body: &[u8],
    client_hint: &mut Option<String>,
) -> Result<Response, TokenError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
    {
        return Err(TokenError::invalid_request(
            "the token request must be a form: Content-Type: application/x-www-form-urlencoded (TK1)",
        ));
    }
    let form = Form::parse(body)?;
    match form.get("grant_type") {
        None => {
            return Err(TokenError::invalid_request(
                "grant_type is missing; send grant_type=client_credentials",
            ));
        }
        Some("client_credentials") => {}
        Some(other) => {
            return Err(TokenError {
                status: StatusCode::BAD_REQUEST,
                error: "unsupported_grant_type",
                description: format!(
                    "grant_type '{other}' is not supported; this server issues client_credentials tokens only"
                ),
                basic: false,
                reason: TokenFailure::UnsupportedGrantType,
            });
        }
    }
    let auth = client_auth(headers, &form)?;
    let client = match &auth {
        ClientAuth::Assertion {
            assertion,
            form_client_id,
        } => {
            let client = verify_assertion(state, base, assertion.expose(), client_hint).await?;
            if form_client_id.as_deref().is_some_and(|id| id != client.id) {
                return Err(TokenError::invalid_client(
                    "the client_id field differs from the assertion's iss",
                ));
            }
            client
        }
        ClientAuth::Secret {
            client_id,
            secret,
            basic,
        } => {
            *client_hint = Some(client_id.clone());
            lookup_secret_client(state, base, client_id, secret)
                .await
                .map_err(|e| TokenError { basic: *basic, ..e })?
        }
    };

    // Scopes are looked at only once the client is known (TK2).
    let requested = form.get("scope").ok_or_else(|| {
        TokenError::invalid_scope(
            "scope is missing; ask for the scopes you need, e.g. scope=system/*.rs (TK1)",
        )
    })?;
    let allowed = ScopeSet::parse_registered(&client.scopes).map_err(|e| {
        tracing::error!(client_id = %client.id, error = %e, "a registered client has unreadable scopes");
        TokenError::invalid_scope("this client's registered scopes cannot be read; ask the administrator to fix them")
    })?;
    let g = grant(requested, &allowed);
    if g.granted.is_empty() {
        let why: Vec<String> = g.refused.iter().map(ToString::to_string).collect();
        return Err(TokenError::invalid_scope(format!(
            "no requested scope can be granted: {}",
            why.join("; ")
        )));
    }
    let scope = g.granted.to_string();
    let lifetime = state.config.token_lifetime;
    let token = state
        .auth
        .tokens
        .issue(state.store.as_ref(), base, &client.id, &scope, lifetime)
        .await?;
    tracing::info!(client_id = %client.id, scope = %scope, "access token issued");
    let body = json!({
        "access_token": token.expose(),
        "token_type": "bearer",
        "expires_in": lifetime.as_secs(),
        "scope": scope,
    });
    let mut resp = (StatusCode::OK, body.to_string()).into_response();
    no_store(resp.headers_mut());
    Ok(resp)
}

/// Finds the one authentication method of the request; two at once is `invalid_request`.
fn client_auth(headers: &HeaderMap, form: &Form) -> Result<ClientAuth, TokenError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, b64)| b64.trim().to_string());
    let assertion_type = form.get("client_assertion_type");
    let assertion = form.get("client_assertion");
    let secret = form.get("client_secret");
    let methods = [
        basic.is_some(),
        assertion_type.is_some() || assertion.is_some(),
        secret.is_some(),
    ];
    if methods.iter().filter(|m| **m).count() > 1 {
        return Err(TokenError::invalid_request(
            "use one client authentication method: a client_assertion, HTTP Basic, or client_secret",
        ));
    }
    if let Some(b64) = basic {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                basic_error("the Basic credentials are not base64 of client_id:client_secret")
            })?;
        let (id, secret) = decoded.split_once(':').ok_or_else(|| {
            basic_error("the Basic credentials have no ':' between id and secret")
        })?;
        // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
        return Ok(ClientAuth::Secret {
            client_id: form_decode(id),
            secret: Secret::new(form_decode(secret)),
            basic: true,
        });
    }
    if assertion_type.is_some() || assertion.is_some() {
        if assertion_type != Some(ASSERTION_TYPE) {
            return Err(TokenError::invalid_request(format!(
                "client_assertion_type must be {ASSERTION_TYPE}"
            )));
        }
        let assertion =
            assertion.ok_or_else(|| TokenError::invalid_request("client_assertion is missing"))?;
        return Ok(ClientAuth::Assertion {
            assertion: Secret::new(assertion),
            form_client_id: form.get("client_id").map(str::to_string),
        });
    }
    if let Some(secret) = secret {
        let id = form
            .get("client_id")
            .ok_or_else(|| TokenError::invalid_request("client_secret needs a client_id"))?;
        return Ok(ClientAuth::Secret {
            client_id: id.to_string(),
            secret: Secret::new(secret),
            basic: false,
        });
    }
    Err(TokenError::invalid_client(
        "no client authentication: send a client_assertion (private_key_jwt), HTTP Basic credentials, or client_id and client_secret",
    ))
}

fn basic_error(d: &str) -> TokenError {
    TokenError {
        basic: true,
        ..TokenError::invalid_client(d)
    }
}

fn form_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn lookup_secret_client(
    state: &AppState,
    base: &Base,
    client_id: &str,
    secret: &Secret,
) -> Result<Client, TokenError> {
    let client = state
        .store
        .client(&base.tenant, client_id)
        .await?
        .ok_or_else(|| TokenError {
            reason: TokenFailure::UnknownClient,
            ..TokenError::invalid_client(format!("client '{client_id}' is not registered"))
        })?;
    match &client.credential {
        Credential::SecretHash(hash) if verify_client_secret(secret, hash) => Ok(client),
        Credential::SecretHash(_) => Err(TokenError::invalid_client(format!(
            "wrong client secret for client '{client_id}'"
        ))),
        _ => Err(TokenError::invalid_client(format!(
            "client '{client_id}' is registered with a public key: authenticate with a client_assertion (private_key_jwt)"
        ))),
    }
}

/// The client an assertion proves to be, after every check of §14 and the replay cache.
async fn verify_assertion(
    state: &AppState,
    base: &Base,
    assertion: &str,
    client_hint: &mut Option<String>,
) -> Result<Client, TokenError> {
    let bad = |d: String| TokenError::invalid_client(d);
    let unverified = assertion::parse(assertion).map_err(bad)?;
    let client_id = assertion::issuer(&unverified).map_err(bad)?.to_string();
    *client_hint = Some(client_id.clone());
    let client = state
        .store
        .client(&base.tenant, &client_id)
        .await?
        .ok_or_else(|| TokenError {
            reason: TokenFailure::UnknownClient,
            ..bad(format!(
                "client '{client_id}' (the assertion's iss) is not registered"
            ))
        })?;

    // J4: the keys, by value or from the registered URL; a `jku` must be that URL.
    let (url, fetched) = match &client.credential {
        Credential::Jwks(text) => {
            if unverified.jku.is_some() {
                return Err(bad(
                    "the assertion has a jku header, but this client registered its keys by value"
                        .into(),
                ));
            }
            let jwks: Value = serde_json::from_str(text).map_err(|e| {
                ApiError::Internal(format!("client {client_id} has an unreadable JWKS: {e}"))
            })?;
            (
                None,
                Fetched {
                    jwks: Arc::new(jwks),
                    from_cache: false,
                },
            )
        }
        Credential::JwksUrl(url) => {
            if unverified.jku.as_deref().is_some_and(|jku| jku != url) {
                return Err(bad(format!(
                    "the assertion's jku is not the JWKS URL registered for client '{client_id}' (J4)"
                )));
            }
            let fetched = state.auth.jwks.get(url).await.map_err(bad)?;
            (Some(url), fetched)
        }
        Credential::SecretHash(_) => {
            return Err(bad(format!(
                "client '{client_id}' is registered with a client secret: authenticate with HTTP Basic or client_secret"
            )));
        }
    };
    let kid = unverified.kid.as_str();
    let selected = match (select_key(&fetched.jwks, Some(kid), unverified.alg), url) {
        // The client may have rotated its key since we cached its set.
        (Err(NoKey::Unknown), Some(url)) => {
            match state.auth.jwks.refetch(url, &fetched).await.map_err(bad)? {
                Some(newer) => select_key(&newer, Some(kid), unverified.alg),
                None => Err(NoKey::Unknown),
            }
        }
        (other, _) => other,
    };
    let alg = super::jwks::alg_name(unverified.alg);
    let key = selected.map_err(|e| match e {
        NoKey::Unknown => bad(format!("no registered key of client '{client_id}' has kid '{kid}' and fits alg {alg} (J4)")),
        NoKey::Ambiguous(n) => bad(format!("{n} registered keys of client '{client_id}' have kid '{kid}' and fit {alg}; kids must be unique (J4)")),
        NoKey::Bad(why) => bad(format!("the registered key '{kid}' of client '{client_id}' is unusable: {why}")),
    })?;
    assertion::verify_signature(assertion, &key, unverified.alg).map_err(bad)?;

    // J2, J3: only a correctly signed assertion gets to use up a jti.
    let token_url = base.join("auth/token");
    let now = Instant::now().unix_seconds();
    let checked = assertion::check_claims(&unverified.claims, &token_url, now).map_err(bad)?;
    let keep_until = Instant(0).plus_seconds(checked.exp + CLOCK_SKEW_SECONDS);
    if !state
        .store
        .record_jti(&base.tenant, &client.id, &checked.jti, keep_until)
        .await?
    {
        return Err(TokenError {
            reason: TokenFailure::Replay,
            ..bad("the assertion's jti was already used; sign a new assertion for every token request (J3)".into())
        });
    }
    Ok(client)
}
