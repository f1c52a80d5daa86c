//! Request bodies, read up to the configured limit (413 with an OperationOutcome beyond).

use crate::app::AppState;
use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};

/// The whole body of a request, at most `max_body_bytes`.
pub struct Body(pub Bytes);

impl FromRequest<AppState> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.config.max_body_bytes;
        axum::body::to_bytes(req.into_body(), limit)
            .await
            .map(Body)
            .map_err(|e| {
                // http-body's length limit error is the only one we can get from a complete body read
                // besides a broken connection.
                if std::error::Error::source(&e)
                    .is_some_and(|s| s.to_string().contains("length limit"))
                {
                    ApiError::PayloadTooLarge(format!(
                        "the request body is larger than the limit of {limit} bytes"
                    ))
                } else {
                    ApiError::BadRequest(format!("cannot read the request body: {e}"))
                }
            })
    }
}
