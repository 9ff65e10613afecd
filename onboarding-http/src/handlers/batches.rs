//! `GET /api/v1/batches/{id}`, its organizations, retry and cancel.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use onboarding_core::model::{now, ItemStatus};
use onboarding_core::repository::ItemQuery;
use serde::Deserialize;

use crate::app::{AppState, Tenant};
use crate::dto::{
    decode_cursor, encode_cursor, BatchItemsPage, BatchStatusResponse, ItemStatusDto, RetryAccepted,
};
use crate::handlers::{batch_id, limit};
use crate::problem::Problem;

/// Default page size of `GET /api/v1/batches/{id}/organizations`.
const DEFAULT_PAGE: u32 = 100;
/// Largest page size.
const MAX_PAGE: u32 = 1000;

/// Batch status: counts per status and change, percent, ETA
#[utoipa::path(
    get,
    path = "/api/v1/batches/{id}",
    tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "The batch id")),
    responses(
        (status = 200, description = "The batch", body = BatchStatusResponse),
        (status = 401, description = "Missing or wrong API key", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this tenant", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "A backend is down", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "batch_status", skip_all, fields(tenant = %tenant.0, batch_id = tracing::field::Empty))]
pub(crate) async fn status(
    State(state): State<AppState>,
    tenant: Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BatchStatusResponse>, Problem> {
    let id = batch_id(path)?;
    tracing::Span::current().record("batch_id", tracing::field::display(id));
    let status = state
        .service()
        .batch_status(&tenant.0, id)
        .await
        .map_err(|e| state.problem(&e))?;
    Ok(Json(BatchStatusResponse::new(&status, now())))
}

/// Query parameters of the organizations listing.
#[derive(Debug, Deserialize)]
pub(crate) struct ItemsParams {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A batch's organizations with their results, cursor-paginated by position
#[utoipa::path(
    get,
    path = "/api/v1/batches/{id}/organizations",
    tag = "batches",
    params(
        ("id" = uuid::Uuid, Path, description = "The batch id"),
        ("status" = Option<ItemStatusDto>, Query, description = "Only items with this status"),
        ("limit" = Option<u32>, Query, description = "Page size, 1-1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "The previous page's next_cursor (opaque)"),
    ),
    responses(
        (status = 200, description = "One page", body = BatchItemsPage),
        (status = 400, description = "Malformed query string", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 401, description = "Missing or wrong API key", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this tenant", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "Invalid status, limit or cursor", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "A backend is down", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "batch_items", skip_all, fields(tenant = %tenant.0, batch_id = tracing::field::Empty))]
pub(crate) async fn items(
    State(state): State<AppState>,
    tenant: Tenant,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<ItemsParams>, QueryRejection>,
) -> Result<Json<BatchItemsPage>, Problem> {
    let id = batch_id(path)?;
    tracing::Span::current().record("batch_id", tracing::field::display(id));
    let Query(params) = query.map_err(|e| {
        Problem::malformed(format!("the query string is invalid: {}", e.body_text()))
    })?;
    let status = match params.status.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(raw) => Some(ItemStatus::parse(raw).ok_or_else(|| {
            Problem::invalid_parameter(
                "status",
                "invalid_value",
                "status must be one of pending, processing, completed, failed, cancelled",
            )
        })?),
    };
    let limit = limit(params.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let after_position = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(raw) => Some(decode_cursor(raw).ok_or_else(|| {
            Problem::invalid_parameter(
                "cursor",
                "invalid_value",
                "cursor must be a next_cursor value from an earlier page",
            )
        })?),
    };
    let query = ItemQuery {
        status,
        limit,
        after_position,
    };
    let page = state
        .service()
        .list_items(&tenant.0, id, &query)
        .await
        .map_err(|e| state.problem(&e))?;
    Ok(Json(BatchItemsPage {
        items: page.items.iter().map(Into::into).collect(),
        next_cursor: page.next_cursor.map(encode_cursor),
    }))
}

/// Re-drive a batch's failed organizations
#[utoipa::path(
    post,
    path = "/api/v1/batches/{id}/retry",
    tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "The batch id")),
    responses(
        (status = 202, description = "Failed items are pending again", body = RetryAccepted),
        (status = 401, description = "Missing or wrong API key", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this tenant", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 409, description = "The batch cannot be re-driven now", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "A backend is down", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "batch_retry", skip_all, fields(tenant = %tenant.0, batch_id = tracing::field::Empty))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    tenant: Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<(StatusCode, Json<RetryAccepted>), Problem> {
    let id = batch_id(path)?;
    tracing::Span::current().record("batch_id", tracing::field::display(id));
    let requeued = state
        .service()
        .retry_failed(&tenant.0, id)
        .await
        .map_err(|e| state.problem(&e))?;
    tracing::info!(requeued, "failed items re-driven");
    Ok((
        StatusCode::ACCEPTED,
        Json(RetryAccepted {
            batch_id: id.0,
            requeued,
        }),
    ))
}

/// Cancel a batch's pending organizations
#[utoipa::path(
    post,
    path = "/api/v1/batches/{id}/cancel",
    tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "The batch id")),
    responses(
        (status = 200, description = "Cancelled; items already processing finish", body = BatchStatusResponse),
        (status = 401, description = "Missing or wrong API key", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this tenant", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 503, description = "A backend is down", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "batch_cancel", skip_all, fields(tenant = %tenant.0, batch_id = tracing::field::Empty))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    tenant: Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<BatchStatusResponse>, Problem> {
    let id = batch_id(path)?;
    tracing::Span::current().record("batch_id", tracing::field::display(id));
    let status = state
        .service()
        .cancel(&tenant.0, id)
        .await
        .map_err(|e| state.problem(&e))?;
    tracing::info!("batch cancelled");
    Ok(Json(BatchStatusResponse::new(&status, now())))
}
