//! Cancellation safety: callers drop repository futures (request timeouts,
//! shutdowns), and the backend must stay usable afterwards.

use std::time::Duration;

use tokio::task::JoinSet;

use crate::model::{ConflictPolicy, ItemId, TenantId, Timestamp};
use crate::repository::{OrgRepository, Submission};
use crate::testing::fixtures::{self, secs};
use crate::testing::TestBackend;

/// Futures of `store_submission`, `claim_items` and `finish_items` dropped
/// at any point (here: cut off after 0–3 ms) leave the backend usable: every
/// later call succeeds on every pooled connection, and a cut-off store is
/// either whole or absent.
pub async fn cancelled_calls_leave_the_repository_usable(backend: TestBackend) {
    // Leaves leased items until its clean-up: no sweep case may run meanwhile.
    let _shared = fixtures::shared().await;
    let repo = backend.repository.clone();
    let tenant = fixtures::tenant();
    let mut started: Vec<Submission> = Vec::new();
    for i in 0..60u64 {
        let cut = Duration::from_micros((i * 211) % 3000);
        let submission = fixtures::submission(&tenant, 20, ConflictPolicy::Update);
        let _ = tokio::time::timeout(cut, repo.store_submission(&submission)).await;
        started.push(submission);
        // Claims cut off too, on whatever the cut-off stores left.
        if let Some(stored) = stored_items(&*repo, &tenant, &started).await {
            let now: Timestamp = submission_now(&started) + secs(1);
            let request = fixtures::claim_request(&stored, now);
            let _ = tokio::time::timeout(cut, repo.claim_items(&request)).await;
        }
    }
    // Connections that a cut-off call left behind are reused by these calls:
    // more concurrent calls than any pool in the suite has connections.
    let mut calls = JoinSet::new();
    for _ in 0..24 {
        let (repo, tenant) = (repo.clone(), tenant.clone());
        calls.spawn(async move {
            let submission = fixtures::submission(&tenant, 5, ConflictPolicy::Update);
            let (_, items) = fixtures::store(&*repo, &submission).await;
            let claimed =
                fixtures::claim(&*repo, &fixtures::ids(&items), submission.now + secs(1)).await;
            let applied = fixtures::finish(
                &*repo,
                &fixtures::leases(&claimed),
                crate::repository::Resolution::Completed,
                submission.now + secs(2),
            )
            .await;
            assert_eq!(applied.len(), 5, "every finish applies after cut-off calls");
        });
    }
    while let Some(done) = calls.join_next().await {
        done.expect("a call after the cut-off ones failed");
    }
    // A cut-off store is whole or absent: never a batch without its items.
    for submission in &started {
        let status = repo
            .batch_status(&tenant, submission.batch_id)
            .await
            .expect("batch_status after cut-off calls");
        if let Some(status) = status {
            assert_eq!(status.batch.total, 20, "a stored batch has all its items");
            let counted = status.counts.pending
                + status.counts.processing
                + status.counts.completed
                + status.counts.failed
                + status.counts.cancelled;
            assert_eq!(counted, 20, "a stored batch has all its items");
        }
    }
    clean_up(&*repo, &tenant, &started).await;
}

/// Finishes what the cut-off claims left leased (taking the leases over
/// once expired) and cancels the rest, so later sweeps do not see it.
async fn clean_up(repository: &dyn OrgRepository, tenant: &TenantId, submissions: &[Submission]) {
    let later = submission_now(submissions) + fixtures::delta(fixtures::LEASE) + secs(60);
    if let Some(ids) = stored_items(repository, tenant, submissions).await {
        let request = fixtures::claim_request(&ids, later);
        if let Ok(claimed) = repository.claim_items(&request).await {
            fixtures::finish(
                repository,
                &fixtures::leases(&claimed),
                crate::repository::Resolution::Completed,
                later,
            )
            .await;
        }
    }
    let batches: Vec<_> = submissions.iter().map(|s| s.batch_id).collect();
    fixtures::cancel_quietly(repository, tenant, &batches).await;
}

/// The item ids of every stored batch among `submissions`.
async fn stored_items(
    repository: &dyn OrgRepository,
    tenant: &TenantId,
    submissions: &[Submission],
) -> Option<Vec<ItemId>> {
    let mut ids = Vec::new();
    for submission in submissions {
        if let Ok(Some(_)) = repository.batch_status(tenant, submission.batch_id).await {
            let items = fixtures::all_items(repository, tenant, submission.batch_id).await;
            ids.extend(items.iter().map(|i| i.id));
        }
    }
    (!ids.is_empty()).then_some(ids)
}

/// The latest submission time.
fn submission_now(submissions: &[Submission]) -> Timestamp {
    submissions
        .iter()
        .map(|s| s.now)
        .max()
        .unwrap_or_else(crate::model::now)
}
