//! Cases of `claim_items`, `extend_leases`, `finish_items` and `release_items`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tokio::sync::Barrier;

use crate::model::{
    AttemptError, Change, ConflictPolicy, ItemId, ItemStatus, LeaseToken, ERROR_HISTORY_LIMIT,
};
use crate::repository::{Lease, Resolution};
use crate::testing::fixtures::{self, secs};
use crate::testing::TestBackend;

/// A claimed item becomes `Processing` with the request's token and
/// `lease_until`, `attempts + 1`; its organization is not written.
pub async fn claim_marks_items_processing(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 3, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let orgs = fixtures::organizations_of(&submission);

    let t1 = t0 + secs(1);
    let request = fixtures::claim_request(&fixtures::ids(&items[..2]), t1);
    let claimed = repo
        .claim_items(&request)
        .await
        .expect("claim_items failed");
    assert_eq!(claimed.len(), 2, "both pending items are claimed");
    for (stored, org) in items[..2].iter().zip(&orgs) {
        let c = claimed
            .iter()
            .find(|c| c.lease.item_id == stored.item_id)
            .unwrap_or_else(|| panic!("item {} was not claimed", stored.item_id));
        assert_eq!(
            c.lease.token, request.token,
            "the claim carries the request's token"
        );
        assert_eq!(c.batch_id, batch.id);
        assert_eq!(c.tenant, tenant);
        assert_eq!(c.attempt, 1, "the first claim is attempt 1");
        assert_eq!(c.change, Change::Created);
        assert_eq!(c.organization.id, stored.organization_id);
        assert_eq!(c.organization.domain, org.domain);
        assert_eq!(c.organization.name, org.name);
        assert_eq!(c.organization.contact_email, org.contact_email);
        assert_eq!(c.organization.version, 1);

        let listed = fixtures::item(repo, &tenant, batch.id, stored.item_id).await;
        assert_eq!(listed.status, ItemStatus::Processing);
        assert_eq!(listed.attempts, 1);
        assert_eq!(listed.lease_until, Some(request.lease_until));
        let organization = fixtures::stored_organization(repo, &tenant, &org.domain).await;
        assert_eq!(
            organization.status,
            ItemStatus::Pending,
            "a claim does not write the organization"
        );
    }
    let untouched = fixtures::item(repo, &tenant, batch.id, items[2].item_id).await;
    assert_eq!(
        (untouched.status, untouched.attempts),
        (ItemStatus::Pending, 0)
    );
    assert_eq!(
        fixtures::stored_organization(repo, &tenant, &orgs[2].domain)
            .await
            .status,
        ItemStatus::Pending
    );
    let status = fixtures::status(repo, &tenant, batch.id).await;
    assert_eq!((status.counts.processing, status.counts.pending), (2, 1));
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// Items not claimable (leased, not yet available, terminal, unknown) are
/// left out of the answer, never an error.
pub async fn claim_leaves_out_unclaimable_items(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 5, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let [claimable, leased, completed, failed, retrying] =
        <[ItemId; 5]>::try_from(fixtures::ids(&items)).expect("five items");

    // Not yet available: a fresh item before its `available_at`.
    let early = repo
        .claim_items(&fixtures::claim_request(&[claimable], t0 - secs(1)))
        .await
        .expect("claim_items failed");
    assert!(
        early.is_empty(),
        "an item is not claimable before available_at: {early:?}"
    );

    let leased_claim = fixtures::claim(repo, &[leased], t0).await;
    fixtures::process(repo, &[completed], t0).await;
    let c = fixtures::claim(repo, &[failed], t0).await;
    let failure = Resolution::Failed {
        error: "boom".into(),
        permanent: true,
    };
    fixtures::finish(repo, &fixtures::leases(&c), failure, t0).await;
    let c = fixtures::claim(repo, &[retrying], t0).await;
    let retry = Resolution::Retry {
        available_at: t0 + secs(100),
        error: "later".into(),
    };
    fixtures::finish(repo, &fixtures::leases(&c), retry, t0).await;

    // A cancelled item and a skipped item (stored completed) in other batches.
    let other = fixtures::submission(&tenant, 1, ConflictPolicy::Update);
    let (cancelled_batch, cancelled_items) = fixtures::store(repo, &other).await;
    repo.cancel_batch(&tenant, cancelled_batch.id, t0)
        .await
        .expect("cancel_batch failed")
        .expect("the batch exists");
    let skip = fixtures::submission_of(
        &tenant,
        fixtures::organizations_of(&other),
        ConflictPolicy::Skip,
    );
    let (_, skipped_items) = fixtures::store(repo, &skip).await;

    let t1 = t0 + secs(5);
    let unknown = ItemId::new();
    let all = vec![
        claimable,
        leased,
        completed,
        failed,
        retrying,
        cancelled_items[0].item_id,
        skipped_items[0].item_id,
        unknown,
    ];
    let claimed = repo
        .claim_items(&fixtures::claim_request(&all, t1))
        .await
        .expect("claim_items with unclaimable items must not fail");
    let got: Vec<ItemId> = claimed.iter().map(|c| c.lease.item_id).collect();
    assert_eq!(
        got,
        vec![claimable],
        "only the pending, available item is claimed"
    );

    let still_leased = fixtures::item(repo, &tenant, batch.id, leased).await;
    assert_eq!(
        still_leased.attempts, 1,
        "a refused claim does not count an attempt"
    );
    assert_eq!(
        still_leased.lease_until,
        Some(t0 + fixtures::delta(fixtures::LEASE)),
        "a refused claim does not touch the live lease"
    );
    assert_eq!(leased_claim.len(), 1);
    let still_retrying = fixtures::item(repo, &tenant, batch.id, retrying).await;
    assert_eq!(
        (still_retrying.status, still_retrying.attempts),
        (ItemStatus::Pending, 1)
    );
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// A `Processing` item whose lease expired (`lease_until <= now`) is
/// claimable again, with a new token and `attempts + 1`; a live lease is not.
pub async fn claim_takes_over_expired_leases(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 1, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let id = items[0].item_id;
    let first = fixtures::claim(repo, &[id], t0).await;
    let lease_until = t0 + fixtures::delta(fixtures::LEASE);

    let live = repo
        .claim_items(&fixtures::claim_request(&[id], lease_until - secs(1)))
        .await
        .expect("claim_items failed");
    assert!(
        live.is_empty(),
        "an item with a live lease is not claimable: {live:?}"
    );

    let takeover = fixtures::claim_request(&[id], lease_until);
    let second = repo
        .claim_items(&takeover)
        .await
        .expect("claim_items failed");
    assert_eq!(
        second.len(),
        1,
        "an expired lease (lease_until <= now) is claimable"
    );
    assert_eq!(second[0].lease.token, takeover.token);
    assert_ne!(second[0].lease.token, first[0].lease.token);
    assert_eq!(second[0].attempt, 2, "the takeover is attempt 2");
    let listed = fixtures::item(repo, &tenant, batch.id, id).await;
    assert_eq!(listed.status, ItemStatus::Processing);
    assert_eq!(listed.attempts, 2);
    assert_eq!(listed.lease_until, Some(takeover.lease_until));
    fixtures::finish(
        repo,
        &fixtures::leases(&second),
        Resolution::Completed,
        lease_until,
    )
    .await;
}

/// Concurrent claims of the same items: each item is claimed exactly once.
pub async fn claim_is_exclusive_under_concurrency(backend: TestBackend) {
    const TASKS: usize = 8;
    const ITEMS: usize = 40;
    let repo = Arc::clone(&backend.repository);
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, ITEMS, ConflictPolicy::Update);
    let now = submission.now;
    let (batch, items) = fixtures::store(&*repo, &submission).await;
    let ids = fixtures::ids(&items);

    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let repo = Arc::clone(&repo);
            let barrier = Arc::clone(&barrier);
            // Each task tries the items in another order.
            let mut ids = ids.clone();
            ids.rotate_left(task * ITEMS / TASKS);
            tokio::spawn(async move {
                let request = fixtures::claim_request(&ids, now);
                barrier.wait().await;
                repo.claim_items(&request).await
            })
        })
        .collect();
    let mut claims: HashMap<ItemId, Vec<LeaseToken>> = HashMap::new();
    for task in tasks {
        let claimed = task
            .await
            .expect("a claim task panicked")
            .expect("a concurrent claim_items failed");
        for c in claimed {
            claims
                .entry(c.lease.item_id)
                .or_default()
                .push(c.lease.token);
        }
    }
    for id in &ids {
        let tokens = claims.get(id).map_or(0, Vec::len);
        assert_eq!(
            tokens, 1,
            "item {id} was claimed {tokens} times by concurrent claims"
        );
    }
    for listed in fixtures::all_items(&*repo, &tenant, batch.id).await {
        assert_eq!(
            (listed.status, listed.attempts),
            (ItemStatus::Processing, 1)
        );
    }
    let leases: Vec<Lease> = claims
        .iter()
        .map(|(&item_id, tokens)| Lease {
            item_id,
            token: tokens[0],
        })
        .collect();
    let applied = fixtures::finish(&*repo, &leases, Resolution::Completed, now).await;
    assert_eq!(
        applied.len(),
        ITEMS,
        "each winner holds the lease it was given"
    );
}

/// `extend_leases` returns the items whose token matches and that are still
/// `Processing`, after setting their `lease_until`; others are left out.
pub async fn extend_leases_only_for_matching_tokens(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 4, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let ids = fixtures::ids(&items);

    // Item 3 is claimed first, its lease expires and another claim takes it over.
    let old = fixtures::claim(repo, &ids[3..], t0).await;
    let t30 = t0 + fixtures::delta(fixtures::LEASE);
    let taken_over = fixtures::claim(repo, &ids[3..], t30).await;
    // Items 0-2 are held with live leases at t0 + 25 s (until t0 + 55 s).
    let held = fixtures::claim(repo, &ids[..3], t0 + secs(25)).await;
    let lease_of = |id: ItemId| {
        held.iter()
            .find(|c| c.lease.item_id == id)
            .map(|c| c.lease)
            .expect("claimed")
    };
    // Item 2 is finished.
    fixtures::finish(repo, &[lease_of(ids[2])], Resolution::Completed, t30).await;

    let now = t30 + secs(1);
    let new_until = now + secs(100);
    let leases = [
        lease_of(ids[0]),
        Lease {
            item_id: ids[1],
            token: LeaseToken::new(),
        },
        lease_of(ids[2]),
        old[0].lease,
        Lease {
            item_id: ItemId::new(),
            token: lease_of(ids[0]).token,
        },
    ];
    let extended = repo
        .extend_leases(&leases, now, new_until)
        .await
        .expect("extend_leases failed");
    assert_eq!(
        extended,
        vec![ids[0]],
        "only the held lease with a matching token is extended"
    );
    let item0 = fixtures::item(repo, &tenant, batch.id, ids[0]).await;
    assert_eq!(item0.lease_until, Some(new_until));
    let item1 = fixtures::item(repo, &tenant, batch.id, ids[1]).await;
    assert_eq!(
        item1.lease_until,
        Some(t0 + secs(25) + fixtures::delta(fixtures::LEASE)),
        "a wrong token does not extend"
    );
    let item3 = fixtures::item(repo, &tenant, batch.id, ids[3]).await;
    assert_eq!(
        item3.lease_until,
        Some(t30 + fixtures::delta(fixtures::LEASE)),
        "a zombie's token does not extend the new holder's lease"
    );
    let extended = repo
        .extend_leases(&[taken_over[0].lease], now, new_until)
        .await
        .expect("extend_leases failed");
    assert_eq!(extended, vec![ids[3]], "the new holder extends its lease");

    let mut all = fixtures::leases(&held);
    all.push(taken_over[0].lease);
    fixtures::finish(repo, &all, Resolution::Completed, now).await;
}

/// `finish_items` applies only where the item is `Processing` with the same
/// token: a zombie's finish is left out and changes nothing.
pub async fn finish_is_fenced_by_lease_token(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let id = items[0].item_id;
    let domain = items[0].domain.clone();

    // Worker A claims, stalls past its lease; worker B takes over.
    let a = fixtures::claim(repo, &[id], t0).await[0].lease;
    let t30 = t0 + fixtures::delta(fixtures::LEASE);
    let b_claim = fixtures::claim(repo, &[id], t30).await;
    let b = b_claim[0].lease;
    let b_until = t30 + fixtures::delta(fixtures::LEASE);

    // The zombie A finishes, in every way: nothing is applied.
    let zombie_resolutions = [
        Resolution::Completed,
        Resolution::Retry {
            available_at: t30 + secs(5),
            error: "zombie retry".into(),
        },
        Resolution::Failed {
            error: "zombie failure".into(),
            permanent: true,
        },
    ];
    for resolution in zombie_resolutions {
        let applied = fixtures::finish(repo, &[a], resolution.clone(), t30 + secs(1)).await;
        assert!(applied.is_empty(), "a zombie's {resolution:?} was applied");
        let listed = fixtures::item(repo, &tenant, batch.id, id).await;
        assert_eq!(listed.status, ItemStatus::Processing, "still held by B");
        assert_eq!(listed.attempts, 2);
        assert_eq!(listed.lease_until, Some(b_until), "B's lease is untouched");
        assert!(listed.errors.is_empty(), "a zombie's error was recorded");
        assert_eq!(listed.finished_at, None);
        let organization = fixtures::stored_organization(repo, &tenant, &domain).await;
        assert_eq!(
            organization.status,
            ItemStatus::Pending,
            "a zombie's result did not reach the organization"
        );
    }

    // A finish for an item never claimed, or unknown, is left out too.
    let never_claimed = Lease {
        item_id: items[1].item_id,
        token: LeaseToken::new(),
    };
    let unknown = Lease {
        item_id: ItemId::new(),
        token: b.token,
    };
    let applied = fixtures::finish(
        repo,
        &[never_claimed, unknown],
        Resolution::Completed,
        t30 + secs(1),
    )
    .await;
    assert!(
        applied.is_empty(),
        "finish applied to an item that is not processing"
    );
    let listed = fixtures::item(repo, &tenant, batch.id, items[1].item_id).await;
    assert_eq!(listed.status, ItemStatus::Pending);

    // B's finish applies.
    let applied = fixtures::finish(repo, &[b], Resolution::Completed, t30 + secs(2)).await;
    assert_eq!(applied, vec![id], "the holder's finish applies");
    let listed = fixtures::item(repo, &tenant, batch.id, id).await;
    assert_eq!(listed.status, ItemStatus::Completed);
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// `Completed` makes item and organization `Completed` with `finished_at =
/// now`, and returns the applied ids.
pub async fn finish_completed_completes_item_and_organization(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let ids = fixtures::ids(&items);
    let claimed = fixtures::claim(repo, &ids, t0).await;

    let t1 = t0 + secs(5);
    let applied =
        fixtures::finish(repo, &fixtures::leases(&claimed), Resolution::Completed, t1).await;
    assert_eq!(
        applied.iter().copied().collect::<HashSet<_>>(),
        ids.iter().copied().collect::<HashSet<_>>(),
        "finish_items returns the ids it applied"
    );
    for stored in &items {
        let listed = fixtures::item(repo, &tenant, batch.id, stored.item_id).await;
        assert_eq!(listed.status, ItemStatus::Completed);
        assert_eq!(listed.finished_at, Some(t1));
        assert_eq!(listed.attempts, 1);
        assert!(listed.errors.is_empty());
        let organization = fixtures::stored_organization(repo, &tenant, &stored.domain).await;
        assert_eq!(organization.status, ItemStatus::Completed);
    }
    let status = fixtures::status(repo, &tenant, batch.id).await;
    assert_eq!(status.counts.completed, 2);

    let again =
        fixtures::finish(repo, &fixtures::leases(&claimed), Resolution::Completed, t1).await;
    assert!(
        again.is_empty(),
        "a second finish of the same lease is not applied"
    );
}

/// `Retry` makes the item `Pending` with the given `available_at`, clears
/// the lease and appends the error to its history.
pub async fn finish_retry_returns_item_to_pending(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 1, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let id = items[0].item_id;

    let claimed = fixtures::claim(repo, &[id], t0).await;
    let t1 = t0 + secs(2);
    let available_at = t0 + secs(20);
    let retry = Resolution::Retry {
        available_at,
        error: r#"boom "1" \ quoted"#.into(),
    };
    let applied = fixtures::finish(repo, &fixtures::leases(&claimed), retry, t1).await;
    assert_eq!(applied, vec![id]);
    // The message (quotes and a backslash) comes back as it was given.
    let listed = fixtures::item(repo, &tenant, batch.id, id).await;
    assert_eq!(listed.status, ItemStatus::Pending);
    assert_eq!(listed.available_at, available_at);
    assert_eq!(listed.lease_until, None, "a retry clears the lease");
    assert_eq!(listed.attempts, 1);
    assert_eq!(listed.finished_at, None);
    let first_error = AttemptError {
        attempt: 1,
        at: t1,
        message: r#"boom "1" \ quoted"#.into(),
        permanent: false,
    };
    assert_eq!(listed.errors, vec![first_error.clone()]);

    let early = repo
        .claim_items(&fixtures::claim_request(&[id], available_at - secs(1)))
        .await
        .expect("claim_items failed");
    assert!(
        early.is_empty(),
        "a retried item is not claimable before available_at"
    );
    let claimed = fixtures::claim(repo, &[id], available_at).await;
    assert_eq!(claimed[0].attempt, 2);

    let t2 = available_at + secs(1);
    let retry = Resolution::Retry {
        available_at: t2 + secs(20),
        error: "boom 2".into(),
    };
    fixtures::finish(repo, &fixtures::leases(&claimed), retry, t2).await;
    let listed = fixtures::item(repo, &tenant, batch.id, id).await;
    let second_error = AttemptError {
        attempt: 2,
        at: t2,
        message: "boom 2".into(),
        permanent: false,
    };
    assert_eq!(
        listed.errors,
        vec![first_error, second_error],
        "the error history grows, oldest first"
    );
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// The error history keeps the last [`ERROR_HISTORY_LIMIT`] attempts,
/// oldest first, and `error_count` counts every one, across re-drives: a
/// retry loop cannot grow a row without end.
pub async fn error_history_keeps_the_last_attempts(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 1, ConflictPolicy::Update);
    let (batch, items) = fixtures::store(repo, &submission).await;
    let id = items[0].item_id;
    let limit = u32::try_from(ERROR_HISTORY_LIMIT).expect("a small limit");
    let mut now = submission.now;
    // Fails the item once at `now`: a retry, or for good on the last attempt.
    let fail_once = |now, last: bool| async move {
        let claimed = fixtures::claim(repo, &[id], now).await;
        let error = format!("boom {}", claimed[0].attempt);
        let resolution = if last {
            Resolution::Failed {
                error,
                permanent: false,
            }
        } else {
            Resolution::Retry {
                available_at: now,
                error,
            }
        };
        fixtures::finish(repo, &fixtures::leases(&claimed), resolution, now).await;
    };
    let attempts = limit + 3;
    for attempt in 1..=attempts {
        now += secs(1);
        fail_once(now, attempt == attempts).await;
    }
    let listed = fixtures::item(repo, &tenant, batch.id, id).await;
    assert_eq!(listed.status, ItemStatus::Failed);
    assert_eq!(listed.error_count, attempts, "every failure is counted");
    let kept: Vec<u32> = listed.errors.iter().map(|e| e.attempt).collect();
    assert_eq!(
        kept,
        (4..=attempts).collect::<Vec<_>>(),
        "only the last {limit} attempts are kept, oldest first"
    );
    assert_eq!(
        listed.errors.last().map(|e| e.message.as_str()),
        Some(format!("boom {attempts}").as_str())
    );

    // A re-drive starts the attempts again; the history stays bounded.
    now += secs(1);
    repo.retry_failed(&tenant, batch.id, now)
        .await
        .expect("retry_failed failed")
        .expect("the batch exists for its tenant");
    now += secs(1);
    fail_once(now, true).await;
    let listed = fixtures::item(repo, &tenant, batch.id, id).await;
    assert_eq!(listed.error_count, attempts + 1);
    assert_eq!(listed.errors.len(), ERROR_HISTORY_LIMIT);
    let kept: Vec<u32> = listed.errors.iter().map(|e| e.attempt).collect();
    let mut expected: Vec<u32> = (5..=attempts).collect();
    expected.push(1);
    assert_eq!(kept, expected, "the re-driven attempt 1 comes last");
}

/// `Failed` makes item and organization `Failed`, appends the error and
/// sets `finished_at = now`.
pub async fn finish_failed_moves_item_to_dead_letter(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let claimed = fixtures::claim(repo, &fixtures::ids(&items), t0).await;
    let lease_of = |id: ItemId| {
        claimed
            .iter()
            .find(|c| c.lease.item_id == id)
            .map(|c| c.lease)
            .expect("claimed")
    };

    let t1 = t0 + secs(3);
    let finishes = [
        crate::repository::Finish {
            lease: lease_of(items[0].item_id),
            resolution: Resolution::Failed {
                error: "bad data".into(),
                permanent: true,
            },
        },
        crate::repository::Finish {
            lease: lease_of(items[1].item_id),
            resolution: Resolution::Failed {
                error: "out of attempts".into(),
                permanent: false,
            },
        },
    ];
    let applied = repo
        .finish_items(&finishes, t1, fixtures::STALE_AFTER)
        .await
        .expect("finish_items failed");
    assert_eq!(applied.len(), 2, "both failures are applied");
    for (stored, (message, permanent)) in items
        .iter()
        .zip([("bad data", true), ("out of attempts", false)])
    {
        let listed = fixtures::item(repo, &tenant, batch.id, stored.item_id).await;
        assert_eq!(listed.status, ItemStatus::Failed);
        assert_eq!(listed.finished_at, Some(t1));
        assert_eq!(
            listed.errors,
            vec![AttemptError {
                attempt: 1,
                at: t1,
                message: message.into(),
                permanent,
            }]
        );
        let organization = fixtures::stored_organization(repo, &tenant, &stored.domain).await;
        assert_eq!(organization.status, ItemStatus::Failed);
    }
    let status = fixtures::status(repo, &tenant, batch.id).await;
    assert_eq!(status.counts.failed, 2);
    let again = repo
        .claim_items(&fixtures::claim_request(&fixtures::ids(&items), t1))
        .await
        .expect("claim_items failed");
    assert!(again.is_empty(), "a failed item is not claimable");
}

/// `release_items` is fenced like `finish_items`; released items are
/// `Pending`, available at `now`, lease cleared, `attempts - 1`, and come
/// back as jobs to enqueue.
pub async fn release_returns_items_to_pending(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 3, ConflictPolicy::Update);
    let t0 = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;
    let ids = fixtures::ids(&items);
    let claimed = fixtures::claim(repo, &ids, t0).await;
    let lease_of = |id: ItemId| {
        claimed
            .iter()
            .find(|c| c.lease.item_id == id)
            .map(|c| c.lease)
            .expect("claimed")
    };

    let t1 = t0 + secs(3);
    let wrong = Lease {
        item_id: ids[2],
        token: LeaseToken::new(),
    };
    let jobs = repo
        .release_items(&[lease_of(ids[0]), lease_of(ids[1]), wrong], t1)
        .await
        .expect("release_items failed");
    let released: HashSet<ItemId> = jobs.iter().map(|j| j.item_id).collect();
    assert_eq!(
        released,
        HashSet::from([ids[0], ids[1]]),
        "one job per released item, none for a wrong token"
    );
    assert_eq!(jobs.len(), 2);
    assert!(
        jobs.iter()
            .all(|j| j.tenant == tenant && j.not_before.is_none()),
        "jobs carry the tenant and are ready at once"
    );
    let again = repo
        .release_items(&[lease_of(ids[0])], t1)
        .await
        .expect("release_items failed");
    assert!(again.is_empty(), "a released lease releases nothing again");
    for &id in &ids[..2] {
        let listed = fixtures::item(repo, &tenant, batch.id, id).await;
        assert_eq!(listed.status, ItemStatus::Pending);
        assert_eq!(listed.available_at, t1);
        assert_eq!(listed.lease_until, None);
        assert_eq!(listed.attempts, 0, "a released attempt is not counted");
    }
    let kept = fixtures::item(repo, &tenant, batch.id, ids[2]).await;
    assert_eq!((kept.status, kept.attempts), (ItemStatus::Processing, 1));

    let reclaimed = fixtures::claim(repo, &ids[..1], t1).await;
    assert_eq!(reclaimed[0].attempt, 1, "the next claim is attempt 1 again");
    fixtures::finish(
        repo,
        &[reclaimed[0].lease, lease_of(ids[2])],
        Resolution::Completed,
        t1,
    )
    .await;
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}
