//! Organizations as a resource: the types of a tenant's listing, version
//! history and soft delete (the methods are on
//! [`OrgRepository`](crate::OrgRepository)).

use serde::{Deserialize, Serialize};

use crate::model::{BatchId, Domain, Organization, Timestamp};

/// Which of a tenant's organizations a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrganizationQuery {
    /// Only domains ordered after this one in the backend's order (the previous page's `next_cursor`; it need not exist).
    pub after: Option<Domain>,
    /// At most this many (at least 1).
    pub limit: u32,
}

/// One page of a tenant's organizations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganizationPage {
    /// Ordered by domain (the backend's order of text), soft-deleted ones left out.
    pub organizations: Vec<Organization>,
    /// The domain to pass as `after` for the next page; `None` on the last page.
    pub next_cursor: Option<Domain>,
}

/// One version of an organization's data: written by the upsert that created,
/// changed or restored it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrganizationVersion {
    /// The organization's `version` after that write (1 when created).
    pub version: i64,
    /// Display name of this version.
    pub name: String,
    /// Contact address of this version.
    pub contact_email: String,
    /// The batch whose submission wrote it; `None` for the version an
    /// organization had when history began to be kept (the migration
    /// `20261220000000_organization_versions` records each existing row's
    /// current data without a batch).
    pub batch_id: Option<BatchId>,
    /// When it was written.
    pub written_at: Timestamp,
}
