//! The one place HTTP requests leave the client.
//!
//! Three rules live here so no phase can forget them:
//! - **The token goes to the server's origin only** (CL5, CL7, F2). Redirects are followed by
//!   hand, hop by hop, and `Authorization` is attached per hop only when that hop's origin is
//!   the FHIR base's origin; a 302/307 to a storage host therefore gets no token.
//! - **401 means "renew the token and retry once"** (CL2), at every phase; a second 401 is an
//!   [`Error::Unauthorized`].
//! - **Logs never hold secrets**: URLs are redacted, headers are not logged, and reqwest errors
//!   are stripped of their URL before they become messages.

use crate::auth::Auth;
use crate::backoff::{Backoff, Timings, retry_after_or};
use crate::error::{Error, Phase, Result};
use crate::secret::{Secret, redact_url};
use reqwest::header::{HeaderMap, LOCATION};
use reqwest::{Method, Response, StatusCode};
use std::sync::Arc;
use url::Url;

/// At most this many redirect hops per request, like browsers.
const MAX_REDIRECTS: usize = 10;

/// One request as the phases describe it; [`Transport`] adds the token and follows redirects.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Vec<u8>>,
    /// Whether the request may carry the bearer token (still only to the server's origin).
    pub with_token: bool,
}

impl Request {
    pub fn get(url: Url) -> Request {
        Request {
            method: Method::GET,
            url,
            headers: HeaderMap::new(),
            body: None,
            with_token: true,
        }
    }

    pub fn header(mut self, name: reqwest::header::HeaderName, value: &'static str) -> Request {
        self.headers
            .insert(name, reqwest::header::HeaderValue::from_static(value));
        self
    }
}

/// Logs one line at INFO with `--verbose`, else at DEBUG. Never pass headers here.
pub(crate) fn log_request(verbose: bool, line: std::fmt::Arguments<'_>) {
    if verbose {
        tracing::info!("{line}");
    } else {
        tracing::debug!("{line}");
    }
}

/// A reqwest error as one line, without the URL reqwest puts in its own message (signed URLs
/// carry credentials) but with the causes that say what actually failed.
pub(crate) fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Sends `req`, following redirects by hand and attaching `token` only to hops on `origin`.
pub(crate) async fn follow_redirects(
    http: &reqwest::Client,
    phase: Phase,
    req: &Request,
    token: Option<&Secret>,
    origin: &url::Origin,
    verbose: bool,
) -> Result<Response> {
    let mut url = req.url.clone();
    let mut method = req.method.clone();
    let mut body = req.body.clone();
    for _hop in 0..=MAX_REDIRECTS {
        let mut builder = http
            .request(method.clone(), url.clone())
            .headers(req.headers.clone());
        let send_token = token.filter(|_| url.origin() == *origin);
        if let Some(token) = send_token {
            builder = builder.bearer_auth(token.expose());
        }
        if let Some(body) = &body {
            builder = builder.body(body.clone());
        }
        let shown = redact_url(url.as_str());
        log_request(
            verbose,
            format_args!(
                "{phase}: {method} {shown} (token: {})",
                if send_token.is_some() { "yes" } else { "no" }
            ),
        );
        let resp = builder.send().await.map_err(|e| Error::Http {
            phase,
            url: shown.clone(),
            connect: e.is_connect(),
            message: describe(e),
        })?;
        log_request(
            verbose,
            format_args!("{phase}: {method} {shown} -> {}", resp.status()),
        );
        let status = resp.status();
        if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
            let Some(next) = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url.join(l).ok())
            else {
                return Ok(resp);
            };
            // 303 always, and 301/302 after a POST, continue as GET (RFC 9110 §15.4, as browsers do).
            if status == StatusCode::SEE_OTHER
                || (method == Method::POST
                    && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND))
            {
                method = Method::GET;
                body = None;
            }
            url = next;
            continue;
        }
        return Ok(resp);
    }
    Err(Error::Http {
        phase,
        url: redact_url(req.url.as_str()),
        message: "too many redirects".into(),
        connect: false,
    })
}

/// The client side of every FHIR-server request: auth, origin rule, 401 renewal, logging.
pub(crate) struct Transport {
    http: reqwest::Client,
    /// Shared with nobody else; an `Arc` so download tasks can hold the transport cheaply.
    auth: Arc<Auth>,
    origin: url::Origin,
    verbose: bool,
}

impl Transport {
    pub fn new(http: reqwest::Client, auth: Arc<Auth>, base: &Url, verbose: bool) -> Transport {
        Transport {
            http,
            auth,
            origin: base.origin(),
            verbose,
        }
    }

    /// Sends `req` with a valid token (if it may carry one), renewing the token and retrying
    /// once on a 401 (CL2).
    pub async fn send(&self, phase: Phase, req: &Request) -> Result<Response> {
        let mut renewed = false;
        loop {
            let bearer = if req.with_token {
                self.auth.bearer().await?
            } else {
                None
            };
            let resp = follow_redirects(
                &self.http,
                phase,
                req,
                bearer.as_ref().map(|b| &b.value),
                &self.origin,
                self.verbose,
            )
            .await?;
            if resp.status() != StatusCode::UNAUTHORIZED || !req.with_token {
                return Ok(resp);
            }
            match bearer {
                Some(b) if !renewed && self.auth.renewable() => {
                    tracing::info!(
                        "{phase}: HTTP 401, renewing the access token and retrying once"
                    );
                    self.auth.renew_after_401(b.generation).await?;
                    renewed = true;
                }
                bearer => {
                    return Err(Error::Unauthorized {
                        phase,
                        renewed,
                        credentials: bearer.is_some(),
                    });
                }
            }
        }
    }

    /// Sends `req`, retrying network errors, 429 and 5xx with backoff (honouring `Retry-After`)
    /// up to `timings.max_retries` times. Returns the last response, whatever its status.
    pub async fn send_retrying(
        &self,
        phase: Phase,
        req: &Request,
        timings: &Timings,
    ) -> Result<Response> {
        let mut backoff = Backoff::new(timings.retry_initial, timings.retry_max);
        loop {
            let last_try = backoff.attempts() >= timings.max_retries;
            match self.send(phase, req).await {
                Ok(resp) if is_retryable_status(resp.status()) && !last_try => {
                    let delay = retry_after_or(resp.headers(), backoff.next_delay());
                    tracing::warn!(
                        "{phase}: HTTP {}, retrying in {}",
                        resp.status(),
                        crate::error::humanize(delay)
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(e @ Error::Http { .. }) if !last_try => {
                    let delay = backoff.next_delay();
                    tracing::warn!("{e}; retrying in {}", crate::error::humanize(delay));
                    tokio::time::sleep(delay).await;
                }
                other => return other,
            }
        }
    }
}

/// Statuses that mean "try again later": 408, 429 and the 5xx a proxy or busy server sends.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}
