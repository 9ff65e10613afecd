//! `POST /api/bulk-onboard`, `POST /api/v1/bulk-onboard`, `POST /api/v1/bulk-onboard/validate`.

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use onboarding_core::model::TenantId;
use onboarding_core::validate::JsonBody;
use onboarding_core::{Accepted, ErrorKind, SubmitOptions};

use crate::app::{AppState, StoreStep};
use crate::dto::{
    BulkOnboardAccepted, BulkOnboardRequest, SeedBulkOnboardRequest, ValidationSummary,
    ACCEPTED_MESSAGE,
};
use crate::extract::{json_bytes, submission_body, SubmissionSlot, Tenant};
use crate::metrics::{Refusal, SubmissionOutcome};
use crate::problem::Problem;
use crate::responses::{
    Invalid, Malformed, RateLimited, TooLarge, Unauthorized, Unavailable, UnsupportedMediaType,
};

/// Header set on answers that replay an earlier submission.
const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Submit organizations (the seed's contract, word for word)
///
/// Validates every organization, stores the batch atomically and queues one
/// job per organization. `on_conflict` and `mode` are ignored here (upsert,
/// all or nothing); use `/api/v1/bulk-onboard` for them. Under overload it
/// answers 503 `overloaded` with `Retry-After` at once and stores nothing.
#[utoipa::path(
    post,
    path = "/api/bulk-onboard",
    operation_id = "bulk_onboard",
    tag = "onboarding",
    request_body(content = SeedBulkOnboardRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1-255 visible ASCII characters (draft-ietf-httpapi-idempotency-key-header). Same key and body: the first answer again (same batch) with `Idempotent-Replayed: true`; same key, other body: 422 `idempotency_key_reused`. The key lives as long as its batch: while it runs and 7 days after it finished (the workers' retention), then it is free again. Concurrent requests under one key are decided by the store: one is stored, the others get its replay or 422")),
    responses(
        (status = 202, description = "Accepted: stored and queued", body = BulkOnboardAccepted),
        Malformed, Unauthorized, TooLarge, UnsupportedMediaType, Invalid,
        RateLimited, Unavailable,
    ),
)]
#[tracing::instrument(name = "bulk_onboard", skip_all, fields(tenant = %tenant.0, batch_id = tracing::field::Empty))]
pub(crate) async fn seed(
    State(state): State<AppState>,
    tenant: Tenant,
    _slot: SubmissionSlot,
    store: Option<Extension<StoreStep>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let bytes = json_bytes(&headers, body, state.config().body_limit)?;
    let parsed = submission_body(&bytes)?.without_options();
    let accepted = submit(&state, &tenant.0, store, &headers, &parsed).await?;
    Ok(answer(&accepted, None, false))
}

/// Submit organizations (v1: conflict policy, partial mode, Location)
#[utoipa::path(
    post,
    path = "/api/v1/bulk-onboard",
    operation_id = "bulk_onboard_v1",
    tag = "onboarding",
    request_body(content = BulkOnboardRequest, content_type = "application/json"),
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$", description = "1-255 visible ASCII characters (draft-ietf-httpapi-idempotency-key-header). Same key and body: the first answer again (same batch) with `Idempotent-Replayed: true`; same key, other body: 422 `idempotency_key_reused`. The key lives as long as its batch: while it runs and 7 days after it finished (the workers' retention), then it is free again. Concurrent requests under one key are decided by the store: one is stored, the others get its replay or 422")),
    responses(
        (status = 202, description = "Accepted: stored and queued; `rejected` lists left-out organizations in partial mode", body = BulkOnboardAccepted,
            headers(("Location" = String, description = "The batch status URL"))),
        Malformed, Unauthorized, TooLarge, UnsupportedMediaType, Invalid,
        RateLimited, Unavailable,
    ),
)]
#[tracing::instrument(name = "bulk_onboard_v1", skip_all, fields(tenant = %tenant.0, batch_id = tracing::field::Empty))]
pub(crate) async fn v1(
    State(state): State<AppState>,
    tenant: Tenant,
    _slot: SubmissionSlot,
    store: Option<Extension<StoreStep>>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let bytes = json_bytes(&headers, body, state.config().body_limit)?;
    let parsed = submission_body(&bytes)?;
    let accepted = submit(&state, &tenant.0, store, &headers, &parsed).await?;
    let partial = parsed.asks_partial();
    let prefix = uri
        .path()
        .strip_suffix("/bulk-onboard")
        .unwrap_or("/api/v1");
    let location = format!("{prefix}/batches/{}", accepted.batch_id);
    Ok(answer(&accepted, Some(location), partial))
}

/// Validate organizations without storing anything (dry run)
#[utoipa::path(
    post,
    path = "/api/v1/bulk-onboard/validate",
    operation_id = "bulk_onboard_validate",
    tag = "onboarding",
    request_body(content = BulkOnboardRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Valid: what would be stored", body = ValidationSummary),
        Malformed, Unauthorized, TooLarge, UnsupportedMediaType, Invalid, RateLimited,
    ),
)]
#[tracing::instrument(name = "bulk_onboard_validate", skip_all, fields(tenant = %tenant.0))]
pub(crate) async fn validate(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ValidationSummary>, Problem> {
    let bytes = json_bytes(&headers, body, state.config().body_limit)?;
    let valid = state
        .service()
        .validate_body(&submission_body(&bytes)?)
        .map_err(|e| state.problem(&e))?;
    Ok(Json(ValidationSummary::from(&valid)))
}

/// Hands the body to the service. From the call on, the request timeout no
/// longer cuts the request ([`StoreStep`]): the answer is the store's outcome.
async fn submit(
    state: &AppState,
    tenant: &TenantId,
    store: Option<Extension<StoreStep>>,
    headers: &HeaderMap,
    body: &JsonBody<'_>,
) -> Result<Accepted, Problem> {
    let mut options = SubmitOptions::default();
    if let Some(key) = headers.get("idempotency-key") {
        let key = key.to_str().map_err(|_| {
            Problem::invalid_parameter(
                "Idempotency-Key",
                "idempotency_key_invalid",
                "the idempotency key must be 1-255 visible ASCII characters",
            )
        })?;
        options = options.with_idempotency_key(key);
    }
    if let Some(Extension(store)) = store {
        store.begin();
    }
    let metrics = &state.config().metrics;
    let started = Instant::now();
    let result = state.service().submit_body(tenant, body, options).await;
    let outcome = match &result {
        Ok(accepted) if accepted.replayed => SubmissionOutcome::Replayed,
        Ok(_) => SubmissionOutcome::Accepted,
        Err(e) => match e.kind() {
            ErrorKind::Overloaded => SubmissionOutcome::Refused,
            ErrorKind::Invalid | ErrorKind::TooLarge | ErrorKind::Conflict => {
                SubmissionOutcome::Rejected
            }
            _ => SubmissionOutcome::Failed,
        },
    };
    metrics.record_submission(outcome, started.elapsed());
    let accepted = result.map_err(|e| {
        if e.kind() == ErrorKind::Overloaded {
            metrics.record_refused(Refusal::Backlog);
        }
        state.problem(&e)
    })?;
    tracing::Span::current().record("batch_id", tracing::field::display(accepted.batch_id));
    metrics.record_accepted(
        accepted.organizations_count,
        accepted.rejected.len(),
        accepted.replayed,
    );
    Ok(accepted)
}

fn answer(accepted: &Accepted, location: Option<String>, partial: bool) -> Response {
    let body = BulkOnboardAccepted {
        batch_id: accepted.batch_id.0,
        message: ACCEPTED_MESSAGE.to_owned(),
        organizations_count: accepted.organizations_count,
        rejected: partial.then(|| accepted.rejected.iter().map(Into::into).collect()),
    };
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Some(location) = location.and_then(|l| HeaderValue::try_from(l).ok()) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if accepted.replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    response
}
