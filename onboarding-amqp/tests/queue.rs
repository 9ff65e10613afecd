//! The adapter's own behaviour against the real broker.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use onboarding_amqp::testing;
use onboarding_amqp::AmqpQueue;
use onboarding_core::model::now;
use onboarding_core::JobQueue;

/// A ready job of `tenant`.
fn job(tenant: &str) -> onboarding_core::Job {
    onboarding_core::testing::fixtures::job(
        &onboarding_core::model::TenantId::parse(tenant).expect("valid tenant"),
    )
}

const SHORT: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_dequeue_ack_roundtrip() {
    let q = testing::queue(Duration::from_secs(30)).await;
    let jobs: Vec<_> = (0..5).map(|_| job("a")).collect();
    q.enqueue(&jobs).await.expect("enqueue");
    let got = q
        .dequeue(10, Duration::from_secs(5))
        .await
        .expect("dequeue");
    assert_eq!(got.len(), 5);
    let ids: HashSet<_> = got.iter().map(|d| d.job.item_id).collect();
    assert_eq!(ids, jobs.iter().map(|j| j.item_id).collect());
    let depth = q.depth().await.expect("depth");
    assert_eq!((depth.ready, depth.in_flight), (0, 5));
    let receipts: Vec<_> = got.into_iter().map(|d| d.receipt).collect();
    q.ack(&receipts).await.expect("ack");
    q.ack(&receipts).await.expect("ack twice is a no-op");
    q.ack(&[onboarding_core::Receipt("nonsense".into())])
        .await
        .expect("unknown receipt is a no-op");
    assert_eq!(q.depth().await.expect("depth"), Default::default());
    q.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_queue_waits_then_returns_nothing() {
    let q = testing::queue(Duration::from_secs(30)).await;
    let started = Instant::now();
    let got = q.dequeue(10, SHORT).await.expect("dequeue");
    assert!(got.is_empty());
    assert!(started.elapsed() >= SHORT);
    assert!(started.elapsed() < SHORT * 4);
    q.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_dequeue_wakes_on_enqueue() {
    let q = std::sync::Arc::new(testing::queue(Duration::from_secs(30)).await);
    let consumer = {
        let q = q.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let got = q.dequeue(10, Duration::from_secs(10)).await;
            (got, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    q.enqueue(&[job("a")]).await.expect("enqueue");
    let (got, waited) = consumer.await.expect("join");
    assert_eq!(got.expect("dequeue").len(), 1);
    assert!(waited < Duration::from_secs(2), "{waited:?}");
    q.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_jobs_come_back_after_the_visibility_timeout() {
    let q = testing::queue(Duration::from_millis(500)).await;
    q.enqueue(&[job("a")]).await.expect("enqueue");
    let first = q.dequeue(1, Duration::from_secs(5)).await.expect("dequeue");
    assert_eq!(first.len(), 1);
    // Not visible before the timeout.
    let none = q
        .dequeue(1, Duration::from_millis(200))
        .await
        .expect("dequeue");
    assert!(none.is_empty());
    let again = q.dequeue(1, Duration::from_secs(5)).await.expect("dequeue");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job, first[0].job);
    // The stale receipt is a no-op; the fresh one acks.
    q.ack(&[first[0].receipt.clone()]).await.expect("stale ack");
    q.ack(&[again[0].receipt.clone()]).await.expect("ack");
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(q.depth().await.expect("depth"), Default::default());
    q.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_interleave_within_the_prefetch_window() {
    let q = testing::queue(Duration::from_secs(30)).await;
    let a: Vec<_> = (0..50).map(|_| job("tenant-a")).collect();
    let b: Vec<_> = (0..5).map(|_| job("tenant-b")).collect();
    q.enqueue(&a).await.expect("enqueue a");
    q.enqueue(&b).await.expect("enqueue b");
    let got = q
        .dequeue(10, Duration::from_secs(5))
        .await
        .expect("dequeue");
    assert_eq!(got.len(), 10);
    let bs = got
        .iter()
        .filter(|d| d.job.tenant.as_str() == "tenant-b")
        .count();
    assert!(bs >= 1, "no tenant-b job among the first 10");
    q.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_jobs_wait_for_not_before() {
    let q = testing::queue(Duration::from_secs(30)).await;
    let mut delayed = job("a");
    let due = now() + chrono::Duration::milliseconds(1500);
    delayed.not_before = Some(due);
    let mut later = job("a");
    later.not_before = Some(now() + chrono::Duration::seconds(3));
    q.enqueue(&[delayed.clone(), later.clone()])
        .await
        .expect("enqueue");
    let depth = q.depth().await.expect("depth");
    assert_eq!((depth.ready, depth.delayed), (0, 2));
    let early = q
        .dequeue(1, Duration::from_millis(500))
        .await
        .expect("dequeue");
    assert!(early.is_empty());
    let got = q.dequeue(1, Duration::from_secs(5)).await.expect("dequeue");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job.item_id, delayed.item_id);
    assert!(now() >= due, "delivered before not_before");
    let got2 = q.dequeue(1, Duration::from_secs(5)).await.expect("dequeue");
    assert_eq!(got2[0].job.item_id, later.item_id);
    assert!(now() >= later.not_before.unwrap_or_default());
    q.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_consumer_without_acks_gives_its_jobs_back() {
    let config = testing::config(Duration::from_secs(60));
    let first = AmqpQueue::connect(config.clone()).await.expect("connect");
    let jobs: Vec<_> = (0..3).map(|_| job("a")).collect();
    first.enqueue(&jobs).await.expect("enqueue");
    let got = first
        .dequeue(3, Duration::from_secs(5))
        .await
        .expect("dequeue");
    assert_eq!(got.len(), 3);
    drop(first);

    // A fresh process learns of tenant "a" when something is enqueued for
    // it (a new submission, a retry, the sweeper): then it consumes the
    // whole tenant queue, including what the dropped consumer held.
    let second = AmqpQueue::connect(config).await.expect("connect");
    let woken = job("a");
    second
        .enqueue(std::slice::from_ref(&woken))
        .await
        .expect("enqueue");
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 4 && Instant::now() < deadline {
        for d in second
            .dequeue(4, Duration::from_secs(1))
            .await
            .expect("dequeue")
        {
            seen.insert(d.job.item_id);
            second.ack(&[d.receipt]).await.expect("ack");
        }
    }
    let mut expected: HashSet<_> = jobs.iter().map(|j| j.item_id).collect();
    expected.insert(woken.item_id);
    assert_eq!(seen, expected);
    second.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_consumer_takes_over_what_a_dropped_one_held() {
    let config = testing::config(Duration::from_secs(60));
    let first = AmqpQueue::connect(config.clone()).await.expect("connect");
    let second = AmqpQueue::connect(config).await.expect("connect");
    // The second consumer runs (and hears announcements) before any job exists.
    assert!(second
        .dequeue(1, Duration::from_millis(100))
        .await
        .expect("dequeue")
        .is_empty());
    // So does the first; it subscribes to the tenant queue first (at
    // enqueue), the second when it hears the announcement, so both may hold
    // some of the jobs.
    assert!(first
        .dequeue(1, Duration::from_millis(100))
        .await
        .expect("dequeue")
        .is_empty());
    let jobs: Vec<_> = (0..3).map(|_| job("a")).collect();
    first.enqueue(&jobs).await.expect("enqueue");
    let held = first
        .dequeue(3, Duration::from_secs(1))
        .await
        .expect("dequeue");
    eprintln!(
        "the first consumer held {} of 3 jobs when dropped",
        held.len()
    );
    drop(first);

    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.len() < 3 && Instant::now() < deadline {
        for d in second
            .dequeue(3, Duration::from_secs(1))
            .await
            .expect("dequeue")
        {
            seen.insert(d.job.item_id);
            second.ack(&[d.receipt]).await.expect("ack");
        }
    }
    assert_eq!(seen, jobs.iter().map(|j| j.item_id).collect());
    second.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unparseable_messages_go_to_the_dead_letter_queue() {
    let q = testing::queue(Duration::from_secs(30)).await;
    // A foreign publisher puts garbage on the work queue.
    let conn = lapin::Connection::connect(&testing::url(), Default::default())
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    channel
        .basic_publish(
            "".into(),
            q.config().work_queue().as_str().into(),
            Default::default(),
            b"not json",
            Default::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    q.enqueue(&[job("a")]).await.expect("enqueue");
    let got = q
        .dequeue(10, Duration::from_secs(5))
        .await
        .expect("dequeue");
    assert_eq!(got.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(5);
    while q.dead_lettered().await.expect("count") < 1 {
        assert!(Instant::now() < deadline, "nothing dead-lettered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    q.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_of_1000_jobs_with_confirms() {
    let q = testing::queue(Duration::from_secs(30)).await;
    let jobs: Vec<_> = (0..1000)
        .map(|i| job(if i % 2 == 0 { "a" } else { "b" }))
        .collect();
    let started = Instant::now();
    q.enqueue(&jobs).await.expect("enqueue");
    let took = started.elapsed();
    eprintln!("enqueue of 1000 jobs with publisher confirms: {took:?}");
    let depth = q.depth().await.expect("depth");
    assert_eq!(depth.ready + depth.in_flight, 1000);
    q.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_broker_is_unavailable_and_retryable() {
    let config = onboarding_amqp::AmqpConfig::new("amqp://guest:guest@127.0.0.1:1/%2f")
        .with_connect_timeout(Duration::from_secs(2));
    let q = AmqpQueue::new(config);
    let e = q.ping().await.expect_err("nothing listens on port 1");
    assert_eq!(e.kind(), onboarding_core::ErrorKind::Unavailable);
    assert!(e.is_retryable());
    assert!(std::error::Error::source(&e).is_some(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_queue_expiry_queues_and_exchanges_go_away() {
    let config = testing::config(Duration::from_secs(30)).with_queue_expiry(Duration::from_secs(1));
    let q = AmqpQueue::connect(config.clone()).await.expect("connect");
    q.enqueue(&[job("a")]).await.expect("enqueue");
    assert_eq!(
        q.dequeue(1, Duration::from_secs(5))
            .await
            .expect("dequeue")
            .len(),
        1
    );
    q.close().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let conn = lapin::Connection::connect(&testing::url(), Default::default())
        .await
        .expect("connect");
    for name in config.exchange_names() {
        let channel = conn.create_channel().await.expect("channel");
        let passive = lapin::options::ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let found = channel
            .exchange_declare(
                name.as_str().into(),
                lapin::ExchangeKind::Direct,
                passive,
                Default::default(),
            )
            .await;
        assert!(found.is_err(), "exchange {name} is still there");
    }
}
