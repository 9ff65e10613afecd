//! Races on Redis Cluster: enqueues and takes of many tenants at once.
//! Each call there runs in steps (tenant groups, then the global group), so
//! the global group lags behind the tenant groups between steps; no tenant
//! may be stranded (entries in its lane or delayed set, no rotation entry or
//! timer) and nothing may be delivered twice. No sweeper runs here: a
//! stranded job fails the test.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onboarding_core::model::{now, ItemId, TenantId};
use onboarding_core::{Job, JobQueue, QueueDepth, Receipt};
use onboarding_redis::testing::TestCluster;
use onboarding_redis::RedisQueue;

const TENANTS: usize = 8;
const PRODUCERS: usize = 4;
const CALLS_PER_PRODUCER: usize = 60;
const CONSUMERS: usize = 4;

fn job(tenant: usize, delay: Option<Duration>) -> Job {
    Job {
        item_id: ItemId::new(),
        tenant: TenantId::parse(format!("racer-{tenant}")).unwrap(),
        not_before: delay.map(|d| now() + chrono::Duration::from_std(d).unwrap()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_enqueues_and_takes_deliver_every_job_exactly_once() {
    // No redelivery during the test: each job must come exactly once.
    let config = TestCluster::config(Duration::from_secs(120))
        .await
        .with_poll_interval(Duration::from_millis(50));
    let queue = Arc::new(RedisQueue::connect(config).await.unwrap());

    let sent = Arc::new(Mutex::new(HashSet::new()));
    let producing = Arc::new(AtomicUsize::new(PRODUCERS));
    let mut producers = Vec::new();
    for p in 0..PRODUCERS {
        let (queue, sent, producing) = (queue.clone(), sent.clone(), producing.clone());
        producers.push(tokio::spawn(async move {
            for i in 0..CALLS_PER_PRODUCER {
                // 1-5 jobs of one or two tenants; every 7th call delayed.
                let delay = (i % 7 == 0).then(|| Duration::from_millis(200));
                let jobs: Vec<Job> = (0..=(i % 5))
                    .map(|j| job((p * 3 + i + j / 3) % TENANTS, delay))
                    .collect();
                queue.enqueue(&jobs).await.unwrap();
                sent.lock().unwrap().extend(jobs.iter().map(|j| j.item_id));
            }
            producing.fetch_sub(1, Ordering::SeqCst);
        }));
    }

    let received = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        let (queue, sent, producing, received) = (
            queue.clone(),
            sent.clone(),
            producing.clone(),
            received.clone(),
        );
        consumers.push(tokio::spawn(async move {
            loop {
                let done = producing.load(Ordering::SeqCst) == 0
                    && received.lock().unwrap().len() >= sent.lock().unwrap().len();
                if done || Instant::now() > deadline {
                    return;
                }
                let got = queue.dequeue(3, Duration::from_millis(100)).await.unwrap();
                let receipts: Vec<Receipt> = got.iter().map(|d| d.receipt.clone()).collect();
                received
                    .lock()
                    .unwrap()
                    .extend(got.iter().map(|d| d.job.item_id));
                queue.ack(&receipts).await.unwrap();
            }
        }));
    }
    for task in producers.into_iter().chain(consumers) {
        task.await.unwrap();
    }

    let sent = sent.lock().unwrap().clone();
    let received = received.lock().unwrap().clone();
    let unique: HashSet<ItemId> = received.iter().copied().collect();
    assert_eq!(unique.len(), received.len(), "a job was delivered twice");
    let missing = sent.difference(&unique).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} jobs never delivered (a tenant was stranded)",
        sent.len()
    );
    assert_eq!(unique, sent);
    assert_eq!(queue.depth().await.unwrap(), QueueDepth::default());
}
