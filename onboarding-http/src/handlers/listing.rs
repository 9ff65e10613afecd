//! `GET /api/v1/batches`: a tenant's batches, newest first, cursor-paginated.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use onboarding_core::model::{now, BatchId, BatchState};
use onboarding_core::repository::BatchQuery;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::dto::BatchStatusResponse;
use crate::extract::{QueryParams, Tenant};
use crate::handlers::{cursor_param, limit, optional_param};
use crate::problem::Problem;
use crate::responses::Listing;

/// Default page size of the listing.
const DEFAULT_PAGE: u32 = 50;
/// Largest page (each batch comes with its exact counts).
const MAX_PAGE: u32 = 200;
/// Prefix of a listing cursor (a version, so the format can change).
const CURSOR_PREFIX: &str = "b1.";

/// Query parameters of the listing.
#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    state: Option<String>,
    created_after: Option<String>,
    cursor: Option<String>,
    limit: Option<String>,
}

/// One page of a tenant's batches.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct BatchListPage {
    /// Newest first; each as `GET /api/v1/batches/{id}` answers it.
    pub(crate) data: Vec<BatchStatusResponse>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub(crate) next_cursor: Option<String>,
}

/// Encodes a batch id as an opaque listing cursor.
pub(crate) fn encode_cursor(id: BatchId) -> String {
    format!("{CURSOR_PREFIX}{}", id.0.simple())
}

/// Decodes [`encode_cursor`].
pub(crate) fn decode_cursor(cursor: &str) -> Option<BatchId> {
    let hex = cursor.strip_prefix(CURSOR_PREFIX)?;
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Uuid::try_parse(hex).ok().map(BatchId)
}

/// A tenant's batches with their counts, newest first, cursor-paginated
///
/// Without `state` and `cursor`, the page starts with the file imports still
/// being uploaded (state `receiving`, at most 100), beyond `limit`.
#[utoipa::path(
    get, path = "/api/v1/batches", operation_id = "batch_list", tag = "batches",
    params(
        ("state" = Option<crate::dto::BatchState>, Query, description = "Only batches in this state"),
        ("created_after" = Option<DateTime<Utc>>, Query, description = "Only batches created after this time (RFC 3339)"),
        ("cursor" = Option<String>, Query, pattern = r"^(b1\.[0-9a-fA-F]{32})?$", description = "The previous page's next_cursor (opaque); empty or absent: the first page; anything else: 400"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, 1-200 (default 50)"),
    ),
    responses((status = 200, description = "One page, newest first", body = BatchListPage), Listing),
)]
#[tracing::instrument(name = "batch_list", skip_all, fields(tenant = %tenant.0))]
pub(crate) async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<BatchListPage>, Problem> {
    // `receiving` (uploads still arriving) lives in the import store, not
    // among the stored batches: that filter answers those uploads alone.
    let receiving_only = params.state.as_deref() == Some("receiving");
    // An empty value is refused like any other value outside the enum.
    let batch_state = optional_param(
        params.state.as_deref().filter(|_| !receiving_only),
        "state",
        BatchState::parse,
        "state must be one of receiving, running, completed, cancelled",
    )?;
    // An empty value is refused like any other non-time (the document says date-time).
    let created_after = optional_param(
        params.created_after.as_deref(),
        "created_after",
        |raw| {
            DateTime::parse_from_rfc3339(raw.trim())
                .ok()
                .map(|t| t.with_timezone(&Utc))
        },
        "created_after must be an RFC 3339 time, e.g. 2026-01-31T12:00:00Z",
    )?;
    let before = cursor_param(params.cursor.as_deref(), decode_cursor)?;
    let limit = limit(params.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    if receiving_only {
        // At most 100 uploads arrive at once per tenant (the import store's
        // page); they are not paginated, so a cursor leaves nothing more.
        let uploads = if before.is_some() {
            Vec::new()
        } else {
            state
                .run(state.service().receiving_imports(&tenant.0))
                .await?
        };
        let data = uploads
            .iter()
            .filter(|u| created_after.is_none_or(|t| u.started_at > t))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .map(BatchStatusResponse::receiving)
            .collect();
        return Ok(Json(BatchListPage {
            data,
            next_cursor: None,
        }));
    }
    let query = BatchQuery {
        state: batch_state,
        created_after,
        before,
        limit,
    };
    let page = state
        .run(state.service().list_batches(&tenant.0, &query))
        .await?;
    // The first page of an unfiltered listing starts with the imports still
    // being uploaded (state `receiving`): how a client finds one to follow.
    let mut data = Vec::new();
    if before.is_none() && batch_state.is_none() {
        let uploads = state
            .run(state.service().receiving_imports(&tenant.0))
            .await?;
        data.extend(
            uploads
                .iter()
                .filter(|u| created_after.is_none_or(|t| u.started_at > t))
                .map(BatchStatusResponse::receiving),
        );
    }
    let at = now();
    data.extend(page.batches.iter().map(|s| BatchStatusResponse::new(s, at)));
    Ok(Json(BatchListPage {
        data,
        next_cursor: page.next_cursor.map(encode_cursor),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = BatchId::new();
        assert_eq!(decode_cursor(&encode_cursor(id)), Some(id));
        for bad in [
            "",
            "b1.",
            "b1.zz",
            "b2.0190b6a47c1e7d3a9f001234567890ab",
            "b1.0190b6a4-7c1e-7d3a-9f00-1234567890ab",
            "b1.0190b6a47c1e7d3a9f001234567890abcd",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
