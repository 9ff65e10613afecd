//! The `OrgRepository` trait: the source of truth for organizations, batches
//! and batch items, and the only place item state changes.
//!
//! Every method on the worker's hot path takes many items per call so that a
//! SQL adapter can use one set-based statement. Callers pass `now`
//! explicitly: the engine owns the clock, which keeps adapters deterministic
//! and lets the conformance suite move time forward without sleeping.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::import::ImportStore;
use crate::model::{
    Batch, BatchId, BatchItem, BatchState, BatchStatus, Change, ConflictPolicy, Domain, ItemId,
    ItemStatus, LeaseToken, NewOrganization, Organization, OrganizationId, SubmitMode, TenantId,
    Timestamp,
};
use crate::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use crate::queue::Job;

/// A tenant's items finished in one time bucket ([`OrgRepository::throughput`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThroughputBucket {
    /// The bucket's start in whole seconds since the Unix epoch (a multiple of its width).
    pub start: i64,
    /// Items that finished `completed` in it.
    pub completed: u64,
    /// Items that finished `failed` in it.
    pub failed: u64,
}

/// Everything needed to store one accepted request atomically.
#[derive(Debug, Clone)]
pub struct Submission {
    /// Id of the batch to create.
    pub batch_id: BatchId,
    /// Owner.
    pub tenant: TenantId,
    /// Optional idempotency key (unique per tenant).
    pub idempotency_key: Option<String>,
    /// SHA-256 hex of the normalized request.
    pub request_hash: String,
    /// What to do with existing domains.
    pub policy: ConflictPolicy,
    /// The request's mode (recorded on the batch).
    pub mode: SubmitMode,
    /// Valid organizations with their positions in the request, domains unique.
    pub organizations: Vec<(u32, NewOrganization)>,
    /// How many organizations one upsert statement may carry (the adapter may use fewer to stay under a bind limit).
    pub chunk_size: usize,
    /// Whether an `unchanged` organization whose last processing completed is processed again.
    pub reprocess_unchanged: bool,
    /// The submission time: `created_at` of the batch and items, `available_at` of new work.
    pub now: Timestamp,
    /// When a pending item that nobody claimed is first considered lost by [`OrgRepository::sweep`].
    pub sweep_at: Timestamp,
    /// The W3C `traceparent` of the request that created the batch
    /// (`crate::trace`), stored with the batch and handed back with each
    /// claimed item; `None` when traces are not exported.
    pub trace_parent: Option<String>,
}

impl Submission {
    /// The batch row this submission stores: `total` items, completed at
    /// [`Submission::now`] when `all_done` (every item already completed);
    /// what every repository answers in [`StoreResult::Stored`].
    #[must_use]
    pub fn stored_batch(&self, total: usize, all_done: bool) -> crate::model::Batch {
        crate::model::Batch {
            id: self.batch_id,
            tenant: self.tenant.clone(),
            idempotency_key: self.idempotency_key.clone(),
            request_hash: self.request_hash.clone(),
            total: u32::try_from(total).unwrap_or(u32::MAX),
            policy: self.policy,
            mode: self.mode,
            created_at: self.now,
            completed_at: all_done.then_some(self.now),
            cancelled_at: None,
            announced_at: None,
        }
    }
}

/// One stored item, as the ingest service needs it to enqueue and emit events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    /// Item id.
    pub item_id: ItemId,
    /// Position in the request.
    pub position: u32,
    /// The organization row.
    pub organization_id: OrganizationId,
    /// Its domain.
    pub domain: Domain,
    /// What the upsert did.
    pub change: Change,
    /// `Pending` when it needs processing, `Completed` when nothing is left to do
    /// (skipped, or unchanged and already processed).
    pub status: ItemStatus,
}

/// The answer to [`OrgRepository::store_submission`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreResult {
    /// A new batch was stored.
    Stored {
        /// The batch as stored.
        batch: Batch,
        /// Its items, in request order.
        items: Vec<StoredItem>,
    },
    /// The tenant already used this idempotency key for the same request: nothing was written.
    Replayed {
        /// The earlier batch.
        batch: Batch,
    },
    /// The tenant already used this idempotency key for another request: nothing was written.
    KeyConflict {
        /// The earlier batch.
        batch: Batch,
    },
}

impl StoreResult {
    /// The answer when the tenant's idempotency key already names `earlier`:
    /// [`StoreResult::Replayed`] for the same request hash, else
    /// [`StoreResult::KeyConflict`]. The one rule every backend applies.
    pub fn for_earlier(earlier: Batch, request_hash: &str) -> Self {
        if earlier.request_hash == request_hash {
            Self::Replayed { batch: earlier }
        } else {
            Self::KeyConflict { batch: earlier }
        }
    }
}

/// A fencing reference: an item together with the lease token of one claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Lease {
    /// The item.
    pub item_id: ItemId,
    /// The token its claim returned.
    pub token: LeaseToken,
}

/// A request to claim many items at once.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The items to try.
    pub item_ids: Vec<ItemId>,
    /// The token every claimed item gets.
    pub token: LeaseToken,
    /// The caller's clock.
    pub now: Timestamp,
    /// Lease expiry to set.
    pub lease_until: Timestamp,
}

/// An item a worker now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedItem {
    /// The lease to present on every later write.
    pub lease: Lease,
    /// The item's batch.
    pub batch_id: BatchId,
    /// The batch owner.
    pub tenant: TenantId,
    /// This attempt's number (1-based: attempts after the claim).
    pub attempt: u32,
    /// What the upsert did.
    pub change: Change,
    /// The organization as stored now.
    pub organization: Organization,
    /// The `traceparent` stored with the item's batch ([`Submission::trace_parent`]).
    pub trace_parent: Option<String>,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Processing succeeded.
    Completed,
    /// A retryable failure: back to pending, claimable again at `available_at`.
    Retry {
        /// Not claimable before this.
        available_at: Timestamp,
        /// What went wrong (appended to the error history).
        error: String,
    },
    /// A permanent failure or the last attempt: to the dead-letter list.
    Failed {
        /// What went wrong (appended to the error history).
        error: String,
        /// Whether the processor declared it permanent (vs. out of attempts).
        permanent: bool,
    },
}

/// One attempt's end, fenced by its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finish {
    /// The claim this result belongs to.
    pub lease: Lease,
    /// The result.
    pub resolution: Resolution,
}

/// Which items a page lists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemQuery {
    /// Only items with this status.
    pub status: Option<ItemStatus>,
    /// At most this many (adapters may cap it).
    pub limit: u32,
    /// Only items at positions after this one (the previous page's `next_cursor`).
    pub after_position: Option<u32>,
}

/// One page of a batch's items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemPage {
    /// Items ordered by position.
    pub items: Vec<BatchItem>,
    /// The position to pass as `after_position` for the next page; `None` on the last page.
    pub next_cursor: Option<u32>,
}

/// Which batches a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchQuery {
    /// Only batches in this state.
    pub state: Option<BatchState>,
    /// Only batches created strictly after this time.
    pub created_after: Option<Timestamp>,
    /// Only batches older than this one (the previous page's `next_cursor`).
    pub before: Option<BatchId>,
    /// At most this many (at least 1).
    pub limit: u32,
}

/// One page of a tenant's batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchPage {
    /// Newest first (by id: ids are UUIDv7, so in creation order).
    pub batches: Vec<BatchStatus>,
    /// The id to pass as `before` for the next page; `None` on the last page.
    pub next_cursor: Option<BatchId>,
}

/// The source of truth for organizations, batches and items.
///
/// Implementations must be safe to share between any number of workers and
/// processes. The conformance suite in [`crate::testing`] checks every
/// `# Behavior` bullet below.
#[async_trait]
pub trait OrgRepository: Send + Sync + 'static {
    /// Stores a submission: the batch, one item per organization, and the
    /// upsert of every organization, all in one transaction.
    ///
    /// # Behavior
    /// - All or nothing: on any error nothing of the submission is visible.
    /// - Organizations belong to the submitting tenant: every outcome below is
    ///   relative to the tenant's own row of the domain; another tenant's row
    ///   of the same domain is never read, written or reported (a domain only
    ///   another tenant has is `Created` for this one).
    /// - A new domain is inserted (`Created`, version 1, status pending).
    /// - An existing domain with policy `Update` and different name or
    ///   contact_email is updated (`Updated`, version + 1); with identical
    ///   data it is left as it is (`Unchanged`, version and `updated_at` kept).
    /// - An existing domain with policy `Skip` is left as it is (`Skipped`).
    /// - Items that need processing are `Pending` with `available_at = now`;
    ///   `Skipped` items, and `Unchanged` items whose organization's status is
    ///   `Completed` (unless `reprocess_unchanged`), are stored `Completed`.
    /// - The organization's status becomes `Pending` when its item is pending.
    /// - The same `(tenant, idempotency_key)` with the same `request_hash`
    ///   answers `Replayed` with the first batch; with another hash
    ///   `KeyConflict`. Both write nothing, also under concurrent calls.
    /// - A batch whose items are all completed at store time is stored with `completed_at = now`.
    async fn store_submission(&self, submission: &Submission) -> Result<StoreResult>;

    /// Claims the listed items that are claimable: `Pending` with
    /// `available_at <= now`, or `Processing` with `lease_until <= now`.
    ///
    /// # Behavior
    /// - A claimed item becomes `Processing` with the request's token and
    ///   `lease_until`, `attempts + 1`. Its organization is read, not written:
    ///   an organization's status is the outcome of its latest submission
    ///   (`Pending` until an attempt's result is recorded), and `Processing`
    ///   lives on the item. (One row write per claimed item instead of two.)
    /// - Items not claimable (leased, not yet available, terminal, unknown) are
    ///   left out of the answer, never an error.
    /// - Two concurrent claims of one item: at most one gets it.
    async fn claim_items(&self, request: &ClaimRequest) -> Result<Vec<ClaimedItem>>;

    /// Extends the leases still held.
    ///
    /// # Behavior
    /// - Returns the items whose token matches and that are still
    ///   `Processing`, after setting their `lease_until`; others are left out.
    async fn extend_leases(
        &self,
        leases: &[Lease],
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<ItemId>>;

    /// Records the end of many attempts.
    ///
    /// # Behavior
    /// - Applies only where the item is `Processing` with the same token
    ///   (fencing): a zombie's finish is left out and changes nothing.
    /// - `Completed` → item and organization `Completed`, `finished_at = now`.
    /// - `Retry` → `Pending` with the given `available_at`, lease cleared,
    ///   error appended, and `sweep_at = available_at + stale_after`.
    /// - `Failed` → item and organization `Failed`, error appended, `finished_at = now`.
    /// - Returns the ids it applied.
    async fn finish_items(
        &self,
        finishes: &[Finish],
        now: Timestamp,
        stale_after: Duration,
    ) -> Result<Vec<ItemId>>;

    /// Gives leased items back without counting the attempt (graceful shutdown).
    ///
    /// # Behavior
    /// - Fenced like `finish_items`; released items are `Pending`, available
    ///   at `now`, lease cleared, `attempts - 1`. Returns jobs to enqueue for them.
    async fn release_items(&self, leases: &[Lease], now: Timestamp) -> Result<Vec<Job>>;

    /// Finds work that no live message or live worker will finish, and
    /// returns it to be enqueued again.
    ///
    /// # Behavior
    /// - `Pending` items with `sweep_at <= pending_due` are returned, and their
    ///   `sweep_at` moves to `now + stale_after` (so one item is not returned again at once).
    ///   The sweeper passes a `pending_due` before `now` while the queue may
    ///   still hold their messages (see the worker's `QueueWatch`).
    /// - `Processing` items with `lease_until <= now` are returned (their
    ///   next claim takes them over), and `lease_until` is not changed.
    /// - At most `limit` jobs, oldest due first where the backend can order cheaply.
    /// - A backend may read large batches in parts over successive calls,
    ///   but a call answers no job only after reading every open item or at
    ///   least 200,000 of them (so lost work deep in a large batch is found
    ///   within a few sweeps, not one sweep per part).
    /// - `Cancelled` items are never returned; an expired lease of a
    ///   cancelled batch is (the item must still reach a terminal status).
    async fn sweep(
        &self,
        now: Timestamp,
        pending_due: Timestamp,
        stale_after: Duration,
        limit: u32,
    ) -> Result<Vec<Job>>;

    /// Marks the listed batches completed where they are finished, exactly once each.
    ///
    /// # Behavior
    /// - For each listed batch whose items are all terminal and whose
    ///   `completed_at` is unset: sets `completed_at = now` and returns its status.
    /// - A batch is returned by at most one call per completion, under concurrency.
    async fn complete_batches(
        &self,
        batches: &[BatchId],
        now: Timestamp,
    ) -> Result<Vec<BatchStatus>>;

    /// Like [`OrgRepository::complete_batches`] over every open batch (the
    /// sweeper's safety net for a worker that died before completing one).
    ///
    /// # Behavior
    /// - Completes at most `limit` finished open batches, each exactly once.
    async fn complete_open_batches(&self, now: Timestamp, limit: u32) -> Result<Vec<BatchStatus>>;

    /// Completed batches whose `BatchCompleted` was not yet announced.
    ///
    /// # Behavior
    /// - Returns batches with `completed_at <= completed_before` and no `announced_at`, at most `limit`.
    async fn unannounced_batches(
        &self,
        completed_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<BatchStatus>>;

    /// Records that `BatchCompleted` was handed to the event sink.
    ///
    /// # Behavior
    /// - Sets `announced_at = now` on the listed batches that are completed.
    async fn mark_announced(&self, batches: &[BatchId], now: Timestamp) -> Result<()>;

    /// Stops a batch's pending items.
    ///
    /// # Behavior
    /// - `None` when the batch does not exist for this tenant.
    /// - Its `Pending` items become `Cancelled`; processing ones finish
    ///   normally; `cancelled_at` is set once. Returns the status after the change.
    async fn cancel_batch(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<BatchStatus>>;

    /// Re-drives a batch's failed items (the dead-letter list).
    ///
    /// # Behavior
    /// - `None` when the batch does not exist for this tenant.
    /// - Its `Failed` items become `Pending`, available at `now`, attempts 0,
    ///   error history kept; the batch's `completed_at` and `announced_at` are
    ///   cleared when any item was re-driven. Returns jobs to enqueue.
    async fn retry_failed(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>>;

    /// Re-drives some of a batch's failed items (one group of failures).
    ///
    /// # Behavior
    /// - `None` when the batch does not exist for this tenant.
    /// - The listed items of this batch that are `Failed` change as in
    ///   [`OrgRepository::retry_failed`]; other listed ids (another batch's,
    ///   not failed, unknown) are left as they are. Returns jobs to enqueue.
    async fn retry_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        items: &[ItemId],
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>>;

    /// One page of a tenant's batches with their counts, newest first.
    ///
    /// # Behavior
    /// - Only the tenant's batches; ordered by id descending (UUIDv7: newest first).
    /// - Filters by [`BatchState`] (cancelled wins over completed) and `created_after`.
    /// - `before` starts after that batch (it need not exist); pages never
    ///   repeat or skip a batch; `next_cursor` is `None` on the last page.
    async fn list_batches(&self, tenant: &TenantId, query: &BatchQuery) -> Result<BatchPage>;

    /// A batch and its exact counts.
    ///
    /// # Behavior
    /// - `None` when the batch does not exist or belongs to another tenant.
    async fn batch_status(&self, tenant: &TenantId, batch: BatchId) -> Result<Option<BatchStatus>>;

    /// One page of a batch's items, ordered by position.
    ///
    /// # Behavior
    /// - `None` when the batch does not exist for this tenant.
    /// - Filters by status; pages never repeat or skip an item.
    async fn list_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        query: &ItemQuery,
    ) -> Result<Option<ItemPage>>;

    /// A tenant's finished items per time bucket since `since`: the history
    /// of a throughput chart, computed set-based (one `GROUP BY`).
    ///
    /// # Behavior
    /// - Counts the tenant's items now `completed` or `failed` whose
    ///   `finished_at` is at or after `since`, per bucket of `bucket_seconds`
    ///   (treated as at least 1) aligned on the Unix epoch: an item falls in
    ///   the bucket starting at `floor(finished_at / bucket_seconds) * bucket_seconds`
    ///   (whole seconds since the epoch).
    /// - Another tenant's items are never counted; pending, processing and
    ///   cancelled items neither; buckets without items are left out; ordered
    ///   by `start`.
    async fn throughput(
        &self,
        tenant: &TenantId,
        since: Timestamp,
        bucket_seconds: u32,
    ) -> Result<Vec<ThroughputBucket>>;

    /// The tenant's own organization for a normalized domain.
    ///
    /// # Behavior
    /// - Organizations are keyed by (tenant, domain): another tenant's row of
    ///   the same domain is never returned; `None` when this tenant has none
    ///   or deleted it ([`OrgRepository::delete_organization`]).
    async fn organization_by_domain(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Result<Option<Organization>>;

    /// One page of the tenant's organizations, ordered by domain.
    ///
    /// # Behavior
    /// - Only the tenant's own rows, soft-deleted ones left out; ordered by
    ///   domain ascending (the backend's text order; unique per tenant, so
    ///   the order is stable).
    /// - `after` starts after that domain (it need not exist); pages never
    ///   repeat or skip an organization; `next_cursor` is `None` on the last page.
    async fn list_organizations(
        &self,
        tenant: &TenantId,
        query: &OrganizationQuery,
    ) -> Result<OrganizationPage>;

    /// Every recorded version of the tenant's organization, oldest first.
    ///
    /// # Behavior
    /// - `None` when the tenant has no such organization or deleted it.
    /// - One version per write of its data, in the same transaction as the
    ///   upsert: created (1), each update (+ 1), each restore after a delete
    ///   (+ 1); with the name, contact email, batch and time of that write.
    ///   `Unchanged` and `Skipped` outcomes write none.
    async fn organization_versions(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Result<Option<Vec<OrganizationVersion>>>;

    /// Soft-deletes the tenant's organization of a domain.
    ///
    /// # Behavior
    /// - `false` when the tenant has no such organization or already deleted
    ///   it (another tenant's row of the domain is never touched).
    /// - Sets `deleted_at = now`: the organization is hidden from
    ///   `organization_by_domain`, `list_organizations` and `organization_versions`.
    /// - A later submission of the domain by the tenant restores it under
    ///   either policy: `Created`, version + 1 (continuing), the submitted
    ///   data, status pending, `created_at` kept, a version recorded.
    /// - Its batch items are left as they are: work accepted before the
    ///   delete finishes (pending items are processed) and batch counts stay exact.
    /// - `prune` never removes organizations or their versions.
    async fn delete_organization(
        &self,
        tenant: &TenantId,
        domain: &Domain,
        now: Timestamp,
    ) -> Result<bool>;

    /// Deletes batches (and their items) completed before `finished_before`.
    ///
    /// # Behavior
    /// - Open batches and organizations are never deleted. Returns how many batches went.
    /// - A pruned batch's file staging (rows, refusals) goes with it, and so do
    ///   uploads still receiving that began before `finished_before` (their
    ///   process died mid-upload; a live one discards its own on failure).
    async fn prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64>;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<()>;

    /// Why the repository works in a reduced way while `ping` succeeds (a
    /// read replica down or behind: reads served by the primary), as a
    /// short code for `/ready`; `None` when all is well.
    ///
    /// # Behavior
    /// - `None` unless the implementation has such a part (the default).
    fn degraded(&self) -> Option<&'static str> {
        None
    }

    /// The staging of file imports, when this backend has one.
    ///
    /// # Behavior
    /// - Backends that support imports answer `Some` and pass the `imports`
    ///   conformance group; the default is `None`.
    fn imports(&self) -> Option<&dyn ImportStore> {
        None
    }
}
