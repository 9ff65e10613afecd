//! Cases of a tenant's throughput history (`throughput`).

use crate::model::{ConflictPolicy, ItemStatus};
use crate::repository::{Resolution, ThroughputBucket};
use crate::testing::fixtures::{self, secs};
use crate::testing::TestBackend;

/// Completed and failed items counted per epoch-aligned bucket of their
/// `finished_at`, from `since` on; another tenant's items, unfinished items
/// and empty buckets left out; ordered by start.
pub async fn throughput_counts_the_tenants_finished_items_per_bucket(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    // A whole minute, in the future: every item is claimable by then.
    let start = (crate::model::now().timestamp() / 60 + 2) * 60;
    let t0 = chrono::DateTime::from_timestamp(start, 0).expect("a valid time");
    let (batch, items) = fixtures::store(
        repo,
        &fixtures::submission(&tenant, 6, ConflictPolicy::Update),
    )
    .await;
    let ids = fixtures::ids(&items);
    // Before `since`: not counted.
    fixtures::process(repo, &ids[0..1], t0 - secs(10)).await;
    // Two in the first minute (one at its very start), one completed and one failed in the next.
    fixtures::process(repo, &ids[1..2], t0).await;
    fixtures::process(repo, &ids[2..3], t0 + secs(59)).await;
    fixtures::process(repo, &ids[3..4], t0 + secs(65)).await;
    let claimed = fixtures::claim(repo, &ids[4..5], t0 + secs(70)).await;
    let failed = fixtures::finish(
        repo,
        &fixtures::leases(&claimed),
        Resolution::Failed {
            error: "crm_down: no answer".into(),
            permanent: true,
        },
        t0 + secs(70),
    )
    .await;
    assert_eq!(failed.len(), 1, "the failure applied");
    // ids[5] stays pending. Another tenant's completions in the same minutes never count.
    let other = fixtures::tenant();
    let (_, foreign) = fixtures::store(
        repo,
        &fixtures::submission(&other, 2, ConflictPolicy::Update),
    )
    .await;
    fixtures::process(repo, &fixtures::ids(&foreign), t0 + secs(5)).await;

    let buckets = repo
        .throughput(&tenant, t0, 60)
        .await
        .expect("throughput failed");
    assert_eq!(
        buckets,
        vec![
            ThroughputBucket {
                start,
                completed: 2,
                failed: 0
            },
            ThroughputBucket {
                start: start + 60,
                completed: 1,
                failed: 1
            },
        ],
        "per minute, from `since`, only the tenant's finished items"
    );
    let per_ten = repo
        .throughput(&tenant, t0 - secs(60), 10)
        .await
        .expect("throughput failed");
    let got: Vec<(i64, u64, u64)> = per_ten
        .iter()
        .map(|b| (b.start - start, b.completed, b.failed))
        .collect();
    assert_eq!(
        got,
        vec![(-10, 1, 0), (0, 1, 0), (50, 1, 0), (60, 1, 0), (70, 0, 1)],
        "10-second buckets aligned on the epoch"
    );
    // A failed item retried is no longer counted: the history counts the
    // items completed or failed now.
    let retried = repo
        .retry_items(&tenant, batch.id, &ids[4..5], t0 + secs(80))
        .await
        .expect("retry_items failed")
        .expect("the batch exists");
    assert_eq!(retried.len(), 1, "the failed item was retried");
    assert_eq!(
        repo.throughput(&tenant, t0, 60)
            .await
            .expect("throughput failed"),
        vec![
            ThroughputBucket {
                start,
                completed: 2,
                failed: 0
            },
            ThroughputBucket {
                start: start + 60,
                completed: 1,
                failed: 0
            },
        ],
        "the retried item's failure left the history"
    );
    assert_eq!(
        repo.throughput(&fixtures::tenant(), t0 - secs(60), 60)
            .await
            .expect("throughput failed"),
        vec![],
        "a tenant without items has no buckets"
    );
}

/// Items completed on arrival (skipped) count at their batch's time, and a
/// pruned batch's items leave the history with it (their organizations
/// keep their status).
pub async fn throughput_counts_arrivals_and_forgets_pruned_batches(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    // After every other case's prune cutoff (theirs could take this batch
    // before the first read), before now.
    let t = fixtures::time_in_past(2010);
    let earlier = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    fixtures::store(repo, &earlier).await;
    let skip = fixtures::submission_at(
        &tenant,
        fixtures::organizations_of(&earlier),
        ConflictPolicy::Skip,
        t,
    );
    let (skipped, _) = fixtures::store(repo, &skip).await;
    assert_eq!(skipped.completed_at, Some(t), "skipped on arrival");
    // A batch processed then: its organization's status outlives the prune.
    let processed = fixtures::submission_at(
        &tenant,
        vec![fixtures::organization(&fixtures::domain())],
        ConflictPolicy::Update,
        t,
    );
    let (done, items) = fixtures::store(repo, &processed).await;
    fixtures::process(repo, &fixtures::ids(&items), t).await;
    let completed = repo
        .complete_batches(&[done.id], t)
        .await
        .expect("complete_batches failed");
    assert_eq!(completed.len(), 1, "the processed batch completes");
    let start = t.timestamp() / 60 * 60;
    let since = t - secs(120);
    assert_eq!(
        repo.throughput(&tenant, since, 60)
            .await
            .expect("throughput failed"),
        vec![ThroughputBucket {
            start,
            completed: 3,
            failed: 0
        }],
        "the two skipped items count when they arrived, the processed one when it finished"
    );
    let pruned = repo.prune(t + secs(1), 1000).await.expect("prune failed");
    assert!(pruned >= 1, "the skipped batch was due");
    assert_eq!(
        repo.throughput(&tenant, since, 60)
            .await
            .expect("throughput failed"),
        vec![],
        "a pruned batch's items are no longer counted"
    );
    let org =
        fixtures::stored_organization(repo, &tenant, &processed.organizations[0].1.domain).await;
    assert_eq!(
        org.status,
        ItemStatus::Completed,
        "an organization keeps its status when its batch is pruned"
    );
}
