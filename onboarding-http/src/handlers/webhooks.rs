//! `GET /api/v1/webhooks/deliveries`, `POST /api/v1/webhooks/deliveries/{id}/replay`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use onboarding_core::model::BatchId;
use serde::Deserialize;

use crate::app::AppState;
use crate::dto::DeliveriesPage;
use crate::extract::Tenant;
use crate::handlers::{limit, query, MAX_PAGE};
use crate::problem::Problem;
use crate::responses::{Invalid, Malformed, NotFound, RateLimited, Unauthorized};
use crate::webhook::Delivery;

/// Query parameters of the deliveries listing.
#[derive(Debug, Deserialize)]
pub(crate) struct DeliveriesParams {
    batch_id: Option<String>,
    limit: Option<String>,
}

/// This tenant's webhook delivery attempts, newest first
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/deliveries",
    operation_id = "webhook_deliveries",
    tag = "webhooks",
    params(
        ("batch_id" = Option<uuid::Uuid>, Query, description = "Only deliveries of this batch"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many, 1-1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "Deliveries", body = DeliveriesPage),
        Malformed, Unauthorized, Invalid, RateLimited,
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "webhook_deliveries", skip_all, fields(tenant = %tenant.0))]
pub(crate) async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    params: Result<Query<DeliveriesParams>, QueryRejection>,
) -> Result<Json<DeliveriesPage>, Problem> {
    let params = query(params)?;
    let limit = limit(params.limit.as_deref(), 100, MAX_PAGE)?;
    let batch = match params.batch_id.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<BatchId>().map_err(|_| {
            Problem::invalid_parameter("batch_id", "invalid_value", "batch_id must be a UUID")
        })?),
    };
    let deliveries = state
        .config()
        .webhooks
        .as_ref()
        .map(|w| w.deliveries(&tenant.0, batch, limit as usize))
        .unwrap_or_default();
    Ok(Json(DeliveriesPage { deliveries }))
}

/// Send a logged webhook delivery again
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/deliveries/{id}/replay",
    operation_id = "webhook_replay",
    tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "A delivery id from the listing")),
    responses(
        (status = 200, description = "The replay's last attempt (see its outcome)", body = Delivery),
        Unauthorized, NotFound, RateLimited,
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "webhook_replay", skip_all, fields(tenant = %tenant.0, delivery_id = tracing::field::Empty))]
pub(crate) async fn replay(
    State(state): State<AppState>,
    tenant: Tenant,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Delivery>, Problem> {
    let not_found = || Problem::not_found("no such webhook delivery");
    let id: uuid::Uuid = path
        .ok()
        .and_then(|Path(raw)| raw.parse().ok())
        .ok_or_else(not_found)?;
    tracing::Span::current().record("delivery_id", tracing::field::display(id));
    let webhooks = state.config().webhooks.as_ref().ok_or_else(not_found)?;
    let delivery = webhooks
        .replay(&tenant.0, id)
        .await
        .map_err(|e| state.problem(&e))?;
    Ok(Json(delivery))
}
