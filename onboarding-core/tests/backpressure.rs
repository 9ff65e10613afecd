//! Backpressure at ingest (`IngestConfig::max_backlog`): a submission that
//! would take the queue's backlog past the limit is refused with
//! `Overloaded` before anything is stored; the depth is read once per
//! refresh interval by one caller at a time; an unreadable depth refuses
//! nothing.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use onboarding_core::memory::{MemoryCache, MemoryQueue, MemoryRepository, RecordingEventSink};
use onboarding_core::model::{after, now, ItemId, TenantId};
use onboarding_core::testing::doubles::{unavailable, Action, Double};
use onboarding_core::testing::eventually;
use onboarding_core::testing::fixtures::fill_queue;
use onboarding_core::testing::requests::request;
use onboarding_core::{Backends, ErrorKind, IngestConfig, OnboardingService, SubmitOptions};
use onboarding_core::{Job, JobQueue, Receipt};
use tokio::sync::Semaphore;

/// A memory queue whose `depth` calls are counted, and can be made to fail
/// or wait at a gate.
type TestQueue = Double<MemoryQueue>;

/// From now on each `depth` call waits for a permit of the returned gate.
fn close_gate(queue: &TestQueue) -> Arc<Semaphore> {
    let gate = Arc::new(Semaphore::new(0));
    let depth_gate = gate.clone();
    queue.set_hook(move |call| match call.method {
        "depth" => Action::Gate(depth_gate.clone()),
        _ => Action::Forward,
    });
    gate
}

struct Fixture {
    service: OnboardingService,
    queue: Arc<TestQueue>,
    events: RecordingEventSink,
    tenant: TenantId,
}

fn fixture(config: IngestConfig) -> Fixture {
    let queue = Arc::new(Double::new(Arc::new(MemoryQueue::default())));
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

/// `n` waiting jobs for items nobody stored (backlog from elsewhere).
async fn fill(queue: &TestQueue, n: usize) {
    fill_queue(queue, &TenantId::parse("other").unwrap(), n).await;
}

/// Ready and delayed jobs, read past the double (not counted as a `depth` call).
async fn waiting(queue: &TestQueue) -> u64 {
    let d = queue.inner().depth().await.unwrap();
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
        .submit(&f.tenant, &request("off", 0..5), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(f.queue.calls("depth"), 0);
}

#[tokio::test]
async fn over_the_limit_is_overloaded_and_stores_nothing() {
    let f = fixture(limit(10));
    fill(&f.queue, 8).await;
    let options = SubmitOptions::default().with_idempotency_key("retry-me");
    let err = f
        .service
        .submit(&f.tenant, &request("over", 0..3), options.clone())
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
            .organization(&f.tenant, &format!("org{i}-over.example.com"))
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
        .submit(&f.tenant, &request("over", 0..3), options)
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
        .submit(&f.tenant, &request("fits", 0..3), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(a.queued, 3);
    assert_eq!(waiting(&f.queue).await, 10, "7 + 3 = the limit: accepted");
    let err = f
        .service
        .submit(
            &f.tenant,
            &request("one-more", 0..1),
            SubmitOptions::default(),
        )
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
        .submit(
            &g.tenant,
            &request("delayed", 0..2),
            SubmitOptions::default(),
        )
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
            .submit(&f.tenant, &request(tag, 0..4), SubmitOptions::default())
            .await
            .unwrap();
    }
    // 0 in the reading + 8 accepted since + 4 > 10.
    let err = f
        .service
        .submit(&f.tenant, &request("c", 0..4), SubmitOptions::default())
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
        .submit(&f.tenant, &request("d", 0..2), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(f.queue.calls("depth"), 1);
    assert_eq!(waiting(&f.queue).await, 10);
}

#[tokio::test]
async fn an_empty_queue_accepts_a_request_larger_than_the_limit() {
    let f = fixture(limit(2));
    let a = f
        .service
        .submit(&f.tenant, &request("big", 0..5), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(a.queued, 5);
}

#[tokio::test]
async fn an_unreadable_depth_refuses_nothing() {
    let f = fixture(limit(1));
    fill(&f.queue, 100).await;
    f.queue.set_hook(|call| match call.method {
        "depth" => Action::Fail(unavailable()),
        _ => Action::Forward,
    });
    let a = f
        .service
        .submit(&f.tenant, &request("blind", 0..2), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(a.queued, 2);
    assert_eq!(waiting(&f.queue).await, 102, "stored and enqueued");
    assert_eq!(f.queue.calls("depth"), 1, "the depth was asked for");
}

#[tokio::test(start_paused = true)]
async fn a_depth_that_never_answers_refuses_nothing() {
    let f = fixture(limit(1));
    fill(&f.queue, 100).await;
    let _gate = close_gate(&f.queue); // no permit ever: depth hangs
    let a = f
        .service
        .submit(&f.tenant, &request("hang", 0..2), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(a.queued, 2);
    assert_eq!(f.queue.calls("depth"), 1);
}

#[tokio::test]
async fn one_reading_serves_every_submission_within_the_refresh_interval() {
    let f = fixture(
        IngestConfig::default()
            .with_max_backlog(Some(1_000))
            .with_backlog_refresh(Duration::from_secs(3600)),
    );
    // Cold start: the first reading is slow, and 16 submissions arrive together.
    let gate = close_gate(&f.queue);
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let (service, tenant) = (f.service.clone(), f.tenant.clone());
            tokio::spawn(async move {
                service
                    .submit(
                        &tenant,
                        &request(&format!("burst{i}"), 0..2),
                        SubmitOptions::default(),
                    )
                    .await
            })
        })
        .collect();
    eventually(
        "someone to read the depth",
        Duration::from_secs(10),
        || async { (f.queue.calls("depth") > 0).then_some(()) },
    )
    .await;
    f.queue.set_hook(|_| Action::Forward);
    gate.add_permits(100);
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(f.queue.calls("depth"), 1, "one reading for the whole burst");
    assert_eq!(waiting(&f.queue).await, 32);
}

#[tokio::test]
async fn while_one_caller_reads_the_depth_the_others_use_the_last_reading() {
    let f = fixture(limit(1_000));
    // A first, quick reading (0 waiting).
    f.service
        .submit(&f.tenant, &request("first", 0..1), SubmitOptions::default())
        .await
        .unwrap();
    assert_eq!(f.queue.calls("depth"), 1);
    // The next reading hangs until the gate opens.
    let gate = close_gate(&f.queue);
    let reader = {
        let (service, tenant) = (f.service.clone(), f.tenant.clone());
        tokio::spawn(async move {
            service
                .submit(&tenant, &request("reader", 0..1), SubmitOptions::default())
                .await
        })
    };
    eventually(
        "the second reading to start",
        Duration::from_secs(10),
        || async { (f.queue.calls("depth") >= 2).then_some(()) },
    )
    .await;
    // Others do not wait for it and do not read the queue themselves.
    for i in 0..5 {
        tokio::time::timeout(
            Duration::from_secs(5),
            f.service.submit(
                &f.tenant,
                &request(&format!("meanwhile{i}"), 0..1),
                SubmitOptions::default(),
            ),
        )
        .await
        .expect("not blocked by the reading in flight")
        .unwrap();
    }
    assert_eq!(f.queue.calls("depth"), 2);
    assert!(!reader.is_finished(), "the reader is still at the gate");
    gate.add_permits(1);
    reader.await.unwrap().unwrap();
}

/// A file import whose size is unknown until it has arrived: refused while
/// the backlog is full (nothing read or stored), accepted whole below it.
#[tokio::test]
async fn an_import_is_refused_while_the_backlog_is_full() {
    use onboarding_core::import::{ImportFormat, ImportOptions};
    let f = fixture(limit(10));
    fill(&f.queue, 10).await;
    let file = "name,domain,contact_email\nAcme,acme-full.example.com,ops@acme-full.example.com\n\
                Beta,beta-full.example.com,ops@beta-full.example.com\n";
    let body = || futures::stream::iter([Ok::<_, onboarding_core::Error>(file.as_bytes())]);
    let err = f
        .service
        .import(&f.tenant, ImportOptions::new(ImportFormat::Csv), body())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Overloaded);
    assert!(
        err.is_retryable(),
        "the client may send the file again later"
    );
    assert!(
        err.message().contains("10 organizations are queued"),
        "{}",
        err.message()
    );
    assert!(f
        .service
        .receiving_imports(&f.tenant)
        .await
        .unwrap()
        .is_empty());
    let missing = f
        .service
        .organization(&f.tenant, "acme-full.example.com")
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "nothing stored");
    assert_eq!(waiting(&f.queue).await, 10, "nothing enqueued");

    // One job drained: below the limit, the whole file is accepted.
    let taken = f.queue.dequeue(1, Duration::ZERO).await.unwrap();
    let receipts: Vec<Receipt> = taken.into_iter().map(|d| d.receipt).collect();
    f.queue.ack(&receipts).await.unwrap();
    let receipt = f
        .service
        .import(&f.tenant, ImportOptions::new(ImportFormat::Csv), body())
        .await
        .unwrap();
    assert_eq!(receipt.organizations_count, 2);
    eventually(
        "the import's two items enqueued after the answer",
        Duration::from_secs(10),
        || async { (waiting(&f.queue).await == 11).then_some(()) },
    )
    .await;
}
