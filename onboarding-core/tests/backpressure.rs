//! Backpressure at ingest (`IngestConfig::max_backlog`): a submission that
//! would take the queue's backlog past the limit is refused with
//! `Overloaded` before anything is stored; the depth is read once per
//! refresh interval by one caller at a time; an unreadable depth refuses
//! nothing.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use onboarding_core::memory::{MemoryCache, MemoryQueue, MemoryRepository, RecordingEventSink};
use onboarding_core::model::{after, now, ItemId, TenantId};
use onboarding_core::queue::{Delivery, Job, JobQueue, QueueDepth, Receipt};
use onboarding_core::validate::{OrganizationInput, SubmitRequest};
use onboarding_core::{
    Backends, Error, ErrorKind, IngestConfig, OnboardingService, Result, SubmitOptions,
};
use tokio::sync::Semaphore;

/// A memory queue whose `depth` can fail, or wait at a gate, and is counted.
#[derive(Default)]
struct TestQueue {
    inner: MemoryQueue,
    depth_calls: AtomicUsize,
    fail_depth: AtomicBool,
    gate: Mutex<Option<Arc<Semaphore>>>,
}

impl TestQueue {
    fn depth_calls(&self) -> usize {
        self.depth_calls.load(Ordering::SeqCst)
    }

    /// From now on each `depth` call waits for a permit of the returned gate.
    fn close_gate(&self) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *self.gate.lock().unwrap() = Some(gate.clone());
        gate
    }

    fn open_gate(&self) {
        *self.gate.lock().unwrap() = None;
    }
}

#[async_trait]
impl JobQueue for TestQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        self.inner.enqueue(jobs).await
    }
    async fn dequeue(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.inner.dequeue(max, wait).await
    }
    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        self.inner.ack(receipts).await
    }
    async fn depth(&self) -> Result<QueueDepth> {
        self.depth_calls.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.unwrap().forget();
        }
        if self.fail_depth.load(Ordering::SeqCst) {
            return Err(Error::unavailable(
                "queue down",
                std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
            ));
        }
        self.inner.depth().await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

struct Fixture {
    service: OnboardingService,
    queue: Arc<TestQueue>,
    events: RecordingEventSink,
    tenant: TenantId,
}

fn fixture(config: IngestConfig) -> Fixture {
    let queue = Arc::new(TestQueue::default());
    let events = RecordingEventSink::new();
    let backends = Backends::new(
        Arc::new(MemoryRepository::new()),
        queue.clone(),
        Arc::new(MemoryCache::default()),
        Arc::new(events.clone()),
    );
    Fixture {
        service: OnboardingService::new(backends, config),
        queue,
        events,
        tenant: TenantId::parse("acme").unwrap(),
    }
}

fn limit(max: u64) -> IngestConfig {
    IngestConfig::default()
        .with_max_backlog(Some(max))
        .with_backlog_refresh(Duration::ZERO)
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

/// `n` waiting jobs for items nobody stored (backlog from elsewhere).
async fn fill(queue: &TestQueue, n: usize) {
    let tenant = TenantId::parse("other").unwrap();
    let jobs: Vec<Job> = (0..n)
        .map(|_| Job {
            item_id: ItemId::new(),
            tenant: tenant.clone(),
            not_before: None,
        })
        .collect();
    queue.enqueue(&jobs).await.unwrap();
}

async fn waiting(queue: &TestQueue) -> u64 {
    let d = queue.inner.depth().await.unwrap();
    d.ready + d.delayed
}

#[tokio::test]
async fn default_limit_is_on_and_can_be_turned_off() {
    let config = IngestConfig::default();
    assert_eq!(config.max_backlog, Some(1_000_000));
    assert_eq!(config.backlog_refresh, Duration::from_millis(500));
    assert_eq!(config.with_max_backlog(None).max_backlog, None);
    // Off: a long backlog is no reason to refuse, and the depth is not read.
    let f = fixture(IngestConfig::default().with_max_backlog(None));
    fill(&f.queue, 50).await;
    f.service
        .submit(&f.tenant, &request(5, "off"), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(f.queue.depth_calls(), 0);
}

#[tokio::test]
async fn over_the_limit_is_overloaded_and_stores_nothing() {
    let f = fixture(limit(10));
    fill(&f.queue, 8).await;
    let options = SubmitOptions::default().with_idempotency_key("retry-me");
    let err = f
        .service
        .submit(&f.tenant, &request(3, "over"), options.clone())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded);
    assert!(err.is_retryable(), "the client may try again later");
    assert!(
        err.message().contains("8 organizations are queued")
            && err.message().contains("limit is 10"),
        "{}",
        err.message()
    );
    // Nothing stored, enqueued or published.
    for i in 0..3 {
        let e = f
            .service
            .organization(&format!("org{i}-over.example.com"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }
    assert_eq!(waiting(&f.queue).await, 8, "nothing enqueued");
    assert!(f.events.events().is_empty(), "nothing published");
    // The workers drain the backlog; the same request with the same key is
    // now a new batch, not a replay: the refused call left no batch behind.
    let taken = f.queue.dequeue(100, Duration::ZERO).await.unwrap();
    let receipts: Vec<Receipt> = taken.into_iter().map(|d| d.receipt).collect();
    f.queue.ack(&receipts).await.unwrap();
    let accepted = f
        .service
        .submit(&f.tenant, &request(3, "over"), options)
        .await
        .unwrap();
    assert!(!accepted.replayed);
    assert_eq!(accepted.queued, 3);
    assert_eq!(waiting(&f.queue).await, 3);
}

#[tokio::test]
async fn up_to_the_limit_is_accepted_and_one_more_is_refused() {
    let f = fixture(limit(10));
    fill(&f.queue, 7).await;
    let a = f
        .service
        .submit(&f.tenant, &request(3, "fits"), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(a.queued, 3);
    assert_eq!(waiting(&f.queue).await, 10, "7 + 3 = the limit: accepted");
    let err = f
        .service
        .submit(&f.tenant, &request(1, "one-more"), SubmitOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded);
    // Delayed jobs (retry wake-ups) are waiting work too.
    let g = fixture(limit(10));
    let later = after(now(), Duration::from_secs(3600));
    let jobs: Vec<Job> = (0..9)
        .map(|_| Job {
            item_id: ItemId::new(),
            tenant: g.tenant.clone(),
            not_before: Some(later),
        })
        .collect();
    g.queue.enqueue(&jobs).await.unwrap();
    let err = g
        .service
        .submit(&g.tenant, &request(2, "delayed"), SubmitOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded);
}

#[tokio::test]
async fn what_was_accepted_since_the_reading_counts_against_the_limit() {
    // One reading for the whole test: the queue is read once, at 0.
    let f = fixture(
        IngestConfig::default()
            .with_max_backlog(Some(10))
            .with_backlog_refresh(Duration::from_secs(3600)),
    );
    for tag in ["a", "b"] {
        f.service
            .submit(&f.tenant, &request(4, tag), SubmitOptions::default())
            .await
            .unwrap();
    }
    // 0 in the reading + 8 accepted since + 4 > 10.
    let err = f
        .service
        .submit(&f.tenant, &request(4, "c"), SubmitOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded);
    assert!(
        err.message().contains("8 organizations are queued"),
        "{}",
        err.message()
    );
    // A refusal reserves nothing: 8 + 2 = 10 still fits.
    f.service
        .submit(&f.tenant, &request(2, "d"), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(f.queue.depth_calls(), 1);
    assert_eq!(waiting(&f.queue).await, 10);
}

#[tokio::test]
async fn an_empty_queue_accepts_a_request_larger_than_the_limit() {
    let f = fixture(limit(2));
    let a = f
        .service
        .submit(&f.tenant, &request(5, "big"), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(a.queued, 5);
}

#[tokio::test]
async fn an_unreadable_depth_refuses_nothing() {
    let f = fixture(limit(1));
    fill(&f.queue, 100).await;
    f.queue.fail_depth.store(true, Ordering::SeqCst);
    let a = f
        .service
        .submit(&f.tenant, &request(2, "blind"), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(a.queued, 2);
    assert_eq!(waiting(&f.queue).await, 102, "stored and enqueued");
    assert_eq!(f.queue.depth_calls(), 1, "the depth was asked for");
}

#[tokio::test(start_paused = true)]
async fn a_depth_that_never_answers_refuses_nothing() {
    let f = fixture(limit(1));
    fill(&f.queue, 100).await;
    let _gate = f.queue.close_gate(); // no permit ever: depth hangs
    let a = f
        .service
        .submit(&f.tenant, &request(2, "hang"), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(a.queued, 2);
    assert_eq!(f.queue.depth_calls(), 1);
}

#[tokio::test]
async fn one_reading_serves_every_submission_within_the_refresh_interval() {
    let f = fixture(
        IngestConfig::default()
            .with_max_backlog(Some(1_000))
            .with_backlog_refresh(Duration::from_secs(3600)),
    );
    // Cold start: the first reading is slow, and 16 submissions arrive together.
    let gate = f.queue.close_gate();
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let (service, tenant) = (f.service.clone(), f.tenant.clone());
            tokio::spawn(async move {
                service
                    .submit(
                        &tenant,
                        &request(2, &format!("burst{i}")),
                        SubmitOptions::default(),
                    )
                    .await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.queue.depth_calls() == 0 {
        assert!(Instant::now() < deadline, "nobody read the depth");
        tokio::task::yield_now().await;
    }
    f.queue.open_gate();
    gate.add_permits(100);
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(f.queue.depth_calls(), 1, "one reading for the whole burst");
    assert_eq!(waiting(&f.queue).await, 32);
}

#[tokio::test]
async fn while_one_caller_reads_the_depth_the_others_use_the_last_reading() {
    let f = fixture(limit(1_000));
    // A first, quick reading (0 waiting).
    f.service
        .submit(&f.tenant, &request(1, "first"), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(f.queue.depth_calls(), 1);
    // The next reading hangs until the gate opens.
    let gate = f.queue.close_gate();
    let reader = {
        let (service, tenant) = (f.service.clone(), f.tenant.clone());
        tokio::spawn(async move {
            service
                .submit(&tenant, &request(1, "reader"), SubmitOptions::default())
                .await
        })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.queue.depth_calls() < 2 {
        assert!(
            Instant::now() < deadline,
            "the second reading did not start"
        );
        tokio::task::yield_now().await;
    }
    // Others do not wait for it and do not read the queue themselves.
    for i in 0..5 {
        tokio::time::timeout(
            Duration::from_secs(5),
            f.service.submit(
                &f.tenant,
                &request(1, &format!("meanwhile{i}")),
                SubmitOptions::default(),
            ),
        )
        .await
        .expect("not blocked by the reading in flight")
        .unwrap();
    }
    assert_eq!(f.queue.depth_calls(), 2);
    assert!(!reader.is_finished(), "the reader is still at the gate");
    gate.add_permits(1);
    reader.await.unwrap().unwrap();
}
