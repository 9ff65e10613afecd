//! Cases of the tenant-wide batch listing and of re-driving a group of
//! failed items (`list_batches`, `retry_items`).

use std::collections::HashSet;

use crate::model::{BatchId, BatchState, ConflictPolicy, ItemId, ItemStatus};
use crate::repository::{BatchQuery, Resolution};
use crate::testing::fixtures::{self, secs};
use crate::testing::TestBackend;

/// Only the tenant's batches, newest (highest id) first; pages never repeat
/// or skip a batch; `next_cursor` is `None` on the last page; `before` need
/// not name an existing batch.
pub async fn list_batches_pages_newest_first_for_the_tenant(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let mut stored = Vec::new();
    for n in 1..=5 {
        let submission = fixtures::submission(&tenant, n, ConflictPolicy::Update);
        stored.push(fixtures::store(repo, &submission).await.0.id);
    }
    // Another tenant's batch is never listed.
    let other = fixtures::submission(&fixtures::tenant(), 1, ConflictPolicy::Update);
    fixtures::store(repo, &other).await;

    let mut seen: Vec<BatchId> = Vec::new();
    let mut before = None;
    for page_number in 0.. {
        assert!(page_number < 10, "the listing must end");
        let page = repo
            .list_batches(
                &tenant,
                &BatchQuery {
                    before,
                    limit: 2,
                    ..BatchQuery::default()
                },
            )
            .await
            .expect("list_batches failed");
        assert!(page.batches.len() <= 2, "a page holds at most `limit`");
        for status in &page.batches {
            assert_eq!(status.batch.tenant, tenant, "only the tenant's batches");
            assert_eq!(
                status.counts.total(),
                status.batch.total,
                "counts come with each batch"
            );
        }
        seen.extend(page.batches.iter().map(|s| s.batch.id));
        match page.next_cursor {
            Some(cursor) => before = Some(cursor),
            None => break,
        }
    }
    let mut expected = stored.clone();
    expected.sort_unstable_by_key(|b| std::cmp::Reverse(b.0));
    assert_eq!(seen, expected, "every batch once, newest first");

    // A cursor naming no batch still pages by id.
    let page = repo
        .list_batches(
            &tenant,
            &BatchQuery {
                before: Some(BatchId::new()),
                limit: 100,
                ..BatchQuery::default()
            },
        )
        .await
        .expect("list_batches failed");
    assert_eq!(page.batches.len(), 5);
    assert_eq!(page.next_cursor, None);
}

/// Filters by state (cancelled wins over completed) and by `created_after`.
pub async fn list_batches_filters_by_state_and_created_after(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let t0 = crate::model::now();
    let running = fixtures::submission_at(
        &tenant,
        vec![fixtures::organization(&fixtures::domain())],
        ConflictPolicy::Update,
        t0,
    );
    let (running, _) = fixtures::store(repo, &running).await;
    let done = fixtures::submission_at(
        &tenant,
        vec![fixtures::organization(&fixtures::domain())],
        ConflictPolicy::Update,
        t0 + secs(10),
    );
    let (done, items) = fixtures::store(repo, &done).await;
    fixtures::process(repo, &fixtures::ids(&items), t0 + secs(11)).await;
    repo.complete_batches(&[done.id], t0 + secs(12))
        .await
        .expect("complete_batches failed");
    let cancelled = fixtures::submission_at(
        &tenant,
        vec![fixtures::organization(&fixtures::domain())],
        ConflictPolicy::Update,
        t0 + secs(20),
    );
    let (cancelled, _) = fixtures::store(repo, &cancelled).await;
    repo.cancel_batch(&tenant, cancelled.id, t0 + secs(21))
        .await
        .expect("cancel_batch failed");
    // A cancelled batch whose items all finished is completed too: still "cancelled".
    repo.complete_batches(&[cancelled.id], t0 + secs(22))
        .await
        .expect("complete_batches failed");

    let list = |state: Option<BatchState>, created_after| {
        let tenant = tenant.clone();
        async move {
            let page = repo
                .list_batches(
                    &tenant,
                    &BatchQuery {
                        state,
                        created_after,
                        limit: 100,
                        before: None,
                    },
                )
                .await
                .expect("list_batches failed");
            page.batches.iter().map(|s| s.batch.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(list(Some(BatchState::Running), None).await, [running.id]);
    assert_eq!(list(Some(BatchState::Completed), None).await, [done.id]);
    assert_eq!(
        list(Some(BatchState::Cancelled), None).await,
        [cancelled.id]
    );
    let recent: HashSet<BatchId> = list(None, Some(t0 + secs(5))).await.into_iter().collect();
    assert_eq!(
        recent,
        HashSet::from([done.id, cancelled.id]),
        "created strictly after the given time"
    );
    assert!(list(None, Some(t0 + secs(20))).await.is_empty());
}

/// `retry_items` answers `None` for an unknown or another tenant's batch and
/// changes nothing.
pub async fn retry_items_of_unknown_or_foreign_batch_is_none(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 1, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let ids = fixtures::ids(&items);
    let claimed = fixtures::claim(repo, &ids, t0).await;
    let failed = Resolution::Failed {
        error: "boom".into(),
        permanent: true,
    };
    fixtures::finish(repo, &fixtures::leases(&claimed), failed, t0).await;

    let foreign = repo
        .retry_items(&fixtures::tenant(), batch.id, &ids, t0 + secs(1))
        .await
        .expect("retry_items failed");
    assert!(foreign.is_none(), "another tenant's batch is not found");
    let unknown = repo
        .retry_items(&tenant, BatchId::new(), &ids, t0 + secs(1))
        .await
        .expect("retry_items failed");
    assert!(unknown.is_none());
    let item = fixtures::item(repo, &tenant, batch.id, ids[0]).await;
    assert_eq!(item.status, ItemStatus::Failed, "nothing changed");
}

/// Only the listed failed items of the batch become pending (attempts 0,
/// errors kept, batch reopened); other failed items, items of other batches
/// and items that are not failed are left as they are.
pub async fn retry_items_redrives_only_listed_failed_items(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 4, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let ids = fixtures::ids(&items);
    let claimed = fixtures::claim(repo, &ids[..3], t0).await;
    let failed = Resolution::Failed {
        error: "boom 42".into(),
        permanent: true,
    };
    fixtures::finish(repo, &fixtures::leases(&claimed), failed.clone(), t0).await;
    fixtures::process(repo, &ids[3..], t0).await;
    repo.complete_batches(&[batch.id], t0 + secs(1))
        .await
        .expect("complete_batches failed");
    // A failed item of another batch of the same tenant.
    let other = fixtures::submission(&tenant, 1, ConflictPolicy::Update);
    let (other_batch, other_items) = fixtures::store(repo, &other).await;
    let other_ids = fixtures::ids(&other_items);
    let c = fixtures::claim(repo, &other_ids, other.now).await;
    fixtures::finish(repo, &fixtures::leases(&c), failed, other.now).await;

    let t2 = t0 + secs(2);
    let asked: Vec<ItemId> = vec![ids[0], ids[1], ids[3], other_ids[0], ItemId::new()];
    let jobs = repo
        .retry_items(&tenant, batch.id, &asked, t2)
        .await
        .expect("retry_items failed")
        .expect("the batch exists for its tenant");
    let job_ids: HashSet<ItemId> = jobs.iter().map(|j| j.item_id).collect();
    assert_eq!(job_ids, HashSet::from([ids[0], ids[1]]));
    assert!(jobs.iter().all(|j| j.tenant == tenant));

    for (id, expected) in [
        (ids[0], ItemStatus::Pending),
        (ids[1], ItemStatus::Pending),
        (ids[2], ItemStatus::Failed),
        (ids[3], ItemStatus::Completed),
    ] {
        let item = fixtures::item(repo, &tenant, batch.id, id).await;
        assert_eq!(item.status, expected, "item {id}");
        if expected == ItemStatus::Pending {
            assert_eq!(item.attempts, 0);
            assert_eq!(item.available_at, t2);
            assert_eq!(item.errors.len(), 1, "error history kept");
        }
    }
    let other_item = fixtures::item(repo, &tenant, other_batch.id, other_ids[0]).await;
    assert_eq!(
        other_item.status,
        ItemStatus::Failed,
        "another batch's item"
    );
    let status = fixtures::status(repo, &tenant, batch.id).await;
    assert_eq!(status.batch.completed_at, None, "the batch is open again");
    assert_eq!(status.counts.pending, 2);
}
