//! The one place where errors become HTTP responses: a status and an `OperationOutcome`
//! with a useful `diagnostics` (KR2, ST5, D2). Internal causes are logged, never sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_bulk_spec::outcome::{Severity, outcome};
use fhir_bulk_store::StoreError;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed or a parameter is not acceptable.
    #[error("{0}")]
    BadRequest(String),
    /// 401: the bearer token is invalid or expired (`WWW-Authenticate` with `invalid_token`).
    #[error("{0}")]
    Unauthorized(String),
    /// 401: no bearer token at all (`WWW-Authenticate` without an error code, RFC 6750 §3.1).
    #[error("{0}")]
    NoToken(String),
    /// 403: the token does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such thing for this client (also for other clients' jobs).
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, not with this method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 406: the `Accept` header asks for something we do not produce.
    #[error("{0}")]
    NotAcceptable(String),
    /// 410: it existed and is gone (deleted resource, expired job).
    #[error("{0}")]
    Gone(String),
    /// 413: the body is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 415: the body is not in a format we read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 416: a `Range` outside the file.
    #[error("{message}")]
    RangeNotSatisfiable {
        /// What was wrong.
        message: String,
        /// File size, for `Content-Range: bytes */size`.
        size: u64,
    },
    /// 422: well-formed but not processable (e.g. id in body differs from the URL).
    #[error("{0}")]
    Unprocessable(String),
    /// 429: too many concurrent exports (KR3) or requests; retry after the given seconds.
    #[error("{message}")]
    TooManyRequests {
        /// What limit was hit.
        message: String,
        /// Seconds to wait.
        retry_after: u64,
    },
    /// 500: the export job failed; the reason is safe to show.
    #[error("{0}")]
    JobFailed(String),
    /// 500: something broke inside. Logged; the client sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
    /// 503: a dependency (database, sink) is down; the message names it, never its cause.
    #[error("{0}")]
    Unavailable(String),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::NoToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::JobFailed(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The FHIR `issue-type` code.
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) | ApiError::Unprocessable(_) => "invalid",
            ApiError::Unauthorized(_) | ApiError::NoToken(_) => "login",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) | ApiError::Gone(_) => "not-found",
            ApiError::MethodNotAllowed(_)
            | ApiError::NotAcceptable(_)
            | ApiError::UnsupportedMediaType(_) => "not-supported",
            ApiError::PayloadTooLarge(_) => "too-long",
            ApiError::RangeNotSatisfiable { .. } => "invalid",
            ApiError::TooManyRequests { .. } => "throttled",
            ApiError::JobFailed(_) => "exception",
            ApiError::Internal(_) => "exception",
            ApiError::Unavailable(_) => "transient",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let diagnostics = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "an internal error occurred; the server log has the details".to_string()
            }
            other => other.to_string(),
        };
        let body = outcome(Severity::Error, self.code(), &diagnostics).to_string();
        let mut resp = (status, body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(fhir_bulk_spec::FHIR_JSON),
        );
        match &self {
            ApiError::Unauthorized(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"fhir-bulk\", error=\"invalid_token\""),
                );
            }
            ApiError::NoToken(_) => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"fhir-bulk\""),
                );
            }
            ApiError::TooManyRequests { retry_after, .. } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            }
            ApiError::RangeNotSatisfiable { size, .. } => {
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    h.insert(header::CONTENT_RANGE, v);
                }
            }
            _ => {}
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => ApiError::BadRequest(m),
            StoreError::NotFound(m) => ApiError::NotFound(m),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
