//! The OpenAPI 3 document, generated from the handlers' annotations, with
//! links from the answers that carry an id to the routes that take it.

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{Modify, OpenApi};

use crate::handlers::{batches, onboard, ops, webhooks};

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
        webhooks::list,
        webhooks::replay,
        ops::health,
        ops::openapi,
    ),
    // The problem answers (crate::responses) refer to these without registering them.
    components(schemas(crate::problem::ProblemDocument, crate::problem::ProblemField)),
    modifiers(&BearerAuth, &Links),
    tags(
        (name = "onboarding", description = "Submit and validate organizations"),
        (name = "batches", description = "Follow, re-drive and cancel batches"),
        (name = "webhooks", description = "Batch-completion webhook deliveries"),
        (name = "operations", description = "Liveness and this document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut Document) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// OpenAPI links, so that a client (or a stateful fuzzer) can follow an
/// answer to the routes that take its id.
struct Links;

/// `(path, method, status)` of an answer → `(link name, operation id, parameter, value)`.
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
    ("retry", "batch_retry", "id", "$response.body#/batch_id"),
    ("cancel", "batch_cancel", "id", "$response.body#/batch_id"),
];

const LINKS: &[LinkSet] = &[
    ("/api/bulk-onboard", "post", "202", FROM_BATCH),
    ("/api/v1/bulk-onboard", "post", "202", FROM_BATCH),
    (
        "/api/v1/webhooks/deliveries",
        "get",
        "200",
        &[(
            "replay",
            "webhook_replay",
            "id",
            "$response.body#/deliveries/0/id",
        )],
    ),
];

impl Modify for Links {
    fn modify(&self, openapi: &mut Document) {
        for (path, method, status, links) in LINKS {
            let Some(item) = openapi.paths.paths.get_mut(*path) else {
                continue;
            };
            let operation = match *method {
                "get" => item.get.as_mut(),
                _ => item.post.as_mut(),
            };
            let Some(RefOr::T(response)) =
                operation.and_then(|o| o.responses.responses.get_mut(*status))
            else {
                continue;
            };
            for (name, operation_id, parameter, value) in *links {
                let link = LinkBuilder::new()
                    .operation_id(*operation_id)
                    .parameter(*parameter, *value)
                    .build();
                response.links.insert((*name).to_owned(), RefOr::T(link));
            }
        }
    }
}
