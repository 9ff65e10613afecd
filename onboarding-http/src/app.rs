//! Shared state and the middleware (metrics, request timeout);
//! authentication is in `auth`, the tenants' rate limit in `limits`.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use onboarding_core::OnboardingService;
use tokio::sync::Semaphore;

use crate::auth::Authenticator;
use crate::config::HttpConfig;
use crate::limits::TenantLimits;
use crate::metrics::method_label;
use crate::problem::Problem;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) inner: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) service: OnboardingService,
    pub(crate) config: HttpConfig,
    pub(crate) auth: Authenticator,
    pub(crate) limits: TenantLimits,
    /// Slots of `HttpConfig::max_concurrent_submissions` (`None`: no limit).
    pub(crate) submissions: Option<Arc<Semaphore>>,
    pub(crate) openapi: Bytes,
}

impl AppState {
    pub(crate) fn service(&self) -> &OnboardingService {
        &self.inner.service
    }

    pub(crate) fn config(&self) -> &HttpConfig {
        &self.inner.config
    }

    pub(crate) fn problem(&self, error: &onboarding_core::Error) -> Problem {
        Problem::from_core(error, self.inner.config.retry_after)
    }

    /// Awaits a call of the service (or of a store), its error as the
    /// problem this server answers: what most handlers do once per request.
    pub(crate) async fn run<T>(
        &self,
        call: impl Future<Output = onboarding_core::Result<T>>,
    ) -> Result<T, Problem> {
        call.await.map_err(|e| self.problem(&e))
    }
}

/// Counts every request by matched route, method and status.
pub(crate) async fn track_metrics(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    state.inner.config.metrics.record_request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Marks the moment a submission hands its request to the service's store
/// step. The request timeout answers 503 "try again" only before it: a
/// store step it cut could still commit (SQL writes run to completion in
/// their own tasks), and the client's retry would then create a second
/// batch. After it, the answer is the store's own outcome (202, or the
/// backend's error), however long it takes; the backends' own timeouts
/// bound it (e.g. the pool's acquire timeout).
#[derive(Debug, Clone, Default)]
pub(crate) struct StoreStep(Arc<AtomicBool>);

impl StoreStep {
    /// From now on the request timeout no longer answers for this request.
    pub(crate) fn begin(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn has_begun(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Answers 503 with `Retry-After` when a request takes longer than the
/// timeout, unless its store step has begun ([`StoreStep`]): then it waits
/// for the answer.
pub(crate) async fn timeout(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let limit = state.inner.config.request_timeout;
    let store = StoreStep::default();
    request.extensions_mut().insert(store.clone());
    let mut response = std::pin::pin!(next.run(request));
    match tokio::time::timeout(limit, response.as_mut()).await {
        Ok(response) => response,
        Err(_) if store.has_begun() => {
            tracing::info!(timeout = ?limit,
                "past the request timeout while storing a submission; answering with its outcome");
            response.await
        }
        Err(_) => {
            tracing::warn!(timeout = ?limit, "request timed out");
            Problem::unavailable(
                format!(
                    "the request took longer than {} ms; try again later",
                    limit.as_millis()
                ),
                state.inner.config.retry_after,
            )
            .into_response()
        }
    }
}
