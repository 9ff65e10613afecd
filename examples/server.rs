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
use onboarding::keys::{KeySelector, KeyStore, NewApiKey};
use onboarding::model::{now, TenantId};
use onboarding::web::{
    dashboard_router, router, serve, ApiKeys, DashboardConfig, HttpConfig, Metrics, RateLimit,
};
use onboarding::{IngestConfig, OnboardingService, Worker, WorkerConfig};

/// Bulk organization onboarding over HTTP.
#[derive(Parser)]
#[command(version, about)]
struct Args {
    /// Listen address.
    #[arg(long, env = "BIND_ADDR", default_value = "127.0.0.1:8080")]
    bind_addr: SocketAddr,
    /// `tenant:key,tenant2:key2`: bootstrap keys beside the database's
    /// (`server keys create`); with neither, one key is generated and printed.
    #[arg(long, env = "API_KEYS", hide_env_values = true)]
    api_keys: Option<String>,
    /// Turns on the operator's `/api/v1/admin/…` routes for `Authorization:
    /// Bearer <ADMIN_TOKEN>` (at least 16 characters); unset: no admin routes.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Failed authentications allowed per client address before 429, e.g.
    /// `10/m` (burst = 10); `off` turns the throttle off.
    #[arg(long, env = "AUTH_FAILURE_LIMIT", default_value = "10/m")]
    auth_failure_limit: String,
    /// Per-tenant request rate, e.g. `10/s`, `600/m` (burst = 2x the rate);
    /// shared by every server when CACHE_URL is Redis.
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
    /// The browser dashboard at `/` (signs in with an API key; every action
    /// goes through the API); `false` serves the API alone.
    #[arg(long, env = "DASHBOARD", default_value_t = true, action = clap::ArgAction::Set)]
    dashboard: bool,
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Operator commands, run against DATABASE_URL instead of serving.
#[derive(clap::Subcommand)]
enum Command {
    /// Tenants' API keys in the database.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(clap::Subcommand)]
enum KeysCommand {
    /// Creates a key (and its tenant when new) and prints it once.
    Create {
        /// The tenant the key authenticates as.
        #[arg(long)]
        tenant: String,
        /// What to call the key.
        #[arg(long)]
        label: Option<String>,
    },
    /// Lists keys: prefix, tenant, label, created, revoked.
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revokes a key by its prefix or id: refused everywhere within a second.
    Revoke {
        /// The key's prefix (`obk_…`) or id.
        key: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    common::run_main(|| run(Args::parse())).await
}

async fn run(args: Args) -> Result<(), String> {
    let rate_limit = RateLimit::parse(&args.rate_limit).map_err(|e| format!("RATE_LIMIT: {e}"))?;
    let connected = common::connect(&args.common, Some(rate_limit.rate())).await?;
    if let Some(Command::Keys(command)) = &args.command {
        return keys_command(&*connected.deployment.keys, command).await;
    }
    let metrics = Metrics::new();
    // The worker engine reports through the global recorder: this one.
    metrics.install().map_err(|e| e.to_string())?;
    let ingest =
        IngestConfig::default().with_max_backlog(Some(args.max_backlog).filter(|n| *n > 0));
    let service = OnboardingService::with_ledger(
        connected.backends.clone(),
        args.common.hooks.ingest(ingest),
        connected.deployment.ledger.clone(),
    );

    let keys = match args.api_keys.as_deref().filter(|k| !k.trim().is_empty()) {
        Some(list) => ApiKeys::parse(list).map_err(|e| format!("API_KEYS: {e}"))?,
        None => {
            first_key(
                &*connected.deployment.keys,
                &args.bind_addr,
                args.common.generate_secrets,
            )
            .await?;
            ApiKeys::new()
        }
    };
    let mut config = HttpConfig::builder()
        .api_keys(keys)
        .rate_limit(Some(rate_limit))
        .max_concurrent_submissions(Some(args.max_concurrent_submissions).filter(|n| *n > 0))
        .metrics(metrics.clone())
        .key_store(connected.deployment.keys.clone())
        .webhooks(connected.webhooks.clone())
        .auth_failures(auth_failures(&args.auth_failure_limit)?);
    if let Some(limiter) = connected.deployment.rate_limiter.clone() {
        config = config.shared_rate_limiter(limiter);
    }
    if let Some(token) = args.admin_token.as_deref().filter(|t| !t.is_empty()) {
        if token.len() < 16 {
            return Err("ADMIN_TOKEN must have at least 16 characters".into());
        }
        config = config.admin_token(token);
    }
    if let Some(ms) = args.common.hooks.request_timeout_ms {
        config = config.request_timeout(std::time::Duration::from_millis(ms));
    }
    let mut app = router(service.clone(), config.build());
    if args.dashboard {
        app = app.merge(dashboard_router(DashboardConfig::default()));
    }
    // Any process sends due webhook deliveries.
    let deliveries = connected.webhooks.start();
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
    deliveries.stop();
    if let Some(worker) = worker {
        let report = worker.shutdown().await;
        tracing::info!(released = report.released, stats = ?report.stats, "workers stopped");
    }
    Ok(())
}

/// With no `API_KEYS` and no key in the database: creates one for tenant
/// `default` and prints it with a curl line to try.
async fn first_key(keys: &dyn KeyStore, addr: &SocketAddr, generate: bool) -> Result<(), String> {
    if !keys.keys(None).await.map_err(|e| e.to_string())?.is_empty() {
        return Ok(());
    }
    if !generate {
        return Err(
            "no API key: set API_KEYS=tenant:key,… or run `server keys create --tenant …` (GENERATE_SECRETS=false)"
                .into(),
        );
    }
    let tenant = TenantId::parse("default").map_err(|e| e.to_string())?;
    let (key, record) = NewApiKey::generate(tenant, Some("first start".into()), now());
    keys.create_key(&record).await.map_err(|e| e.to_string())?;
    print_line(&format!(
        "No API key yet; created one for tenant \"default\" (kept in the database, shown only now). Try:\n\n  curl -i -X POST http://{addr}/api/bulk-onboard -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' -d '{{\"organizations\":[{{\"name\":\"Acme Corporation\",\"domain\":\"acme.com\",\"contact_email\":\"contact@acme.com\"}}]}}'\n\n  then: curl -H 'Authorization: Bearer {key}' http://{addr}/api/v1/batches/<batch_id>\n"
    ));
    Ok(())
}

/// `server keys …`: the operator's first key, and keys without the admin API.
async fn keys_command(keys: &dyn KeyStore, command: &KeysCommand) -> Result<(), String> {
    let tenant = |raw: &str| TenantId::parse(raw).map_err(|e| format!("--tenant: {e}"));
    match command {
        KeysCommand::Create { tenant: raw, label } => {
            let label =
                onboarding::keys::check_label(label.as_deref()).map_err(|e| e.to_string())?;
            let (key, record) = NewApiKey::generate(tenant(raw)?, label, now());
            let info = keys.create_key(&record).await.map_err(|e| e.to_string())?;
            print_line(&format!(
                "created key {} for tenant {} (shown only now):\n{key}",
                info.prefix, info.tenant
            ));
        }
        KeysCommand::List { tenant: raw } => {
            let only = raw.as_deref().map(tenant).transpose()?;
            for k in keys.keys(only.as_ref()).await.map_err(|e| e.to_string())? {
                print_line(&format!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.prefix,
                    k.tenant,
                    k.label.as_deref().unwrap_or("-"),
                    k.created_at.to_rfc3339(),
                    k.revoked_at.map_or_else(
                        || "live".to_owned(),
                        |t| format!("revoked {}", t.to_rfc3339())
                    ),
                ));
            }
        }
        KeysCommand::Revoke { key } => {
            match keys
                .revoke_key(None, &KeySelector::parse(key), now())
                .await
                .map_err(|e| e.to_string())?
            {
                Some(k) => print_line(&format!("revoked {} of tenant {}", k.prefix, k.tenant)),
                None => return Err(format!("no key has the prefix or id {key}")),
            }
        }
    }
    Ok(())
}

/// `AUTH_FAILURE_LIMIT`: `off`, or a rate whose count is also the burst.
fn auth_failures(value: &str) -> Result<Option<onboarding::limits::Rate>, String> {
    if value.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let rate = RateLimit::parse(value).map_err(|e| format!("AUTH_FAILURE_LIMIT: {e}"))?;
    // "10/m": ten at once, then one every six seconds.
    let count: f64 = value
        .split('/')
        .next()
        .and_then(|c| c.trim().parse().ok())
        .unwrap_or(1.0);
    let burst = if count >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // In range: checked above; at least 1.
        count.ceil().max(1.0) as u32
    };
    Ok(Some(onboarding::limits::Rate::new(rate.per_second, burst)))
}
