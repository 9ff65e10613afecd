//! `MemoryRepository`: every table in one mutex-guarded map set.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::model::{
    after, trim_error_history, AttemptError, Batch, BatchCounts, BatchId, BatchItem, BatchState,
    BatchStatus, Change, ConflictPolicy, Domain, ItemId, ItemStatus, LeaseToken, Organization,
    OrganizationId, TenantId, Timestamp,
};
use crate::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use crate::queue::Job;
use crate::repository::{
    BatchPage, BatchQuery, ClaimRequest, ClaimedItem, Finish, ItemPage, ItemQuery, Lease,
    OrgRepository, Resolution, StoreResult, StoredItem, Submission, ThroughputBucket,
};

/// The fastest backend and the test baseline: all state in process memory.
///
/// Nothing survives the process; use it for tests, benchmarks and
/// single-process tools.
#[derive(Debug, Default)]
pub struct MemoryRepository {
    state: Mutex<State>,
    /// Staged file imports (`memory/imports.rs`).
    pub(super) uploads: super::imports::Uploads,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// Keyed by owner and normalized domain: two tenants' rows never meet.
    pub(super) organizations: HashMap<(TenantId, Domain), Organization>,
    /// Every version of each organization's data, oldest first (`memory/organizations.rs`).
    pub(super) versions: HashMap<OrganizationId, Vec<OrganizationVersion>>,
    batches: HashMap<BatchId, BatchRow>,
    idempotency: HashMap<(TenantId, String), BatchId>,
    items: HashMap<ItemId, ItemRow>,
}

#[derive(Debug)]
struct BatchRow {
    batch: Batch,
    /// Item ids in position order.
    items: Vec<ItemId>,
    /// [`Submission::trace_parent`].
    trace_parent: Option<String>,
}

#[derive(Debug)]
struct ItemRow {
    item: BatchItem,
    tenant: TenantId,
    token: Option<LeaseToken>,
    sweep_at: Timestamp,
}

impl ItemRow {
    /// Appends a failed attempt, keeping the last
    /// [`ERROR_HISTORY_LIMIT`](crate::model::ERROR_HISTORY_LIMIT) and the total.
    fn record_error(&mut self, error: AttemptError) {
        self.item.errors.push(error);
        trim_error_history(&mut self.item.errors);
        self.item.error_count = self.item.error_count.saturating_add(1);
    }
}

impl MemoryRepository {
    /// An empty repository.
    pub fn new() -> Self {
        Self::default()
    }

    /// The batch stored under a tenant's idempotency key, if any.
    pub(super) fn batch_by_key(&self, tenant: &TenantId, key: &str) -> Result<Option<Batch>> {
        self.lock()?.batch_by_key(tenant, key)
    }

    pub(super) fn lock(&self) -> Result<MutexGuard<'_, State>> {
        // A poisoned lock means a panic mid-update: the state may be torn.
        self.state
            .lock()
            .map_err(|_| Error::internal("memory repository lock poisoned by a panic"))
    }
}

impl State {
    fn status(&self, id: BatchId) -> Option<BatchStatus> {
        let row = self.batches.get(&id)?;
        let mut counts = BatchCounts::default();
        for item_id in &row.items {
            if let Some(item) = self.items.get(item_id) {
                counts.add(item.item.status, item.item.change);
            }
        }
        Some(BatchStatus {
            batch: row.batch.clone(),
            counts,
        })
    }

    /// Sets `completed_at` on the finished, not yet completed batches among `ids`.
    fn complete(
        &mut self,
        ids: impl IntoIterator<Item = BatchId>,
        now: Timestamp,
    ) -> Vec<BatchStatus> {
        let mut done = Vec::new();
        for id in ids {
            let Some(status) = self.status(id) else {
                continue;
            };
            if status.batch.completed_at.is_some() || !status.is_finished() {
                continue;
            }
            if let Some(row) = self.batches.get_mut(&id) {
                row.batch.completed_at = Some(now);
                done.push(BatchStatus {
                    batch: row.batch.clone(),
                    counts: status.counts,
                });
            }
        }
        done
    }

    /// Makes the failed items among `ids` (all of `batch`) pending again.
    fn redrive(&mut self, batch: BatchId, ids: &[ItemId], now: Timestamp) -> Vec<Job> {
        let mut jobs = Vec::new();
        for id in ids {
            if let Some(item) = self.items.get_mut(id) {
                if item.item.status == ItemStatus::Failed {
                    item.item.status = ItemStatus::Pending;
                    item.item.attempts = 0;
                    item.item.available_at = now;
                    item.item.finished_at = None;
                    item.item.updated_at = now;
                    item.sweep_at = now;
                    jobs.push(Job {
                        item_id: *id,
                        tenant: item.tenant.clone(),
                        not_before: None,
                    });
                    let (tenant, domain) = (item.tenant.clone(), item.item.domain.clone());
                    self.set_org_status(&tenant, &domain, ItemStatus::Pending);
                }
            }
        }
        if !jobs.is_empty() {
            if let Some(row) = self.batches.get_mut(&batch) {
                row.batch.completed_at = None;
                row.batch.announced_at = None;
            }
        }
        jobs
    }

    fn tenant_batch(&self, tenant: &TenantId, id: BatchId) -> Option<&BatchRow> {
        self.batches.get(&id).filter(|b| &b.batch.tenant == tenant)
    }

    fn set_org_status(&mut self, tenant: &TenantId, domain: &Domain, status: ItemStatus) {
        // `updated_at` tracks changes of the data (like `version`), not of the status.
        if let Some(org) = self
            .organizations
            .get_mut(&(tenant.clone(), domain.clone()))
        {
            org.status = status;
        }
    }

    /// The batch stored under a tenant's idempotency key, if any.
    fn batch_by_key(&self, tenant: &TenantId, key: &str) -> Result<Option<Batch>> {
        self.idempotency
            .get(&(tenant.clone(), key.to_owned()))
            .map(|id| {
                self.batches
                    .get(id)
                    .map(|b| b.batch.clone())
                    .ok_or_else(|| Error::internal("idempotency key points to no batch"))
            })
            .transpose()
    }

    /// The item row of a live lease, if the token still holds it.
    fn leased_mut(&mut self, lease: &Lease) -> Option<&mut ItemRow> {
        self.items.get_mut(&lease.item_id).filter(|row| {
            row.item.status == ItemStatus::Processing && row.token == Some(lease.token)
        })
    }
}

#[async_trait]
impl OrgRepository for MemoryRepository {
    async fn store_submission(&self, s: &Submission) -> Result<StoreResult> {
        let mut st = self.lock()?;
        if let Some(key) = &s.idempotency_key {
            if let Some(batch) = st.batch_by_key(&s.tenant, key)? {
                return Ok(StoreResult::for_earlier(batch, &s.request_hash));
            }
        }
        let now = s.now;
        let mut items = Vec::with_capacity(s.organizations.len());
        let mut item_ids = Vec::with_capacity(s.organizations.len());
        for (position, new) in &s.organizations {
            let (change, org) = match st
                .organizations
                .get_mut(&(s.tenant.clone(), new.domain.clone()))
            {
                None => {
                    let org = Organization {
                        id: OrganizationId::new(),
                        name: new.name.clone(),
                        domain: new.domain.clone(),
                        contact_email: new.contact_email.clone(),
                        status: ItemStatus::Pending,
                        version: 1,
                        created_at: now,
                        updated_at: now,
                        deleted_at: None,
                    };
                    st.organizations
                        .insert((s.tenant.clone(), new.domain.clone()), org.clone());
                    (Change::Created, org)
                }
                Some(org) if org.deleted_at.is_some() => {
                    // A deleted organization comes back as new, its version continuing.
                    org.name = new.name.clone();
                    org.contact_email = new.contact_email.clone();
                    org.version += 1;
                    org.updated_at = now;
                    org.deleted_at = None;
                    (Change::Created, org.clone())
                }
                Some(org) if s.policy == ConflictPolicy::Skip => (Change::Skipped, org.clone()),
                Some(org) if org.name == new.name && org.contact_email == new.contact_email => {
                    (Change::Unchanged, org.clone())
                }
                Some(org) => {
                    org.name = new.name.clone();
                    org.contact_email = new.contact_email.clone();
                    org.version += 1;
                    org.updated_at = now;
                    (Change::Updated, org.clone())
                }
            };
            if matches!(change, Change::Created | Change::Updated) {
                st.record_version(&org, s.batch_id, now);
            }
            let done = change == Change::Skipped
                || (change == Change::Unchanged
                    && org.status == ItemStatus::Completed
                    && !s.reprocess_unchanged);
            let status = if done {
                ItemStatus::Completed
            } else {
                st.set_org_status(&s.tenant, &new.domain, ItemStatus::Pending);
                ItemStatus::Pending
            };
            let item = BatchItem {
                id: ItemId::new(),
                batch_id: s.batch_id,
                position: *position,
                organization_id: org.id,
                domain: new.domain.clone(),
                status,
                change,
                attempts: 0,
                available_at: now,
                lease_until: None,
                errors: Vec::new(),
                error_count: 0,
                created_at: now,
                updated_at: now,
                finished_at: done.then_some(now),
            };
            items.push(StoredItem {
                item_id: item.id,
                position: *position,
                organization_id: org.id,
                domain: new.domain.clone(),
                change,
                status,
            });
            item_ids.push(item.id);
            st.items.insert(
                item.id,
                ItemRow {
                    item,
                    tenant: s.tenant.clone(),
                    token: None,
                    sweep_at: s.sweep_at,
                },
            );
        }
        let all_done = items.iter().all(|i| i.status == ItemStatus::Completed);
        let batch = s.stored_batch(items.len(), all_done);
        if let Some(key) = &s.idempotency_key {
            st.idempotency
                .insert((s.tenant.clone(), key.clone()), s.batch_id);
        }
        st.batches.insert(
            s.batch_id,
            BatchRow {
                batch: batch.clone(),
                items: item_ids,
                trace_parent: s.trace_parent.clone(),
            },
        );
        Ok(StoreResult::Stored { batch, items })
    }

    async fn claim_items(&self, r: &ClaimRequest) -> Result<Vec<ClaimedItem>> {
        let mut st = self.lock()?;
        let mut claimed = Vec::new();
        for id in &r.item_ids {
            let Some(row) = st.items.get_mut(id) else {
                continue;
            };
            let claimable = match row.item.status {
                ItemStatus::Pending => row.item.available_at <= r.now,
                ItemStatus::Processing => row.item.lease_until.is_some_and(|l| l <= r.now),
                _ => false,
            };
            if !claimable {
                continue;
            }
            row.item.status = ItemStatus::Processing;
            row.item.attempts += 1;
            row.item.lease_until = Some(r.lease_until);
            row.item.updated_at = r.now;
            row.token = Some(r.token);
            let (attempt, change, batch_id, tenant, domain) = (
                row.item.attempts,
                row.item.change,
                row.item.batch_id,
                row.tenant.clone(),
                row.item.domain.clone(),
            );
            let Some(organization) = st.organizations.get(&(tenant.clone(), domain)).cloned()
            else {
                return Err(Error::internal(format!("item {id} has no organization")));
            };
            let trace_parent = st
                .batches
                .get(&batch_id)
                .and_then(|b| b.trace_parent.clone());
            claimed.push(ClaimedItem {
                lease: Lease {
                    item_id: *id,
                    token: r.token,
                },
                batch_id,
                tenant,
                attempt,
                change,
                organization,
                trace_parent,
            });
        }
        Ok(claimed)
    }

    async fn extend_leases(
        &self,
        leases: &[Lease],
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<ItemId>> {
        let mut st = self.lock()?;
        let held = leases.iter().filter_map(|lease| {
            let row = st.leased_mut(lease)?;
            row.item.lease_until = Some(lease_until);
            row.item.updated_at = now;
            Some(lease.item_id)
        });
        Ok(held.collect())
    }

    async fn finish_items(
        &self,
        finishes: &[Finish],
        now: Timestamp,
        stale_after: Duration,
    ) -> Result<Vec<ItemId>> {
        let mut st = self.lock()?;
        let mut applied = Vec::new();
        for finish in finishes {
            let Some(row) = st.leased_mut(&finish.lease) else {
                continue;
            };
            row.token = None;
            row.item.lease_until = None;
            row.item.updated_at = now;
            let attempt = row.item.attempts;
            let org_status = match &finish.resolution {
                Resolution::Completed => {
                    row.item.status = ItemStatus::Completed;
                    row.item.finished_at = Some(now);
                    ItemStatus::Completed
                }
                Resolution::Retry {
                    available_at,
                    error,
                } => {
                    row.item.status = ItemStatus::Pending;
                    row.item.available_at = *available_at;
                    row.sweep_at = after(*available_at, stale_after);
                    row.record_error(AttemptError {
                        attempt,
                        at: now,
                        message: error.clone(),
                        permanent: false,
                    });
                    ItemStatus::Pending
                }
                Resolution::Failed { error, permanent } => {
                    row.item.status = ItemStatus::Failed;
                    row.item.finished_at = Some(now);
                    row.record_error(AttemptError {
                        attempt,
                        at: now,
                        message: error.clone(),
                        permanent: *permanent,
                    });
                    ItemStatus::Failed
                }
            };
            let (tenant, domain) = (row.tenant.clone(), row.item.domain.clone());
            st.set_org_status(&tenant, &domain, org_status);
            applied.push(finish.lease.item_id);
        }
        Ok(applied)
    }

    async fn release_items(&self, leases: &[Lease], now: Timestamp) -> Result<Vec<Job>> {
        let mut st = self.lock()?;
        let mut jobs = Vec::new();
        for lease in leases {
            let Some(row) = st.leased_mut(lease) else {
                continue;
            };
            row.token = None;
            row.item.status = ItemStatus::Pending;
            row.item.lease_until = None;
            row.item.available_at = now;
            row.item.attempts = row.item.attempts.saturating_sub(1);
            row.item.updated_at = now;
            jobs.push(Job {
                item_id: lease.item_id,
                tenant: row.tenant.clone(),
                not_before: None,
            });
            let (tenant, domain) = (row.tenant.clone(), row.item.domain.clone());
            st.set_org_status(&tenant, &domain, ItemStatus::Pending);
        }
        Ok(jobs)
    }

    async fn sweep(
        &self,
        now: Timestamp,
        pending_due: Timestamp,
        stale_after: Duration,
        limit: u32,
    ) -> Result<Vec<Job>> {
        let mut st = self.lock()?;
        let mut jobs = Vec::new();
        for row in st.items.values_mut() {
            if jobs.len() >= limit as usize {
                break;
            }
            let due = match row.item.status {
                ItemStatus::Pending if row.sweep_at <= pending_due => {
                    row.sweep_at = after(now, stale_after);
                    true
                }
                ItemStatus::Processing => row.item.lease_until.is_some_and(|l| l <= now),
                _ => false,
            };
            if due {
                jobs.push(Job {
                    item_id: row.item.id,
                    tenant: row.tenant.clone(),
                    not_before: (row.item.available_at > now).then_some(row.item.available_at),
                });
            }
        }
        Ok(jobs)
    }

    async fn complete_batches(
        &self,
        batches: &[BatchId],
        now: Timestamp,
    ) -> Result<Vec<BatchStatus>> {
        let mut st = self.lock()?;
        Ok(st.complete(batches.iter().copied(), now))
    }

    async fn complete_open_batches(&self, now: Timestamp, limit: u32) -> Result<Vec<BatchStatus>> {
        let mut st = self.lock()?;
        let finished: Vec<BatchId> = st
            .batches
            .values()
            .filter(|b| b.batch.completed_at.is_none())
            .map(|b| b.batch.id)
            .filter(|id| st.status(*id).is_some_and(|s| s.is_finished()))
            .take(limit as usize)
            .collect();
        Ok(st.complete(finished, now))
    }

    async fn unannounced_batches(
        &self,
        completed_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<BatchStatus>> {
        let st = self.lock()?;
        Ok(st
            .batches
            .values()
            .filter(|b| {
                b.batch.announced_at.is_none()
                    && b.batch.completed_at.is_some_and(|c| c <= completed_before)
            })
            .take(limit as usize)
            .filter_map(|b| st.status(b.batch.id))
            .collect())
    }

    async fn mark_announced(&self, batches: &[BatchId], now: Timestamp) -> Result<()> {
        let mut st = self.lock()?;
        for id in batches {
            if let Some(row) = st.batches.get_mut(id) {
                if row.batch.completed_at.is_some() && row.batch.announced_at.is_none() {
                    row.batch.announced_at = Some(now);
                }
            }
        }
        Ok(())
    }

    async fn cancel_batch(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<BatchStatus>> {
        let mut st = self.lock()?;
        let Some(row) = st.tenant_batch(tenant, batch) else {
            return Ok(None);
        };
        let ids = row.items.clone();
        for id in &ids {
            if let Some(item) = st.items.get_mut(id) {
                if item.item.status == ItemStatus::Pending {
                    item.item.status = ItemStatus::Cancelled;
                    item.item.finished_at = Some(now);
                    item.item.updated_at = now;
                    let (tenant, domain) = (item.tenant.clone(), item.item.domain.clone());
                    st.set_org_status(&tenant, &domain, ItemStatus::Cancelled);
                }
            }
        }
        if let Some(row) = st.batches.get_mut(&batch) {
            row.batch.cancelled_at.get_or_insert(now);
        }
        Ok(st.status(batch))
    }

    async fn retry_failed(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        let mut st = self.lock()?;
        let Some(row) = st.tenant_batch(tenant, batch) else {
            return Ok(None);
        };
        let ids = row.items.clone();
        Ok(Some(st.redrive(batch, &ids, now)))
    }

    async fn retry_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        items: &[ItemId],
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        let mut st = self.lock()?;
        if st.tenant_batch(tenant, batch).is_none() {
            return Ok(None);
        }
        let ids: Vec<ItemId> = items
            .iter()
            .filter(|id| st.items.get(id).is_some_and(|i| i.item.batch_id == batch))
            .copied()
            .collect();
        Ok(Some(st.redrive(batch, &ids, now)))
    }

    async fn list_batches(&self, tenant: &TenantId, query: &BatchQuery) -> Result<BatchPage> {
        let st = self.lock()?;
        let limit = query.limit.max(1) as usize;
        let mut ids: Vec<BatchId> = st
            .batches
            .values()
            .map(|row| &row.batch)
            .filter(|b| &b.tenant == tenant)
            .filter(|b| query.state.is_none_or(|s| BatchState::of(b) == s))
            .filter(|b| query.created_after.is_none_or(|t| b.created_at > t))
            .filter(|b| query.before.is_none_or(|before| b.id.0 < before.0))
            .map(|b| b.id)
            .collect();
        ids.sort_unstable_by_key(|b| std::cmp::Reverse(b.0));
        let more = ids.len() > limit;
        ids.truncate(limit);
        let batches: Vec<BatchStatus> = ids.iter().filter_map(|id| st.status(*id)).collect();
        let next_cursor = if more { ids.last().copied() } else { None };
        Ok(BatchPage {
            batches,
            next_cursor,
        })
    }

    async fn batch_status(&self, tenant: &TenantId, batch: BatchId) -> Result<Option<BatchStatus>> {
        let st = self.lock()?;
        Ok(st
            .tenant_batch(tenant, batch)
            .and_then(|b| st.status(b.batch.id)))
    }

    async fn list_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        query: &ItemQuery,
    ) -> Result<Option<ItemPage>> {
        let st = self.lock()?;
        let Some(row) = st.tenant_batch(tenant, batch) else {
            return Ok(None);
        };
        let limit = query.limit.max(1) as usize;
        let mut items: Vec<BatchItem> = row
            .items
            .iter()
            .filter_map(|id| st.items.get(id))
            .map(|r| &r.item)
            .filter(|i| query.after_position.is_none_or(|after| i.position > after))
            .filter(|i| query.status.is_none_or(|s| i.status == s))
            .take(limit + 1)
            .cloned()
            .collect();
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|i| i.position)
        } else {
            None
        };
        Ok(Some(ItemPage { items, next_cursor }))
    }

    async fn throughput(
        &self,
        tenant: &TenantId,
        since: Timestamp,
        bucket_seconds: u32,
    ) -> Result<Vec<ThroughputBucket>> {
        let width = i64::from(bucket_seconds.max(1));
        let st = self.lock()?;
        let mut buckets: std::collections::BTreeMap<i64, ThroughputBucket> = Default::default();
        for row in st.items.values().filter(|r| &r.tenant == tenant) {
            let Some(at) = row.item.finished_at.filter(|at| *at >= since) else {
                continue;
            };
            let start = at.timestamp().div_euclid(width) * width;
            let bucket = buckets.entry(start).or_insert(ThroughputBucket {
                start,
                completed: 0,
                failed: 0,
            });
            match row.item.status {
                ItemStatus::Completed => bucket.completed += 1,
                ItemStatus::Failed => bucket.failed += 1,
                _ => {}
            }
        }
        Ok(buckets
            .into_values()
            .filter(|b| b.completed + b.failed > 0)
            .collect())
    }

    async fn organization_by_domain(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Result<Option<Organization>> {
        Ok(self.lock()?.live_organization(tenant, domain).cloned())
    }

    async fn list_organizations(
        &self,
        tenant: &TenantId,
        query: &OrganizationQuery,
    ) -> Result<OrganizationPage> {
        Ok(self.lock()?.list_organizations(tenant, query))
    }

    async fn organization_versions(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Result<Option<Vec<OrganizationVersion>>> {
        Ok(self.lock()?.versions_of(tenant, domain))
    }

    async fn delete_organization(
        &self,
        tenant: &TenantId,
        domain: &Domain,
        now: Timestamp,
    ) -> Result<bool> {
        Ok(self.lock()?.delete_organization(tenant, domain, now))
    }

    async fn prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64> {
        let mut st = self.lock()?;
        let old: Vec<BatchId> = st
            .batches
            .values()
            .filter(|b| b.batch.completed_at.is_some_and(|c| c < finished_before))
            .take(limit as usize)
            .map(|b| b.batch.id)
            .collect();
        for id in &old {
            if let Some(row) = st.batches.remove(id) {
                for item in &row.items {
                    st.items.remove(item);
                }
                if let Some(key) = row.batch.idempotency_key {
                    st.idempotency.remove(&(row.batch.tenant, key));
                }
            }
        }
        drop(st);
        self.uploads.prune(&old, finished_before)?;
        Ok(old.len() as u64)
    }

    fn imports(&self) -> Option<&dyn crate::import::ImportStore> {
        Some(self)
    }

    async fn ping(&self) -> Result<()> {
        self.lock().map(|_| ())
    }
}
