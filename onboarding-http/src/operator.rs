//! The operator endpoints, `GET /health`, `GET /ready` and `GET /metrics`,
//! on a router of their own for a listener of their own (the examples'
//! `METRICS_ADDR`, loopback by default). They answer without an API key and
//! reach the backends, so they stay off the public listener: there, anyone
//! could read the metrics and make every request ping the database.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use onboarding_core::{JobQueue, OnboardingService, QueueDepth};
use serde::Serialize;

use crate::handlers::ops::health;
use crate::metrics::Metrics;
use crate::problem::Problem;

/// How long a readiness check or a queue-depth read may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one queue-depth reading serves the scrapes (a SQL queue's depth
/// is a `COUNT(*)`: not once per scrape of every Prometheus replica).
pub(crate) const DEPTH_REFRESH: Duration = Duration::from_secs(5);

/// The operator endpoints over `service`'s backends and `metrics`:
///
/// | route | answer |
/// |---|---|
/// | `GET /health` | 200 `{"status":"ok"}`: the process is up |
/// | `GET /ready` | 200 (`ready`, or `degraded`: serving, a read replica down or behind), or 503 with `Retry-After`, and the status of the database, queue and cache |
/// | `GET /metrics` | Prometheus text; the queue depth is read at most every 5 s |
///
/// Serve it on a loopback or otherwise private address: it has no
/// authentication. A worker-only process serves it too (a service over the
/// same backends is all it needs).
pub fn operator_router(service: OnboardingService, metrics: Metrics) -> Router {
    metrics.start_upkeep();
    let state = Operator {
        service,
        metrics,
        depth: std::sync::Arc::new(DepthCache::default()),
    };
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .fallback(|| async { Problem::not_found("no such route") })
        .with_state(state)
}

#[derive(Clone)]
struct Operator {
    service: OnboardingService,
    metrics: Metrics,
    depth: std::sync::Arc<DepthCache>,
}

/// One backend's readiness.
#[derive(Debug, Serialize)]
struct ComponentCheck {
    /// `up`, `degraded` (serving with less: a read replica down or behind) or `down`.
    status: &'static str,
    /// The error kind when down (details are in the server log).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
}

fn check(result: Option<&onboarding_core::Result<()>>, name: &str) -> ComponentCheck {
    match result {
        Some(Ok(())) => ComponentCheck {
            status: "up",
            error: None,
        },
        Some(Err(e)) => {
            tracing::warn!(component = name, error = %e, "readiness check failed");
            ComponentCheck {
                status: "down",
                error: Some(e.kind().as_str()),
            }
        }
        None => ComponentCheck {
            status: "down",
            error: Some("timeout"),
        },
    }
}

/// `{"status": "ready"|"degraded"|"unavailable", "checks": {"database": …, "queue": …, "cache": …}}`:
/// `degraded` (200) when every backend answers but the database works in a
/// reduced way (a read replica down or behind, reads served by the primary).
async fn ready(State(operator): State<Operator>) -> Response {
    let readiness = tokio::time::timeout(PROBE_TIMEOUT, operator.service.readiness())
        .await
        .ok();
    let ready = readiness.as_ref().is_some_and(|r| r.is_ready());
    let mut checks: std::collections::BTreeMap<&str, ComponentCheck> = [
        ("database", readiness.as_ref().map(|r| &r.database)),
        ("queue", readiness.as_ref().map(|r| &r.queue)),
        ("cache", readiness.as_ref().map(|r| &r.cache)),
    ]
    .into_iter()
    .map(|(name, result)| (name, check(result, name)))
    .collect();
    let degraded = readiness.as_ref().and_then(|r| r.degraded);
    if let (true, Some(reason), Some(database)) = (ready, degraded, checks.get_mut("database")) {
        *database = ComponentCheck {
            status: "degraded",
            error: Some(reason),
        };
    }
    let body = serde_json::json!({
        "status": match (ready, degraded) {
            (true, None) => "ready",
            (true, Some(_)) => "degraded",
            (false, _) => "unavailable",
        },
        "checks": checks,
    });
    if ready {
        return (StatusCode::OK, Json(body)).into_response();
    }
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

async fn render_metrics(State(operator): State<Operator>) -> Response {
    let depth = operator
        .depth
        .read(&*operator.service.backends().queue)
        .await;
    operator.metrics.record_depth(depth);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        operator.metrics.render(),
    )
        .into_response()
}

/// The last queue-depth reading, reused for [`DEPTH_REFRESH`].
#[derive(Default)]
struct DepthCache {
    last: tokio::sync::Mutex<Option<(Instant, Option<QueueDepth>)>>,
}

impl DepthCache {
    /// The depth from a reading at most [`DEPTH_REFRESH`] old; one scrape
    /// reads at a time and the others wait for its reading.
    async fn read(&self, queue: &dyn JobQueue) -> Option<QueueDepth> {
        let mut last = self.last.lock().await;
        if let Some((at, depth)) = *last {
            if at.elapsed() < DEPTH_REFRESH {
                return depth;
            }
        }
        let depth = tokio::time::timeout(PROBE_TIMEOUT, queue.depth())
            .await
            .ok()
            .and_then(Result::ok);
        *last = Some((Instant::now(), depth));
        depth
    }
}
