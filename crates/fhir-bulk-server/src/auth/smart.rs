//! SMART discovery (§12): `GET [base]/.well-known/smart-configuration`, and the security
//! section of the CapabilityStatement that points at the same token endpoint.
//!
//! The document is JSON whatever the `Accept` (W1), every URL in it is absolute (built from
//! the request's [`Base`]), and it lists what the token endpoint really does (W2).

use crate::base::Base;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// The `oauth-uris` extension of the CapabilityStatement security section.
pub const OAUTH_URIS: &str =
    "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";

/// The scopes we advertise (W2: a partial list of scopes we support).
const SCOPES_SUPPORTED: &[&str] = &[
    "system/*.rs",
    "system/*.read",
    "system/*.cruds",
    "system/*.*",
    "system/*.cud",
    "system/*.write",
];

/// The token endpoint of a base.
pub fn token_endpoint(base: &Base) -> String {
    base.join("auth/token")
}

/// `GET [base]/.well-known/smart-configuration`.
pub async fn configuration(base: Base) -> Response {
    let body = json!({
        "token_endpoint": token_endpoint(&base),
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic", "client_secret_post"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": SCOPES_SUPPORTED,
        "capabilities": [
            "client-confidential-asymmetric",
            "client-confidential-symmetric",
            "permission-v1",
            "permission-v2",
        ],
        "code_challenge_methods_supported": ["S256"],
    });
    let mut resp = body.to_string().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// `CapabilityStatement.rest.security` when authorization is on.
pub fn security(base: &Base) -> Value {
    json!({
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
            }],
            "text": "OAuth2 using SMART Backend Services",
        }],
        "extension": [{
            "url": OAUTH_URIS,
            "extension": [{"url": "token", "valueUri": token_endpoint(base)}],
        }],
        "description": "SMART Backend Services: get a bearer token at the token endpoint with a signed client \
            assertion (RS384 or ES384) or a client secret; see .well-known/smart-configuration.",
    })
}
