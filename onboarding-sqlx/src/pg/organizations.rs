//! The organization resource on PostgreSQL: listing, versions, soft delete
//! (the upsert writes the versions: `repository.rs`).

use onboarding_core::model::{Domain, TenantId, Timestamp};
use onboarding_core::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use onboarding_core::Result;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::DbResultExt;
use crate::organizations::{org_page, VersionRow, VERSION_COLUMNS};
use crate::rows::{OrgRow, ORG_COLUMNS};

/// One page in domain order through the `(tenant, domain)` index.
pub(super) async fn list(
    pool: &PgPool,
    tenant: &TenantId,
    query: &OrganizationQuery,
) -> Result<OrganizationPage> {
    let limit = query.limit.max(1);
    // Every domain sorts after '': no `IS NULL OR` for the planner to trip on.
    let rows: Vec<OrgRow> = sqlx::query_as(&format!(
        "SELECT {ORG_COLUMNS} FROM organizations
         WHERE tenant = $1 AND domain > $2 AND deleted_at IS NULL
         ORDER BY domain LIMIT $3"
    ))
    .bind(tenant.as_str())
    .bind(query.after.as_ref().map_or("", Domain::as_str))
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await
    .db()?;
    org_page(rows, limit)
}

pub(super) async fn versions(
    pool: &PgPool,
    tenant: &TenantId,
    domain: &Domain,
) -> Result<Option<Vec<OrganizationVersion>>> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM organizations WHERE tenant = $1 AND domain = $2 AND deleted_at IS NULL",
    )
    .bind(tenant.as_str())
    .bind(domain.as_str())
    .fetch_optional(pool)
    .await
    .db()?;
    let Some(id) = id else {
        return Ok(None);
    };
    let rows: Vec<VersionRow> = sqlx::query_as(&format!(
        "SELECT {VERSION_COLUMNS} FROM organization_versions
         WHERE organization_id = $1 ORDER BY version"
    ))
    .bind(id)
    .fetch_all(pool)
    .await
    .db()?;
    Ok(Some(rows.into_iter().map(VersionRow::into_model).collect()))
}

pub(super) async fn delete(
    pool: &PgPool,
    tenant: &TenantId,
    domain: &Domain,
    now: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE organizations SET deleted_at = $3
         WHERE tenant = $1 AND domain = $2 AND deleted_at IS NULL",
    )
    .bind(tenant.as_str())
    .bind(domain.as_str())
    .bind(now)
    .execute(pool)
    .await
    .db()?;
    Ok(done.rows_affected() > 0)
}
