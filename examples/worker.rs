//! A standalone bulk-onboarding worker: processes the batches that servers
//! (run with `WORKERS=0`, or not) accept into a shared database and queue.
//!
//! Same flags as the server minus the API ones; serves `/health`, `/ready`
//! and `/metrics` on `METRICS_ADDR` (default `127.0.0.1:9091`); exits 0
//! after a graceful shutdown on SIGINT or SIGTERM.

mod common;

use std::process::ExitCode;

use clap::Parser;
use common::serving::{operator_addr, start_operator};
use common::CommonArgs;
use onboarding::web::Metrics;
use onboarding::{IngestConfig, OnboardingService, Worker, WorkerConfig};

/// Bulk organization onboarding worker.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Operator endpoints (`/health`, `/ready`, `/metrics`, no auth): keep
    /// it private; `127.0.0.1:0` picks a free port (several workers on one
    /// host), `off` turns them off.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9091")]
    metrics_addr: String,
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    common::run_main(|| run(Args::parse())).await
}

async fn run(args: Args) -> Result<(), String> {
    if args.common.urls().is_in_memory() {
        return Err("a standalone worker needs a shared DATABASE_URL (sqlite://, postgres:// or mysql://), not memory".into());
    }
    let connected = common::connect(&args.common, None).await?;
    if let Some(addr) = operator_addr(&args.metrics_addr) {
        let metrics = Metrics::new();
        metrics.install().map_err(|e| e.to_string())?;
        // Readiness and the queue depth only: this service never ingests.
        let service = OnboardingService::new(connected.backends.clone(), IngestConfig::default());
        start_operator(addr, service, metrics, args.common.serve.config()).await?;
    }
    let processor = common::processor(&args.common)?;
    let config = args
        .common
        .hooks
        .worker(WorkerConfig::default().with_concurrency(args.common.workers.max(1)));
    let worker = Worker::new(connected.backends.clone(), processor, config).start();
    // Any process sends due webhook deliveries.
    let deliveries = connected.webhooks.start();
    tracing::info!(concurrency = args.common.workers.max(1), "worker running");
    common::shutdown_signal().await;
    deliveries.stop();
    let report = worker.shutdown().await;
    tracing::info!(released = report.released, stats = ?report.stats, "worker stopped");
    Ok(())
}
