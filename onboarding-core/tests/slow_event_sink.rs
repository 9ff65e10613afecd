//! A sink that hangs on `BatchCompleted` (a dead webhook endpoint) must not
//! hold up recording the results of other batches.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use onboarding_core::memory::{MemoryCache, MemoryQueue, MemoryRepository, TracingEventSink};
use onboarding_core::model::TenantId;
use onboarding_core::testing::doubles::{Action, Double};
use onboarding_core::testing::fixtures::until_batch;
use onboarding_core::testing::requests::request;
use onboarding_core::{
    Backends, Event, IngestConfig, NoopProcessor, OnboardingService, SubmitOptions, Worker,
    WorkerConfig,
};
use tokio::sync::Semaphore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_sink_does_not_stop_results_being_recorded() {
    // Every publish with a `BatchCompleted` waits at the gate until it closes.
    let gate = Arc::new(Semaphore::new(0));
    let sink = Arc::new(Double::new(Arc::new(TracingEventSink)).with_hook({
        let gate = gate.clone();
        move |call| {
            if call
                .events
                .iter()
                .any(|e| matches!(e, Event::BatchCompleted { .. }))
            {
                Action::Gate(gate.clone())
            } else {
                Action::Forward
            }
        }
    }));
    let repo = Arc::new(MemoryRepository::new());
    let backends = Backends::new(
        repo.clone(),
        Arc::new(MemoryQueue::default()),
        Arc::new(MemoryCache::default()),
        sink.clone(),
    );
    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
    let worker = Worker::new(
        backends,
        Arc::new(NoopProcessor),
        WorkerConfig::default().with_sweeper(false),
    )
    .start();
    let tenant = TenantId::parse("acme").unwrap();
    let submit = |tag: &'static str| {
        let (service, tenant) = (service.clone(), tenant.clone());
        async move {
            service
                .submit(&tenant, &request(tag, 0..5), SubmitOptions::default())
                .await
                .unwrap()
                .batch_id
        }
    };
    let within = Duration::from_secs(20);
    // The first batch completes and its announcement hangs; the second batch
    // submitted afterwards must still have every result recorded.
    let first = submit("first").await;
    let what = "the first batch to complete";
    until_batch(&*repo, &tenant, first, what, within, |s| {
        s.batch.completed_at.is_some()
    })
    .await;
    let second = submit("second").await;
    let what = "the results of the second batch, not held up by the hanging sink";
    until_batch(&*repo, &tenant, second, what, within, |s| {
        s.counts.completed == 5
    })
    .await;
    assert!(sink.calls("publish") > 0);
    // Shutdown waits for announcements in progress: a closed gate lets them
    // (and any that start late) through.
    gate.close();
    worker.shutdown().await;
}
