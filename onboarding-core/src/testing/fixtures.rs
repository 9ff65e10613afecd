//! Builders and helpers for conformance cases (and for backends' own tests).
//!
//! Everything here isolates by namespace: a random tenant, random domains,
//! random cache keys. Nothing is ever flushed.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{TimeDelta, TimeZone, Utc};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use uuid::Uuid;

use crate::model::{
    Batch, BatchId, BatchItem, BatchStatus, ConflictPolicy, Domain, ItemId, LeaseToken,
    NewOrganization, Organization, SubmitMode, TenantId, Timestamp,
};
use crate::queue::{Delivery, Job, JobQueue};
use crate::repository::{
    ClaimRequest, ClaimedItem, Finish, ItemPage, ItemQuery, Lease, OrgRepository, Resolution,
    StoreResult, StoredItem, Submission,
};

/// Lease length the cases give their claims.
pub const LEASE: Duration = Duration::from_secs(30);

/// `stale_after` the cases pass to `finish_items` and `sweep`.
pub const STALE_AFTER: Duration = Duration::from_secs(60);

/// How long after `now` a fresh submission's pending items become sweepable.
pub const SWEEP_DELAY: Duration = Duration::from_secs(60);

/// Chunk size of the submissions built here.
pub const CHUNK_SIZE: usize = 500;

/// A random tenant, `t-<32 hex digits>`.
pub fn tenant() -> TenantId {
    TenantId::parse(format!("t-{}", Uuid::new_v4().simple()))
        .expect("a generated tenant id is valid")
}

/// A random, already normalized domain, `<32 hex digits>.example.com`.
pub fn domain() -> Domain {
    Domain::from_normalized(format!("{}.example.com", Uuid::new_v4().simple()))
}

/// An organization for `domain` with a name and contact derived from it.
pub fn organization(domain: &Domain) -> NewOrganization {
    NewOrganization {
        name: format!("Organization {domain}"),
        domain: domain.clone(),
        contact_email: format!("admin@{domain}"),
    }
}

/// The same organization with another name (an `Updated` change).
pub fn renamed(organization: &NewOrganization) -> NewOrganization {
    NewOrganization {
        name: format!(
            "{} (renamed {})",
            organization.name,
            Uuid::new_v4().simple()
        ),
        ..organization.clone()
    }
}

/// A random SHA-256-like hex string (64 digits).
pub fn request_hash() -> String {
    format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())
}

/// A submission of `n` new organizations with random domains, at positions
/// `0..n`, submitted at [`crate::model::now`], sweepable [`SWEEP_DELAY`]
/// later, no idempotency key, a random request hash.
pub fn submission(tenant: &TenantId, n: usize, policy: ConflictPolicy) -> Submission {
    let organizations = (0..n).map(|_| organization(&domain())).collect();
    submission_of(tenant, organizations, policy)
}

/// A submission of the given organizations at positions `0..`, otherwise as
/// [`submission`].
pub fn submission_of(
    tenant: &TenantId,
    organizations: Vec<NewOrganization>,
    policy: ConflictPolicy,
) -> Submission {
    submission_at(tenant, organizations, policy, crate::model::now())
}

/// A submission of the given organizations made at `now`, otherwise as
/// [`submission`].
pub fn submission_at(
    tenant: &TenantId,
    organizations: Vec<NewOrganization>,
    policy: ConflictPolicy,
    now: Timestamp,
) -> Submission {
    Submission {
        batch_id: BatchId::new(),
        tenant: tenant.clone(),
        idempotency_key: None,
        request_hash: request_hash(),
        policy,
        mode: SubmitMode::Atomic,
        organizations: (0u32..).zip(organizations).collect(),
        chunk_size: CHUNK_SIZE,
        reprocess_unchanged: false,
        now,
        sweep_at: now + delta(SWEEP_DELAY),
        trace_parent: None,
    }
}

/// The organizations of a submission, without positions.
pub fn organizations_of(submission: &Submission) -> Vec<NewOrganization> {
    submission
        .organizations
        .iter()
        .map(|(_, o)| o.clone())
        .collect()
}

/// `n` seconds as a [`TimeDelta`], to move a `now` forward.
pub fn secs(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

/// A std [`Duration`] as a [`TimeDelta`].
pub fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).expect("a test duration fits in a TimeDelta")
}

/// A random second of the five years starting on 1 January of `year`, for
/// cases that must not meet other cases' batches in time (pruning, announcing).
pub fn time_in_past(year: i32) -> Timestamp {
    let start = Utc
        .with_ymd_and_hms(year, 1, 1, 0, 0, 0)
        .single()
        .expect("1 January is a valid date");
    let offset = rand::random_range(0..5 * 365 * 24 * 3600);
    start + secs(offset)
}

/// Stores `submission`, expecting [`StoreResult::Stored`].
///
/// # Panics
///
/// When the store fails or answers anything else.
pub async fn store(
    repository: &dyn OrgRepository,
    submission: &Submission,
) -> (Batch, Vec<StoredItem>) {
    match repository
        .store_submission(submission)
        .await
        .expect("store_submission failed")
    {
        StoreResult::Stored { batch, items } => (batch, items),
        other => panic!("store_submission of a new batch answered {other:?} instead of Stored"),
    }
}

/// The ids of stored items.
pub fn ids(items: &[StoredItem]) -> Vec<ItemId> {
    items.iter().map(|i| i.item_id).collect()
}

/// The leases of claimed items.
pub fn leases(claimed: &[ClaimedItem]) -> Vec<Lease> {
    claimed.iter().map(|c| c.lease).collect()
}

/// A claim of `item_ids` with a new token, at `now`, for [`LEASE`].
pub fn claim_request(item_ids: &[ItemId], now: Timestamp) -> ClaimRequest {
    ClaimRequest {
        item_ids: item_ids.to_vec(),
        token: LeaseToken::new(),
        now,
        lease_until: now + delta(LEASE),
    }
}

/// Claims `item_ids` at `now` with a new token, expecting every one of them.
///
/// # Panics
///
/// When the claim fails or leaves an item out.
pub async fn claim(
    repository: &dyn OrgRepository,
    item_ids: &[ItemId],
    now: Timestamp,
) -> Vec<ClaimedItem> {
    let claimed = repository
        .claim_items(&claim_request(item_ids, now))
        .await
        .expect("claim_items failed");
    let got: HashSet<ItemId> = claimed.iter().map(|c| c.lease.item_id).collect();
    let wanted: HashSet<ItemId> = item_ids.iter().copied().collect();
    assert_eq!(
        got, wanted,
        "claim_items did not claim every claimable item"
    );
    claimed
}

/// Ends the attempts of `leases` at `now` with `resolution`, returning the applied ids.
///
/// # Panics
///
/// When `finish_items` fails.
pub async fn finish(
    repository: &dyn OrgRepository,
    leases: &[Lease],
    resolution: Resolution,
    now: Timestamp,
) -> Vec<ItemId> {
    let finishes: Vec<Finish> = leases
        .iter()
        .map(|&lease| Finish {
            lease,
            resolution: resolution.clone(),
        })
        .collect();
    repository
        .finish_items(&finishes, now, STALE_AFTER)
        .await
        .expect("finish_items failed")
}

/// Claims `item_ids` and finishes them `Completed`, at `now`.
///
/// # Panics
///
/// When an item cannot be claimed or finished.
pub async fn process(repository: &dyn OrgRepository, item_ids: &[ItemId], now: Timestamp) {
    let claimed = claim(repository, item_ids, now).await;
    let applied = finish(repository, &leases(&claimed), Resolution::Completed, now).await;
    assert_eq!(
        applied.len(),
        item_ids.len(),
        "finish_items(Completed) did not apply to every freshly claimed item"
    );
}

/// The status of a batch that must exist for `tenant`.
///
/// # Panics
///
/// When `batch_status` fails or answers `None`.
pub async fn status(
    repository: &dyn OrgRepository,
    tenant: &TenantId,
    batch: BatchId,
) -> BatchStatus {
    repository
        .batch_status(tenant, batch)
        .await
        .expect("batch_status failed")
        .unwrap_or_else(|| panic!("batch_status({batch}) is None for its own tenant"))
}

/// Waits until the status of `batch` satisfies `done` (`what` it waits for,
/// for the failure message) and returns it.
///
/// # Panics
///
/// When `within` passes first (naming the last counts seen), or when
/// `batch_status` fails or answers `None`.
pub async fn until_batch(
    repository: &dyn OrgRepository,
    tenant: &TenantId,
    batch: BatchId,
    what: &str,
    within: Duration,
    done: impl Fn(&BatchStatus) -> bool,
) -> BatchStatus {
    super::eventually(what, within, || async {
        let status = self::status(repository, tenant, batch).await;
        if done(&status) {
            Ok(status)
        } else {
            Err(status.counts)
        }
    })
    .await
}

/// One page of a batch's items of any status, by position, after `after_position`.
///
/// # Panics
///
/// When `list_items` fails or answers `None`.
pub async fn items_page(
    repository: &dyn OrgRepository,
    tenant: &TenantId,
    batch: BatchId,
    after_position: Option<u32>,
    limit: u32,
) -> ItemPage {
    let query = ItemQuery {
        status: None,
        limit,
        after_position,
    };
    repository
        .list_items(tenant, batch, &query)
        .await
        .expect("list_items failed")
        .unwrap_or_else(|| panic!("list_items({batch}) is None for its own tenant"))
}

/// Every item of a batch, by position (pages of 100).
///
/// # Panics
///
/// When `list_items` fails, answers `None`, or pages do not advance.
pub async fn all_items(
    repository: &dyn OrgRepository,
    tenant: &TenantId,
    batch: BatchId,
) -> Vec<BatchItem> {
    let mut items = Vec::new();
    let mut after_position = None;
    for _ in 0..10_000 {
        let page = items_page(repository, tenant, batch, after_position, 100).await;
        items.extend(page.items);
        match page.next_cursor {
            None => return items,
            Some(cursor) => {
                assert_ne!(
                    after_position,
                    Some(cursor),
                    "list_items cursor did not advance"
                );
                after_position = Some(cursor);
            }
        }
    }
    panic!("list_items of batch {batch} did not reach its last page");
}

/// One item of a batch.
///
/// # Panics
///
/// When the item is not listed.
pub async fn item(
    repository: &dyn OrgRepository,
    tenant: &TenantId,
    batch: BatchId,
    item_id: ItemId,
) -> BatchItem {
    all_items(repository, tenant, batch)
        .await
        .into_iter()
        .find(|i| i.id == item_id)
        .unwrap_or_else(|| panic!("item {item_id} is not listed in its batch {batch}"))
}

/// The stored organization of `domain`, which must exist.
///
/// # Panics
///
/// When `organization_by_domain` fails or answers `None`.
pub async fn stored_organization(
    repository: &dyn OrgRepository,
    tenant: &TenantId,
    domain: &Domain,
) -> Organization {
    repository
        .organization_by_domain(tenant, domain)
        .await
        .expect("organization_by_domain failed")
        .unwrap_or_else(|| panic!("no organization stored for {domain}"))
}

/// Cancels batches at the end of a case so that their pending items stay out
/// of later sweeps (clean-up; errors are ignored).
pub async fn cancel_quietly(
    repository: &dyn OrgRepository,
    tenant: &TenantId,
    batches: &[BatchId],
) {
    for &batch in batches {
        let _ = repository
            .cancel_batch(tenant, batch, crate::model::now())
            .await;
    }
}

/// Every job `sweep` hands out at `now`, calling it again until a call
/// returns fewer than `limit` jobs or nothing it had not returned before
/// (expired leases come back on every call; pending items once).
///
/// # Panics
///
/// When `sweep` fails or returns more than `limit` jobs.
pub async fn sweep_all(repository: &dyn OrgRepository, now: Timestamp, limit: u32) -> Vec<Job> {
    sweep_all_due(repository, now, now, limit).await
}

/// Like [`sweep_all`], with pending items due when `sweep_at <= pending_due`.
///
/// # Panics
///
/// When `sweep` fails or returns more than `limit` jobs.
pub async fn sweep_all_due(
    repository: &dyn OrgRepository,
    now: Timestamp,
    pending_due: Timestamp,
    limit: u32,
) -> Vec<Job> {
    let mut all = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..1_000 {
        let jobs = repository
            .sweep(now, pending_due, STALE_AFTER, limit)
            .await
            .expect("sweep failed");
        assert!(
            jobs.len() <= limit as usize,
            "sweep returned {} jobs with limit {limit}",
            jobs.len()
        );
        let complete = jobs.len() < limit as usize;
        let mut new = false;
        for job in &jobs {
            new |= seen.insert(job.item_id);
        }
        all.extend(jobs);
        if complete || !new {
            return all;
        }
    }
    panic!("sweep kept returning new jobs after 1000 calls");
}

/// How many of `jobs` are for `item_id`.
pub fn count_jobs(jobs: &[Job], item_id: ItemId) -> usize {
    jobs.iter().filter(|j| j.item_id == item_id).count()
}

/// A job for a random item of `tenant`, ready now.
pub fn job(tenant: &TenantId) -> Job {
    Job {
        item_id: ItemId::new(),
        tenant: tenant.clone(),
        not_before: None,
    }
}

/// Enqueues `n` ready jobs of `tenant` for items nobody stored: a backlog
/// that came from elsewhere.
///
/// # Panics
///
/// When `enqueue` fails.
pub async fn fill_queue(queue: &dyn JobQueue, tenant: &TenantId, n: usize) -> Vec<Job> {
    let jobs: Vec<Job> = (0..n).map(|_| job(tenant)).collect();
    queue.enqueue(&jobs).await.expect("enqueue failed");
    jobs
}

/// Dequeues until `n` deliveries arrived or `deadline` passed.
///
/// # Panics
///
/// When `dequeue` fails or returns more than asked.
pub async fn dequeue_n(queue: &dyn JobQueue, n: usize, deadline: Duration) -> Vec<Delivery> {
    let start = tokio::time::Instant::now();
    let mut got = Vec::new();
    while got.len() < n && start.elapsed() < deadline {
        let max = n - got.len();
        let wait = deadline
            .saturating_sub(start.elapsed())
            .min(Duration::from_secs(1));
        let batch = queue.dequeue(max, wait).await.expect("dequeue failed");
        assert!(
            batch.len() <= max,
            "dequeue returned {} deliveries with max {max}",
            batch.len()
        );
        got.extend(batch);
    }
    got
}

/// A random cache key, `conformance:<32 hex digits>:<name>`.
pub fn cache_key(name: &str) -> String {
    format!("conformance:{}:{name}", Uuid::new_v4().simple())
}

/// Serializes, within one process, the cases that call repository
/// operations acting on every tenant (`sweep`, `complete_open_batches`)
/// against the cases whose assertions those operations would disturb.
static GLOBAL: RwLock<()> = RwLock::const_new(());

/// Held by a case that calls an operation acting on every tenant.
pub(crate) async fn exclusive() -> RwLockWriteGuard<'static, ()> {
    GLOBAL.write().await
}

/// Held by a case that an operation acting on every tenant would disturb.
pub(crate) async fn shared() -> RwLockReadGuard<'static, ()> {
    GLOBAL.read().await
}
