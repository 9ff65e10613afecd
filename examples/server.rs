//! The bulk-onboarding HTTP server, with in-process workers.
//!
//! `cargo run --release --example server` runs on SQLite, the SQL table
//! queue and an in-memory cache, generates an API key and prints a curl line
//! to try it. Every setting is a flag with an environment fallback
//! (`--help` lists them; the README describes them).

mod common;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Parser;
use common::serving::{operator_addr, start_operator};
use common::{print_line, CommonArgs};
use onboarding::model::TenantId;
use onboarding::web::{router, serve, ApiKeys, HttpConfig, Metrics, RateLimit};
use onboarding::{IngestConfig, OnboardingService, Worker, WorkerConfig};

/// Bulk organization onboarding over HTTP.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Listen address.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    bind_addr: SocketAddr,
    /// `tenant:key,tenant2:key2`; unset: one key is generated and printed.
    #[arg(long, env = "API_KEYS", hide_env_values = true)]
    api_keys: Option<String>,
    /// Per-key request rate, e.g. `10/s`, `600/m` (burst = 2x the rate).
    #[arg(long, env = "RATE_LIMIT", default_value = "10/s")]
    rate_limit: String,
    /// Backpressure: submissions handled at once; one more is answered 503
    /// at once with Retry-After (`0` = no limit).
    #[arg(long, env = "MAX_CONCURRENT_SUBMISSIONS", default_value_t = HttpConfig::DEFAULT_MAX_CONCURRENT_SUBMISSIONS)]
    max_concurrent_submissions: usize,
    /// Backpressure: organizations that may wait in the queue; a submission
    /// past it is answered 503 with Retry-After, nothing stored (`0` = no limit).
    #[arg(long, env = "MAX_BACKLOG", default_value_t = IngestConfig::DEFAULT_MAX_BACKLOG)]
    max_backlog: u64,
    /// Operator endpoints (`/health`, `/ready`, `/metrics`, no auth): keep
    /// it private; `off` turns them off.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9090")]
    metrics_addr: String,
    #[command(flatten)]
    common: CommonArgs,
}

#[tokio::main]
async fn main() -> ExitCode {
    common::run_main(|| run(Args::parse())).await
}

async fn run(args: Args) -> Result<(), String> {
    let rate_limit = RateLimit::parse(&args.rate_limit).map_err(|e| format!("RATE_LIMIT: {e}"))?;
    let connected = common::connect(&args.common).await?;
    let metrics = Metrics::new();
    // The worker engine reports through the global recorder: this one.
    metrics.install().map_err(|e| e.to_string())?;
    let ingest =
        IngestConfig::default().with_max_backlog(Some(args.max_backlog).filter(|n| *n > 0));
    let service =
        OnboardingService::new(connected.backends.clone(), args.common.hooks.ingest(ingest));

    let keys = match args.api_keys.as_deref().filter(|k| !k.trim().is_empty()) {
        Some(list) => ApiKeys::parse(list).map_err(|e| format!("API_KEYS: {e}"))?,
        None if !args.common.generate_secrets => {
            return Err(
                "API_KEYS is unset (and GENERATE_SECRETS=false): set API_KEYS=tenant:key,…".into(),
            )
        }
        None => {
            let key = ApiKeys::generate_key();
            let tenant = TenantId::parse("default").map_err(|e| e.to_string())?;
            print_line(&format!(
                "API_KEYS is unset; generated a key for tenant \"default\". Try:\n\n  curl -i -X POST http://{}/api/bulk-onboard -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{\"organizations\":[{{\"name\":\"Acme Corporation\",\"domain\":\"acme.com\",\"contact_email\":\"contact@acme.com\"}}]}}'\n\n  then: curl -H 'Authorization: Bearer {key}' http://{}/api/v1/batches/<batch_id>\n",
                args.bind_addr, args.bind_addr
            ));
            ApiKeys::new().with_key(tenant, &key)
        }
    };
    let mut config = HttpConfig::builder()
        .api_keys(keys)
        .rate_limit(Some(rate_limit))
        .max_concurrent_submissions(Some(args.max_concurrent_submissions).filter(|n| *n > 0))
        .metrics(metrics.clone());
    if let Some(ms) = args.common.hooks.request_timeout_ms {
        config = config.request_timeout(std::time::Duration::from_millis(ms));
    }
    if let Some(webhooks) = connected.webhooks.clone() {
        config = config.webhooks(webhooks);
    }
    let app = router(service.clone(), config.build());
    let serve_config = args.common.serve.config();
    if let Some(addr) = operator_addr(&args.metrics_addr) {
        start_operator(addr, service, metrics, serve_config.clone()).await?;
    }

    let worker = if args.common.workers > 0 {
        let processor = common::processor(&args.common)?;
        let config = args
            .common
            .hooks
            .worker(WorkerConfig::default().with_concurrency(args.common.workers));
        Some(Worker::new(connected.backends.clone(), processor, config).start())
    } else {
        if args.common.urls().is_in_memory() {
            tracing::warn!(
                "WORKERS=0 with DATABASE_URL=memory: nothing will ever process the batches"
            );
        }
        None
    };

    let listener = tokio::net::TcpListener::bind(args.bind_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.bind_addr))?;
    tracing::info!(
        addr = %args.bind_addr, workers = args.common.workers,
        "listening"
    );
    serve(listener, app, serve_config, common::shutdown_signal()).await;
    if let Some(worker) = worker {
        let report = worker.shutdown().await;
        tracing::info!(released = report.released, stats = ?report.stats, "workers stopped");
    }
    Ok(())
}
