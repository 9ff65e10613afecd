//! The organization resource of [`MemoryRepository`](super::MemoryRepository):
//! version history, listing and soft delete over its state.

use crate::model::{BatchId, Domain, Organization, TenantId, Timestamp};
use crate::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};

use super::repository::State;

impl State {
    /// Appends the version `org` now has (written by `batch`).
    pub(super) fn record_version(&mut self, org: &Organization, batch: BatchId, now: Timestamp) {
        self.versions
            .entry(org.id)
            .or_default()
            .push(OrganizationVersion {
                version: org.version,
                name: org.name.clone(),
                contact_email: org.contact_email.clone(),
                batch_id: Some(batch),
                written_at: now,
            });
    }

    /// The tenant's organization of `domain` unless it is deleted.
    pub(super) fn live_organization(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Option<&Organization> {
        self.organizations
            .get(&(tenant.clone(), domain.clone()))
            .filter(|o| o.deleted_at.is_none())
    }

    pub(super) fn list_organizations(
        &self,
        tenant: &TenantId,
        query: &OrganizationQuery,
    ) -> OrganizationPage {
        let limit = query.limit.max(1) as usize;
        let mut organizations: Vec<Organization> = self
            .organizations
            .iter()
            .filter(|((t, d), o)| {
                t == tenant
                    && o.deleted_at.is_none()
                    && query.after.as_ref().is_none_or(|after| d > after)
            })
            .map(|(_, o)| o.clone())
            .collect();
        organizations.sort_by(|a, b| a.domain.cmp(&b.domain));
        let next_cursor = if organizations.len() > limit {
            organizations.truncate(limit);
            organizations.last().map(|o| o.domain.clone())
        } else {
            None
        };
        OrganizationPage {
            organizations,
            next_cursor,
        }
    }

    pub(super) fn versions_of(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Option<Vec<OrganizationVersion>> {
        let org = self.live_organization(tenant, domain)?;
        Some(self.versions.get(&org.id).cloned().unwrap_or_default())
    }

    pub(super) fn delete_organization(
        &mut self,
        tenant: &TenantId,
        domain: &Domain,
        now: Timestamp,
    ) -> bool {
        match self
            .organizations
            .get_mut(&(tenant.clone(), domain.clone()))
        {
            Some(org) if org.deleted_at.is_none() => {
                org.deleted_at = Some(now);
                true
            }
            _ => false,
        }
    }
}
