//! The benchmarks' workloads: requests, a completion wait, worker settings
//! from the environment.

use std::time::Duration;

use onboarding::model::{BatchId, TenantId};
use onboarding::validate::SubmitRequest;
use onboarding::{OnboardingService, SubmitOptions, WorkerConfig};
use onboarding_core::testing::{eventually_every, requests};

/// A request of `n` organizations whose domains carry `tag` (unique per call site).
pub fn request(n: usize, tag: &str) -> SubmitRequest {
    requests::request(tag, 0..n)
}

/// The same request as a JSON body.
pub fn json_body(n: usize, tag: &str) -> serde_json::Value {
    requests::request_json(tag, 0..n)
}

pub use requests::unique_tag;

/// Submits `batches` requests of `per_batch` organizations each (fresh
/// domains) for `tenant`; returns their batch ids.
pub async fn submit_batches(
    service: &OnboardingService,
    tenant: &TenantId,
    batches: usize,
    per_batch: usize,
) -> Vec<BatchId> {
    let mut ids = Vec::with_capacity(batches);
    for _ in 0..batches {
        let accepted = service
            .submit(
                tenant,
                &request(per_batch, &unique_tag()),
                SubmitOptions::default(),
            )
            .await
            .expect("accepted");
        ids.push(accepted.batch_id);
    }
    ids
}

/// Polls until every item of `batches` is finished (panics after 10 minutes).
pub async fn wait_finished(service: &OnboardingService, tenant: &TenantId, batches: &[BatchId]) {
    wait_finished_every(service, tenant, batches, Duration::from_millis(2)).await;
}

/// Polls the repository every `poll` until every item of `batches` is
/// finished (panics after 10 minutes).
pub async fn wait_finished_every(
    service: &OnboardingService,
    tenant: &TenantId,
    batches: &[BatchId],
    poll: Duration,
) {
    let repository = &service.backends().repository;
    for batch in batches {
        eventually_every(
            "the batch to finish",
            Duration::from_secs(600),
            poll,
            || async {
                // `None`: an import's batch is created right after its answer.
                let status = repository
                    .batch_status(tenant, *batch)
                    .await
                    .expect("status")?;
                status.is_finished().then_some(())
            },
        )
        .await;
    }
}

/// A `usize` from the environment, or `default` when unset or unparsable.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Worker concurrency of the throughput benchmarks (`BENCH_CONCURRENCY`, default 256).
pub fn concurrency() -> usize {
    env_usize("BENCH_CONCURRENCY", 256)
}

/// The worker configuration of the throughput benchmarks: concurrency as
/// above, `claim_batch` = `BENCH_CLAIM_BATCH` and `flush_max` =
/// `BENCH_FLUSH_MAX` (library defaults, 500 each, when unset).
pub fn worker_config() -> WorkerConfig {
    let mut config = WorkerConfig::default().with_concurrency(concurrency());
    config.claim_batch = env_usize("BENCH_CLAIM_BATCH", config.claim_batch);
    config.flush_max = env_usize("BENCH_FLUSH_MAX", config.flush_max);
    config
}
