//! `GET /api/v1/batches/{id}/failures` (failed items grouped by cause) and
//! `POST /api/v1/batches/{id}/failures/{group}/retry` (re-drive one group).

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use onboarding_core::failures::{self, FailureGroup, FailureGroups};
use onboarding_core::import::ImportRow;
use onboarding_core::model::BatchId;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::dto::{BatchItemResponse, RetryAccepted};
use crate::extract::{Tenant, TenantBatch};
use crate::problem::Problem;
use crate::responses::{Lookup, RateLimited, Unauthorized, Unavailable};

/// One cause of failure and how many items it covers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct FailureGroupResponse {
    /// The group's key (16 hex digits), for `POST .../failures/{group}/retry`.
    #[schema(pattern = "^[0-9a-f]{16}$")]
    pub(crate) key: String,
    /// The last error of its items with numbers, ids and quoted values folded
    /// (`<n>`, `<id>`, `"…"`).
    pub(crate) cause: String,
    /// Failed items with this cause.
    pub(crate) count: u32,
    /// The first of them (by position), with its full error history (and, for imports, what was submitted).
    pub(crate) example: BatchItemResponse,
}

/// A batch's failed items grouped by cause.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct FailureGroupsResponse {
    /// The batch.
    pub(crate) batch_id: Uuid,
    /// Failed items in the batch.
    pub(crate) failed: u32,
    /// Groups, largest first (at most 200).
    pub(crate) groups: Vec<FailureGroupResponse>,
    /// Failed items whose cause did not fit in the 200 groups.
    pub(crate) ungrouped: u32,
}

impl FailureGroupsResponse {
    /// The groups, each example with its staged row (`staged`, by line: imports).
    fn new(batch: BatchId, groups: &FailureGroups, staged: &HashMap<u32, ImportRow>) -> Self {
        Self {
            batch_id: batch.0,
            failed: groups.failed,
            groups: groups
                .groups
                .iter()
                .map(|g| group_response(g, staged.get(&g.example.position)))
                .collect(),
            ungrouped: groups.ungrouped,
        }
    }
}

fn group_response(g: &FailureGroup, staged: Option<&ImportRow>) -> FailureGroupResponse {
    FailureGroupResponse {
        key: g.key.clone(),
        cause: g.cause.clone(),
        count: g.count,
        example: BatchItemResponse::of(&g.example, staged),
    }
}

/// A batch's failed organizations grouped by normalized cause
#[utoipa::path(
    get, path = "/api/v1/batches/{id}/failures", operation_id = "batch_failures", tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "The batch id")),
    responses((status = 200, description = "The groups, largest first", body = FailureGroupsResponse), Lookup),
)]
#[tracing::instrument(name = "batch_failures", skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id))]
pub(crate) async fn groups(
    State(state): State<AppState>,
    batch: TenantBatch,
) -> Result<Json<FailureGroupsResponse>, Problem> {
    let groups = state
        .run(failures::group_failures(
            state.service(),
            &batch.tenant,
            batch.id,
        ))
        .await?;
    let lines: Vec<u32> = groups.groups.iter().map(|g| g.example.position).collect();
    let staged: HashMap<u32, ImportRow> = state
        .run(state.service().staged_rows(&batch.tenant, batch.id, &lines))
        .await?
        .into_iter()
        .map(|r| (r.line, r))
        .collect();
    Ok(Json(FailureGroupsResponse::new(batch.id, &groups, &staged)))
}

/// Re-drive the failed organizations of one cause
#[utoipa::path(
    post, path = "/api/v1/batches/{id}/failures/{group}/retry", operation_id = "batch_failure_group_retry", tag = "batches",
    params(
        ("id" = uuid::Uuid, Path, description = "The batch id"),
        ("group" = String, Path, pattern = "^[0-9a-f]{16}$", description = "A group's key from GET /api/v1/batches/{id}/failures"),
    ),
    responses(
        (status = 202, description = "The group's failed items are pending again", body = RetryAccepted),
        Unauthorized,
        (status = 404, description = "No such batch for this tenant, or no failed item has this cause (any more)", content_type = "application/problem+json", body = crate::problem::ProblemDocument),
        RateLimited, Unavailable,
    ),
)]
#[tracing::instrument(name = "batch_failure_group_retry", skip_all, fields(tenant = %tenant.0))]
pub(crate) async fn retry(
    State(state): State<AppState>,
    tenant: Tenant,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<(StatusCode, Json<RetryAccepted>), Problem> {
    let Ok(Path((raw_id, group))) = path else {
        return Err(Problem::not_found("no such batch"));
    };
    let batch: BatchId = raw_id
        .parse()
        .map_err(|_| Problem::not_found("no such batch"))?;
    let key_ok = group.len() == 16
        && group
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !key_ok {
        return Err(Problem::not_found("no failure group has this key"));
    }
    let requeued = state
        .run(failures::retry_group(
            state.service(),
            &tenant.0,
            batch,
            &group,
        ))
        .await?;
    if requeued == 0 {
        return Err(Problem::not_found(
            "no failed item of this batch has this cause (any more)",
        ));
    }
    tracing::info!(requeued, "failure group re-driven");
    Ok((
        StatusCode::ACCEPTED,
        Json(RetryAccepted {
            batch_id: batch.0,
            requeued,
        }),
    ))
}
