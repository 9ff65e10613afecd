//! A sink that hangs on `BatchCompleted` (a dead webhook endpoint) must not
//! hold up recording the results of other batches.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onboarding_core::memory::{MemoryCache, MemoryQueue, MemoryRepository};
use onboarding_core::model::TenantId;
use onboarding_core::validate::{OrganizationInput, SubmitRequest};
use onboarding_core::{
    Backends, Event, EventSink, IngestConfig, NoopProcessor, OnboardingService, OrgRepository,
    Result, SubmitOptions, Worker, WorkerConfig,
};
use tokio::sync::Notify;

/// Hangs on every `BatchCompleted` until released.
struct HangingSink {
    release: Notify,
}

#[async_trait]
impl EventSink for HangingSink {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        if events
            .iter()
            .any(|e| matches!(e, Event::BatchCompleted { .. }))
        {
            self.release.notified().await;
        }
        Ok(())
    }
}

fn request(n: usize, tag: &str) -> SubmitRequest {
    SubmitRequest {
        organizations: (0..n)
            .map(|i| OrganizationInput {
                name: format!("Org {i}"),
                domain: format!("org{i}-{tag}.example.com"),
                contact_email: format!("ops{i}@example.com"),
            })
            .collect(),
        on_conflict: Default::default(),
        mode: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_sink_does_not_stop_results_being_recorded() {
    let sink = Arc::new(HangingSink {
        release: Notify::new(),
    });
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
    let first = service
        .submit(&tenant, &request(5, "first"), SubmitOptions::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    // The first batch completes and its announcement hangs; the second batch
    // submitted afterwards must still have every result recorded.
    loop {
        let s = repo
            .batch_status(&tenant, first.batch_id)
            .await
            .unwrap()
            .unwrap();
        if s.batch.completed_at.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "first batch never completed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let second = service
        .submit(&tenant, &request(5, "second"), SubmitOptions::default())
        .await
        .unwrap();
    loop {
        let s = repo
            .batch_status(&tenant, second.batch_id)
            .await
            .unwrap()
            .unwrap();
        if s.counts.completed == 5 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "results of the second batch were held up by the hanging sink: {:?}",
            s.counts
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sink.release.notify_waiters();
    // Shutdown waits for announcements in progress; release any that start late.
    let release = tokio::spawn({
        let sink = sink.clone();
        async move {
            loop {
                sink.release.notify_waiters();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    worker.shutdown().await;
    release.abort();
}
