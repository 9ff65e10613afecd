//! The operator router: readiness per backend, Prometheus metrics from the
//! `metrics` recorder (HTTP, ingest and, once installed globally, the
//! worker engine's), and a queue depth read at most every few seconds.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::*;
use onboarding_core::memory::MemoryQueue;
use onboarding_core::testing::doubles::Double;
use onboarding_core::testing::eventually;
use onboarding_core::{
    Backends, IngestConfig, OnboardingService, ProcessError, Processor, RetryPolicy, WorkItem,
    Worker, WorkerConfig,
};
use onboarding_http::{operator_router, router, Metrics};
use serde_json::json;

const V1: &str = "/api/v1/bulk-onboard";

fn has_line(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

fn value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test]
async fn ready_reports_each_backend() {
    let up = operator_router(memory_service(), Metrics::new());
    let r = get(&up, "/ready", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ready");
    for c in ["database", "queue", "cache"] {
        assert_eq!(r.body["checks"][c]["status"], "up", "{c}");
    }
    assert_eq!(
        get(&up, "/health", None).await.body,
        json!({"status": "ok"})
    );

    let down = operator_router(service_over(down_repository()), Metrics::new());
    let r = get(&down, "/ready", None).await;
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.body["status"], "unavailable");
    assert_eq!(r.body["checks"]["database"]["status"], "down");
    assert_eq!(r.body["checks"]["database"]["error"], "unavailable");
    assert_eq!(r.body["checks"]["queue"]["status"], "up");
    // Liveness does not depend on backends.
    assert_eq!(get(&down, "/health", None).await.status, 200);
    get(&down, "/nope", None).await.assert_problem(404);
}

#[tokio::test]
async fn metrics_show_requests_and_ingest_and_read_the_depth_once_per_interval() {
    // A memory queue that counts its calls.
    let queue = Arc::new(Double::new(Arc::new(MemoryQueue::default())));
    let backends = Backends {
        queue: queue.clone(),
        ..Backends::memory()
    };
    // No backlog limit: only the scrapes read the depth.
    let service = OnboardingService::new(backends, IngestConfig::default().with_max_backlog(None));
    let metrics = Metrics::new();
    let app = router(service.clone(), config().metrics(metrics.clone()).build());
    let operator = operator_router(service, metrics);
    assert_eq!(post_json(&app, V1, ACME_KEY, &orgs(4)).await.status, 202);
    get(&app, "/nope", None).await;

    let first = get(&operator, "/metrics", None).await;
    assert_eq!(first.status, 200);
    assert!(first
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(first.raw).unwrap();
    for line in [
        "onboarding_http_requests_total{route=\"/api/v1/bulk-onboard\",method=\"POST\",status=\"202\"} 1",
        "onboarding_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 1",
        "onboarding_organizations_ingested_total 4",
        "onboarding_batches_accepted_total 1",
        "onboarding_submission_duration_seconds_count{outcome=\"accepted\"} 1",
        "onboarding_queue_depth{state=\"ready\"} 4",
        "onboarding_queue_up 1",
        "onboarding_submissions_in_progress 0",
        "# TYPE onboarding_http_request_duration_seconds histogram",
    ] {
        assert!(has_line(&text, line), "missing {line:?} in\n{text}");
    }
    // Ten scrapes in a row: one depth read.
    for _ in 0..10 {
        assert_eq!(get(&operator, "/metrics", None).await.status, 200);
    }
    assert_eq!(queue.calls("depth"), 1);
}

/// Completes `ok*` domains, fails `flaky*` once then completes them, and
/// fails `bad*` domains permanently.
struct Scripted;

#[async_trait]
impl Processor for Scripted {
    async fn process(&self, item: &WorkItem) -> std::result::Result<(), ProcessError> {
        let domain = item.organization.domain.as_str();
        if domain.starts_with("bad") {
            Err(ProcessError::Permanent("refused".into()))
        } else if domain.starts_with("flaky") && item.attempt == 1 {
            Err(ProcessError::Retryable("try again".into()))
        } else {
            Ok(())
        }
    }
}

/// The only test of this binary that installs the global recorder (one per
/// process) and runs a worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_counters_and_histograms_reach_the_installed_recorder() {
    let metrics = Metrics::new();
    metrics.install().unwrap();
    assert!(Metrics::new().install().is_err(), "one global recorder");
    let backends = Backends::memory();
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    let worker = Worker::new(
        backends,
        Arc::new(Scripted),
        WorkerConfig::default()
            .with_poll_wait(Duration::from_millis(20))
            .with_retry(RetryPolicy::default().with_base_delay(Duration::from_millis(10))),
    )
    .start();
    let app = router(service.clone(), config().build());
    let operator = operator_router(service, metrics);
    let body = json!({"organizations": [
        org("Ok 1", "ok1.com"), org("Ok 2", "ok2.com"),
        org("Flaky", "flaky.com"), org("Bad", "bad.com"),
    ]});
    assert_eq!(post_json(&app, V1, ACME_KEY, &body).await.status, 202);

    let text = eventually("the worker to finish", Duration::from_secs(20), || async {
        let text = String::from_utf8(get(&operator, "/metrics", None).await.raw).unwrap();
        let finished = value(&text, "onboarding_worker_completed_total").unwrap_or(0.0)
            + value(&text, "onboarding_worker_failed_total").unwrap_or(0.0);
        if finished >= 4.0 {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    worker.shutdown().await;
    for line in [
        "onboarding_worker_claimed_total 5",
        "onboarding_worker_completed_total 3",
        "onboarding_worker_retried_total 1",
        "onboarding_worker_failed_total 1",
        "onboarding_worker_fenced_off_total 0",
        "onboarding_worker_leases_lost_total 0",
        "onboarding_worker_processing_seconds_count{outcome=\"completed\"} 3",
        "onboarding_worker_processing_seconds_count{outcome=\"retryable\"} 1",
        "onboarding_worker_processing_seconds_count{outcome=\"permanent\"} 1",
        "onboarding_worker_queue_wait_seconds_count 5",
        "# TYPE onboarding_worker_queue_wait_seconds histogram",
        "# HELP onboarding_worker_fenced_off_total Results refused because another worker took the item over (the lease token fence).",
    ] {
        assert!(has_line(&text, line), "missing {line:?} in\n{text}");
    }
}
