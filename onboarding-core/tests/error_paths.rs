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
    Accepted, Backends, ErrorKind, IngestConfig, NoopProcessor, OnboardingService, SubmitOptions,
    Worker, WorkerConfig, WorkerHandle,
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

/// A file import answers once its batch is stored and enqueues the items
/// in the background: with the queue down, the enqueue fails after the
/// answer, and the sweeper still delivers every row.
#[tokio::test]
async fn queue_down_after_an_import_is_accepted_and_the_sweeper_delivers() {
    use onboarding_core::import::{ImportFormat, ImportOptions};
    let repo = Arc::new(MemoryRepository::new());
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
    let mut file = String::from("name,domain,contact_email\n");
    for i in 0..30 {
        file.push_str(&format!(
            "Org {i},org{i}-imp.example.com,ops@org{i}-imp.example.com\n"
        ));
    }
    let body = futures::stream::iter([Ok::<_, onboarding_core::Error>(file.into_bytes())]);
    let receipt = service
        .import(&tenant, ImportOptions::new(ImportFormat::Csv), body)
        .await
        .expect("the upload stands although the queue is down");
    assert_eq!(receipt.organizations_count, 30);
    // The background enqueue ran and failed.
    onboarding_core::testing::eventually(
        "the background enqueue to be tried",
        Duration::from_secs(10),
        || async { (broken.calls("enqueue") >= 1).then_some(()) },
    )
    .await;

    // The queue comes back empty: only the sweeper knows the work.
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
        receipt.batch_id,
        "the sweeper to deliver the import",
        Duration::from_secs(20),
        |s| s.counts.completed == 30,
    )
    .await;
    let report = worker.shutdown().await;
    assert!(report.stats.swept >= 30, "{:?}", report.stats);
    assert_eq!(report.stats.completed, 30);
}

/// A claim that fails once is tried again at once: its deliveries, not
/// acked, would otherwise stay invisible for the queue's whole visibility
/// timeout (issue 17: one drain took 31.5 s instead of ~5 s, about the 30 s
/// visibility timeout).
#[tokio::test]
async fn a_failed_claim_is_tried_again_before_the_visibility_timeout() {
    let repo = Arc::new(
        Double::new(Arc::new(MemoryRepository::new())).with_hook(|call| {
            if call.method == "claim_items" && call.number == 1 {
                Action::Fail(unavailable())
            } else {
                Action::Forward
            }
        }),
    );
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    // No sweeper: only the worker's own retry can deliver before 30 s.
    let (tenant, accepted, worker) = submit_then_work(
        repo.clone(),
        queue,
        IngestConfig::default(),
        ("claimfail", 10),
        WorkerConfig::default().with_sweeper(false),
    )
    .await;
    until_batch(
        &*repo,
        &tenant,
        accepted.batch_id,
        "every item completed well before the visibility timeout",
        Duration::from_secs(10),
        |s| s.counts.completed == 10,
    )
    .await;
    let report = worker.shutdown().await;
    assert!(repo.calls("claim_items") >= 2);
    assert_eq!(report.stats.backend_errors, 1, "{:?}", report.stats);
    assert_eq!(report.stats.completed, 10);
}

/// The sweeper leaves alone a pending item whose message is waiting in a
/// queue that is not being drained (36,465 useless wake-ups in a 1,000,000
/// SQL-queue drain before), and re-enqueues it as soon as the queue's depth
/// says its message is gone.
#[tokio::test]
async fn the_sweeper_waits_for_a_long_queue_and_not_for_a_lost_one() {
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let queue = Arc::new(Double::new(Arc::new(MemoryQueue::default())).with_hook({
        let gate = gate.clone();
        move |call| match call.method {
            // The fetch loops wait at the gate: nothing drains the queue.
            "dequeue" => Action::Gate(gate.clone()),
            _ => Action::Forward,
        }
    }));
    let repo = Arc::new(MemoryRepository::new());
    let stale_after = Duration::from_millis(100);
    let (tenant, accepted, worker) = submit_then_work(
        repo.clone(),
        queue.clone(),
        IngestConfig::default().with_stale_after(stale_after),
        ("waiting", 50),
        WorkerConfig::default().with_sweep(Duration::from_millis(20), stale_after),
    )
    .await;
    // Many sweeps, each long after the items' sweep_at.
    onboarding_core::testing::eventually("20 sweeps", Duration::from_secs(20), || async {
        (queue.calls("depth") >= 20).then_some(())
    })
    .await;
    assert_eq!(
        worker.stats().swept,
        0,
        "every message is still in the queue: nothing is re-enqueued"
    );
    // The queue loses its contents: the next sweep re-enqueues every item.
    let inner = queue.inner();
    let lost = inner.dequeue(100, Duration::ZERO).await.unwrap();
    assert_eq!(lost.len(), 50);
    inner
        .ack(&lost.into_iter().map(|d| d.receipt).collect::<Vec<_>>())
        .await
        .unwrap();
    onboarding_core::testing::eventually(
        "the sweeper to re-enqueue",
        Duration::from_secs(20),
        || async { (worker.stats().swept >= 50).then_some(()) },
    )
    .await;
    gate.close();
    until_batch(
        &*repo,
        &tenant,
        accepted.batch_id,
        "every item completed",
        Duration::from_secs(20),
        |s| s.counts.completed == 50,
    )
    .await;
    let stats = worker.shutdown().await.stats;
    assert_eq!(
        stats.swept, 50,
        "each lost item re-enqueued once: {stats:?}"
    );
}

/// Submits `n` organizations (domains tagged `tag`) on memory backends
/// around `repo` and `queue`, then starts a no-op worker.
async fn submit_then_work(
    repo: Arc<dyn OrgRepository>,
    queue: Arc<dyn JobQueue>,
    ingest: IngestConfig,
    (tag, n): (&str, usize),
    config: WorkerConfig,
) -> (TenantId, Accepted, WorkerHandle) {
    let backends = Backends::new(
        repo,
        queue,
        Arc::new(MemoryCache::default()),
        Arc::new(RecordingEventSink::new()),
    );
    let service = OnboardingService::new(backends.clone(), ingest);
    let tenant = TenantId::parse("acme").unwrap();
    let accepted = service
        .submit(&tenant, &request(tag, 0..n), SubmitOptions::default())
        .await
        .unwrap();
    let worker = Worker::new(backends, Arc::new(NoopProcessor), config).start();
    (tenant, accepted, worker)
}
