//! Shared helpers for the benchmarks: request builders and a completion wait.
#![allow(dead_code)]

use std::time::Duration;

use onboarding::model::{BatchId, TenantId};
use onboarding::validate::{OrganizationInput, SubmitRequest};
use onboarding::{OnboardingService, WorkerConfig};

/// A request of `n` organizations whose domains carry `tag` (unique per call site).
pub(crate) fn request(n: usize, tag: &str) -> SubmitRequest {
    SubmitRequest {
        organizations: (0..n)
            .map(|i| OrganizationInput {
                name: format!("Organization {i} of {tag}"),
                domain: format!("org{i}-{tag}.example.com"),
                contact_email: format!("ops{i}@example.com"),
            })
            .collect(),
        on_conflict: Default::default(),
        mode: Default::default(),
    }
}

/// The same request as a JSON body.
pub(crate) fn json_body(n: usize, tag: &str) -> serde_json::Value {
    serde_json::to_value(request(n, tag)).expect("serializable")
}

/// A tag unlike any before it in this process.
pub(crate) fn unique_tag() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Polls until every item of `batches` is finished (panics after 10 minutes).
pub(crate) async fn wait_finished(
    service: &OnboardingService,
    tenant: &TenantId,
    batches: &[BatchId],
) {
    wait_finished_every(service, tenant, batches, Duration::from_millis(2)).await;
}

/// Polls the repository every `poll` until every item of `batches` is
/// finished (panics after 10 minutes).
pub(crate) async fn wait_finished_every(
    service: &OnboardingService,
    tenant: &TenantId,
    batches: &[BatchId],
    poll: Duration,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    for batch in batches {
        loop {
            let status = service
                .backends()
                .repository
                .batch_status(tenant, *batch)
                .await
                .expect("status")
                .expect("batch exists");
            if status.is_finished() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "batch {batch} did not finish"
            );
            tokio::time::sleep(poll).await;
        }
    }
}

/// A `usize` from the environment, or `default` when unset or unparsable.
pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Worker concurrency of the throughput benchmarks (`BENCH_CONCURRENCY`, default 256).
pub(crate) fn concurrency() -> usize {
    env_usize("BENCH_CONCURRENCY", 256)
}

/// The worker configuration of the throughput benchmarks: concurrency as
/// above, `claim_batch` = `BENCH_CLAIM_BATCH` and `flush_max` =
/// `BENCH_FLUSH_MAX` (library defaults, 500 each, when unset).
pub(crate) fn worker_config() -> WorkerConfig {
    let mut config = WorkerConfig::default().with_concurrency(concurrency());
    config.claim_batch = env_usize("BENCH_CLAIM_BATCH", config.claim_batch);
    config.flush_max = env_usize("BENCH_FLUSH_MAX", config.flush_max);
    config
}
