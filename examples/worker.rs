//! A standalone bulk-onboarding worker: processes the batches that servers
//! (run with `WORKERS=0`, or not) accept into a shared database and queue.
//!
//! Same flags as the server minus the HTTP ones; exits 0 after a graceful
//! shutdown on SIGINT or SIGTERM.

mod common;

use std::process::ExitCode;

use clap::Parser;
use common::CommonArgs;
use onboarding::{Worker, WorkerConfig};

/// Bulk organization onboarding worker.
#[derive(Parser)]
#[command(version, about)]
struct Args {
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
    let processor = common::processor(&args.common)?;
    let config = args
        .common
        .hooks
        .worker(WorkerConfig::default().with_concurrency(args.common.workers.max(1)));
    let connected = common::connect(&args.common).await?;
    let worker = Worker::new(connected.backends, processor, config).start();
    tracing::info!(concurrency = args.common.workers.max(1), "worker running");
    common::shutdown_signal().await;
    let report = worker.shutdown().await;
    tracing::info!(released = report.released, stats = ?report.stats, "worker stopped");
    Ok(())
}
