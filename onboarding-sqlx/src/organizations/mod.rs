//! What every engine's organization resource shares: the version row and
//! the page of a listing. `engine.rs` (the statements) is not a submodule:
//! each engine compiles it as its own `organizations` module.

use onboarding_core::model::{BatchId, Timestamp};
use onboarding_core::organizations::{OrganizationPage, OrganizationVersion};
use onboarding_core::Result;
use uuid::Uuid;

use crate::rows::OrgRow;

/// Columns of `organization_versions` for a [`VersionRow`].
pub(crate) const VERSION_COLUMNS: &str = "version, name, contact_email, batch_id, created_at";

/// One `organization_versions` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct VersionRow {
    version: i64,
    name: String,
    contact_email: String,
    batch_id: Option<Uuid>,
    created_at: Timestamp,
}

impl VersionRow {
    pub(crate) fn into_model(self) -> OrganizationVersion {
        OrganizationVersion {
            version: self.version,
            name: self.name,
            contact_email: self.contact_email,
            batch_id: self.batch_id.map(BatchId),
            written_at: self.created_at,
        }
    }
}

/// A page from `limit + 1` rows in order: the extra row only says there is more.
pub(crate) fn org_page(rows: Vec<OrgRow>, limit: u32) -> Result<OrganizationPage> {
    let mut organizations = rows
        .into_iter()
        .map(OrgRow::into_model)
        .collect::<Result<Vec<_>>>()?;
    let next_cursor = if organizations.len() > limit as usize {
        organizations.truncate(limit as usize);
        organizations.last().map(|o| o.domain.clone())
    } else {
        None
    };
    Ok(OrganizationPage {
        organizations,
        next_cursor,
    })
}
