//! [`ImportStore`](crate::import::ImportStore) cases: one per `# Behavior`
//! bullet, each in its own random tenant with random domains.

use crate::error::ErrorKind;
use crate::import::{ImportRow, ImportState, ImportStore, NewImport, RowError};
use crate::model::{
    BatchId, Change, ConflictPolicy, ItemStatus, NewOrganization, SubmitMode, TenantId,
};
use crate::repository::{StoreResult, Submission};
use crate::testing::fixtures;
use crate::testing::TestBackend;

fn store(backend: &TestBackend) -> &dyn ImportStore {
    backend
        .repository
        .imports()
        .expect("the backend runs the imports group but has no ImportStore")
}

async fn begin(store: &dyn ImportStore, tenant: &TenantId, key: Option<&str>) -> BatchId {
    let batch = BatchId::new();
    store
        .begin_import(&NewImport {
            batch_id: batch,
            tenant: tenant.clone(),
            idempotency_key: key.map(str::to_owned),
            now: crate::model::now(),
            policy: ConflictPolicy::Update,
            mode: SubmitMode::Partial,
        })
        .await
        .expect("begin_import failed");
    batch
}

/// Rows at lines `first..` for these organizations.
fn rows(first: u32, organizations: &[NewOrganization]) -> Vec<ImportRow> {
    (first..)
        .zip(organizations)
        .map(|(line, o)| ImportRow {
            line,
            organization: o.clone(),
            external_id: Some(format!("ext-{line}")),
        })
        .collect()
}

fn new_orgs(n: usize) -> Vec<NewOrganization> {
    (0..n)
        .map(|_| fixtures::organization(&fixtures::domain()))
        .collect()
}

fn finishing(tenant: &TenantId, batch: BatchId, key: Option<&str>) -> Submission {
    let mut s = fixtures::submission_of(tenant, Vec::new(), ConflictPolicy::Update);
    s.batch_id = batch;
    s.idempotency_key = key.map(str::to_owned);
    s.request_hash = "import-hash".to_owned();
    s
}

/// Nothing of an upload is left: no progress, no refused rows, none of its
/// staged rows (at `lines`).
async fn assert_upload_gone(
    store: &dyn ImportStore,
    tenant: &TenantId,
    batch: BatchId,
    lines: &[u32],
) {
    assert!(store
        .import_progress(tenant, batch)
        .await
        .expect("store call failed")
        .is_none());
    assert!(store
        .rejected_rows(tenant, batch, None, 10)
        .await
        .expect("store call failed")
        .is_none());
    assert!(store
        .staged_rows(tenant, batch, lines)
        .await
        .expect("store call failed")
        .is_empty());
}

/// The counters of an upload that exists.
async fn progress_of(
    store: &dyn ImportStore,
    tenant: &TenantId,
    batch: BatchId,
) -> crate::import::ImportProgress {
    store
        .import_progress(tenant, batch)
        .await
        .expect("store call failed")
        .expect("the upload's progress")
}

fn bad_row(line: u32) -> RowError {
    RowError::line(line, "invalid_utf8", "the line is not UTF-8")
}

/// An upload in progress is no batch: status, items and the sweeper don't see it; its counters do.
pub async fn import_is_invisible_until_finished(backend: TestBackend) {
    let store = store(&backend);
    let tenant = fixtures::tenant();
    let batch = begin(store, &tenant, None).await;
    let orgs = new_orgs(3);
    let dups = store
        .append_import(
            batch,
            &rows(2, &orgs),
            &[bad_row(5), bad_row(5), bad_row(6)],
        )
        .await
        .expect("append_import failed");
    assert!(dups.is_empty());
    let repo = &backend.repository;
    assert!(repo
        .batch_status(&tenant, batch)
        .await
        .expect("store call failed")
        .is_none());
    assert!(repo
        .organization_by_domain(&tenant, &orgs[0].domain)
        .await
        .expect("store call failed")
        .is_none());
    let progress = progress_of(store, &tenant, batch).await;
    assert_eq!(progress.state, ImportState::Receiving);
    assert_eq!(
        (
            progress.rows_received,
            progress.rows_stored,
            progress.rows_rejected
        ),
        (5, 3, 2)
    );
    let other = fixtures::tenant();
    assert!(store
        .import_progress(&other, batch)
        .await
        .expect("store call failed")
        .is_none());
    store.abort_import(batch).await.expect("store call failed");
}

/// Finishing creates one batch: one item per staged row at its line, upserted like a submission.
pub async fn import_finish_creates_one_batch(backend: TestBackend) {
    let store = store(&backend);
    let repo = &backend.repository;
    let tenant = fixtures::tenant();
    // One domain exists already with other data: Updated.
    let existing = new_orgs(1);
    let (earlier, _) = fixtures::store(
        repo.as_ref(),
        &fixtures::submission_of(&tenant, existing.clone(), ConflictPolicy::Update),
    )
    .await;
    let batch = begin(store, &tenant, None).await;
    let mut orgs = new_orgs(1200);
    orgs.push(fixtures::renamed(&existing[0]));
    for (i, chunk) in orgs.chunks(500).enumerate() {
        let first = 2 + u32::try_from(i * 500).expect("small");
        store
            .append_import(batch, &rows(first, chunk), &[])
            .await
            .expect("store call failed");
    }
    store
        .append_import(batch, &[], &[bad_row(5000)])
        .await
        .expect("store call failed");
    let answer = store
        .finish_import(&finishing(&tenant, batch, None))
        .await
        .expect("finish_import failed");
    let StoreResult::Stored {
        batch: stored,
        items,
    } = answer
    else {
        panic!("expected Stored, got {answer:?}")
    };
    assert_eq!(stored.id, batch);
    assert_eq!(stored.total, 1201);
    assert!(items.is_empty());
    let status = repo
        .batch_status(&tenant, batch)
        .await
        .expect("store call failed")
        .expect("expected Some");
    assert_eq!(status.counts.pending, 1201);
    assert_eq!(status.counts.created, 1200);
    assert_eq!(status.counts.updated, 1);
    let page = fixtures::items_page(repo.as_ref(), &tenant, batch, None, 5).await;
    let positions: Vec<u32> = page.items.iter().map(|i| i.position).collect();
    assert_eq!(positions, vec![2, 3, 4, 5, 6]);
    assert_eq!(page.items[0].domain, orgs[0].domain);
    assert_eq!(page.items[0].change, Change::Created);
    assert_eq!(page.items[0].status, ItemStatus::Pending);
    let org = repo
        .organization_by_domain(&tenant, &existing[0].domain)
        .await
        .expect("store call failed")
        .expect("store call failed");
    assert_eq!(org.name, orgs[1200].name);
    let progress = progress_of(store, &tenant, batch).await;
    assert_eq!(progress.state, ImportState::Stored);
    assert_eq!((progress.rows_stored, progress.rows_rejected), (1201, 1));
    let rejected = store
        .rejected_rows(&tenant, batch, None, 10)
        .await
        .expect("store call failed")
        .expect("store call failed");
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0].line, 5000);
    let mut staged = store
        .staged_rows(&tenant, batch, &[3, 2, 99_999])
        .await
        .expect("staged_rows failed");
    staged.sort_by_key(|r| r.line);
    assert_eq!(staged.len(), 2);
    assert_eq!((staged[0].line, staged[1].line), (2, 3));
    assert_eq!(staged[0].organization, orgs[0]);
    assert_eq!(staged[0].external_id.as_deref(), Some("ext-2"));
    let foreign = store
        .staged_rows(&fixtures::tenant(), batch, &[2])
        .await
        .expect("staged_rows failed");
    assert!(foreign.is_empty());
    // Finished uploads take no more rows.
    let late = store
        .append_import(batch, &rows(9000, &new_orgs(1)), &[])
        .await;
    assert_eq!(
        late.expect_err("expected an error").kind(),
        ErrorKind::NotFound
    );
    // Open batches left behind would be swept by every later sweep case.
    fixtures::cancel_quietly(repo.as_ref(), &tenant, &[earlier.id, batch]).await;
}

/// A domain staged before (in an earlier chunk or the same one) is refused, naming the earlier line.
pub async fn import_refuses_duplicate_domains(backend: TestBackend) {
    let store = store(&backend);
    let tenant = fixtures::tenant();
    let batch = begin(store, &tenant, None).await;
    let orgs = new_orgs(2);
    store
        .append_import(batch, &rows(2, &orgs), &[])
        .await
        .expect("store call failed");
    let again = vec![
        fixtures::renamed(&orgs[1]),
        orgs[0].clone(),
        new_orgs(1)[0].clone(),
    ];
    let mut chunk = rows(10, &again);
    chunk.push(ImportRow {
        line: 20,
        ..chunk[2].clone()
    });
    let mut dups = store
        .append_import(batch, &chunk, &[])
        .await
        .expect("store call failed");
    // Repeats of earlier chunks are refused by `append_import` or, at the
    // latest, by `refuse_repeats` once every row is staged.
    let later = store
        .refuse_repeats(batch, 100)
        .await
        .expect("store call failed");
    assert_eq!(later.count, later.first.len() as u64);
    dups.extend(later.first);
    dups.sort_by_key(|d| d.line);
    let again = store
        .refuse_repeats(batch, 100)
        .await
        .expect("store call failed");
    assert_eq!(again.count, 0, "a repeat is refused once");
    let got: Vec<(u32, &str)> = dups.iter().map(|d| (d.line, d.code.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (10, "domain_duplicate"),
            (11, "domain_duplicate"),
            (20, "domain_duplicate")
        ]
    );
    assert!(dups[0].detail.contains("line 3"), "{}", dups[0].detail);
    assert!(dups[1].detail.contains("line 2"), "{}", dups[1].detail);
    assert!(dups[2].detail.contains("line 12"), "{}", dups[2].detail);
    assert_eq!(dups[0].external_id.as_deref(), Some("ext-10"));
    let progress = progress_of(store, &tenant, batch).await;
    assert_eq!(
        (
            progress.rows_received,
            progress.rows_stored,
            progress.rows_rejected
        ),
        (6, 3, 3)
    );
    let StoreResult::Stored { batch: stored, .. } = store
        .finish_import(&finishing(&tenant, batch, None))
        .await
        .expect("store call failed")
    else {
        panic!("not stored")
    };
    assert_eq!(stored.total, 3);
    let rejected = store
        .rejected_rows(&tenant, batch, Some(10), 10)
        .await
        .expect("store call failed")
        .expect("store call failed");
    let lines: Vec<u32> = rejected.iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![11, 20]);
    // What is kept is what was answered, word for word (a store may write
    // the refusals of repeats without the rows at hand).
    for kept in &rejected {
        let answered = dups.iter().find(|d| d.line == kept.line).expect("answered");
        assert_eq!(kept, answered);
    }
    fixtures::cancel_quietly(backend.repository.as_ref(), &tenant, &[batch]).await;
}

/// A sealed upload is no longer the request's: abort leaves it, it is
/// listed for any process to finish with its options, and it is finished once.
pub async fn import_seal_hands_the_upload_over(backend: TestBackend) {
    let store = store(&backend);
    let tenant = fixtures::tenant();
    let batch = begin(store, &tenant, None).await;
    store
        .append_import(batch, &rows(2, &new_orgs(3)), &[])
        .await
        .expect("store call failed");
    let mut submission = finishing(&tenant, batch, None);
    submission.trace_parent =
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned());
    submission.reprocess_unchanged = true;
    assert!(store
        .seal_import(&submission)
        .await
        .expect("store call failed")
        .is_none());
    let progress = progress_of(store, &tenant, batch).await;
    assert_eq!(progress.state, ImportState::Staged);
    let again = store.seal_import(&submission).await;
    assert_eq!(again.expect_err("sealed twice").kind(), ErrorKind::NotFound);
    // The request that goes away now discards nothing.
    store.abort_import(batch).await.expect("store call failed");
    let later = submission.now + chrono::Duration::seconds(1);
    let at = later + chrono::Duration::seconds(5);
    let listed = store
        .sealed_imports(later, at, 1000)
        .await
        .expect("store call failed");
    let found = listed
        .iter()
        .find(|s| s.batch_id == batch)
        .expect("the sealed upload is listed");
    assert_eq!(found.tenant, tenant);
    assert_eq!(found.request_hash, submission.request_hash);
    assert_eq!(found.trace_parent, submission.trace_parent);
    assert!(found.reprocess_unchanged);
    assert_eq!(found.now, at);
    assert_eq!(
        found.sweep_at - found.now,
        submission.sweep_at - submission.now
    );
    let earlier = submission.now - chrono::Duration::seconds(1);
    assert!(!store
        .sealed_imports(earlier, at, 1000)
        .await
        .expect("store call failed")
        .iter()
        .any(|s| s.batch_id == batch));
    let StoreResult::Stored { batch: stored, .. } =
        store.finish_import(found).await.expect("store call failed")
    else {
        panic!("not stored")
    };
    assert_eq!(stored.total, 3);
    assert_eq!(
        store
            .finish_import(found)
            .await
            .expect_err("finished twice")
            .kind(),
        ErrorKind::NotFound
    );
    assert!(!store
        .sealed_imports(later, at, 1000)
        .await
        .expect("store call failed")
        .iter()
        .any(|s| s.batch_id == batch));
    fixtures::cancel_quietly(backend.repository.as_ref(), &tenant, &[batch]).await;
}

/// Sealing under the key of an earlier batch answers that batch (or a key
/// conflict) and discards the upload.
pub async fn import_seal_answers_an_earlier_key(backend: TestBackend) {
    let store = store(&backend);
    let tenant = fixtures::tenant();
    let first = begin(store, &tenant, Some("seal-key")).await;
    store
        .append_import(first, &rows(2, &new_orgs(2)), &[])
        .await
        .expect("store call failed");
    let StoreResult::Stored { .. } = store
        .finish_import(&finishing(&tenant, first, Some("seal-key")))
        .await
        .expect("store call failed")
    else {
        panic!("not stored")
    };
    for (hash, replayed) in [("import-hash", true), ("another-file", false)] {
        let second = begin(store, &tenant, Some("seal-key")).await;
        store
            .append_import(second, &rows(2, &new_orgs(1)), &[])
            .await
            .expect("store call failed");
        let mut submission = finishing(&tenant, second, Some("seal-key"));
        submission.request_hash = hash.to_owned();
        let answer = store
            .seal_import(&submission)
            .await
            .expect("store call failed");
        match answer {
            Some(StoreResult::Replayed { batch }) if replayed => assert_eq!(batch.id, first),
            Some(StoreResult::KeyConflict { batch }) if !replayed => assert_eq!(batch.id, first),
            other => panic!("unexpected answer {other:?}"),
        }
        assert_upload_gone(store, &tenant, second, &[2]).await;
    }
    fixtures::cancel_quietly(backend.repository.as_ref(), &tenant, &[first]).await;
}

/// Aborting keeps nothing: no batch, no organization, no counters; unknown uploads are fine.
pub async fn import_abort_keeps_nothing(backend: TestBackend) {
    let store = store(&backend);
    let tenant = fixtures::tenant();
    let batch = begin(store, &tenant, Some("k")).await;
    let orgs = new_orgs(5);
    store
        .append_import(batch, &rows(2, &orgs), &[bad_row(9)])
        .await
        .expect("store call failed");
    store.abort_import(batch).await.expect("abort failed");
    store
        .abort_import(batch)
        .await
        .expect("second abort failed");
    assert_upload_gone(store, &tenant, batch, &[2, 3, 4, 5, 6]).await;
    let repo = &backend.repository;
    assert!(repo
        .batch_status(&tenant, batch)
        .await
        .expect("store call failed")
        .is_none());
    for o in &orgs {
        assert!(repo
            .organization_by_domain(&tenant, &o.domain)
            .await
            .expect("store call failed")
            .is_none());
    }
    let late = store.finish_import(&finishing(&tenant, batch, None)).await;
    assert_eq!(
        late.expect_err("expected an error").kind(),
        ErrorKind::NotFound
    );
    // The key is free again.
    let again = begin(store, &tenant, Some("k")).await;
    store.abort_import(again).await.expect("store call failed");
}

/// A key in use by an upload still receiving is a conflict; another tenant's same key is not.
pub async fn import_key_in_progress_conflicts(backend: TestBackend) {
    let store = store(&backend);
    let tenant = fixtures::tenant();
    let first = begin(store, &tenant, Some("same")).await;
    let second = store
        .begin_import(&NewImport {
            batch_id: BatchId::new(),
            tenant: tenant.clone(),
            idempotency_key: Some("same".to_owned()),
            now: crate::model::now(),
            policy: ConflictPolicy::Update,
            mode: SubmitMode::Partial,
        })
        .await;
    assert_eq!(
        second.expect_err("expected an error").kind(),
        ErrorKind::Conflict
    );
    let other = begin(store, &fixtures::tenant(), Some("same")).await;
    store.abort_import(first).await.expect("store call failed");
    store.abort_import(other).await.expect("store call failed");
}

/// A finished key answers Replayed (same hash) or KeyConflict (other hash), and the upload is discarded.
pub async fn import_replays_finished_keys(backend: TestBackend) {
    let store = store(&backend);
    let tenant = fixtures::tenant();
    let first = begin(store, &tenant, Some("done")).await;
    store
        .append_import(first, &rows(2, &new_orgs(2)), &[])
        .await
        .expect("store call failed");
    store
        .finish_import(&finishing(&tenant, first, Some("done")))
        .await
        .expect("store call failed");
    let second = begin(store, &tenant, Some("done")).await;
    let late_orgs = new_orgs(2);
    store
        .append_import(second, &rows(2, &late_orgs), &[])
        .await
        .expect("store call failed");
    let answer = store
        .finish_import(&finishing(&tenant, second, Some("done")))
        .await
        .expect("store call failed");
    let StoreResult::Replayed { batch } = answer else {
        panic!("expected Replayed, got {answer:?}")
    };
    assert_eq!(batch.id, first);
    assert!(store
        .import_progress(&tenant, second)
        .await
        .expect("store call failed")
        .is_none());
    let repo = &backend.repository;
    assert!(repo
        .organization_by_domain(&tenant, &late_orgs[0].domain)
        .await
        .expect("store call failed")
        .is_none());
    let third = begin(store, &tenant, Some("done")).await;
    store
        .append_import(third, &rows(2, &new_orgs(1)), &[])
        .await
        .expect("store call failed");
    let mut other = finishing(&tenant, third, Some("done"));
    other.request_hash = "another-hash".to_owned();
    let answer = store
        .finish_import(&other)
        .await
        .expect("store call failed");
    assert!(
        matches!(answer, StoreResult::KeyConflict { .. }),
        "{answer:?}"
    );
    fixtures::cancel_quietly(repo.as_ref(), &tenant, &[first]).await;
}

/// Pruning a finished import's batch takes its staged rows and refusals
/// with it, and discards uploads left `receiving` before the cutoff (their
/// process died); a newer upload in progress stays.
///
/// Works in 2001-2006 so that no other case's batch or upload is in its range.
pub async fn import_staging_is_pruned_with_its_batch(backend: TestBackend) {
    let store = store(&backend);
    let repo = &backend.repository;
    let tenant = fixtures::tenant();
    let hour = std::time::Duration::from_secs(3600);
    let t = fixtures::time_in_past(2001);
    // Every row skips an organization the tenant has: the batch is complete at once.
    let existing = new_orgs(3);
    let (earlier, _) = fixtures::store(
        repo.as_ref(),
        &fixtures::submission_at(&tenant, existing.clone(), ConflictPolicy::Update, t),
    )
    .await;
    // Items pending since then would be due in every other case's sweep.
    fixtures::cancel_quietly(repo.as_ref(), &tenant, &[earlier.id]).await;
    let finished = begin(store, &tenant, None).await;
    store
        .append_import(finished, &rows(2, &existing), &[bad_row(9)])
        .await
        .expect("store call failed");
    let mut skipping = finishing(&tenant, finished, None);
    skipping.policy = ConflictPolicy::Skip;
    skipping.now = t;
    store
        .finish_import(&skipping)
        .await
        .expect("finish_import failed");
    let status = repo
        .batch_status(&tenant, finished)
        .await
        .expect("store call failed")
        .expect("expected Some");
    assert!(status.batch.completed_at.is_some(), "{status:?}");

    let abandoned = BatchId::new();
    store
        .begin_import(&NewImport {
            batch_id: abandoned,
            tenant: tenant.clone(),
            idempotency_key: Some("died".to_owned()),
            now: crate::model::before(t, hour),
            policy: ConflictPolicy::Update,
            mode: SubmitMode::Partial,
        })
        .await
        .expect("begin_import failed");
    store
        .append_import(abandoned, &rows(2, &new_orgs(2)), &[bad_row(4)])
        .await
        .expect("store call failed");
    let cutoff = crate::model::after(t, hour);
    let live = BatchId::new();
    store
        .begin_import(&NewImport {
            batch_id: live,
            tenant: tenant.clone(),
            idempotency_key: None,
            now: crate::model::after(cutoff, hour),
            policy: ConflictPolicy::Update,
            mode: SubmitMode::Partial,
        })
        .await
        .expect("begin_import failed");

    let pruned = repo.prune(cutoff, 1000).await.expect("prune failed");
    assert!(pruned >= 1, "the finished batch is pruned");
    for batch in [finished, abandoned] {
        assert_upload_gone(store, &tenant, batch, &[2, 3, 4]).await;
    }
    // The abandoned upload's key is free again.
    let again = begin(store, &tenant, Some("died")).await;
    let progress = progress_of(store, &tenant, live).await;
    assert_eq!(progress.state, ImportState::Receiving);
    store.abort_import(again).await.expect("store call failed");
    store.abort_import(live).await.expect("store call failed");
}

/// The finish stores the submission's `trace_parent` with the batch: the
/// imported items' claims carry it.
pub async fn import_keeps_the_trace_parent(backend: TestBackend) {
    let store = store(&backend);
    let repo = &backend.repository;
    let tenant = fixtures::tenant();
    let batch = begin(store, &tenant, None).await;
    store
        .append_import(batch, &rows(2, &new_orgs(2)), &[])
        .await
        .expect("append_import failed");
    let mut finish = finishing(&tenant, batch, None);
    finish.trace_parent = Some(crate::testing::repository::TRACE_PARENT.to_owned());
    store
        .finish_import(&finish)
        .await
        .expect("finish_import failed");
    let page = fixtures::items_page(repo.as_ref(), &tenant, batch, None, 5).await;
    let ids: Vec<_> = page.items.iter().map(|i| i.id).collect();
    assert_eq!(ids.len(), 2);
    let claimed = fixtures::claim(repo.as_ref(), &ids, finish.now + fixtures::secs(1)).await;
    for c in &claimed {
        assert_eq!(
            c.trace_parent.as_deref(),
            Some(crate::testing::repository::TRACE_PARENT)
        );
    }
    fixtures::cancel_quietly(repo.as_ref(), &tenant, &[batch]).await;
}

/// What a request did, without ids or times: per item (position, domain,
/// change, status), whether the batch was finished at once, and per domain
/// the organization (name, email, status, version, deleted) and its versions.
#[derive(Debug, PartialEq)]
struct Outcome {
    items: Vec<(u32, String, Change, ItemStatus)>,
    done_at_once: bool,
    organizations: Vec<(String, String, ItemStatus, i64, bool)>,
    versions: Vec<Vec<(i64, String, String)>>,
}

/// Stores `organizations` at positions `2..` in a new batch of `tenant`,
/// through `store_submission` or through an upload, and reads what it did.
async fn outcome_of(
    backend: &TestBackend,
    tenant: &TenantId,
    organizations: &[NewOrganization],
    policy: ConflictPolicy,
    reprocess_unchanged: bool,
    by_import: bool,
) -> Outcome {
    let repo = backend.repository.as_ref();
    let mut s = fixtures::submission_of(tenant, Vec::new(), policy);
    s.reprocess_unchanged = reprocess_unchanged;
    let batch = if by_import {
        let store = store(backend);
        let batch = begin(store, tenant, None).await;
        store
            .append_import(batch, &rows(2, organizations), &[])
            .await
            .expect("append_import failed");
        s.batch_id = batch;
        store.finish_import(&s).await.expect("finish_import failed")
    } else {
        s.organizations = (2u32..).zip(organizations.iter().cloned()).collect();
        repo.store_submission(&s)
            .await
            .expect("store_submission failed")
    };
    let StoreResult::Stored { batch, .. } = batch else {
        panic!("expected Stored, got {batch:?}")
    };
    let mut items: Vec<_> = fixtures::all_items(repo, tenant, batch.id)
        .await
        .into_iter()
        .map(|i| (i.position, i.domain.to_string(), i.change, i.status))
        .collect();
    items.sort_by_key(|i| i.0);
    let mut outcome = Outcome {
        items,
        done_at_once: batch.completed_at.is_some(),
        organizations: Vec::new(),
        versions: Vec::new(),
    };
    for o in organizations {
        let org = fixtures::stored_organization(repo, tenant, &o.domain).await;
        outcome.organizations.push((
            org.name,
            org.contact_email,
            org.status,
            org.version,
            org.deleted_at.is_some(),
        ));
        let versions = repo
            .organization_versions(tenant, &o.domain)
            .await
            .expect("organization_versions failed")
            .unwrap_or_default();
        outcome.versions.push(
            versions
                .into_iter()
                .map(|v| (v.version, v.name, v.contact_email))
                .collect(),
        );
    }
    outcome
}

/// A tenant whose organizations are: `[0]` pending, `[1]` and `[2]`
/// completed, `[3]` completed then deleted, `[4]` pending.
async fn prepared(backend: &TestBackend, organizations: &[NewOrganization]) -> TenantId {
    let repo = backend.repository.as_ref();
    let tenant = fixtures::tenant();
    let (batch, items) = fixtures::store(
        repo,
        &fixtures::submission_of(&tenant, organizations.to_vec(), ConflictPolicy::Update),
    )
    .await;
    let now = crate::model::now();
    let done: Vec<_> = items[1..4].iter().map(|i| i.item_id).collect();
    fixtures::process(repo, &done, now).await;
    assert!(repo
        .delete_organization(&tenant, &organizations[3].domain, now)
        .await
        .expect("delete_organization failed"));
    fixtures::cancel_quietly(repo, &tenant, &[batch.id]).await;
    tenant
}

/// The finish decides every row as `store_submission` does (the JSON
/// route's chunks): the same change and item status per row, the same
/// organizations and versions afterwards, under both policies, with
/// `reprocess_unchanged` off and on; and a request whose every row is
/// already done makes a finished batch either way.
pub async fn import_finish_matches_store_submission(backend: TestBackend) {
    let existing = new_orgs(5);
    let fresh = new_orgs(1);
    // Unchanged (pending), unchanged (completed), renamed (completed),
    // restored (deleted), renamed (pending), new.
    let request: Vec<NewOrganization> = vec![
        existing[0].clone(),
        existing[1].clone(),
        fixtures::renamed(&existing[2]),
        existing[3].clone(),
        fixtures::renamed(&existing[4]),
        fresh[0].clone(),
    ];
    for policy in [ConflictPolicy::Update, ConflictPolicy::Skip] {
        for reprocess in [false, true] {
            let mut seen = Vec::new();
            for by_import in [false, true] {
                let tenant = prepared(&backend, &existing).await;
                let mixed =
                    outcome_of(&backend, &tenant, &request, policy, reprocess, by_import).await;
                // Only the completed organization again: nothing to process.
                let done =
                    outcome_of(&backend, &tenant, &existing[1..2], policy, false, by_import).await;
                seen.push((mixed, done));
            }
            assert_eq!(
                seen[0], seen[1],
                "store_submission (left) and an import (right) differ: policy {policy:?}, reprocess_unchanged {reprocess}"
            );
            // (Reprocessing made the completed organization pending again.)
            if policy == ConflictPolicy::Skip || !reprocess {
                assert!(seen[1].1.done_at_once, "{:?}", seen[1].1);
            }
        }
    }
}
