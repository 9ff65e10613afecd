//! Worker throughput with a no-op processor: time from submission until
//! every item of 10 batches × 1000 organizations is finished.
//!
//! Run: `cargo bench --bench worker`.

#![allow(missing_docs)] // criterion_group! generates undocumented items

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use onboarding::model::TenantId;
use onboarding::{Backends, IngestConfig, NoopProcessor, OnboardingService, Worker, WorkerConfig};
use onboarding_bench::workload;

const BATCHES: usize = 10;
const PER_BATCH: usize = 1000;

fn throughput(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("worker_noop");
    group.throughput(Throughput::Elements((BATCHES * PER_BATCH) as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("memory", |b| {
        b.iter_custom(|iters| {
            runtime.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let backends = Backends::memory();
                    let service = OnboardingService::new(backends.clone(), IngestConfig::default());
                    let tenant = TenantId::parse("bench").expect("tenant");
                    let worker = Worker::new(
                        backends,
                        Arc::new(NoopProcessor),
                        WorkerConfig::default().with_concurrency(64),
                    )
                    .start();
                    let started = Instant::now();
                    let batches =
                        workload::submit_batches(&service, &tenant, BATCHES, PER_BATCH).await;
                    workload::wait_finished(&service, &tenant, &batches).await;
                    total += started.elapsed();
                    worker.shutdown().await;
                }
                total
            })
        })
    });
    group.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
