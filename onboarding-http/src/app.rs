//! Shared state, the submission slots, the body reader and the middleware
//! (authentication is in `auth`, the tenants' rate limit in `limits`).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use onboarding_core::OnboardingService;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::Authenticator;
use crate::config::HttpConfig;
use crate::limits::TenantLimits;
use crate::metrics::{method_label, InProgress, Refusal};
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
}

pub(crate) use crate::auth::Tenant;

/// The semaphore of `max_concurrent_submissions` (`None`: no limit).
pub(crate) fn submission_slots(max: Option<usize>) -> Option<Arc<Semaphore>> {
    max.map(|n| Arc::new(Semaphore::new(n.clamp(1, Semaphore::MAX_PERMITS))))
}

/// A slot of the concurrent-submission limit, held while a submission is
/// handled. Taken after authentication and the rate limit and before the
/// body is read; when every slot is taken the request is answered at once
/// with 503 `overloaded` and `Retry-After` (shed, not queued).
pub(crate) struct SubmissionSlot {
    _permit: Option<OwnedSemaphorePermit>,
    _in_progress: InProgress,
}

impl FromRequestParts<AppState> for SubmissionSlot {
    type Rejection = Problem;

    async fn from_request_parts(_: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let shared = &state.inner;
        let permit = match &shared.submissions {
            None => None,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    shared.config.metrics.record_refused(Refusal::Concurrency);
                    let max = shared.config.max_concurrent_submissions.unwrap_or(0);
                    return Err(Problem::overloaded(
                        format!(
                            "{max} submissions are already in progress, the most this server \
                             handles at once; try again later"
                        ),
                        shared.config.retry_after,
                    ));
                }
            },
        };
        Ok(Self {
            _permit: permit,
            _in_progress: shared.config.metrics.submission_started(),
        })
    }
}

/// Turns a buffered body into JSON: 415 for a non-JSON content type, 413
/// past the body limit, 400 for anything that is not JSON.
///
/// A request without `Content-Type` is parsed as JSON (lenient for
/// `curl -d`-style clients that forget it); a present, non-JSON type is 415.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Value, Problem> {
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let raw = content_type.to_str().unwrap_or("<not text>");
        let mime = raw
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let is_json = mime == "application/json"
            || (mime.starts_with("application/") && mime.ends_with("+json"));
        if !is_json {
            return Err(Problem::unsupported_media_type(raw));
        }
    }
    let bytes = match body {
        Ok(bytes) => bytes,
        Err(BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_))) => {
            return Err(Problem::body_too_large(limit))
        }
        Err(e) => {
            return Err(Problem::malformed(format!(
                "the request body could not be read: {}",
                e.body_text()
            )))
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Problem::malformed(
            "the request body is empty; expected a JSON object",
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Problem::malformed(format!("the request body is not valid JSON: {e}")))
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

/// Answers 503 with `Retry-After` when a request takes longer than the timeout.
pub(crate) async fn timeout(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let limit = state.inner.config.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
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
