//! `GET /health`, `GET /ready`, `GET /metrics`, `GET /api/v1/openapi.json`.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::app::AppState;
use crate::dto::{ComponentCheck, Health, Readiness, ReadinessChecks};

/// How long a readiness check or a queue-depth read may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Liveness (no auth)
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is up", body = Health)))]
pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
    })
}

fn check(result: Option<&onboarding_core::Result<()>>, name: &str) -> ComponentCheck {
    match result {
        Some(Ok(())) => ComponentCheck {
            status: "up".to_owned(),
            error: None,
        },
        Some(Err(e)) => {
            tracing::warn!(component = name, error = %e, "readiness check failed");
            ComponentCheck {
                status: "down".to_owned(),
                error: Some(e.kind().as_str().to_owned()),
            }
        }
        None => ComponentCheck {
            status: "down".to_owned(),
            error: Some("timeout".to_owned()),
        },
    }
}

/// Readiness: database, queue and cache answer (no auth)
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Every backend answered", body = Readiness),
        (status = 503, description = "A backend did not answer", body = Readiness),
    ))]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let readiness = tokio::time::timeout(PROBE_TIMEOUT, state.service().readiness())
        .await
        .ok();
    let ready = readiness.as_ref().is_some_and(|r| r.is_ready());
    let body = Readiness {
        status: if ready { "ready" } else { "unavailable" }.to_owned(),
        checks: ReadinessChecks {
            database: check(readiness.as_ref().map(|r| &r.database), "database"),
            queue: check(readiness.as_ref().map(|r| &r.queue), "queue"),
            cache: check(readiness.as_ref().map(|r| &r.cache), "cache"),
        },
    };
    if ready {
        (StatusCode::OK, Json(body)).into_response()
    } else {
        let retry = state.config().retry_after.as_secs().max(1);
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(retry));
        response
    }
}

/// Prometheus metrics (no auth)
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let depth = tokio::time::timeout(PROBE_TIMEOUT, state.service().backends().queue.depth())
        .await
        .ok()
        .and_then(Result::ok);
    let text = state.config().metrics.render(depth);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

/// This API's OpenAPI 3 document (no auth)
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub(crate) async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.inner.openapi.clone(),
    )
        .into_response()
}
