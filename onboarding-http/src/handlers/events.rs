//! Server-Sent Events: `GET /api/v1/batches/{id}/events` (one batch) and
//! `GET /api/v1/events` (every batch of the tenant).
//!
//! Workers may run in other processes, so a stream does not listen to this
//! process's events: it polls the shared status (database, through the
//! status cache that workers invalidate) every second and pushes what
//! changed. Each stream is a `futures` stream owned by its response body:
//! when the client goes away the body is dropped and so is the stream (no
//! task is spawned). Every stream is bounded: a few hundred batches tracked
//! at most, [`MAX_STREAMS`] streams per process, [`MAX_LIFETIME`] each (the
//! client reconnects), and the API key is checked again every few seconds
//! (a revoked key ends the stream with an `unauthorized` event).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use onboarding_core::model::{
    now, BatchCounts, BatchId, BatchState, BatchStatus, TenantId, Timestamp,
};
use onboarding_core::repository::BatchQuery;
use onboarding_core::ErrorKind;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::dto::BatchStatusResponse;
use crate::extract::{Tenant, TenantBatch};
use crate::problem::Problem;
use crate::responses::{Lookup, RateLimited, Unauthorized, Unavailable};

/// How often a stream reads the shared status.
pub(crate) const POLL: Duration = Duration::from_secs(1);
/// A comment line at least this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often the stream's API key is checked again.
const RECHECK_KEY: Duration = Duration::from_secs(5);
/// A stream ends after this long; the client reconnects.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// Streams one process serves at once; more answer 503.
pub(crate) const MAX_STREAMS: usize = 1024;
/// Running batches the tenant stream follows (plus [`NEWEST`] recent ones).
const RUNNING: u32 = 100;
/// Most recent batches the tenant stream follows whatever their state.
const NEWEST: u32 = 20;

fn streams() -> Arc<Semaphore> {
    static STREAMS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    STREAMS
        .get_or_init(|| Arc::new(Semaphore::new(MAX_STREAMS)))
        .clone()
}

/// The `stats` event of the tenant stream, once per poll.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct StreamStats {
    /// When it was measured.
    pub(crate) at: chrono::DateTime<chrono::Utc>,
    /// Items of the followed batches that reached a terminal status since the previous `stats`.
    pub(crate) finished: u32,
    /// Seconds since the previous `stats` (0 on the first).
    pub(crate) interval_seconds: f64,
    /// Pending plus processing items of the tenant's running batches (its queue depth).
    pub(crate) queue_depth: u64,
    /// Running batches.
    pub(crate) running_batches: u32,
}

/// What a client sees change in a batch.
type Fingerprint = (BatchCounts, Option<Timestamp>, Option<Timestamp>);

fn fingerprint(s: &BatchStatus) -> Fingerprint {
    (s.counts, s.batch.completed_at, s.batch.cancelled_at)
}

enum Scope {
    Batch(BatchId),
    Tenant,
}

/// One stream's state: what it showed last, and what it has yet to send.
struct Watch {
    state: AppState,
    tenant: TenantId,
    key: Option<String>,
    scope: Scope,
    shown: HashMap<BatchId, Fingerprint>,
    outbox: VecDeque<Event>,
    started: Instant,
    /// When the stream began, on the batches' clock.
    opened_at: Timestamp,
    key_checked: Instant,
    last_stats: Option<Instant>,
    polls: u64,
    done: bool,
    _permit: OwnedSemaphorePermit,
}

impl Watch {
    fn batch_event(&mut self, status: &BatchStatus) {
        let print = fingerprint(status);
        if self.shown.get(&status.batch.id) == Some(&print) {
            return;
        }
        self.shown.insert(status.batch.id, print);
        let body = BatchStatusResponse::new(status, now());
        if let Ok(event) = Event::default().event("batch").json_data(&body) {
            self.outbox.push_back(event);
        }
    }

    fn end_with(&mut self, name: &str, detail: &str) {
        self.outbox
            .push_back(Event::default().event(name).data(detail));
        self.done = true;
    }

    async fn key_still_valid(&mut self) -> bool {
        if self.key_checked.elapsed() < RECHECK_KEY {
            return true;
        }
        self.key_checked = Instant::now();
        let Some(key) = &self.key else {
            return true;
        };
        match self.state.inner.auth.tenant_of(key).await {
            Ok(Some(tenant)) => tenant == self.tenant,
            Ok(None) => false,
            // A key store that does not answer is not a revoked key.
            Err(_) => true,
        }
    }

    async fn poll(&mut self) {
        self.polls += 1;
        if self.started.elapsed() >= MAX_LIFETIME {
            self.end_with(
                "reconnect",
                "this stream reached its lifetime; connect again",
            );
            return;
        }
        if !self.key_still_valid().await {
            self.end_with("unauthorized", "the API key is no longer valid");
            return;
        }
        match self.scope {
            Scope::Batch(id) => self.poll_batch(id).await,
            Scope::Tenant => self.poll_tenant().await,
        }
    }

    async fn poll_batch(&mut self, id: BatchId) {
        match self.state.service().batch_status(&self.tenant, id).await {
            Ok(status) => self.batch_event(&status),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                self.end_with("gone", "the batch no longer exists");
            }
            Err(e) => tracing::debug!(error = %e, "event stream poll failed"),
        }
    }

    async fn poll_tenant(&mut self) {
        let service = self.state.service();
        let list = |state, limit| BatchQuery {
            state,
            created_after: None,
            before: None,
            limit,
        };
        let running = service
            .list_batches(&self.tenant, &list(Some(BatchState::Running), RUNNING))
            .await;
        let newest = service
            .list_batches(&self.tenant, &list(None, NEWEST))
            .await;
        let (running, newest) = match (running, newest) {
            (Ok(r), Ok(n)) => (r.batches, n.batches),
            (Err(e), _) | (_, Err(e)) => {
                tracing::debug!(error = %e, "event stream poll failed");
                return;
            }
        };
        let mut current: HashMap<BatchId, BatchStatus> = HashMap::new();
        for status in running.into_iter().chain(newest) {
            current.insert(status.batch.id, status);
        }
        // Batches shown before that left both lists (they finished): one last look.
        let missing: Vec<BatchId> = self
            .shown
            .keys()
            .filter(|id| !current.contains_key(id))
            .copied()
            .collect();
        for id in missing {
            if let Ok(status) = service.batch_status(&self.tenant, id).await {
                current.insert(id, status);
            }
        }
        let mut finished = 0u32;
        let mut queue_depth = 0u64;
        let mut running_batches = 0u32;
        let mut statuses: Vec<BatchStatus> = current.into_values().collect();
        statuses.sort_by_key(|a| a.batch.id.0);
        for status in &statuses {
            let finished_before = match self.shown.get(&status.batch.id) {
                Some((before, _, _)) => Some(before.finished()),
                // A batch created since the stream began: all it finished is new.
                None if status.batch.created_at >= self.opened_at => Some(0),
                None => None,
            };
            if let Some(before) = finished_before {
                finished = finished.saturating_add(status.counts.finished().saturating_sub(before));
            }
            if BatchState::of(&status.batch) == BatchState::Running {
                running_batches += 1;
                queue_depth +=
                    u64::from(status.counts.pending) + u64::from(status.counts.processing);
            }
        }
        let previous = std::mem::take(&mut self.shown);
        for status in &statuses {
            if let Some(print) = previous.get(&status.batch.id) {
                self.shown.insert(status.batch.id, *print);
            }
            self.batch_event(status);
        }
        let interval_seconds = self.last_stats.map_or(0.0, |t| {
            (t.elapsed().as_millis() as f64 / 1000.0 * 10.0).round() / 10.0
        });
        self.last_stats = Some(Instant::now());
        let stats = StreamStats {
            at: now(),
            finished,
            interval_seconds,
            queue_depth,
            running_batches,
        };
        if let Ok(event) = Event::default().event("stats").json_data(&stats) {
            self.outbox.push_back(event);
        }
    }
}

/// The events of one watch, polled [`POLL`] apart, as a stream.
fn events(watch: Watch) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(watch, |mut watch| async move {
        loop {
            if let Some(event) = watch.outbox.pop_front() {
                return Some((Ok(event), watch));
            }
            if watch.done {
                return None;
            }
            if watch.polls > 0 {
                tokio::time::sleep(POLL).await;
            }
            watch.poll().await;
        }
    })
}

/// The bearer key of the request (to check it again while streaming).
fn bearer_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
}

fn open(
    state: AppState,
    tenant: TenantId,
    headers: &HeaderMap,
    scope: Scope,
) -> Result<Response, Problem> {
    let permit = streams().try_acquire_owned().map_err(|_| {
        Problem::overloaded(
            format!("{MAX_STREAMS} event streams are open, the most this server serves; try again later"),
            state.inner.config.retry_after,
        )
    })?;
    let watch = Watch {
        state,
        tenant,
        key: bearer_key(headers),
        scope,
        shown: HashMap::new(),
        outbox: VecDeque::new(),
        started: Instant::now(),
        opened_at: now(),
        key_checked: Instant::now(),
        last_stats: None,
        polls: 0,
        done: false,
        _permit: permit,
    };
    let sse = Sse::new(events(watch)).keep_alive(KeepAlive::new().interval(KEEP_ALIVE));
    // No proxy buffering: each event reaches the browser when it is sent.
    Ok((
        [("x-accel-buffering", "no"), ("cache-control", "no-store")],
        sse,
    )
        .into_response())
}

/// Live status of one batch (Server-Sent Events)
///
/// `text/event-stream`: a `batch` event (data: the batch as `GET /api/v1/batches/{id}`
/// answers it) at once and whenever its counts or state change (the shared
/// status is read every second, whichever process works on it); a comment
/// line every 15 s while nothing changes. The stream ends with `gone` when the
/// batch is pruned, `unauthorized` when the API key is revoked or expires, and
/// `reconnect` after 30 minutes. Browsers: read it with `fetch` (an
/// `EventSource` cannot send the `Authorization` header).
#[utoipa::path(
    get,
    path = "/api/v1/batches/{id}/events",
    operation_id = "batch_events",
    tag = "batches",
    params(("id" = uuid::Uuid, Path, description = "The batch id")),
    responses((status = 200, description = "The event stream (`event: batch`, `gone`, `unauthorized`, `reconnect`)", content_type = "text/event-stream", body = String), Lookup),
)]
#[tracing::instrument(name = "batch_events", skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id))]
pub(crate) async fn batch(
    State(state): State<AppState>,
    batch: TenantBatch,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    // 404 before the stream starts for an unknown or another tenant's batch
    // (an import answered a moment ago is waited for while its batch is created).
    state
        .service()
        .ready_batch(&batch.tenant, batch.id)
        .await
        .map_err(|e| state.problem(&e))?;
    open(state, batch.tenant, &headers, Scope::Batch(batch.id))
}

/// Live status of every batch of the tenant (Server-Sent Events)
///
/// `text/event-stream`: every second, a `batch` event (data: as `GET
/// /api/v1/batches/{id}`) for each running or recent batch (its 100 running
/// and 20 newest) that changed, then a `stats` event (data: `StreamStats`:
/// items finished since the previous one, the tenant's queue depth); comment
/// lines keep it alive. Ends with `unauthorized` or `reconnect` as the batch
/// stream does.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    operation_id = "tenant_events",
    tag = "batches",
    responses(
        (status = 200, description = "The event stream (`event: batch`, `stats`, `unauthorized`, `reconnect`)", content_type = "text/event-stream", body = String),
        Unauthorized, RateLimited, Unavailable,
    ),
)]
#[tracing::instrument(name = "tenant_events", skip_all, fields(tenant = %tenant.0))]
pub(crate) async fn tenant(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    open(state, tenant.0, &headers, Scope::Tenant)
}
