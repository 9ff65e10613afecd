//! The OpenAPI 3 document, generated from the handlers' annotations, with
//! links from the answers that carry an id to the routes that take it.

use serde_json::{json, Map, Value};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};

use crate::handlers::{admin, batches, imports, onboard, ops, results, webhooks};
use crate::handlers::{events, failures, listing, organizations, throughput};

/// The OpenAPI description of every route of [`crate::router`] (its links
/// are added by [`crate::openapi_json`]).
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
        imports::create,
        batches::status,
        batches::items,
        results::results,
        batches::retry,
        batches::cancel,
        listing::list,
        failures::groups,
        failures::retry,
        events::batch,
        events::tenant,
        throughput::throughput,
        organizations::show,
        organizations::list,
        organizations::versions,
        organizations::delete,
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
        ops::openapi,
    ),
    // The problem answers (crate::responses) refer to these without registering them.
    components(schemas(
        crate::problem::ProblemDocument,
        crate::problem::ProblemField,
        events::StreamStats
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "onboarding", description = "Submit and validate organizations"),
        (name = "batches", description = "Follow, re-drive and cancel batches"),
        (name = "organizations", description = "The tenant's own organizations: read, list, versions, soft delete"),
        (name = "webhooks", description = "A tenant's webhook endpoints (signed with their own secret) and deliveries"),
        (name = "admin", description = "Operator routes (Bearer ADMIN_TOKEN; 404 when no token is configured): tenants and API keys"),
        (name = "operations", description = "Liveness and this document"),
    )
)]
pub struct ApiDoc;

/// The operations that answer without authentication; every other one
/// takes `Authorization: Bearer` (an API key, or the admin token).
const PUBLIC: &[&str] = &["health", "openapi"];

/// The `bearer` scheme, required by every operation but the [`PUBLIC`] ones
/// (said once here rather than in each route's annotation).
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.options,
                &mut item.head,
                &mut item.patch,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                let id = operation.operation_id.as_deref().unwrap_or_default();
                if !PUBLIC.contains(&id) {
                    let bearer = SecurityRequirement::new("bearer", Vec::<String>::new());
                    operation.security = Some(vec![bearer]);
                }
            }
        }
    }
}

/// `(path, method, status)` of an answer, and the links from it:
/// `(link name, operation id, parameter, runtime expression)`.
type LinkSet = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str, &'static str, &'static str)],
);

/// Every route that takes a batch id, fed from a submission's `batch_id`.
const FROM_BATCH: &[(&str, &str, &str, &str)] = &[
    ("status", "batch_status", "id", "$response.body#/batch_id"),
    (
        "organizations",
        "batch_organizations",
        "id",
        "$response.body#/batch_id",
    ),
    ("results", "batch_results", "id", "$response.body#/batch_id"),
    (
        "failures",
        "batch_failures",
        "id",
        "$response.body#/batch_id",
    ),
    ("retry", "batch_retry", "id", "$response.body#/batch_id"),
    ("cancel", "batch_cancel", "id", "$response.body#/batch_id"),
];

/// OpenAPI links, so that a client (or a stateful fuzzer) can follow an
/// answer to the routes that take its id.
const LINKS: &[LinkSet] = &[
    ("/api/bulk-onboard", "post", "202", FROM_BATCH),
    ("/api/v1/bulk-onboard", "post", "202", FROM_BATCH),
    ("/api/v1/imports", "post", "202", FROM_BATCH),
    (
        "/api/v1/webhooks/deliveries",
        "get",
        "200",
        &[
            (
                "replay",
                "webhook_replay",
                "id",
                "$response.body#/deliveries/0/id",
            ),
            (
                "delivery",
                "webhook_delivery",
                "id",
                "$response.body#/deliveries/0/id",
            ),
        ],
    ),
    (
        "/api/v1/webhooks/endpoints",
        "post",
        "201",
        &[
            ("ping", "webhook_ping", "id", "$response.body#/id"),
            (
                "rotate_secret",
                "webhook_rotate_secret",
                "id",
                "$response.body#/id",
            ),
            ("delete", "webhook_delete", "id", "$response.body#/id"),
        ],
    ),
];

/// The OpenAPI document as JSON: [`ApiDoc`] plus its [`LINKS`], written here
/// because utoipa 5 serializes a link's `operationId` as `operation_id`.
pub(crate) fn document() -> Value {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    for (path, method, status, links) in LINKS {
        let pointer = format!(
            "/paths/{}/{method}/responses/{status}",
            path.replace('~', "~0").replace('/', "~1")
        );
        let Some(Value::Object(response)) = doc.pointer_mut(&pointer) else {
            continue;
        };
        let links: Map<String, Value> = links
            .iter()
            .map(|(name, operation_id, parameter, value)| {
                let link = json!({"operationId": operation_id, "parameters": {*parameter: value}});
                ((*name).to_owned(), link)
            })
            .collect();
        response.insert("links".to_owned(), Value::Object(links));
    }
    doc
}

/// The document a router serves: without the admin routes (and their tag)
/// when they are off, so that it describes this server as it answers.
pub(crate) fn served(admin: bool) -> Value {
    let mut doc = document();
    if !admin {
        if let Some(Value::Object(paths)) = doc.get_mut("paths") {
            paths.retain(|path, _| !path.starts_with("/api/v1/admin/"));
        }
        if let Some(Value::Array(tags)) = doc.get_mut("tags") {
            tags.retain(|tag| tag["name"] != "admin");
        }
    }
    doc
}
