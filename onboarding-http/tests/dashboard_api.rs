//! The API the dashboard uses: the batch listing, failures grouped by cause
//! (and retrying one group), the Server-Sent Event streams, and the
//! dashboard's own files with their Content-Security-Policy.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use common::*;
use onboarding_core::memory::MemoryRepository;
use onboarding_core::model::{BatchId, ConflictPolicy, ItemId};
use onboarding_core::repository::Resolution;
use onboarding_core::testing::fixtures;
use onboarding_core::{Backends, IngestConfig, OnboardingService, Worker, WorkerConfig};
use onboarding_http::{dashboard_router, router, DashboardConfig, ServeConfig};
use serde_json::{json, Value};

async fn submit(app: &axum::Router, key: &str, n: usize, prefix: &str) -> String {
    let body = json!({"organizations": (0..n).map(|i| org(&format!("Org {i}"), &format!("{prefix}{i}.com"))).collect::<Vec<_>>()});
    let answer = post_json(app, "/api/v1/bulk-onboard", key, &body).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    answer.body["batch_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn batches_are_listed_newest_first_with_a_cursor_per_tenant() {
    let (app, _service) = app();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(submit(&app, ACME_KEY, 1 + i, &format!("list{i}-")).await);
    }
    let foreign = submit(&app, GLOBEX_KEY, 1, "globex-").await;
    ids.reverse();

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/api/v1/batches?limit=2&cursor={c}"),
            None => "/api/v1/batches?limit=2".to_owned(),
        };
        let page = get(&app, &uri, Some(ACME_KEY)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let data = page.body["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        for batch in data {
            // Each entry is the same object GET /api/v1/batches/{id} answers.
            let id = batch["batch_id"].as_str().unwrap();
            let one = get(&app, &format!("/api/v1/batches/{id}"), Some(ACME_KEY)).await;
            let keys = |v: &Value| {
                v.as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect::<HashSet<_>>()
            };
            assert_eq!(keys(batch), keys(&one.body));
            assert_eq!(batch["counts"], one.body["counts"]);
            seen.push(id.to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(page.body["next_cursor"].is_null());
                break;
            }
        }
    }
    assert_eq!(seen, ids, "every batch of the tenant once, newest first");
    assert!(!seen.contains(&foreign), "never another tenant's batch");

    let globex = get(&app, "/api/v1/batches", Some(GLOBEX_KEY)).await;
    assert_eq!(globex.body["data"].as_array().unwrap().len(), 1);
    let running = get(&app, "/api/v1/batches?state=running", Some(ACME_KEY)).await;
    assert_eq!(running.body["data"].as_array().unwrap().len(), 5);
    let none = get(&app, "/api/v1/batches?state=cancelled", Some(ACME_KEY)).await;
    assert_eq!(none.body, json!({"data": [], "next_cursor": null}));
    let future = get(
        &app,
        "/api/v1/batches?created_after=2999-01-01T00:00:00Z",
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(future.body["data"], json!([]));
    let past = get(
        &app,
        "/api/v1/batches?created_after=2000-01-01T00:00:00%2B02:00",
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(past.body["data"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn bad_listing_parameters_are_problems() {
    let (app, _service) = app();
    submit(&app, ACME_KEY, 1, "bad-").await;
    for cursor in [
        "garbage",
        "b1.zz",
        "p1.00000001",
        "b1.%3Cscript%3E",
        "b2.0190b6a47c1e7d3a9f001234567890ab",
    ] {
        get(
            &app,
            &format!("/api/v1/batches?cursor={cursor}"),
            Some(ACME_KEY),
        )
        .await
        .assert_problem(400);
    }
    for (query, parameter) in [
        ("state=done", "state"),
        ("state=RUNNING", "state"),
        ("state=%00", "state"),
        ("state=", "state"),
        ("created_after=yesterday", "created_after"),
        ("created_after=", "created_after"),
        ("created_after=2026-13-01T00:00:00Z", "created_after"),
        ("limit=0", "limit"),
        ("limit=201", "limit"),
        ("limit=abc", "limit"),
    ] {
        let answer = get(&app, &format!("/api/v1/batches?{query}"), Some(ACME_KEY)).await;
        answer.assert_problem(422);
        assert_eq!(answer.body["errors"][0]["parameter"], parameter, "{query}");
    }
    get(&app, "/api/v1/batches?state=a&state=b", Some(ACME_KEY))
        .await
        .assert_problem(400);
    get(&app, "/api/v1/batches", None).await.assert_problem(401);
    get(&app, "/api/v1/batches", Some("wrong-key-0123456789"))
        .await
        .assert_problem(401);
}

/// Stores one batch of `n` organizations for acme straight in the
/// repository and fails each with the message `cause(i)`.
async fn failed_batch(
    repo: &MemoryRepository,
    n: usize,
    cause: impl Fn(usize) -> String,
) -> (BatchId, Vec<ItemId>) {
    let submission = fixtures::submission(&tenant("acme"), n, ConflictPolicy::Update);
    let (batch, items) = fixtures::store(repo, &submission).await;
    let ids = fixtures::ids(&items);
    let claimed = fixtures::claim(repo, &ids, submission.now).await;
    for (i, c) in claimed.iter().enumerate() {
        let failed = Resolution::Failed {
            error: cause(i),
            permanent: true,
        };
        fixtures::finish(repo, &[c.lease], failed, submission.now).await;
    }
    (batch.id, ids)
}

#[tokio::test]
async fn throughput_counts_the_tenants_finished_organizations_per_bucket() {
    let repo = Arc::new(MemoryRepository::new());
    let service = service_over(repo.clone());
    let app = router(service, config().build());
    let acme = fixtures::submission(&tenant("acme"), 3, ConflictPolicy::Update);
    let (_, items) = fixtures::store(&*repo, &acme).await;
    fixtures::process(&*repo, &fixtures::ids(&items), acme.now).await;
    failed_batch(&repo, 2, |i| format!("crm_down: attempt {i}")).await;
    // Another tenant's completions are never counted.
    let globex = fixtures::submission(&tenant("globex"), 4, ConflictPolicy::Update);
    let (_, foreign) = fixtures::store(&*repo, &globex).await;
    fixtures::process(&*repo, &fixtures::ids(&foreign), globex.now).await;

    let answer = get(
        &app,
        "/api/v1/throughput?window=3600&bucket=60",
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["bucket_seconds"], 60);
    let buckets = answer.body["buckets"].as_array().unwrap();
    let sum = |field: &str| -> u64 { buckets.iter().map(|b| b[field].as_u64().unwrap()).sum() };
    assert_eq!((sum("completed"), sum("failed")), (3, 2), "{}", answer.body);
    for b in buckets {
        let start = chrono::DateTime::parse_from_rfc3339(b["start"].as_str().unwrap()).unwrap();
        assert_eq!(start.timestamp() % 60, 0, "aligned on the minute: {b}");
    }
    // The default: the last hour in 10-second buckets.
    let default = get(&app, "/api/v1/throughput", Some(ACME_KEY)).await;
    assert_eq!(default.body["bucket_seconds"], 10);
    let since =
        chrono::DateTime::parse_from_rfc3339(default.body["since"].as_str().unwrap()).unwrap();
    let until =
        chrono::DateTime::parse_from_rfc3339(default.body["until"].as_str().unwrap()).unwrap();
    assert_eq!((until - since).num_seconds(), 3600);
    let other = get(
        &app,
        "/api/v1/throughput?window=3600&bucket=60",
        Some(GLOBEX_KEY),
    )
    .await;
    let globex_completed: u64 = other.body["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["completed"].as_u64().unwrap())
        .sum();
    assert_eq!(globex_completed, 4);

    for (query, parameter) in [
        ("window=10", "window"),
        ("window=86401", "window"),
        ("window=abc", "window"),
        ("bucket=0", "bucket"),
        ("bucket=3601", "bucket"),
        ("window=86400&bucket=1", "bucket"),
    ] {
        let a = get(&app, &format!("/api/v1/throughput?{query}"), Some(ACME_KEY)).await;
        a.assert_problem(422);
        assert_eq!(a.body["errors"][0]["parameter"], parameter, "{query}");
    }
    get(
        &app,
        "/api/v1/throughput?window=60&window=120",
        Some(ACME_KEY),
    )
    .await
    .assert_problem(400);
    get(&app, "/api/v1/throughput", None)
        .await
        .assert_problem(401);
}

#[tokio::test]
async fn two_thousand_failures_of_three_causes_are_three_groups_and_one_retries_alone() {
    let repo = Arc::new(MemoryRepository::new());
    let service = service_over(repo.clone());
    let app = router(service, config().build());
    let (batch, _) = failed_batch(&repo, 2000, |i| match i % 3 {
        0 => format!(
            "timeout after {} ms talking to 10.0.{}.7",
            1000 + i,
            i % 250
        ),
        1 => format!(
            "CRM refused organization {} (request {})",
            uuid::Uuid::new_v4(),
            uuid::Uuid::new_v4().simple()
        ),
        _ => format!("duplicate name \"Org {i}\" in workspace 'ws-{i}'"),
    })
    .await;

    let answer = get(
        &app,
        &format!("/api/v1/batches/{batch}/failures"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["failed"], 2000);
    assert_eq!(answer.body["ungrouped"], 0);
    let groups = answer.body["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{:#}", answer.body["groups"]);
    let counts: Vec<u64> = groups
        .iter()
        .map(|g| g["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [667, 667, 666], "largest first");
    let causes: HashSet<&str> = groups
        .iter()
        .map(|g| g["cause"].as_str().unwrap())
        .collect();
    assert_eq!(
        causes,
        HashSet::from([
            "timeout after <n> ms talking to <n>.<n>.<n>.<n>",
            "CRM refused organization <id> (request <id>)",
            "duplicate name \"…\" in workspace \"…\"",
        ])
    );
    for g in groups {
        assert_eq!(g["example"]["status"], "failed");
        assert_eq!(g["example"]["errors"].as_array().unwrap().len(), 1);
    }

    // Retrying one group re-drives exactly its items.
    let group = groups
        .iter()
        .find(|g| g["cause"].as_str().unwrap().starts_with("duplicate"))
        .unwrap();
    let key = group["key"].as_str().unwrap();
    let retry = format!("/api/v1/batches/{batch}/failures/{key}/retry");
    let retried = send(&app, request(Method::POST, &retry, Some(ACME_KEY), None)).await;
    assert_eq!(retried.status, 202, "{}", retried.body);
    assert_eq!(
        retried.body,
        json!({"batch_id": batch.to_string(), "requeued": 666})
    );
    let status = get(&app, &format!("/api/v1/batches/{batch}"), Some(ACME_KEY)).await;
    assert_eq!(status.body["counts"]["pending"], 666);
    assert_eq!(status.body["counts"]["failed"], 1334);
    let after = get(
        &app,
        &format!("/api/v1/batches/{batch}/failures"),
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(after.body["groups"].as_array().unwrap().len(), 2);
    // Nothing left in that group: 404; other tenants and bad keys: 404 too.
    send(&app, request(Method::POST, &retry, Some(ACME_KEY), None))
        .await
        .assert_problem(404);
    send(&app, request(Method::POST, &retry, Some(GLOBEX_KEY), None))
        .await
        .assert_problem(404);
    get(
        &app,
        &format!("/api/v1/batches/{batch}/failures"),
        Some(GLOBEX_KEY),
    )
    .await
    .assert_problem(404);
    for bad in [
        "zz",
        "0123456789ABCDEF",
        "%3Cscript%3E",
        "0123456789abcdef0",
    ] {
        let uri = format!("/api/v1/batches/{batch}/failures/{bad}/retry");
        send(&app, request(Method::POST, &uri, Some(ACME_KEY), None))
            .await
            .assert_problem(404);
    }
    send(
        &app,
        request(
            Method::POST,
            "/api/v1/batches/not-a-uuid/failures/0123456789abcdef/retry",
            Some(ACME_KEY),
            None,
        ),
    )
    .await
    .assert_problem(404);
    let none = get(
        &app,
        &format!("/api/v1/batches/{}/failures", BatchId::new()),
        Some(ACME_KEY),
    )
    .await;
    none.assert_problem(404);
}

/// Reads a server-sent event stream until `done` holds for one event's
/// `(name, data)`; returns that event.
async fn read_events(
    response: &mut reqwest::Response,
    mut done: impl FnMut(&str, &Value) -> bool,
) -> (String, Value) {
    let mut buffer = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(20), response.chunk())
            .await
            .expect("an event within 20 s")
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(cut) = buffer.find("\n\n") {
            let block: String = buffer.drain(..cut + 2).collect();
            let mut name = "message".to_owned();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if data.is_empty() {
                continue;
            }
            let value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            if done(&name, &value) {
                return (name, value);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_push_progress_from_the_shared_status() {
    // The server and the worker share only the repository and the queue:
    // the stream sees progress through the database, as from another process.
    let shared = Backends::memory();
    let server_side = Backends {
        cache: Arc::new(onboarding_core::memory::MemoryCache::default()),
        ..shared.clone()
    };
    let service = OnboardingService::new(server_side, IngestConfig::default());
    let app = router(service, config().build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(onboarding_http::serve(
        listener,
        app,
        ServeConfig::default(),
        std::future::pending(),
    ));
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();

    let answer = http
        .post(format!("{base}/api/v1/bulk-onboard"))
        .bearer_auth(ACME_KEY)
        .header("content-type", "application/json")
        .body(orgs(20).to_string())
        .send()
        .await
        .unwrap();
    let accepted: Value = serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
    let batch = accepted["batch_id"].as_str().unwrap().to_owned();

    let mut one = http
        .get(format!("{base}/api/v1/batches/{batch}/events"))
        .bearer_auth(ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
    assert_eq!(one.headers()["content-type"], "text/event-stream");
    let mut all = http
        .get(format!("{base}/api/v1/events"))
        .bearer_auth(ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(all.status(), 200);

    // At once: the batch as it is (nothing processed yet).
    let (_, first) = read_events(&mut one, |name, _| name == "batch").await;
    assert_eq!(first["batch_id"], batch.as_str());
    assert_eq!(first["counts"]["pending"], 20);
    let (_, stats) = read_events(&mut all, |name, _| name == "stats").await;
    assert_eq!(stats["queue_depth"], 20);

    let worker = Worker::new(
        shared,
        Arc::new(onboarding_core::NoopProcessor),
        WorkerConfig::default(),
    )
    .start();
    let (_, last) = read_events(&mut one, |name, data| {
        name == "batch" && data["state"] == "completed"
    })
    .await;
    assert_eq!(last["percent"], 100.0);
    assert_eq!(last["counts"]["completed"], 20);
    let (_, seen) = read_events(&mut all, |name, data| {
        name == "batch" && data["batch_id"] == batch.as_str() && data["state"] == "completed"
    })
    .await;
    assert_eq!(seen["counts"]["completed"], 20);
    worker.shutdown().await;

    // Refusals before any stream starts.
    let unknown = http
        .get(format!("{base}/api/v1/batches/{}/events", BatchId::new()))
        .bearer_auth(ACME_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let foreign = http
        .get(format!("{base}/api/v1/batches/{batch}/events"))
        .bearer_auth(GLOBEX_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 404);
    let anonymous = http
        .get(format!("{base}/api/v1/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    // globex's stream never carries acme's batch.
    let mut theirs = http
        .get(format!("{base}/api/v1/events"))
        .bearer_auth(GLOBEX_KEY)
        .send()
        .await
        .unwrap();
    let (name, data) = read_events(&mut theirs, |name, _| name == "stats").await;
    assert_eq!((name.as_str(), &data["queue_depth"]), ("stats", &json!(0)));
}

#[tokio::test]
async fn revoked_keys_end_their_streams() {
    let keys = Arc::new(onboarding_core::memory::MemoryKeyStore::new());
    let service = memory_service();
    let app = router(service, config().key_store(keys.clone()).build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(onboarding_http::serve(
        listener,
        app,
        ServeConfig::default(),
        std::future::pending(),
    ));
    use onboarding_core::keys::{KeySelector, KeyStore, NewApiKey};
    let tenant = tenant("initech");
    keys.create_tenant(&tenant, onboarding_core::model::now())
        .await
        .unwrap();
    let (key, record) = NewApiKey::generate(tenant, None, onboarding_core::model::now());
    let info = keys.create_key(&record).await.unwrap();
    let mut stream = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/events"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    read_events(&mut stream, |name, _| name == "stats").await;
    keys.revoke_key(
        None,
        &KeySelector::Id(info.id),
        onboarding_core::model::now(),
    )
    .await
    .unwrap();
    let (name, _) = read_events(&mut stream, |name, _| name != "stats" && name != "batch").await;
    assert_eq!(name, "unauthorized");
    let rest = tokio::time::timeout(Duration::from_secs(5), stream.chunk())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, None, "the stream ends");
}

#[tokio::test]
async fn the_dashboard_is_served_with_a_strict_content_security_policy() {
    let (api, _service) = app();
    let both = api.merge(dashboard_router(DashboardConfig::default()));
    let page = get(&both, "/", None).await;
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("default-src 'none'"));
    let html = String::from_utf8(page.raw.clone()).unwrap();
    assert!(html.contains(r#"<script src="/dashboard/app.js" defer></script>"#));
    for (path, kind) in [
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
    ] {
        let asset = get(&both, path, None).await;
        assert_eq!(asset.status, 200);
        assert!(asset.header("content-type").unwrap().starts_with(kind));
        assert!(asset.header("content-security-policy").is_some());
    }
    // The API's routes and problems are unchanged beside it.
    get(&both, "/api/v1/batches", None)
        .await
        .assert_problem(401);
    get(&both, "/nope", None).await.assert_problem(404);
    // Nested under a path, the page links its files and the API below it.
    let nested = axum::Router::new().nest(
        "/ops",
        dashboard_router(DashboardConfig {
            mount_path: "/ops".into(),
            api_base: "/onboarding".into(),
        }),
    );
    let page = get(&nested, "/ops", None).await;
    let html = String::from_utf8(page.raw.clone()).unwrap();
    assert!(html.contains(r#"src="/ops/dashboard/app.js""#), "{html}");
    assert!(html.contains(r#"content="/onboarding""#));
    // Without the dashboard, / is the API's 404.
    let (api_only, _service) = app();
    get(&api_only, "/", None).await.assert_problem(404);
}
