//! Error paths a real backend cannot produce on demand, forced with test
//! doubles: the repository down during ingest, the queue down after commit.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use onboarding_core::memory::{MemoryCache, MemoryQueue, MemoryRepository, RecordingEventSink};
use onboarding_core::model::TenantId;
use onboarding_core::repository::OrgRepository;
use onboarding_core::testing::doubles::{unavailable, Action, Double};
use onboarding_core::testing::fixtures::until_batch;
use onboarding_core::testing::requests::request;
use onboarding_core::{
    Backends, ErrorKind, IngestConfig, NoopProcessor, OnboardingService, SubmitOptions, Worker,
    WorkerConfig,
};
use onboarding_core::{JobQueue, QueueDepth};

#[tokio::test]
async fn repository_down_during_ingest_is_unavailable_and_enqueues_nothing() {
    let repo = Arc::new(Double::down(Arc::new(MemoryRepository::new())));
    let queue = Arc::new(MemoryQueue::default());
    let backends = Backends::new(
        repo.clone(),
        queue.clone(),
        Arc::new(MemoryCache::default()),
        Arc::new(RecordingEventSink::new()),
    );
    let service = OnboardingService::new(backends, IngestConfig::default());
    let tenant = TenantId::parse("acme").unwrap();
    let err = service
        .submit(&tenant, &request("down", 0..10), SubmitOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable(), "a client may retry (503 + Retry-After)");
    assert_eq!(repo.calls("store_submission"), 1, "tried once");
    assert_eq!(
        queue.depth().await.unwrap(),
        QueueDepth::default(),
        "nothing enqueued"
    );
}

#[tokio::test]
async fn queue_down_after_commit_is_accepted_and_the_sweeper_delivers() {
    let repo = Arc::new(MemoryRepository::new());
    // A queue that is down cannot tell its depth either: the backlog check
    // (on by default) lets the submission through.
    let broken = Arc::new(
        Double::new(Arc::new(MemoryQueue::default())).with_hook(|call| match call.method {
            "enqueue" | "depth" => Action::Fail(unavailable()),
            _ => Action::Forward,
        }),
    );
    let events = RecordingEventSink::new();
    let cache = Arc::new(MemoryCache::default());
    let service = OnboardingService::new(
        Backends::new(
            repo.clone(),
            broken.clone(),
            cache.clone(),
            Arc::new(events.clone()),
        ),
        IngestConfig::default().with_stale_after(Duration::from_millis(200)),
    );
    let tenant = TenantId::parse("acme").unwrap();
    let accepted = service
        .submit(&tenant, &request("qdown", 0..25), SubmitOptions::default())
        .await
        .expect("the commit stands although the enqueue failed");
    assert_eq!(accepted.organizations_count, 25);
    assert_eq!((broken.calls("depth"), broken.calls("enqueue")), (1, 1));
    let status = repo
        .batch_status(&tenant, accepted.batch_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.counts.pending, 25);

    // The queue comes back (a fresh, empty one): only the sweeper knows the work.
    let healthy = Backends::new(
        repo.clone(),
        Arc::new(MemoryQueue::default()),
        cache,
        Arc::new(events),
    );
    let worker = Worker::new(
        healthy,
        Arc::new(NoopProcessor),
        WorkerConfig::default().with_sweep(Duration::from_millis(50), Duration::from_millis(200)),
    )
    .start();
    until_batch(
        &*repo,
        &tenant,
        accepted.batch_id,
        "the sweeper to deliver",
        Duration::from_secs(20),
        |s| s.counts.completed == 25,
    )
    .await;
    let report = worker.shutdown().await;
    assert!(report.stats.swept >= 25, "{:?}", report.stats);
    assert_eq!(report.stats.completed, 25);
}
