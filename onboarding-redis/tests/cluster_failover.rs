//! A master of the Redis Cluster dies while a worker runs over a backlog:
//! its replica is promoted, and every item still completes, exactly once
//! (the sweeper re-delivers what the failover lost).
//!
//! The cluster (three masters, three replicas, node timeout 1 s) is this
//! test binary's own; the master killed is the one serving the queue's
//! global key group, which every queue call goes through.

#![allow(clippy::unwrap_used)]

mod redis_cluster;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use onboarding_core::memory::{MemoryRepository, TracingEventSink};
use onboarding_core::model::{BatchId, ItemId, TenantId};
use onboarding_core::{
    Backends, IngestConfig, OnboardingService, OrgRepository, ProcessError, Processor,
    SubmitOptions, WorkItem, Worker, WorkerConfig,
};
use onboarding_redis::{RedisCache, RedisConfig, RedisQueue};

/// Takes a little time per item and counts attempts.
#[derive(Default)]
struct SlowProcessor {
    attempts: Mutex<HashMap<ItemId, u32>>,
}

#[async_trait]
impl Processor for SlowProcessor {
    async fn process(&self, item: &WorkItem) -> Result<(), ProcessError> {
        tokio::time::sleep(Duration::from_millis(15)).await;
        *self
            .attempts
            .lock()
            .unwrap()
            .entry(item.item_id)
            .or_default() += 1;
        Ok(())
    }
}

/// Runs blocking cluster administration off the async workers.
async fn admin<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_completes_when_a_master_fails_over_mid_run() {
    const TENANTS: usize = 6;
    const PER_TENANT: usize = 60;
    let cluster = admin(redis_cluster::cluster).await;
    let prefix = format!("failover-{}", uuid::Uuid::new_v4().simple());
    let config = RedisConfig::new(cluster.url())
        .with_prefix(&prefix)
        .with_visibility_timeout(Duration::from_secs(2))
        .with_poll_interval(Duration::from_millis(100))
        .with_response_timeout(Duration::from_secs(1));
    let stale_after = Duration::from_millis(600);
    let repository = Arc::new(MemoryRepository::new());
    let backends = Backends::new(
        repository.clone(),
        Arc::new(RedisQueue::connect(config.clone()).await.unwrap()),
        Arc::new(RedisCache::connect(config).await.unwrap()),
        Arc::new(TracingEventSink),
    );
    let service = OnboardingService::new(
        backends.clone(),
        IngestConfig::default().with_stale_after(stale_after),
    );

    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut batches: Vec<(TenantId, BatchId)> = Vec::new();
    for t in 0..TENANTS {
        let tenant = TenantId::parse(format!("tenant-{t}")).unwrap();
        let organizations: Vec<serde_json::Value> = (0..PER_TENANT)
            .map(|i| {
                serde_json::json!({
                    "name": format!("Org {i}"),
                    "domain": format!("org-{i}-{t}-{run}.com"),
                    "contact_email": format!("admin@org-{i}-{t}-{run}.com"),
                })
            })
            .collect();
        let accepted = service
            .submit_json(
                &tenant,
                &serde_json::json!({ "organizations": organizations }),
                SubmitOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(accepted.queued as usize, PER_TENANT);
        batches.push((tenant, accepted.batch_id));
    }

    // The queue really is spread: the tenants' groups live on more than one
    // master, and the global group on the one about to die.
    let global_key = format!("{prefix}:{{{prefix}}}:q:rotation");
    let tenant_keys: Vec<String> = batches
        .iter()
        .map(|(t, _)| format!("{prefix}:{{{prefix}:{t}}}:q:lane"))
        .collect();
    let (victim, replica, masters) = admin(move || {
        let victim = cluster.master_of(cluster.slot(&global_key));
        let masters: HashSet<u16> = tenant_keys
            .iter()
            .map(|k| cluster.master_of(cluster.slot(k)))
            .collect();
        (victim, cluster.replica_of(victim), masters)
    })
    .await;
    assert!(
        masters.len() > 1,
        "tenant groups on one master only: {masters:?}"
    );

    let processor = Arc::new(SlowProcessor::default());
    let worker_config = WorkerConfig::default()
        .with_concurrency(4)
        .with_lease(Duration::from_secs(3))
        .with_poll_wait(Duration::from_millis(200))
        .with_sweep(Duration::from_millis(200), stale_after);
    let worker = Worker::new(backends.clone(), processor.clone(), worker_config).start();

    let completed = || async {
        let mut done = 0;
        let mut finished = true;
        for (tenant, batch) in &batches {
            let status = repository
                .batch_status(tenant, *batch)
                .await
                .unwrap()
                .unwrap();
            done += status.counts.completed;
            finished &= status.is_finished();
            assert_eq!(status.counts.failed, 0, "{:?}", status.counts);
        }
        (done as usize, finished)
    };
    let started = Instant::now();
    while completed().await.0 < 30 {
        assert!(started.elapsed() < Duration::from_secs(30), "no progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    admin(move || cluster.kill(victim)).await;
    let (done_at_kill, finished_at_kill) = completed().await;
    assert!(
        !finished_at_kill,
        "the backlog was done before the failover"
    );
    let promoted = admin(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if cluster.is_master(replica) {
                return cluster.wait_until_healthy(Duration::from_secs(30)).is_ok();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    })
    .await;
    assert!(
        promoted,
        "the replica of the killed master was not promoted"
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (done, finished) = completed().await;
        if finished {
            assert_eq!(done, TENANTS * PER_TENANT);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "items stuck after the failover: {done} of {} completed ({done_at_kill} at the kill)",
            TENANTS * PER_TENANT
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    worker.shutdown().await;
    let attempts = processor.attempts.lock().unwrap();
    assert_eq!(
        attempts.len(),
        TENANTS * PER_TENANT,
        "every item was processed"
    );
}
