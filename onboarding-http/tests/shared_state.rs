//! One deployment, many processes (DESIGN §2, guarantee 11): API keys in a
//! shared store, the admin routes, the throttle of failed
//! authentications, the per-tenant rate limit across servers, and tenants'
//! webhook endpoints. Each "server" is a router of its own over the shared
//! stores, as two processes would be.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::Router;
use common::*;
use onboarding_core::limits::{LocalRateLimiter, Rate};
use onboarding_core::memory::{MemoryKeyStore, MemoryWebhooks};
use onboarding_core::testing::eventually;
use onboarding_core::{Backends, IngestConfig, OnboardingService};
use onboarding_http::webhook::{UrlPolicy, WebhookConfig, Webhooks};
use onboarding_http::{router, HttpConfig, RateLimit};
use serde_json::{json, Value};

const ADMIN: &str = "admin-token-0123456789";

fn server(
    keys: &Arc<MemoryKeyStore>,
    configure: impl FnOnce(onboarding_http::HttpConfigBuilder) -> onboarding_http::HttpConfigBuilder,
) -> Router {
    let service = OnboardingService::new(Backends::memory(), IngestConfig::default());
    let config = HttpConfig::builder()
        .key_store(keys.clone())
        .admin_token(ADMIN)
        .rate_limit(Some(RateLimit::per_second(10_000.0)));
    router(service, configure(config).build())
}

async fn admin(app: &Router, method: Method, uri: &str, body: Option<Value>) -> Answer {
    send(
        app,
        request(
            method,
            uri,
            Some(ADMIN),
            body.map(|b| serde_json::to_vec(&b).unwrap()),
        ),
    )
    .await
}

async fn new_key(app: &Router, tenant: &str) -> (String, Value) {
    let a = admin(
        app,
        Method::POST,
        &format!("/api/v1/admin/tenants/{tenant}/keys"),
        Some(json!({"label": "ci"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    (a.body["key"].as_str().unwrap().to_owned(), a.body.clone())
}

async fn status_with(app: &Router, key: &str) -> StatusCode {
    get(app, "/api/v1/webhooks/deliveries", Some(key))
        .await
        .status
}

#[tokio::test]
async fn admin_routes_need_the_admin_token_and_vanish_without_one() {
    let keys = Arc::new(MemoryKeyStore::new());
    let app = server(&keys, |c| c);
    for token in [None, Some("wrong-token-000000"), Some(ACME_KEY)] {
        let a = send(
            &app,
            request(Method::GET, "/api/v1/admin/tenants", token, None),
        )
        .await;
        a.assert_problem(401);
    }
    let service = OnboardingService::new(Backends::memory(), IngestConfig::default());
    let without = router(service, HttpConfig::builder().key_store(keys).build());
    send(
        &without,
        request(Method::GET, "/api/v1/admin/tenants", Some(ADMIN), None),
    )
    .await
    .assert_problem(404);
    // The served document describes the server as it answers.
    let admin_paths = |doc: &Value| {
        doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|p| p.starts_with("/api/v1/admin/"))
            .count()
    };
    let on = get(&app, "/api/v1/openapi.json", None).await.body;
    let off = get(&without, "/api/v1/openapi.json", None).await.body;
    assert_eq!((admin_paths(&on), admin_paths(&off)), (5, 0));
}

#[tokio::test]
async fn keys_are_created_listed_revoked_and_rotated_by_the_operator() {
    let keys = Arc::new(MemoryKeyStore::new());
    let app = server(&keys, |c| c);
    let a = admin(
        &app,
        Method::POST,
        "/api/v1/admin/tenants",
        Some(json!({"id": "acme"})),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    admin(
        &app,
        Method::POST,
        "/api/v1/admin/tenants",
        Some(json!({"id": "acme"})),
    )
    .await
    .assert_problem(409);
    admin(
        &app,
        Method::POST,
        "/api/v1/admin/tenants",
        Some(json!({"id": "no spaces"})),
    )
    .await
    .assert_problem(422);
    let (key, created) = new_key(&app, "acme").await;
    assert!(key.starts_with(created["prefix"].as_str().unwrap()));
    assert_eq!(status_with(&app, &key).await, StatusCode::OK);

    // Listings show the prefix and label, never the key nor its hash.
    let list = admin(&app, Method::GET, "/api/v1/admin/keys?tenant=acme", None).await;
    assert_eq!(list.status, StatusCode::OK);
    let raw = String::from_utf8(list.raw.clone()).unwrap();
    assert!(!raw.contains(&key[17..]), "{raw}");
    assert_eq!(list.body["keys"][0]["label"], "ci");
    let tenants = admin(&app, Method::GET, "/api/v1/admin/tenants", None).await;
    assert_eq!(tenants.body["tenants"][0]["id"], "acme");

    // Rotation: the new key works, the old one is refused.
    let prefix = created["prefix"].as_str().unwrap();
    let r = admin(
        &app,
        Method::POST,
        &format!("/api/v1/admin/keys/{prefix}/rotate"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let rotated = r.body["key"].as_str().unwrap().to_owned();
    assert_eq!(status_with(&app, &rotated).await, StatusCode::OK);
    let old = get(&app, "/api/v1/webhooks/deliveries", Some(&key)).await;
    old.assert_problem(401);

    // Revocation (by id): refused with exactly the answer an unknown key gets.
    let id = r.body["id"].as_str().unwrap();
    let v = admin(
        &app,
        Method::POST,
        &format!("/api/v1/admin/keys/{id}/revoke"),
        None,
    )
    .await;
    assert_eq!(v.status, StatusCode::OK);
    assert!(v.body["revoked_at"].is_string());
    let revoked = get(&app, "/api/v1/webhooks/deliveries", Some(&rotated)).await;
    let unknown = get(
        &app,
        "/api/v1/webhooks/deliveries",
        Some("obk_000000000000_nope"),
    )
    .await;
    revoked.assert_problem(401);
    assert_eq!(
        revoked.body, unknown.body,
        "revoked and unknown keys answer alike"
    );
    admin(
        &app,
        Method::POST,
        "/api/v1/admin/keys/obk_unknown/revoke",
        None,
    )
    .await
    .assert_problem(404);
}

#[tokio::test]
async fn a_key_revoked_through_one_server_is_refused_by_another_within_a_second() {
    let keys = Arc::new(MemoryKeyStore::new());
    let (one, two) = (server(&keys, |c| c), server(&keys, |c| c));
    let (key, created) = new_key(&one, "acme").await;
    // Both servers have seen (and cached) the key.
    assert_eq!(status_with(&one, &key).await, StatusCode::OK);
    assert_eq!(status_with(&two, &key).await, StatusCode::OK);
    let id = created["id"].as_str().unwrap();
    admin(
        &one,
        Method::POST,
        &format!("/api/v1/admin/keys/{id}/revoke"),
        None,
    )
    .await;
    // The other server's key cache keeps a lookup at most 1 s.
    eventually(
        "the other server to refuse the revoked key",
        Duration::from_millis(1500),
        || async {
            let status = status_with(&two, &key).await;
            (status == StatusCode::UNAUTHORIZED)
                .then_some(())
                .ok_or(status)
        },
    )
    .await;
    assert_eq!(status_with(&one, &key).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn failed_authentications_are_throttled_per_client() {
    let keys = Arc::new(MemoryKeyStore::new());
    let app = server(&keys, |c| c.auth_failures(Some(Rate::new(0.1, 3))));
    let (key, _) = new_key(&app, "acme").await;
    for _ in 0..3 {
        get(
            &app,
            "/api/v1/webhooks/deliveries",
            Some("obk_guess_0000000"),
        )
        .await
        .assert_problem(401);
    }
    let throttled = get(
        &app,
        "/api/v1/webhooks/deliveries",
        Some("obk_guess_0000001"),
    )
    .await;
    throttled.assert_problem(429);
    assert!(throttled.header("retry-after").is_some());
    // While blocked, even a valid key is not checked: guessing cannot go on.
    get(&app, "/api/v1/webhooks/deliveries", Some(&key))
        .await
        .assert_problem(429);
    // Admin token guesses count too.
    send(
        &app,
        request(Method::GET, "/api/v1/admin/keys", Some("wrong-admin"), None),
    )
    .await
    .assert_problem(429);
}

#[tokio::test]
async fn the_rate_limit_is_per_tenant_and_shared_by_servers() {
    let keys = Arc::new(MemoryKeyStore::new());
    let rate = RateLimit::per_second(1.0).with_burst(4);
    let shared = Arc::new(LocalRateLimiter::new(rate.rate()));
    let with_limit = |c: onboarding_http::HttpConfigBuilder| {
        c.rate_limit(Some(rate)).shared_rate_limiter(shared.clone())
    };
    let (one, two) = (server(&keys, with_limit), server(&keys, with_limit));
    let (k1, _) = new_key(&one, "acme").await;
    let (k2, _) = new_key(&one, "acme").await;
    let (other, _) = new_key(&one, "globex").await;
    // Two keys of one tenant on two servers share one allowance of 4.
    let mut ok = 0;
    for (app, key) in [
        (&one, &k1),
        (&two, &k2),
        (&one, &k2),
        (&two, &k1),
        (&one, &k1),
        (&two, &k2),
    ] {
        match status_with(app, key).await {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(
        ok, 4,
        "the burst of 4 held across both servers and both keys"
    );
    assert_eq!(
        status_with(&two, &other).await,
        StatusCode::OK,
        "another tenant is not limited"
    );
}

fn webhooks(store: &Arc<MemoryWebhooks>, policy: UrlPolicy) -> Webhooks {
    Webhooks::new(
        store.clone(),
        store.clone(),
        WebhookConfig::default().with_policy(policy),
    )
    .unwrap()
}

fn with_webhooks(store: &Arc<MemoryWebhooks>, policy: UrlPolicy) -> Router {
    let service = OnboardingService::new(Backends::memory(), IngestConfig::default());
    router(service, config().webhooks(webhooks(store, policy)).build())
}

#[tokio::test]
async fn webhook_urls_are_validated_naming_the_field() {
    let store = Arc::new(MemoryWebhooks::new());
    let app = with_webhooks(&store, UrlPolicy::strict());
    for (body, pointer, code) in [
        (json!({"url": "example.com/hook"}), "/url", "url_invalid"),
        (json!({"url": "/hook"}), "/url", "url_invalid"),
        (
            json!({"url": "http://example.com/hook"}),
            "/url",
            "url_not_https",
        ),
        (
            json!({"url": "https://127.0.0.1/hook"}),
            "/url",
            "url_private",
        ),
        (
            json!({"url": "https://169.254.169.254/latest/meta-data"}),
            "/url",
            "url_private",
        ),
        (json!({"url": "https://[::1]/hook"}), "/url", "url_private"),
        (
            json!({"url": "https://localhost/hook"}),
            "/url",
            "url_private",
        ),
        (json!({"url": 42}), "/url", "url_invalid"),
        (
            json!({"url": "https://93.184.216.34/", "events": ["batch.exploded"]}),
            "/events/0",
            "event_unknown",
        ),
        (
            json!({"url": "https://93.184.216.34/", "events": "batch.completed"}),
            "/events",
            "events_invalid",
        ),
    ] {
        let a = post_json(&app, "/api/v1/webhooks/endpoints", ACME_KEY, &body).await;
        a.assert_problem(422);
        assert_eq!(
            (a.pointers(), a.codes()),
            (vec![pointer.to_owned()], vec![code.to_owned()]),
            "{body}"
        );
    }
    let list = get(&app, "/api/v1/webhooks/endpoints", Some(ACME_KEY)).await;
    assert_eq!(list.body["endpoints"], json!([]), "nothing was stored");
    // A tenant's endpoints are capped.
    let good = json!({"url": "https://93.184.216.34/hook"});
    for _ in 0..onboarding_http::webhook::MAX_ENDPOINTS_PER_TENANT {
        let a = post_json(&app, "/api/v1/webhooks/endpoints", ACME_KEY, &good).await;
        assert_eq!(a.status, StatusCode::CREATED);
    }
    post_json(&app, "/api/v1/webhooks/endpoints", ACME_KEY, &good)
        .await
        .assert_problem(409);
    let theirs = post_json(&app, "/api/v1/webhooks/endpoints", GLOBEX_KEY, &good).await;
    assert_eq!(
        theirs.status,
        StatusCode::CREATED,
        "another tenant has its own cap"
    );
}

#[tokio::test]
async fn a_name_resolving_to_a_private_address_is_refused() {
    let store = Arc::new(MemoryWebhooks::new());
    let app = with_webhooks(&store, UrlPolicy::strict().with_http(true));
    // `localhost.` is a name (not the literal), resolved by the system to loopback.
    let a = post_json(
        &app,
        "/api/v1/webhooks/endpoints",
        ACME_KEY,
        &json!({"url": "http://localhost.:9/hook"}),
    )
    .await;
    a.assert_problem(422);
    assert_eq!(
        (a.pointers(), a.codes()),
        (vec!["/url".to_owned()], vec!["url_private".to_owned()])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_signs_beside_the_old_one_during_the_overlap() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, axum::body::Bytes)>>> =
        Arc::default();
    let record = seen.clone();
    let receiver = Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap, b: axum::body::Bytes| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push((h, b));
                StatusCode::NO_CONTENT
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });
    let store = Arc::new(MemoryWebhooks::new());
    let app = with_webhooks(&store, UrlPolicy::permissive());
    let created = post_json(
        &app,
        "/api/v1/webhooks/endpoints",
        ACME_KEY,
        &json!({"url": format!("http://{addr}/hook")}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let old = created.body["secret"].as_str().unwrap().to_owned();
    // Another tenant cannot rotate, ping or delete it.
    for path in ["rotate-secret", "ping"] {
        post_json(
            &app,
            &format!("/api/v1/webhooks/endpoints/{id}/{path}"),
            GLOBEX_KEY,
            &json!({}),
        )
        .await
        .assert_problem(404);
    }
    let rotated = post_json(
        &app,
        &format!("/api/v1/webhooks/endpoints/{id}/rotate-secret"),
        ACME_KEY,
        &json!({"overlap_seconds": 3600}),
    )
    .await;
    assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
    let new = rotated.body["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(rotated.body["previous_secret_expires_at"].is_string());
    let ping = post_json(
        &app,
        &format!("/api/v1/webhooks/endpoints/{id}/ping"),
        ACME_KEY,
        &json!({}),
    )
    .await;
    assert_eq!(ping.status, StatusCode::OK, "{}", ping.body);
    assert_eq!(
        (ping.body["event"].clone(), ping.body["status"].clone()),
        (json!("ping"), json!("delivered"))
    );
    let (headers, body) = seen.lock().unwrap()[0].clone();
    let now = chrono::Utc::now().timestamp();
    use onboarding_http::webhook::verify;
    assert_eq!(verify(&[&new], &headers, &body, now), Ok(()));
    assert_eq!(
        verify(&[&old], &headers, &body, now),
        Ok(()),
        "the old secret still signs"
    );
    assert_eq!(
        headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    // Without overlap the old secret stops signing at once.
    let again = post_json(
        &app,
        &format!("/api/v1/webhooks/endpoints/{id}/rotate-secret"),
        ACME_KEY,
        &json!({"overlap_seconds": 0}),
    )
    .await;
    let newest = again.body["secret"].as_str().unwrap().to_owned();
    post_json(
        &app,
        &format!("/api/v1/webhooks/endpoints/{id}/ping"),
        ACME_KEY,
        &json!({}),
    )
    .await;
    let (headers, body) = seen.lock().unwrap()[1].clone();
    assert_eq!(verify(&[&newest], &headers, &body, now), Ok(()));
    assert!(verify(&[&new], &headers, &body, now).is_err());
    let d = send(
        &app,
        request(
            Method::DELETE,
            &format!("/api/v1/webhooks/endpoints/{id}"),
            Some(ACME_KEY),
            None,
        ),
    )
    .await;
    assert_eq!(d.status, StatusCode::NO_CONTENT);
    // Its deliveries stay listed.
    let list = get(&app, "/api/v1/webhooks/deliveries", Some(ACME_KEY)).await;
    assert_eq!(list.body["deliveries"].as_array().unwrap().len(), 2);
}

/// A webhook receiver on a free loopback port: `POST /hook` answers 200
/// and counts the calls.
async fn counting_receiver() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = hits.clone();
    let receiver = Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let count = count.clone();
            async move {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });
    (addr, hits)
}

/// A `BatchCompleted` of a new batch of tenant `acme`.
fn completed_for_acme() -> onboarding_core::Event {
    onboarding_core::Event::BatchCompleted {
        tenant: tenant("acme"),
        batch_id: onboarding_core::model::BatchId::new(),
        counts: Default::default(),
        completed_at: onboarding_core::model::now(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_made_by_another_process_is_listed_and_replayed_here() {
    let (addr, hits) = counting_receiver().await;
    let store = Arc::new(MemoryWebhooks::new());
    // The "worker": its own Webhooks over the shared store, sending.
    let worker = webhooks(&store, UrlPolicy::permissive());
    worker
        .register(
            &tenant("acme"),
            &format!("http://{addr}/hook"),
            &["batch.completed".to_owned()],
        )
        .await
        .unwrap();
    let _loop = worker.start();
    worker.enqueue(&[completed_for_acme()]).await.unwrap();
    // The "server": lists and replays it.
    let app = with_webhooks(&store, UrlPolicy::permissive());
    let delivery = eventually(
        "the delivery to be delivered",
        Duration::from_secs(10),
        || async {
            let list = get(&app, "/api/v1/webhooks/deliveries", Some(ACME_KEY)).await;
            let d = list.body["deliveries"][0].clone();
            (d["status"] == "delivered")
                .then_some(d)
                .ok_or_else(|| list.body.to_string())
        },
    )
    .await;
    let id = delivery["id"].as_str().unwrap();
    let replayed = post_json(
        &app,
        &format!("/api/v1/webhooks/deliveries/{id}/replay"),
        ACME_KEY,
        &json!({}),
    )
    .await;
    assert_eq!(replayed.status, StatusCode::OK);
    assert_eq!(replayed.body["attempts"], 2);
    assert_eq!(replayed.body["attempts_log"].as_array().unwrap().len(), 2);
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_that_became_private_is_refused_again_at_delivery() {
    let (addr, hits) = counting_receiver().await;
    let store = Arc::new(MemoryWebhooks::new());
    // Stored as if registered under a laxer policy (or before its name moved).
    let endpoint = onboarding_core::webhooks::WebhookEndpoint::new(
        tenant("acme"),
        format!("http://{addr}/hook"),
        vec!["batch.completed".to_owned()],
        onboarding_core::model::now(),
    );
    onboarding_core::webhooks::WebhookStore::save_endpoint(&*store, &endpoint)
        .await
        .unwrap();
    let sender = webhooks(&store, UrlPolicy::strict().with_http(true));
    let _loop = sender.start();
    sender.enqueue(&[completed_for_acme()]).await.unwrap();
    let query = onboarding_core::webhooks::DeliveryQuery::latest(1);
    let record = eventually("the delivery to fail", Duration::from_secs(10), || async {
        let list = sender.deliveries(&tenant("acme"), &query).await.unwrap();
        (list[0].status == onboarding_core::webhooks::DeliveryStatus::Failed)
            .then(|| list[0].clone())
            .ok_or_else(|| format!("{:?}", list[0]))
    })
    .await;
    assert_eq!(record.attempts, 1, "no retry: the policy refuses it again");
    let error = record.last_error.clone().unwrap_or_default();
    assert!(error.contains("not allowed"), "{record:?}");
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing reached the private address"
    );
}
