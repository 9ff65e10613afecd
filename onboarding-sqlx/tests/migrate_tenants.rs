//! The forward migration to organizations per tenant, on every engine: a
//! database created with the migrations before it and filled with two
//! tenants' data (one organization row shared by both, as the old schema
//! stored it) opens with today's code, keeps every row, and keeps working.
#![allow(clippy::unwrap_used)]

use std::borrow::Cow;

use onboarding_core::model::{
    BatchId, Change, ConflictPolicy, Domain, ItemId, ItemStatus, TenantId,
};
use onboarding_core::repository::{ItemQuery, Resolution};
use onboarding_core::testing::fixtures;
use onboarding_sqlx::testing::TestDatabase;
use onboarding_sqlx::Engine;
use sqlx::migrate::Migrator;
use sqlx::Connection;
use uuid::Uuid;

/// The first migration of organizations per tenant: the old schema is every migration before it.
const TENANT_ORGANIZATIONS: i64 = 20261210000000;

/// The migrations before organizations per tenant.
fn old(mut migrator: Migrator) -> Migrator {
    let before: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version < TENANT_ORGANIZATIONS)
        .cloned()
        .collect();
    migrator.migrations = Cow::Owned(before);
    migrator
}

/// SQL literals of one engine.
struct Literals {
    engine: Engine,
}

impl Literals {
    fn uuid(&self, id: Uuid) -> String {
        match self.engine {
            Engine::Postgres => format!("'{id}'::uuid"),
            Engine::MySql => format!("UNHEX('{}')", id.simple()),
            _ => format!("X'{}'", id.simple()),
        }
    }

    fn time(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => "'2026-11-01T10:00:00Z'::timestamptz",
            Engine::MySql => "'2026-11-01 10:00:00.000000'",
            _ => "'2026-11-01T10:00:00+00:00'",
        }
    }
}

struct OldData {
    alpha: TenantId,
    beta: TenantId,
    shared: Domain,
    alpha_only: Domain,
    orphan: Domain,
    alpha_items: [Uuid; 2],
    beta_item: Uuid,
    shared_org: Uuid,
    alpha_batch: Uuid,
    beta_batch: Uuid,
}

/// Rows as the old schema held them: one `shared` organization row (at
/// version 3) that items of both tenants point at.
fn old_rows(l: &Literals) -> (OldData, Vec<String>) {
    let d = OldData {
        alpha: fixtures::tenant(),
        beta: fixtures::tenant(),
        shared: fixtures::domain(),
        alpha_only: fixtures::domain(),
        orphan: fixtures::domain(),
        alpha_items: [Uuid::now_v7(), Uuid::now_v7()],
        beta_item: Uuid::now_v7(),
        shared_org: Uuid::now_v7(),
        alpha_batch: Uuid::now_v7(),
        beta_batch: Uuid::now_v7(),
    };
    let (alpha_only_org, orphan_org) = (Uuid::now_v7(), Uuid::now_v7());
    let (alpha_batch, beta_batch) = (d.alpha_batch, d.beta_batch);
    let t = l.time();
    let org = |id: Uuid, name: &str, domain: &Domain, version: i64| {
        format!(
            "INSERT INTO organizations (id, name, domain, contact_email, status, version, created_at, updated_at)
             VALUES ({}, '{name}', '{domain}', 'admin@{domain}', 'pending', {version}, {t}, {t})",
            l.uuid(id)
        )
    };
    let batch = |id: Uuid, tenant: &TenantId, total: i64| {
        format!(
            "INSERT INTO batches (id, tenant, idempotency_key, request_hash, total, policy, mode, created_at)
             VALUES ({}, '{tenant}', NULL, 'hash', {total}, 'update', 'atomic', {t})",
            l.uuid(id)
        )
    };
    let item = |id: Uuid,
                batch: Uuid,
                tenant: &TenantId,
                position: i64,
                org: Uuid,
                domain: &Domain| {
        format!(
            "INSERT INTO batch_items (id, batch_id, tenant, position, organization_id, domain, status,
                change_kind, attempts, available_at, sweep_at, errors, created_at, updated_at)
             VALUES ({}, {}, '{tenant}', {position}, {}, '{domain}', 'pending', 'updated', 0, {t}, {t}, '[]', {t}, {t})",
            l.uuid(id),
            l.uuid(batch),
            l.uuid(org)
        )
    };
    let job = |item: Uuid, tenant: &TenantId| {
        format!(
            "INSERT INTO jobs (item_id, tenant, available_at) VALUES ({}, '{tenant}', {t})",
            l.uuid(item)
        )
    };
    let statements = vec![
        org(d.shared_org, "Shared v3", &d.shared, 3),
        org(alpha_only_org, "Alpha only", &d.alpha_only, 1),
        org(orphan_org, "Orphan", &d.orphan, 2),
        batch(alpha_batch, &d.alpha, 2),
        batch(beta_batch, &d.beta, 1),
        item(
            d.alpha_items[0],
            alpha_batch,
            &d.alpha,
            0,
            d.shared_org,
            &d.shared,
        ),
        item(
            d.alpha_items[1],
            alpha_batch,
            &d.alpha,
            1,
            alpha_only_org,
            &d.alpha_only,
        ),
        item(d.beta_item, beta_batch, &d.beta, 0, d.shared_org, &d.shared),
        // The SQL queue's messages for two of them.
        job(d.alpha_items[0], &d.alpha),
        job(d.beta_item, &d.beta),
    ];
    (d, statements)
}

/// Creates the old schema on `db` and fills it.
async fn old_database(db: &TestDatabase) -> OldData {
    let l = Literals {
        engine: db.engine(),
    };
    let (data, statements) = old_rows(&l);
    match db.engine() {
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
            old(sqlx::migrate!("./migrations/postgres"))
                .run(&mut c)
                .await
                .unwrap();
            for s in &statements {
                sqlx::raw_sql(s).execute(&mut c).await.unwrap();
            }
        }
        Engine::MySql => {
            let mut c = sqlx::MySqlConnection::connect(db.url()).await.unwrap();
            old(sqlx::migrate!("./migrations/mysql"))
                .run(&mut c)
                .await
                .unwrap();
            for s in &statements {
                sqlx::raw_sql(s).execute(&mut c).await.unwrap();
            }
        }
        _ => {
            let mut c = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
            old(sqlx::migrate!("./migrations/sqlite"))
                .run(&mut c)
                .await
                .unwrap();
            for s in &statements {
                sqlx::raw_sql(s).execute(&mut c).await.unwrap();
            }
        }
    }
    data
}

/// Items whose organization row is not their own tenant's (must be none).
async fn misplaced_items(db: &TestDatabase) -> i64 {
    let sql = "SELECT COUNT(*) FROM batch_items i JOIN organizations o ON o.id = i.organization_id
               WHERE o.tenant <> i.tenant";
    match db.engine() {
        Engine::Postgres => {
            let mut c = sqlx::PgConnection::connect(db.url()).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        }
        Engine::MySql => {
            let mut c = sqlx::MySqlConnection::connect(db.url()).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        }
        _ => {
            let mut c = sqlx::SqliteConnection::connect(db.url()).await.unwrap();
            sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap()
        }
    }
}

async fn migrates_and_keeps_working(engine: Engine) {
    let db = TestDatabase::create_labelled(engine, "migrate").await;
    let d = old_database(&db).await;
    let backend = db.connect(TestDatabase::options()).await;
    let repo = backend.repository();

    // The shared row became one row per tenant, each with the current data and version.
    let alpha_row = fixtures::stored_organization(&*repo, &d.alpha, &d.shared).await;
    let beta_row = fixtures::stored_organization(&*repo, &d.beta, &d.shared).await;
    for row in [&alpha_row, &beta_row] {
        assert_eq!(
            (row.name.as_str(), row.version),
            ("Shared v3", 3),
            "{engine:?}"
        );
        assert_eq!(row.contact_email, format!("admin@{}", d.shared));
    }
    assert_ne!(
        alpha_row.id, beta_row.id,
        "{engine:?}: two tenants, two rows"
    );
    assert!(
        [alpha_row.id.0, beta_row.id.0].contains(&d.shared_org),
        "{engine:?}: one tenant keeps the original row"
    );
    let own = fixtures::stored_organization(&*repo, &d.alpha, &d.alpha_only).await;
    assert_eq!(own.name, "Alpha only");
    assert!(repo
        .organization_by_domain(&d.beta, &d.alpha_only)
        .await
        .unwrap()
        .is_none());
    for tenant in [&d.alpha, &d.beta] {
        assert!(
            repo.organization_by_domain(tenant, &d.orphan)
                .await
                .unwrap()
                .is_none(),
            "{engine:?}: a row no batch references belongs to no tenant"
        );
    }
    assert_eq!(
        misplaced_items(&db).await,
        0,
        "{engine:?}: items point at their own tenant's row"
    );

    // Claims read the item's own tenant's row. The items are claimed by the
    // ids their batches list now (PostgreSQL gives old items ids keyed by
    // batch and position, `20270109000000_item_ids_by_position`).
    let first_item = |tenant: TenantId, batch: Uuid| {
        let repo = repo.clone();
        async move {
            let page = repo
                .list_items(
                    &tenant,
                    BatchId(batch),
                    &ItemQuery {
                        limit: 10,
                        ..ItemQuery::default()
                    },
                )
                .await
                .unwrap()
                .expect("the batch is still there");
            page.items.first().expect("its items are listed").id
        }
    };
    let alpha_item = first_item(d.alpha.clone(), d.alpha_batch).await;
    let beta_item = first_item(d.beta.clone(), d.beta_batch).await;
    if engine == Engine::Postgres {
        assert_eq!(alpha_item, ItemId::in_batch(BatchId(d.alpha_batch), 0));
    } else {
        assert_eq!(alpha_item, ItemId(d.alpha_items[0]), "{engine:?}");
    }
    assert_eq!(beta_item.0 == d.beta_item, engine != Engine::Postgres);
    // The SQL queue's messages name the items by the ids they have now.
    let queue = backend.queue();
    let delivered = queue
        .dequeue(10, std::time::Duration::from_secs(1))
        .await
        .unwrap();
    let mut named: Vec<ItemId> = delivered.iter().map(|d| d.job.item_id).collect();
    named.sort();
    let mut listed = vec![alpha_item, beta_item];
    listed.sort();
    assert_eq!(named, listed, "{engine:?}: queued jobs follow their items");
    let claimed = fixtures::claim(
        &*repo,
        &[alpha_item, beta_item],
        onboarding_core::model::now(),
    )
    .await;
    for c in &claimed {
        let expected = if c.tenant == d.alpha {
            alpha_row.id
        } else {
            beta_row.id
        };
        assert_eq!(c.organization.id, expected, "{engine:?}");
    }
    // Work pending at the upgrade still completes its organizations.
    let finished = fixtures::finish(
        &*repo,
        &fixtures::leases(&claimed),
        Resolution::Completed,
        onboarding_core::model::now(),
    )
    .await;
    assert_eq!(finished.len(), 2, "{engine:?}: both claims finish");
    for tenant in [&d.alpha, &d.beta] {
        let row = fixtures::stored_organization(&*repo, tenant, &d.shared).await;
        assert_eq!(
            row.status,
            ItemStatus::Completed,
            "{engine:?}: an item pending at the upgrade completes its organization"
        );
    }

    // New submissions work on the migrated rows: beta's update is beta's only.
    let renamed = onboarding_core::model::NewOrganization {
        name: "Beta's new name".into(),
        domain: d.shared.clone(),
        contact_email: "beta@example.com".into(),
    };
    let s = fixtures::submission_of(&d.beta, vec![renamed], ConflictPolicy::Update);
    let (_, items) = fixtures::store(&*repo, &s).await;
    assert_eq!(items[0].change, Change::Updated, "{engine:?}");
    let beta_after = fixtures::stored_organization(&*repo, &d.beta, &d.shared).await;
    assert_eq!(
        (beta_after.name.as_str(), beta_after.version),
        ("Beta's new name", 4)
    );
    let alpha_after = fixtures::stored_organization(&*repo, &d.alpha, &d.shared).await;
    assert_eq!(
        (alpha_after.name.as_str(), alpha_after.version),
        ("Shared v3", 3)
    );
    // A third tenant's first submission of the domain is new to it.
    let third = fixtures::tenant();
    let s = fixtures::submission(&third, 0, ConflictPolicy::Update);
    let s = fixtures::submission_of(&third, vec![fixtures::organization(&d.shared)], s.policy);
    let (_, items) = fixtures::store(&*repo, &s).await;
    assert_eq!(items[0].change, Change::Created, "{engine:?}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn postgres_migrates_shared_organizations_to_tenants() {
    migrates_and_keeps_working(Engine::Postgres).await;
}

#[cfg(feature = "mysql")]
#[tokio::test]
async fn mysql_migrates_shared_organizations_to_tenants() {
    migrates_and_keeps_working(Engine::MySql).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_migrates_shared_organizations_to_tenants() {
    migrates_and_keeps_working(Engine::Sqlite).await;
}
