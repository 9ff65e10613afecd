//! Cases of the trace context stored with a batch (`crate::trace`).

use crate::model::{ConflictPolicy, ItemId};
use crate::testing::fixtures::{self, secs};
use crate::testing::TestBackend;

/// A W3C `traceparent` as a request's span gives it.
pub const TRACE_PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// A batch's `trace_parent` comes back with every claim of its items, also
/// after a release (a retry, a re-enqueued job); a batch stored without one
/// claims `None`, even in the same claim.
pub async fn claim_carries_the_batchs_trace_parent(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let mut traced = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    traced.trace_parent = Some(TRACE_PARENT.to_owned());
    let untraced = fixtures::submission(&tenant, 1, ConflictPolicy::Update);
    let t0 = traced.now.max(untraced.now);
    let (traced_batch, traced_items) = fixtures::store(repo, &traced).await;
    let (_, untraced_items) = fixtures::store(repo, &untraced).await;
    let mut ids = fixtures::ids(&traced_items);
    ids.extend(fixtures::ids(&untraced_items));

    let claimed = fixtures::claim(repo, &ids, t0 + secs(1)).await;
    let parent_of = |claimed: &[crate::repository::ClaimedItem], id: ItemId| {
        claimed
            .iter()
            .find(|c| c.lease.item_id == id)
            .map(|c| c.trace_parent.clone())
            .expect("claimed")
    };
    for item in &traced_items {
        assert_eq!(
            parent_of(&claimed, item.item_id).as_deref(),
            Some(TRACE_PARENT),
            "an item of batch {} carries its traceparent",
            traced_batch.id
        );
    }
    assert_eq!(parent_of(&claimed, untraced_items[0].item_id), None);

    let leases: Vec<_> = claimed.iter().map(|c| c.lease).collect();
    repo.release_items(&leases, t0 + secs(2))
        .await
        .expect("release_items failed");
    let again = fixtures::claim(repo, &ids, t0 + secs(3)).await;
    assert_eq!(
        parent_of(&again, traced_items[1].item_id).as_deref(),
        Some(TRACE_PARENT),
        "a second attempt continues the same trace"
    );
    assert_eq!(parent_of(&again, untraced_items[0].item_id), None);
}
