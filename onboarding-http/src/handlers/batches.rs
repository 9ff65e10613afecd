//! `GET /api/v1/batches/{id}`, its organizations, retry and cancel.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onboarding_core::import::ImportState;
use onboarding_core::model::{now, BatchStatus, ItemStatus};
use onboarding_core::repository::ItemQuery;
use onboarding_core::ErrorKind;
use serde::Deserialize;

use crate::app::AppState;
use crate::dto::{
    decode_cursor, encode_cursor, BatchItemResponse, BatchItemsPage, BatchStatusResponse,
    ItemStatusDto, RetryAccepted,
};
use crate::extract::{QueryParams, TenantBatch};
use crate::handlers::results::items_with_submissions;
use crate::handlers::{limit, optional_param, MAX_PAGE};
use crate::problem::Problem;
use crate::responses::{ListingOf, Lookup};

/// Default page size of `GET /api/v1/batches/{id}/organizations`.
const DEFAULT_PAGE: u32 = 100;

/// Batch status: counts per status and change, percent, ETA
#[utoipa::path(
    get, path = "/api/v1/batches/{id}", operation_id = "batch_status", tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "The batch id")),
    responses((status = 200, description = "The batch", body = BatchStatusResponse), Lookup),
)]
#[tracing::instrument(name = "batch_status", skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id))]
pub(crate) async fn status(
    State(state): State<AppState>,
    batch: TenantBatch,
) -> Result<Json<BatchStatusResponse>, Problem> {
    let service = state.service();
    let status = match service.batch_status(&batch.tenant, batch.id).await {
        // A file import still arriving, or whose batch is being created from
        // its rows, has no batch yet: its upload's counters.
        Err(e) if e.kind() == ErrorKind::NotFound => {
            match service.import_progress(&batch.tenant, batch.id).await {
                Ok(p) if p.state != ImportState::Stored => {
                    return Ok(Json(BatchStatusResponse::receiving(&p)));
                }
                // Stored between the two reads: the batch exists now.
                Ok(_) => service.batch_status(&batch.tenant, batch.id).await,
                Err(_) => Err(e),
            }
        }
        other => other,
    };
    let status = status.map_err(|e| state.problem(&e))?;
    let mut answer = BatchStatusResponse::new(&status, now());
    // Only an import has an upload (a JSON batch's lookup finds none).
    if let Ok(p) = service.import_progress(&batch.tenant, batch.id).await {
        answer.upload = Some((&p).into());
    }
    Ok(Json(answer))
}

/// A batch's status as answered by `status` and `cancel`.
fn status_answer(
    state: &AppState,
    status: onboarding_core::Result<BatchStatus>,
) -> Result<Json<BatchStatusResponse>, Problem> {
    let status = status.map_err(|e| state.problem(&e))?;
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
///
/// Each carries the fields of a row of the results file
/// (`GET /api/v1/batches/{id}/results`): for imports the line, submitted
/// name, contact email and `external_id`; the domain, change, status,
/// attempts, the last error's code and detail; plus ids, outcome, the whole
/// error history and times.
#[utoipa::path(
    get, path = "/api/v1/batches/{id}/organizations", operation_id = "batch_organizations", tag = "batches",
    params(
        ("id" = uuid::Uuid, Path, description = "The batch id"),
        ("status" = Option<ItemStatusDto>, Query, description = "Only items with this status"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, 1-1000 (default 100)"),
        ("cursor" = Option<String>, Query, pattern = r"^(p1\.[0-9a-fA-F]{8})?$", description = "The previous page's next_cursor (opaque); empty or absent: the first page"),
    ),
    responses((status = 200, description = "One page", body = BatchItemsPage), ListingOf),
)]
#[tracing::instrument(name = "batch_items", skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id))]
pub(crate) async fn items(
    State(state): State<AppState>,
    batch: TenantBatch,
    QueryParams(params): QueryParams<ItemsParams>,
) -> Result<Json<BatchItemsPage>, Problem> {
    let status = optional_param(
        params.status.as_deref(),
        "status",
        ItemStatus::parse,
        "status must be one of pending, processing, completed, failed, cancelled",
    )?;
    let limit = limit(params.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    // An empty cursor is the first page.
    let after_position = optional_param(
        params.cursor.as_deref().filter(|c| !c.is_empty()),
        "cursor",
        decode_cursor,
        "cursor must be a next_cursor value from an earlier page",
    )?;
    let query = ItemQuery {
        status,
        limit,
        after_position,
    };
    let (items, next) = state
        .run(items_with_submissions(
            state.service(),
            &batch.tenant,
            batch.id,
            &query,
        ))
        .await?;
    Ok(Json(BatchItemsPage {
        items: items
            .iter()
            .map(|(item, staged)| BatchItemResponse::of(item, staged.as_ref()))
            .collect(),
        next_cursor: next.map(encode_cursor),
    }))
}

/// Re-drive a batch's failed organizations
#[utoipa::path(
    post, path = "/api/v1/batches/{id}/retry", operation_id = "batch_retry", tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "The batch id")),
    responses((status = 202, description = "Failed items are pending again", body = RetryAccepted), Lookup),
)]
#[tracing::instrument(name = "batch_retry", skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    batch: TenantBatch,
) -> Result<(StatusCode, Json<RetryAccepted>), Problem> {
    let requeued = state
        .run(state.service().retry_failed(&batch.tenant, batch.id))
        .await?;
    tracing::info!(requeued, "failed items re-driven");
    Ok((
        StatusCode::ACCEPTED,
        Json(RetryAccepted {
            batch_id: batch.id.0,
            requeued,
        }),
    ))
}

/// Cancel a batch's pending organizations
#[utoipa::path(
    post, path = "/api/v1/batches/{id}/cancel", operation_id = "batch_cancel", tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "The batch id")),
    responses((status = 200, description = "Cancelled; items already processing finish", body = BatchStatusResponse), Lookup),
)]
#[tracing::instrument(name = "batch_cancel", skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id))]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    batch: TenantBatch,
) -> Result<Json<BatchStatusResponse>, Problem> {
    let answer = status_answer(
        &state,
        state.service().cancel(&batch.tenant, batch.id).await,
    )?;
    tracing::info!("batch cancelled");
    Ok(answer)
}
