//! Cancellation safety: every repository and queue call runs to completion
//! in a task of its own, whatever happens to the caller's future.
//!
//! Callers drop futures at any await: an HTTP request timeout around a
//! submission, a shutdown racing a dequeue. A transaction interrupted
//! half-way can leave its pooled connection inside a transaction nobody
//! owns, or holding row locks until the connection is next used (seen:
//! SQLite refusing every later `BEGIN` on that connection; MariaDB
//! statements waiting for locks held by an idle pooled connection). Run in a
//! task, the call finishes (or fails) cleanly and its connection goes back
//! to the pool in a known state; a caller that stopped waiting simply does
//! not see the answer. The conformance case
//! `cancelled_calls_leave_the_repository_usable` pins this down.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onboarding_core::import::{
    ImportProgress, ImportRow, ImportStore, NewImport, RepeatsRefused, RowError,
};
use onboarding_core::model::{
    BatchId, BatchStatus, Domain, ItemId, Organization, TenantId, Timestamp,
};
use onboarding_core::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use onboarding_core::repository::{
    BatchPage, BatchQuery, ClaimRequest, ClaimedItem, Finish, ItemPage, ItemQuery, Lease,
    OrgRepository, StoreResult, Submission, ThroughputBucket,
};
use onboarding_core::{Delivery, Error, Job, JobQueue, QueueDepth, Receipt, Result};

/// Runs `call` on `inner` in a spawned task and waits for its answer.
async fn detached<T, R, F, Fut>(inner: &Arc<T>, call: F) -> Result<R>
where
    T: ?Sized + Send + Sync + 'static,
    R: Send + 'static,
    F: FnOnce(Arc<T>) -> Fut,
    Fut: std::future::Future<Output = Result<R>> + Send + 'static,
{
    match tokio::spawn(call(inner.clone())).await {
        Ok(answer) => answer,
        Err(e) => Err(Error::internal(format!(
            "a database call ended abnormally: {e}"
        ))),
    }
}

/// An [`OrgRepository`] whose calls cannot be interrupted half-way.
pub(crate) struct DetachedRepository {
    inner: Arc<dyn OrgRepository>,
}

impl DetachedRepository {
    pub(crate) fn new(inner: impl OrgRepository) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }
}

#[async_trait]
impl OrgRepository for DetachedRepository {
    async fn store_submission(&self, submission: &Submission) -> Result<StoreResult> {
        let s = submission.clone();
        detached(&self.inner, |r| async move { r.store_submission(&s).await }).await
    }

    async fn claim_items(&self, request: &ClaimRequest) -> Result<Vec<ClaimedItem>> {
        let q = request.clone();
        detached(&self.inner, |r| async move { r.claim_items(&q).await }).await
    }

    async fn extend_leases(
        &self,
        leases: &[Lease],
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<ItemId>> {
        let l = leases.to_vec();
        detached(&self.inner, |r| async move {
            r.extend_leases(&l, now, lease_until).await
        })
        .await
    }

    async fn finish_items(
        &self,
        finishes: &[Finish],
        now: Timestamp,
        stale_after: Duration,
    ) -> Result<Vec<ItemId>> {
        let f = finishes.to_vec();
        detached(&self.inner, |r| async move {
            r.finish_items(&f, now, stale_after).await
        })
        .await
    }

    async fn release_items(&self, leases: &[Lease], now: Timestamp) -> Result<Vec<Job>> {
        let l = leases.to_vec();
        detached(
            &self.inner,
            |r| async move { r.release_items(&l, now).await },
        )
        .await
    }

    async fn sweep(
        &self,
        now: Timestamp,
        pending_due: Timestamp,
        stale_after: Duration,
        limit: u32,
    ) -> Result<Vec<Job>> {
        detached(&self.inner, |r| async move {
            r.sweep(now, pending_due, stale_after, limit).await
        })
        .await
    }

    async fn complete_batches(
        &self,
        batches: &[BatchId],
        now: Timestamp,
    ) -> Result<Vec<BatchStatus>> {
        let b = batches.to_vec();
        detached(
            &self.inner,
            |r| async move { r.complete_batches(&b, now).await },
        )
        .await
    }

    async fn complete_open_batches(&self, now: Timestamp, limit: u32) -> Result<Vec<BatchStatus>> {
        detached(&self.inner, |r| async move {
            r.complete_open_batches(now, limit).await
        })
        .await
    }

    async fn unannounced_batches(
        &self,
        completed_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<BatchStatus>> {
        detached(&self.inner, |r| async move {
            r.unannounced_batches(completed_before, limit).await
        })
        .await
    }

    async fn mark_announced(&self, batches: &[BatchId], now: Timestamp) -> Result<()> {
        let b = batches.to_vec();
        detached(
            &self.inner,
            |r| async move { r.mark_announced(&b, now).await },
        )
        .await
    }

    async fn cancel_batch(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<BatchStatus>> {
        let t = tenant.clone();
        detached(&self.inner, |r| async move {
            r.cancel_batch(&t, batch, now).await
        })
        .await
    }

    async fn retry_failed(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        let t = tenant.clone();
        detached(&self.inner, |r| async move {
            r.retry_failed(&t, batch, now).await
        })
        .await
    }

    async fn retry_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        items: &[ItemId],
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        let t = tenant.clone();
        let items = items.to_vec();
        detached(&self.inner, |r| async move {
            r.retry_items(&t, batch, &items, now).await
        })
        .await
    }

    async fn list_batches(&self, tenant: &TenantId, query: &BatchQuery) -> Result<BatchPage> {
        self.inner.list_batches(tenant, query).await
    }

    // Reads hold no locks and leave no transaction open: no task needed.
    async fn batch_status(&self, tenant: &TenantId, batch: BatchId) -> Result<Option<BatchStatus>> {
        self.inner.batch_status(tenant, batch).await
    }

    async fn list_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        query: &ItemQuery,
    ) -> Result<Option<ItemPage>> {
        self.inner.list_items(tenant, batch, query).await
    }

    async fn throughput(
        &self,
        tenant: &TenantId,
        since: Timestamp,
        bucket_seconds: u32,
    ) -> Result<Vec<ThroughputBucket>> {
        self.inner.throughput(tenant, since, bucket_seconds).await
    }

    async fn organization_by_domain(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Result<Option<Organization>> {
        self.inner.organization_by_domain(tenant, domain).await
    }

    async fn list_organizations(
        &self,
        tenant: &TenantId,
        query: &OrganizationQuery,
    ) -> Result<OrganizationPage> {
        self.inner.list_organizations(tenant, query).await
    }

    async fn organization_versions(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Result<Option<Vec<OrganizationVersion>>> {
        self.inner.organization_versions(tenant, domain).await
    }

    async fn delete_organization(
        &self,
        tenant: &TenantId,
        domain: &Domain,
        now: Timestamp,
    ) -> Result<bool> {
        let (t, d) = (tenant.clone(), domain.clone());
        detached(&self.inner, |r| async move {
            r.delete_organization(&t, &d, now).await
        })
        .await
    }

    async fn prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64> {
        detached(&self.inner, |r| async move {
            r.prune(finished_before, limit).await
        })
        .await
    }

    fn imports(&self) -> Option<&dyn ImportStore> {
        self.inner.imports().map(|_| self as &dyn ImportStore)
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

/// The inner repository's import staging, from a task of its own.
fn staging(repository: &dyn OrgRepository) -> Result<&dyn ImportStore> {
    repository
        .imports()
        .ok_or_else(|| Error::internal("the repository has no import staging"))
}

// Each call runs detached like the repository's: an upload whose client
// goes away cannot leave a staging transaction open.
#[async_trait]
impl ImportStore for DetachedRepository {
    async fn begin_import(&self, import: &NewImport) -> Result<()> {
        let import = import.clone();
        detached(&self.inner, |r| async move {
            staging(r.as_ref())?.begin_import(&import).await
        })
        .await
    }

    async fn append_import(
        &self,
        batch: BatchId,
        rows: &[ImportRow],
        rejected: &[RowError],
    ) -> Result<Vec<RowError>> {
        let (rows, rejected) = (rows.to_vec(), rejected.to_vec());
        detached(&self.inner, |r| async move {
            staging(r.as_ref())?
                .append_import(batch, &rows, &rejected)
                .await
        })
        .await
    }

    async fn refuse_repeats(&self, batch: BatchId, quote: usize) -> Result<RepeatsRefused> {
        detached(&self.inner, |r| async move {
            staging(r.as_ref())?.refuse_repeats(batch, quote).await
        })
        .await
    }

    async fn seal_import(&self, submission: &Submission) -> Result<Option<StoreResult>> {
        let s = submission.clone();
        detached(&self.inner, |r| async move {
            staging(r.as_ref())?.seal_import(&s).await
        })
        .await
    }

    async fn sealed_imports(
        &self,
        before: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Submission>> {
        staging(self.inner.as_ref())?
            .sealed_imports(before, now, limit)
            .await
    }

    async fn finish_import(&self, submission: &Submission) -> Result<StoreResult> {
        let s = submission.clone();
        detached(&self.inner, |r| async move {
            staging(r.as_ref())?.finish_import(&s).await
        })
        .await
    }

    async fn abort_import(&self, batch: BatchId) -> Result<()> {
        detached(&self.inner, |r| async move {
            staging(r.as_ref())?.abort_import(batch).await
        })
        .await
    }

    async fn import_progress(
        &self,
        tenant: &TenantId,
        batch: BatchId,
    ) -> Result<Option<ImportProgress>> {
        staging(self.inner.as_ref())?
            .import_progress(tenant, batch)
            .await
    }

    async fn receiving_imports(
        &self,
        tenant: &TenantId,
        key: Option<&str>,
    ) -> Result<Vec<ImportProgress>> {
        staging(self.inner.as_ref())?
            .receiving_imports(tenant, key)
            .await
    }

    async fn staged_rows(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        lines: &[u32],
    ) -> Result<Vec<ImportRow>> {
        staging(self.inner.as_ref())?
            .staged_rows(tenant, batch, lines)
            .await
    }

    async fn rejected_rows(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        after_line: Option<u32>,
        limit: u32,
    ) -> Result<Option<Vec<RowError>>> {
        staging(self.inner.as_ref())?
            .rejected_rows(tenant, batch, after_line, limit)
            .await
    }
}

/// A [`JobQueue`] whose writes cannot be interrupted half-way.
pub(crate) struct DetachedQueue {
    inner: Arc<dyn JobQueue>,
}

impl DetachedQueue {
    pub(crate) fn new(inner: impl JobQueue) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }
}

#[async_trait]
impl JobQueue for DetachedQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        let j = jobs.to_vec();
        detached(&self.inner, |q| async move { q.enqueue(&j).await }).await
    }

    async fn dequeue(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        // Not in a task: a dequeue whose caller left must stop waiting, or it
        // would take jobs nobody processes (invisible until their visibility
        // timeout). Its transaction begins through `begin_detached`, and a
        // dropped one loses nothing: its jobs come back after the timeout.
        self.inner.dequeue(max, wait).await
    }

    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        let r = receipts.to_vec();
        detached(&self.inner, |q| async move { q.ack(&r).await }).await
    }

    async fn depth(&self) -> Result<QueueDepth> {
        self.inner.depth().await
    }

    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

impl std::fmt::Debug for DetachedRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DetachedRepository")
    }
}

impl std::fmt::Debug for DetachedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DetachedQueue")
    }
}
