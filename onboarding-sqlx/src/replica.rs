//! Reads from a PostgreSQL streaming replica (`DATABASE_READ_URL`), writes
//! to the primary, and never an answer older than what its reader must see.
//!
//! Batch status, item pages and organization lookups go to the replica when
//! it has replayed everything that reader must see; else to the primary:
//!
//! - **Read-your-writes.** A tenant's reads go to the primary after a write
//!   of that tenant through this process (submit, cancel, retry) until the
//!   replica has replayed a primary WAL position sampled *after* the write
//!   finished, so that position includes the write's commit.
//! - **Bounded staleness for everyone else.** The replica serves a read only
//!   if it has replayed a primary position sampled at most [`MAX_LAG`]
//!   (500 ms) ago, so workers' progress written by other processes shows
//!   within 500 ms (plus the status cache's [`onboarding_core::FRESHNESS`]
//!   of 1 s: at most 1.5 s in all, against 1 s without a replica). A paused
//!   or slow replica ages out by itself, reads move to the primary.
//! - **A replica that fails** (down, unreachable) is skipped at once, reads
//!   go to the primary, and [`OrgRepository::degraded`] says why (`/ready`
//!   answers `degraded`, not down).
//!
//! Positions are sampled by one task per process every [`SAMPLE_EVERY`]:
//! the primary's `pg_current_wal_insert_lsn()` (its time taken before the
//! query, so any write finished by then is at or below it), then the
//! replica's `pg_last_wal_replay_lsn()`. Why sampling instead of the commit
//! LSN of each write: the repository's writes need no extra round trip, and
//! the same samples bound staleness for writes this process never saw.
//! The cost is that a tenant reads from the primary for at most one
//! sampling period plus the replica's lag after each of its writes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use onboarding_core::import::{ImportProgress, ImportRow, ImportStore, NewImport, RowError};
use onboarding_core::model::{
    BatchId, BatchStatus, Domain, ItemId, Organization, TenantId, Timestamp,
};
use onboarding_core::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use onboarding_core::repository::{
    BatchPage, BatchQuery, ClaimRequest, ClaimedItem, Finish, ItemPage, ItemQuery, Lease,
    OrgRepository, StoreResult, Submission, ThroughputBucket,
};
use onboarding_core::{ErrorKind, Job, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::detached::DetachedRepository;
use crate::error::DbResultExt;
use crate::pg::PgRepository;
use crate::{SqlBackend, SqlOptions};

/// How often the primary's and the replica's WAL positions are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The oldest primary state a replica read may show: half the status
/// cache's freshness, well above a healthy replica's lag plus the sampling
/// period (100–200 ms), so a healthy replica serves nearly every read.
pub const MAX_LAG: Duration = Duration::from_millis(500);

/// Longest a position query may take before the server counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The WAL position (bytes since `0/0`) this server has written, or, on a
/// standby, replayed.
const POSITION: &str = "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                        ELSE pg_current_wal_insert_lsn() END - '0/0'::pg_lsn)::bigint";

impl SqlBackend {
    /// This backend with its reads (batch status, items, organizations) sent
    /// to the PostgreSQL read replica at `read_url` when it is fresh enough
    /// (see the `replica` module): writes, the queue and the stores stay on
    /// the primary. The replica is connected lazily: one that is down at
    /// start only degrades the service.
    ///
    /// # Errors
    ///
    /// `Invalid` when this backend or `read_url` is not PostgreSQL (MySQL and
    /// SQLite replicas are not supported) or `read_url` cannot be parsed.
    pub fn with_read_replica(mut self, read_url: &str, options: &SqlOptions) -> Result<Self> {
        if self.engine != crate::Engine::Postgres {
            return Err(not_postgres("DATABASE_URL"));
        }
        self.repository =
            ReplicaRouted::connect(self.repository, self.url.expose(), read_url, options)?;
        Ok(self)
    }
}

fn not_postgres(what: &str) -> onboarding_core::Error {
    onboarding_core::Error::new(
        ErrorKind::Invalid,
        format!("{what}: read replicas are supported on PostgreSQL only"),
    )
}

/// A repository that reads from a replica when it may (module documentation).
pub struct ReplicaRouted {
    primary: Arc<dyn OrgRepository>,
    replica: Arc<dyn OrgRepository>,
    positions: Arc<Positions>,
}

impl std::fmt::Debug for ReplicaRouted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaRouted")
            .field("replica_reads", &self.positions.lock().replica_reads)
            .finish_non_exhaustive()
    }
}

/// What the sampler knows, and the reads served so far.
#[derive(Default)]
struct Positions {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Primary positions with the time taken before each query, oldest first
    /// (the last 4 × MAX_LAG).
    primary: VecDeque<(Instant, i64)>,
    /// The newest sample time whose primary position the replica has replayed.
    replica_covers: Option<Instant>,
    /// Why the replica is not used, when it is not.
    problem: Option<&'static str>,
    /// When each tenant's last write through this process finished (only
    /// those the replica may not have replayed yet).
    tenant_writes: HashMap<TenantId, Instant>,
    /// When the last write of any tenant finished (organizations are global).
    any_write: Option<Instant>,
    replica_reads: u64,
    primary_reads: u64,
}

impl Positions {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Samples both positions every [`SAMPLE_EVERY`] until the repository is dropped.
    fn sample_in_background(positions: Weak<Positions>, primary: PgPool, replica: PgPool) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SAMPLE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(positions) = positions.upgrade() else {
                    break;
                };
                let taken = Instant::now();
                let primary_at = position(&primary).await;
                let replayed = position(&replica).await;
                positions.record(taken, primary_at, replayed);
            }
            primary.close().await;
            replica.close().await;
        });
    }

    fn record(&self, taken: Instant, primary_at: Option<i64>, replayed: Option<i64>) {
        let mut state = self.lock();
        if let Some(lsn) = primary_at {
            state.primary.push_back((taken, lsn));
        }
        while state
            .primary
            .front()
            .is_some_and(|(at, _)| taken.duration_since(*at) > 4 * MAX_LAG)
        {
            state.primary.pop_front();
        }
        let Some(replayed) = replayed else {
            if state.problem != Some("read_replica_unavailable") {
                tracing::warn!("read replica unreachable: reads go to the primary");
            }
            state.replica_covers = None;
            state.problem = Some("read_replica_unavailable");
            return;
        };
        let covers = state
            .primary
            .iter()
            .rev()
            .find(|(_, lsn)| *lsn <= replayed)
            .map(|(at, _)| *at);
        if covers.is_some_and(|c| state.replica_covers.is_none_or(|old| c > old)) {
            state.replica_covers = covers;
        }
        let behind = state
            .replica_covers
            .is_none_or(|c| taken.duration_since(c) > MAX_LAG);
        state.problem = behind.then_some("read_replica_behind");
        if let Some(covers) = state.replica_covers {
            state.tenant_writes.retain(|_, written| *written >= covers);
        }
    }

    /// Whether a read that must see writes finished by `must_see` may go to
    /// the replica; counts the answer.
    fn replica_may_serve(&self, tenant: Option<&TenantId>) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        let last_write = match tenant {
            Some(tenant) => state.tenant_writes.get(tenant).copied(),
            None => state.any_write,
        };
        let oldest_allowed = now.checked_sub(MAX_LAG).unwrap_or(now);
        let must_see = last_write.map_or(oldest_allowed, |w| w.max(oldest_allowed));
        let ok = state.problem.is_none() && state.replica_covers.is_some_and(|c| c >= must_see);
        if ok {
            state.replica_reads += 1;
        } else {
            state.primary_reads += 1;
        }
        ok
    }

    fn wrote(&self, tenant: Option<&TenantId>) {
        let now = Instant::now();
        let mut state = self.lock();
        state.any_write = Some(now);
        if let Some(tenant) = tenant {
            state.tenant_writes.insert(tenant.clone(), now);
        }
    }

    /// The replica answered with an error: use the primary until the next sample says otherwise.
    fn replica_failed(&self) {
        let mut state = self.lock();
        state.replica_covers = None;
        state.problem = Some("read_replica_unavailable");
    }
}

async fn position(pool: &PgPool) -> Option<i64> {
    let query = sqlx::query_scalar::<_, i64>(POSITION).fetch_one(pool);
    match tokio::time::timeout(PROBE_TIMEOUT, query).await {
        Ok(Ok(lsn)) => Some(lsn),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "WAL position query failed");
            None
        }
        Err(_) => None,
    }
}

/// How many reads each side served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ReadCounts {
    /// Reads the replica answered.
    pub replica: u64,
    /// Reads sent to the primary (replica behind, down, or a tenant's own write not replayed).
    pub primary: u64,
}

impl ReplicaRouted {
    /// Routes the reads of `primary` (the repository on `primary_url`) to
    /// the PostgreSQL replica at `read_url` (see [`SqlBackend::with_read_replica`]).
    ///
    /// # Errors
    ///
    /// `Invalid` when `read_url` is not a PostgreSQL URL or cannot be parsed.
    pub fn connect(
        primary: Arc<dyn OrgRepository>,
        primary_url: &str,
        read_url: &str,
        options: &SqlOptions,
    ) -> Result<Arc<Self>> {
        if crate::Engine::from_url(read_url)? != crate::Engine::Postgres {
            return Err(not_postgres("DATABASE_READ_URL"));
        }
        let probe = |url: &str| {
            PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(PROBE_TIMEOUT)
                .connect_lazy(url)
                .db()
        };
        let replica_pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(PROBE_TIMEOUT)
            .connect_lazy(read_url)
            .db()?;
        let positions = Arc::new(Positions::default());
        Positions::sample_in_background(
            Arc::downgrade(&positions),
            probe(primary_url)?,
            probe(read_url)?,
        );
        Ok(Arc::new(Self {
            primary,
            replica: Arc::new(DetachedRepository::new(PgRepository::new(replica_pool))),
            positions,
        }))
    }

    /// Reads served by each side so far.
    pub fn read_counts(&self) -> ReadCounts {
        let state = self.positions.lock();
        ReadCounts {
            replica: state.replica_reads,
            primary: state.primary_reads,
        }
    }

    /// Whether a replica error means "read from the primary instead" (and
    /// skip the replica until the next sample).
    fn replica_failed(&self, error: &onboarding_core::Error) -> bool {
        if error.kind() != ErrorKind::Unavailable {
            return false;
        }
        tracing::warn!(error = %error, "read replica failed: reading from the primary");
        self.positions.replica_failed();
        true
    }

    /// Runs a write of `tenant` on the primary and remembers when it finished.
    async fn write<T>(
        &self,
        tenant: Option<&TenantId>,
        write: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let result = write.await;
        // Also after an error: the commit may have happened (a lost connection).
        self.positions.wrote(tenant);
        result
    }
}

/// `$call` with `$repo` the replica when it may serve `$tenant` (falling
/// back to the primary when it fails), else the primary.
macro_rules! routed_read {
    ($self:ident, $tenant:expr, |$repo:ident| $call:expr) => {{
        if $self.positions.replica_may_serve($tenant) {
            let $repo = &*$self.replica;
            match $call.await {
                Err(e) if $self.replica_failed(&e) => {}
                answer => return answer,
            }
        }
        let $repo = &*$self.primary;
        $call.await
    }};
}

#[async_trait]
impl OrgRepository for ReplicaRouted {
    async fn store_submission(&self, submission: &Submission) -> Result<StoreResult> {
        self.write(
            Some(&submission.tenant),
            self.primary.store_submission(submission),
        )
        .await
    }

    async fn claim_items(&self, request: &ClaimRequest) -> Result<Vec<ClaimedItem>> {
        self.primary.claim_items(request).await
    }

    async fn extend_leases(
        &self,
        leases: &[Lease],
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<ItemId>> {
        self.primary.extend_leases(leases, now, lease_until).await
    }

    async fn finish_items(
        &self,
        finishes: &[Finish],
        now: Timestamp,
        stale_after: Duration,
    ) -> Result<Vec<ItemId>> {
        self.primary.finish_items(finishes, now, stale_after).await
    }

    async fn release_items(&self, leases: &[Lease], now: Timestamp) -> Result<Vec<Job>> {
        self.primary.release_items(leases, now).await
    }

    async fn sweep(
        &self,
        now: Timestamp,
        pending_due: Timestamp,
        stale_after: Duration,
        limit: u32,
    ) -> Result<Vec<Job>> {
        self.primary
            .sweep(now, pending_due, stale_after, limit)
            .await
    }

    async fn complete_batches(
        &self,
        batches: &[BatchId],
        now: Timestamp,
    ) -> Result<Vec<BatchStatus>> {
        self.primary.complete_batches(batches, now).await
    }

    async fn complete_open_batches(&self, now: Timestamp, limit: u32) -> Result<Vec<BatchStatus>> {
        self.primary.complete_open_batches(now, limit).await
    }

    async fn unannounced_batches(
        &self,
        completed_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<BatchStatus>> {
        // The announcer acts on the answer: the primary's truth.
        self.primary
            .unannounced_batches(completed_before, limit)
            .await
    }

    async fn mark_announced(&self, batches: &[BatchId], now: Timestamp) -> Result<()> {
        self.primary.mark_announced(batches, now).await
    }

    async fn cancel_batch(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<BatchStatus>> {
        self.write(Some(tenant), self.primary.cancel_batch(tenant, batch, now))
            .await
    }

    async fn retry_failed(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        self.write(Some(tenant), self.primary.retry_failed(tenant, batch, now))
            .await
    }

    async fn retry_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        items: &[ItemId],
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        self.write(
            Some(tenant),
            self.primary.retry_items(tenant, batch, items, now),
        )
        .await
    }

    async fn list_batches(&self, tenant: &TenantId, query: &BatchQuery) -> Result<BatchPage> {
        routed_read!(self, Some(tenant), |repo| repo.list_batches(tenant, query))
    }

    async fn batch_status(&self, tenant: &TenantId, batch: BatchId) -> Result<Option<BatchStatus>> {
        routed_read!(self, Some(tenant), |repo| repo.batch_status(tenant, batch))
    }

    async fn list_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        query: &ItemQuery,
    ) -> Result<Option<ItemPage>> {
        routed_read!(self, Some(tenant), |repo| repo
            .list_items(tenant, batch, query))
    }

    async fn throughput(
        &self,
        tenant: &TenantId,
        since: Timestamp,
        bucket_seconds: u32,
    ) -> Result<Vec<ThroughputBucket>> {
        routed_read!(self, Some(tenant), |repo| repo.throughput(
            tenant,
            since,
            bucket_seconds
        ))
    }

    async fn organization_by_domain(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Result<Option<Organization>> {
        routed_read!(self, Some(tenant), |repo| repo
            .organization_by_domain(tenant, domain))
    }

    async fn list_organizations(
        &self,
        tenant: &TenantId,
        query: &OrganizationQuery,
    ) -> Result<OrganizationPage> {
        routed_read!(self, Some(tenant), |repo| repo
            .list_organizations(tenant, query))
    }

    async fn organization_versions(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Result<Option<Vec<OrganizationVersion>>> {
        routed_read!(self, Some(tenant), |repo| repo
            .organization_versions(tenant, domain))
    }

    async fn delete_organization(
        &self,
        tenant: &TenantId,
        domain: &Domain,
        now: Timestamp,
    ) -> Result<bool> {
        // A tenant's write: its next reads wait for the replica to replay it.
        self.write(
            Some(tenant),
            self.primary.delete_organization(tenant, domain, now),
        )
        .await
    }

    async fn prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64> {
        self.primary.prune(finished_before, limit).await
    }

    async fn ping(&self) -> Result<()> {
        // Ready while the primary answers; the replica only degrades.
        self.primary.ping().await
    }

    fn degraded(&self) -> Option<&'static str> {
        self.positions.lock().problem
    }

    // Imports stage and read on the primary, through `self` so that a
    // finished import counts as its tenant's write (below).
    fn imports(&self) -> Option<&dyn ImportStore> {
        self.primary.imports().map(|_| self as &dyn ImportStore)
    }
}

impl ReplicaRouted {
    fn primary_imports(&self) -> Result<&dyn ImportStore> {
        self.primary.imports().ok_or_else(|| {
            onboarding_core::Error::new(ErrorKind::Unavailable, "the primary has no import store")
                .with_retryable(false)
        })
    }
}

/// The primary's import store; a finish is a write of the tenant, so the
/// reads that follow it (the pending items the service enqueues, the
/// client's status) do not go to a replica that has not replayed it.
#[async_trait]
impl ImportStore for ReplicaRouted {
    async fn begin_import(&self, import: &NewImport) -> Result<()> {
        self.primary_imports()?.begin_import(import).await
    }

    async fn append_import(
        &self,
        batch: BatchId,
        rows: &[ImportRow],
        rejected: &[RowError],
    ) -> Result<Vec<RowError>> {
        self.primary_imports()?
            .append_import(batch, rows, rejected)
            .await
    }

    async fn refuse_repeats(
        &self,
        batch: BatchId,
        quote: usize,
    ) -> Result<onboarding_core::import::RepeatsRefused> {
        self.primary_imports()?.refuse_repeats(batch, quote).await
    }

    async fn seal_import(&self, submission: &Submission) -> Result<Option<StoreResult>> {
        self.primary_imports()?.seal_import(submission).await
    }

    async fn sealed_imports(
        &self,
        before: onboarding_core::model::Timestamp,
        now: onboarding_core::model::Timestamp,
        limit: u32,
    ) -> Result<Vec<Submission>> {
        self.primary_imports()?
            .sealed_imports(before, now, limit)
            .await
    }

    async fn finish_import(&self, submission: &Submission) -> Result<StoreResult> {
        let store = self.primary_imports()?;
        self.write(Some(&submission.tenant), store.finish_import(submission))
            .await
    }

    async fn abort_import(&self, batch: BatchId) -> Result<()> {
        self.primary_imports()?.abort_import(batch).await
    }

    async fn import_progress(
        &self,
        tenant: &TenantId,
        batch: BatchId,
    ) -> Result<Option<ImportProgress>> {
        self.primary_imports()?.import_progress(tenant, batch).await
    }

    async fn rejected_rows(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        after_line: Option<u32>,
        limit: u32,
    ) -> Result<Option<Vec<RowError>>> {
        self.primary_imports()?
            .rejected_rows(tenant, batch, after_line, limit)
            .await
    }

    async fn receiving_imports(
        &self,
        tenant: &TenantId,
        key: Option<&str>,
    ) -> Result<Vec<ImportProgress>> {
        self.primary_imports()?.receiving_imports(tenant, key).await
    }

    async fn staged_rows(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        lines: &[u32],
    ) -> Result<Vec<ImportRow>> {
        self.primary_imports()?
            .staged_rows(tenant, batch, lines)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).expect("tenant")
    }

    /// A finished import is its tenant's write: the pending items the
    /// service lists right after it come from the primary even while the
    /// replica counts as fresh (here: an empty replica).
    #[tokio::test]
    async fn a_finished_import_is_read_back_from_the_primary() {
        use onboarding_core::memory::MemoryRepository;
        use onboarding_core::model::{ConflictPolicy, ItemStatus};
        use onboarding_core::testing::fixtures;

        let positions = Arc::new(Positions::default());
        positions.record(Instant::now(), Some(100), Some(100));
        let routed = ReplicaRouted {
            primary: Arc::new(MemoryRepository::new()),
            replica: Arc::new(MemoryRepository::new()),
            positions,
        };
        let acme = tenant("acme");
        let store = routed.imports().expect("the primary imports");
        let batch = BatchId::new();
        store
            .begin_import(&NewImport {
                batch_id: batch,
                tenant: acme.clone(),
                idempotency_key: None,
                now: onboarding_core::model::now(),
                policy: onboarding_core::model::ConflictPolicy::Update,
                mode: onboarding_core::model::SubmitMode::Partial,
            })
            .await
            .expect("begin");
        let row = ImportRow {
            line: 2,
            organization: fixtures::organization(&fixtures::domain()),
            external_id: None,
        };
        store
            .append_import(batch, &[row], &[])
            .await
            .expect("append");
        let mut finish = fixtures::submission_of(&acme, Vec::new(), ConflictPolicy::Update);
        finish.batch_id = batch;
        store.finish_import(&finish).await.expect("finish");
        let pending = ItemQuery {
            status: Some(ItemStatus::Pending),
            limit: 10,
            after_position: None,
        };
        let page = routed
            .list_items(&acme, batch, &pending)
            .await
            .expect("list")
            .expect("read from the primary, which has the batch");
        assert_eq!(page.items.len(), 1);
    }

    #[test]
    fn a_replica_that_replayed_a_recent_sample_serves_readers_without_newer_writes() {
        let positions = Positions::default();
        assert!(!positions.replica_may_serve(None), "nothing sampled yet");
        positions.record(Instant::now(), Some(100), Some(100));
        assert!(positions.replica_may_serve(None));
        assert!(positions.replica_may_serve(Some(&tenant("acme"))));
        assert_eq!(positions.lock().problem, None);
    }

    #[test]
    fn a_tenant_reads_the_primary_until_a_sample_after_its_write_is_replayed() {
        let positions = Positions::default();
        let (acme, globex) = (tenant("acme"), tenant("globex"));
        positions.record(Instant::now(), Some(100), Some(100));
        positions.wrote(Some(&acme));
        assert!(!positions.replica_may_serve(Some(&acme)));
        assert!(positions.replica_may_serve(Some(&globex)));
        assert!(
            !positions.replica_may_serve(None),
            "organizations: any write"
        );
        // Sampled after the write, not yet replayed.
        positions.record(Instant::now(), Some(200), Some(100));
        assert!(!positions.replica_may_serve(Some(&acme)));
        positions.record(Instant::now(), Some(200), Some(200));
        assert!(positions.replica_may_serve(Some(&acme)));
        assert!(
            positions.lock().tenant_writes.is_empty(),
            "replayed writes are forgotten"
        );
    }

    #[test]
    fn a_replica_behind_by_more_than_max_lag_or_down_serves_nobody() {
        let positions = Positions::default();
        let start = Instant::now();
        positions.record(start, Some(100), Some(100));
        // The primary moves on, the replica stays (paused replay).
        positions.record(start + MAX_LAG / 2, Some(200), Some(100));
        assert_eq!(positions.lock().problem, None, "within MAX_LAG");
        positions.record(start + MAX_LAG * 2, Some(300), Some(100));
        assert_eq!(positions.lock().problem, Some("read_replica_behind"));
        assert!(!positions.replica_may_serve(None));
        positions.record(start + MAX_LAG * 3, Some(300), None);
        assert_eq!(positions.lock().problem, Some("read_replica_unavailable"));
        assert!(!positions.replica_may_serve(None));
        let counts = positions.lock();
        assert_eq!((counts.replica_reads, counts.primary_reads), (0, 2));
    }
}
