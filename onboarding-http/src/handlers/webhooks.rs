//! `GET /api/v1/webhooks/deliveries`, `POST /api/v1/webhooks/deliveries/{id}/replay`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use onboarding_core::model::BatchId;
use serde::Deserialize;

use crate::app::{AppState, Tenant};
use crate::dto::DeliveriesPage;
use crate::handlers::limit;
use crate::problem::Problem;
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
    tag = "webhooks",
    params(
        ("batch_id" = Option<uuid::Uuid>, Query, description = "Only deliveries of this batch"),
        ("limit" = Option<u32>, Query, description = "At most this many, 1-1000 (default 100)"),
    ),
    responses(
        (status = 200, description = "Deliveries", body = DeliveriesPage),
        (status = 401, description = "Missing or wrong API key", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 422, description = "Invalid batch_id or limit", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(name = "webhook_deliveries", skip_all, fields(tenant = %tenant.0))]
pub(crate) async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    query: Result<Query<DeliveriesParams>, QueryRejection>,
) -> Result<Json<DeliveriesPage>, Problem> {
    let Query(params) = query.map_err(|e| {
        Problem::malformed(format!("the query string is invalid: {}", e.body_text()))
    })?;
    let limit = limit(params.limit.as_deref(), 100, 1000)?;
    let batch = match params.batch_id.as_deref().map(str::trim) {
        None | Some("") => None,
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
    tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "A delivery id from the listing")),
    responses(
        (status = 200, description = "The replay's last attempt (see its outcome)", body = Delivery),
        (status = 401, description = "Missing or wrong API key", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 404, description = "No such delivery for this tenant", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
        (status = 429, description = "Rate limited", body = crate::problem::ProblemDocument, content_type = "application/problem+json"),
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
    let Ok(Path(raw)) = path else {
        return Err(not_found());
    };
    let id: uuid::Uuid = raw.parse().map_err(|_| not_found())?;
    tracing::Span::current().record("delivery_id", tracing::field::display(id));
    let Some(webhooks) = state.config().webhooks.as_ref() else {
        return Err(not_found());
    };
    let delivery = webhooks
        .replay(&tenant.0, id)
        .await
        .map_err(|e| state.problem(&e))?;
    Ok(Json(delivery))
}
