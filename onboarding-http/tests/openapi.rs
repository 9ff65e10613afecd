//! The OpenAPI document and the server agree: the bounds it states are the
//! ones enforced, what it calls optional and nullable is accepted as null,
//! every status a route answers is documented, and its links lead from a
//! submission to the batch routes (schemathesis checks the rest in CI:
//! scripts/reliability/schemathesis.sh).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};

async fn document(app: &axum::Router) -> Value {
    get(app, "/api/v1/openapi.json", None).await.body
}

#[tokio::test]
async fn bounds_in_the_document_are_the_enforced_ones() {
    let (app, _) = app();
    let doc = document(&app).await;
    let organizations =
        &doc["components"]["schemas"]["BulkOnboardRequest"]["properties"]["organizations"];
    assert_eq!(
        (
            organizations["minItems"].clone(),
            organizations["maxItems"].clone()
        ),
        (json!(1), json!(1000))
    );
    for (path, name) in [
        ("/api/v1/batches/{id}/organizations", "limit"),
        ("/api/v1/webhooks/deliveries", "limit"),
    ] {
        let parameters = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let limit = parameters.iter().find(|p| p["name"] == name).unwrap();
        assert_eq!(
            (
                limit["schema"]["minimum"].clone(),
                limit["schema"]["maximum"].clone()
            ),
            (json!(1), json!(1000)),
            "{path}"
        );
    }
    post_json(
        &app,
        "/api/v1/bulk-onboard",
        ACME_KEY,
        &json!({"organizations": []}),
    )
    .await
    .assert_problem(422);
    post_json(&app, "/api/v1/bulk-onboard", ACME_KEY, &orgs(1001))
        .await
        .assert_problem(413);
    for limit in ["0", "1001"] {
        get(
            &app,
            &format!("/api/v1/webhooks/deliveries?limit={limit}"),
            Some(ACME_KEY),
        )
        .await
        .assert_problem(422);
    }
    // A uuid parameter that is empty is not a UUID.
    get(
        &app,
        "/api/v1/webhooks/deliveries?batch_id=",
        Some(ACME_KEY),
    )
    .await
    .assert_problem(422);
}

#[tokio::test]
async fn nullable_options_accept_null_as_unset() {
    let (app, _) = app();
    let doc = document(&app).await;
    let properties = &doc["components"]["schemas"]["BulkOnboardRequest"]["properties"];
    for option in ["on_conflict", "mode"] {
        assert!(
            properties[option].to_string().contains(r#""type":"null""#),
            "{option} is documented nullable: {}",
            properties[option]
        );
    }
    let mut body = orgs(2);
    body["on_conflict"] = Value::Null;
    body["mode"] = Value::Null;
    let accepted = post_json(&app, "/api/v1/bulk-onboard", ACME_KEY, &body).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let status = get(&app, accepted.header("location").unwrap(), Some(ACME_KEY)).await;
    assert_eq!(
        (
            status.body["on_conflict"].clone(),
            status.body["mode"].clone()
        ),
        (json!("update"), json!("atomic"))
    );
}

#[tokio::test]
async fn a_malformed_query_string_is_a_documented_400() {
    let (app, _) = app();
    let doc = document(&app).await;
    for (path, uri) in [
        (
            "/api/v1/webhooks/deliveries",
            "/api/v1/webhooks/deliveries?limit=1&limit=2".to_owned(),
        ),
        (
            "/api/v1/batches/{id}/organizations",
            format!(
                "{}/organizations?limit=1&limit=2",
                post_json(&app, "/api/v1/bulk-onboard", ACME_KEY, &orgs(1))
                    .await
                    .header("location")
                    .unwrap()
            ),
        ),
    ] {
        get(&app, &uri, Some(ACME_KEY)).await.assert_problem(400);
        let documented = &doc["paths"][path]["get"]["responses"]["400"];
        assert_eq!(
            documented["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/ProblemDocument",
            "{path}: {documented}"
        );
    }
}

#[tokio::test]
async fn links_lead_from_a_submission_to_the_batch_routes() {
    let (app, _) = app();
    let doc = document(&app).await;
    let operation_ids: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str().map(str::to_owned))
        .collect();
    for submit in [
        "/api/bulk-onboard",
        "/api/v1/bulk-onboard",
        "/api/v1/imports",
    ] {
        let links = doc["paths"][submit]["post"]["responses"]["202"]["links"]
            .as_object()
            .unwrap();
        let mut targets: Vec<&str> = links
            .values()
            .map(|l| l["operationId"].as_str().unwrap())
            .collect();
        targets.sort_unstable();
        assert_eq!(
            targets,
            [
                "batch_cancel",
                "batch_failures",
                "batch_organizations",
                "batch_results",
                "batch_retry",
                "batch_status"
            ],
            "{submit}"
        );
        for link in links.values() {
            assert_eq!(link["parameters"]["id"], "$response.body#/batch_id");
        }
    }
    let replay =
        &doc["paths"]["/api/v1/webhooks/deliveries"]["get"]["responses"]["200"]["links"]["replay"];
    assert_eq!(replay["operationId"], "webhook_replay");
    let text = doc.to_string();
    for (at, _) in text.match_indices("\"operationId\":\"") {
        let rest = &text[at + "\"operationId\":\"".len()..];
        let id = &rest[..rest.find('"').unwrap()];
        assert!(
            operation_ids.iter().any(|o| o == id),
            "unknown operation {id}"
        );
    }
}

#[tokio::test]
async fn every_error_status_is_a_problem_document() {
    let (app, _) = app();
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('4') || status.starts_with('5') {
                    assert_eq!(
                        response["content"]["application/problem+json"]["schema"]["$ref"],
                        "#/components/schemas/ProblemDocument",
                        "{method} {path} {status}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn the_results_file_documents_both_formats() {
    let (app, _) = app();
    let doc = document(&app).await;
    let content = doc["paths"]["/api/v1/batches/{id}/results"]["get"]["responses"]["200"]
        ["content"]
        .as_object()
        .unwrap();
    let mut types: Vec<&str> = content.keys().map(String::as_str).collect();
    types.sort_unstable();
    assert_eq!(types, ["application/x-ndjson", "text/csv"]);
}
