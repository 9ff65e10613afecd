//! Focused cases on the repository and queue of one engine.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::Duration as ChronoDuration;
use onboarding_core::model::{
    now, BatchId, Change, ConflictPolicy, Domain, ItemId, ItemStatus, LeaseToken, NewOrganization,
    SubmitMode, TenantId, Timestamp,
};
use onboarding_core::repository::{
    ClaimRequest, Finish, ItemQuery, Lease, OrgRepository, Resolution, StoreResult, Submission,
};
use onboarding_core::{Job, JobQueue};
use onboarding_sqlx::SqlBackend;

fn tenant() -> TenantId {
    TenantId::parse(format!(
        "t-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    ))
    .unwrap()
}

fn prefix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

fn org(p: &str, n: usize, name: &str) -> NewOrganization {
    NewOrganization {
        name: name.to_owned(),
        domain: Domain::from_normalized(format!("org{n}-{p}.example.com")),
        contact_email: format!("ops{n}@example.com"),
    }
}

fn submission(t: &TenantId, orgs: Vec<NewOrganization>, policy: ConflictPolicy) -> Submission {
    let at = now();
    Submission {
        batch_id: BatchId::new(),
        tenant: t.clone(),
        idempotency_key: None,
        request_hash: "h".repeat(64),
        policy,
        mode: SubmitMode::Atomic,
        organizations: orgs
            .into_iter()
            .enumerate()
            .map(|(i, o)| (i as u32, o))
            .collect(),
        chunk_size: 500,
        reprocess_unchanged: false,
        now: at,
        sweep_at: at + ChronoDuration::seconds(60),
    }
}

async fn store(
    repo: &Arc<dyn OrgRepository>,
    s: &Submission,
) -> Vec<onboarding_core::repository::StoredItem> {
    match repo.store_submission(s).await.unwrap() {
        StoreResult::Stored { items, .. } => items,
        other => panic!("expected Stored, got {other:?}"),
    }
}

fn ms(n: i64) -> ChronoDuration {
    ChronoDuration::milliseconds(n)
}

async fn claim(
    repo: &Arc<dyn OrgRepository>,
    ids: &[ItemId],
    at: Timestamp,
    lease: ChronoDuration,
) -> (LeaseToken, Vec<onboarding_core::repository::ClaimedItem>) {
    let token = LeaseToken::new();
    let claimed = repo
        .claim_items(&ClaimRequest {
            item_ids: ids.to_vec(),
            token,
            now: at,
            lease_until: at + lease,
        })
        .await
        .unwrap();
    (token, claimed)
}

pub async fn upsert_outcomes(b: SqlBackend) {
    let repo = b.repository();
    let t = tenant();
    let p = prefix();
    let first = submission(
        &t,
        (0..3).map(|n| org(&p, n, &format!("Org {n}"))).collect(),
        ConflictPolicy::Update,
    );
    let items = store(&repo, &first).await;
    assert!(items
        .iter()
        .all(|i| i.change == Change::Created && i.status == ItemStatus::Pending));
    let before = repo
        .organization_by_domain(&items[0].domain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(before.version, 1);
    assert_eq!(before.status, ItemStatus::Pending);

    // Complete org 0 so an identical resubmission of it needs no processing.
    let (token, claimed) = claim(&repo, &[items[0].item_id], now(), ms(5_000)).await;
    assert_eq!(claimed.len(), 1);
    let applied = repo
        .finish_items(
            &[Finish {
                lease: Lease {
                    item_id: items[0].item_id,
                    token,
                },
                resolution: Resolution::Completed,
            }],
            now(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(applied, vec![items[0].item_id]);
    let completed = repo
        .organization_by_domain(&items[0].domain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(completed.status, ItemStatus::Completed);

    // Same data again: unchanged; org 0 completed → item completed; version and updated_at kept.
    let mut again = submission(
        &t,
        (0..3).map(|n| org(&p, n, &format!("Org {n}"))).collect(),
        ConflictPolicy::Update,
    );
    // One changed name: updated.
    again.organizations[2].1.name = "Org 2 renamed".into();
    // One new domain.
    again.organizations.push((3, org(&p, 3, "Org 3")));
    let items2 = store(&repo, &again).await;
    let changes: Vec<Change> = items2.iter().map(|i| i.change).collect();
    assert_eq!(
        changes,
        vec![
            Change::Unchanged,
            Change::Unchanged,
            Change::Updated,
            Change::Created
        ]
    );
    assert_eq!(
        items2[0].status,
        ItemStatus::Completed,
        "unchanged + completed needs nothing"
    );
    assert_eq!(
        items2[1].status,
        ItemStatus::Pending,
        "unchanged, not yet processed"
    );
    assert_eq!(items2[2].status, ItemStatus::Pending);
    assert_eq!(items2[0].organization_id, items[0].organization_id);
    let after = repo
        .organization_by_domain(&items[0].domain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.version, 1);
    assert_eq!(
        after.updated_at, completed.updated_at,
        "unchanged keeps updated_at"
    );
    assert_eq!(after.status, ItemStatus::Completed);
    let renamed = repo
        .organization_by_domain(&items[2].domain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(renamed.version, 2);
    assert_eq!(renamed.name, "Org 2 renamed");

    // Skip: rows kept, items completed.
    let mut skip = submission(
        &t,
        (0..2).map(|n| org(&p, n, "Other")).collect(),
        ConflictPolicy::Skip,
    );
    skip.organizations.push((2, org(&p, 9, "Fresh")));
    let items3 = store(&repo, &skip).await;
    assert_eq!(items3[0].change, Change::Skipped);
    assert_eq!(items3[0].status, ItemStatus::Completed);
    assert_eq!(items3[2].change, Change::Created);
    let kept = repo
        .organization_by_domain(&items[1].domain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.name, "Org 1");
    let status = repo.batch_status(&t, skip.batch_id).await.unwrap().unwrap();
    assert_eq!(status.counts.skipped, 2);
    assert_eq!(status.counts.created, 1);
    assert_eq!(status.counts.pending, 1);
    assert_eq!(status.counts.completed, 2);
    assert_eq!(status.batch.completed_at, None);

    // All skipped: the batch is stored completed.
    let all_skip = submission(
        &t,
        (0..2).map(|n| org(&p, n, "x")).collect(),
        ConflictPolicy::Skip,
    );
    match repo.store_submission(&all_skip).await.unwrap() {
        StoreResult::Stored { batch, .. } => assert_eq!(batch.completed_at, Some(all_skip.now)),
        other => panic!("{other:?}"),
    }
    let other = tenant();
    assert!(repo
        .batch_status(&other, all_skip.batch_id)
        .await
        .unwrap()
        .is_none());
}

pub async fn idempotency_replay_and_conflict(b: SqlBackend) {
    let repo = b.repository();
    let t = tenant();
    let p = prefix();
    let mut s = submission(&t, vec![org(&p, 0, "A")], ConflictPolicy::Update);
    s.idempotency_key = Some("key-1".into());
    let first = store(&repo, &s).await;
    assert_eq!(first.len(), 1);
    let mut replay = submission(&t, vec![org(&p, 0, "A")], ConflictPolicy::Update);
    replay.idempotency_key = Some("key-1".into());
    match repo.store_submission(&replay).await.unwrap() {
        StoreResult::Replayed { batch } => assert_eq!(batch.id, s.batch_id),
        other => panic!("{other:?}"),
    }
    let mut conflict = submission(&t, vec![org(&p, 1, "B")], ConflictPolicy::Update);
    conflict.idempotency_key = Some("key-1".into());
    conflict.request_hash = "0".repeat(64);
    match repo.store_submission(&conflict).await.unwrap() {
        StoreResult::KeyConflict { batch } => assert_eq!(batch.id, s.batch_id),
        other => panic!("{other:?}"),
    }
    assert!(repo
        .organization_by_domain(&org(&p, 1, "B").domain)
        .await
        .unwrap()
        .is_none());

    // Concurrent calls with one key: exactly one stores.
    let key = format!("race-{p}");
    let mut tasks = Vec::new();
    for n in 0..4 {
        let repo = repo.clone();
        let mut s = submission(&t, vec![org(&p, 10 + n, "R")], ConflictPolicy::Update);
        s.idempotency_key = Some(key.clone());
        tasks.push(tokio::spawn(async move { repo.store_submission(&s).await }));
    }
    let mut stored = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(StoreResult::Stored { .. }) => stored += 1,
            Ok(StoreResult::Replayed { .. }) => {}
            Ok(other) => panic!("{other:?}"),
            // A lock conflict may surface as a retryable error; it wrote nothing.
            Err(e) => assert!(e.is_retryable(), "{e:?}"),
        }
    }
    assert_eq!(stored, 1);
}

pub async fn claims_are_fenced(b: SqlBackend) {
    let repo = b.repository();
    let t = tenant();
    let p = prefix();
    let s = submission(
        &t,
        (0..3).map(|n| org(&p, n, "A")).collect(),
        ConflictPolicy::Update,
    );
    let items = store(&repo, &s).await;
    let ids: Vec<ItemId> = items.iter().map(|i| i.item_id).collect();
    let t0 = now();
    let (a, claimed) = claim(&repo, &ids, t0, ms(1_000)).await;
    assert_eq!(claimed.len(), 3);
    assert!(claimed
        .iter()
        .all(|c| c.attempt == 1 && c.tenant == t && c.batch_id == s.batch_id));
    // A claim reads the organization and leaves its status alone.
    assert_eq!(claimed[0].organization.status, ItemStatus::Pending);
    // Live lease: nobody else gets them; unknown ids are ignored.
    let mut with_unknown = ids.clone();
    with_unknown.push(ItemId::new());
    let (_, none) = claim(&repo, &with_unknown, t0 + ms(500), ms(1_000)).await;
    assert!(none.is_empty());
    // Heartbeat by the holder extends; by a stranger does nothing.
    let leases_a: Vec<Lease> = ids
        .iter()
        .map(|&item_id| Lease { item_id, token: a })
        .collect();
    let held = repo
        .extend_leases(&leases_a[..2], t0 + ms(500), t0 + ms(3_000))
        .await
        .unwrap();
    assert_eq!(held.len(), 2);
    let stranger: Vec<Lease> = ids
        .iter()
        .map(|&item_id| Lease {
            item_id,
            token: LeaseToken::new(),
        })
        .collect();
    assert!(repo
        .extend_leases(&stranger, t0, t0 + ms(9_000))
        .await
        .unwrap()
        .is_empty());
    // After the un-renewed lease expires, item 2 is taken over by B.
    let (bt, taken) = claim(&repo, &ids, t0 + ms(1_500), ms(1_000)).await;
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].lease.item_id, ids[2]);
    assert_eq!(taken[0].attempt, 2);
    // The zombie's finish of item 2 is refused; its other two apply.
    let zombie: Vec<Finish> = leases_a
        .iter()
        .map(|&lease| Finish {
            lease,
            resolution: Resolution::Completed,
        })
        .collect();
    let applied: HashSet<ItemId> = repo
        .finish_items(&zombie, now(), Duration::from_secs(60))
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(applied, ids[..2].iter().copied().collect());
    // Finishing twice applies nothing.
    assert!(repo
        .finish_items(&zombie, now(), Duration::from_secs(60))
        .await
        .unwrap()
        .is_empty());
    assert!(repo
        .complete_batches(&[s.batch_id], now())
        .await
        .unwrap()
        .is_empty());
    let done = repo
        .finish_items(
            &[Finish {
                lease: Lease {
                    item_id: ids[2],
                    token: bt,
                },
                resolution: Resolution::Completed,
            }],
            now(),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!(done, vec![ids[2]]);
    let completed = repo
        .complete_batches(&[s.batch_id, s.batch_id], now())
        .await
        .unwrap();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].counts.completed, 3);
    assert!(completed[0].batch.completed_at.is_some());
    assert!(repo
        .complete_batches(&[s.batch_id], now())
        .await
        .unwrap()
        .is_empty());
    assert!(repo
        .complete_open_batches(now(), 100)
        .await
        .unwrap()
        .is_empty());
    // Announce bookkeeping.
    let due = repo.unannounced_batches(now(), 10).await.unwrap();
    assert_eq!(due.len(), 1);
    repo.mark_announced(&[s.batch_id], now()).await.unwrap();
    assert!(repo
        .unannounced_batches(now(), 10)
        .await
        .unwrap()
        .is_empty());
    let org = repo
        .organization_by_domain(&items[2].domain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org.status, ItemStatus::Completed);
}

pub async fn concurrent_claims_take_each_item_once(b: SqlBackend) {
    let repo = b.repository();
    let t = tenant();
    let p = prefix();
    let s = submission(
        &t,
        (0..60).map(|n| org(&p, n, "A")).collect(),
        ConflictPolicy::Update,
    );
    let items = store(&repo, &s).await;
    let ids: Vec<ItemId> = items.iter().map(|i| i.item_id).collect();
    let mut tasks = Vec::new();
    for k in 0..6 {
        let repo = repo.clone();
        let mut mine = ids.clone();
        mine.rotate_left(k * 10);
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for _ in 0..20 {
                match claim_once(&repo, &mine).await {
                    Ok(c) => got.extend(c),
                    Err(e) => assert!(e.is_retryable(), "{e:?}"),
                }
            }
            got
        }));
    }
    let mut seen = HashMap::new();
    for task in tasks {
        for item in task.await.unwrap() {
            *seen.entry(item).or_insert(0) += 1;
        }
    }
    assert!(seen.values().all(|&n| n == 1), "an item was claimed twice");
    assert_eq!(seen.len(), 60);
}

async fn claim_once(
    repo: &Arc<dyn OrgRepository>,
    ids: &[ItemId],
) -> onboarding_core::Result<Vec<ItemId>> {
    let at = now();
    let claimed = repo
        .claim_items(&ClaimRequest {
            item_ids: ids.to_vec(),
            token: LeaseToken::new(),
            now: at,
            lease_until: at + ChronoDuration::seconds(60),
        })
        .await?;
    Ok(claimed.into_iter().map(|c| c.lease.item_id).collect())
}

pub async fn finish_retry_fail_and_redrive(b: SqlBackend) {
    let repo = b.repository();
    let t = tenant();
    let p = prefix();
    let s = submission(
        &t,
        (0..3).map(|n| org(&p, n, "A")).collect(),
        ConflictPolicy::Update,
    );
    let items = store(&repo, &s).await;
    let ids: Vec<ItemId> = items.iter().map(|i| i.item_id).collect();
    let t0 = now();
    let (tok, _) = claim(&repo, &ids, t0, ms(10_000)).await;
    let later = t0 + ms(200);
    let fin = |i: usize, resolution: Resolution| Finish {
        lease: Lease {
            item_id: ids[i],
            token: tok,
        },
        resolution,
    };
    let applied = repo
        .finish_items(
            &[
                fin(0, Resolution::Completed),
                fin(
                    1,
                    Resolution::Retry {
                        available_at: later,
                        error: "boom \"quoted\"".into(),
                    },
                ),
                fin(
                    2,
                    Resolution::Failed {
                        error: "poison".into(),
                        permanent: true,
                    },
                ),
            ],
            t0,
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(applied.len(), 3);
    let page = repo
        .list_items(
            &t,
            s.batch_id,
            &ItemQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    let it: Vec<_> = page.items;
    assert_eq!(it[0].status, ItemStatus::Completed);
    assert!(it[0].finished_at.is_some());
    assert_eq!(it[1].status, ItemStatus::Pending);
    assert_eq!(it[1].available_at, later);
    assert_eq!(it[1].lease_until, None);
    assert_eq!(it[1].errors.len(), 1);
    assert_eq!(it[1].errors[0].message, "boom \"quoted\"");
    assert_eq!(it[1].errors[0].attempt, 1);
    assert!(!it[1].errors[0].permanent);
    assert_eq!(it[2].status, ItemStatus::Failed);
    assert!(it[2].errors[0].permanent);
    let org2 = repo
        .organization_by_domain(&items[2].domain)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(org2.status, ItemStatus::Failed);
    // Not claimable before available_at; claimable after.
    let (_, early) = claim(&repo, &[ids[1]], t0 + ms(100), ms(1_000)).await;
    assert!(early.is_empty());
    let (tok2, again) = claim(&repo, &[ids[1]], later, ms(1_000)).await;
    assert_eq!(again[0].attempt, 2);
    repo.finish_items(
        &[Finish {
            lease: Lease {
                item_id: ids[1],
                token: tok2,
            },
            resolution: Resolution::Failed {
                error: "out of attempts".into(),
                permanent: false,
            },
        }],
        later,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let done = repo.complete_open_batches(now(), 100).await.unwrap();
    assert!(done.iter().any(|d| d.batch.id == s.batch_id));
    let failed = repo
        .list_items(
            &t,
            s.batch_id,
            &ItemQuery {
                status: Some(ItemStatus::Failed),
                limit: 10,
                after_position: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.items.len(), 2);
    assert_eq!(failed.items[0].errors.len(), 2);
    // Re-drive: pending again, attempts 0, history kept, completion cleared.
    let jobs = repo
        .retry_failed(&t, s.batch_id, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(jobs.len(), 2);
    let st = repo.batch_status(&t, s.batch_id).await.unwrap().unwrap();
    assert_eq!(st.counts.pending, 2);
    assert_eq!(st.batch.completed_at, None);
    let page = repo
        .list_items(
            &t,
            s.batch_id,
            &ItemQuery {
                limit: 1,
                after_position: Some(0),
                status: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.items[0].position, 1);
    assert_eq!(page.items[0].attempts, 0);
    assert_eq!(page.items[0].errors.len(), 2);
    assert_eq!(page.next_cursor, Some(1));
    assert!(repo
        .retry_failed(&tenant(), s.batch_id, now())
        .await
        .unwrap()
        .is_none());
}

pub async fn release_sweep_cancel_prune(b: SqlBackend) {
    let repo = b.repository();
    let t = tenant();
    let p = prefix();
    let mut s = submission(
        &t,
        (0..4).map(|n| org(&p, n, "A")).collect(),
        ConflictPolicy::Update,
    );
    s.sweep_at = s.now;
    let items = store(&repo, &s).await;
    let ids: Vec<ItemId> = items.iter().map(|i| i.item_id).collect();
    let t0 = now();
    let (tok, _) = claim(&repo, &ids[..2], t0, ms(300)).await;
    // Release item 0: pending, attempts back to 0, a job returned.
    let jobs = repo
        .release_items(
            &[Lease {
                item_id: ids[0],
                token: tok,
            }],
            t0,
        )
        .await
        .unwrap();
    assert_eq!(
        jobs,
        vec![Job {
            item_id: ids[0],
            tenant: t.clone(),
            not_before: None
        }]
    );
    assert!(repo
        .release_items(
            &[Lease {
                item_id: ids[0],
                token: tok
            }],
            t0
        )
        .await
        .unwrap()
        .is_empty());
    // Sweep after the lease expired: pending items (0, 2, 3) and the expired item 1.
    let at = t0 + ms(400);
    let swept: HashSet<ItemId> = repo
        .sweep(at, Duration::from_secs(60), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.tenant == t)
        .map(|j| j.item_id)
        .collect();
    assert_eq!(swept, ids.iter().copied().collect());
    // Pending ones moved their sweep_at; the expired lease is returned again.
    let again: HashSet<ItemId> = repo
        .sweep(at, Duration::from_secs(60), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.tenant == t)
        .map(|j| j.item_id)
        .collect();
    assert_eq!(again, [ids[1]].into_iter().collect());
    // Cancel: pending items stop, the processing one does not.
    let st = repo
        .cancel_batch(&t, s.batch_id, now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.counts.cancelled, 3);
    assert_eq!(st.counts.processing, 1);
    assert!(st.batch.cancelled_at.is_some());
    assert!(repo
        .cancel_batch(&tenant(), s.batch_id, now())
        .await
        .unwrap()
        .is_none());
    let none: Vec<_> = repo
        .sweep(now() + ms(100_000), Duration::from_secs(60), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.tenant == t && j.item_id != ids[1])
        .collect();
    assert!(none.is_empty(), "cancelled items are never swept");
    // Finish the last item; complete; prune.
    let (tok2, c) = claim(&repo, &[ids[1]], now() + ms(1_000), ms(1_000)).await;
    assert_eq!(c.len(), 1);
    repo.finish_items(
        &[Finish {
            lease: Lease {
                item_id: ids[1],
                token: tok2,
            },
            resolution: Resolution::Completed,
        }],
        now(),
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(
        repo.complete_batches(&[s.batch_id], now())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        repo.prune(now() - ChronoDuration::hours(1), 100)
            .await
            .unwrap(),
        0
    );
    assert!(
        repo.prune(now() + ChronoDuration::hours(1), 100)
            .await
            .unwrap()
            >= 1
    );
    assert!(repo.batch_status(&t, s.batch_id).await.unwrap().is_none());
    // Items go with their batch (PostgreSQL has no foreign key to cascade).
    assert_eq!(super::item_rows(&b, s.batch_id.0).await, 0);
    assert!(repo
        .organization_by_domain(&items[0].domain)
        .await
        .unwrap()
        .is_some());
}

pub async fn large_submission_is_chunked(b: SqlBackend) {
    let repo = b.repository();
    let t = tenant();
    let p = prefix();
    let mut s = submission(
        &t,
        (0..2_500).map(|n| org(&p, n, "A")).collect(),
        ConflictPolicy::Update,
    );
    s.chunk_size = 700;
    let items = store(&repo, &s).await;
    assert_eq!(items.len(), 2_500);
    let mut s2 = submission(
        &t,
        (0..2_500)
            .map(|n| org(&p, n, if n % 2 == 0 { "A" } else { "B" }))
            .collect(),
        ConflictPolicy::Update,
    );
    s2.chunk_size = 5_000;
    let items2 = store(&repo, &s2).await;
    assert_eq!(
        items2
            .iter()
            .filter(|i| i.change == Change::Updated)
            .count(),
        1_250
    );
    let st = repo.batch_status(&t, s2.batch_id).await.unwrap().unwrap();
    assert_eq!(st.counts.updated, 1_250);
    assert_eq!(st.counts.unchanged, 1_250);
    assert_eq!(st.counts.total(), 2_500);
    let mut seen = 0;
    let mut cursor = None;
    loop {
        let page = repo
            .list_items(
                &t,
                s2.batch_id,
                &ItemQuery {
                    limit: 1_000,
                    after_position: cursor,
                    status: None,
                },
            )
            .await
            .unwrap()
            .unwrap();
        seen += page.items.len();
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, 2_500);
}

pub async fn queue_delivers_interleaves_and_redelivers(b: SqlBackend) {
    let q: Arc<dyn JobQueue> = b.queue();
    q.ping().await.unwrap();
    assert!(q
        .dequeue(5, Duration::from_millis(50))
        .await
        .unwrap()
        .is_empty());
    q.enqueue(&[]).await.unwrap();
    let big = tenant();
    let small = tenant();
    let jobs: Vec<Job> = (0..20)
        .map(|_| Job {
            item_id: ItemId::new(),
            tenant: big.clone(),
            not_before: None,
        })
        .chain((0..3).map(|_| Job {
            item_id: ItemId::new(),
            tenant: small.clone(),
            not_before: None,
        }))
        .collect();
    q.enqueue(&jobs).await.unwrap();
    q.enqueue(&[Job {
        item_id: ItemId::new(),
        tenant: small.clone(),
        not_before: Some(now() + ms(300)),
    }])
    .await
    .unwrap();
    let d = q.depth().await.unwrap();
    assert_eq!((d.ready, d.delayed, d.in_flight), (23, 1, 0));
    let first = q.dequeue(6, Duration::from_secs(1)).await.unwrap();
    assert_eq!(first.len(), 6);
    let small_n = first.iter().filter(|d| d.job.tenant == small).count();
    assert_eq!(small_n, 3, "tenants interleave");
    let d = q.depth().await.unwrap();
    assert_eq!((d.ready, d.in_flight), (17, 6));
    q.ack(
        &first[..3]
            .iter()
            .map(|d| d.receipt.clone())
            .collect::<Vec<_>>(),
    )
    .await
    .unwrap();
    q.ack(&[
        onboarding_core::Receipt("nope".into()),
        onboarding_core::Receipt("999999999".into()),
    ])
    .await
    .unwrap();
    let rest = q.dequeue(100, Duration::from_secs(1)).await.unwrap();
    assert_eq!(rest.len(), 17);
    // The delayed job arrives after its time, waiting inside dequeue.
    let started = std::time::Instant::now();
    let delayed = q.dequeue(10, Duration::from_secs(3)).await.unwrap();
    assert_eq!(delayed.len(), 1);
    assert_eq!(delayed[0].job.tenant, small);
    assert!(started.elapsed() < Duration::from_secs(2));
    // Unacked deliveries come back after the visibility timeout (2 s in tests).
    q.ack(&rest.iter().map(|d| d.receipt.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    q.ack(&[delayed[0].receipt.clone()]).await.unwrap();
    let back = q.dequeue(10, Duration::from_secs(4)).await.unwrap();
    let back_ids: HashSet<ItemId> = back.iter().map(|d| d.job.item_id).collect();
    let expect: HashSet<ItemId> = first[3..].iter().map(|d| d.job.item_id).collect();
    assert_eq!(back_ids, expect);
    q.ack(&back.iter().map(|d| d.receipt.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    let d = q.depth().await.unwrap();
    assert_eq!((d.ready, d.delayed, d.in_flight), (0, 0, 0));
    // Concurrent consumers never share a delivery.
    let jobs: Vec<Job> = (0..40)
        .map(|_| Job {
            item_id: ItemId::new(),
            tenant: big.clone(),
            not_before: None,
        })
        .collect();
    q.enqueue(&jobs).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let d = q.dequeue(3, Duration::from_millis(200)).await.unwrap();
                if d.is_empty() {
                    break got;
                }
                got.extend(d.into_iter().map(|d| d.job.item_id));
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let unique: HashSet<ItemId> = all.iter().copied().collect();
    assert_eq!(all.len(), 40);
    assert_eq!(unique.len(), 40);
}
