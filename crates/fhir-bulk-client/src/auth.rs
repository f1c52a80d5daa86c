//! Access tokens: SMART Backend Services (§13–§15) or a fixed bearer token.
//!
//! [`Auth`] hands out a valid token to every request and renews it before it expires (CL2:
//! `expires_in`, assumed 300 s when missing, V10), or at once after a 401. Renewal signs a new
//! assertion with a new `jti` each time (J2), and only one renewal runs at a time: parallel
//! downloads that all meet an expired token wait for the same new one instead of each asking
//! the token endpoint.

use crate::backoff::{Backoff, Timings, retry_after_or};
use crate::discovery::{self, SmartConfiguration, V1_SCOPE};
use crate::error::{Error, Phase, Result};
use crate::key::SigningKey;
use crate::secret::Secret;
use crate::transport::{describe, is_retryable_status, log_request};
use base64::Engine;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderValue};
use serde_json::Value;
use std::time::{Duration, Instant};
use url::Url;

/// How the client authenticates to the token endpoint (or skips it).
#[derive(Debug, Clone)]
pub enum Credentials {
    /// No `Authorization` header at all (open servers, local demos).
    None,
    /// A token obtained elsewhere (`--bearer`); never renewed, so a 401 is final.
    Bearer(Secret),
    /// `client_secret_basic` or `client_secret_post` (RFC 6749 §2.3.1).
    ClientSecret {
        /// The registered `client_id`.
        client_id: String,
        /// The client secret.
        secret: Secret,
        /// Where the secret goes.
        method: SecretMethod,
    },
    /// `private_key_jwt` with RS384 or ES384 (§14).
    PrivateKey {
        /// The registered `client_id` (`iss` and `sub` of the assertion).
        client_id: String,
        /// The signing key.
        key: SigningKey,
        /// Optional `jku` header: the JWKS URL registered for the client (J1).
        jku: Option<String>,
    },
}

/// Where a client secret is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretMethod {
    /// `Authorization: Basic` (`client_secret_basic`, the OAuth default).
    Basic,
    /// `client_id` and `client_secret` form fields (`client_secret_post`).
    Post,
}

/// Authentication settings of an export.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// The credentials.
    pub credentials: Credentials,
    /// Scopes to request, sent as given (V6). `None`: `system/*.rs`, falling back to
    /// `system/*.read` (CL1).
    pub scope: Option<String>,
    /// The token endpoint; `None` discovers it (§12).
    pub token_url: Option<Url>,
}

impl Default for AuthOptions {
    fn default() -> AuthOptions {
        AuthOptions {
            credentials: Credentials::None,
            scope: None,
            token_url: None,
        }
    }
}

/// The token a request carries, and which renewal produced it (to renew only once per 401 wave).
pub(crate) struct Bearer {
    pub value: Secret,
    pub generation: u64,
}

struct Token {
    value: Secret,
    renew_at: Instant,
}

#[derive(Default)]
struct TokenState {
    token: Option<Token>,
    /// Bumped by every renewal.
    generation: u64,
    token_url: Option<Url>,
    smart: Option<SmartConfiguration>,
    /// The scope in use, after any v1 fallback.
    scope: Option<String>,
}

/// Hands out tokens to [`crate::transport::Transport`].
pub(crate) struct Auth {
    options: AuthOptions,
    http: reqwest::Client,
    base: Url,
    timings: Timings,
    verbose: bool,
    /// A tokio mutex because it is held across the token request: that is what makes
    /// concurrent renewals wait for one another. Owned by the `Auth`; dropped with it.
    state: tokio::sync::Mutex<TokenState>,
}

/// `expires_in` when the server leaves it out (V10, CL2).
const DEFAULT_EXPIRES_IN: u64 = 300;

impl Auth {
    pub fn new(
        options: AuthOptions,
        http: reqwest::Client,
        base: Url,
        timings: Timings,
        verbose: bool,
    ) -> Auth {
        Auth {
            options,
            http,
            base,
            timings,
            verbose,
            state: tokio::sync::Mutex::new(TokenState::default()),
        }
    }

    /// Whether a fresh token can be had (not for `None` or a fixed bearer token).
    pub fn renewable(&self) -> bool {
        matches!(
            self.options.credentials,
            Credentials::ClientSecret { .. } | Credentials::PrivateKey { .. }
        )
    }

    /// The token to send now, renewed first if it is due.
    pub async fn bearer(&self) -> Result<Option<Bearer>> {
        match &self.options.credentials {
            Credentials::None => return Ok(None),
            Credentials::Bearer(token) => {
                return Ok(Some(Bearer {
                    value: token.clone(),
                    generation: 0,
                }));
            }
            _ => {}
        }
        let mut state = self.state.lock().await;
        let due = state
            .token
            .as_ref()
            .is_none_or(|t| Instant::now() >= t.renew_at);
        if due {
            self.renew(&mut state).await?;
        }
        let token = state.token.as_ref().expect("renew() sets a token or fails");
        Ok(Some(Bearer {
            value: token.value.clone(),
            generation: state.generation,
        }))
    }

    /// After a 401 with the token of `generation`: renew, unless another task already did.
    pub async fn renew_after_401(&self, generation: u64) -> Result<()> {
        let mut state = self.state.lock().await;
        if state.generation == generation {
            self.renew(&mut state).await?;
        }
        Ok(())
    }

    async fn renew(&self, state: &mut TokenState) -> Result<()> {
        if state.token_url.is_none() {
            state.token_url = match &self.options.token_url {
                Some(url) => Some(url.clone()),
                None => {
                    let smart =
                        discovery::discover(&self.http, &self.base, &self.timings, self.verbose)
                            .await?;
                    let url = smart.token_endpoint.clone();
                    state.smart = Some(smart);
                    Some(url)
                }
            };
        }
        let token_url = state.token_url.clone().expect("set above");
        let scope = match (&self.options.scope, &state.scope, &state.smart) {
            (Some(given), _, _) => given.clone(),
            (None, Some(in_use), _) => in_use.clone(),
            (None, None, Some(smart)) => smart.default_scope().to_string(),
            (None, None, None) => discovery::V2_SCOPE.to_string(),
        };
        let (token, scope) = self.request_token(&token_url, scope).await?;
        state.scope = Some(scope);
        state.token = Some(token);
        state.generation += 1;
        Ok(())
    }

    /// One token request with retries of transient failures; `invalid_scope` for the default
    /// v2 scope retries once with `system/*.read` (CL1).
    async fn request_token(&self, token_url: &Url, mut scope: String) -> Result<(Token, String)> {
        let mut backoff = Backoff::new(self.timings.retry_initial, self.timings.retry_max);
        let mut tried_v1 = false;
        loop {
            let last_try = backoff.attempts() >= self.timings.max_retries;
            let started = Instant::now();
            let resp = match self.post_token_request(token_url, &scope).await {
                Ok(resp) => resp,
                Err(e) if !last_try => {
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        "token request failed ({e}); retrying in {}",
                        crate::error::humanize(delay)
                    );
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let status = resp.status();
            if is_retryable_status(status) && !last_try {
                let delay = retry_after_or(resp.headers(), backoff.next_delay());
                tracing::warn!(
                    "token endpoint answered HTTP {status}; retrying in {}",
                    crate::error::humanize(delay)
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            let body = resp.bytes().await.map_err(|e| Error::Http {
                phase: Phase::Token,
                url: token_url.to_string(),
                message: describe(e),
                connect: false,
            })?;
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            if status.is_success() {
                let token = parse_token_response(&v, started).map_err(|error| Error::Token {
                    status: status.as_u16(),
                    error,
                    description: None,
                })?;
                if let Some(granted) = v.get("scope").and_then(Value::as_str)
                    && granted != scope
                {
                    // CL2: check the granted scope; fewer rights may mean fewer types exported.
                    tracing::warn!("requested scope '{scope}', granted '{granted}'");
                }
                return Ok((token, scope));
            }
            let error = v.get("error").and_then(Value::as_str).map(str::to_string);
            let description = v
                .get("error_description")
                .and_then(Value::as_str)
                .map(str::to_string);
            if error.as_deref() == Some("invalid_scope")
                && self.options.scope.is_none()
                && scope != V1_SCOPE
                && !tried_v1
            {
                tracing::info!(
                    "scope '{scope}' refused (invalid_scope); retrying with '{V1_SCOPE}' (SMART v1)"
                );
                scope = V1_SCOPE.to_string();
                tried_v1 = true;
                continue;
            }
            return Err(Error::Token {
                status: status.as_u16(),
                error: error.unwrap_or_else(|| {
                    format!(
                        "no OAuth error code in the answer ({})",
                        status.canonical_reason().unwrap_or("?")
                    )
                }),
                description,
            });
        }
    }

    async fn post_token_request(&self, token_url: &Url, scope: &str) -> Result<reqwest::Response> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("scope", scope.into()),
        ];
        let mut request = self
            .http
            .post(token_url.clone())
            .header(ACCEPT, "application/json");
        match &self.options.credentials {
            Credentials::PrivateKey {
                client_id,
                key,
                jku,
            } => {
                let assertion = key
                    .client_assertion(client_id, token_url.as_str(), jku.as_deref())
                    .map_err(|reason| Error::Key {
                        path: "(loaded key)".into(),
                        reason,
                    })?;
                form.push((
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion", assertion));
                // V10: some servers want it; harmless for the others.
                form.push(("client_id", client_id.clone()));
            }
            Credentials::ClientSecret {
                client_id,
                secret,
                method: SecretMethod::Basic,
            } => {
                // RFC 6749 §2.3.1: form-encode both parts before base64.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let pair = format!("{}:{}", enc(client_id), enc(secret.expose()));
                let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                let mut value = HeaderValue::from_str(&format!("Basic {b64}")).map_err(|_| {
                    Error::Usage("the client id or secret cannot be sent in a header".into())
                })?;
                value.set_sensitive(true);
                request = request.header(AUTHORIZATION, value);
            }
            Credentials::ClientSecret {
                client_id,
                secret,
                method: SecretMethod::Post,
            } => {
                form.push(("client_id", client_id.clone()));
                form.push(("client_secret", secret.expose().to_string()));
            }
            Credentials::None | Credentials::Bearer(_) => {
                unreachable!("only renewable credentials request tokens")
            }
        }
        log_request(
            self.verbose,
            format_args!("token request: POST {token_url} (scope {scope})"),
        );
        let resp = request.form(&form).send().await.map_err(|e| Error::Http {
            phase: Phase::Token,
            url: token_url.to_string(),
            connect: e.is_connect(),
            message: describe(e),
        })?;
        log_request(
            self.verbose,
            format_args!("token request: POST {token_url} -> {}", resp.status()),
        );
        Ok(resp)
    }
}

/// Reads a successful token response (TK3) leniently: `token_type` compared case-insensitively
/// (V10 `Bearer`), `expires_in` as a number or a string, 300 s when missing (V10).
fn parse_token_response(v: &Value, requested_at: Instant) -> Result<Token, String> {
    let access = v
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or("the answer has no access_token")?;
    if let Some(kind) = v.get("token_type").and_then(Value::as_str)
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(format!("unsupported token_type '{kind}' (expected bearer)"));
    }
    let expires_in = match v.get("expires_in") {
        Some(Value::Number(n)) => n.as_f64().map(|f| f.max(0.0) as u64),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or(DEFAULT_EXPIRES_IN);
    Ok(Token {
        value: Secret::new(access),
        renew_at: requested_at + renewal_lead(expires_in),
    })
}

/// When to renew a token that lives `expires_in` seconds: a fifth of its life early (at most a
/// minute), measured from when it was requested, so clock skew and slow requests are covered.
fn renewal_lead(expires_in: u64) -> Duration {
    let life = Duration::from_secs(expires_in);
    life - (life / 5).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renews_before_expiry_cl2() {
        assert_eq!(renewal_lead(300), Duration::from_secs(240));
        assert_eq!(renewal_lead(3600), Duration::from_secs(3540));
        assert_eq!(renewal_lead(10), Duration::from_secs(8));
        assert_eq!(renewal_lead(0), Duration::ZERO);
    }

    /// V10: `Bearer`, missing or string `expires_in`.
    #[test]
    fn token_quirks_v10() {
        let now = Instant::now();
        let t =
            parse_token_response(&json!({"access_token":"a","token_type":"Bearer"}), now).unwrap();
        assert_eq!(t.renew_at - now, renewal_lead(300));
        let t = parse_token_response(
            &json!({"access_token":"a","token_type":"bearer","expires_in":"3600"}),
            now,
        )
        .unwrap();
        assert_eq!(t.renew_at - now, renewal_lead(3600));
        assert!(
            parse_token_response(&json!({"access_token":"a","token_type":"mac"}), now).is_err()
        );
        assert!(parse_token_response(&json!({"token_type":"bearer"}), now).is_err());
    }

    #[test]
    fn credentials_debug_redacts() {
        let c = Credentials::ClientSecret {
            client_id: "c".into(),
            secret: Secret::new("s3cr3t-value"),
            method: SecretMethod::Basic,
        };
        let b = Credentials::Bearer(Secret::new("tok-123456"));
        let text = format!("{c:?} {b:?}");
        assert!(
            !text.contains("s3cr3t-value") && !text.contains("tok-123456"),
            "{text}"
        );
    }
}
