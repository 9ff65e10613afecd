//! Cases of a tenant's throughput history (`throughput`).

use crate::model::ConflictPolicy;
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
    let (_, items) = fixtures::store(
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
    assert_eq!(
        repo.throughput(&fixtures::tenant(), t0 - secs(60), 60)
            .await
            .expect("throughput failed"),
        vec![],
        "a tenant without items has no buckets"
    );
}
