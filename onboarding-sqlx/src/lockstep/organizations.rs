//! The organization resource on MySQL/MariaDB and SQLite: listing, versions,
//! soft delete (the upsert writes the versions: `repository.rs`). Compiled
//! once per engine like the rest of `lockstep/`.

use onboarding_core::model::{Domain, TenantId, Timestamp};
use onboarding_core::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use onboarding_core::Result;
use sqlx::Pool;
use uuid::Uuid;

use super::Db;
use crate::error::DbResultExt;
use crate::organizations::{org_page, VersionRow, VERSION_COLUMNS};
use crate::rows::{OrgRow, ORG_COLUMNS};

/// One page in domain order through the `(tenant, domain)` index.
pub(super) async fn list(
    pool: &Pool<Db>,
    tenant: &TenantId,
    query: &OrganizationQuery,
) -> Result<OrganizationPage> {
    let limit = query.limit.max(1);
    // Every domain sorts after '': one condition for the first page and the next ones.
    let rows: Vec<OrgRow> = sqlx::query_as(&format!(
        "SELECT {ORG_COLUMNS} FROM organizations
         WHERE tenant = ? AND domain > ? AND deleted_at IS NULL
         ORDER BY domain LIMIT ?"
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
    pool: &Pool<Db>,
    tenant: &TenantId,
    domain: &Domain,
) -> Result<Option<Vec<OrganizationVersion>>> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM organizations WHERE tenant = ? AND domain = ? AND deleted_at IS NULL",
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
         WHERE organization_id = ? ORDER BY version"
    ))
    .bind(id)
    .fetch_all(pool)
    .await
    .db()?;
    Ok(Some(rows.into_iter().map(VersionRow::into_model).collect()))
}

/// Marks the tenant's live row deleted, in the caller's write transaction.
pub(super) async fn delete(
    tx: &mut super::repository::Tx,
    tenant: &TenantId,
    domain: &Domain,
    now: Timestamp,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE organizations SET deleted_at = ?
         WHERE tenant = ? AND domain = ? AND deleted_at IS NULL",
    )
    .bind(now)
    .bind(tenant.as_str())
    .bind(domain.as_str())
    .execute(&mut **tx)
    .await
    .db()?;
    Ok(done.rows_affected() > 0)
}
