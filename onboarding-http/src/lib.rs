#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod app;
mod auth;
mod config;
mod dashboard;
pub mod dto;
mod extract;
mod handlers;
mod limits;
mod metrics;
mod openapi;
mod operator;
mod problem;
mod responses;
mod serve;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::Router;
use onboarding_core::OnboardingService;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::trace::{DefaultOnResponse, TraceLayer};

pub use auth::AUTH_FAILURES;
pub use config::{
    ApiKeys, ConfigError, HttpConfig, HttpConfigBuilder, KeyHash, RateLimit, SharedConfig,
};
pub use dashboard::{dashboard_router, DashboardConfig, CONTENT_SECURITY_POLICY};
pub use metrics::Metrics;
pub use openapi::ApiDoc;
pub use operator::operator_router;
pub use problem::{Problem, ProblemDocument, ProblemField, PROBLEM_JSON};
pub use serve::{serve, ServeConfig};
pub use webhook::{UrlPolicy, WebhookConfig, WebhookSink, Webhooks};

use app::{AppState, Shared};
use auth::Authenticator;
use handlers::{admin, batches, imports, onboard, ops, results, webhooks};
use handlers::{events, failures, listing, organizations, throughput};
use limits::TenantLimits;

/// The OpenAPI document as JSON, with links between the operations.
pub fn openapi_json() -> String {
    serde_json::to_string_pretty(&openapi::document()).unwrap_or_else(|_| "{}".to_owned())
}

/// The whole API as an axum [`Router`] over an already built service.
///
/// Nest it in a host service (`host.nest("/onboarding", router(..))`) or
/// serve it as it is, best with [`serve`] (header and idle timeouts, a
/// connection cap). Every error is an `application/problem+json`
/// document; unknown routes are 404 problems. `/ready` and `/metrics` are
/// not here: they are on [`operator_router`], for a private listener.
pub fn router(service: OnboardingService, config: HttpConfig) -> Router {
    if let Some(webhooks) = &config.webhooks {
        webhooks.attach_metrics(&config.metrics);
    }
    config.metrics.start_upkeep();
    let body_limit = config.body_limit;
    let openapi =
        serde_json::to_string_pretty(&openapi::served(config.shared.admin_token.is_some()))
            .unwrap_or_else(|_| "{}".to_owned());
    let state = AppState {
        inner: Arc::new(Shared {
            service,
            auth: Authenticator::new(
                config.api_keys.clone(),
                config.shared.key_store.clone(),
                config.shared.admin_token,
                config.shared.auth_failures,
            ),
            limits: TenantLimits::new(
                config.rate_limit.map(|r| r.rate()),
                config.shared.rate_limiter.clone(),
            ),
            submissions: extract::submission_slots(config.max_concurrent_submissions),
            config,
            openapi: openapi.into(),
        }),
    };
    Router::new()
        .route("/api/bulk-onboard", post(onboard::seed))
        .route("/api/v1/bulk-onboard", post(onboard::v1))
        .route("/api/v1/bulk-onboard/validate", post(onboard::validate))
        .route("/api/v1/batches", get(listing::list))
        // Files are streamed with their own limit (`import_body_limit`), not the JSON one.
        .route(
            "/api/v1/imports",
            post(imports::create).layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/batches/{id}", get(batches::status))
        .route("/api/v1/batches/{id}/organizations", get(batches::items))
        .route("/api/v1/batches/{id}/results", get(results::results))
        .route("/api/v1/batches/{id}/retry", post(batches::retry))
        .route("/api/v1/batches/{id}/cancel", post(batches::cancel))
        .route("/api/v1/batches/{id}/failures", get(failures::groups))
        .route(
            "/api/v1/batches/{id}/failures/{group}/retry",
            post(failures::retry),
        )
        .route("/api/v1/batches/{id}/events", get(events::batch))
        .route("/api/v1/events", get(events::tenant))
        .route("/api/v1/throughput", get(throughput::throughput))
        .route("/api/v1/organizations", get(organizations::list))
        .route(
            "/api/v1/organizations/{domain}",
            get(organizations::show).delete(organizations::delete),
        )
        .route(
            "/api/v1/organizations/{domain}/versions",
            get(organizations::versions),
        )
        .route(
            "/api/v1/webhooks/endpoints",
            get(webhooks::endpoints).post(webhooks::register),
        )
        .route("/api/v1/webhooks/endpoints/{id}", delete(webhooks::delete))
        .route(
            "/api/v1/webhooks/endpoints/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/api/v1/webhooks/endpoints/{id}/ping", post(webhooks::ping))
        .route("/api/v1/webhooks/deliveries", get(webhooks::list))
        .route("/api/v1/webhooks/deliveries/{id}", get(webhooks::show))
        .route(
            "/api/v1/webhooks/deliveries/{id}/replay",
            post(webhooks::replay),
        )
        .route(
            "/api/v1/admin/tenants",
            get(admin::tenants).post(admin::create_tenant),
        )
        .route(
            "/api/v1/admin/tenants/{tenant}/keys",
            post(admin::create_key),
        )
        .route("/api/v1/admin/keys", get(admin::keys))
        .route("/api/v1/admin/keys/{key}/revoke", post(admin::revoke))
        .route("/api/v1/admin/keys/{key}/rotate", post(admin::rotate))
        .route("/health", get(ops::health))
        .route("/api/v1/openapi.json", get(ops::openapi))
        .fallback(|| async { Problem::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this route does not answer this method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            app::timeout,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            app::track_metrics,
        ))
        .layer(
            TraceLayer::new_for_http()
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .on_failure(on_failure),
        )
        .layer(CatchPanicLayer::custom(
            |_panic: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked");
                Problem::internal().into_response()
            },
        ))
        .with_state(state)
}

/// Logs a 5xx answer. A 503 is expected under load shedding and when a
/// backend is down (which `Problem::from_core` and the timeout already log
/// at warn), so it is not an error here: an overloaded server must not also
/// flood its log with one error line per refused request.
fn on_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let latency_ms = latency.as_millis();
    match class {
        ServerErrorsFailureClass::StatusCode(status)
            if status == axum::http::StatusCode::SERVICE_UNAVAILABLE =>
        {
            tracing::debug!(%status, latency_ms, "service unavailable or overloaded");
        }
        class => tracing::error!(classification = %class, latency_ms, "response failed"),
    }
}
