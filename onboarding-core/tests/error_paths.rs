//! Error paths a real backend cannot produce on demand, forced with mockall.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use mockall::mock;
use onboarding_core::memory::{MemoryCache, MemoryQueue, MemoryRepository, RecordingEventSink};
use onboarding_core::model::{
    BatchId, BatchStatus, Domain, ItemId, Organization, TenantId, Timestamp,
};
use onboarding_core::queue::{Delivery, Job, JobQueue, QueueDepth, Receipt};
use onboarding_core::repository::{
    ClaimRequest, ClaimedItem, Finish, ItemPage, ItemQuery, Lease, OrgRepository, StoreResult,
    Submission,
};
use onboarding_core::validate::{OrganizationInput, SubmitRequest};
use onboarding_core::{
    Backends, Error, ErrorKind, IngestConfig, NoopProcessor, OnboardingService, Result,
    SubmitOptions, Worker, WorkerConfig,
};

mock! {
    Repo {}
    #[async_trait]
    impl OrgRepository for Repo {
        async fn store_submission(&self, submission: &Submission) -> Result<StoreResult>;
        async fn claim_items(&self, request: &ClaimRequest) -> Result<Vec<ClaimedItem>>;
        async fn extend_leases(&self, leases: &[Lease], now: Timestamp, lease_until: Timestamp) -> Result<Vec<ItemId>>;
        async fn finish_items(&self, finishes: &[Finish], now: Timestamp, stale_after: Duration) -> Result<Vec<ItemId>>;
        async fn release_items(&self, leases: &[Lease], now: Timestamp) -> Result<Vec<Job>>;
        async fn sweep(&self, now: Timestamp, stale_after: Duration, limit: u32) -> Result<Vec<Job>>;
        async fn complete_batches(&self, batches: &[BatchId], now: Timestamp) -> Result<Vec<BatchStatus>>;
        async fn complete_open_batches(&self, now: Timestamp, limit: u32) -> Result<Vec<BatchStatus>>;
        async fn unannounced_batches(&self, completed_before: Timestamp, limit: u32) -> Result<Vec<BatchStatus>>;
        async fn mark_announced(&self, batches: &[BatchId], now: Timestamp) -> Result<()>;
        async fn cancel_batch(&self, tenant: &TenantId, batch: BatchId, now: Timestamp) -> Result<Option<BatchStatus>>;
        async fn retry_failed(&self, tenant: &TenantId, batch: BatchId, now: Timestamp) -> Result<Option<Vec<Job>>>;
        async fn batch_status(&self, tenant: &TenantId, batch: BatchId) -> Result<Option<BatchStatus>>;
        async fn list_items(&self, tenant: &TenantId, batch: BatchId, query: &ItemQuery) -> Result<Option<ItemPage>>;
        async fn organization_by_domain(&self, domain: &Domain) -> Result<Option<Organization>>;
        async fn prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64>;
        async fn ping(&self) -> Result<()>;
    }
}

mock! {
    Queue {}
    #[async_trait]
    impl JobQueue for Queue {
        async fn enqueue(&self, jobs: &[Job]) -> Result<()>;
        async fn dequeue(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>>;
        async fn ack(&self, receipts: &[Receipt]) -> Result<()>;
        async fn depth(&self) -> Result<QueueDepth>;
        async fn ping(&self) -> Result<()>;
    }
}

fn request(n: usize, tag: &str) -> SubmitRequest {
    SubmitRequest {
        organizations: (0..n)
            .map(|i| OrganizationInput {
                name: format!("Org {i}"),
                domain: format!("org{i}-{tag}.example.com"),
                contact_email: format!("ops{i}@example.com"),
            })
            .collect(),
        on_conflict: Default::default(),
        mode: Default::default(),
    }
}

fn down() -> Error {
    Error::unavailable(
        "backend down",
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused"),
    )
}

#[tokio::test]
async fn repository_down_during_ingest_is_unavailable_and_enqueues_nothing() {
    let mut repo = MockRepo::new();
    repo.expect_store_submission()
        .times(1)
        .returning(|_| Err(down()));
    let queue = Arc::new(MemoryQueue::default());
    let backends = Backends::new(
        Arc::new(repo),
        queue.clone(),
        Arc::new(MemoryCache::default()),
        Arc::new(RecordingEventSink::new()),
    );
    let service = OnboardingService::new(backends, IngestConfig::default());
    let tenant = TenantId::parse("acme").unwrap();
    let err = service
        .submit(&tenant, &request(10, "down"), SubmitOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_retryable(), "a client may retry (503 + Retry-After)");
    assert_eq!(
        queue.depth().await.unwrap(),
        QueueDepth::default(),
        "nothing enqueued"
    );
}

#[tokio::test]
async fn queue_down_after_commit_is_accepted_and_the_sweeper_delivers() {
    let repo = Arc::new(MemoryRepository::new());
    let mut broken = MockQueue::new();
    broken.expect_enqueue().returning(|_| Err(down()));
    // A queue that is down cannot tell its depth either: the backlog check
    // (on by default) lets the submission through.
    broken.expect_depth().times(1).returning(|| Err(down()));
    let events = RecordingEventSink::new();
    let cache = Arc::new(MemoryCache::default());
    let service = OnboardingService::new(
        Backends::new(
            repo.clone(),
            Arc::new(broken),
            cache.clone(),
            Arc::new(events.clone()),
        ),
        IngestConfig::default().with_stale_after(Duration::from_millis(200)),
    );
    let tenant = TenantId::parse("acme").unwrap();
    let accepted = service
        .submit(&tenant, &request(25, "qdown"), SubmitOptions::default())
        .await
        .expect("the commit stands although the enqueue failed");
    assert_eq!(accepted.organizations_count, 25);
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
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let s = repo
            .batch_status(&tenant, accepted.batch_id)
            .await
            .unwrap()
            .unwrap();
        if s.counts.completed == 25 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sweeper did not deliver: {:?}",
            s.counts
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = worker.shutdown().await;
    assert!(report.stats.swept >= 25, "{:?}", report.stats);
    assert_eq!(report.stats.completed, 25);
}
