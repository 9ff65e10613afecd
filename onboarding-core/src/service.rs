//! The ingest service: validate → dedupe → chunk → one atomic store →
//! enqueue, plus the batch operations a client calls.
//!
//! [`OnboardingService`] is the handle an HTTP layer (or any embedder)
//! holds; it is cheap to clone.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::backends::{batch_status_cache_key, Backends};
use crate::backlog::Backlog;
use crate::completion::{announce, complete_and_announce};
use crate::error::{Error, ErrorKind, FieldError, Result};
use crate::events::Event;
use crate::limits::{Admission, BacklogLedger, MemoryLedger};
use crate::model::{
    now, BatchCounts, BatchId, BatchStatus, Change, Domain, ItemId, ItemStatus, Organization,
    TenantId, Timestamp,
};
use crate::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use crate::queue::Job;
use crate::repository::{
    BatchPage, BatchQuery, ItemPage, ItemQuery, OrgRepository, StoreResult, Submission,
    ThroughputBucket,
};
use crate::validate::{self, JsonBody, Limits, Rejection, SubmitRequest, ValidRequest};

/// How the ingest service behaves. Every field has a sane default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct IngestConfig {
    /// Request limits (default: at most 1000 organizations).
    pub limits: Limits,
    /// Organizations per upsert statement (default 1000: a full request in
    /// one statement per table; the original used 500). Adapters use fewer
    /// where a statement's bind-parameter limit requires it.
    pub chunk_size: usize,
    /// A pending item nobody claimed this long is re-enqueued by the sweeper
    /// (default 60 s; keep equal to the workers' `stale_after`).
    pub stale_after: Duration,
    /// How long a batch status stays cached (default [`FRESHNESS`], 1 s).
    /// Workers invalidate it whenever counts change, but a process-local
    /// cache only sees its own process's invalidations (and a shared one can
    /// be refilled by a read that raced an update): this TTL is how far
    /// behind the database a status may be on any process. Raise it only
    /// when every process shares one cache and the lag does not matter.
    pub status_cache_ttl: Duration,
    /// Re-process organizations that a submission leaves unchanged and that
    /// were already processed (default false).
    pub reprocess_unchanged: bool,
    /// Backpressure: the most organizations that may wait in the queue
    /// (ready + delayed jobs) for a submission to be accepted (default
    /// 1,000,000; `None` turns it off). A submission that would take the
    /// backlog past it is refused with [`ErrorKind::Overloaded`] before
    /// anything is stored; see [`OnboardingService::submit_valid`].
    ///
    /// The backlog is measured at the queue because workers acknowledge a
    /// message when they claim its item: the queue's depth is the work no
    /// worker has taken yet, which is what grows when submissions outpace
    /// the workers. (Items being processed are not counted; they are bounded
    /// by the workers' concurrency.)
    ///
    /// Size it below what the workers process within
    /// [`stale_after`](Self::stale_after): a pending item that waits longer
    /// than that is re-enqueued by the sweeper, and the duplicate messages
    /// count in the depth too (so the limit then refuses earlier, never
    /// later, and the workers spend time skipping duplicates). The default
    /// suits workers that process about 17,000 organizations a second with
    /// the default 60 s `stale_after`; lower it for slower processing.
    pub max_backlog: Option<u64>,
    /// How long one reading of the queue depth is reused for
    /// [`max_backlog`](Self::max_backlog) (default 500 ms).
    pub backlog_refresh: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            chunk_size: 1000,
            stale_after: Duration::from_secs(60),
            status_cache_ttl: FRESHNESS,
            reprocess_unchanged: false,
            max_backlog: Some(Self::DEFAULT_MAX_BACKLOG),
            backlog_refresh: Duration::from_millis(500),
        }
    }
}

impl IngestConfig {
    /// The default [`max_backlog`](Self::max_backlog): 1,000,000 organizations.
    pub const DEFAULT_MAX_BACKLOG: u64 = 1_000_000;

    /// Sets the request limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the chunk size (at least 1).
    pub fn with_chunk_size(mut self, n: usize) -> Self {
        self.chunk_size = n.max(1);
        self
    }

    /// Sets when unclaimed pending work counts as lost.
    pub fn with_stale_after(mut self, d: Duration) -> Self {
        self.stale_after = d;
        self
    }

    /// Sets the most organizations that may wait in the queue; `None` turns
    /// the backlog limit off.
    pub fn with_max_backlog(mut self, max: Option<u64>) -> Self {
        self.max_backlog = max;
        self
    }

    /// Sets how long one reading of the queue depth is reused (zero: read
    /// it for every submission).
    pub fn with_backlog_refresh(mut self, every: Duration) -> Self {
        self.backlog_refresh = every;
        self
    }
}

/// The most a server's answer may lag behind the database, on any process
/// of a deployment (DESIGN §2, guarantee 11): the default TTL of every
/// process-local copy.
pub const FRESHNESS: Duration = Duration::from_secs(1);

/// Per-call options of a submission.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SubmitOptions {
    /// Same key + same request → the same batch; same key + another request → a conflict.
    pub idempotency_key: Option<String>,
    /// Overrides [`IngestConfig::reprocess_unchanged`] for this call.
    pub reprocess_unchanged: Option<bool>,
}

impl SubmitOptions {
    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets whether unchanged, already processed organizations run again.
    pub fn with_reprocess_unchanged(mut self, on: bool) -> Self {
        self.reprocess_unchanged = Some(on);
        self
    }
}

/// The answer to an accepted submission.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// The batch to watch.
    pub batch_id: BatchId,
    /// Organizations accepted into the batch.
    pub organizations_count: u32,
    /// Whether this answer replays an earlier submission with the same idempotency key.
    pub replayed: bool,
    /// Organizations rejected (partial mode only).
    pub rejected: Vec<Rejection>,
    /// Items that need processing (the rest were skipped or already done).
    pub queued: u32,
}

/// Readiness of each backend.
#[derive(Debug)]
#[non_exhaustive]
pub struct Readiness {
    /// The repository answered.
    pub database: Result<()>,
    /// The queue answered.
    pub queue: Result<()>,
    /// The cache answered.
    pub cache: Result<()>,
    /// Why the repository works in a reduced way, if it does (a read
    /// replica down or behind): still ready, reads served by the primary.
    pub degraded: Option<&'static str>,
}

impl Readiness {
    /// Whether every backend answered.
    pub fn is_ready(&self) -> bool {
        self.database.is_ok() && self.queue.is_ok() && self.cache.is_ok()
    }
}

/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The onboarding service handle.
#[derive(Clone, Debug)]
pub struct OnboardingService {
    inner: Arc<Inner>,
}

struct Inner {
    backends: Backends,
    config: IngestConfig,
    backlog: Backlog,
    ledger: Arc<dyn BacklogLedger>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("backends", &self.backends)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OnboardingService {
    /// A service over `backends`.
    pub fn new(backends: Backends, config: IngestConfig) -> Self {
        Self::with_ledger(backends, config, Arc::new(MemoryLedger::default()))
    }

    /// A service whose backlog limit is kept in `ledger`: share one (e.g.
    /// onboarding-redis's `RedisLedger`) between servers so that the limit
    /// holds across them.
    pub fn with_ledger(
        backends: Backends,
        config: IngestConfig,
        ledger: Arc<dyn BacklogLedger>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                backends,
                config,
                backlog: Backlog::default(),
                ledger,
            }),
        }
    }

    /// The backends it uses.
    pub fn backends(&self) -> &Backends {
        &self.inner.backends
    }

    /// The source of truth, for the reads and writes that go straight to it.
    fn repository(&self) -> &dyn OrgRepository {
        self.inner.backends.repository.as_ref()
    }

    /// Its configuration.
    pub fn config(&self) -> &IngestConfig {
        &self.inner.config
    }

    /// Validates a typed request without storing anything (dry run).
    pub fn validate(&self, request: &SubmitRequest) -> Result<ValidRequest> {
        validate::validate_request(request, &self.inner.config.limits)
    }

    /// Validates a JSON body without storing anything (dry run).
    pub fn validate_json(&self, body: &Value) -> Result<ValidRequest> {
        validate::validate_json(body, &self.inner.config.limits)
    }

    /// Validates a JSON body read from its bytes without storing anything
    /// (dry run); as [`validate_json`](Self::validate_json).
    pub fn validate_body(&self, body: &JsonBody<'_>) -> Result<ValidRequest> {
        body.validate(&self.inner.config.limits)
    }

    /// Validates and stores a typed request, then enqueues its work.
    pub async fn submit(
        &self,
        tenant: &TenantId,
        request: &SubmitRequest,
        options: SubmitOptions,
    ) -> Result<Accepted> {
        let valid = self.validate(request)?;
        self.submit_valid(tenant, valid, options).await
    }

    /// Validates and stores a JSON body, then enqueues its work.
    pub async fn submit_json(
        &self,
        tenant: &TenantId,
        body: &Value,
        options: SubmitOptions,
    ) -> Result<Accepted> {
        let valid = self.validate_json(body)?;
        self.submit_valid(tenant, valid, options).await
    }

    /// Validates and stores a JSON body read from its bytes, then enqueues
    /// its work; as [`submit_json`](Self::submit_json).
    pub async fn submit_body(
        &self,
        tenant: &TenantId,
        body: &JsonBody<'_>,
        options: SubmitOptions,
    ) -> Result<Accepted> {
        let valid = self.validate_body(body)?;
        self.submit_valid(tenant, valid, options).await
    }

    /// Stores an already validated request and enqueues its work.
    ///
    /// # Behavior
    /// - The batch, its items and every upsert commit together or not at all.
    /// - A failed enqueue after the commit is not an error: the items are
    ///   pending in the repository and the sweeper enqueues them.
    /// - Backpressure ([`IngestConfig::max_backlog`]): when the organizations
    ///   waiting in the queue (ready + delayed) plus this request's would
    ///   exceed the limit, the call fails with [`ErrorKind::Overloaded`]
    ///   (retryable) before anything is stored, enqueued or published.
    /// - An empty queue refuses nothing, so a request larger than the limit
    ///   is accepted when no work waits.
    /// - The depth is read at most once per [`IngestConfig::backlog_refresh`]
    ///   and by one call of this process at a time; the other calls reuse the
    ///   last reading (they don't wait for one in flight) plus the
    ///   organizations accepted since it. Reading and accepted count live in
    ///   the service's [`BacklogLedger`]: with a shared one, what every
    ///   server accepted counts.
    /// - When the depth cannot be read (an error, or no answer within 1 s),
    ///   nothing is refused on it: a warning is logged, the queue may be
    ///   down, and the sweeper delivers what the enqueue could not.
    /// - The check comes before the idempotency lookup, so an overloaded
    ///   service refuses a replay too; the client's retry gets the replay.
    /// - Idempotency key: the same key and request answer the first batch
    ///   again (`replayed`, nothing stored); the same key with another request
    ///   is `Invalid` with code `idempotency_key_reused` (nothing stored). The
    ///   key lives as long as its batch (pruned after the worker's
    ///   `retention` once finished). Concurrent requests under one key are
    ///   decided by the store: one is stored, the others replay or are refused.
    ///   A key in use by a file import still being uploaded is a `Conflict`.
    pub async fn submit_valid(
        &self,
        tenant: &TenantId,
        valid: ValidRequest,
        options: SubmitOptions,
    ) -> Result<Accepted> {
        if let Some(key) = &options.idempotency_key {
            check_idempotency_key(key)?;
        }
        let config = &self.inner.config;
        let backends = &self.inner.backends;
        if let Some(max) = config.max_backlog {
            self.check_backlog(max, valid.organizations.len()).await?;
        }
        // A file upload under the same key still arriving is the same
        // request in progress (IETF idempotency draft: 409), as a second
        // upload under it would be.
        if let (Some(key), Some(imports)) =
            (&options.idempotency_key, backends.repository.imports())
        {
            if !imports
                .receiving_imports(tenant, Some(key))
                .await?
                .is_empty()
            {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    "a request with this idempotency key is still in progress",
                ));
            }
        }
        let at = now();
        let submission = Submission {
            batch_id: BatchId::new(),
            tenant: tenant.clone(),
            idempotency_key: options.idempotency_key.clone(),
            request_hash: valid.request_hash(),
            policy: valid.policy,
            mode: valid.mode,
            organizations: valid.organizations,
            chunk_size: config.chunk_size,
            reprocess_unchanged: options
                .reprocess_unchanged
                .unwrap_or(config.reprocess_unchanged),
            now: at,
            sweep_at: crate::model::after(at, config.stale_after),
            trace_parent: crate::trace::current_traceparent(),
        };
        let (batch, items) = match backends.repository.store_submission(&submission).await? {
            StoreResult::Stored { batch, items } => (batch, items),
            StoreResult::Replayed { batch } => {
                return Ok(Accepted {
                    batch_id: batch.id,
                    organizations_count: batch.total,
                    replayed: true,
                    rejected: valid.rejected,
                    queued: 0,
                })
            }
            StoreResult::KeyConflict { batch } => {
                return Err(key_reused(
                    options.idempotency_key.as_deref().unwrap_or_default(),
                    batch.id,
                ))
            }
        };
        let jobs: Vec<Job> = items
            .iter()
            .filter(|i| i.status == ItemStatus::Pending)
            .map(|i| Job {
                item_id: i.item_id,
                tenant: tenant.clone(),
                not_before: None,
            })
            .collect();
        if let Err(e) = backends.queue.enqueue(&jobs).await {
            tracing::warn!(batch_id = %batch.id, jobs = jobs.len(), error = %e,
                "enqueue after commit failed; the sweeper will deliver the work");
        }
        let events: Vec<Event> = items
            .iter()
            .filter_map(|i| {
                let (tenant, batch_id, organization_id, domain) = (
                    tenant.clone(),
                    batch.id,
                    i.organization_id,
                    i.domain.clone(),
                );
                match i.change {
                    Change::Created => Some(Event::OrganizationCreated {
                        tenant,
                        batch_id,
                        organization_id,
                        domain,
                    }),
                    Change::Updated => Some(Event::OrganizationUpdated {
                        tenant,
                        batch_id,
                        organization_id,
                        domain,
                    }),
                    Change::Unchanged | Change::Skipped => None,
                }
            })
            .collect();
        if !events.is_empty() {
            if let Err(e) = backends.events.publish(&events).await {
                tracing::warn!(batch_id = %batch.id, error = %e, "event sink refused organization events");
            }
        }
        if batch.completed_at.is_some() {
            // Nothing to process: announce now rather than at the next sweep.
            let mut counts = BatchCounts::default();
            for item in &items {
                counts.add(item.status, item.change);
            }
            announce(
                backends,
                &[BatchStatus {
                    batch: batch.clone(),
                    counts,
                }],
            )
            .await;
        }
        tracing::info!(batch_id = %batch.id, %tenant, organizations = batch.total, queued = jobs.len(), "batch accepted");
        Ok(Accepted {
            batch_id: batch.id,
            organizations_count: batch.total,
            replayed: false,
            rejected: valid.rejected,
            queued: u32::try_from(jobs.len()).unwrap_or(u32::MAX),
        })
    }

    /// A batch's status with exact counts, served from the cache when fresh.
    pub async fn batch_status(&self, tenant: &TenantId, batch: BatchId) -> Result<BatchStatus> {
        let key = batch_status_cache_key(batch);
        let cache = &self.inner.backends.cache;
        if let Ok(Some(bytes)) = cache.get(&key).await {
            if let Ok(status) = serde_json::from_slice::<BatchStatus>(&bytes) {
                if &status.batch.tenant == tenant {
                    return Ok(status);
                }
            }
        }
        let status = self
            .repository()
            .batch_status(tenant, batch)
            .await?
            .ok_or_else(|| batch_not_found(batch))?;
        if let Ok(bytes) = serde_json::to_vec(&status) {
            let ttl = self.inner.config.status_cache_ttl;
            if let Err(e) = cache.set(&key, &bytes, ttl).await {
                tracing::debug!(error = %e, "cache write failed");
            }
        }
        Ok(status)
    }

    /// One page of a batch's items.
    pub async fn list_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        query: &ItemQuery,
    ) -> Result<ItemPage> {
        let mut query = query.clone();
        query.limit = query.limit.clamp(1, 1000);
        self.on_batch(tenant, batch, || {
            self.repository().list_items(tenant, batch, &query)
        })
        .await
    }

    /// A batch's status once it exists: as [`OnboardingService::batch_status`],
    /// but an import answered and still being created from its rows is
    /// waited for (see `on_batch`).
    ///
    /// # Errors
    /// `NotFound` for an unknown batch; `Unavailable` (retryable) when an
    /// import's batch is still being created after 20 s.
    pub async fn ready_batch(&self, tenant: &TenantId, batch: BatchId) -> Result<BatchStatus> {
        self.on_batch(tenant, batch, || async {
            match self.batch_status(tenant, batch).await {
                Ok(status) => Ok(Some(status)),
                Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    /// Runs `op` on a batch (`None`: no such batch). A file import is
    /// answered once its rows are stored and its batch is created right
    /// after: a client that acts on the batch at once (cancel, retry, list
    /// its items) waits for it, checking every 50 ms for at most
    /// [`IMPORT_BATCH_WAIT`], instead of being told it does not exist.
    async fn on_batch<T, F, Fut>(&self, tenant: &TenantId, batch: BatchId, op: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<Option<T>>>,
    {
        if let Some(found) = op().await? {
            return Ok(found);
        }
        let deadline = tokio::time::Instant::now() + IMPORT_BATCH_WAIT;
        loop {
            let staged = match self.repository().imports() {
                Some(store) => store
                    .import_progress(tenant, batch)
                    .await?
                    .is_some_and(|p| p.state != crate::import::ImportState::Receiving),
                None => false,
            };
            if !staged {
                return Err(batch_not_found(batch));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("the batch of import {batch} is still being created from its rows; try again shortly"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(found) = op().await? {
                return Ok(found);
            }
        }
    }

    /// Re-drives a batch's failed items and enqueues them.
    pub async fn retry_failed(&self, tenant: &TenantId, batch: BatchId) -> Result<u32> {
        let backends = &self.inner.backends;
        let jobs = self
            .on_batch(tenant, batch, || {
                backends.repository.retry_failed(tenant, batch, now())
            })
            .await?;
        self.invalidate(batch).await;
        if let Err(e) = backends.queue.enqueue(&jobs).await {
            tracing::warn!(batch_id = %batch, error = %e, "re-driven items not enqueued; the sweeper will");
        }
        Ok(u32::try_from(jobs.len()).unwrap_or(u32::MAX))
    }

    /// Re-drives the listed failed items of a batch (one group of failures) and enqueues them.
    pub async fn retry_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        items: &[ItemId],
    ) -> Result<u32> {
        let backends = &self.inner.backends;
        let jobs = self
            .on_batch(tenant, batch, || {
                backends.repository.retry_items(tenant, batch, items, now())
            })
            .await?;
        if !jobs.is_empty() {
            self.invalidate(batch).await;
        }
        if let Err(e) = backends.queue.enqueue(&jobs).await {
            tracing::warn!(batch_id = %batch, error = %e, "re-driven items not enqueued; the sweeper will");
        }
        Ok(u32::try_from(jobs.len()).unwrap_or(u32::MAX))
    }

    /// One page of a tenant's batches with exact counts, newest first (uncached).
    pub async fn list_batches(&self, tenant: &TenantId, query: &BatchQuery) -> Result<BatchPage> {
        let mut query = query.clone();
        query.limit = query.limit.clamp(1, 1000);
        self.repository().list_batches(tenant, &query).await
    }

    /// A tenant's completed and failed items per bucket of `bucket_seconds`
    /// since `since` (uncached; see [`OrgRepository::throughput`]).
    ///
    /// [`OrgRepository::throughput`]: crate::repository::OrgRepository::throughput
    pub async fn throughput(
        &self,
        tenant: &TenantId,
        since: Timestamp,
        bucket_seconds: u32,
    ) -> Result<Vec<ThroughputBucket>> {
        self.repository()
            .throughput(tenant, since, bucket_seconds)
            .await
    }

    /// Cancels a batch's pending items.
    pub async fn cancel(&self, tenant: &TenantId, batch: BatchId) -> Result<BatchStatus> {
        let status = self
            .on_batch(tenant, batch, || {
                self.repository().cancel_batch(tenant, batch, now())
            })
            .await?;
        self.invalidate(batch).await;
        if let Err(e) = complete_and_announce(&self.inner.backends, &[batch]).await {
            tracing::warn!(error = %e, "completing the cancelled batch failed; the sweeper will");
        }
        Ok(status)
    }

    /// The tenant's own organization of a domain (normalized first).
    ///
    /// Organization reads are not cached: a submission or a delete on any
    /// process would have to invalidate them (one key per domain on the
    /// submission's hot path). They are one index lookup, served by a read
    /// replica when one is configured.
    pub async fn organization(&self, tenant: &TenantId, domain: &str) -> Result<Organization> {
        let domain = path_domain(domain)?;
        self.repository()
            .organization_by_domain(tenant, &domain)
            .await?
            .ok_or_else(|| organization_not_found(&domain))
    }

    /// One page of the tenant's organizations (limit clamped to 1-1000).
    pub async fn list_organizations(
        &self,
        tenant: &TenantId,
        query: &OrganizationQuery,
    ) -> Result<OrganizationPage> {
        let mut query = query.clone();
        query.limit = query.limit.clamp(1, 1000);
        self.repository().list_organizations(tenant, &query).await
    }

    /// Every version of the tenant's organization of a domain (normalized first).
    pub async fn organization_versions(
        &self,
        tenant: &TenantId,
        domain: &str,
    ) -> Result<Vec<OrganizationVersion>> {
        let domain = path_domain(domain)?;
        self.repository()
            .organization_versions(tenant, &domain)
            .await?
            .ok_or_else(|| organization_not_found(&domain))
    }

    /// Soft-deletes the tenant's organization of a domain (normalized
    /// first); `NotFound` when it has none or deleted it already. Its pending
    /// items are still processed; a later submission restores it.
    pub async fn delete_organization(&self, tenant: &TenantId, domain: &str) -> Result<()> {
        let domain = path_domain(domain)?;
        let deleted = self
            .repository()
            .delete_organization(tenant, &domain, now())
            .await?;
        if deleted {
            Ok(())
        } else {
            Err(organization_not_found(&domain))
        }
    }

    /// Asks every backend whether it answers.
    pub async fn readiness(&self) -> Readiness {
        let b = &self.inner.backends;
        let (database, queue, cache) =
            tokio::join!(b.repository.ping(), b.queue.ping(), b.cache.ping());
        Readiness {
            database,
            queue,
            cache,
            degraded: b.repository.degraded(),
        }
    }

    /// Refuses `incoming` organizations when the queue's backlog plus them exceeds `max`.
    pub(crate) async fn check_backlog(&self, max: u64, incoming: usize) -> Result<()> {
        let inner = &self.inner;
        let incoming = u64::try_from(incoming).unwrap_or(u64::MAX);
        let admission = inner
            .backlog
            .admit(
                &*inner.ledger,
                &*inner.backends.queue,
                inner.config.backlog_refresh,
                incoming,
                max,
            )
            .await;
        match admission {
            Admission::Admitted | Admission::Unknown => Ok(()),
            Admission::Refused { waiting } => {
                tracing::debug!(
                    waiting,
                    incoming,
                    max,
                    "submission refused: the backlog is full"
                );
                Err(Error::new(
                    ErrorKind::Overloaded,
                    format!(
                        "{waiting} organizations are queued for processing and the limit is {max}, \
                         so {incoming} more are not accepted now; try again later"
                    ),
                ))
            }
        }
    }

    async fn invalidate(&self, batch: BatchId) {
        self.inner.backends.invalidate_batch_status([batch]).await;
    }
}

/// A domain given as a path parameter, normalized like a submitted one
/// (IDNA, case); the error points at `/domain`.
fn path_domain(raw: &str) -> Result<Domain> {
    validate::normalize_domain(raw).map_err(|e| Error::invalid(vec![e.into_field_error("/domain")]))
}

/// The tenant has no live organization of `domain` (whatever other tenants have).
fn organization_not_found(domain: &Domain) -> Error {
    Error::not_found(format!(
        "this tenant has no organization with domain {domain}"
    ))
}

/// How long an action on a batch waits for an answered import's batch to be
/// created from its stored rows (1,000,000 rows take ~15 s).
pub(crate) const IMPORT_BATCH_WAIT: Duration = Duration::from_secs(20);

fn batch_not_found(batch: BatchId) -> Error {
    Error::not_found(format!("batch {batch} does not exist"))
}

/// The refusal of an idempotency key the tenant already used for another
/// request (draft-ietf-httpapi-idempotency-key-header: 422): `Invalid`,
/// not retryable, one field error with code `idempotency_key_reused`.
pub(crate) fn key_reused(key: &str, earlier: BatchId) -> Error {
    let detail = format!(
        "idempotency key {key:?} was already used for a different request (batch {earlier}); \
         a key may only be reused with the same payload"
    );
    Error::new(ErrorKind::Invalid, detail.clone()).with_field_errors(vec![FieldError::new(
        "",
        "idempotency_key_reused",
        detail,
    )])
}

pub(crate) fn check_idempotency_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.len() <= MAX_IDEMPOTENCY_KEY_LEN
        && key.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(vec![FieldError::new(
            "",
            "idempotency_key_invalid",
            format!(
                "the idempotency key must be 1-{MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            ),
        )]))
    }
}
