//! The organization resource's statements: reading one by domain, listing,
//! versions, soft delete (the upsert writes the versions: each engine's
//! `repository.rs`). One source compiled once per engine (`pg/mod.rs` and
//! `lockstep::engine!` declare it with `#[path]`), each time with that
//! engine's `Db`; placeholders come from `QueryBuilder`.

use onboarding_core::model::{Domain, Organization, TenantId, Timestamp};
use onboarding_core::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use onboarding_core::Result;
use sqlx::{Pool, QueryBuilder};
use uuid::Uuid;

use super::{Db, ORGANIZATIONS_READ};
use crate::error::DbResultExt;
use crate::organizations::{org_page, VersionRow, VERSION_COLUMNS};
use crate::rows::{OrgRow, ORG_COLUMNS};

/// Appends the condition that finds the tenant's live row of `domain`
/// (one lookup of the `(tenant, domain)` key).
fn push_live<'a>(qb: &mut QueryBuilder<'a, Db>, tenant: &'a TenantId, domain: &'a Domain) {
    qb.push(" WHERE tenant = ")
        .push_bind(tenant.as_str())
        .push(" AND domain = ")
        .push_bind(domain.as_str())
        .push(" AND deleted_at IS NULL");
}

/// The tenant's live organization of `domain`.
pub(super) async fn by_domain(
    pool: &Pool<Db>,
    tenant: &TenantId,
    domain: &Domain,
) -> Result<Option<Organization>> {
    let mut qb = QueryBuilder::new(format!("SELECT {ORG_COLUMNS} FROM {ORGANIZATIONS_READ}"));
    push_live(&mut qb, tenant, domain);
    let row: Option<OrgRow> = qb.build_query_as().fetch_optional(pool).await.db()?;
    row.map(OrgRow::into_model).transpose()
}

/// One page in domain order through the `(tenant, domain)` index.
pub(super) async fn list(
    pool: &Pool<Db>,
    tenant: &TenantId,
    query: &OrganizationQuery,
) -> Result<OrganizationPage> {
    let limit = query.limit.max(1);
    // Every domain sorts after '': one condition for the first page and the
    // next ones (no `IS NULL OR` for a planner to trip on).
    let mut qb = QueryBuilder::new(format!(
        "SELECT {ORG_COLUMNS} FROM {ORGANIZATIONS_READ} WHERE tenant = "
    ));
    qb.push_bind(tenant.as_str())
        .push(" AND domain > ")
        .push_bind(query.after.as_ref().map_or("", Domain::as_str))
        .push(" AND deleted_at IS NULL ORDER BY domain LIMIT ")
        .push_bind(i64::from(limit) + 1);
    let rows: Vec<OrgRow> = qb.build_query_as().fetch_all(pool).await.db()?;
    org_page(rows, limit)
}

/// The versions of the tenant's live organization of `domain`, oldest
/// first (`None`: no such organization).
pub(super) async fn versions(
    pool: &Pool<Db>,
    tenant: &TenantId,
    domain: &Domain,
) -> Result<Option<Vec<OrganizationVersion>>> {
    let mut qb = QueryBuilder::new("SELECT id, version FROM organizations");
    push_live(&mut qb, tenant, domain);
    let found: Option<(Uuid, i64)> = qb.build_query_as().fetch_optional(pool).await.db()?;
    let Some((id, version)) = found else {
        return Ok(None);
    };
    // The versions an update replaced, then the current one from the row
    // itself (its batch and time from the row when it has them; rows
    // written before, and engines that write every version, have it in
    // organization_versions).
    let mut qb = QueryBuilder::new(format!(
        "SELECT {VERSION_COLUMNS} FROM organization_versions WHERE organization_id = "
    ));
    qb.push_bind(id)
        .push(" AND version < ")
        .push_bind(version)
        .push(
            " UNION ALL SELECT o.version, o.name, o.contact_email,
                COALESCE(o.written_by, v.batch_id), COALESCE(o.written_at, v.created_at, o.updated_at)
             FROM organizations o LEFT JOIN organization_versions v
                ON v.organization_id = o.id AND v.version = o.version
             WHERE o.id = ",
        )
        .push_bind(id)
        .push(" ORDER BY version");
    let rows: Vec<VersionRow> = qb.build_query_as().fetch_all(pool).await.db()?;
    Ok(Some(rows.into_iter().map(VersionRow::into_model).collect()))
}

/// Marks the tenant's live row deleted: on the pool (PostgreSQL) or in the
/// caller's write transaction (the lock-then-write engines).
pub(super) async fn delete<'e>(
    db: impl sqlx::Executor<'e, Database = Db>,
    tenant: &TenantId,
    domain: &Domain,
    now: Timestamp,
) -> Result<bool> {
    let mut qb = QueryBuilder::new("UPDATE organizations SET deleted_at = ");
    qb.push_bind(now);
    push_live(&mut qb, tenant, domain);
    let done = qb.build().execute(db).await.db()?;
    Ok(done.rows_affected() > 0)
}
