//! Validation and storage of one 1000-organization submission.
//!
//! Run: `cargo bench --bench ingest` (memory only; the SQL engines join
//! this file with their adapter).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use onboarding::model::TenantId;
use onboarding::validate::{validate_json, JsonBody, Limits};
use onboarding::{Backends, IngestConfig, OnboardingService, SubmitOptions};
use onboarding_bench::workload;

fn validation(c: &mut Criterion) {
    let body = workload::json_body(1000, "validate");
    let limits = Limits::default();
    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("1000_organizations_json", |b| {
        b.iter(|| validate_json(std::hint::black_box(&body), &limits).expect("valid"))
    });
    // From the bytes, as over HTTP: parsed into a `Value` (before), or
    // read by `JsonBody`'s typed fast path.
    let bytes = serde_json::to_vec(&body).expect("json");
    group.bench_function("1000_organizations_bytes_via_value", |b| {
        b.iter(|| {
            let value: serde_json::Value =
                serde_json::from_slice(std::hint::black_box(&bytes)).expect("json");
            validate_json(&value, &limits).expect("valid")
        })
    });
    group.bench_function("1000_organizations_bytes_typed", |b| {
        b.iter(|| {
            JsonBody::parse(std::hint::black_box(&bytes))
                .expect("json")
                .validate(&limits)
                .expect("valid")
        })
    });
    group.finish();
}

fn store(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Nothing drains the queue here: the backlog limit would refuse after 1,000,000.
    let service = OnboardingService::new(
        Backends::memory(),
        IngestConfig::default().with_max_backlog(None),
    );
    let tenant = TenantId::parse("bench").expect("tenant");
    let mut group = c.benchmark_group("store_submission");
    group.throughput(Throughput::Elements(1000));
    group.bench_function("memory_1000", |b| {
        b.iter_batched(
            || {
                service
                    .validate(&workload::request(1000, &workload::unique_tag()))
                    .expect("valid")
            },
            |valid| {
                runtime
                    .block_on(service.submit_valid(&tenant, valid, SubmitOptions::default()))
                    .expect("stored")
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, validation, store);
criterion_main!(benches);
