//! Who is calling: the [`Caller`] every protected handler takes.
//!
//! With authorization off (`serve --no-auth`) every request is the anonymous caller, who may
//! read everything. (SMART Backend Services tokens fill this in: see the auth issue.)

use crate::app::AppState;
use crate::error::ApiError;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The client behind a request, and what it may read.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The registered client id; `None` when authorization is off.
    pub client_id: Option<String>,
}

impl Caller {
    /// May this caller read resources of `resource_type` (K9, SC4)?
    pub fn can_read(&self, resource_type: &str) -> bool {
        let _ = resource_type;
        true
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(_parts: &mut Parts, _state: &AppState) -> Result<Self, ApiError> {
        Ok(Caller { client_id: None })
    }
}
