//! `/api/v1/organizations`: a tenant's own organizations as a resource (read,
//! list, versions, soft delete), with two tenants on one server.
#![allow(clippy::unwrap_used)]

mod common;

use axum::http::Method;
use common::*;
use serde_json::{json, Value};

const V1: &str = "/api/v1/bulk-onboard";
const ORGS: &str = "/api/v1/organizations";

async fn submit(app: &axum::Router, key: &str, organizations: Vec<Value>) -> Answer {
    let body = json!({ "organizations": organizations });
    let accepted = post_json(app, V1, key, &body).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    accepted
}

async fn delete(app: &axum::Router, uri: &str, key: &str) -> Answer {
    send(app, request(Method::DELETE, uri, Some(key), None)).await
}

/// The outcome of the first organization of the batch a 202 answered.
async fn first_outcome(app: &axum::Router, accepted: &Answer, key: &str) -> Value {
    let uri = format!("{}/organizations", accepted.header("location").unwrap());
    let page = get(app, &uri, Some(key)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body["items"][0]["outcome"].clone()
}

/// Every domain of the tenant's listing, `limit` per page.
async fn listed(app: &axum::Router, key: &str, limit: u32) -> Vec<String> {
    let mut domains = Vec::new();
    let mut uri = format!("{ORGS}?limit={limit}");
    loop {
        let page = get(app, &uri, Some(key)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let data = page.body["data"].as_array().unwrap();
        assert!(data.len() <= limit as usize);
        domains.extend(
            data.iter()
                .map(|o| o["domain"].as_str().unwrap().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("{ORGS}?limit={limit}&cursor={cursor}"),
            None => return domains,
        }
    }
}

#[tokio::test]
async fn an_organization_reads_by_any_form_of_its_domain() {
    let (app, _) = app();
    submit(
        &app,
        ACME_KEY,
        vec![org("Bücher", "bücher.de"), org("Acme", "acme.com")],
    )
    .await;
    // IDN (percent-encoded UTF-8, uppercase) and uppercase ASCII normalize to the stored key.
    for (path, domain, name) in [
        ("B%C3%9CCHER.de", "xn--bcher-kva.de", "Bücher"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de", "Bücher"),
        ("ACME.com", "acme.com", "Acme"),
    ] {
        let found = get(&app, &format!("{ORGS}/{path}"), Some(ACME_KEY)).await;
        assert_eq!(found.status, 200, "{path}: {}", found.body);
        let body = &found.body;
        assert_eq!(body["domain"], domain);
        assert_eq!(body["name"], name);
        assert!(body["contact_email"]
            .as_str()
            .unwrap()
            .starts_with("contact@"));
        assert_eq!(body["status"], "pending");
        assert_eq!(body["version"], 1);
        assert!(body["created_at"].is_string() && body["updated_at"].is_string());
    }
    let missing = get(&app, &format!("{ORGS}/never.example.com"), Some(ACME_KEY)).await;
    missing.assert_problem(404);
}

#[tokio::test]
async fn versions_name_the_batch_that_wrote_each() {
    let (app, _) = app();
    let first = submit(&app, ACME_KEY, vec![org("Acme", "acme.com")]).await;
    let second = submit(&app, ACME_KEY, vec![org("Acme Inc", "ACME.com")]).await;
    // Identical data writes no version.
    submit(&app, ACME_KEY, vec![org("Acme Inc", "acme.com")]).await;
    let answer = get(&app, &format!("{ORGS}/Acme.com/versions"), Some(ACME_KEY)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["domain"], "acme.com");
    let versions = answer.body["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    for (v, (n, name, batch)) in versions
        .iter()
        .zip([(1, "Acme", &first), (2, "Acme Inc", &second)])
    {
        assert_eq!(v["version"], n);
        assert_eq!(v["name"], name);
        assert_eq!(v["contact_email"], "contact@acme.com");
        assert_eq!(v["batch_id"], batch.body["batch_id"]);
        assert!(v["written_at"].is_string());
    }
    let current = get(&app, &format!("{ORGS}/acme.com"), Some(ACME_KEY)).await;
    assert_eq!(current.body["version"], 2);
    let missing = get(
        &app,
        &format!("{ORGS}/never.example.com/versions"),
        Some(ACME_KEY),
    )
    .await;
    missing.assert_problem(404);
}

#[tokio::test]
async fn the_listing_pages_through_the_tenants_own_organizations() {
    let (app, _) = app();
    let acme: Vec<Value> = (0..5)
        .map(|i| org("Acme", &format!("a{i}.example.com")))
        .collect();
    submit(&app, ACME_KEY, acme).await;
    submit(
        &app,
        GLOBEX_KEY,
        vec![org("Globex", "a0.example.com"), org("Globex", "globex.com")],
    )
    .await;
    let all = listed(&app, ACME_KEY, 100).await;
    let expected: Vec<String> = (0..5).map(|i| format!("a{i}.example.com")).collect();
    assert_eq!(all, expected);
    assert_eq!(
        listed(&app, ACME_KEY, 2).await,
        all,
        "pages repeat or skip nothing"
    );
    assert_eq!(
        listed(&app, GLOBEX_KEY, 1).await,
        ["a0.example.com", "globex.com"]
    );
    let page = get(&app, &format!("{ORGS}?limit=5"), Some(ACME_KEY)).await;
    assert_eq!(page.body["next_cursor"], Value::Null);
    assert_eq!(page.body["data"][0]["name"], "Acme");
}

#[tokio::test]
async fn bad_domains_cursors_and_limits_are_problems() {
    let (app, _) = app();
    for path in ["not_a_domain", "co.uk", "a..b.com", "%FF.com"] {
        let answer = get(&app, &format!("{ORGS}/{path}"), Some(ACME_KEY)).await;
        answer.assert_problem(422);
        assert_eq!(answer.pointers(), ["/domain"], "{path}: {}", answer.body);
        assert_eq!(answer.body["errors"][0]["parameter"], "domain");
        for uri in [format!("{ORGS}/{path}/versions")] {
            get(&app, &uri, Some(ACME_KEY)).await.assert_problem(422);
        }
        delete(&app, &format!("{ORGS}/{path}"), ACME_KEY)
            .await
            .assert_problem(422);
    }
    for cursor in [
        "garbage",
        "o1.",
        "o1.UPPER.com",
        "b1.0190b6a47c1e7d3a9f001234567890ab",
    ] {
        let answer = get(&app, &format!("{ORGS}?cursor={cursor}"), Some(ACME_KEY)).await;
        answer.assert_problem(400);
    }
    for limit in ["0", "1001", "x"] {
        let answer = get(&app, &format!("{ORGS}?limit={limit}"), Some(ACME_KEY)).await;
        answer.assert_problem(422);
    }
    get(&app, ORGS, None).await.assert_problem(401);
}

#[tokio::test]
async fn another_tenants_organization_is_out_of_reach() {
    let (app, _) = app();
    submit(
        &app,
        ACME_KEY,
        vec![org("Acme Secret Name", "acme-only.com")],
    )
    .await;
    for answer in [
        get(&app, &format!("{ORGS}/acme-only.com"), Some(GLOBEX_KEY)).await,
        get(
            &app,
            &format!("{ORGS}/acme-only.com/versions"),
            Some(GLOBEX_KEY),
        )
        .await,
        delete(&app, &format!("{ORGS}/acme-only.com"), GLOBEX_KEY).await,
    ] {
        answer.assert_problem(404);
        let text = String::from_utf8_lossy(&answer.raw).into_owned();
        assert!(
            !text.contains("Acme Secret Name") && !text.contains("acme-key"),
            "{text}"
        );
    }
    assert!(listed(&app, GLOBEX_KEY, 10).await.is_empty());
    let still = get(&app, &format!("{ORGS}/acme-only.com"), Some(ACME_KEY)).await;
    assert_eq!(still.status, 200);
    assert_eq!(still.body["name"], "Acme Secret Name");
}

#[tokio::test]
async fn a_deleted_organization_is_hidden_until_resubmitted_as_created() {
    let (app, _) = app();
    submit(
        &app,
        ACME_KEY,
        vec![org("Acme", "acme.com"), org("Kept", "kept.com")],
    )
    .await;
    submit(&app, GLOBEX_KEY, vec![org("Globex's Acme", "acme.com")]).await;
    let gone = delete(&app, &format!("{ORGS}/ACME.com"), ACME_KEY).await;
    assert_eq!(gone.status, 204, "{}", gone.body);
    assert!(gone.raw.is_empty());
    get(&app, &format!("{ORGS}/acme.com"), Some(ACME_KEY))
        .await
        .assert_problem(404);
    get(&app, &format!("{ORGS}/acme.com/versions"), Some(ACME_KEY))
        .await
        .assert_problem(404);
    delete(&app, &format!("{ORGS}/acme.com"), ACME_KEY)
        .await
        .assert_problem(404);
    assert_eq!(listed(&app, ACME_KEY, 10).await, ["kept.com"]);
    // Globex's row of the domain is its own: untouched.
    let globex = get(&app, &format!("{ORGS}/acme.com"), Some(GLOBEX_KEY)).await;
    assert_eq!(globex.status, 200);
    assert_eq!(globex.body["name"], "Globex's Acme");

    let again = submit(&app, ACME_KEY, vec![org("Acme", "acme.com")]).await;
    assert_eq!(first_outcome(&app, &again, ACME_KEY).await, "created");
    let back = get(&app, &format!("{ORGS}/acme.com"), Some(ACME_KEY)).await;
    assert_eq!(back.status, 200);
    assert_eq!(back.body["version"], 2, "the version continues");
    let versions = get(&app, &format!("{ORGS}/acme.com/versions"), Some(ACME_KEY)).await;
    let versions = versions.body["versions"].as_array().unwrap().clone();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[1]["batch_id"], again.body["batch_id"]);
}
