//! A tenant's webhooks: endpoints (register, list, delete, rotate the
//! secret, ping) and deliveries (list, show with attempts, replay).

use std::future::Future;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use onboarding_core::model::BatchId;
use onboarding_core::webhooks::{
    AttemptRecord, DeliveryId, DeliveryQuery, DeliveryRecord, EndpointId, WebhookEndpoint,
};
use onboarding_core::{Error, FieldError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::extract::{json_object, PathId, QueryParams, Tenant, TenantItem};
use crate::handlers::{limit, MAX_PAGE};
use crate::problem::Problem;
use crate::responses::{BodyFailures, Conflict, Create, Listing, Lookup};
use crate::webhook::{DeliveryDetail, Webhooks};

/// A webhook endpoint (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct EndpointView {
    /// Its id.
    pub(crate) id: uuid::Uuid,
    /// Where deliveries go.
    pub(crate) url: String,
    /// The event types it receives.
    pub(crate) events: Vec<String>,
    /// Until when the secret before the last rotation still signs.
    pub(crate) previous_secret_expires_at: Option<DateTime<Utc>>,
    /// When it was registered.
    pub(crate) created_at: DateTime<Utc>,
    /// When it last changed.
    pub(crate) updated_at: DateTime<Utc>,
}

impl From<&WebhookEndpoint> for EndpointView {
    fn from(e: &WebhookEndpoint) -> Self {
        Self {
            id: e.id.0,
            url: e.url.clone(),
            events: e.events.clone(),
            previous_secret_expires_at: e
                .previous_secret_until
                .filter(|until| *until > onboarding_core::model::now()),
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its signing secret: shown once, when created or rotated.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct EndpointWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub(crate) endpoint: EndpointView,
    /// The signing secret (`whsec_…`); it is not shown again.
    pub(crate) secret: String,
}

impl From<&WebhookEndpoint> for EndpointWithSecret {
    /// As `register` and `rotate_secret` answer: the one time it is shown.
    fn from(endpoint: &WebhookEndpoint) -> Self {
        Self {
            endpoint: endpoint.into(),
            secret: endpoint.secret.clone(),
        }
    }
}

/// `GET /api/v1/webhooks/endpoints`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct EndpointsPage {
    /// Oldest first.
    pub(crate) endpoints: Vec<EndpointView>,
}

/// One delivery: an event for an endpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    /// Its id (what `replay` takes).
    pub(crate) id: uuid::Uuid,
    /// The endpoint.
    pub(crate) endpoint_id: uuid::Uuid,
    /// The event's stable id, sent as `Webhook-Id` with every attempt.
    pub(crate) webhook_id: String,
    /// The event type (`batch.completed`, `ping`, …).
    pub(crate) event: String,
    /// The batch it is about, if any.
    pub(crate) batch_id: Option<uuid::Uuid>,
    /// Where it was sent.
    pub(crate) url: String,
    /// `pending`, `delivered` or `failed`.
    pub(crate) status: String,
    /// Attempts made.
    pub(crate) attempts: u32,
    /// When the next attempt is due (pending only).
    pub(crate) next_attempt_at: Option<DateTime<Utc>>,
    /// The last attempt's HTTP status, when the endpoint answered.
    pub(crate) response_status: Option<u16>,
    /// Why the last attempt failed.
    pub(crate) error: Option<String>,
    /// How long the last attempt took.
    pub(crate) latency_ms: Option<u32>,
    /// When the event happened.
    pub(crate) created_at: DateTime<Utc>,
    /// When it last changed.
    pub(crate) updated_at: DateTime<Utc>,
}

impl From<&DeliveryRecord> for DeliveryView {
    fn from(r: &DeliveryRecord) -> Self {
        Self {
            id: r.id.0,
            endpoint_id: r.endpoint_id.0,
            webhook_id: r.webhook_id.clone(),
            event: r.event.clone(),
            batch_id: r.batch_id.map(|b| b.0),
            url: r.url.clone(),
            status: r.status.as_str().to_owned(),
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            response_status: r.last_status_code,
            error: r.last_error.clone(),
            latency_ms: r.last_latency_ms,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct AttemptView {
    /// 1-based.
    pub(crate) attempt: u32,
    /// When it started.
    pub(crate) started_at: DateTime<Utc>,
    /// How long it took.
    pub(crate) latency_ms: u32,
    /// The endpoint's HTTP status, when it answered.
    pub(crate) response_status: Option<u16>,
    /// Why it failed.
    pub(crate) error: Option<String>,
    /// Whether it was answered 2xx.
    pub(crate) delivered: bool,
}

impl From<&AttemptRecord> for AttemptView {
    fn from(a: &AttemptRecord) -> Self {
        Self {
            attempt: a.attempt,
            started_at: a.started_at,
            latency_ms: a.latency_ms,
            response_status: a.status_code,
            error: a.error.clone(),
            delivered: a.delivered,
        }
    }
}

/// A delivery with every attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeliveryDetailView {
    /// The delivery.
    #[serde(flatten)]
    pub(crate) delivery: DeliveryView,
    /// Its attempts, in order.
    pub(crate) attempts_log: Vec<AttemptView>,
}

impl DeliveryDetailView {
    fn new((record, attempts): &(DeliveryRecord, Vec<AttemptRecord>)) -> Self {
        Self {
            delivery: record.into(),
            attempts_log: attempts.iter().map(AttemptView::from).collect(),
        }
    }
}

/// `GET /api/v1/webhooks/deliveries`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct DeliveriesPage {
    /// Newest first.
    pub(crate) deliveries: Vec<DeliveryView>,
}

/// `POST /api/v1/webhooks/endpoints` body.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body; parsed field by field for precise errors
pub(crate) struct NewEndpoint {
    /// An absolute `https://` URL on a public address.
    #[schema(format = "uri", pattern = "^https?://")]
    url: String,
    /// Event types (default `["batch.completed"]`).
    events: Option<Vec<EventType>>,
}

/// The event types an endpoint can receive.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body
pub(crate) enum EventType {
    /// Every item of a batch reached a terminal status.
    #[serde(rename = "batch.completed")]
    BatchCompleted,
    /// A submission inserted an organization.
    #[serde(rename = "organization.created")]
    OrganizationCreated,
    /// A submission changed an organization.
    #[serde(rename = "organization.updated")]
    OrganizationUpdated,
    /// An organization was processed.
    #[serde(rename = "organization.processed")]
    OrganizationProcessed,
    /// An organization failed for good.
    #[serde(rename = "organization.failed")]
    OrganizationFailed,
}

/// `POST /api/v1/webhooks/endpoints/{id}/rotate-secret` body (optional).
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)] // documents the body
pub(crate) struct Rotation {
    /// How long the old secret keeps signing, 0-604800 s (default 86400).
    #[schema(minimum = 0, maximum = 604800)]
    overlap_seconds: Option<u64>,
}

fn webhooks(state: &AppState) -> Result<&Webhooks, Problem> {
    state
        .config()
        .webhooks
        .as_ref()
        .ok_or_else(|| Problem::not_found("webhooks are not enabled on this server"))
}

fn invalid(pointer: &str, code: &str, detail: &str) -> Problem {
    Problem::from_core(
        &Error::invalid(vec![FieldError::new(pointer, code, detail)]),
        std::time::Duration::from_secs(1),
    )
}

impl PathId for EndpointId {
    const MISSING: &'static str = "no such webhook endpoint";
}

impl PathId for DeliveryId {
    const MISSING: &'static str = "no such webhook delivery";
}

/// A delivery with its attempts, as `ping`, `show` and `replay` answer it:
/// `call` made on the server's webhooks (404 when there are none).
async fn detail<'a, F>(
    state: &'a AppState,
    call: impl FnOnce(&'a Webhooks) -> F,
) -> Result<Json<DeliveryDetailView>, Problem>
where
    F: Future<Output = onboarding_core::Result<DeliveryDetail>>,
{
    let detail = state.run(call(webhooks(state)?)).await?;
    Ok(Json(DeliveryDetailView::new(&detail)))
}

/// Register a webhook endpoint; its signing secret is in the answer, once
#[utoipa::path(
    post, path = "/api/v1/webhooks/endpoints", operation_id = "webhook_register", tag = "webhooks",
    request_body = NewEndpoint,
    responses((status = 201, description = "Registered", body = EndpointWithSecret), Create),
)]
#[tracing::instrument(name = "webhook_register", skip_all, fields(tenant = %tenant.0))]
pub(crate) async fn register(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<EndpointWithSecret>), Problem> {
    let webhooks = webhooks(&state)?;
    let value = json_object(&headers, body, state.config().body_limit, false)?;
    let url = value.get("url").and_then(Value::as_str).ok_or_else(|| {
        invalid(
            "/url",
            "url_invalid",
            "url must be a string: an https:// URL",
        )
    })?;
    let events = match value.get("events") {
        None | Some(Value::Null) => vec!["batch.completed".to_owned()],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, e)| {
                e.as_str().map(str::to_owned).ok_or_else(|| {
                    invalid(
                        &format!("/events/{i}"),
                        "event_unknown",
                        "event types are strings",
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                "/events",
                "events_invalid",
                "events must be a list of event types",
            ))
        }
    };
    let endpoint = state
        .run(webhooks.register(&tenant.0, url, &events))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointWithSecret::from(&endpoint)),
    ))
}

/// This tenant's webhook endpoints
#[utoipa::path(
    get, path = "/api/v1/webhooks/endpoints", operation_id = "webhook_endpoints", tag = "webhooks",
    responses((status = 200, description = "Endpoints", body = EndpointsPage), Lookup),
)]
pub(crate) async fn endpoints(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<EndpointsPage>, Problem> {
    let list = state.run(webhooks(&state)?.endpoints(&tenant.0)).await?;
    Ok(Json(EndpointsPage {
        endpoints: list.iter().map(EndpointView::from).collect(),
    }))
}

/// Delete a webhook endpoint (its deliveries stay listed)
#[utoipa::path(
    delete, path = "/api/v1/webhooks/endpoints/{id}", operation_id = "webhook_delete", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "The endpoint id")),
    responses((status = 204, description = "Deleted"), Lookup),
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    endpoint: TenantItem<EndpointId>,
) -> Result<StatusCode, Problem> {
    state
        .run(webhooks(&state)?.delete(&endpoint.tenant, endpoint.id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give an endpoint a new signing secret; the old one keeps signing during the overlap
#[utoipa::path(
    post, path = "/api/v1/webhooks/endpoints/{id}/rotate-secret", operation_id = "webhook_rotate_secret", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "The endpoint id")),
    request_body(content = Option<Rotation>, description = "Optional: the overlap"),
    responses((status = 200, description = "The new secret (shown once); deliveries carry both signatures until previous_secret_expires_at", body = EndpointWithSecret), BodyFailures),
)]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    endpoint: TenantItem<EndpointId>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<EndpointWithSecret>, Problem> {
    let value = json_object(&headers, body, state.config().body_limit, true)?;
    let overlap = match value.get("overlap_seconds") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            // JSON Schema counts 3600.0 as an integer too.
            v.as_u64()
                .or_else(|| {
                    v.as_f64()
                        .filter(|f| f.fract() == 0.0 && (0.0..=604_800.0).contains(f))
                        .map(|f| f as u64)
                })
                .filter(|s| *s <= 7 * 24 * 3600)
                .map(std::time::Duration::from_secs)
                .ok_or_else(|| {
                    invalid(
                        "/overlap_seconds",
                        "overlap_invalid",
                        "overlap_seconds must be 0-604800",
                    )
                })?,
        ),
    };
    let rotated = state
        .run(webhooks(&state)?.rotate_secret(&endpoint.tenant, endpoint.id, overlap))
        .await?;
    Ok(Json(EndpointWithSecret::from(&rotated)))
}

/// Send a test ping to an endpoint now
#[utoipa::path(
    post, path = "/api/v1/webhooks/endpoints/{id}/ping", operation_id = "webhook_ping", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "The endpoint id")),
    responses((status = 200, description = "The ping's delivery and attempt (see its status)", body = DeliveryDetailView), Lookup),
)]
pub(crate) async fn ping(
    State(state): State<AppState>,
    endpoint: TenantItem<EndpointId>,
) -> Result<Json<DeliveryDetailView>, Problem> {
    detail(&state, |w| w.ping(&endpoint.tenant, endpoint.id)).await
}

/// Query parameters of the deliveries listing.
#[derive(Debug, Deserialize)]
pub(crate) struct DeliveriesParams {
    batch_id: Option<String>,
    endpoint_id: Option<String>,
    limit: Option<String>,
}

/// This tenant's webhook deliveries, newest first
#[utoipa::path(
    get, path = "/api/v1/webhooks/deliveries", operation_id = "webhook_deliveries", tag = "webhooks",
    params(
        ("batch_id" = Option<uuid::Uuid>, Query, description = "Only deliveries of this batch"),
        ("endpoint_id" = Option<uuid::Uuid>, Query, description = "Only deliveries to this endpoint"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "At most this many, 1-1000 (default 100)"),
    ),
    responses((status = 200, description = "Deliveries", body = DeliveriesPage), Listing),
)]
#[tracing::instrument(name = "webhook_deliveries", skip_all, fields(tenant = %tenant.0))]
pub(crate) async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    QueryParams(params): QueryParams<DeliveriesParams>,
) -> Result<Json<DeliveriesPage>, Problem> {
    let mut q = DeliveryQuery::latest(limit(params.limit.as_deref(), 100, MAX_PAGE)?);
    if let Some(raw) = params.batch_id.as_deref() {
        q = q.of_batch(raw.parse::<BatchId>().map_err(|_| {
            Problem::invalid_parameter("batch_id", "invalid_value", "batch_id must be a UUID")
        })?);
    }
    if let Some(raw) = params.endpoint_id.as_deref() {
        q = q.of_endpoint(raw.parse::<EndpointId>().map_err(|_| {
            Problem::invalid_parameter("endpoint_id", "invalid_value", "endpoint_id must be a UUID")
        })?);
    }
    let deliveries = match state.config().webhooks.as_ref() {
        Some(w) => state.run(w.deliveries(&tenant.0, &q)).await?,
        None => Vec::new(),
    };
    Ok(Json(DeliveriesPage {
        deliveries: deliveries.iter().map(DeliveryView::from).collect(),
    }))
}

/// One webhook delivery with every attempt
#[utoipa::path(
    get, path = "/api/v1/webhooks/deliveries/{id}", operation_id = "webhook_delivery", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "A delivery id from the listing")),
    responses((status = 200, description = "The delivery", body = DeliveryDetailView), Lookup),
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    delivery: TenantItem<DeliveryId>,
) -> Result<Json<DeliveryDetailView>, Problem> {
    detail(&state, |w| w.delivery(&delivery.tenant, delivery.id)).await
}

/// Send a webhook delivery again now (a new round of retries follows a failure)
#[utoipa::path(
    post, path = "/api/v1/webhooks/deliveries/{id}/replay", operation_id = "webhook_replay", tag = "webhooks",
    params(("id" = uuid::Uuid, Path, description = "A delivery id from the listing")),
    responses((status = 200, description = "The delivery after the attempt (see its status)", body = DeliveryDetailView), Lookup, Conflict),
)]
#[tracing::instrument(name = "webhook_replay", skip_all, fields(tenant = %delivery.tenant))]
pub(crate) async fn replay(
    State(state): State<AppState>,
    delivery: TenantItem<DeliveryId>,
) -> Result<Json<DeliveryDetailView>, Problem> {
    detail(&state, |w| w.replay(&delivery.tenant, delivery.id)).await
}
