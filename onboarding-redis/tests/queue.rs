//! `RedisQueue` against a real Redis: batching, redelivery, delays,
//! fairness, blocking and bounded memory.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onboarding_core::model::{now, ItemId, TenantId};
use onboarding_core::{ErrorKind, Job, JobQueue, QueueDepth, Receipt};
use onboarding_redis::testing::TestPrefix;
use onboarding_redis::{RedisConfig, RedisQueue};

fn job(tenant: &str) -> Job {
    Job {
        item_id: ItemId::new(),
        tenant: TenantId::parse(tenant).unwrap(),
        not_before: None,
    }
}

fn receipts(d: &[onboarding_core::Delivery]) -> Vec<Receipt> {
    d.iter().map(|d| d.receipt.clone()).collect()
}

#[tokio::test]
async fn many_jobs_in_one_call_round_trip_and_acked_jobs_leave_nothing() {
    let prefix = TestPrefix::create().await;
    let q = prefix.queue(Duration::from_secs(30)).await;
    // More than one script chunk (1000), sent in one pipeline.
    let jobs: Vec<Job> = (0..2500).map(|i| job(["a", "b", "c"][i % 3])).collect();
    q.enqueue(&jobs).await.unwrap();
    assert_eq!(
        q.depth().await.unwrap(),
        QueueDepth {
            ready: 2500,
            delayed: 0,
            in_flight: 0
        }
    );

    let mut seen = HashSet::new();
    loop {
        let got = q.dequeue(700, Duration::ZERO).await.unwrap();
        if got.is_empty() {
            break;
        }
        assert!(got.len() <= 700);
        for d in &got {
            assert!(seen.insert(d.job.item_id), "delivered twice: {:?}", d.job);
        }
        q.ack(&receipts(&got)).await.unwrap();
    }
    let expected: HashSet<ItemId> = jobs.iter().map(|j| j.item_id).collect();
    assert_eq!(seen, expected);
    assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
    // Bounded memory: nothing but the rotation counter is left.
    let left: Vec<String> = prefix
        .keys()
        .await
        .into_iter()
        .filter(|k| !k.ends_with(":q:rr"))
        .collect();
    assert!(
        left.is_empty(),
        "keys left after acking everything: {left:?}"
    );
}

/// Drops every script from the server, as a restart does.
async fn flush_scripts() {
    let client = redis::Client::open(onboarding_redis::testing::url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_enqueue_after_the_server_lost_its_scripts_delivers_each_job_once() {
    let prefix = TestPrefix::create().await;
    let q = prefix.queue(Duration::from_secs(30)).await;
    // Ready jobs only (a plain push, then the tenant's activation), then a
    // delayed job beside a ready one (one script call): each after a flush.
    let ready: Vec<Job> = (0..3).map(|_| job("acme")).collect();
    let mut later = job("acme");
    later.not_before = Some(now() + chrono::TimeDelta::seconds(60));
    let mixed = vec![later, job("acme")];
    for jobs in [ready, mixed] {
        flush_scripts().await;
        q.enqueue(&jobs).await.unwrap();
        let expected: HashSet<ItemId> = jobs
            .iter()
            .filter(|j| j.not_before.is_none())
            .map(|j| j.item_id)
            .collect();
        let got = q.dequeue(10, Duration::from_secs(1)).await.unwrap();
        let ids: Vec<ItemId> = got.iter().map(|d| d.job.item_id).collect();
        assert_eq!(ids.len(), expected.len(), "each job once: {ids:?}");
        assert_eq!(ids.into_iter().collect::<HashSet<_>>(), expected);
        q.ack(&receipts(&got)).await.unwrap();
    }
    assert_eq!(q.depth().await.unwrap().delayed, 1);
}

#[tokio::test]
async fn jobs_keep_their_fields() {
    let prefix = TestPrefix::create().await;
    let q = prefix.queue(Duration::from_secs(30)).await;
    let mut past = job("tenant-1.x_y");
    past.not_before = Some(now() - chrono::TimeDelta::seconds(5));
    q.enqueue(std::slice::from_ref(&past)).await.unwrap();
    let got = q.dequeue(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, past);
}

#[tokio::test]
async fn a_consumer_that_dies_without_acking_gets_its_jobs_redelivered() {
    let prefix = TestPrefix::create().await;
    let visibility = Duration::from_millis(700);
    let jobs: Vec<Job> = (0..5).map(|_| job("acme")).collect();
    let taken = {
        let dying = prefix.queue(visibility).await;
        dying.enqueue(&jobs).await.unwrap();
        let got = dying.dequeue(3, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.len(), 3);
        got
        // `dying` is dropped here without acking.
    };
    let taken_at = Instant::now();
    let other = prefix.queue(visibility).await;
    // The other two are there at once; the three taken ones are invisible.
    let rest = other.dequeue(10, Duration::ZERO).await.unwrap();
    assert_eq!(rest.len(), 2);
    other.ack(&receipts(&rest)).await.unwrap();
    assert!(other.dequeue(10, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(other.depth().await.unwrap().in_flight, 3);

    let again = other.dequeue(10, Duration::from_secs(5)).await.unwrap();
    let waited = taken_at.elapsed();
    assert!(
        waited >= Duration::from_millis(500),
        "redelivered too early: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(3),
        "redelivered too late: {waited:?}"
    );
    let want: HashSet<ItemId> = taken.iter().map(|d| d.job.item_id).collect();
    let got: HashSet<ItemId> = again.iter().map(|d| d.job.item_id).collect();
    assert_eq!(got, want);
    // Each delivery has its own receipt: the dead consumer's receipts are stale.
    for d in &again {
        assert!(!taken.iter().any(|t| t.receipt == d.receipt));
    }
    other.ack(&receipts(&taken)).await.unwrap();
    assert_eq!(other.depth().await.unwrap().in_flight, 3);
    other.ack(&receipts(&again)).await.unwrap();
    assert_eq!(other.depth().await.unwrap(), QueueDepth::default());
}

#[tokio::test]
async fn delayed_jobs_come_due_not_before() {
    let prefix = TestPrefix::create().await;
    let q = prefix.queue(Duration::from_secs(30)).await;
    let due = now() + chrono::TimeDelta::milliseconds(600);
    let mut later = job("acme");
    later.not_before = Some(due);
    let soon = job("acme");
    q.enqueue(&[later.clone(), soon.clone()]).await.unwrap();
    let depth = q.depth().await.unwrap();
    assert_eq!((depth.ready, depth.delayed), (1, 1));

    let first = q.dequeue(10, Duration::ZERO).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].job, soon);
    assert!(q.dequeue(10, Duration::ZERO).await.unwrap().is_empty());

    let started = Instant::now();
    let got = q.dequeue(10, Duration::from_secs(5)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, later);
    assert!(now() >= due, "delivered before not_before");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "promoted late: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn tenants_are_interleaved() {
    let prefix = TestPrefix::create().await;
    let q = prefix.queue(Duration::from_secs(30)).await;
    let big: Vec<Job> = (0..100).map(|_| job("big")).collect();
    q.enqueue(&big).await.unwrap();
    q.enqueue(&(0..5).map(|_| job("small")).collect::<Vec<_>>())
        .await
        .unwrap();
    q.enqueue(&[job("tiny")]).await.unwrap();

    let got = q.dequeue(9, Duration::from_secs(1)).await.unwrap();
    let mut per: HashMap<String, usize> = HashMap::new();
    for d in &got {
        *per.entry(d.job.tenant.to_string()).or_default() += 1;
    }
    assert_eq!(got.len(), 9);
    assert_eq!(per.get("tiny"), Some(&1), "{per:?}");
    assert_eq!(per.get("small"), Some(&4), "{per:?}");
    assert_eq!(per.get("big"), Some(&4), "{per:?}");
    // The first three deliveries are three different tenants.
    let head: HashSet<String> = got[..3].iter().map(|d| d.job.tenant.to_string()).collect();
    assert_eq!(head.len(), 3, "{got:?}");
    // The big tenant's own order is kept.
    let big_order: Vec<ItemId> = got
        .iter()
        .filter(|d| d.job.tenant.as_str() == "big")
        .map(|d| d.job.item_id)
        .collect();
    let want: Vec<ItemId> = big[..4].iter().map(|j| j.item_id).collect();
    assert_eq!(big_order, want);
}

#[tokio::test]
async fn a_blocked_dequeue_wakes_up_on_enqueue_without_polling() {
    let prefix = TestPrefix::create().await;
    // A poll interval far above the expected wake-up: only the signal can wake it.
    let config = prefix
        .config(Duration::from_secs(30))
        .with_poll_interval(Duration::from_secs(5));
    let consumer = Arc::new(RedisQueue::connect(config.clone()).await.unwrap());
    let producer = RedisQueue::connect(config).await.unwrap();
    let c = Arc::clone(&consumer);
    let waiter = tokio::spawn(async move {
        let started = Instant::now();
        let got = c.dequeue(10, Duration::from_secs(4)).await.unwrap();
        (got, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Other commands are not stalled by the blocked read.
    let t = Instant::now();
    producer.ping().await.unwrap();
    consumer.ping().await.unwrap();
    // (A stall behind the blocked read would last its full 4-5 s.)
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    let j = job("acme");
    producer.enqueue(std::slice::from_ref(&j)).await.unwrap();
    let (got, waited) = waiter.await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].job, j);
    assert!(
        waited < Duration::from_millis(1500),
        "woke up late: {waited:?}"
    );
}

#[tokio::test]
async fn dequeue_returns_empty_after_wait() {
    let prefix = TestPrefix::create().await;
    let q = prefix.queue(Duration::from_secs(30)).await;
    let started = Instant::now();
    assert!(q
        .dequeue(5, Duration::from_millis(300))
        .await
        .unwrap()
        .is_empty());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(290), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");
}

#[tokio::test]
async fn concurrent_consumers_never_share_a_delivery() {
    let prefix = TestPrefix::create().await;
    let q = Arc::new(prefix.queue(Duration::from_secs(30)).await);
    let jobs: Vec<Job> = (0..400).map(|i| job(["a", "b", "c", "d"][i % 4])).collect();
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let q = Arc::clone(&q);
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = q.dequeue(7, Duration::from_millis(500)).await.unwrap();
                if got.is_empty() {
                    return mine;
                }
                q.ack(&receipts(&got)).await.unwrap();
                mine.extend(got.into_iter().map(|d| d.job.item_id));
            }
        }));
    }
    q.enqueue(&jobs).await.unwrap();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 400);
    assert_eq!(all.iter().collect::<HashSet<_>>().len(), 400);
}

#[tokio::test]
async fn empty_calls_and_unknown_receipts_are_no_ops() {
    let prefix = TestPrefix::create().await;
    let q = prefix.queue(Duration::from_secs(30)).await;
    q.enqueue(&[]).await.unwrap();
    q.ack(&[]).await.unwrap();
    q.ack(&[Receipt("nope".into()), Receipt(String::new())])
        .await
        .unwrap();
    q.ping().await.unwrap();
    assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
    assert!(prefix.keys().await.is_empty(), "{:?}", prefix.keys().await);
}

#[tokio::test]
async fn the_queue_keeps_working_after_its_keys_are_deleted() {
    let prefix = TestPrefix::create().await;
    let q = prefix.queue(Duration::from_secs(30)).await;
    q.enqueue(&(0..10).map(|_| job("a")).collect::<Vec<_>>())
        .await
        .unwrap();
    let got = q.dequeue(3, Duration::ZERO).await.unwrap();
    assert!(prefix.delete_keys().await > 0);
    // Acks of lost deliveries are no-ops; new work flows again.
    q.ack(&receipts(&got)).await.unwrap();
    assert_eq!(q.depth().await.unwrap(), QueueDepth::default());
    let j = job("a");
    q.enqueue(std::slice::from_ref(&j)).await.unwrap();
    let again = q.dequeue(3, Duration::from_secs(1)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].job, j);
}

#[tokio::test]
async fn an_unreachable_redis_is_unavailable() {
    // Nothing listens on port 1.
    let config =
        RedisConfig::new("redis://127.0.0.1:1").with_connection_timeout(Duration::from_millis(200));
    let err = RedisQueue::connect(config.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    assert!(std::error::Error::source(&err).is_some());

    let lazy = RedisQueue::connect_lazy(config).unwrap();
    let err = lazy.enqueue(&[job("a")]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let err = lazy
        .dequeue(1, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");

    let err = RedisQueue::connect(RedisConfig::new("nonsense://x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid, "{err}");
}

#[tokio::test]
async fn debug_output_hides_the_password() {
    let q = RedisQueue::connect_lazy(RedisConfig::new("redis://u:hunter2@127.0.0.1:1")).unwrap();
    let shown = format!("{q:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
}
