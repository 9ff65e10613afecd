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
    common::init_logging();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let stack = common::build(&args.common).await?;
    if stack.in_memory {
        return Err("a standalone worker needs a shared DATABASE_URL (sqlite://, postgres:// or mysql://), not memory".into());
    }
    let processor = common::processor(&args.common)?;
    let config = args
        .common
        .hooks
        .worker(WorkerConfig::default().with_concurrency(args.common.workers.max(1)));
    let worker = Worker::new(stack.backends.clone(), processor, config).start();
    // Any process sends due webhook deliveries.
    let deliveries = stack.webhooks.start();
    tracing::info!(
        concurrency = args.common.workers.max(1),
        database = %common::redact(&args.common.database_url),
        queue = %common::redact(&args.common.queue_url),
        "worker running"
    );
    common::shutdown_signal().await;
    deliveries.stop();
    let report = worker.shutdown().await;
    tracing::info!(released = report.released, stats = ?report.stats, "worker stopped");
    stack.close().await;
    Ok(())
}
