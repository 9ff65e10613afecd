//! `/api/v1/organizations`: the tenant's own organizations as a resource:
//! one by domain, a cursor-paginated listing, its versions, a soft delete.
//! Every answer is about the calling tenant's rows only: a domain only
//! another tenant has is a 404 like one nobody has.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use onboarding_core::model::{Domain, Organization, TenantId};
use onboarding_core::organizations::{OrganizationQuery, OrganizationVersion};
use onboarding_core::validate::normalize_domain;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::dto::ItemStatusDto;
use crate::extract::{QueryParams, Tenant};
use crate::handlers::{cursor_param, limit, MAX_PAGE};
use crate::problem::Problem;
use crate::responses::{CheckedLookup, Listing};

/// Default page size of the listing.
const DEFAULT_PAGE: u32 = 100;
/// Prefix of a listing cursor (a version, so the format can change).
const CURSOR_PREFIX: &str = "o1.";
/// Longest domain (RFC 1035), so the longest cursor body.
const MAX_DOMAIN: usize = 253;

/// An organization of the calling tenant.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OrganizationResponse {
    /// The normalized domain (lowercase, IDNA A-labels): the key.
    domain: String,
    /// Display name.
    name: String,
    /// Contact address.
    contact_email: String,
    /// Processing status of its latest submission.
    status: ItemStatusDto,
    /// 1 when created, + 1 on every change of name or contact email and on a restore.
    version: i64,
    /// When it was first created.
    created_at: DateTime<Utc>,
    /// When its data last changed.
    updated_at: DateTime<Utc>,
}

impl From<Organization> for OrganizationResponse {
    fn from(o: Organization) -> Self {
        Self {
            domain: o.domain.as_str().to_owned(),
            name: o.name,
            contact_email: o.contact_email,
            status: o.status.into(),
            version: o.version,
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// One page of the tenant's organizations.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OrganizationListPage {
    /// Ordered by domain; deleted organizations are left out.
    data: Vec<OrganizationResponse>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// One version of an organization's data.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OrganizationVersionResponse {
    /// The version number (1 when created).
    version: i64,
    /// Display name of this version.
    name: String,
    /// Contact address of this version.
    contact_email: String,
    /// The batch whose submission wrote it; null for the version an
    /// organization had when version history began (written before it was kept).
    batch_id: Option<Uuid>,
    /// When it was written.
    written_at: DateTime<Utc>,
}

impl From<OrganizationVersion> for OrganizationVersionResponse {
    fn from(v: OrganizationVersion) -> Self {
        Self {
            version: v.version,
            name: v.name,
            contact_email: v.contact_email,
            batch_id: v.batch_id.map(|b| b.0),
            written_at: v.written_at,
        }
    }
}

/// Every version of an organization.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(crate) struct OrganizationVersions {
    /// The normalized domain.
    domain: String,
    /// Oldest first.
    versions: Vec<OrganizationVersionResponse>,
}

/// Query parameters of the listing.
#[derive(Debug, Deserialize)]
pub(crate) struct ListParams {
    cursor: Option<String>,
    limit: Option<String>,
}

/// Encodes the last domain of a page as an opaque listing cursor.
fn encode_cursor(domain: &Domain) -> String {
    format!("{CURSOR_PREFIX}{domain}")
}

/// Decodes [`encode_cursor`]: any value of the documented pattern is a
/// position in the domain order (it need not name an organization).
fn decode_cursor(cursor: &str) -> Option<Domain> {
    let body = cursor.strip_prefix(CURSOR_PREFIX)?;
    let fits = (1..=MAX_DOMAIN).contains(&body.len())
        && body
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    fits.then(|| Domain::from_normalized(body.to_owned()))
}

/// The path's domain, normalized like a submitted one (IDNA, case, trailing
/// dot); a 422 pointing at the path parameter when it does not normalize.
fn path_domain(path: Result<Path<String>, PathRejection>) -> Result<Domain, Problem> {
    let raw = path.map_err(|_| invalid_domain("domain_invalid", "the domain is not valid text"))?;
    normalize_domain(&raw.0).map_err(|e| invalid_domain(e.code, e.detail))
}

fn invalid_domain(code: &str, detail: impl Into<String>) -> Problem {
    Problem::invalid_path_parameter("domain", code, detail)
}

/// The authenticated tenant and the domain of the path ([`path_domain`]):
/// the key of one of its organizations; 401 before 422.
pub(crate) struct TenantDomain {
    tenant: TenantId,
    domain: Domain,
}

impl FromRequestParts<AppState> for TenantDomain {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let Tenant(tenant) = Tenant::from_request_parts(parts, state).await?;
        let domain = path_domain(Path::<String>::from_request_parts(parts, state).await)?;
        Ok(Self { tenant, domain })
    }
}

impl TenantDomain {
    /// The normalized domain, as the service takes it.
    fn domain(&self) -> &str {
        self.domain.as_str()
    }
}

/// The tenant's organization of a domain
#[utoipa::path(
    get, path = "/api/v1/organizations/{domain}", operation_id = "organization_get", tag = "organizations",
    params(("domain" = String, Path, description = "The domain, in any form a submission accepts (normalized: IDN to A-labels, lowercase)")),
    responses((status = 200, description = "The organization", body = OrganizationResponse), CheckedLookup),
)]
#[tracing::instrument(name = "organization_get", skip_all, fields(tenant = %key.tenant))]
pub(crate) async fn show(
    State(state): State<AppState>,
    key: TenantDomain,
) -> Result<Json<OrganizationResponse>, Problem> {
    let org = state
        .run(state.service().organization(&key.tenant, key.domain()))
        .await?;
    Ok(Json(org.into()))
}

/// The tenant's organizations, ordered by domain, cursor-paginated
#[utoipa::path(
    get, path = "/api/v1/organizations", operation_id = "organization_list", tag = "organizations",
    params(
        ("cursor" = Option<String>, Query, pattern = r"^(o1\.[a-z0-9.-]{1,253})?$", description = "The previous page's next_cursor (opaque); empty or absent: the first page; anything else: 400"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Page size, 1-1000 (default 100)"),
    ),
    responses((status = 200, description = "One page, by domain", body = OrganizationListPage), Listing),
)]
#[tracing::instrument(name = "organization_list", skip_all, fields(tenant = %tenant.0))]
pub(crate) async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<OrganizationListPage>, Problem> {
    let after = cursor_param(params.cursor.as_deref(), decode_cursor)?;
    let limit = limit(params.limit.as_deref(), DEFAULT_PAGE, MAX_PAGE)?;
    let query = OrganizationQuery { after, limit };
    let page = state
        .run(state.service().list_organizations(&tenant.0, &query))
        .await?;
    Ok(Json(OrganizationListPage {
        data: page.organizations.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor.as_ref().map(encode_cursor),
    }))
}

/// Every version of the tenant's organization of a domain, oldest first
#[utoipa::path(
    get, path = "/api/v1/organizations/{domain}/versions", operation_id = "organization_versions", tag = "organizations",
    params(("domain" = String, Path, description = "The domain, in any form a submission accepts")),
    responses((status = 200, description = "Its versions", body = OrganizationVersions), CheckedLookup),
)]
#[tracing::instrument(name = "organization_versions", skip_all, fields(tenant = %key.tenant))]
pub(crate) async fn versions(
    State(state): State<AppState>,
    key: TenantDomain,
) -> Result<Json<OrganizationVersions>, Problem> {
    let service = state.service();
    let versions = state
        .run(service.organization_versions(&key.tenant, key.domain()))
        .await?;
    Ok(Json(OrganizationVersions {
        domain: key.domain().to_owned(),
        versions: versions.into_iter().map(Into::into).collect(),
    }))
}

/// Soft-deletes the tenant's organization of a domain: hidden from reads
/// until a submission of the domain restores it (as `created`, its version
/// continuing); work already accepted for it still finishes
#[utoipa::path(
    delete, path = "/api/v1/organizations/{domain}", operation_id = "organization_delete", tag = "organizations",
    params(("domain" = String, Path, description = "The domain, in any form a submission accepts")),
    responses((status = 204, description = "Deleted"), CheckedLookup),
)]
#[tracing::instrument(name = "organization_delete", skip_all, fields(tenant = %key.tenant))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    key: TenantDomain,
) -> Result<StatusCode, Problem> {
    let service = state.service();
    state
        .run(service.delete_organization(&key.tenant, key.domain()))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let domain = Domain::from_normalized("xn--bcher-kva.example".to_owned());
        assert_eq!(decode_cursor(&encode_cursor(&domain)), Some(domain));
        let long = format!("o1.{}", "a".repeat(254));
        for bad in [
            "",
            "o1.",
            "o2.acme.com",
            "o1.Acme.com",
            "o1.a b",
            "o1.é.com",
            long.as_str(),
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn unnormalizable_path_domains_point_at_the_parameter() {
        let problem = path_domain(Ok(Path("not a domain".to_owned()))).err();
        let doc = problem.map(|p| serde_json::to_value(p.document()).ok());
        let errors = doc.flatten().map(|d| d["errors"].clone());
        let first = errors.map(|e| e[0].clone()).unwrap_or_default();
        assert_eq!(first["pointer"], "/domain");
        assert_eq!(first["parameter"], "domain");
    }
}
