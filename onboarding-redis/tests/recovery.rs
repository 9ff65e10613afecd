//! The database is the truth: the queue's keys are deleted while a worker
//! runs over a batch, and every item still completes, exactly once, through
//! the sweeper.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use onboarding_core::memory::{MemoryRepository, TracingEventSink};
use onboarding_core::model::{ItemId, TenantId};
use onboarding_core::repository::OrgRepository;
use onboarding_core::testing::eventually;
use onboarding_core::{
    Backends, IngestConfig, OnboardingService, ProcessError, Processor, SubmitOptions, WorkItem,
    Worker, WorkerConfig,
};
use onboarding_redis::testing::TestPrefix;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_item_completes_when_the_queue_loses_its_keys_mid_run() {
    const N: usize = 300;
    let prefix = TestPrefix::create().await;
    let stale_after = Duration::from_millis(600);
    let repository = Arc::new(MemoryRepository::new());
    let backends = Backends::new(
        repository.clone(),
        Arc::new(prefix.queue(Duration::from_secs(2)).await),
        Arc::new(prefix.cache().await),
        Arc::new(TracingEventSink),
    );
    let service = OnboardingService::new(
        backends.clone(),
        IngestConfig::default().with_stale_after(stale_after),
    );
    let tenant = TenantId::parse("recovery").unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let organizations: Vec<serde_json::Value> = (0..N)
        .map(|i| {
            serde_json::json!({
                "name": format!("Org {i}"),
                "domain": format!("org-{i}-{run}.com"),
                "contact_email": format!("admin@org-{i}-{run}.com"),
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
    assert_eq!(accepted.queued as usize, N);

    let processor = Arc::new(SlowProcessor::default());
    let config = WorkerConfig::default()
        .with_concurrency(4)
        .with_lease(Duration::from_secs(3))
        .with_poll_wait(Duration::from_millis(200))
        .with_sweep(Duration::from_millis(200), stale_after);
    let worker = Worker::new(backends.clone(), processor.clone(), config).start();

    let status = || async {
        repository
            .batch_status(&tenant, accepted.batch_id)
            .await
            .unwrap()
            .unwrap()
    };
    // Let the worker get going, then wipe the queue (ready, delayed and
    // in-flight entries, the rotation, the cache) a few times while it runs.
    eventually("progress", Duration::from_secs(20), || async {
        (status().await.counts.completed >= 20).then_some(())
    })
    .await;
    let mut wipes = 0;
    for _ in 0..3 {
        if status().await.is_finished() {
            break;
        }
        if prefix.delete_keys().await > 0 {
            wipes += 1;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        wipes > 0,
        "the batch finished before the queue could be wiped"
    );
    assert!(
        !status().await.is_finished() || wipes > 0,
        "nothing was lost, so nothing was tested"
    );

    let last = eventually(
        "every item to finish after the queue lost its keys",
        Duration::from_secs(60),
        || async {
            let s = status().await;
            if s.is_finished() {
                Ok(s)
            } else {
                Err(s.counts)
            }
        },
    )
    .await;
    let stats = worker.stats();
    let report = worker.shutdown().await;
    // The sweeper put the lost wake-ups back.
    assert!(stats.swept > 0, "{stats:?}");
    assert_eq!(last.counts.completed as usize, N, "{:?}", last.counts);
    assert_eq!(last.counts.failed, 0);
    let attempts = processor.attempts.lock().unwrap();
    assert_eq!(attempts.len(), N, "every item was processed");
    let _ = report;
}
