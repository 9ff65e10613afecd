//! Organizations as a resource: the tenant's own listing, version history
//! and soft delete, each isolated from every other tenant.

use crate::model::{
    BatchId, Change, ConflictPolicy, Domain, ItemStatus, NewOrganization, TenantId,
};
use crate::organizations::{OrganizationQuery, OrganizationVersion};
use crate::repository::OrgRepository;
use crate::testing::fixtures::{self, secs};
use crate::testing::TestBackend;

async fn versions(
    repo: &dyn OrgRepository,
    tenant: &TenantId,
    domain: &Domain,
) -> Option<Vec<OrganizationVersion>> {
    repo.organization_versions(tenant, domain)
        .await
        .expect("organization_versions failed")
}

async fn delete(repo: &dyn OrgRepository, tenant: &TenantId, domain: &Domain) -> bool {
    repo.delete_organization(tenant, domain, crate::model::now())
        .await
        .expect("delete_organization failed")
}

/// Every page of the tenant's organizations, `limit` at a time, starting after `after`.
async fn all_pages(
    repo: &dyn OrgRepository,
    tenant: &TenantId,
    limit: u32,
    after: Option<Domain>,
) -> Vec<Domain> {
    let mut query = OrganizationQuery { after, limit };
    let mut seen = Vec::new();
    for _ in 0..100 {
        let page = repo
            .list_organizations(tenant, &query)
            .await
            .expect("list_organizations failed");
        assert!(
            page.organizations.len() <= limit as usize,
            "a page holds at most limit"
        );
        seen.extend(page.organizations.into_iter().map(|o| o.domain));
        match page.next_cursor {
            Some(next) => query.after = Some(next),
            None => return seen,
        }
    }
    panic!("list_organizations never reached its last page");
}

/// The version a write recorded, as the case expects it.
fn version_of(
    version: i64,
    org: &NewOrganization,
    batch: BatchId,
    at: crate::model::Timestamp,
) -> OrganizationVersion {
    OrganizationVersion {
        version,
        name: org.name.clone(),
        contact_email: org.contact_email.clone(),
        batch_id: Some(batch),
        written_at: at,
    }
}

/// `organization_versions` lists one version per created, updated or
/// restored write, oldest first, with the batch and time; `Unchanged` and
/// `Skipped` record none.
pub async fn organization_versions_record_every_write(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let first = fixtures::organization(&fixtures::domain());
    let t0 = crate::model::now();
    let s1 = fixtures::submission_at(&tenant, vec![first.clone()], ConflictPolicy::Update, t0);
    let (b1, _) = fixtures::store(repo, &s1).await;
    let second = fixtures::renamed(&first);
    let s2 = fixtures::submission_at(
        &tenant,
        vec![second.clone()],
        ConflictPolicy::Update,
        t0 + secs(1),
    );
    let (b2, i2) = fixtures::store(repo, &s2).await;
    assert_eq!(i2[0].change, Change::Updated);
    // Unchanged and skipped write no version.
    let s3 = fixtures::submission_at(
        &tenant,
        vec![second.clone()],
        ConflictPolicy::Update,
        t0 + secs(2),
    );
    assert_eq!(
        fixtures::store(repo, &s3).await.1[0].change,
        Change::Unchanged
    );
    let s4 = fixtures::submission_at(
        &tenant,
        vec![fixtures::renamed(&first)],
        ConflictPolicy::Skip,
        t0 + secs(3),
    );
    assert_eq!(
        fixtures::store(repo, &s4).await.1[0].change,
        Change::Skipped
    );

    let found = versions(repo, &tenant, &first.domain)
        .await
        .expect("the organization exists");
    assert_eq!(
        found,
        vec![
            version_of(1, &first, b1.id, t0),
            version_of(2, &second, b2.id, t0 + secs(1))
        ]
    );
    assert_eq!(
        fixtures::stored_organization(repo, &tenant, &first.domain)
            .await
            .version,
        2
    );
    assert_eq!(
        versions(repo, &tenant, &fixtures::domain()).await,
        None,
        "unknown domain"
    );
    assert_eq!(
        versions(repo, &fixtures::tenant(), &first.domain).await,
        None,
        "another tenant sees no versions of this tenant's organization"
    );
}

/// `list_organizations` pages through the tenant's own organizations in
/// domain order without repeats or gaps; another tenant's rows of the same
/// domains never appear.
pub async fn list_organizations_pages_by_domain_for_the_tenant(backend: TestBackend) {
    let repo = &*backend.repository;
    let (alpha, beta) = (fixtures::tenant(), fixtures::tenant());
    let mut domains: Vec<Domain> = (0..7).map(|_| fixtures::domain()).collect();
    let orgs: Vec<_> = domains.iter().map(fixtures::organization).collect();
    fixtures::store(
        repo,
        &fixtures::submission_of(&alpha, orgs.clone(), ConflictPolicy::Update),
    )
    .await;
    // Beta has some of the same domains and one of its own.
    let mut beta_orgs = orgs[..3].to_vec();
    beta_orgs.push(fixtures::organization(&fixtures::domain()));
    fixtures::store(
        repo,
        &fixtures::submission_of(&beta, beta_orgs.clone(), ConflictPolicy::Update),
    )
    .await;
    domains.sort();

    // One order whatever the page size (the engine's order of domains).
    let full = all_pages(repo, &alpha, 100, None).await;
    let mut sorted = full.clone();
    sorted.sort();
    assert_eq!(sorted, domains, "every own organization once");
    for limit in [1, 3, 7] {
        assert_eq!(
            all_pages(repo, &alpha, limit, None).await,
            full,
            "limit {limit}"
        );
    }
    let mut beta_domains: Vec<Domain> = beta_orgs.iter().map(|o| o.domain.clone()).collect();
    beta_domains.sort();
    let mut beta_listed = all_pages(repo, &beta, 2, None).await;
    beta_listed.sort();
    assert_eq!(beta_listed, beta_domains);
    assert_eq!(
        all_pages(repo, &alpha, 2, Some(full[2].clone())).await,
        full[3..].to_vec()
    );
    // A cursor need not name a live organization: the page starts after it.
    assert!(delete(repo, &alpha, &full[2]).await);
    assert_eq!(
        all_pages(repo, &alpha, 2, Some(full[2].clone())).await,
        full[3..].to_vec()
    );
    let page = repo
        .list_organizations(
            &alpha,
            &OrganizationQuery {
                after: None,
                limit: 7,
            },
        )
        .await
        .expect("list_organizations failed");
    assert_eq!(
        page.next_cursor, None,
        "a page holding the rest is the last"
    );
    assert_eq!(page.organizations.len(), 6);
    assert_eq!(page.organizations[0].domain, full[0]);
    assert_eq!(
        page.organizations[0].name,
        fixtures::organization(&full[0]).name
    );
    let empty = repo
        .list_organizations(
            &fixtures::tenant(),
            &OrganizationQuery {
                after: None,
                limit: 5,
            },
        )
        .await
        .expect("list_organizations failed");
    assert!(empty.organizations.is_empty() && empty.next_cursor.is_none());
}

/// `delete_organization` soft-deletes: `true` once, then `false`; the
/// organization is hidden from `organization_by_domain`, the listing and
/// the versions; unknown domains answer `false`.
pub async fn delete_organization_hides_it_from_reads(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let submission = fixtures::submission(&tenant, 2, ConflictPolicy::Update);
    fixtures::store(repo, &submission).await;
    let gone = submission.organizations[0].1.domain.clone();
    let kept = submission.organizations[1].1.domain.clone();

    assert!(
        delete(repo, &tenant, &gone).await,
        "the first delete deletes"
    );
    assert!(
        !delete(repo, &tenant, &gone).await,
        "a deleted organization is not deleted again"
    );
    assert!(
        !delete(repo, &tenant, &fixtures::domain()).await,
        "unknown domain"
    );
    assert_eq!(
        repo.organization_by_domain(&tenant, &gone)
            .await
            .expect("organization_by_domain failed"),
        None
    );
    assert_eq!(versions(repo, &tenant, &gone).await, None);
    assert_eq!(all_pages(repo, &tenant, 10, None).await, vec![kept.clone()]);
    assert_eq!(
        fixtures::stored_organization(repo, &tenant, &kept)
            .await
            .deleted_at,
        None
    );
}

/// A submission of a deleted domain restores it under either policy:
/// `Created`, pending, its version continuing, `created_at` kept, the new
/// data and a recorded version.
pub async fn submission_restores_a_deleted_organization(backend: TestBackend) {
    let repo = &*backend.repository;
    for policy in [ConflictPolicy::Update, ConflictPolicy::Skip] {
        let tenant = fixtures::tenant();
        let first = fixtures::organization(&fixtures::domain());
        let t0 = crate::model::now();
        let s1 = fixtures::submission_at(&tenant, vec![first.clone()], ConflictPolicy::Update, t0);
        let (b1, i1) = fixtures::store(repo, &s1).await;
        fixtures::process(repo, &[i1[0].item_id], t0).await;
        let before = fixtures::stored_organization(repo, &tenant, &first.domain).await;
        assert!(delete(repo, &tenant, &first.domain).await);

        // The same data: still a restore (identical data is no reason to stay deleted).
        let again = if policy == ConflictPolicy::Skip {
            fixtures::renamed(&first)
        } else {
            first.clone()
        };
        let s2 = fixtures::submission_at(&tenant, vec![again.clone()], policy, t0 + secs(5));
        let (b2, i2) = fixtures::store(repo, &s2).await;
        assert_eq!(
            (i2[0].change, i2[0].status),
            (Change::Created, ItemStatus::Pending),
            "{policy:?}: a restored organization is reported created and is processed"
        );
        assert_eq!(
            i2[0].organization_id, before.id,
            "{policy:?}: the same row comes back"
        );
        let restored = fixtures::stored_organization(repo, &tenant, &first.domain).await;
        assert_eq!(restored.version, 2, "{policy:?}: the version continues");
        assert_eq!(restored.deleted_at, None);
        assert_eq!(restored.status, ItemStatus::Pending);
        assert_eq!(
            (restored.created_at, restored.updated_at),
            (t0, t0 + secs(5))
        );
        assert_eq!(
            (restored.name.as_str(), restored.contact_email.as_str()),
            (again.name.as_str(), again.contact_email.as_str())
        );
        assert_eq!(
            versions(repo, &tenant, &first.domain).await,
            Some(vec![
                version_of(1, &first, b1.id, t0),
                version_of(2, &again, b2.id, t0 + secs(5))
            ]),
            "{policy:?}"
        );
        fixtures::cancel_quietly(repo, &tenant, &[b2.id]).await;
    }
}

/// Alpha can neither read, list, version nor delete beta's organization of
/// a domain, and deleting its own row of that domain leaves beta's as it was.
pub async fn organizations_of_another_tenant_stay_out_of_reach(backend: TestBackend) {
    let repo = &*backend.repository;
    let (alpha, beta) = (fixtures::tenant(), fixtures::tenant());
    let shared = fixtures::domain();
    let beta_only = fixtures::domain();
    let beta_s = fixtures::submission_of(
        &beta,
        vec![
            fixtures::organization(&shared),
            fixtures::organization(&beta_only),
        ],
        ConflictPolicy::Update,
    );
    fixtures::store(repo, &beta_s).await;
    let alpha_s = fixtures::submission_of(
        &alpha,
        vec![fixtures::organization(&shared)],
        ConflictPolicy::Update,
    );
    fixtures::store(repo, &alpha_s).await;
    let beta_shared = fixtures::stored_organization(repo, &beta, &shared).await;
    let beta_versions = versions(repo, &beta, &shared).await;

    assert_eq!(
        repo.organization_by_domain(&alpha, &beta_only)
            .await
            .expect("read failed"),
        None
    );
    assert_eq!(versions(repo, &alpha, &beta_only).await, None);
    assert!(
        !delete(repo, &alpha, &beta_only).await,
        "alpha cannot delete beta's organization"
    );
    assert_eq!(
        all_pages(repo, &alpha, 10, None).await,
        vec![shared.clone()]
    );

    assert!(delete(repo, &alpha, &shared).await);
    assert_eq!(
        fixtures::stored_organization(repo, &beta, &shared).await,
        beta_shared
    );
    assert_eq!(versions(repo, &beta, &shared).await, beta_versions);
    fixtures::stored_organization(repo, &beta, &beta_only).await;
    let mut both = vec![shared.clone(), beta_only.clone()];
    both.sort();
    assert_eq!(all_pages(repo, &beta, 10, None).await, both);
    assert!(all_pages(repo, &alpha, 10, None).await.is_empty());
}

/// A deleted organization's pending item is still claimed and finished (the
/// work was accepted before the delete), and pruning its batch keeps the
/// deleted row and its versions: a later restore continues the version.
pub async fn deleted_organizations_items_finish_and_prune_keeps_them(backend: TestBackend) {
    let repo = &*backend.repository;
    let tenant = fixtures::tenant();
    let org = fixtures::organization(&fixtures::domain());
    // Before every other case's batches: this prune takes none of theirs.
    let t0 = fixtures::time_in_past(1971);
    let s1 = fixtures::submission_at(&tenant, vec![org.clone()], ConflictPolicy::Update, t0);
    let (b1, i1) = fixtures::store(repo, &s1).await;
    assert!(delete(repo, &tenant, &org.domain).await);
    fixtures::process(repo, &[i1[0].item_id], t0 + secs(1)).await;
    let done = repo
        .complete_batches(&[b1.id], t0 + secs(2))
        .await
        .expect("complete_batches failed");
    assert_eq!(done.len(), 1, "the deleted organization's batch completes");
    // Another case's prune (a later cutoff) may take the batch first.
    repo.prune(t0 + secs(3), 1000).await.expect("prune failed");
    let gone = repo
        .batch_status(&tenant, b1.id)
        .await
        .expect("batch_status failed");
    assert_eq!(gone, None, "the batch was pruned");
    let s2 = fixtures::submission_at(
        &tenant,
        vec![org.clone()],
        ConflictPolicy::Update,
        t0 + secs(4),
    );
    let (b2, i2) = fixtures::store(repo, &s2).await;
    assert_eq!(i2[0].change, Change::Created);
    assert_eq!(i2[0].organization_id, i1[0].organization_id);
    let listed = versions(repo, &tenant, &org.domain)
        .await
        .expect("restored");
    assert_eq!(
        listed,
        vec![
            version_of(1, &org, b1.id, t0),
            version_of(2, &org, b2.id, t0 + secs(4))
        ],
        "prune keeps versions, whose batch may be gone"
    );
    fixtures::cancel_quietly(repo, &tenant, &[b2.id]).await;
}
