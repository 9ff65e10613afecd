//! The extractors handlers share: the authenticated tenant, the tenant with
//! the batch of the path, a concurrent-submission slot, the query string's
//! parameters and the JSON body.

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use onboarding_core::model::{BatchId, TenantId};
use onboarding_core::validate::JsonBody;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::app::AppState;
use crate::handlers::query;
use crate::metrics::{InProgress, Refusal};
use crate::problem::Problem;

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
    let bytes = json_bytes(headers, body, limit)?;
    serde_json::from_slice(&bytes).map_err(not_json)
}

/// A submission's body, parsed for validation ([`JsonBody`]: no `Value`
/// for a well-typed body), with [`json_body`]'s answers.
pub(crate) fn submission_body(bytes: &Bytes) -> Result<JsonBody<'_>, Problem> {
    JsonBody::parse(bytes).map_err(not_json)
}

fn not_json(e: serde_json::Error) -> Problem {
    Problem::malformed(format!("the request body is not valid JSON: {e}"))
}

/// The checks of [`json_body`] before parsing: the content type, the body
/// limit and an empty body.
pub(crate) fn json_bytes(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<Bytes, Problem> {
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
    Ok(bytes)
}

/// An id a path names (`/api/v1/batches/{id}`, …), for [`TenantItem`].
pub(crate) trait PathId: FromStr {
    /// The 404's detail when the path names none of the tenant's.
    const MISSING: &'static str;
}

impl PathId for BatchId {
    const MISSING: &'static str = "no such batch";
}

/// The authenticated tenant and the item its path names (`/…/{id}`): 401
/// before 404, and an id that does not parse is an item that does not exist.
pub(crate) struct TenantItem<T> {
    pub(crate) tenant: TenantId,
    pub(crate) id: T,
}

/// The tenant and the batch of a `/api/v1/batches/{id}/…` path.
pub(crate) type TenantBatch = TenantItem<BatchId>;

impl<T: PathId + Send> FromRequestParts<AppState> for TenantItem<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Tenant(tenant) = Tenant::from_request_parts(parts, state).await?;
        let id = Path::<String>::from_request_parts(parts, state)
            .await
            .ok()
            .and_then(|Path(raw)| raw.parse::<T>().ok())
            .ok_or_else(|| Problem::not_found(T::MISSING))?;
        Ok(Self { tenant, id })
    }
}

/// The query string's parameters as `T`: [`query`]'s 400 when it cannot be
/// read. Listed after the tenant, so 401 comes first.
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        query(Query::<T>::from_request_parts(parts, state).await).map(Self)
    }
}

/// A JSON object body, for the routes whose body is one small object:
/// [`json_body`]'s answers, an empty body or `null` as `{}` when `optional`, and 422
/// for JSON that is not an object.
pub(crate) fn json_object(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
    optional: bool,
) -> Result<serde_json::Map<String, Value>, Problem> {
    let empty = body
        .as_ref()
        .is_ok_and(|b| b.iter().all(u8::is_ascii_whitespace));
    if optional && empty {
        return Ok(serde_json::Map::new());
    }
    match json_body(headers, body, limit)? {
        Value::Object(map) => Ok(map),
        Value::Null if optional => Ok(serde_json::Map::new()),
        _ => Err(Problem::from_core(
            &onboarding_core::Error::invalid(vec![onboarding_core::FieldError::new(
                "",
                "body_not_object",
                "the body must be a JSON object",
            )]),
            std::time::Duration::from_secs(1),
        )),
    }
}
