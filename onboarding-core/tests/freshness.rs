//! DESIGN §2 guarantee 11, one truth across processes: a server's answer
//! is at most [`FRESHNESS`] (1 s) behind the database, also when the work
//! is done by another process that cannot invalidate this one's cache.
//!
//! The two "processes" are two sets of backends over one repository and one
//! queue (the shared database), each with its own `MemoryCache`, as an
//! HTTP-only server and a separate worker process have.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use onboarding_core::limits::{Admission, BacklogLedger, MemoryLedger};
use onboarding_core::memory::{MemoryCache, MemoryQueue, MemoryRepository, TracingEventSink};
use onboarding_core::model::TenantId;
use onboarding_core::repository::OrgRepository;
use onboarding_core::validate::{OrganizationInput, SubmitRequest};
use onboarding_core::{
    Backends, ErrorKind, IngestConfig, NoopProcessor, OnboardingService, SubmitOptions, Worker,
    WorkerConfig, FRESHNESS,
};

fn request(n: usize, tag: &str) -> SubmitRequest {
    SubmitRequest {
        organizations: (0..n)
            .map(|i| OrganizationInput {
                name: format!("Org {i}"),
                domain: format!("o{i}-{tag}.example.com"),
                contact_email: format!("ops{i}@example.com"),
            })
            .collect(),
        on_conflict: Default::default(),
        mode: Default::default(),
    }
}

/// One process's view of the shared database: its own cache.
fn process(repository: &Arc<MemoryRepository>, queue: &Arc<MemoryQueue>) -> Backends {
    Backends::new(
        repository.clone(),
        queue.clone(),
        Arc::new(MemoryCache::default()),
        Arc::new(TracingEventSink),
    )
}

#[tokio::test]
async fn a_servers_status_is_fresh_within_a_second_of_another_processs_work() {
    let repository = Arc::new(MemoryRepository::new());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let server = OnboardingService::new(process(&repository, &queue), IngestConfig::default());
    let tenant = TenantId::parse("acme").unwrap();
    let accepted = server
        .submit(&tenant, &request(20, "fresh"), SubmitOptions::default())
        .await
        .unwrap();
    // The server answers (and caches) the status while nothing is done.
    let before = server
        .batch_status(&tenant, accepted.batch_id)
        .await
        .unwrap();
    assert_eq!(before.counts.finished(), 0);

    // A worker in another process does the work; it cannot reach the
    // server's cache.
    let worker = Worker::new(
        process(&repository, &queue),
        Arc::new(NoopProcessor),
        WorkerConfig::default().with_poll_wait(Duration::from_millis(50)),
    )
    .start();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // The database itself, no cache in between.
        let status = repository
            .batch_status(&tenant, accepted.batch_id)
            .await
            .unwrap()
            .unwrap();
        if status.counts.finished() == 20 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker did not finish: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let done_at = Instant::now();

    // From then on the server must say so within FRESHNESS.
    let limit = FRESHNESS + Duration::from_millis(500);
    loop {
        let status = server
            .batch_status(&tenant, accepted.batch_id)
            .await
            .unwrap();
        if status.counts.finished() == 20 {
            break;
        }
        assert!(
            done_at.elapsed() < limit,
            "the server still answers {:?} finished of 20 {:?} after the database said 20",
            status.counts.finished(),
            done_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
}

#[tokio::test]
async fn servers_sharing_a_ledger_hold_one_backlog_limit() {
    let repository = Arc::new(MemoryRepository::new());
    let queue = Arc::new(MemoryQueue::new(Duration::from_secs(30)));
    let ledger: Arc<dyn BacklogLedger> = Arc::new(MemoryLedger::default());
    let config = IngestConfig::default()
        .with_max_backlog(Some(10))
        .with_backlog_refresh(Duration::from_secs(3600));
    let servers: Vec<OnboardingService> = (0..2)
        .map(|_| {
            OnboardingService::with_ledger(
                process(&repository, &queue),
                config.clone(),
                ledger.clone(),
            )
        })
        .collect();
    let tenant = TenantId::parse("acme").unwrap();
    // Something waits, so the limit applies from the first request.
    servers[0]
        .submit(&tenant, &request(1, "seed"), SubmitOptions::default())
        .await
        .unwrap();
    let mut accepted = 1;
    for i in 0..10 {
        let server = &servers[i % 2];
        match server
            .submit(
                &tenant,
                &request(3, &format!("r{i}")),
                SubmitOptions::default(),
            )
            .await
        {
            Ok(a) => accepted += a.organizations_count,
            Err(e) => assert_eq!(e.kind(), ErrorKind::Overloaded),
        }
    }
    assert_eq!(
        accepted, 10,
        "both servers together admitted up to the limit, no more"
    );
    let answer = ledger
        .admit(1, 10, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        answer.map(|a| a.admission),
        Some(Admission::Refused { waiting: 10 })
    );
}
