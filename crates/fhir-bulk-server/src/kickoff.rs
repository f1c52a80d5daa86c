//! `$export` kick-off at the three levels (§1–§3): check the headers, parse the parameters
//! (GET query or POST `Parameters`), plan the units, write the job, answer `202 Accepted`
//! with an absolute `Content-Location` at once. The export itself runs in the engine.

use crate::app::AppState;
use crate::auth::Caller;
use crate::base::Base;
use crate::body::Body;
use crate::engine::{JobParams, Plan, plan};
use crate::error::ApiError;
use axum::extract::{FromRequest, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir_bulk_spec::compartment::is_compartment_type;
use fhir_bulk_spec::kickoff::{self, Level, Prefer, Supported};
use fhir_bulk_spec::outcome::{Severity, outcome};
use fhir_bulk_store::{NewJob, PatientScope};

/// What this server implements of the optional parameters (K5: the rest are unsupported).
const SUPPORTED: Supported = Supported {
    type_filter: true,
    elements: true,
    include_associated_data: true,
    organize_output_by: true,
    allow_partial_manifests: true,
};

/// `[base]/$export`.
pub async fn system(
    state: State<AppState>,
    base: Base,
    caller: Caller,
    req: Incoming,
) -> Result<Response, ApiError> {
    kickoff(state, base, caller, Level::System, req).await
}

/// `[base]/Patient/$export`.
pub async fn patient(
    state: State<AppState>,
    base: Base,
    caller: Caller,
    req: Incoming,
) -> Result<Response, ApiError> {
    kickoff(state, base, caller, Level::Patient, req).await
}

/// `[base]/Group/[id]/$export`.
pub async fn group(
    state: State<AppState>,
    base: Base,
    caller: Caller,
    Path(id): Path<String>,
    req: Incoming,
) -> Result<Response, ApiError> {
    kickoff(state, base, caller, Level::Group(id), req).await
}

/// The parts of a kick-off request the parameters come from.
pub struct Incoming {
    method: Method,
    headers: HeaderMap,
    query: Option<String>,
    body: axum::body::Bytes,
}

impl FromRequest<AppState> for Incoming {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &AppState) -> Result<Self, ApiError> {
        let (method, headers, query) = (
            req.method().clone(),
            req.headers().clone(),
            req.uri().query().map(str::to_string),
        );
        let Body(body) = Body::from_request(req, state).await?;
        Ok(Incoming {
            method,
            headers,
            query,
            body,
        })
    }
}

/// K3/K4: `Accept: application/fhir+json` and `Prefer: respond-async` are required here;
/// a missing or wrong one is a 400 that says what to send.
fn check_headers(headers: &HeaderMap) -> Result<Prefer, ApiError> {
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .collect();
    if accept.is_empty() {
        return Err(ApiError::BadRequest(
            "the Accept header is missing; a bulk data kick-off must send 'Accept: application/fhir+json' (K3)".into(),
        ));
    }
    if !accept
        .iter()
        .any(|a| a.eq_ignore_ascii_case(fhir_bulk_spec::FHIR_JSON))
    {
        return Err(ApiError::BadRequest(format!(
            "the Accept header '{}' is not supported for a kick-off; send 'Accept: application/fhir+json' (K3)",
            accept.join(", ")
        )));
    }
    let prefer = Prefer::parse(
        headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    if !prefer.respond_async {
        return Err(ApiError::BadRequest(
            "the Prefer header must include 'respond-async': a bulk export is asynchronous; send 'Prefer: respond-async' (K4)"
                .into(),
        ));
    }
    Ok(prefer)
}

/// The kick-off URL as the client sent it (M2), without parameters for POST.
fn request_url(base: &Base, level: &Level, query: Option<&str>) -> String {
    let path = match level {
        Level::System => "$export".to_string(),
        Level::Patient => "Patient/$export".to_string(),
        Level::Group(id) => format!("Group/{id}/$export"),
    };
    match query.filter(|q| !q.is_empty()) {
        Some(q) => format!("{}?{q}", base.join(&path)),
        None => base.join(&path),
    }
}

async fn kickoff(
    State(state): State<AppState>,
    base: Base,
    caller: Caller,
    level: Level,
    Incoming {
        method,
        headers,
        query,
        body,
    }: Incoming,
) -> Result<Response, ApiError> {
    let prefer = check_headers(&headers)?;
    let is_post = method == Method::POST;
    let mut raw = kickoff::params_from_query(
        url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()).into_owned(),
    );
    if is_post {
        if !raw.is_empty() {
            return Err(ApiError::BadRequest(
                "a POST kick-off takes its parameters from the Parameters body, not the query string (K1)".into(),
            ));
        }
        let json: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the POST body is not JSON ({e}); send a FHIR Parameters resource"
            ))
        })?;
        raw = kickoff::params_from_body(&json).map_err(|e| ApiError::BadRequest(e.message))?;
    }
    let (mut request, mut warnings) =
        kickoff::parse(&raw, &level, is_post, prefer.handling, SUPPORTED)
            .map_err(|e| ApiError::BadRequest(e.message))?;
    // K9, A2, G3: the token's scopes (403, or lenient warnings).
    caller.check_export(&level, &mut request, &mut warnings, prefer.handling)?;
    let tenant = &base.tenant;

    // The compartment scope, and the checks a Group or patient list needs (P6, G1).
    let scope = match &level {
        Level::System => PatientScope::All,
        Level::Patient if request.patients.is_empty() => PatientScope::AnyPatient,
        Level::Patient => PatientScope::Patients(request.patients.clone()),
        Level::Group(id) => {
            let members = state
                .store
                .group_members(tenant, id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("Group/{id} does not exist")))?;
            if request.patients.is_empty() {
                PatientScope::Group(id.clone())
            } else {
                for p in &request.patients {
                    if !members.iter().any(|(t, m)| t == "Patient" && m == p) {
                        return Err(ApiError::BadRequest(format!(
                            "patient 'Patient/{p}' is not a member of Group/{id} (P6)"
                        )));
                    }
                }
                PatientScope::Patients(request.patients.clone())
            }
        }
    };
    if let PatientScope::Patients(ids) = &scope {
        for p in ids {
            let live = state
                .store
                .read(tenant, "Patient", p)
                .await?
                .is_some_and(|r| !r.deleted);
            if !live {
                return Err(ApiError::BadRequest(format!(
                    "patient 'Patient/{p}' does not exist (P6)"
                )));
            }
        }
    }

    // KR3: a bounded number of running exports per client.
    let client_id = caller.client_id.clone();
    let active = state
        .store
        .active_jobs(tenant, client_id.as_deref())
        .await?;
    if active >= state.config.max_exports_per_client {
        return Err(ApiError::TooManyRequests {
            message: format!(
                "{active} exports of this client are already running (limit {}); wait for one to finish or DELETE it",
                state.config.max_exports_per_client
            ),
            retry_after: 30,
        });
    }

    // The tenant's limit, counted in the store so it holds across nodes (`tenant`).
    if state.config.tenants_enabled
        && let Some(max) = state
            .store
            .tenant(tenant)
            .await?
            .and_then(|t| t.max_exports)
    {
        let running = state.store.tenant_active_jobs(tenant).await?;
        if running >= max {
            return Err(ApiError::TooManyRequests {
                message: format!(
                    "{running} exports are already running in tenant '{tenant}' (its limit is {max}); \
                     wait for one to finish or DELETE it"
                ),
                retry_after: 30,
            });
        }
    }

    // Units (`engine::plan`): without `_type`, every type held that the level covers and the
    // caller may read (P4, K9).
    let counts = state.store.type_counts(tenant).await?;
    let in_level = |t: &str| level == Level::System || is_compartment_type(t);
    let held: Vec<String> = counts
        .iter()
        .map(|(t, _)| t.clone())
        .filter(|t| in_level(t) && caller.can_read(t))
        .collect();
    // Id slices only at system level: a Group or patient scan walks its cohort, which each
    // slice would walk again.
    let slice_above = match level {
        Level::System => state.config.unit_max_resources,
        _ => None,
    };
    let Plan { types, units } = plan(
        &request,
        held,
        &counts,
        caller.can_read("Provenance"),
        slice_above,
        &mut warnings,
    );

    let id = uuid::Uuid::new_v4().simple().to_string();
    let params = JobParams {
        level: level.clone(),
        request,
        scope,
        warnings,
        types,
    };
    let job = state
        .store
        .create_job(NewJob {
            tenant: tenant.clone(),
            id: id.clone(),
            client_id,
            request_url: request_url(&base, &level, if is_post { None } else { query.as_deref() }),
            params: serde_json::to_value(&params).map_err(|e| ApiError::Internal(e.to_string()))?,
            units,
            ttl_seconds: state.config.job_ttl.as_secs() as i64,
        })
        .await?;
    state.wake.notify_waiters();
    tracing::info!(job = %job.id, tenant = %tenant, level = ?level, "export kicked off");

    let location = base.join(&format!("bulk-status/{id}"));
    let body = outcome(
        Severity::Information,
        "informational",
        &format!("export job {id} accepted; poll {location} for its status"),
    );
    let mut resp = (StatusCode::ACCEPTED, body.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(fhir_bulk_spec::FHIR_JSON),
    );
    if let Ok(v) = header::HeaderValue::from_str(&location) {
        h.insert(header::CONTENT_LOCATION, v);
    }
    Ok(resp)
}
