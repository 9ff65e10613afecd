//! Cases of `sweep`.
//!
//! `sweep` acts on every tenant, so these cases hold the suite's exclusive
//! lock (no other sweep runs meanwhile in this process), call it until it
//! has nothing new to say ([`fixtures::sweep_all`]) and count only their own
//! items among the jobs.

use crate::model::{ConflictPolicy, ItemStatus};
use crate::repository::Resolution;
use crate::testing::fixtures::{self, count_jobs, secs, sweep_all, sweep_all_due};
use crate::testing::TestBackend;

/// Largest `limit` the sweep cases pass when they want everything.
const ALL: u32 = 1000;

/// `Pending` items with `sweep_at <= pending_due` are returned once, and their
/// `sweep_at` moves to `now + stale_after`.
pub async fn sweep_returns_stale_pending_items_once(backend: TestBackend) {
    let _exclusive = fixtures::exclusive().await;
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let sweep_at = submission.sweep_at;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let stale = fixtures::delta(fixtures::STALE_AFTER);

    let jobs = sweep_all(repo, sweep_at - secs(1), ALL).await;
    for item in &items {
        assert_eq!(
            count_jobs(&jobs, item.item_id),
            0,
            "a pending item is not swept before its sweep_at"
        );
    }
    let jobs = sweep_all_due(repo, sweep_at + stale, sweep_at - secs(1), ALL).await;
    for item in &items {
        assert_eq!(
            count_jobs(&jobs, item.item_id),
            0,
            "a pending item is not swept while its sweep_at is after pending_due, however late now is"
        );
    }
    let jobs = sweep_all(repo, sweep_at, ALL).await;
    for item in &items {
        assert_eq!(
            count_jobs(&jobs, item.item_id),
            1,
            "a pending item is swept once when sweep_at <= now"
        );
        let job = jobs
            .iter()
            .find(|j| j.item_id == item.item_id)
            .expect("counted above");
        assert_eq!(job.tenant, tenant, "a swept job carries its tenant");
    }
    let jobs = sweep_all(repo, sweep_at, ALL).await;
    let jobs_before = sweep_all(repo, sweep_at + stale - secs(1), ALL).await;
    for item in &items {
        assert_eq!(
            count_jobs(&jobs, item.item_id) + count_jobs(&jobs_before, item.item_id),
            0,
            "a swept item is not swept again before now + stale_after"
        );
    }
    let jobs = sweep_all(repo, sweep_at + stale, ALL).await;
    for item in &items {
        assert_eq!(
            count_jobs(&jobs, item.item_id),
            1,
            "a swept item that is still pending is swept again after stale_after"
        );
    }
    for listed in fixtures::all_items(repo, &tenant, batch.id).await {
        assert_eq!(
            (listed.status, listed.attempts),
            (ItemStatus::Pending, 0),
            "sweep does not change an item's status"
        );
    }
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// After a `Retry`, the item is swept at `available_at + stale_after`, not before.
pub async fn sweep_returns_retried_items_after_stale_after(backend: TestBackend) {
    let _exclusive = fixtures::exclusive().await;
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 1, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let id = items[0].item_id;
    let claimed = fixtures::claim(repo, &[id], t0).await;
    let available_at = t0 + secs(10);
    let retry = Resolution::Retry {
        available_at,
        error: "later".into(),
    };
    fixtures::finish(repo, &fixtures::leases(&claimed), retry, t0 + secs(1)).await;

    let sweep_at = available_at + fixtures::delta(fixtures::STALE_AFTER);
    // Past the submission's sweep_at (t0 + 60 s), before the retry's.
    let jobs = sweep_all(repo, sweep_at - secs(1), ALL).await;
    assert_eq!(
        count_jobs(&jobs, id),
        0,
        "a retried item is not swept before available_at + stale_after"
    );
    let jobs = sweep_all(repo, sweep_at, ALL).await;
    assert_eq!(
        count_jobs(&jobs, id),
        1,
        "a retried item is swept at available_at + stale_after"
    );
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// `Processing` items with `lease_until <= now` are returned, and their
/// `lease_until` is not changed; their next claim takes them over.
pub async fn sweep_returns_expired_leases_unchanged(backend: TestBackend) {
    let _exclusive = fixtures::exclusive().await;
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let (held, pending) = (items[0].item_id, items[1].item_id);
    fixtures::claim(repo, &[held], t0).await;
    let lease_until = t0 + fixtures::delta(fixtures::LEASE);

    let jobs = sweep_all(repo, lease_until - secs(1), ALL).await;
    assert_eq!(count_jobs(&jobs, held), 0, "a live lease is not swept");
    for now in [lease_until, lease_until + secs(1)] {
        let jobs = sweep_all(repo, now, ALL).await;
        assert!(
            count_jobs(&jobs, held) >= 1,
            "an expired lease is swept (until a claim takes it over)"
        );
        assert_eq!(
            count_jobs(&jobs, pending),
            0,
            "a pending item is not swept before its sweep_at"
        );
        let listed = fixtures::item(repo, &tenant, batch.id, held).await;
        assert_eq!(listed.status, ItemStatus::Processing);
        assert_eq!(
            listed.lease_until,
            Some(lease_until),
            "sweep keeps lease_until"
        );
        assert_eq!(listed.attempts, 1);
    }

    let t1 = lease_until + secs(1);
    let takeover = fixtures::claim(repo, &[held], t1).await;
    assert_eq!(takeover[0].attempt, 2);
    let jobs = sweep_all(repo, t1 + secs(1), ALL).await;
    assert_eq!(
        count_jobs(&jobs, held),
        0,
        "a taken-over lease is live again"
    );
    fixtures::finish(
        repo,
        &fixtures::leases(&takeover),
        Resolution::Completed,
        t1,
    )
    .await;
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// Cancelled items are never returned; an item still processing when its
/// batch was cancelled is returned once its lease expires.
pub async fn sweep_never_returns_cancelled_items(backend: TestBackend) {
    let _exclusive = fixtures::exclusive().await;
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 3, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let held = fixtures::claim(repo, &[items[0].item_id], t0).await;
    repo.cancel_batch(&tenant, batch.id, t0 + secs(1))
        .await
        .expect("cancel_batch failed")
        .expect("the batch exists");

    // Past every sweep_at and the lease.
    let jobs = sweep_all(repo, t0 + secs(3600), ALL).await;
    for item in &items[1..] {
        assert_eq!(
            count_jobs(&jobs, item.item_id),
            0,
            "a cancelled item is never swept"
        );
    }
    assert_eq!(
        count_jobs(&jobs, items[0].item_id),
        1,
        "an expired lease of a cancelled batch is swept: the item must still finish"
    );
    fixtures::finish(
        repo,
        &fixtures::leases(&held),
        Resolution::Completed,
        t0 + secs(3600),
    )
    .await;
}

/// At most `limit` jobs per call; the rest come with the next calls.
pub async fn sweep_respects_limit(backend: TestBackend) {
    let _exclusive = fixtures::exclusive().await;
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 3, ConflictPolicy::Update);
    let sweep_at = submission.sweep_at;
    let (batch, items) = fixtures::store(repo, &submission).await;

    let first = repo
        .sweep(sweep_at, sweep_at, fixtures::STALE_AFTER, 2)
        .await
        .expect("sweep failed");
    assert!(
        !first.is_empty() && first.len() <= 2,
        "sweep with limit 2 and at least 3 stale items returned {} jobs",
        first.len()
    );
    let rest = sweep_all(repo, sweep_at, ALL).await;
    for item in &items {
        assert_eq!(
            count_jobs(&first, item.item_id) + count_jobs(&rest, item.item_id),
            1,
            "every stale item is swept exactly once across limited calls"
        );
    }
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// Lost work is found in every open batch, however many are open: an
/// adapter may look into a bounded number of batches per call (PostgreSQL
/// does, least recently swept first), but repeated calls reach them all.
pub async fn sweep_reaches_every_open_batch(backend: TestBackend) {
    let _exclusive = fixtures::exclusive().await;
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let mut batches = Vec::new();
    let mut items = Vec::new();
    let mut latest = crate::model::now();
    for _ in 0..150 {
        let submission = fixtures::submission(&tenant, 1, ConflictPolicy::Update);
        latest = latest.max(submission.sweep_at);
        let (batch, stored) = fixtures::store(repo, &submission).await;
        batches.push(batch.id);
        items.extend(fixtures::ids(&stored));
    }
    let mut jobs = Vec::new();
    for _ in 0..20 {
        jobs.extend(
            repo.sweep(latest, latest, fixtures::STALE_AFTER, ALL)
                .await
                .expect("sweep failed"),
        );
    }
    for item in &items {
        assert_eq!(
            count_jobs(&jobs, *item),
            1,
            "a lost item of one of 150 open batches is swept exactly once within 20 sweeps"
        );
    }
    fixtures::cancel_quietly(repo, &tenant, &batches).await;
}

/// A batch larger than what one sweep call reads of a batch (PostgreSQL
/// reads 20,000 items per batch and call, from where the last call
/// stopped) is swept whole over successive calls: every lost item once
/// within 100 calls of at most 1000 jobs.
pub async fn sweep_reaches_every_item_of_a_large_batch(backend: TestBackend) {
    let _exclusive = fixtures::exclusive().await;
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 25_000, ConflictPolicy::Update);
    let sweep_at = submission.sweep_at;
    let (batch, items) = fixtures::store(repo, &submission).await;
    // A call may find nothing in one part of the batch and move on to the
    // next (`sweep_all` would stop there): call it as the sweeper does, a
    // bounded number of times, until every item came back.
    let wanted: std::collections::HashSet<_> = items.iter().map(|i| i.item_id).collect();
    let mut jobs = Vec::new();
    for _ in 0..100 {
        jobs.extend(
            repo.sweep(sweep_at, sweep_at, fixtures::STALE_AFTER, ALL)
                .await
                .expect("sweep failed"),
        );
        if jobs.iter().filter(|j| wanted.contains(&j.item_id)).count() >= wanted.len() {
            break;
        }
    }
    let missed: Vec<u32> = items
        .iter()
        .filter(|i| count_jobs(&jobs, i.item_id) != 1)
        .map(|i| i.position)
        .collect();
    assert!(
        missed.is_empty(),
        "{} of 25,000 lost items were not swept exactly once, the first at positions {:?}",
        missed.len(),
        missed.iter().take(5).collect::<Vec<_>>()
    );
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// A call that finds no lost work has looked far: here one pending item
/// lost at the end of a 45,000-item batch (the others held by live leases)
/// is found by the first call. (PostgreSQL reads a batch in windows of
/// 20,000 items; a call that found nothing in one window used to answer
/// "nothing", and the item waited for the sweeps that reached its window.)
pub async fn one_sweep_finds_a_lost_item_deep_in_a_large_batch(backend: TestBackend) {
    const ITEMS: usize = 45_000;
    let _exclusive = fixtures::exclusive().await;
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, ITEMS, ConflictPolicy::Update);
    let sweep_at = submission.sweep_at;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let Some((lost, held)) = items.split_last() else {
        panic!("no items stored");
    };
    let mut leases = Vec::with_capacity(held.len());
    for chunk in held.chunks(5_000) {
        leases.extend(fixtures::leases(
            &fixtures::claim(repo, &fixtures::ids(chunk), sweep_at).await,
        ));
    }
    // A backend shared with other cases (memory, in one test process) may
    // hold their due work too: a limit above it, and only this batch counts.
    let jobs = repo
        .sweep(sweep_at, sweep_at, fixtures::STALE_AFTER, 100_000)
        .await
        .expect("sweep failed");
    let of_batch: std::collections::HashSet<_> = items.iter().map(|i| i.item_id).collect();
    let found: Vec<_> = jobs
        .iter()
        .map(|j| j.item_id)
        .filter(|id| of_batch.contains(id))
        .collect();
    assert_eq!(
        found,
        vec![lost.item_id],
        "one sweep call should return the one lost item (position {})",
        lost.position
    );
    // Nothing left for other cases to sweep: the held items go back to
    // pending, and the cancel ends every pending item.
    for chunk in leases.chunks(5_000) {
        repo.release_items(chunk, sweep_at)
            .await
            .expect("release failed");
    }
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}
