//! The forward migration that keys PostgreSQL's organizations by (tenant,
//! domain) instead of a surrogate id (`20261231000000`): a database filled
//! by two tenants under the schema before it (organizations created,
//! updated, processed; versions; pending items) opens with today's code,
//! keeps every row as it was, and keeps working.
#![cfg(feature = "postgres")]
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use onboarding_core::model::{now, Change, ConflictPolicy, Domain, ItemStatus, TenantId};
use onboarding_core::organizations::OrganizationVersion;
use onboarding_core::repository::OrgRepository;
use onboarding_core::testing::fixtures;
use onboarding_sqlx::testing::TestDatabase;
use onboarding_sqlx::Engine;
use sqlx::Connection;

/// The migration under test: the old schema is every migration before it.
const KEYED_BY_DOMAIN: i64 = 20261231000000;
/// Applied with the old schema too: it only adds the organization columns
/// today's statements (which fill the old schema) write.
const CURRENT_VERSION_IN_ROW: i64 = 20270103000000;
/// Applied with the old schema too: today's statements count finishes in
/// the table it adds.
const THROUGHPUT_SECONDS: i64 = 20270106000000;
/// Applied with the old schema too: today's statements write the column it
/// adds.
const STATUS_FROM_LATEST_ITEM: i64 = 20270107000000;
/// Applied with the old schema too: today's submission statement calls the
/// function it adds.
const ITEM_POSITION: i64 = 20270110000000;

/// What a tenant sees of one domain: the row and its history.
async fn seen(
    repo: &dyn OrgRepository,
    tenant: &TenantId,
    domain: &Domain,
) -> (
    onboarding_core::model::Organization,
    Vec<OrganizationVersion>,
) {
    let row = fixtures::stored_organization(repo, tenant, domain).await;
    let versions = repo
        .organization_versions(tenant, domain)
        .await
        .unwrap()
        .unwrap();
    (row, versions)
}

#[tokio::test]
async fn postgres_keys_organizations_by_tenant_and_domain() {
    let db = TestDatabase::create_labelled(Engine::Postgres, "migrate_key").await;
    let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let mut old = sqlx::migrate!("./migrations/postgres");
    old.migrations = Cow::Owned(
        old.migrations
            .iter()
            .filter(|m| {
                m.version < KEYED_BY_DOMAIN
                    || m.version == CURRENT_VERSION_IN_ROW
                    || m.version == THROUGHPUT_SECONDS
                    || m.version == STATUS_FROM_LATEST_ITEM
                    || m.version == ITEM_POSITION
            })
            .cloned()
            .collect(),
    );
    old.run(&mut c).await.unwrap();

    // Filled under the old schema (today's statements find rows by the
    // unique (tenant, domain) it already had).
    let (alpha, beta) = (fixtures::tenant(), fixtures::tenant());
    let (shared, alpha_only) = (fixtures::domain(), fixtures::domain());
    let mut options = TestDatabase::options();
    options.run_migrations = false;
    let before = db.connect(options).await;
    let repo = before.repository();
    let s = fixtures::submission_of(
        &alpha,
        vec![
            fixtures::organization(&shared),
            fixtures::organization(&alpha_only),
        ],
        ConflictPolicy::Update,
    );
    fixtures::store(&*repo, &s).await;
    let s = fixtures::submission_of(
        &alpha,
        vec![fixtures::renamed(&fixtures::organization(&shared))],
        ConflictPolicy::Update,
    );
    let (_, alpha_pending) = fixtures::store(&*repo, &s).await;
    let s = fixtures::submission_of(
        &beta,
        vec![fixtures::organization(&shared)],
        ConflictPolicy::Update,
    );
    let (_, beta_items) = fixtures::store(&*repo, &s).await;
    fixtures::process(&*repo, &fixtures::ids(&beta_items), now()).await;
    let mut was = Vec::new();
    for (tenant, domain) in [(&alpha, &shared), (&alpha, &alpha_only), (&beta, &shared)] {
        was.push(seen(&*repo, tenant, domain).await);
    }
    before.close().await;

    let after = db.connect(TestDatabase::options()).await;
    let repo = after.repository();
    for ((tenant, domain), was) in [(&alpha, &shared), (&alpha, &alpha_only), (&beta, &shared)]
        .into_iter()
        .zip(&was)
    {
        assert_eq!(
            &seen(&*repo, tenant, domain).await,
            was,
            "{domain} of {tenant}: every row and version kept"
        );
    }
    let key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = 'organizations'::regclass AND i.indisprimary ORDER BY a.attnum",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert_eq!(key, ["domain", "tenant"], "the primary key");
    let indexes: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_index WHERE indrelid = 'organizations'::regclass",
    )
    .fetch_one(&mut c)
    .await
    .unwrap();
    assert_eq!(indexes, 1, "no second index on organizations");

    // An item stored before claims and finishes its own tenant's row.
    let alpha_row = &was[0].0;
    let claimed = fixtures::claim(&*repo, &fixtures::ids(&alpha_pending), now()).await;
    assert_eq!(claimed[0].organization.id, alpha_row.id);
    assert_eq!(claimed[0].organization.name, alpha_row.name);
    let done = fixtures::finish(
        &*repo,
        &fixtures::leases(&claimed),
        onboarding_core::repository::Resolution::Completed,
        now(),
    )
    .await;
    assert_eq!(done.len(), 1);
    let (alpha_after, _) = seen(&*repo, &alpha, &shared).await;
    assert_eq!(alpha_after.status, ItemStatus::Completed);

    // New submissions work on the migrated rows: beta's update is beta's only.
    let s = fixtures::submission_of(
        &beta,
        vec![fixtures::renamed(&fixtures::organization(&shared))],
        ConflictPolicy::Update,
    );
    let (_, items) = fixtures::store(&*repo, &s).await;
    assert_eq!(items[0].change, Change::Updated);
    assert_eq!(items[0].organization_id, was[2].0.id, "the same row");
    let (beta_after, versions) = seen(&*repo, &beta, &shared).await;
    assert_eq!(beta_after.version, was[2].0.version + 1);
    assert_eq!(versions.len(), was[2].1.len() + 1);
    assert_eq!(seen(&*repo, &alpha, &shared).await.1, was[0].1);
    after.close().await;
}
