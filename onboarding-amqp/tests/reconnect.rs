//! Recovery without a restart after the broker closes every connection.
//!
//! These tests run `rabbitmqctl close_all_connections`, which closes every
//! connection of the broker: they live in their own test binary (cargo runs
//! binaries one after another) and take turns through `BROKER`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use onboarding_amqp::testing;
use onboarding_core::memory::{MemoryCache, MemoryRepository, TracingEventSink};
use onboarding_core::model::{BatchId, ConflictPolicy, Domain, NewOrganization, SubmitMode};
use onboarding_core::repository::{StoreResult, Submission};
use onboarding_core::testing::eventually;
use onboarding_core::{
    Backends, Job, JobQueue, ProcessError, Processor, WorkItem, Worker, WorkerConfig,
};

use onboarding_core::repository::OrgRepository;

/// A ready job of `tenant`.
fn job(tenant: &str) -> onboarding_core::Job {
    onboarding_core::testing::fixtures::job(
        &onboarding_core::model::TenantId::parse(tenant).expect("valid tenant"),
    )
}

static BROKER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn close_all_connections() {
    testing::rabbitmqctl(&["close_all_connections", "test"]);
}

/// Takes a few milliseconds per item, so a batch is mid-run for a while.
struct Slow;

#[async_trait]
impl Processor for Slow {
    async fn process(&self, _item: &WorkItem) -> Result<(), ProcessError> {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_finishes_its_batch_across_broker_closed_connections() {
    let _turn = BROKER.lock().await;
    let queue = Arc::new(testing::queue(Duration::from_secs(2)).await);
    let repository = Arc::new(MemoryRepository::new());
    let backends = Backends::new(
        repository.clone(),
        queue.clone(),
        Arc::new(MemoryCache::default()),
        Arc::new(TracingEventSink),
    );

    let tenant = onboarding_core::model::TenantId::parse("reconnect").expect("tenant");
    let batch_id = BatchId::new();
    let wall = onboarding_core::model::now();
    let total = 300;
    let submission = Submission {
        batch_id,
        tenant: tenant.clone(),
        idempotency_key: None,
        request_hash: "reconnect-test".into(),
        policy: ConflictPolicy::Update,
        mode: SubmitMode::Atomic,
        organizations: (0..total)
            .map(|n| {
                (
                    n,
                    NewOrganization {
                        name: format!("Org {n}"),
                        domain: Domain::from_normalized(format!("org{n}-{batch_id}.example.com")),
                        contact_email: format!("ops{n}@example.com"),
                    },
                )
            })
            .collect(),
        chunk_size: 100,
        reprocess_unchanged: false,
        now: wall,
        // The sweeper is off anyway: only the queue brings messages back.
        sweep_at: wall + chrono::Duration::hours(1),
        trace_parent: None,
    };
    let StoreResult::Stored { items, .. } = repository
        .store_submission(&submission)
        .await
        .expect("stored")
    else {
        panic!("a fresh batch is stored");
    };
    let jobs: Vec<Job> = items
        .iter()
        .map(|item| Job {
            item_id: item.item_id,
            tenant: tenant.clone(),
            not_before: None,
        })
        .collect();
    queue.enqueue(&jobs).await.expect("enqueue");

    let config = WorkerConfig::default()
        .with_concurrency(8)
        .with_sweeper(false)
        .with_poll_wait(Duration::from_millis(200));
    let worker = Worker::new(backends, Arc::new(Slow), config).start();

    // Close every connection twice while the batch runs.
    for round in 1..=2 {
        let target = total as u64 * round / 3;
        eventually(
            "progress before the next close",
            Duration::from_secs(30),
            || async { (worker.stats().completed >= target).then_some(()) },
        )
        .await;
        close_all_connections();
    }

    let status = eventually(
        "the batch to finish after reconnects",
        Duration::from_secs(60),
        || async {
            let status = repository
                .batch_status(&tenant, batch_id)
                .await
                .expect("status")
                .expect("batch exists");
            if status.is_finished() {
                Ok(status)
            } else {
                Err((status.counts, worker.stats()))
            }
        },
    )
    .await;
    // The worker keeps polling: the second close is noticed even if the
    // last items needed no queue call after it.
    eventually("the second reconnect", Duration::from_secs(10), || async {
        (queue.reconnects() >= 2).then_some(())
    })
    .await;
    let stats = worker.stats();
    let report = worker.shutdown().await;
    assert_eq!(status.counts.completed, total, "{:?}", status.counts);
    assert_eq!(status.counts.failed, 0);
    assert!(
        queue.reconnects() >= 2,
        "two closes, {} reconnects",
        queue.reconnects()
    );
    eprintln!(
        "worker across two broker closes: {} reconnects, {:?}",
        queue.reconnects(),
        report.stats
    );
    let _ = stats;
    let depth = queue.depth().await.expect("depth after recovery");
    assert_eq!(depth.in_flight, 0, "{depth:?}");
    queue.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_queue_recovers_without_a_restart() {
    let _turn = BROKER.lock().await;
    let q = testing::queue(Duration::from_secs(30)).await;
    let jobs: Vec<_> = (0..3).map(|_| job("a")).collect();
    q.enqueue(&jobs).await.expect("enqueue");
    let before = q.dequeue(3, Duration::from_secs(5)).await.expect("dequeue");
    assert_eq!(before.len(), 3);

    close_all_connections();

    // Calls fail as unavailable (retryable) until the queue has reconnected.
    let deadline = Instant::now() + Duration::from_secs(10);
    let extra = job("a");
    loop {
        match q.enqueue(std::slice::from_ref(&extra)).await {
            Ok(()) => break,
            Err(e) => {
                assert_eq!(e.kind(), onboarding_core::ErrorKind::Unavailable, "{e}");
                assert!(e.is_retryable());
                assert!(Instant::now() < deadline, "never reconnected: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Receipts of the old connection are harmless no-ops.
    let stale: Vec<_> = before.iter().map(|d| d.receipt.clone()).collect();
    q.ack(&stale).await.expect("stale acks are no-ops");

    // The unacknowledged jobs come back, with the new one.
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 4 {
        assert!(
            Instant::now() < deadline,
            "only {} of 4 jobs came back",
            seen.len()
        );
        let got = q.dequeue(4, Duration::from_secs(1)).await.expect("dequeue");
        let receipts: Vec<_> = got.iter().map(|d| d.receipt.clone()).collect();
        seen.extend(got.into_iter().map(|d| d.job.item_id));
        q.ack(&receipts).await.expect("ack");
    }
    let mut expected: HashSet<_> = jobs.iter().map(|j| j.item_id).collect();
    expected.insert(extra.item_id);
    assert_eq!(seen, expected);
    assert_eq!(q.depth().await.expect("depth"), Default::default());
    q.delete_queues().await.expect("cleanup");
}
