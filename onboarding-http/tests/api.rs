//! Handler-level tests: every status of the HTTP contract, no socket.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request};
use common::*;
use onboarding_core::memory::MemoryRepository;
use onboarding_core::testing::doubles::Double;
use onboarding_http::{router, HttpConfig, RateLimit};
use serde_json::{json, Value};

const SEED: &str = "/api/bulk-onboard";
const V1: &str = "/api/v1/bulk-onboard";
const VALIDATE: &str = "/api/v1/bulk-onboard/validate";

fn seed_body() -> Value {
    json!({"organizations": [{"name": "Acme Corporation", "domain": "acme.com", "contact_email": "contact@acme.com"}]})
}

#[tokio::test]
async fn seed_route_answers_the_seed_body_exactly() {
    let (app, _) = app();
    let a = post_json(&app, SEED, ACME_KEY, &seed_body()).await;
    assert_eq!(a.status, 202);
    assert_eq!(a.header("content-type"), Some("application/json"));
    let obj = a.body.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["batch_id", "message", "organizations_count"]);
    assert_eq!(a.body["message"], "Bulk onboarding initiated successfully");
    assert_eq!(a.body["organizations_count"], 1);
    uuid::Uuid::parse_str(a.body["batch_id"].as_str().unwrap()).unwrap();
    // The seed route ignores v1's options: skip/partial do not apply there.
    let mut body = orgs(2);
    body["mode"] = json!("partial");
    body["organizations"][1]["domain"] = json!("not a domain");
    post_json(&app, SEED, ACME_KEY, &body)
        .await
        .assert_problem(422);
}

#[tokio::test]
async fn v1_adds_location_and_status_follows_it() {
    let (app, _) = app();
    let a = post_json(&app, V1, ACME_KEY, &orgs(3)).await;
    assert_eq!(a.status, 202);
    assert!(
        a.body.get("rejected").is_none(),
        "atomic mode lists no rejections"
    );
    let id = a.body["batch_id"].as_str().unwrap().to_owned();
    let location = a.header("location").unwrap().to_owned();
    assert_eq!(location, format!("/api/v1/batches/{id}"));
    let s = get(&app, &location, Some(ACME_KEY)).await;
    assert_eq!(s.status, 200, "{}", s.body);
    assert_eq!(s.body["batch_id"], id.as_str());
    assert_eq!(s.body["total"], 3);
    assert_eq!(s.body["state"], "running");
    assert_eq!(s.body["counts"]["pending"], 3);
    assert_eq!(s.body["changes"]["created"], 3);
    assert_eq!(s.body["percent"], 0.0);
    assert_eq!(
        s.body["eta_seconds"],
        Value::Null,
        "nothing finished: ETA unknown"
    );
    assert_eq!(s.body["on_conflict"], "update");
    assert_eq!(s.body["mode"], "atomic");
    assert!(s.body["created_at"].is_string());
    assert_eq!(s.body["completed_at"], Value::Null);
    assert_eq!(s.body["cancelled_at"], Value::Null);
}

#[tokio::test]
async fn nested_router_points_location_under_its_prefix() {
    let (inner, _) = app();
    let host = axum::Router::new().nest("/onboarding", inner);
    let a = post_json(&host, "/onboarding/api/v1/bulk-onboard", ACME_KEY, &orgs(1)).await;
    assert_eq!(a.status, 202);
    let location = a.header("location").unwrap();
    assert!(
        location.starts_with("/onboarding/api/v1/batches/"),
        "{location}"
    );
    assert_eq!(get(&host, location, Some(ACME_KEY)).await.status, 200);
}

#[tokio::test]
async fn partial_mode_lists_rejected_positions() {
    let (app, _) = app();
    let body = json!({
        "mode": "partial",
        "on_conflict": "skip",
        "organizations": [org("Good", "good.com"), org("Bad", "not a domain"), {"name": "", "domain": "x.com", "contact_email": "nope"}],
    });
    let a = post_json(&app, V1, ACME_KEY, &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["organizations_count"], 1);
    let rejected = a.body["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert_eq!(rejected[0]["position"], 1);
    assert_eq!(
        rejected[0]["errors"][0]["pointer"],
        "/organizations/1/domain"
    );
    assert_eq!(rejected[1]["position"], 2);
    let pointers: Vec<&str> = rejected[1]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["/organizations/2/name", "/organizations/2/contact_email"]
    );
    // Partial mode with no error still shows an empty list.
    let mut ok = orgs(1);
    ok["mode"] = json!("partial");
    let a = post_json(&app, V1, ACME_KEY, &ok).await;
    assert_eq!(a.body["rejected"], json!([]));
}

#[tokio::test]
async fn validate_is_a_dry_run() {
    let (app, service) = app();
    let body =
        json!({"organizations": [org("Bücher GmbH", "BÜCHER.de."), org("Acme", "ACME.COM")]});
    let a = post_json(&app, VALIDATE, ACME_KEY, &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["valid"], true);
    assert_eq!(a.body["organizations_count"], 2);
    assert_eq!(a.body["organizations"][0]["domain"], "xn--bcher-kva.de");
    assert_eq!(a.body["organizations"][1]["domain"], "acme.com");
    assert_eq!(a.body["organizations"][0]["name"], "Bücher GmbH");
    // Nothing stored.
    let err = service
        .organization(&tenant("acme"), "acme.com")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), onboarding_core::ErrorKind::NotFound);
    // Invalid: the same 422 as a submission.
    let bad = json!({"organizations": [org("A", "bad domain")]});
    let v = post_json(&app, VALIDATE, ACME_KEY, &bad).await;
    v.assert_problem(422);
    let s = post_json(&app, V1, ACME_KEY, &bad).await;
    assert_eq!(v.body["errors"], s.body["errors"]);
    post_json(&app, VALIDATE, ACME_KEY, &orgs(1001))
        .await
        .assert_problem(413);
}

#[tokio::test]
async fn authentication_is_required_and_checked() {
    let (app, _) = app();
    let body = serde_json::to_vec(&seed_body()).unwrap();
    for (header, invalid) in [
        (None, false),
        (Some("Bearer wrong-key-0000000"), true),
        (Some("Basic YWNtZTpzZWNyZXQ="), true),
        (Some("Bearer "), true),
        (Some("bearer"), true),
    ] {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(SEED)
            .header("content-type", "application/json");
        if let Some(h) = header {
            req = req.header("authorization", h);
        }
        let a = send(&app, req.body(Body::from(body.clone())).unwrap()).await;
        a.assert_problem(401);
        let challenge = a.header("www-authenticate").unwrap();
        assert!(challenge.starts_with("Bearer"), "{challenge}");
        assert_eq!(challenge.contains("invalid_token"), invalid, "{header:?}");
    }
    // The scheme is case-insensitive.
    let req = Request::builder()
        .method(Method::POST)
        .uri(SEED)
        .header("authorization", format!("bearer {ACME_KEY}"))
        .body(Body::from(body))
        .unwrap();
    assert_eq!(send(&app, req).await.status, 202);
    for uri in [
        "/api/v1/batches/0191e5a4-0000-7000-8000-000000000000",
        "/api/v1/webhooks/deliveries",
    ] {
        get(&app, uri, None).await.assert_problem(401);
    }
}

#[tokio::test]
async fn another_tenants_batch_is_not_found() {
    let (app, _) = app();
    let a = post_json(&app, V1, ACME_KEY, &orgs(2)).await;
    let id = a.body["batch_id"].as_str().unwrap();
    for (method, suffix) in [
        (Method::GET, ""),
        (Method::GET, "/organizations"),
        (Method::POST, "/retry"),
        (Method::POST, "/cancel"),
    ] {
        let uri = format!("/api/v1/batches/{id}{suffix}");
        send(&app, request(method.clone(), &uri, Some(GLOBEX_KEY), None))
            .await
            .assert_problem(404);
        let own = send(&app, request(method, &uri, Some(ACME_KEY), None)).await;
        assert!(own.status.is_success(), "{uri}: {}", own.body);
    }
    // Not a UUID, unknown UUID: 404 as well.
    get(&app, "/api/v1/batches/not-a-uuid", Some(ACME_KEY))
        .await
        .assert_problem(404);
    get(
        &app,
        "/api/v1/batches/0191e5a4-0000-7000-8000-000000000000",
        Some(ACME_KEY),
    )
    .await
    .assert_problem(404);
    get(&app, "/api/v1/batches/%FF%FE/organizations", Some(ACME_KEY))
        .await
        .assert_problem(404);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let (app, _) = app();
    get(&app, "/nope", None).await.assert_problem(404);
    get(&app, "/api/v2/bulk-onboard", Some(ACME_KEY))
        .await
        .assert_problem(404);
    get(&app, SEED, Some(ACME_KEY)).await.assert_problem(405);
    send(&app, request(Method::DELETE, "/health", None, None))
        .await
        .assert_problem(405);
}

#[tokio::test]
async fn malformed_bodies_are_400() {
    let (app, _) = app();
    for raw in [
        &b"{"[..],
        b"{\"organizations\": [}",
        b"",
        b"   ",
        b"\xff\xfe",
        b"{\"organizations\": []} trailing",
        b"nul\x00l",
    ] {
        let a = send(
            &app,
            request(Method::POST, V1, Some(ACME_KEY), Some(raw.to_vec())),
        )
        .await;
        a.assert_problem(400);
    }
    // Deep nesting hits serde_json's recursion limit: 400, no stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    send(
        &app,
        request(Method::POST, V1, Some(ACME_KEY), Some(deep.into_bytes())),
    )
    .await
    .assert_problem(400);
}

#[tokio::test]
async fn content_type_must_be_json_when_present() {
    let (app, _) = app();
    let body = serde_json::to_vec(&seed_body()).unwrap();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let req = Request::builder()
            .method(Method::POST)
            .uri(V1)
            .header("authorization", format!("Bearer {ACME_KEY}"))
            .header("content-type", ct)
            .body(Body::from(body.clone()))
            .unwrap();
        send(&app, req).await.assert_problem(415);
    }
    for ct in [
        Some("application/json; charset=utf-8"),
        Some("application/merge-patch+json"),
        None,
    ] {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(V1)
            .header("authorization", format!("Bearer {ACME_KEY}"));
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let a = send(&app, req.body(Body::from(body.clone())).unwrap()).await;
        assert_eq!(a.status, 202, "{ct:?}: {}", a.body);
    }
}

#[tokio::test]
async fn wrong_json_types_are_422_with_pointers() {
    let (app, _) = app();
    let cases = [
        (json!([1, 2]), ""),
        (json!("organizations"), ""),
        (json!({}), "/organizations"),
        (json!({"organizations": null}), "/organizations"),
        (json!({"organizations": "acme.com"}), "/organizations"),
        (json!({"organizations": {"0": {}}}), "/organizations"),
        (json!({"organizations": [42]}), "/organizations/0"),
        (
            json!({"organizations": [{"name": 5, "domain": "a.com", "contact_email": "a@a.com"}]}),
            "/organizations/0/name",
        ),
        (
            json!({"organizations": [{"name": "A", "domain": ["a.com"], "contact_email": "a@a.com"}]}),
            "/organizations/0/domain",
        ),
        (
            json!({"organizations": [{"name": "A", "domain": "a.com"}]}),
            "/organizations/0/contact_email",
        ),
        (
            json!({"organizations": [org("A", "a.com")], "on_conflict": "merge"}),
            "/on_conflict",
        ),
        (
            json!({"organizations": [org("A", "a.com")], "mode": 1}),
            "/mode",
        ),
    ];
    for (body, pointer) in cases {
        let a = post_json(&app, V1, ACME_KEY, &body).await;
        a.assert_problem(422);
        assert!(
            a.pointers().contains(&pointer.to_owned()),
            "{body}: {:?}",
            a.pointers()
        );
    }
    let a = post_json(&app, V1, ACME_KEY, &json!({"organizations": []})).await;
    a.assert_problem(422);
    assert_eq!(a.codes(), ["organizations_empty"]);
}

#[tokio::test]
async fn too_many_organizations_is_413() {
    let (app, _) = app();
    let a = post_json(&app, V1, ACME_KEY, &orgs(1001)).await;
    a.assert_problem(413);
    assert_eq!(a.codes(), ["too_many_organizations"]);
    let a = post_json(&app, V1, ACME_KEY, &orgs(1000)).await;
    assert_eq!(a.status, 202, "{}", a.body);
    assert_eq!(a.body["organizations_count"], 1000);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let (app, _) = app();
    let big = format!(
        "{{\"organizations\": [{{\"name\": \"{}\", \"domain\": \"a.com\", \"contact_email\": \"a@a.com\"}}]}}",
        "x".repeat(HttpConfig::DEFAULT_BODY_LIMIT + 1)
    );
    let a = send(
        &app,
        request(Method::POST, V1, Some(ACME_KEY), Some(big.into_bytes())),
    )
    .await;
    a.assert_problem(413);
    // A chunked body without Content-Length is cut at the limit too.
    let small = router(memory_service(), config().body_limit(1024).build());
    let stream = futures_body(vec![vec![b' '; 800], vec![b' '; 800]]);
    let req = Request::builder()
        .method(Method::POST)
        .uri(V1)
        .header("authorization", format!("Bearer {ACME_KEY}"))
        .body(stream)
        .unwrap();
    send(&small, req).await.assert_problem(413);
    // 1000 organizations with 255-character names fit in the default limit.
    let mut body = orgs(1000);
    for o in body["organizations"].as_array_mut().unwrap() {
        o["name"] = json!("é".repeat(255));
    }
    let a = post_json(&app, V1, ACME_KEY, &body).await;
    assert_eq!(a.status, 202, "{}", a.body["detail"]);
}

fn futures_body(chunks: Vec<Vec<u8>>) -> Body {
    Body::from_stream(futures::stream::iter(
        chunks.into_iter().map(Ok::<_, std::io::Error>),
    ))
}

#[tokio::test]
async fn duplicate_domains_name_both_positions() {
    let (app, _) = app();
    let body =
        json!({"organizations": [org("A", "acme.com"), org("B", "b.com"), org("C", "ACME.com.")]});
    let a = post_json(&app, V1, ACME_KEY, &body).await;
    a.assert_problem(422);
    assert_eq!(a.pointers(), ["/organizations/2/domain"]);
    assert_eq!(a.codes(), ["domain_duplicate"]);
    assert!(a.body["errors"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("/organizations/0/domain"));
}

#[tokio::test]
async fn idn_and_uppercase_domains_are_normalized() {
    let (app, _) = app();
    let body = json!({"organizations": [org("Bücher", "BÜCHER.DE"), org("Acme", "WWW.Acme.COM."), org("Xn", "xn--mnchen-3ya.de")]});
    let a = post_json(&app, V1, ACME_KEY, &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    let items = get(
        &app,
        &format!("{}/organizations", a.header("location").unwrap()),
        Some(ACME_KEY),
    )
    .await;
    let domains: Vec<&str> = items.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["domain"].as_str().unwrap())
        .collect();
    assert_eq!(
        domains,
        ["xn--bcher-kva.de", "www.acme.com", "xn--mnchen-3ya.de"]
    );
}

#[tokio::test]
async fn huge_strings_and_control_characters_are_422_with_short_details() {
    let (app, _) = app();
    let cases = [
        (org(&"n".repeat(256), "a.com"), "name_too_long"),
        (org(&"n".repeat(1_000_000), "a.com"), "name_too_long"),
        (org("Evil\u{0}Name", "a.com"), "name_control_chars"),
        (org("Line\nBreak", "a.com"), "name_control_chars"),
        (org("Bidi\u{202e}gnp.exe", "a.com"), "name_control_chars"),
        (
            json!({"name": "A", "domain": format!("{}.com", "d".repeat(300)), "contact_email": "a@a.com"}),
            "domain_too_long",
        ),
        (
            json!({"name": "A", "domain": "a.com", "contact_email": format!("{}@a.com", "e".repeat(300))}),
            "email_too_long",
        ),
    ];
    for (o, code) in cases {
        let a = post_json(&app, V1, ACME_KEY, &json!({"organizations": [o]})).await;
        a.assert_problem(422);
        assert_eq!(a.codes(), [code]);
        assert!(
            a.raw.len() < 2048,
            "the problem must not echo the input ({} bytes)",
            a.raw.len()
        );
    }
}

#[tokio::test]
async fn sql_and_html_in_names_are_stored_and_returned_verbatim() {
    let (app, service) = app();
    let names = [
        "Robert'); DROP TABLE organizations;--",
        "<script>alert('x')</script> & \"Co\"",
        "' OR 1=1 --",
        "😀 Ünïcødé \\ back\\slash",
    ];
    let body = json!({"organizations": names.iter().enumerate().map(|(i, n)| org(n, &format!("verbatim{i}.com"))).collect::<Vec<_>>()});
    let v = post_json(&app, VALIDATE, ACME_KEY, &body).await;
    assert_eq!(v.status, 200);
    assert_eq!(v.header("content-type"), Some("application/json"));
    let a = post_json(&app, V1, ACME_KEY, &body).await;
    assert_eq!(a.status, 202, "{}", a.body);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(v.body["organizations"][i]["name"], *name);
        let stored = service
            .organization(&tenant("acme"), &format!("verbatim{i}.com"))
            .await
            .unwrap();
        assert_eq!(stored.name, *name);
    }
    let raw = String::from_utf8(v.raw).unwrap();
    assert!(
        raw.contains("<script>alert('x')</script> & \\\"Co\\\""),
        "JSON-escaped, not HTML-escaped"
    );
}

#[tokio::test]
async fn a_burst_over_the_rate_limit_is_429_with_retry_after() {
    let service = memory_service();
    let app = router(
        service,
        config()
            .rate_limit(Some(RateLimit::per_second(1.0)))
            .build(),
    );
    let uri = "/api/v1/batches/0191e5a4-0000-7000-8000-000000000000";
    assert_eq!(RateLimit::per_second(1.0).burst, 2);
    assert_eq!(get(&app, uri, Some(ACME_KEY)).await.status, 404);
    assert_eq!(get(&app, uri, Some(ACME_KEY)).await.status, 404);
    let a = get(&app, uri, Some(ACME_KEY)).await;
    a.assert_problem(429);
    let after: u64 = a.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=2).contains(&after), "{after}");
    // Per key: the other tenant is not limited by acme's burst.
    assert_eq!(get(&app, uri, Some(GLOBEX_KEY)).await.status, 404);
    // Unauthenticated health checks are not limited.
    for _ in 0..5 {
        assert_eq!(get(&app, "/health", None).await.status, 200);
    }
}

#[tokio::test]
async fn idempotency_key_replays_or_conflicts() {
    let (app, _) = app();
    let send_with_key = |body: Value, key: &'static str| {
        let app = app.clone();
        async move {
            let req = Request::builder()
                .method(Method::POST)
                .uri(V1)
                .header("authorization", format!("Bearer {ACME_KEY}"))
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap();
            send(&app, req).await
        }
    };
    let first = send_with_key(orgs(2), "key-1").await;
    assert_eq!(first.status, 202);
    assert_eq!(first.header("idempotent-replayed"), None);
    let again = send_with_key(orgs(2), "key-1").await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body, first.body, "same batch, same body");
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    // Same key, different body: 422 (draft-ietf-httpapi-idempotency-key-header).
    let reused = send_with_key(orgs(3), "key-1").await;
    reused.assert_problem(422);
    assert_eq!(reused.codes(), vec!["idempotency_key_reused"]);
    assert_eq!(reused.body["errors"][0]["parameter"], "Idempotency-Key");
    assert_eq!(reused.header("idempotent-replayed"), None);
    // Another key: a new batch.
    let other = send_with_key(orgs(2), "key-2").await;
    assert_ne!(other.body["batch_id"], first.body["batch_id"]);
    // A key with a space is invalid.
    send_with_key(orgs(1), "bad key").await.assert_problem(422);
}

#[tokio::test]
async fn backend_down_is_503_with_retry_after() {
    let app = router(service_over(down_repository()), config().build());
    let submit = post_json(&app, V1, ACME_KEY, &orgs(1)).await;
    submit.assert_problem(503);
    assert_eq!(submit.header("retry-after"), Some("5"));
    assert!(
        !submit.body.to_string().contains("secret-host"),
        "no backend details leak"
    );
    get(
        &app,
        "/api/v1/batches/0191e5a4-0000-7000-8000-000000000000",
        Some(ACME_KEY),
    )
    .await
    .assert_problem(503);
    // Validation does not need the database: still 422 before any backend call.
    post_json(&app, V1, ACME_KEY, &json!({"organizations": []}))
        .await
        .assert_problem(422);
    // Liveness does not depend on backends.
    assert_eq!(get(&app, "/health", None).await.status, 200);
}

#[tokio::test]
async fn a_hanging_backend_hits_the_request_timeout() {
    let app = router(
        service_over(Arc::new(Double::hanging(Arc::new(MemoryRepository::new())))),
        config()
            .request_timeout(Duration::from_millis(100))
            .retry_after(Duration::from_secs(2))
            .build(),
    );
    // A read is cut by the request timeout (a submission's store step is
    // not: see tests/timeouts.rs).
    let a = get(
        &app,
        "/api/v1/batches/0191e5a4-0000-7000-8000-000000000000",
        Some(ACME_KEY),
    )
    .await;
    a.assert_problem(503);
    assert_eq!(a.header("retry-after"), Some("2"));
}

#[tokio::test]
async fn health_and_openapi_and_no_operator_endpoints() {
    let (app, _) = app();
    let h = get(&app, "/health", None).await;
    assert_eq!(
        (h.status.as_u16(), h.body.clone()),
        (200, json!({"status": "ok"}))
    );
    // `/ready` and `/metrics` are on the operator router only (tests/operator.rs).
    for p in ["/ready", "/metrics"] {
        get(&app, p, None).await.assert_problem(404);
    }
    let o = get(&app, "/api/v1/openapi.json", None).await;
    assert_eq!(o.status, 200);
    assert!(o.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = o.body["paths"].as_object().unwrap();
    for p in [
        "/api/bulk-onboard",
        "/api/v1/bulk-onboard",
        "/api/v1/bulk-onboard/validate",
        "/api/v1/batches/{id}",
        "/api/v1/batches/{id}/organizations",
        "/api/v1/batches/{id}/retry",
        "/api/v1/batches/{id}/cancel",
        "/api/v1/batches",
        "/api/v1/batches/{id}/failures",
        "/api/v1/batches/{id}/failures/{group}/retry",
        "/api/v1/batches/{id}/events",
        "/api/v1/events",
        "/api/v1/throughput",
        "/api/v1/batches/{id}/results",
        "/api/v1/imports",
        "/api/v1/organizations",
        "/api/v1/organizations/{domain}",
        "/api/v1/organizations/{domain}/versions",
        "/api/v1/webhooks/endpoints",
        "/api/v1/webhooks/endpoints/{id}",
        "/api/v1/webhooks/endpoints/{id}/rotate-secret",
        "/api/v1/webhooks/endpoints/{id}/ping",
        "/api/v1/webhooks/deliveries",
        "/api/v1/webhooks/deliveries/{id}",
        "/api/v1/webhooks/deliveries/{id}/replay",
        "/health",
        "/api/v1/openapi.json",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from the OpenAPI document"
        );
    }
    // The admin routes are documented only where they are on (tests/shared_state.rs).
    assert_eq!(paths.len(), 27, "{:?}", paths.keys().collect::<Vec<_>>());
    let schemas = o.body["components"]["schemas"].as_object().unwrap();
    for s in [
        "BulkOnboardAccepted",
        "BatchStatusResponse",
        "ProblemDocument",
        "BatchItemsPage",
    ] {
        assert!(schemas.contains_key(s), "{s}");
    }
    assert!(o.body["components"]["securitySchemes"]["bearer"].is_object());
}

#[tokio::test]
async fn organizations_are_cursor_paginated() {
    let (app, _) = app();
    let a = post_json(&app, V1, ACME_KEY, &orgs(5)).await;
    let base = format!("{}/organizations", a.header("location").unwrap());
    let mut positions = Vec::new();
    let mut uri = format!("{base}?limit=2");
    loop {
        let page = get(&app, &uri, Some(ACME_KEY)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let items = page.body["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        for item in items {
            positions.push(item["position"].as_u64().unwrap());
            for field in [
                "id",
                "organization_id",
                "domain",
                "status",
                "change",
                "outcome",
                "attempts",
                "errors",
                "created_at",
                "updated_at",
            ] {
                assert!(item.get(field).is_some(), "{field} missing: {item}");
            }
            assert_eq!(item["status"], "pending");
            assert_eq!(item["outcome"], "created");
            // A JSON submission keeps no line, name, email or external id of its own.
            for field in [
                "line",
                "name",
                "contact_email",
                "external_id",
                "error_code",
                "error_detail",
            ] {
                assert_eq!(item[field], Value::Null, "{field}: {item}");
            }
        }
        match page.body["next_cursor"].as_str() {
            Some(cursor) => uri = format!("{base}?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(positions, [0, 1, 2, 3, 4]);
    let filtered = get(&app, &format!("{base}?status=completed"), Some(ACME_KEY)).await;
    assert_eq!(filtered.body["items"], json!([]));
    for (query, parameter) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("cursor=garbage", "cursor"),
    ] {
        let a = get(&app, &format!("{base}?{query}"), Some(ACME_KEY)).await;
        a.assert_problem(422);
        assert_eq!(a.body["errors"][0]["parameter"], parameter);
    }
    get(&app, &format!("{base}?limit=1&limit=2"), Some(ACME_KEY))
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn retry_and_cancel() {
    let (app, _) = app();
    let a = post_json(&app, V1, ACME_KEY, &orgs(3)).await;
    let location = a.header("location").unwrap().to_owned();
    let r = send(
        &app,
        request(
            Method::POST,
            &format!("{location}/retry"),
            Some(ACME_KEY),
            None,
        ),
    )
    .await;
    assert_eq!(r.status, 202);
    assert_eq!(r.body["requeued"], 0);
    assert_eq!(r.body["batch_id"], a.body["batch_id"]);
    let c = send(
        &app,
        request(
            Method::POST,
            &format!("{location}/cancel"),
            Some(ACME_KEY),
            None,
        ),
    )
    .await;
    assert_eq!(c.status, 200, "{}", c.body);
    assert_eq!(c.body["state"], "cancelled");
    assert_eq!(c.body["counts"]["cancelled"], 3);
    assert!(c.body["cancelled_at"].is_string());
    let s = get(&app, &location, Some(ACME_KEY)).await;
    assert_eq!(s.body["state"], "cancelled");
    assert_eq!(s.body["percent"], 100.0);
    // Cancelling twice is fine.
    let again = send(
        &app,
        request(
            Method::POST,
            &format!("{location}/cancel"),
            Some(ACME_KEY),
            None,
        ),
    )
    .await;
    assert_eq!(again.status, 200);
}

#[tokio::test]
async fn webhook_endpoints_without_webhooks() {
    let (app, _) = app();
    let l = get(&app, "/api/v1/webhooks/deliveries", Some(ACME_KEY)).await;
    assert_eq!(
        (l.status.as_u16(), l.body.clone()),
        (200, json!({"deliveries": []}))
    );
    get(
        &app,
        "/api/v1/webhooks/deliveries?batch_id=nope",
        Some(ACME_KEY),
    )
    .await
    .assert_problem(422);
    send(
        &app,
        request(
            Method::POST,
            "/api/v1/webhooks/deliveries/0191e5a4-0000-7000-8000-000000000000/replay",
            Some(ACME_KEY),
            None,
        ),
    )
    .await
    .assert_problem(404);
}

/// Whatever a client sends, the answer is never a 5xx (backends are up).
#[tokio::test]
async fn no_client_input_produces_a_server_error() {
    let (app, _) = app();
    let bodies: Vec<Vec<u8>> = vec![
        b"null".to_vec(),
        b"true".to_vec(),
        b"1e999999".to_vec(),
        b"\"\\ud800\"".to_vec(),
        b"{\"organizations\": [{\"name\": \"\\u0000\", \"domain\": \"\\ud83d\\ude00.com\", \"contact_email\": \"@\"}]}".to_vec(),
        serde_json::to_vec(&json!({"organizations": [{"name": "A", "domain": "localhost", "contact_email": "a@localhost"}]})).unwrap(),
        serde_json::to_vec(&json!({"organizations": [{"name": "A", "domain": "127.0.0.1", "contact_email": "a@[127.0.0.1]"}]})).unwrap(),
        serde_json::to_vec(&json!({"organizations": [{"name": "A", "domain": "-a-.com", "contact_email": "a@a.com"}]})).unwrap(),
        serde_json::to_vec(&json!({"organizations": [{"name": "A", "domain": "a..com", "contact_email": "a@a.com"}]})).unwrap(),
        serde_json::to_vec(&json!({"organizations": [{"name": "A", "domain": "co.uk", "contact_email": "a@a.com"}]})).unwrap(),
        serde_json::to_vec(&json!({"organizations": [{"name": " ", "domain": " ", "contact_email": " "}]})).unwrap(),
        serde_json::to_vec(&json!({"organizations": [{"name": "A", "domain": "xn--zz.com", "contact_email": "a@a.com"}]})).unwrap(),
        serde_json::to_vec(&json!({"organizations": [{"name": 1.5, "domain": {}, "contact_email": []}]})).unwrap(),
    ];
    for uri in [SEED, V1, VALIDATE] {
        for body in &bodies {
            let a = send(
                &app,
                request(Method::POST, uri, Some(ACME_KEY), Some(body.clone())),
            )
            .await;
            assert!(
                a.status.as_u16() < 500,
                "{uri} {}: {}",
                String::from_utf8_lossy(body),
                a.body
            );
            assert!(
                a.status.is_success()
                    || a.header("content-type") == Some("application/problem+json")
            );
        }
    }
}

/// Found by schemathesis: a number for `on_conflict` is refused by the v1
/// route; the seed route ignores `on_conflict` and `mode` whatever they hold
/// (its contract), and its document no longer lists them.
#[tokio::test]
async fn on_conflict_is_checked_by_v1_and_ignored_by_the_seed_route() {
    let (app, _) = app();
    let body = json!({
        "mode": null,
        "on_conflict": -58800,
        "organizations": [{"contact_email": "0@0.com", "domain": "0.com", "name": "0"}]
    });
    let answer = post_json(&app, "/api/v1/bulk-onboard", ACME_KEY, &body).await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(
        answer.body["errors"][0]["pointer"], "/on_conflict",
        "{}",
        answer.body
    );
    let answer = post_json(&app, "/api/bulk-onboard", ACME_KEY, &body).await;
    assert_eq!(answer.status, 202, "{}", answer.body);

    let doc = get(&app, "/api/v1/openapi.json", None).await.body;
    let schema_of = |path: &str| {
        let reference = doc["paths"][path]["post"]["requestBody"]["content"]["application/json"]
            ["schema"]["$ref"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        doc["components"]["schemas"][reference].clone()
    };
    assert!(schema_of("/api/bulk-onboard")["properties"]["on_conflict"].is_null());
    assert!(schema_of("/api/v1/bulk-onboard")["properties"]["on_conflict"].is_object());
}
