//! Cases of `store_submission`.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::Barrier;
use uuid::Uuid;

use crate::model::{Change, ConflictPolicy, ItemStatus};
use crate::repository::{OrgRepository, Resolution, StoreResult, Submission};
use crate::testing::fixtures::{self, secs};
use crate::testing::TestBackend;

/// A random idempotency key.
fn key() -> String {
    format!("key-{}", Uuid::new_v4().simple())
}

/// Asserts that nothing of `submission` is visible: no batch, and no
/// organization row for any domain in `new_domains`.
async fn assert_nothing_stored(
    repository: &dyn OrgRepository,
    submission: &Submission,
    new_domains: &[crate::model::Domain],
    why: &str,
) {
    let status = repository
        .batch_status(&submission.tenant, submission.batch_id)
        .await
        .expect("batch_status failed");
    assert!(
        status.is_none(),
        "{why}: the batch of the refused submission is visible: {status:?}"
    );
    for domain in new_domains {
        let organization = repository
            .organization_by_domain(&submission.tenant, domain)
            .await
            .expect("organization_by_domain failed");
        assert!(
            organization.is_none(),
            "{why}: an organization of the refused submission was written: {organization:?}"
        );
    }
}

/// The batch of the one `Stored` among concurrent stores.
///
/// # Panics
///
/// When not exactly one store answered `Stored`.
fn the_one_stored(results: &[StoreResult]) -> crate::model::BatchId {
    let stored: Vec<_> = results
        .iter()
        .filter_map(|r| match r {
            StoreResult::Stored { batch, .. } => Some(batch.id),
            _ => None,
        })
        .collect();
    assert_eq!(
        stored.len(),
        1,
        "exactly one concurrent store wins: {results:?}"
    );
    stored[0]
}

/// All or nothing: a refused submission leaves no batch, no items and no
/// organization changes behind.
pub async fn store_is_all_or_nothing(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let key = key();
    let mut first = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    first.idempotency_key = Some(key.clone());
    let (first_batch, _) = fixtures::store(repo, &first).await;
    let existing = fixtures::organizations_of(&first)[0].clone();

    // Another request under the same key: new domains and a change to an existing one.
    let new_orgs: Vec<_> = (0..3)
        .map(|_| fixtures::organization(&fixtures::domain()))
        .collect();
    let mut orgs = vec![fixtures::renamed(&existing)];
    orgs.extend(new_orgs.iter().cloned());
    let mut second = fixtures::submission_of(&tenant, orgs, ConflictPolicy::Update);
    second.idempotency_key = Some(key);
    second.chunk_size = 1;
    let result = repo
        .store_submission(&second)
        .await
        .expect("store_submission failed");
    match result {
        StoreResult::KeyConflict { batch } => assert_eq!(batch.id, first_batch.id),
        other => panic!("a reused key with another hash answered {other:?}, not KeyConflict"),
    }
    let new_domains: Vec<_> = new_orgs.iter().map(|o| o.domain.clone()).collect();
    assert_nothing_stored(repo, &second, &new_domains, "key conflict").await;
    let kept = fixtures::stored_organization(repo, &tenant, &existing.domain).await;
    assert_eq!(
        (kept.name.as_str(), kept.version),
        (existing.name.as_str(), 1),
        "a refused submission updated an existing organization"
    );
    let versions = repo
        .organization_versions(&tenant, &existing.domain)
        .await
        .expect("organization_versions failed")
        .expect("the organization exists");
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1],
        "a refused submission recorded a version"
    );
    assert_eq!(
        fixtures::status(repo, &tenant, first_batch.id)
            .await
            .counts
            .total(),
        2,
        "a refused submission changed the items of the first batch"
    );

    // A submission reusing an existing batch id is a caller bug; a backend
    // may refuse it, but if it does it must refuse all of it.
    let other_orgs: Vec<_> = (0..3)
        .map(|_| fixtures::organization(&fixtures::domain()))
        .collect();
    let mut reuse = fixtures::submission_of(&tenant, other_orgs.clone(), ConflictPolicy::Update);
    reuse.batch_id = first_batch.id;
    reuse.chunk_size = 1;
    if repo.store_submission(&reuse).await.is_err() {
        for org in &other_orgs {
            let organization = repo
                .organization_by_domain(&tenant, &org.domain)
                .await
                .expect("organization_by_domain failed");
            assert!(
                organization.is_none(),
                "store_submission failed but wrote organization {organization:?}"
            );
        }
        let status = fixtures::status(repo, &tenant, first_batch.id).await;
        assert_eq!(
            status.batch, first_batch,
            "store_submission failed but changed the existing batch"
        );
        assert_eq!(
            status.counts.total(),
            2,
            "store_submission failed but wrote items"
        );
    }
    fixtures::cancel_quietly(repo, &tenant, &[first_batch.id]).await;
}

/// A new domain is inserted: `Created`, version 1, status pending; its item
/// is `Pending`, available at `now`.
pub async fn store_inserts_new_domains(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let mut submission = fixtures::submission(&tenant, 3, ConflictPolicy::Update);
    // Positions of a partial request have gaps.
    for (i, (position, _)) in submission.organizations.iter_mut().enumerate() {
        *position = u32::try_from(i * 2 + 1).expect("small position");
    }
    submission.idempotency_key = Some(key());
    let now = submission.now;
    let (batch, items) = fixtures::store(repo, &submission).await;

    assert_eq!(batch.id, submission.batch_id);
    assert_eq!(batch.tenant, tenant);
    assert_eq!(batch.idempotency_key, submission.idempotency_key);
    assert_eq!(batch.request_hash, submission.request_hash);
    assert_eq!(batch.total, 3);
    assert_eq!(batch.policy, ConflictPolicy::Update);
    assert_eq!(batch.mode, submission.mode);
    assert_eq!(batch.created_at, now);
    assert_eq!(
        (batch.completed_at, batch.cancelled_at, batch.announced_at),
        (None, None, None)
    );

    assert_eq!(items.len(), 3, "one stored item per organization");
    for (item, (position, org)) in items.iter().zip(&submission.organizations) {
        assert_eq!(item.position, *position, "items are in request order");
        assert_eq!(item.domain, org.domain);
        assert_eq!(item.change, Change::Created);
        assert_eq!(item.status, ItemStatus::Pending);

        let stored = fixtures::stored_organization(repo, &tenant, &org.domain).await;
        assert_eq!(stored.id, item.organization_id);
        assert_eq!(stored.name, org.name);
        assert_eq!(stored.contact_email, org.contact_email);
        assert_eq!(stored.version, 1, "a new organization has version 1");
        assert_eq!(stored.status, ItemStatus::Pending);
        assert_eq!((stored.created_at, stored.updated_at), (now, now));
        assert_eq!(stored.deleted_at, None);
    }

    let listed = fixtures::all_items(repo, &tenant, batch.id).await;
    assert_eq!(listed.len(), 3);
    for (listed, stored) in listed.iter().zip(&items) {
        assert_eq!(listed.id, stored.item_id);
        assert_eq!(listed.batch_id, batch.id);
        assert_eq!(listed.position, stored.position);
        assert_eq!(listed.organization_id, stored.organization_id);
        assert_eq!(listed.status, ItemStatus::Pending);
        assert_eq!(listed.change, Change::Created);
        assert_eq!(listed.attempts, 0);
        assert_eq!(listed.available_at, now, "new work is available at `now`");
        assert_eq!(listed.lease_until, None);
        assert!(listed.errors.is_empty());
        assert_eq!(listed.created_at, now);
        assert_eq!(listed.finished_at, None);
    }

    let status = fixtures::status(repo, &tenant, batch.id).await;
    assert_eq!((status.counts.pending, status.counts.created), (3, 3));
    assert_eq!(status.counts.total(), 3);
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}

/// An existing domain with policy `Update` and a different name or
/// contact_email is updated: `Updated`, version + 1, `updated_at = now`.
pub async fn store_updates_changed_domains(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let first = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let t0 = first.now;
    let (first_batch, first_items) = fixtures::store(repo, &first).await;
    let orgs = fixtures::organizations_of(&first);

    let t1 = t0 + secs(10);
    let changed = vec![
        fixtures::renamed(&orgs[0]),
        crate::model::NewOrganization {
            contact_email: format!("other-{}", orgs[1].contact_email),
            ..orgs[1].clone()
        },
    ];
    let second = fixtures::submission_at(&tenant, changed.clone(), ConflictPolicy::Update, t1);
    let (second_batch, items) = fixtures::store(repo, &second).await;

    for ((item, new), old_item) in items.iter().zip(&changed).zip(&first_items) {
        assert_eq!(item.change, Change::Updated, "{} changed", new.domain);
        assert_eq!(item.status, ItemStatus::Pending);
        assert_eq!(item.organization_id, old_item.organization_id, "same row");
        let stored = fixtures::stored_organization(repo, &tenant, &new.domain).await;
        assert_eq!(stored.name, new.name);
        assert_eq!(stored.contact_email, new.contact_email);
        assert_eq!(stored.version, 2, "an update increments the version");
        assert_eq!(stored.created_at, t0);
        assert_eq!(stored.updated_at, t1);
        assert_eq!(stored.status, ItemStatus::Pending);
    }
    let status = fixtures::status(repo, &tenant, second_batch.id).await;
    assert_eq!((status.counts.updated, status.counts.pending), (2, 2));
    fixtures::cancel_quietly(repo, &tenant, &[first_batch.id, second_batch.id]).await;
}

/// An existing domain with policy `Update` and identical data is left as it
/// is: `Unchanged`, version and `updated_at` kept.
pub async fn store_keeps_identical_domains_unchanged(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let first = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let t0 = first.now;
    let (first_batch, _) = fixtures::store(repo, &first).await;
    let orgs = fixtures::organizations_of(&first);

    let t1 = t0 + secs(10);
    let second = fixtures::submission_at(&tenant, orgs.clone(), ConflictPolicy::Update, t1);
    let (second_batch, items) = fixtures::store(repo, &second).await;
    for (item, org) in items.iter().zip(&orgs) {
        assert_eq!(
            item.change,
            Change::Unchanged,
            "{} is identical",
            org.domain
        );
        // Its organization is pending, not completed: the item needs processing.
        assert_eq!(item.status, ItemStatus::Pending);
        let stored = fixtures::stored_organization(repo, &tenant, &org.domain).await;
        assert_eq!(
            stored.version, 1,
            "an unchanged organization keeps its version"
        );
        assert_eq!(
            stored.updated_at, t0,
            "an unchanged organization keeps updated_at"
        );
        assert_eq!(stored.name, org.name);
    }
    let status = fixtures::status(repo, &tenant, second_batch.id).await;
    assert_eq!(status.counts.unchanged, 2);
    fixtures::cancel_quietly(repo, &tenant, &[first_batch.id, second_batch.id]).await;
}

/// An existing domain with policy `Skip` is left as it is (`Skipped`), with
/// different or identical data.
pub async fn store_skips_existing_domains(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let first = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let t0 = first.now;
    let (first_batch, _) = fixtures::store(repo, &first).await;
    let orgs = fixtures::organizations_of(&first);

    let t1 = t0 + secs(10);
    let submitted = vec![fixtures::renamed(&orgs[0]), orgs[1].clone()];
    let second = fixtures::submission_at(&tenant, submitted, ConflictPolicy::Skip, t1);
    let (second_batch, items) = fixtures::store(repo, &second).await;
    for (item, org) in items.iter().zip(&orgs) {
        assert_eq!(
            item.change,
            Change::Skipped,
            "policy skip on {}",
            org.domain
        );
        assert_eq!(
            item.status,
            ItemStatus::Completed,
            "a skipped item is stored completed"
        );
        let stored = fixtures::stored_organization(repo, &tenant, &org.domain).await;
        assert_eq!(stored.name, org.name, "policy skip keeps the existing row");
        assert_eq!(stored.version, 1);
        assert_eq!(stored.updated_at, t0);
        assert_eq!(
            stored.status,
            ItemStatus::Pending,
            "skip leaves the status alone"
        );
    }
    let status = fixtures::status(repo, &tenant, second_batch.id).await;
    assert_eq!((status.counts.skipped, status.counts.completed), (2, 2));
    assert_eq!(
        status.batch.completed_at,
        Some(t1),
        "a batch of skipped items is completed on arrival"
    );

    // A skipped domain beside a new one: the batch waits for the new one.
    let t2 = t1 + secs(10);
    let new_org = fixtures::organization(&fixtures::domain());
    let third = fixtures::submission_at(
        &tenant,
        vec![orgs[0].clone(), new_org.clone()],
        ConflictPolicy::Skip,
        t2,
    );
    let (third_batch, items) = fixtures::store(repo, &third).await;
    let got: Vec<_> = items.iter().map(|i| (i.change, i.status)).collect();
    assert_eq!(
        got,
        [
            (Change::Skipped, ItemStatus::Completed),
            (Change::Created, ItemStatus::Pending)
        ]
    );
    let status = fixtures::status(repo, &tenant, third_batch.id).await;
    assert_eq!(
        (
            status.counts.skipped,
            status.counts.pending,
            status.batch.completed_at
        ),
        (1, 1, None),
        "a batch with a new organization is not completed on arrival"
    );
    fixtures::cancel_quietly(repo, &tenant, &[first_batch.id, third_batch.id]).await;
}

/// Skipped items, and unchanged items whose organization is `Completed`
/// (unless `reprocess_unchanged`), are stored `Completed`; other items are
/// `Pending`, available at `now`.
pub async fn store_completes_skipped_and_already_processed_items(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let first = fixtures::submission(&tenant, 4, ConflictPolicy::Update);
    let t0 = first.now;
    let (first_batch, first_items) = fixtures::store(repo, &first).await;
    let orgs = fixtures::organizations_of(&first);
    // Three organizations processed, the fourth failed.
    let ids = fixtures::ids(&first_items);
    fixtures::process(repo, &ids[..3], t0).await;
    let claimed = fixtures::claim(repo, &ids[3..], t0).await;
    let failed = Resolution::Failed {
        error: "permanent".into(),
        permanent: true,
    };
    fixtures::finish(repo, &fixtures::leases(&claimed), failed, t0).await;

    // Identical data again, plus one new organization.
    let t1 = t0 + secs(10);
    let mut again = orgs.clone();
    again.push(fixtures::organization(&fixtures::domain()));
    let second = fixtures::submission_at(&tenant, again.clone(), ConflictPolicy::Update, t1);
    let (second_batch, items) = fixtures::store(repo, &second).await;
    let expected = [
        (Change::Unchanged, ItemStatus::Completed),
        (Change::Unchanged, ItemStatus::Completed),
        (Change::Unchanged, ItemStatus::Completed),
        (Change::Unchanged, ItemStatus::Pending), // its organization failed
        (Change::Created, ItemStatus::Pending),
    ];
    let got: Vec<_> = items.iter().map(|i| (i.change, i.status)).collect();
    assert_eq!(got, expected, "stored items (change, status)");
    let listed = fixtures::all_items(repo, &tenant, second_batch.id).await;
    for item in &listed {
        match item.status {
            ItemStatus::Completed => assert_eq!(
                item.finished_at,
                Some(t1),
                "an item stored completed finished at `now`"
            ),
            _ => assert_eq!(
                item.available_at, t1,
                "a pending item is available at `now`"
            ),
        }
    }
    for org in &orgs[..3] {
        let stored = fixtures::stored_organization(repo, &tenant, &org.domain).await;
        assert_eq!(
            stored.status,
            ItemStatus::Completed,
            "nothing to do for {}",
            org.domain
        );
    }

    // With reprocess_unchanged, unchanged completed organizations are processed again.
    let t2 = t1 + secs(10);
    let mut third =
        fixtures::submission_at(&tenant, orgs[..3].to_vec(), ConflictPolicy::Update, t2);
    third.reprocess_unchanged = true;
    let (third_batch, items) = fixtures::store(repo, &third).await;
    for item in &items {
        assert_eq!(
            (item.change, item.status),
            (Change::Unchanged, ItemStatus::Pending),
            "reprocess_unchanged makes unchanged items pending"
        );
    }
    fixtures::cancel_quietly(
        repo,
        &tenant,
        &[first_batch.id, second_batch.id, third_batch.id],
    )
    .await;
}

/// The organization's status becomes `Pending` when its item is pending.
pub async fn store_makes_organization_pending_with_its_item(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let first = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let t0 = first.now;
    let (first_batch, first_items) = fixtures::store(repo, &first).await;
    let orgs = fixtures::organizations_of(&first);
    fixtures::process(repo, &fixtures::ids(&first_items), t0).await;

    let t1 = t0 + secs(10);
    let submitted = vec![fixtures::renamed(&orgs[0]), orgs[1].clone()];
    let second = fixtures::submission_at(&tenant, submitted, ConflictPolicy::Update, t1);
    let (second_batch, items) = fixtures::store(repo, &second).await;
    assert_eq!(
        (items[0].change, items[0].status),
        (Change::Updated, ItemStatus::Pending)
    );
    assert_eq!(
        (items[1].change, items[1].status),
        (Change::Unchanged, ItemStatus::Completed)
    );
    let updated = fixtures::stored_organization(repo, &tenant, &orgs[0].domain).await;
    assert_eq!(
        updated.status,
        ItemStatus::Pending,
        "an organization with a pending item is pending"
    );
    let unchanged = fixtures::stored_organization(repo, &tenant, &orgs[1].domain).await;
    assert_eq!(
        unchanged.status,
        ItemStatus::Completed,
        "an organization whose item is stored completed stays completed"
    );
    fixtures::cancel_quietly(repo, &tenant, &[first_batch.id, second_batch.id]).await;
}

/// The same `(tenant, idempotency_key)` with the same `request_hash`
/// answers `Replayed` with the first batch and writes nothing; keys are per tenant.
pub async fn store_replays_same_key_and_hash(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let mut first = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    first.idempotency_key = Some(key());
    let (first_batch, _) = fixtures::store(repo, &first).await;

    let mut replay = first.clone();
    replay.batch_id = crate::model::BatchId::new();
    replay.now = first.now + secs(5);
    match repo
        .store_submission(&replay)
        .await
        .expect("store_submission failed")
    {
        StoreResult::Replayed { batch } => {
            assert_eq!(batch.id, first_batch.id, "Replayed carries the first batch");
            assert_eq!(batch.request_hash, first_batch.request_hash);
            assert_eq!(batch.idempotency_key, first_batch.idempotency_key);
            assert_eq!(batch.total, first_batch.total);
        }
        other => panic!("the same key and hash answered {other:?}, not Replayed"),
    }
    assert_nothing_stored(repo, &replay, &[], "replay").await;
    assert_eq!(
        fixtures::status(repo, &tenant, first_batch.id)
            .await
            .counts
            .total(),
        2
    );
    for org in fixtures::organizations_of(&first) {
        let stored = fixtures::stored_organization(repo, &tenant, &org.domain).await;
        assert_eq!(stored.version, 1);
        assert_eq!(
            stored.updated_at, first.now,
            "a replay does not touch organizations"
        );
    }

    // Another tenant may use the same key.
    let other_tenant = fixtures::tenant();
    let mut other = fixtures::submission(&other_tenant, 1, ConflictPolicy::Update);
    other.idempotency_key = first.idempotency_key.clone();
    other.request_hash = first.request_hash.clone();
    let (other_batch, _) = fixtures::store(repo, &other).await;
    assert_eq!(other_batch.id, other.batch_id);
    fixtures::cancel_quietly(repo, &tenant, &[first_batch.id]).await;
    fixtures::cancel_quietly(repo, &other_tenant, &[other_batch.id]).await;
}

/// The same `(tenant, idempotency_key)` with another `request_hash` answers
/// `KeyConflict` with the first batch and writes nothing.
pub async fn store_rejects_same_key_with_other_hash(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let mut first = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    first.idempotency_key = Some(key());
    let (first_batch, _) = fixtures::store(repo, &first).await;

    let orgs = fixtures::organizations_of(&first);
    let renamed: Vec<_> = orgs.iter().map(fixtures::renamed).collect();
    let mut conflict = fixtures::submission_of(&tenant, renamed, ConflictPolicy::Update);
    conflict.idempotency_key = first.idempotency_key.clone();
    match repo
        .store_submission(&conflict)
        .await
        .expect("store_submission failed")
    {
        StoreResult::KeyConflict { batch } => {
            assert_eq!(
                batch.id, first_batch.id,
                "KeyConflict carries the first batch"
            );
        }
        other => panic!("the same key with another hash answered {other:?}, not KeyConflict"),
    }
    assert_nothing_stored(repo, &conflict, &[], "key conflict").await;
    for org in &orgs {
        let stored = fixtures::stored_organization(repo, &tenant, &org.domain).await;
        assert_eq!(
            (stored.name.as_str(), stored.version),
            (org.name.as_str(), 1),
            "a key conflict does not update organizations"
        );
    }
    fixtures::cancel_quietly(repo, &tenant, &[first_batch.id]).await;
}

/// Replay and key conflict write nothing under concurrent calls: of 8
/// concurrent submissions with one key, exactly one is `Stored`.
pub async fn store_idempotency_holds_under_concurrency(backend: TestBackend) {
    const TASKS: usize = 8;
    let repo = &backend.repository;
    let tenant = fixtures::tenant();

    // Round 1: the same request 8 times (a client retrying): one Stored, 7 Replayed.
    let mut template = fixtures::submission(&tenant, 5, ConflictPolicy::Update);
    template.idempotency_key = Some(key());
    let submissions: Vec<Submission> = (0..TASKS)
        .map(|_| Submission {
            batch_id: crate::model::BatchId::new(),
            ..template.clone()
        })
        .collect();
    let results = store_concurrently(repo, &submissions).await;
    let winner = the_one_stored(&results);
    for result in &results {
        match result {
            StoreResult::Stored { .. } => {}
            StoreResult::Replayed { batch } => assert_eq!(batch.id, winner),
            StoreResult::KeyConflict { .. } => panic!("the same request answered KeyConflict"),
        }
    }
    for submission in submissions.iter().filter(|s| s.batch_id != winner) {
        assert_nothing_stored(&**repo, submission, &[], "concurrent replay").await;
    }
    assert_eq!(
        fixtures::status(&**repo, &tenant, winner)
            .await
            .counts
            .total(),
        5
    );
    for org in fixtures::organizations_of(&template) {
        assert_eq!(
            fixtures::stored_organization(&**repo, &tenant, &org.domain)
                .await
                .version,
            1
        );
    }

    // Round 2: 8 different requests under one new key: one Stored, 7 KeyConflict.
    let key = key();
    let submissions: Vec<Submission> = (0..TASKS)
        .map(|_| {
            let mut s = fixtures::submission(&tenant, 3, ConflictPolicy::Update);
            s.idempotency_key = Some(key.clone());
            s
        })
        .collect();
    let results = store_concurrently(repo, &submissions).await;
    let winner2 = the_one_stored(&results);
    for (submission, result) in submissions.iter().zip(&results) {
        match result {
            StoreResult::Stored { .. } => {}
            StoreResult::KeyConflict { batch } => {
                assert_eq!(batch.id, winner2);
                let domains: Vec<_> = submission
                    .organizations
                    .iter()
                    .map(|(_, o)| o.domain.clone())
                    .collect();
                assert_nothing_stored(&**repo, submission, &domains, "concurrent key conflict")
                    .await;
            }
            StoreResult::Replayed { .. } => panic!("another request answered Replayed"),
        }
    }
    fixtures::cancel_quietly(&**repo, &tenant, &[winner, winner2]).await;
}

/// Runs one `store_submission` per submission, all at once.
async fn store_concurrently(
    repository: &Arc<dyn OrgRepository>,
    submissions: &[Submission],
) -> Vec<StoreResult> {
    let barrier = Arc::new(Barrier::new(submissions.len()));
    let tasks: Vec<_> = submissions
        .iter()
        .cloned()
        .map(|submission| {
            let repository = Arc::clone(repository);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                repository.store_submission(&submission).await
            })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        let result = task
            .await
            .expect("a concurrent store_submission task panicked");
        results.push(result.expect("a concurrent store_submission failed"));
    }
    results
}

/// A batch whose items are all completed at store time is stored with
/// `completed_at = now`; one with a pending item is not.
pub async fn store_completes_batch_when_nothing_is_pending(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let first = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    let t0 = first.now;
    let (first_batch, first_items) = fixtures::store(repo, &first).await;
    let orgs = fixtures::organizations_of(&first);
    fixtures::process(repo, &fixtures::ids(&first_items), t0).await;

    for (i, policy) in [ConflictPolicy::Skip, ConflictPolicy::Update]
        .into_iter()
        .enumerate()
    {
        let now = t0 + secs(10 * (i as i64 + 1));
        let submission = fixtures::submission_at(&tenant, orgs.clone(), policy, now);
        let (batch, items) = fixtures::store(repo, &submission).await;
        assert!(items.iter().all(|i| i.status == ItemStatus::Completed));
        assert_eq!(
            batch.completed_at,
            Some(now),
            "a batch with nothing to process ({policy:?}) is completed at store time"
        );
        let status = fixtures::status(repo, &tenant, batch.id).await;
        assert_eq!(status.batch.completed_at, Some(now));
        assert_eq!(status.counts.completed, 2);
    }

    let mut mixed = orgs.clone();
    mixed.push(fixtures::organization(&fixtures::domain()));
    let submission = fixtures::submission_at(&tenant, mixed, ConflictPolicy::Skip, t0 + secs(30));
    let (open, _) = fixtures::store(repo, &submission).await;
    assert_eq!(
        open.completed_at, None,
        "a batch with a pending item is open"
    );
    fixtures::cancel_quietly(repo, &tenant, &[first_batch.id, open.id]).await;
}

/// A submission of 1000 organizations (several chunks) stores 1000 items.
pub async fn store_stores_large_submissions(backend: TestBackend) {
    const N: usize = 1000;
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, N, ConflictPolicy::Update);
    let (batch, items) = fixtures::store(repo, &submission).await;
    assert_eq!(batch.total as usize, N);
    assert_eq!(items.len(), N);
    let item_ids: HashSet<_> = items.iter().map(|i| i.item_id).collect();
    assert_eq!(item_ids.len(), N, "item ids are unique");
    for (item, (position, org)) in items.iter().zip(&submission.organizations) {
        assert_eq!((item.position, &item.domain), (*position, &org.domain));
        assert_eq!(
            (item.change, item.status),
            (Change::Created, ItemStatus::Pending)
        );
    }
    let status = fixtures::status(repo, &tenant, batch.id).await;
    assert_eq!(
        (status.counts.pending, status.counts.created),
        (N as u32, N as u32)
    );
    let listed = fixtures::all_items(repo, &tenant, batch.id).await;
    let positions: Vec<u32> = listed.iter().map(|i| i.position).collect();
    let expected: Vec<u32> = submission.organizations.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        positions, expected,
        "every item is listed once, by position"
    );
    let last = &submission.organizations[N - 1].1;
    fixtures::stored_organization(repo, &tenant, &last.domain).await;
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
}
