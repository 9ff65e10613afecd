//! Cases of the batch-level operations: completion, announcement, cancel,
//! re-drive, status, listing, organization lookup and pruning.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::Barrier;

use crate::model::{BatchId, ConflictPolicy, ItemId, ItemStatus, TenantId, Timestamp};
use crate::repository::{ItemQuery, OrgRepository, Resolution};
use crate::testing::fixtures::{self, secs};
use crate::testing::TestBackend;

/// Stores a batch of `n` new organizations and processes it to completion
/// (items completed, batch not yet marked).
async fn finished_batch(repo: &dyn OrgRepository, tenant: &TenantId, n: usize) -> BatchId {
    let submission = fixtures::submission(tenant, n, ConflictPolicy::Update);
    let (batch, items) = fixtures::store(repo, &submission).await;
    fixtures::process(repo, &fixtures::ids(&items), submission.now).await;
    batch.id
}

/// Stores an open batch of `n` new organizations, then a batch that skips
/// them all at `completed_at`, which is therefore completed at store time.
/// Returns (open batch, completed batch).
async fn skipping_batch(
    repo: &dyn OrgRepository,
    tenant: &TenantId,
    n: usize,
    completed_at: Timestamp,
) -> (BatchId, BatchId) {
    let open = fixtures::submission(tenant, n, ConflictPolicy::Update);
    let (open_batch, _) = fixtures::store(repo, &open).await;
    let skip = fixtures::submission_at(
        tenant,
        fixtures::organizations_of(&open),
        ConflictPolicy::Skip,
        completed_at,
    );
    let (done, _) = fixtures::store(repo, &skip).await;
    assert_eq!(
        done.completed_at,
        Some(completed_at),
        "a batch of skipped items is completed at store time"
    );
    (open_batch.id, done.id)
}

/// For each listed batch whose items are all terminal and whose
/// `completed_at` is unset: sets `completed_at = now` and returns its status,
/// once.
pub async fn complete_batches_marks_finished_batches_once(backend: TestBackend) {
    let _shared = fixtures::shared().await;
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let ids = fixtures::ids(&items);
    fixtures::process(repo, &ids[..1], t0).await;
    let unknown = BatchId::new();

    let t1 = t0 + secs(1);
    let none = repo
        .complete_batches(&[batch.id, unknown], t1)
        .await
        .expect("complete_batches failed");
    assert!(
        none.is_empty(),
        "a batch with a pending item is not completed: {none:?}"
    );

    let claimed = fixtures::claim(repo, &ids[1..], t1).await;
    let failed = Resolution::Failed {
        error: "boom".into(),
        permanent: true,
    };
    fixtures::finish(repo, &fixtures::leases(&claimed), failed, t1).await;
    // A batch completed at store time, and one whose items were all cancelled.
    let skipped = fixtures::submission_of(
        &tenant,
        fixtures::organizations_of(&submission),
        ConflictPolicy::Skip,
    );
    let (already, _) = fixtures::store(repo, &skipped).await;
    let cancelled = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let (cancelled, _) = fixtures::store(repo, &cancelled).await;
    repo.cancel_batch(&tenant, cancelled.id, t1)
        .await
        .expect("cancel_batch failed")
        .expect("the batch exists");

    let t2 = t0 + secs(2);
    let done = repo
        .complete_batches(&[batch.id, already.id, cancelled.id, unknown, batch.id], t2)
        .await
        .expect("complete_batches failed");
    let returned: HashSet<BatchId> = done.iter().map(|s| s.batch.id).collect();
    assert_eq!(
        returned,
        HashSet::from([batch.id, cancelled.id]),
        "finished batches without completed_at are completed"
    );
    assert_eq!(done.len(), 2, "a batch listed twice is completed once");
    let status = done
        .iter()
        .find(|s| s.batch.id == batch.id)
        .expect("returned");
    assert_eq!(status.batch.completed_at, Some(t2));
    assert_eq!((status.counts.completed, status.counts.failed), (1, 1));
    assert_eq!(
        fixtures::status(repo, &tenant, batch.id)
            .await
            .batch
            .completed_at,
        Some(t2)
    );

    let again = repo
        .complete_batches(&[batch.id, already.id, cancelled.id], t2 + secs(1))
        .await
        .expect("complete_batches failed");
    assert!(
        again.is_empty(),
        "a completed batch is not completed again: {again:?}"
    );
}

/// `complete_open_batches` completes at most `limit` finished open batches
/// per call, each exactly once (also under concurrent calls), and leaves
/// unfinished ones open.
pub async fn complete_open_batches_completes_each_finished_batch_once(backend: TestBackend) {
    const TASKS: usize = 4;
    let _exclusive = fixtures::exclusive().await;
    let repo = Arc::clone(&backend.repository);
    let tenant = fixtures::tenant();
    let first = finished_batch(&*repo, &tenant, 2).await;
    let second = finished_batch(&*repo, &tenant, 1).await;
    let open = fixtures::store(
        &*repo,
        &fixtures::submission(&tenant, 1, ConflictPolicy::Update),
    )
    .await
    .0
    .id;

    let now = crate::model::now();
    let one = repo
        .complete_open_batches(now, 1)
        .await
        .expect("complete_open_batches failed");
    assert_eq!(
        one.len(),
        1,
        "complete_open_batches(limit 1) with at least two finished open batches completed {}",
        one.len()
    );
    let mut returned: HashMap<BatchId, usize> = HashMap::new();
    for status in &one {
        *returned.entry(status.batch.id).or_default() += 1;
    }
    // The rest, by concurrent calls, until none is left.
    for _ in 0..1000 {
        let barrier = Arc::new(Barrier::new(TASKS));
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let repo = Arc::clone(&repo);
                let barrier = Arc::clone(&barrier);
                tokio::spawn(async move {
                    barrier.wait().await;
                    repo.complete_open_batches(now, 100).await
                })
            })
            .collect();
        let mut done = 0;
        for task in tasks {
            let completed = task
                .await
                .expect("a complete_open_batches task panicked")
                .expect("a concurrent complete_open_batches failed");
            assert!(
                completed.len() <= 100,
                "complete_open_batches exceeded its limit"
            );
            done += completed.len();
            for status in completed {
                *returned.entry(status.batch.id).or_default() += 1;
            }
        }
        if done == 0 {
            break;
        }
    }
    for batch in [first, second] {
        let times = returned.get(&batch).copied().unwrap_or(0);
        assert_eq!(
            times, 1,
            "finished open batch {batch} was completed {times} times"
        );
        let status = fixtures::status(&*repo, &tenant, batch).await;
        assert_eq!(status.batch.completed_at, Some(now));
    }
    assert!(
        !returned.contains_key(&open),
        "an unfinished batch was completed"
    );
    assert_eq!(
        fixtures::status(&*repo, &tenant, open)
            .await
            .batch
            .completed_at,
        None
    );
    fixtures::cancel_quietly(&*repo, &tenant, &[open]).await;
}

/// A batch is returned by at most one call per completion, under
/// concurrency: 8 concurrent calls return each finished batch exactly once.
pub async fn complete_batches_once_under_concurrency(backend: TestBackend) {
    const TASKS: usize = 8;
    let _shared = fixtures::shared().await;
    let repo = Arc::clone(&backend.repository);
    let tenant = fixtures::tenant();
    let mut batches = Vec::new();
    for _ in 0..5 {
        batches.push(finished_batch(&*repo, &tenant, 2).await);
    }
    let now = crate::model::now();
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let repo = Arc::clone(&repo);
            let barrier = Arc::clone(&barrier);
            let batches = batches.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                repo.complete_batches(&batches, now).await
            })
        })
        .collect();
    let mut returned: HashMap<BatchId, usize> = HashMap::new();
    for task in tasks {
        let done = task
            .await
            .expect("a complete_batches task panicked")
            .expect("a concurrent complete_batches failed");
        for status in done {
            *returned.entry(status.batch.id).or_default() += 1;
        }
    }
    for batch in &batches {
        let times = returned.get(batch).copied().unwrap_or(0);
        assert_eq!(
            times, 1,
            "batch {batch} was completed {times} times by concurrent calls"
        );
        let status = fixtures::status(&*repo, &tenant, *batch).await;
        assert_eq!(status.batch.completed_at, Some(now));
    }
}

/// `unannounced_batches` returns batches with `completed_at <=
/// completed_before` and no `announced_at`, at most `limit`.
///
/// Works in the 1990s so that no other case's batch is in its range.
pub async fn unannounced_batches_lists_completed_unannounced(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let t = fixtures::time_in_past(1990);
    let (open, a) = skipping_batch(repo, &tenant, 2, t).await;
    let (open_b, b) = skipping_batch(repo, &tenant, 1, t + secs(1)).await;
    let (open_c, announced) = skipping_batch(repo, &tenant, 1, t + secs(2)).await;
    let (open_d, late) = skipping_batch(repo, &tenant, 1, t + secs(3600)).await;
    repo.mark_announced(&[announced], crate::model::now())
        .await
        .expect("mark_announced failed");

    let listed = repo
        .unannounced_batches(t + secs(10), 1000)
        .await
        .expect("unannounced_batches failed");
    let ids: HashSet<BatchId> = listed.iter().map(|s| s.batch.id).collect();
    assert!(
        ids.contains(&a) && ids.contains(&b),
        "completed, unannounced batches are listed"
    );
    assert!(
        !ids.contains(&announced),
        "an announced batch is not listed"
    );
    assert!(
        !ids.contains(&late),
        "a batch completed after completed_before is not listed"
    );
    for open in [open, open_b, open_c, open_d] {
        assert!(!ids.contains(&open), "an open batch is not listed");
    }
    let status_a = listed.iter().find(|s| s.batch.id == a).expect("listed");
    assert_eq!(status_a.batch.completed_at, Some(t));
    assert_eq!(status_a.batch.announced_at, None);
    assert_eq!((status_a.counts.skipped, status_a.counts.completed), (2, 2));

    let boundary = repo
        .unannounced_batches(t, 1000)
        .await
        .expect("unannounced_batches failed");
    let ids: HashSet<BatchId> = boundary.iter().map(|s| s.batch.id).collect();
    assert!(
        ids.contains(&a),
        "completed_at == completed_before is listed"
    );
    assert!(
        !ids.contains(&b),
        "completed_at > completed_before is not listed"
    );

    let one = repo
        .unannounced_batches(t + secs(10), 1)
        .await
        .expect("unannounced_batches failed");
    assert!(one.len() <= 1, "limit 1 returned {} batches", one.len());

    repo.mark_announced(&[a, b, late], crate::model::now())
        .await
        .expect("mark_announced failed");
    fixtures::cancel_quietly(repo, &tenant, &[open, open_b, open_c, open_d]).await;
}

/// `mark_announced` sets `announced_at = now` on the listed batches that
/// are completed, and only on those.
pub async fn mark_announced_sets_announced_at_on_completed_batches(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let t = fixtures::time_in_past(1990);
    let (open, done) = skipping_batch(repo, &tenant, 2, t).await;

    let now = crate::model::now();
    repo.mark_announced(&[done, open, BatchId::new()], now)
        .await
        .expect("mark_announced with an open and an unknown batch failed");
    assert_eq!(
        fixtures::status(repo, &tenant, done)
            .await
            .batch
            .announced_at,
        Some(now)
    );
    assert_eq!(
        fixtures::status(repo, &tenant, open)
            .await
            .batch
            .announced_at,
        None,
        "an open batch is not marked announced"
    );
    let listed = repo
        .unannounced_batches(t + secs(1), 1000)
        .await
        .expect("unannounced_batches failed");
    assert!(
        listed.iter().all(|s| s.batch.id != done),
        "an announced batch is no longer unannounced"
    );
    fixtures::cancel_quietly(repo, &tenant, &[open]).await;
}

/// `cancel_batch` answers `None` when the batch does not exist for this
/// tenant, and changes nothing.
pub async fn cancel_batch_of_unknown_or_foreign_batch_is_none(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let (batch, _) = fixtures::store(
        repo,
        &fixtures::submission(&tenant, 2, ConflictPolicy::Update),
    )
    .await;
    let now = crate::model::now();
    let foreign = repo
        .cancel_batch(&fixtures::tenant(), batch.id, now)
        .await
        .expect("cancel_batch failed");
    assert!(
        foreign.is_none(),
        "another tenant's batch is not found: {foreign:?}"
    );
    let unknown = repo
        .cancel_batch(&tenant, BatchId::new(), now)
        .await
        .expect("cancel_batch failed");
    assert!(unknown.is_none());
    let status = fixtures::status(repo, &tenant, batch.id).await;
    assert_eq!((status.counts.pending, status.counts.cancelled), (2, 0));
    assert_eq!(status.batch.cancelled_at, None);
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// `cancel_batch` makes `Pending` items `Cancelled`, lets processing ones
/// finish normally, sets `cancelled_at` once and returns the status after
/// the change.
pub async fn cancel_batch_cancels_pending_items(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 4, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let ids = fixtures::ids(&items);
    let held = fixtures::claim(repo, &ids[..1], t0).await;
    fixtures::process(repo, &ids[1..2], t0).await;
    // Item 3 waits for a retry in the future: still pending.
    let retrying = fixtures::claim(repo, &ids[3..], t0).await;
    let retry = Resolution::Retry {
        available_at: t0 + secs(600),
        error: "later".into(),
    };
    fixtures::finish(repo, &fixtures::leases(&retrying), retry, t0).await;

    let t1 = t0 + secs(1);
    let status = repo
        .cancel_batch(&tenant, batch.id, t1)
        .await
        .expect("cancel_batch failed")
        .expect("the batch exists for its tenant");
    assert_eq!(status.batch.cancelled_at, Some(t1));
    let c = status.counts;
    assert_eq!(
        (c.pending, c.processing, c.completed, c.cancelled),
        (0, 1, 1, 2),
        "pending items are cancelled, others untouched"
    );
    for &id in &ids[2..] {
        let listed = fixtures::item(repo, &tenant, batch.id, id).await;
        assert_eq!(listed.status, ItemStatus::Cancelled);
    }
    let again = repo
        .cancel_batch(&tenant, batch.id, t1 + secs(5))
        .await
        .expect("cancel_batch failed")
        .expect("the batch exists for its tenant");
    assert_eq!(
        again.batch.cancelled_at,
        Some(t1),
        "cancelled_at is set once"
    );
    assert_eq!(again.counts, status.counts);

    let reclaimed = repo
        .claim_items(&fixtures::claim_request(&ids[2..], t0 + secs(601)))
        .await
        .expect("claim_items failed");
    assert!(reclaimed.is_empty(), "a cancelled item is not claimable");
    let applied = fixtures::finish(repo, &fixtures::leases(&held), Resolution::Completed, t1).await;
    assert_eq!(
        applied,
        ids[..1].to_vec(),
        "a processing item finishes normally"
    );
    let c = fixtures::status(repo, &tenant, batch.id).await.counts;
    assert_eq!(
        (c.pending, c.processing, c.completed, c.cancelled),
        (0, 0, 2, 2)
    );
}

/// `retry_failed` answers `None` when the batch does not exist for this
/// tenant, and changes nothing.
pub async fn retry_failed_of_unknown_or_foreign_batch_is_none(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 1, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let claimed = fixtures::claim(repo, &fixtures::ids(&items), t0).await;
    let failed = Resolution::Failed {
        error: "boom".into(),
        permanent: true,
    };
    fixtures::finish(repo, &fixtures::leases(&claimed), failed, t0).await;

    let foreign = repo
        .retry_failed(&fixtures::tenant(), batch.id, t0 + secs(1))
        .await
        .expect("retry_failed failed");
    assert!(
        foreign.is_none(),
        "another tenant's batch is not found: {foreign:?}"
    );
    let unknown = repo
        .retry_failed(&tenant, BatchId::new(), t0 + secs(1))
        .await
        .expect("retry_failed failed");
    assert!(unknown.is_none());
    let listed = fixtures::item(repo, &tenant, batch.id, items[0].item_id).await;
    assert_eq!(
        listed.status,
        ItemStatus::Failed,
        "a foreign re-drive changes nothing"
    );
}

/// `retry_failed` makes `Failed` items `Pending`, available at `now`,
/// attempts 0, error history kept; clears the batch's `completed_at` and
/// `announced_at` when any item was re-driven; returns jobs to enqueue.
pub async fn retry_failed_redrives_failed_items(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 3, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let ids = fixtures::ids(&items);
    let failed = |error: &str| Resolution::Failed {
        error: error.into(),
        permanent: true,
    };
    // Item 0 fails at once; item 1 after a retry; item 2 completes.
    let c = fixtures::claim(repo, &ids[..2], t0).await;
    let lease_of = |id: ItemId| {
        c.iter()
            .find(|c| c.lease.item_id == id)
            .map(|c| c.lease)
            .expect("claimed")
    };
    fixtures::finish(repo, &[lease_of(ids[0])], failed("first"), t0).await;
    let retry = Resolution::Retry {
        available_at: t0,
        error: "transient".into(),
    };
    fixtures::finish(repo, &[lease_of(ids[1])], retry, t0).await;
    let c = fixtures::claim(repo, &ids[1..2], t0 + secs(1)).await;
    fixtures::finish(repo, &fixtures::leases(&c), failed("second"), t0 + secs(1)).await;
    fixtures::process(repo, &ids[2..], t0 + secs(1)).await;

    let t2 = t0 + secs(2);
    repo.complete_batches(&[batch.id], t2)
        .await
        .expect("complete_batches failed");
    repo.mark_announced(&[batch.id], t2)
        .await
        .expect("mark_announced failed");
    let before = fixtures::status(repo, &tenant, batch.id).await;
    assert!(before.batch.completed_at.is_some() && before.batch.announced_at.is_some());

    let t3 = t0 + secs(3);
    let jobs = repo
        .retry_failed(&tenant, batch.id, t3)
        .await
        .expect("retry_failed failed")
        .expect("the batch exists for its tenant");
    let job_ids: HashSet<ItemId> = jobs.iter().map(|j| j.item_id).collect();
    assert_eq!(
        job_ids,
        HashSet::from([ids[0], ids[1]]),
        "one job per re-driven item"
    );
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.tenant == tenant));
    for (id, history) in [(ids[0], 1), (ids[1], 2)] {
        let listed = fixtures::item(repo, &tenant, batch.id, id).await;
        assert_eq!(listed.status, ItemStatus::Pending);
        assert_eq!(listed.available_at, t3);
        assert_eq!(
            listed.attempts, 0,
            "a re-driven item starts again at attempt 0"
        );
        assert_eq!(listed.errors.len(), history, "the error history is kept");
    }
    let kept = fixtures::item(repo, &tenant, batch.id, ids[2]).await;
    assert_eq!(kept.status, ItemStatus::Completed);
    let after = fixtures::status(repo, &tenant, batch.id).await;
    assert_eq!(
        after.batch.completed_at, None,
        "a re-drive reopens the batch"
    );
    assert_eq!(
        after.batch.announced_at, None,
        "a re-drive clears announced_at"
    );
    assert_eq!(
        (
            after.counts.pending,
            after.counts.completed,
            after.counts.failed
        ),
        (2, 1, 0)
    );
    let c = fixtures::claim(repo, &ids[..1], t3).await;
    assert_eq!(c[0].attempt, 1);
    fixtures::finish(repo, &fixtures::leases(&c), Resolution::Completed, t3).await;

    // Nothing to re-drive: Some(no jobs), the batch stays completed.
    let clean = finished_batch(repo, &tenant, 1).await;
    repo.complete_batches(&[clean], t3)
        .await
        .expect("complete_batches failed");
    let completed_at = fixtures::status(repo, &tenant, clean)
        .await
        .batch
        .completed_at;
    assert!(completed_at.is_some());
    let jobs = repo
        .retry_failed(&tenant, clean, t3)
        .await
        .expect("retry_failed failed")
        .expect("the batch exists for its tenant");
    assert!(jobs.is_empty(), "no failed item, no job: {jobs:?}");
    assert_eq!(
        fixtures::status(repo, &tenant, clean)
            .await
            .batch
            .completed_at,
        completed_at,
        "a re-drive of nothing keeps completed_at"
    );
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// `batch_status` counts every status and change exactly.
pub async fn batch_status_counts_exactly(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let first = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let t0 = first.now;
    let (first_batch, first_items) = fixtures::store(repo, &first).await;
    fixtures::process(repo, &fixtures::ids(&first_items), t0).await;
    let known = fixtures::organizations_of(&first);

    // d0 updated (pending), d1 unchanged (completed at store), d2-d5 created.
    let mut orgs = vec![fixtures::renamed(&known[0]), known[1].clone()];
    orgs.extend((0..4).map(|_| fixtures::organization(&fixtures::domain())));
    let t1 = t0 + secs(1);
    let second = fixtures::submission_at(&tenant, orgs, ConflictPolicy::Update, t1);
    let (batch, items) = fixtures::store(repo, &second).await;
    let ids = fixtures::ids(&items);
    let _processing = fixtures::claim(repo, &ids[2..3], t1).await;
    let failing = fixtures::claim(repo, &ids[3..4], t1).await;
    let failed = Resolution::Failed {
        error: "boom".into(),
        permanent: true,
    };
    fixtures::finish(repo, &fixtures::leases(&failing), failed, t1).await;
    fixtures::process(repo, &ids[4..5], t1).await;

    let status = fixtures::status(repo, &tenant, batch.id).await;
    assert_eq!(status.batch.id, batch.id);
    assert_eq!(status.batch.total, 6);
    let c = status.counts;
    assert_eq!(
        (c.pending, c.processing, c.completed, c.failed, c.cancelled),
        (2, 1, 2, 1, 0),
        "status counts (pending, processing, completed, failed, cancelled)"
    );
    assert_eq!(
        (c.created, c.updated, c.unchanged, c.skipped),
        (4, 1, 1, 0),
        "change counts (created, updated, unchanged, skipped)"
    );

    repo.cancel_batch(&tenant, batch.id, t1 + secs(1))
        .await
        .expect("cancel_batch failed");
    let c = fixtures::status(repo, &tenant, batch.id).await.counts;
    assert_eq!(
        (c.pending, c.processing, c.completed, c.failed, c.cancelled),
        (0, 1, 2, 1, 2),
        "status counts after cancel"
    );
    fixtures::cancel_quietly(repo, &tenant, &[first_batch.id]).await;
}

/// `batch_status` answers `None` when the batch does not exist or belongs
/// to another tenant.
pub async fn batch_status_of_unknown_or_foreign_batch_is_none(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let (batch, _) = fixtures::store(
        repo,
        &fixtures::submission(&tenant, 1, ConflictPolicy::Update),
    )
    .await;
    let foreign = repo
        .batch_status(&fixtures::tenant(), batch.id)
        .await
        .expect("batch_status failed");
    assert!(
        foreign.is_none(),
        "another tenant's batch is not found: {foreign:?}"
    );
    let unknown = repo
        .batch_status(&tenant, BatchId::new())
        .await
        .expect("batch_status failed");
    assert!(unknown.is_none());
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// `list_items` answers `None` when the batch does not exist for this tenant.
pub async fn list_items_of_unknown_or_foreign_batch_is_none(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let (batch, _) = fixtures::store(
        repo,
        &fixtures::submission(&tenant, 1, ConflictPolicy::Update),
    )
    .await;
    let query = ItemQuery {
        status: None,
        limit: 10,
        after_position: None,
    };
    let foreign = repo
        .list_items(&fixtures::tenant(), batch.id, &query)
        .await
        .expect("list_items failed");
    assert!(
        foreign.is_none(),
        "another tenant's batch is not found: {foreign:?}"
    );
    let unknown = repo
        .list_items(&tenant, BatchId::new(), &query)
        .await
        .expect("list_items failed");
    assert!(unknown.is_none());
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// Pages through one status filter; asserts pages are ordered, within the
/// limit, and returns the positions.
async fn positions_of(
    repo: &dyn OrgRepository,
    tenant: &TenantId,
    batch: BatchId,
    status: Option<ItemStatus>,
    limit: u32,
    after_position: Option<u32>,
) -> Vec<u32> {
    let mut positions = Vec::new();
    let mut after = after_position;
    for _ in 0..100 {
        let query = ItemQuery {
            status,
            limit,
            after_position: after,
        };
        let page = repo
            .list_items(tenant, batch, &query)
            .await
            .expect("list_items failed")
            .expect("the batch exists for its tenant");
        assert!(
            page.items.len() <= limit as usize,
            "a page is longer than its limit"
        );
        for item in &page.items {
            if let Some(status) = status {
                assert_eq!(item.status, status, "the status filter is applied");
            }
            positions.push(item.position);
        }
        match page.next_cursor {
            None => return positions,
            Some(cursor) => after = Some(cursor),
        }
    }
    panic!("list_items did not reach its last page in 100 pages");
}

/// Filters by status; pages (ordered by position, chained by
/// `next_cursor`) never repeat or skip an item.
pub async fn list_items_pages_without_repeats_or_gaps(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let mut submission = fixtures::submission(&tenant, 25, ConflictPolicy::Update);
    for (i, (position, _)) in submission.organizations.iter_mut().enumerate() {
        *position = u32::try_from(i * 3).expect("small position");
    }
    let (batch, items) = fixtures::store(repo, &submission).await;
    // Every third item is processing.
    let processing: Vec<_> = items.iter().step_by(3).map(|i| i.item_id).collect();
    fixtures::claim(repo, &processing, submission.now).await;

    let all: Vec<u32> = items.iter().map(|i| i.position).collect();
    let (expected_processing, expected_pending): (Vec<u32>, Vec<u32>) =
        all.iter().partition(|&&p| p % 9 == 0);
    assert_eq!(
        positions_of(repo, &tenant, batch.id, None, 7, None).await,
        all,
        "unfiltered pages list every item once, by position"
    );
    assert_eq!(
        positions_of(repo, &tenant, batch.id, Some(ItemStatus::Pending), 4, None).await,
        expected_pending,
        "pending pages list every pending item once, by position"
    );
    assert_eq!(
        positions_of(
            repo,
            &tenant,
            batch.id,
            Some(ItemStatus::Processing),
            2,
            None
        )
        .await,
        expected_processing,
        "processing pages list every processing item once, by position"
    );
    assert_eq!(
        positions_of(repo, &tenant, batch.id, Some(ItemStatus::Failed), 5, None).await,
        Vec::<u32>::new(),
        "a filter matching nothing gives one empty last page"
    );
    let after: Vec<u32> = all.iter().copied().filter(|&p| p > 31).collect();
    assert_eq!(
        positions_of(repo, &tenant, batch.id, None, 5, Some(31)).await,
        after,
        "after_position between two positions starts at the next one"
    );

    let query = ItemQuery {
        status: None,
        limit: 100,
        after_position: None,
    };
    let page = repo
        .list_items(&tenant, batch.id, &query)
        .await
        .expect("list_items failed")
        .expect("the batch exists");
    assert_eq!(page.items.len(), 25);
    assert_eq!(
        page.next_cursor, None,
        "a page holding the rest is the last page"
    );
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// `organization_by_domain` returns the stored row of a normalized domain,
/// or `None`.
pub async fn organization_by_domain_finds_stored_rows(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let (batch, items) = fixtures::store(repo, &submission).await;
    for (item, (_, org)) in items.iter().zip(&submission.organizations) {
        let found = repo
            .organization_by_domain(&tenant, &org.domain)
            .await
            .expect("organization_by_domain failed")
            .expect("a stored domain is found");
        assert_eq!(found.id, item.organization_id);
        assert_eq!(found.domain, org.domain);
        assert_eq!(found.name, org.name);
        assert_eq!(found.contact_email, org.contact_email);
        assert_eq!(found.version, 1);
        assert_eq!(found.status, ItemStatus::Pending);
        assert_eq!(
            (found.created_at, found.updated_at),
            (submission.now, submission.now)
        );
        assert_eq!(found.deleted_at, None);
    }
    let missing = repo
        .organization_by_domain(&tenant, &fixtures::domain())
        .await
        .expect("organization_by_domain failed");
    assert!(missing.is_none(), "an unknown domain is None: {missing:?}");
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// `prune` deletes batches (and items) completed before `finished_before`;
/// open batches and organizations are never deleted; it returns how many
/// batches went.
///
/// Works in the 1980s so that no other case's batch is in its range.
pub async fn prune_deletes_only_batches_completed_before(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let t = fixtures::time_in_past(1980);
    let (open_now, old_a) = skipping_batch(repo, &tenant, 2, t).await;
    let (open_now_b, old_b) = skipping_batch(repo, &tenant, 1, t + secs(1)).await;
    let (open_now_c, recent) = skipping_batch(repo, &tenant, 1, t + secs(3600)).await;
    // An open batch created long before the cutoff.
    let old_open = fixtures::submission_at(
        &tenant,
        vec![fixtures::organization(&fixtures::domain())],
        ConflictPolicy::Update,
        t - secs(86_400),
    );
    let (old_open_batch, _) = fixtures::store(repo, &old_open).await;
    let mut domains = Vec::new();
    for batch in [old_a, old_b] {
        for item in fixtures::all_items(repo, &tenant, batch).await {
            domains.push(item.domain);
        }
    }
    domains.extend(old_open.organizations.iter().map(|(_, o)| o.domain.clone()));

    let cutoff = t + secs(2);
    let first = repo.prune(cutoff, 1).await.expect("prune failed");
    assert!(first <= 1, "prune with limit 1 deleted {first} batches");
    let rest = repo.prune(cutoff, 1000).await.expect("prune failed");
    assert!(
        first + rest >= 2,
        "prune reported {} deleted batches, at least 2 were due",
        first + rest
    );
    for old in [old_a, old_b] {
        let status = repo
            .batch_status(&tenant, old)
            .await
            .expect("batch_status failed");
        assert!(
            status.is_none(),
            "a batch completed before the cutoff is pruned"
        );
        let query = ItemQuery {
            status: None,
            limit: 10,
            after_position: None,
        };
        let page = repo
            .list_items(&tenant, old, &query)
            .await
            .expect("list_items failed");
        assert!(page.is_none(), "a pruned batch's items are gone");
    }
    fixtures::status(repo, &tenant, recent).await;
    let open = fixtures::status(repo, &tenant, old_open_batch.id).await;
    assert_eq!(open.counts.pending, 1, "an open batch is never pruned");
    for b in [open_now, open_now_b, open_now_c] {
        fixtures::status(repo, &tenant, b).await;
    }
    for domain in &domains {
        fixtures::stored_organization(repo, &tenant, domain).await;
    }

    // Clean up: nothing of this case stays in its range.
    fixtures::cancel_quietly(
        repo,
        &tenant,
        &[open_now, open_now_b, open_now_c, old_open_batch.id],
    )
    .await;
    repo.prune(t + secs(7200), 1000)
        .await
        .expect("prune failed");
}

/// `ping` answers when the backend is up.
pub async fn repository_ping_answers(backend: TestBackend) {
    backend
        .repository
        .ping()
        .await
        .expect("ping of a running repository failed");
    assert_eq!(
        backend.repository.degraded(),
        None,
        "a repository with no replica is never degraded"
    );
}
