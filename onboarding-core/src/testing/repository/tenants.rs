//! Tenant isolation cases: organizations belong to the tenant that submitted
//! them. Two tenants submitting the same domain have two rows that never
//! touch: one tenant's submission, cancel, re-drive, finish or prune can
//! neither change, reveal nor block the other's row.

use std::sync::Arc;

use tokio::sync::Barrier;

use crate::model::{
    now, Batch, Change, ConflictPolicy, Domain, ItemStatus, NewOrganization, Organization,
    TenantId, Timestamp,
};
use crate::repository::{OrgRepository, Resolution, StoreResult, StoredItem};
use crate::testing::fixtures::{self, secs};
use crate::testing::TestBackend;

/// The same domain under another tenant's own name and contact.
fn other_data(domain: &Domain, owner: &str) -> NewOrganization {
    NewOrganization {
        name: format!("{owner}'s {domain}"),
        domain: domain.clone(),
        contact_email: format!("{owner}@{domain}"),
    }
}

/// Stores `owner`'s data of `domain` for `tenant` at `at` (policy `Update`).
async fn store_own(
    repo: &dyn OrgRepository,
    tenant: &TenantId,
    domain: &Domain,
    owner: &str,
    at: Timestamp,
) -> (Batch, Vec<StoredItem>) {
    let organizations = vec![other_data(domain, owner)];
    let submission = fixtures::submission_at(tenant, organizations, ConflictPolicy::Update, at);
    fixtures::store(repo, &submission).await
}

/// Asserts that `found` is still exactly `before` (another tenant's call changed nothing).
fn untouched(found: &Organization, before: &Organization, why: &str) {
    assert_eq!(found, before, "{why}: another tenant's row changed");
}

/// Beta onboards some domains; alpha submits the same domains with its own
/// data under `policy`: alpha's items are `Created` (as if beta did not
/// exist), alpha gets rows of its own, and beta's rows are untouched.
async fn foreign_domain_is_new_under(backend: TestBackend, policy: ConflictPolicy) {
    let repo = &*backend.repository;
    let (alpha, beta) = (fixtures::tenant(), fixtures::tenant());
    let domains: Vec<Domain> = (0..3).map(|_| fixtures::domain()).collect();
    let beta_orgs: Vec<_> = domains.iter().map(|d| other_data(d, "beta")).collect();
    let beta_submission = fixtures::submission_of(&beta, beta_orgs.clone(), ConflictPolicy::Update);
    let (beta_batch, beta_items) = fixtures::store(repo, &beta_submission).await;
    // One of beta's rows is processed, so an `unchanged`-looking submission
    // by alpha would be "completed" if it leaked through.
    fixtures::process(repo, &[beta_items[0].item_id], beta_submission.now).await;
    let mut before = Vec::new();
    for d in &domains {
        before.push(fixtures::stored_organization(repo, &beta, d).await);
    }

    // Alpha submits beta's exact data for the first domain and its own for the others.
    let mut alpha_orgs = vec![beta_orgs[0].clone()];
    alpha_orgs.extend(domains[1..].iter().map(|d| other_data(d, "alpha")));
    let alpha_submission = fixtures::submission_of(&alpha, alpha_orgs.clone(), policy);
    let (alpha_batch, alpha_items) = fixtures::store(repo, &alpha_submission).await;
    for (item, org) in alpha_items.iter().zip(&alpha_orgs) {
        assert_eq!(
            item.change,
            Change::Created,
            "{policy:?}: a domain only another tenant has is new to this one"
        );
        assert_eq!(
            item.status,
            ItemStatus::Pending,
            "{policy:?}: new work is pending"
        );
        let own = fixtures::stored_organization(repo, &alpha, &org.domain).await;
        assert_eq!(own.id, item.organization_id);
        assert_eq!((own.name.as_str(), own.version), (org.name.as_str(), 1));
        assert_eq!(own.contact_email, org.contact_email);
        assert!(
            before.iter().all(|b| b.id != own.id),
            "{policy:?}: alpha's item points at beta's row"
        );
    }
    for (d, b) in domains.iter().zip(&before) {
        let found = fixtures::stored_organization(repo, &beta, d).await;
        untouched(&found, b, &format!("{policy:?}: alpha's submission"));
    }
    let status = fixtures::status(repo, &alpha, alpha_batch.id).await;
    assert_eq!(
        (
            status.counts.created,
            status.counts.skipped,
            status.counts.updated
        ),
        (3, 0, 0),
        "{policy:?}: alpha's counts are relative to alpha's own rows"
    );
    fixtures::cancel_quietly(repo, &alpha, &[alpha_batch.id]).await;
    fixtures::cancel_quietly(repo, &beta, &[beta_batch.id]).await;
}

/// `store_submission` with policy `Update` of a domain another tenant has:
/// `Created` for the submitter, the other tenant's row untouched.
pub async fn store_update_of_another_tenants_domain_leaves_it_untouched(backend: TestBackend) {
    foreign_domain_is_new_under(backend, ConflictPolicy::Update).await;
}

/// `store_submission` with policy `Skip` of a domain another tenant has:
/// `Created` (not skipped, not squatted), the other tenant's row untouched.
pub async fn store_skip_of_another_tenants_domain_leaves_it_untouched(backend: TestBackend) {
    foreign_domain_is_new_under(backend, ConflictPolicy::Skip).await;
}

/// Outcomes after another tenant's submission are relative to the
/// submitter's own row: alpha's later update of its own row is `Updated`
/// (version 2) and beta's row of the domain stays at version 1.
pub async fn store_outcomes_follow_the_tenants_own_row(backend: TestBackend) {
    let repo = &*backend.repository;
    let (alpha, beta) = (fixtures::tenant(), fixtures::tenant());
    let domain = fixtures::domain();
    let (a1, _) = store_own(repo, &alpha, &domain, "alpha", now()).await;
    let (b1, _) = store_own(repo, &beta, &domain, "beta", now()).await;
    let beta_before = fixtures::stored_organization(repo, &beta, &domain).await;
    // Alpha resubmits its own data (unchanged) then new data (updated).
    let (a2, same_items) = store_own(repo, &alpha, &domain, "alpha", now()).await;
    assert_eq!(same_items[0].change, Change::Unchanged);
    let renamed = fixtures::renamed(&other_data(&domain, "alpha"));
    let update = fixtures::submission_of(&alpha, vec![renamed.clone()], ConflictPolicy::Update);
    let (a3, update_items) = fixtures::store(repo, &update).await;
    assert_eq!(update_items[0].change, Change::Updated);
    let own = fixtures::stored_organization(repo, &alpha, &domain).await;
    assert_eq!((own.name.as_str(), own.version), (renamed.name.as_str(), 2));
    untouched(
        &fixtures::stored_organization(repo, &beta, &domain).await,
        &beta_before,
        "alpha's updates",
    );
    fixtures::cancel_quietly(repo, &alpha, &[a1.id, a2.id, a3.id]).await;
    fixtures::cancel_quietly(repo, &beta, &[b1.id]).await;
}

/// Two tenants with the same domains, one batch each.
struct TwoTenants {
    alpha: TenantId,
    beta: TenantId,
    domains: Vec<Domain>,
    alpha_batch: crate::model::BatchId,
    beta_batch: crate::model::BatchId,
    alpha_items: Vec<crate::model::ItemId>,
    beta_items: Vec<crate::model::ItemId>,
    now: crate::model::Timestamp,
}

async fn two_tenants(repo: &dyn OrgRepository, n: usize) -> TwoTenants {
    let (alpha, beta) = (fixtures::tenant(), fixtures::tenant());
    let domains: Vec<Domain> = (0..n).map(|_| fixtures::domain()).collect();
    let a = fixtures::submission_of(
        &alpha,
        domains.iter().map(|d| other_data(d, "alpha")).collect(),
        ConflictPolicy::Update,
    );
    let b = fixtures::submission_of(
        &beta,
        domains.iter().map(|d| other_data(d, "beta")).collect(),
        ConflictPolicy::Update,
    );
    let (alpha_batch, alpha_items) = fixtures::store(repo, &a).await;
    let (beta_batch, beta_items) = fixtures::store(repo, &b).await;
    TwoTenants {
        alpha,
        beta,
        domains,
        alpha_batch: alpha_batch.id,
        beta_batch: beta_batch.id,
        alpha_items: fixtures::ids(&alpha_items),
        beta_items: fixtures::ids(&beta_items),
        now: b.now,
    }
}

/// `cancel_batch` and `retry_failed` change only the caller's own items and
/// organization rows: the other tenant's rows of the same domains keep
/// their status, and another tenant's batch id answers `None`.
pub async fn cancel_and_retry_touch_only_the_tenants_own_rows(backend: TestBackend) {
    let repo = &*backend.repository;
    let t = two_tenants(repo, 2).await;
    // Beta's items fail; alpha's stay pending.
    let claimed = fixtures::claim(repo, &t.beta_items, t.now).await;
    let failed = Resolution::Failed {
        error: "boom".into(),
        permanent: true,
    };
    fixtures::finish(repo, &fixtures::leases(&claimed), failed, t.now).await;
    for d in &t.domains {
        let b = fixtures::stored_organization(repo, &t.beta, d).await;
        assert_eq!(b.status, ItemStatus::Failed);
        let a = fixtures::stored_organization(repo, &t.alpha, d).await;
        assert_eq!(
            a.status,
            ItemStatus::Pending,
            "beta's failure is not alpha's"
        );
    }
    // Neither tenant can reach the other's batch.
    assert!(repo
        .cancel_batch(&t.alpha, t.beta_batch, t.now)
        .await
        .expect("cancel_batch failed")
        .is_none());
    assert!(repo
        .retry_failed(&t.alpha, t.beta_batch, t.now)
        .await
        .expect("retry_failed failed")
        .is_none());
    // Alpha cancels its own: beta's rows stay failed.
    let cancelled = repo
        .cancel_batch(&t.alpha, t.alpha_batch, t.now + secs(1))
        .await
        .expect("cancel_batch failed")
        .expect("alpha's own batch");
    assert_eq!(cancelled.counts.cancelled, 2);
    for d in &t.domains {
        let a = fixtures::stored_organization(repo, &t.alpha, d).await;
        assert_eq!(a.status, ItemStatus::Cancelled);
        let b = fixtures::stored_organization(repo, &t.beta, d).await;
        assert_eq!(b.status, ItemStatus::Failed, "alpha's cancel is not beta's");
    }
    // Beta re-drives its own: alpha's rows stay cancelled.
    let jobs = repo
        .retry_failed(&t.beta, t.beta_batch, t.now + secs(2))
        .await
        .expect("retry_failed failed")
        .expect("beta's own batch");
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.tenant == t.beta));
    for d in &t.domains {
        let b = fixtures::stored_organization(repo, &t.beta, d).await;
        assert_eq!(b.status, ItemStatus::Pending);
        let a = fixtures::stored_organization(repo, &t.alpha, d).await;
        assert_eq!(
            a.status,
            ItemStatus::Cancelled,
            "beta's re-drive is not alpha's"
        );
    }
    fixtures::cancel_quietly(repo, &t.beta, &[t.beta_batch]).await;
}

/// `prune` of one tenant's finished batch leaves the other tenant's open
/// batch of the same domains, and both tenants' organization rows.
pub async fn prune_of_one_tenants_batch_keeps_the_others(backend: TestBackend) {
    let repo = &*backend.repository;
    let (alpha, beta) = (fixtures::tenant(), fixtures::tenant());
    let t = fixtures::time_in_past(1990);
    let domain = fixtures::domain();
    let (alpha_batch, alpha_items) = store_own(repo, &alpha, &domain, "alpha", t).await;
    let (beta_batch, _) = store_own(repo, &beta, &domain, "beta", t).await;
    fixtures::process(repo, &fixtures::ids(&alpha_items), t).await;
    let done = repo
        .complete_batches(&[alpha_batch.id, beta_batch.id], t)
        .await
        .expect("complete_batches failed");
    assert_eq!(done.len(), 1, "only alpha's batch is finished");
    let beta_before = fixtures::stored_organization(repo, &beta, &domain).await;
    repo.prune(t + secs(1), 1000).await.expect("prune failed");
    assert!(repo
        .batch_status(&alpha, alpha_batch.id)
        .await
        .expect("batch_status failed")
        .is_none());
    let open = fixtures::status(repo, &beta, beta_batch.id).await;
    assert_eq!(open.counts.pending, 1, "beta's open batch is kept");
    let own = fixtures::stored_organization(repo, &alpha, &domain).await;
    assert_eq!(own.status, ItemStatus::Completed);
    untouched(
        &fixtures::stored_organization(repo, &beta, &domain).await,
        &beta_before,
        "pruning alpha's batch",
    );
    fixtures::cancel_quietly(repo, &beta, &[beta_batch.id]).await;
}

/// Two tenants upserting the same domains at the same time: both succeed,
/// each gets its own `Created` rows with its own data.
pub async fn tenants_upsert_the_same_domains_concurrently(backend: TestBackend) {
    let repo = Arc::clone(&backend.repository);
    let tenants = [fixtures::tenant(), fixtures::tenant()];
    let domains: Vec<Domain> = (0..50).map(|_| fixtures::domain()).collect();
    let barrier = Arc::new(Barrier::new(tenants.len()));
    let mut tasks = Vec::new();
    for (n, tenant) in tenants.iter().enumerate() {
        let orgs: Vec<_> = domains
            .iter()
            .map(|d| other_data(d, &format!("tenant{n}")))
            .collect();
        let s = fixtures::submission_of(tenant, orgs, ConflictPolicy::Skip);
        let (repo, barrier) = (Arc::clone(&repo), Arc::clone(&barrier));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            repo.store_submission(&s).await
        }));
    }
    let mut batches = Vec::new();
    for task in tasks {
        match task.await.expect("store task panicked") {
            Ok(StoreResult::Stored { batch, items }) => {
                assert!(items.iter().all(|i| i.change == Change::Created));
                batches.push(batch.id);
            }
            other => panic!("a concurrent store of another tenant's domains failed: {other:?}"),
        }
    }
    for d in &domains {
        let a = fixtures::stored_organization(&*repo, &tenants[0], d).await;
        let b = fixtures::stored_organization(&*repo, &tenants[1], d).await;
        assert_ne!(a.id, b.id);
        assert_eq!(a.name, format!("tenant0's {d}"));
        assert_eq!(b.name, format!("tenant1's {d}"));
        assert_eq!((a.version, b.version), (1, 1));
    }
    for (tenant, batch) in tenants.iter().zip(batches) {
        fixtures::cancel_quietly(&*repo, tenant, &[batch]).await;
    }
}

/// `claim_items` hands the worker the submitting tenant's own organization
/// (its name and contact), and finishing it writes only that row.
pub async fn claim_reads_the_submitting_tenants_organization(backend: TestBackend) {
    let repo = &*backend.repository;
    let t = two_tenants(repo, 2).await;
    let claimed = fixtures::claim(repo, &t.alpha_items, t.now).await;
    for c in &claimed {
        assert_eq!(c.tenant, t.alpha);
        assert!(
            c.organization.name.starts_with("alpha's "),
            "the worker got another tenant's data: {:?}",
            c.organization
        );
        assert_eq!(
            c.organization.contact_email,
            format!("alpha@{}", c.organization.domain)
        );
    }
    fixtures::finish(
        repo,
        &fixtures::leases(&claimed),
        Resolution::Completed,
        t.now,
    )
    .await;
    for d in &t.domains {
        let a = fixtures::stored_organization(repo, &t.alpha, d).await;
        assert_eq!(a.status, ItemStatus::Completed);
        let b = fixtures::stored_organization(repo, &t.beta, d).await;
        assert_eq!(
            b.status,
            ItemStatus::Pending,
            "alpha's completion is not beta's"
        );
        assert!(b.name.starts_with("beta's "));
    }
    fixtures::cancel_quietly(repo, &t.beta, &[t.beta_batch]).await;
    let _ = t.alpha_batch;
}

/// Idempotency keys and tenant ids compare exactly: `Key` is not `key`, and
/// tenant `T-x` is not tenant `t-x` (a case-insensitive collation would mix them).
pub async fn idempotency_keys_and_tenants_compare_exactly(backend: TestBackend) {
    let repo = &*backend.repository;
    let lower = fixtures::tenant();
    let upper = TenantId::parse(lower.as_str().to_uppercase()).expect("a valid tenant id");
    let mut first = fixtures::submission(&lower, 1, ConflictPolicy::Update);
    first.idempotency_key = Some("Key".into());
    let (b1, _) = fixtures::store(repo, &first).await;
    let mut other_case = fixtures::submission(&lower, 1, ConflictPolicy::Update);
    other_case.idempotency_key = Some("key".into());
    let (b2, _) = fixtures::store(repo, &other_case).await;
    assert_ne!(b1.id, b2.id, "`key` is another key than `Key`");
    let mut other_tenant = fixtures::submission_of(
        &upper,
        fixtures::organizations_of(&first),
        ConflictPolicy::Update,
    );
    other_tenant.idempotency_key = Some("Key".into());
    let (b3, items) = fixtures::store(repo, &other_tenant).await;
    assert_eq!(
        items[0].change,
        Change::Created,
        "another tenant's row is not this one's"
    );
    assert!(repo
        .batch_status(&upper, b1.id)
        .await
        .expect("batch_status failed")
        .is_none());
    fixtures::cancel_quietly(repo, &lower, &[b1.id, b2.id]).await;
    fixtures::cancel_quietly(repo, &upper, &[b3.id]).await;
}
