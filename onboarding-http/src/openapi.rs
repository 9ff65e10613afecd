//! The OpenAPI 3 document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::handlers::{admin, batches, onboard, ops, webhooks};

/// The OpenAPI description of every route of [`crate::router`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "bulk-onboarding",
        description = "Onboard organizations in bulk: validate, upsert by domain, process each one in the background. Errors are application/problem+json (RFC 9457)."
    ),
    paths(
        onboard::seed,
        onboard::v1,
        onboard::validate,
        batches::status,
        batches::items,
        batches::retry,
        batches::cancel,
        webhooks::register,
        webhooks::endpoints,
        webhooks::delete,
        webhooks::rotate_secret,
        webhooks::ping,
        webhooks::list,
        webhooks::show,
        webhooks::replay,
        admin::create_tenant,
        admin::tenants,
        admin::create_key,
        admin::keys,
        admin::revoke,
        admin::rotate,
        ops::health,
        ops::ready,
        ops::metrics,
        ops::openapi,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "onboarding", description = "Submit and validate organizations"),
        (name = "batches", description = "Follow, re-drive and cancel batches"),
        (name = "webhooks", description = "A tenant's webhook endpoints (signed with their own secret) and deliveries"),
        (name = "admin", description = "Operator routes (Bearer ADMIN_TOKEN): tenants and API keys"),
        (name = "operations", description = "Health, readiness, metrics and this document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}
