//! Backpressure over HTTP: a full backlog and too many submissions in
//! progress are both answered at once with 503 `overloaded` problem+json
//! and `Retry-After`; nothing is stored; reads are not limited.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request};
use common::*;
use onboarding_core::testing::fixtures::fill_queue;
use onboarding_core::{Backends, ErrorKind, IngestConfig, JobQueue, OnboardingService};
use onboarding_http::{operator_router, router, Metrics};
use tokio::sync::Semaphore;

const SEED: &str = "/api/bulk-onboard";
const V1: &str = "/api/v1/bulk-onboard";
const OVERLOADED: &str = "urn:bulk-onboarding:problem:overloaded";

fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// What the operator router's `/metrics` shows for `metrics`.
async fn metrics_text(metrics: &Metrics) -> String {
    let operator = operator_router(memory_service(), metrics.clone());
    String::from_utf8(get(&operator, "/metrics", None).await.raw).unwrap()
}

async fn fill(queue: &dyn JobQueue, n: usize) {
    fill_queue(queue, &tenant("globex"), n).await;
}

#[tokio::test]
async fn a_full_backlog_is_503_overloaded_with_retry_after_and_stores_nothing() {
    let service = OnboardingService::new(
        Backends::memory(),
        IngestConfig::default()
            .with_max_backlog(Some(10))
            .with_backlog_refresh(Duration::ZERO),
    );
    let metrics = Metrics::new();
    let app = router(service.clone(), config().metrics(metrics.clone()).build());
    fill(&*service.backends().queue, 8).await;
    for uri in [V1, SEED] {
        let a = post_json(&app, uri, ACME_KEY, &orgs(3)).await;
        a.assert_problem(503);
        assert_eq!(a.body["type"], OVERLOADED, "{uri}");
        assert_eq!(a.header("retry-after"), Some("5"), "{uri}");
        let detail = a.body["detail"].as_str().unwrap();
        assert!(
            detail.contains("8 organizations are queued") && detail.contains("limit is 10"),
            "{detail}"
        );
    }
    for i in 0..3 {
        let e = service
            .organization(&tenant("acme"), &format!("org{i}.com"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound, "nothing stored");
    }
    assert_eq!(service.backends().queue.depth().await.unwrap().ready, 8);
    // What fits is accepted: 8 + 2 = 10.
    let fits = post_json(&app, V1, ACME_KEY, &orgs(2)).await;
    assert_eq!(fits.status, 202, "{}", fits.body);
    let text = metrics_text(&metrics).await;
    assert_eq!(
        metric(
            &text,
            "onboarding_submissions_refused_total{reason=\"backlog\"}"
        ),
        Some(2),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "onboarding_submissions_refused_total{reason=\"concurrency\"}"
        ),
        Some(0)
    );
    assert_eq!(metric(&text, "onboarding_submissions_in_progress"), Some(0));
    // The OpenAPI document tells clients about it.
    let doc = get(&app, "/api/v1/openapi.json", None).await.body;
    for path in [V1, SEED] {
        let r503 = &doc["paths"][path]["post"]["responses"]["503"];
        assert!(
            r503["description"]
                .as_str()
                .unwrap()
                .contains("problem:overloaded"),
            "{path}: {r503}"
        );
        assert!(r503["headers"]["Retry-After"].is_object(), "{path}: {r503}");
        assert!(
            doc["paths"][path]["post"]["responses"]["429"]["headers"]["Retry-After"].is_object()
        );
    }
}

/// A POST whose body never ends: answered only if the body is never read.
fn endless_post(uri: &str) -> Request<Body> {
    let stream = futures::stream::pending::<std::result::Result<Vec<u8>, std::io::Error>>();
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header("authorization", format!("Bearer {ACME_KEY}"))
        .header("content-type", "application/json")
        .body(Body::from_stream(stream))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_beyond_the_concurrency_limit_are_shed_at_once() {
    let gate = Arc::new(Semaphore::new(0));
    let repository = gated_repository(&gate);
    let metrics = Metrics::new();
    let app = router(
        service_over(repository.clone()),
        config()
            .metrics(metrics.clone())
            .max_concurrent_submissions(Some(2))
            .retry_after(Duration::from_secs(2))
            .build(),
    );
    // Two slow submissions take both slots.
    let slow: Vec<_> = [(V1, "slow-a"), (SEED, "slow-b")]
        .into_iter()
        .map(|(uri, tag)| {
            let app = app.clone();
            let body = serde_json::json!({"organizations": [org("Slow", &format!("{tag}.com"))]});
            tokio::spawn(async move { post_json(&app, uri, ACME_KEY, &body).await })
        })
        .collect();
    until_entered(&repository, 2).await;
    // A third is shed at once, on either route, without its body being read.
    for uri in [V1, SEED] {
        let started = Instant::now();
        let a = tokio::time::timeout(Duration::from_secs(5), send(&app, endless_post(uri)))
            .await
            .expect("answered at once, not queued behind the slow ones");
        a.assert_problem(503);
        assert_eq!(a.body["type"], OVERLOADED);
        assert_eq!(a.header("retry-after"), Some("2"));
        assert!(
            a.body["detail"]
                .as_str()
                .unwrap()
                .contains("2 submissions are already in progress"),
            "{}",
            a.body
        );
        assert!(started.elapsed() < Duration::from_secs(1), "{uri}");
    }
    assert_eq!(
        repository.calls("store_submission"),
        2,
        "the shed requests never reached the repository"
    );
    // Reads and authentication are not limited.
    assert_eq!(get(&app, "/health", None).await.status, 200);
    let status = get(
        &app,
        "/api/v1/batches/0191e5a4-0000-7000-8000-000000000000",
        Some(ACME_KEY),
    )
    .await;
    assert_eq!(status.status, 404);
    let validated = post_json(&app, "/api/v1/bulk-onboard/validate", ACME_KEY, &orgs(1)).await;
    assert_eq!(validated.status, 200);
    assert_eq!(
        post_json(&app, V1, "wrong-key-0123456789", &orgs(1))
            .await
            .status,
        401
    );
    let text = metrics_text(&metrics).await;
    assert_eq!(
        metric(
            &text,
            "onboarding_submissions_refused_total{reason=\"concurrency\"}"
        ),
        Some(2),
        "{text}"
    );
    assert_eq!(metric(&text, "onboarding_submissions_in_progress"), Some(2));
    // The slow ones finish; their slots are free again.
    gate.add_permits(100);
    for s in slow {
        let a = s.await.unwrap();
        assert_eq!(a.status, 202, "{}", a.body);
    }
    let after = post_json(&app, V1, ACME_KEY, &orgs(1)).await;
    assert_eq!(after.status, 202, "{}", after.body);
    let text = metrics_text(&metrics).await;
    assert_eq!(metric(&text, "onboarding_submissions_in_progress"), Some(0));
}

#[tokio::test]
async fn the_limit_can_be_turned_off() {
    assert_eq!(
        onboarding_http::HttpConfig::default().max_concurrent_submissions,
        Some(32)
    );
    let gate = Arc::new(Semaphore::new(0));
    let repository = gated_repository(&gate);
    let app = router(
        service_over(repository.clone()),
        config().max_concurrent_submissions(None).build(),
    );
    // 40 at once, more than the default 32: all reach the repository.
    let calls: Vec<_> = (0..40)
        .map(|i| {
            let app = app.clone();
            let body = serde_json::json!({"organizations": [org("Org", &format!("many{i}.com"))]});
            tokio::spawn(async move { post_json(&app, V1, ACME_KEY, &body).await })
        })
        .collect();
    until_entered(&repository, 40).await;
    gate.add_permits(100);
    for c in calls {
        assert_eq!(c.await.unwrap().status, 202);
    }
}
