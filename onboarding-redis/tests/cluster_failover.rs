//! A master of the Redis Cluster dies while a worker runs over a backlog:
//! its replica is promoted, and every item still completes, exactly once
//! (the sweeper re-delivers what the failover lost).
//!
//! The cluster (three masters, three replicas, node timeout 1 s) is this
//! test binary's own; the master killed is the one serving the queue's
//! global key group, which every queue call goes through.

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onboarding_core::memory::{MemoryRepository, TracingEventSink};
use onboarding_core::model::{BatchId, TenantId};
use onboarding_core::repository::OrgRepository;
use onboarding_core::testing::guarantees::ScriptedProcessor;
use onboarding_core::testing::{eventually, requests};
use onboarding_core::{
    Backends, IngestConfig, OnboardingService, SubmitOptions, Worker, WorkerConfig,
};
use onboarding_redis::testing::TestCluster;
use onboarding_redis::{RedisCache, RedisQueue};

/// Runs blocking cluster administration off the async workers.
async fn admin<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_completes_when_a_master_fails_over_mid_run() {
    const TENANTS: usize = 6;
    const PER_TENANT: usize = 60;
    let config = TestCluster::config(Duration::from_secs(2))
        .await
        .with_response_timeout(Duration::from_secs(1));
    let prefix = config.prefix.clone();
    let cluster = admin(TestCluster::shared).await;
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

    let tag = requests::unique_tag();
    let mut batches: Vec<(TenantId, BatchId)> = Vec::new();
    for t in 0..TENANTS {
        let tenant = TenantId::parse(format!("tenant-{t}")).unwrap();
        let range = t * PER_TENANT..(t + 1) * PER_TENANT;
        let accepted = service
            .submit_json(
                &tenant,
                &requests::request_json(&tag, range),
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

    let processor = ScriptedProcessor::new();
    processor.set_delay(Duration::from_millis(15));
    let worker_config = WorkerConfig::default()
        .with_concurrency(4)
        .with_lease(Duration::from_secs(3))
        .with_poll_wait(Duration::from_millis(200))
        .with_sweep(Duration::from_millis(200), stale_after);
    let worker = Worker::new(backends.clone(), processor.clone(), worker_config).start();

    // Completed items over all batches, and whether every batch is finished.
    let progress = || async {
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
    eventually("30 items completed", Duration::from_secs(30), || async {
        (progress().await.0 >= 30).then_some(())
    })
    .await;

    admin(move || cluster.kill(victim)).await;
    let (done_at_kill, finished_at_kill) = progress().await;
    assert!(
        !finished_at_kill,
        "the backlog was done before the failover"
    );
    let promoted = admin(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if cluster.is_master(replica) {
                return cluster.wait_until_healthy(Duration::from_secs(30));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err("no promotion within 30 s".to_owned())
    })
    .await;
    assert!(
        promoted.is_ok(),
        "the replica of the killed master was not promoted: {promoted:?}"
    );

    let total = TENANTS * PER_TENANT;
    eventually(
        "every item to complete after the failover",
        Duration::from_secs(120),
        || async {
            match progress().await {
                (done, true) => Ok(done),
                (done, false) => Err(format!(
                    "{done} of {total} completed ({done_at_kill} at the kill)"
                )),
            }
        },
    )
    .await;
    assert_eq!(progress().await.0, total);
    worker.shutdown().await;
    for n in 0..total {
        let domain = requests::domain(&tag, n);
        assert!(
            processor.calls(&domain) >= 1,
            "{domain} was never processed"
        );
    }
}
