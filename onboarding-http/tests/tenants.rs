//! Two tenants on one server submitting the same domain: each has its own
//! organization, outcomes are relative to its own record, and nothing of
//! the other tenant is changed, blocked or revealed.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};

const V1: &str = "/api/v1/bulk-onboard";

/// The per-organization results of the batch a 202 answered.
async fn outcomes(app: &axum::Router, accepted: &Answer, key: &str) -> Vec<Value> {
    let uri = format!("{}/organizations", accepted.header("location").unwrap());
    let page = get(app, &uri, Some(key)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn another_tenants_domain_is_new_under_every_policy() {
    let (app, service) = app();
    let globex = post_json(
        &app,
        V1,
        GLOBEX_KEY,
        &json!({"organizations": [org("Globex Corp", "globex.com")]}),
    )
    .await;
    assert_eq!(globex.status, 202, "{}", globex.body);
    let before = service
        .organization(&tenant("globex"), "globex.com")
        .await
        .unwrap();
    for policy in ["update", "skip"] {
        let body = json!({
            "on_conflict": policy,
            "organizations": [org(&format!("Acme's Globex ({policy})"), "GLOBEX.com")],
        });
        let acme = post_json(&app, V1, ACME_KEY, &body).await;
        assert_eq!(acme.status, 202, "{}", acme.body);
        let items = outcomes(&app, &acme, ACME_KEY).await;
        // The first submission by acme (update) is new to acme whatever
        // globex has; after it, outcomes follow acme's own row (skip).
        let expected = if policy == "update" {
            "created"
        } else {
            "skipped"
        };
        assert_eq!(items[0]["outcome"], expected, "{policy}: {items:?}");
        assert_ne!(
            items[0]["organization_id"].as_str(),
            Some(before.id.to_string().as_str()),
            "{policy}: acme's item points at globex's row"
        );
        let globex_now = service
            .organization(&tenant("globex"), "globex.com")
            .await
            .unwrap();
        assert_eq!(globex_now, before, "{policy}: globex's row changed");
    }
    let acme_row = service
        .organization(&tenant("acme"), "globex.com")
        .await
        .unwrap();
    assert_eq!(acme_row.name, "Acme's Globex (update)");
    assert_eq!(acme_row.version, 1);
}

#[tokio::test]
async fn a_domain_first_submitted_by_one_tenant_is_not_squatted() {
    let (app, service) = app();
    let acme = post_json(
        &app,
        V1,
        ACME_KEY,
        &json!({"organizations": [org("Acme", "shared.com")]}),
    )
    .await;
    assert_eq!(acme.status, 202);
    let body = json!({"on_conflict": "skip", "organizations": [org("Globex", "shared.com")]});
    let globex = post_json(&app, V1, GLOBEX_KEY, &body).await;
    assert_eq!(globex.status, 202);
    let items = outcomes(&app, &globex, GLOBEX_KEY).await;
    assert_eq!(items[0]["outcome"], "created", "{items:?}");
    assert_eq!(
        items[0]["status"], "pending",
        "globex's own item is processed"
    );
    let own = service
        .organization(&tenant("globex"), "shared.com")
        .await
        .unwrap();
    assert_eq!(own.name, "Globex");
    let acme_row = service
        .organization(&tenant("acme"), "shared.com")
        .await
        .unwrap();
    assert_eq!(acme_row.name, "Acme");
}
