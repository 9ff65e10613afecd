//! [`JobQueue`](crate::JobQueue) cases: one per `# Behavior` bullet.
//!
//! Each case gets a fresh, isolated queue from `setup` (see the
//! [module documentation](super)) and counts every job it dequeues. The
//! queue's visibility timeout is the backend's; it must be between 500 ms
//! and 2 s.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::model::ItemId;
use crate::queue::{Job, QueueDepth, Receipt};
use crate::testing::fixtures;
use crate::testing::TestBackend;

/// Longest a case waits for something the contract says will happen.
const DEADLINE: Duration = Duration::from_secs(10);

/// A short wait for "nothing is ready".
const SHORT: Duration = Duration::from_millis(200);

/// `enqueue(&[])` is a no-op.
pub async fn enqueue_empty_is_noop(backend: TestBackend) {
    let queue = &*backend.queue;
    queue.enqueue(&[]).await.expect("enqueue of no jobs failed");
    assert_eq!(
        queue.depth().await.expect("depth failed"),
        QueueDepth::default(),
        "enqueue of no jobs stored something"
    );
    let got = queue.dequeue(10, SHORT).await.expect("dequeue failed");
    assert!(got.is_empty(), "enqueue of no jobs delivered {got:?}");
}

/// Enqueued jobs are delivered, each once, up to `max` per call.
pub async fn enqueue_then_dequeue_returns_jobs(backend: TestBackend) {
    let queue = &*backend.queue;
    let tenant = fixtures::tenant();
    let jobs: Vec<Job> = (0..5).map(|_| fixtures::job(&tenant)).collect();
    queue.enqueue(&jobs).await.expect("enqueue failed");

    let first = queue.dequeue(3, DEADLINE).await.expect("dequeue failed");
    assert!(
        !first.is_empty() && first.len() <= 3,
        "dequeue(max 3) of 5 ready jobs returned {}",
        first.len()
    );
    let rest = fixtures::dequeue_n(queue, 5 - first.len(), DEADLINE).await;
    let delivered: Vec<Job> = first.iter().chain(&rest).map(|d| d.job.clone()).collect();
    let ids: HashSet<ItemId> = delivered.iter().map(|j| j.item_id).collect();
    assert_eq!(
        delivered.len(),
        5,
        "every enqueued job is delivered once: {delivered:?}"
    );
    assert_eq!(
        ids,
        jobs.iter().map(|j| j.item_id).collect(),
        "the enqueued jobs come back"
    );
    for job in &jobs {
        assert!(delivered.contains(job), "job {job:?} came back changed");
    }
    let receipts: Vec<Receipt> = first
        .iter()
        .chain(&rest)
        .map(|d| d.receipt.clone())
        .collect();
    queue.ack(&receipts).await.expect("ack failed");
}

/// `dequeue` returns an empty list after `wait` when nothing is ready, without error.
pub async fn dequeue_on_empty_queue_returns_empty_after_wait(backend: TestBackend) {
    let queue = &*backend.queue;
    let start = Instant::now();
    let got = queue
        .dequeue(10, SHORT)
        .await
        .expect("dequeue on an empty queue failed");
    let elapsed = start.elapsed();
    assert!(got.is_empty(), "an empty queue delivered {got:?}");
    assert!(
        elapsed >= SHORT / 2,
        "dequeue on an empty queue returned after {elapsed:?}, before its wait of {SHORT:?}"
    );
    assert!(
        elapsed < DEADLINE,
        "dequeue overslept its wait: {elapsed:?}"
    );
}

/// `dequeue` returns as soon as a job is ready, before `wait` ends.
pub async fn dequeue_returns_early_when_a_job_arrives(backend: TestBackend) {
    let queue = backend.queue;
    let tenant = fixtures::tenant();
    let job = fixtures::job(&tenant);
    let producer = {
        let queue = std::sync::Arc::clone(&queue);
        let job = job.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            queue.enqueue(&[job]).await
        })
    };
    let start = Instant::now();
    let got = queue
        .dequeue(10, Duration::from_secs(5))
        .await
        .expect("dequeue failed");
    let elapsed = start.elapsed();
    producer
        .await
        .expect("the producer task panicked")
        .expect("enqueue failed");
    assert_eq!(
        got.iter().map(|d| &d.job).collect::<Vec<_>>(),
        vec![&job],
        "the job enqueued during the wait is delivered"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "dequeue(wait 5 s) returned after {elapsed:?} although a job was ready after 100 ms"
    );
    let receipts: Vec<Receipt> = got.into_iter().map(|d| d.receipt).collect();
    queue.ack(&receipts).await.expect("ack failed");
}

/// A job with `not_before` in the future is not delivered before then (and
/// is delivered after).
pub async fn delayed_job_is_not_delivered_before_not_before(backend: TestBackend) {
    let queue = &*backend.queue;
    let tenant = fixtures::tenant();
    let not_before = crate::model::now() + fixtures::secs(2);
    let delayed = Job {
        not_before: Some(not_before),
        ..fixtures::job(&tenant)
    };
    let ready = fixtures::job(&tenant);
    queue
        .enqueue(&[delayed.clone(), ready.clone()])
        .await
        .expect("enqueue failed");

    let start = Instant::now();
    let mut receipts = Vec::new();
    let mut got_ready = false;
    let mut got_delayed = false;
    while !(got_ready && got_delayed) && start.elapsed() < DEADLINE {
        for delivery in queue
            .dequeue(10, Duration::from_millis(500))
            .await
            .expect("dequeue failed")
        {
            let at = crate::model::now();
            if delivery.job.item_id == delayed.item_id {
                assert!(
                    at >= not_before - fixtures::delta(Duration::from_millis(50)),
                    "a job with not_before {not_before} was delivered at {at}"
                );
                assert_eq!(delivery.job, delayed, "the delayed job came back changed");
                got_delayed = true;
            } else {
                assert_eq!(delivery.job, ready);
                got_ready = true;
            }
            receipts.push(delivery.receipt);
        }
    }
    assert!(
        got_ready,
        "the ready job was not delivered within {DEADLINE:?}"
    );
    assert!(
        got_delayed,
        "the delayed job was not delivered within {DEADLINE:?} after its not_before"
    );
    queue.ack(&receipts).await.expect("ack failed");
}

/// A delivered job is not delivered again until it is acknowledged or the
/// visibility timeout passes; after that it is delivered again; an
/// acknowledged job never comes back.
pub async fn unacked_delivery_is_redelivered_after_visibility_timeout(backend: TestBackend) {
    let queue = &*backend.queue;
    let tenant = fixtures::tenant();
    let acked = fixtures::job(&tenant);
    let unacked = fixtures::job(&tenant);
    queue
        .enqueue(&[acked.clone(), unacked.clone()])
        .await
        .expect("enqueue failed");
    let first = fixtures::dequeue_n(queue, 2, DEADLINE).await;
    assert_eq!(first.len(), 2, "both jobs are delivered");
    let acked_delivery = first
        .iter()
        .find(|d| d.job.item_id == acked.item_id)
        .expect("the first job was delivered");
    queue
        .ack(std::slice::from_ref(&acked_delivery.receipt))
        .await
        .expect("ack failed");

    let at_once = queue
        .dequeue(10, Duration::from_millis(100))
        .await
        .expect("dequeue failed");
    assert!(
        at_once.is_empty(),
        "a delivery came back before the visibility timeout: {at_once:?}"
    );

    let start = Instant::now();
    let mut redelivered = None;
    while redelivered.is_none() && start.elapsed() < DEADLINE {
        for delivery in queue
            .dequeue(10, Duration::from_millis(500))
            .await
            .expect("dequeue failed")
        {
            assert_ne!(
                delivery.job.item_id, acked.item_id,
                "an acknowledged job was delivered again"
            );
            assert_eq!(delivery.job, unacked);
            assert!(
                redelivered.is_none(),
                "the unacked job was redelivered twice at once"
            );
            redelivered = Some(delivery);
        }
    }
    let redelivered = redelivered
        .unwrap_or_else(|| panic!("an unacknowledged job was not redelivered within {DEADLINE:?}"));
    queue.ack(&[redelivered.receipt]).await.expect("ack failed");

    let after = queue
        .dequeue(10, Duration::from_millis(2500))
        .await
        .expect("dequeue failed");
    assert!(
        after.is_empty(),
        "acknowledged jobs came back after the visibility timeout: {after:?}"
    );
}

/// Acknowledging an unknown or already acknowledged receipt is a no-op.
pub async fn ack_of_unknown_receipt_is_noop(backend: TestBackend) {
    let queue = &*backend.queue;
    let tenant = fixtures::tenant();
    let job = fixtures::job(&tenant);
    queue
        .enqueue(std::slice::from_ref(&job))
        .await
        .expect("enqueue failed");
    let delivered = fixtures::dequeue_n(queue, 1, DEADLINE).await;
    assert_eq!(delivered.len(), 1, "the job is delivered");
    let receipt = delivered[0].receipt.clone();

    let unknown = Receipt(format!("unknown-{}", uuid::Uuid::new_v4()));
    // Shaped like the receipts of queues that number their jobs.
    let unknown_number = Receipt("999999999".to_owned());
    queue
        .ack(&[unknown.clone(), unknown_number])
        .await
        .expect("ack of an unknown receipt failed");
    assert_eq!(
        queue.depth().await.expect("depth failed").in_flight,
        1,
        "ack of an unknown receipt acknowledged another job"
    );
    queue
        .ack(std::slice::from_ref(&receipt))
        .await
        .expect("ack failed");
    queue
        .ack(&[receipt, unknown])
        .await
        .expect("a second ack of the same receipt failed");
    assert_eq!(
        queue.depth().await.expect("depth failed"),
        QueueDepth::default()
    );
}

/// When several tenants have ready jobs, deliveries interleave tenants: of
/// 50 jobs of tenant A enqueued before 5 of tenant B, the first 10
/// deliveries include B.
pub async fn dequeue_interleaves_tenants(backend: TestBackend) {
    let queue = &*backend.queue;
    let a = fixtures::tenant();
    let b = fixtures::tenant();
    let jobs_a: Vec<Job> = (0..50).map(|_| fixtures::job(&a)).collect();
    let jobs_b: Vec<Job> = (0..5).map(|_| fixtures::job(&b)).collect();
    queue.enqueue(&jobs_a).await.expect("enqueue failed");
    queue.enqueue(&jobs_b).await.expect("enqueue failed");

    let first = fixtures::dequeue_n(queue, 10, DEADLINE).await;
    assert_eq!(first.len(), 10, "10 of 55 ready jobs are delivered");
    let of_b = first.iter().filter(|d| d.job.tenant == b).count();
    assert!(
        of_b >= 1,
        "the first 10 deliveries are all of the tenant that enqueued first"
    );
    let rest = fixtures::dequeue_n(queue, 45, DEADLINE).await;
    let receipts: Vec<Receipt> = first
        .iter()
        .chain(&rest)
        .map(|d| d.receipt.clone())
        .collect();
    queue.ack(&receipts).await.expect("ack failed");
}

/// `depth` counts ready, delayed and in-flight jobs; acknowledged jobs do
/// not accumulate.
pub async fn depth_counts_ready_delayed_and_in_flight(backend: TestBackend) {
    let queue = &*backend.queue;
    let tenant = fixtures::tenant();
    let later = crate::model::now() + fixtures::secs(3600);
    let ready: Vec<Job> = (0..3).map(|_| fixtures::job(&tenant)).collect();
    let delayed: Vec<Job> = (0..2)
        .map(|_| Job {
            not_before: Some(later),
            ..fixtures::job(&tenant)
        })
        .collect();
    queue.enqueue(&ready).await.expect("enqueue failed");
    queue.enqueue(&delayed).await.expect("enqueue failed");
    let depth = |ready, delayed, in_flight| QueueDepth {
        ready,
        delayed,
        in_flight,
    };
    assert_eq!(queue.depth().await.expect("depth failed"), depth(3, 2, 0));

    let taken = fixtures::dequeue_n(queue, 2, DEADLINE).await;
    assert_eq!(taken.len(), 2);
    assert_eq!(queue.depth().await.expect("depth failed"), depth(1, 2, 2));

    let receipts: Vec<Receipt> = taken.into_iter().map(|d| d.receipt).collect();
    queue.ack(&receipts).await.expect("ack failed");
    assert_eq!(
        queue.depth().await.expect("depth failed"),
        depth(1, 2, 0),
        "acknowledged jobs are gone"
    );
    let last = fixtures::dequeue_n(queue, 1, DEADLINE).await;
    queue
        .ack(&last.into_iter().map(|d| d.receipt).collect::<Vec<_>>())
        .await
        .expect("ack failed");
    assert_eq!(queue.depth().await.expect("depth failed"), depth(0, 2, 0));
}

/// `ping` answers when the backend is up.
pub async fn queue_ping_answers(backend: TestBackend) {
    backend
        .queue
        .ping()
        .await
        .expect("ping of a running queue failed");
}

/// A delivered job is not delivered again while it is in flight, also to
/// dequeues running at the same time: concurrent consumers never share a job.
pub async fn concurrent_dequeues_never_share_a_delivery(backend: TestBackend) {
    let queue = backend.queue.clone();
    let tenant = fixtures::tenant();
    let jobs = fixtures::fill_queue(&*queue, &tenant, 40).await;
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                loop {
                    let batch = queue.dequeue(3, SHORT).await.expect("dequeue failed");
                    if batch.is_empty() {
                        return got;
                    }
                    // Acknowledged at once: a visibility timeout passing
                    // during the test cannot explain a second delivery.
                    let receipts: Vec<Receipt> = batch.iter().map(|d| d.receipt.clone()).collect();
                    queue.ack(&receipts).await.expect("ack failed");
                    got.extend(batch.into_iter().map(|d| d.job.item_id));
                }
            })
        })
        .collect();
    let mut delivered = Vec::new();
    for consumer in consumers {
        delivered.extend(consumer.await.expect("a consumer panicked"));
    }
    let unique: HashSet<ItemId> = delivered.iter().copied().collect();
    assert_eq!(
        delivered.len(),
        unique.len(),
        "a job was delivered to two consumers"
    );
    let expected: HashSet<ItemId> = jobs.iter().map(|j| j.item_id).collect();
    assert_eq!(unique, expected, "every job is delivered");
}
