//! What `examples/server.rs` and `examples/worker.rs` share: the flags,
//! backends from their URLs (plus webhooks), the demo processor, logging,
//! the exit code and signals.

#![allow(dead_code, unreachable_pub)] // shared by two examples; each uses a part

pub mod hooks;
pub mod serving;
pub mod shared;
pub mod traces;

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onboarding::web::Webhooks;
use onboarding::{BackendUrls, Backends, ProcessError, Processor, WorkItem};

/// Backend, worker, webhook and processor flags (server and worker alike).
#[derive(clap::Args)]
pub struct CommonArgs {
    /// `sqlite://…`, `postgres://…`, `mysql://…`, or `memory` (nothing survives a restart).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://onboarding.db?mode=rwc",
        hide_env_values = true
    )]
    pub database_url: String,
    /// A PostgreSQL streaming replica of `DATABASE_URL` for status, items and
    /// organization reads (writes and a tenant's reads right after its own
    /// writes stay on the primary; a replica behind by more than 500 ms or down
    /// is skipped, `/ready` says `degraded`).
    #[arg(long, env = "DATABASE_READ_URL", hide_env_values = true)]
    pub database_read_url: Option<String>,
    /// `database` (the SQL table queue), `redis://…`, `amqp://…`, or `memory`.
    #[arg(
        long,
        env = "QUEUE_URL",
        default_value = "database",
        hide_env_values = true
    )]
    pub queue_url: String,
    /// `memory` or `redis://…`.
    #[arg(
        long,
        env = "CACHE_URL",
        default_value = "memory",
        hide_env_values = true
    )]
    pub cache_url: String,
    /// Items processed at once by this process's worker.
    #[arg(long, env = "WORKERS", default_value_t = 8)]
    pub workers: usize,
    /// `tenant=https://…,…`: where each tenant's completion webhooks go.
    #[arg(long, env = "WEBHOOK_URLS", hide_env_values = true)]
    pub webhook_urls: Option<String>,
    /// HMAC key of the `WEBHOOK_URLS` endpoints' signatures (generated and printed once when unset).
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// POST each organization as JSON to this URL instead of the built-in
    /// welcome step (5xx and timeouts are retried, 4xx fail permanently).
    #[arg(long, env = "PROCESSOR_URL", hide_env_values = true)]
    pub processor_url: Option<String>,
    /// The built-in step when `PROCESSOR_URL` is unset: `welcome` (a 20 ms
    /// pause and a log line per organization) or `noop` (nothing: for load
    /// tests that measure the pipeline itself).
    #[arg(long, env = "PROCESSOR", default_value = "welcome", value_parser = ["welcome", "noop"])]
    pub processor: String,
    /// `dns`: before the processor, look each domain up in DNS (MX, else
    /// A/AAAA); a domain that does not exist fails its item at once
    /// (`domain_not_found`), a resolver that does not answer is retried.
    #[arg(long, env = "DOMAIN_CHECK", default_value = "off", value_parser = ["off", "dns"])]
    pub domain_check: String,
    /// The resolver of `DOMAIN_CHECK=dns` (`ip:port`); unset: the system's.
    #[arg(long, env = "DNS_RESOLVER")]
    pub dns_resolver: Option<std::net::SocketAddr>,
    /// Generate a missing API key (server) or webhook secret and print it
    /// (handy at a terminal). `false` makes a missing one an error instead,
    /// so that no secret is written to a log (the Dockerfile sets it).
    #[arg(long, env = "GENERATE_SECRETS", default_value_t = true, action = clap::ArgAction::Set)]
    pub generate_secrets: bool,
    #[command(flatten)]
    pub webhook: shared::WebhookArgs,
    #[command(flatten)]
    pub serve: serving::ServeArgs,
    #[command(flatten)]
    pub hooks: hooks::Hooks,
}

impl CommonArgs {
    /// The backend URLs of the flags (`Debug` hides their passwords).
    pub fn urls(&self) -> BackendUrls {
        BackendUrls::new(&self.database_url, &self.queue_url, &self.cache_url)
            .with_read_database(self.database_read_url.clone())
            .with_prefix(self.hooks.prefix().map(str::to_owned))
            .with_queue_expiry(self.hooks.queue_expiry_ms.map(Duration::from_millis))
    }
}

/// The backends the flags name, with what every process of the deployment
/// shares: tenants and keys, webhooks (events go through their sink), limits.
pub struct BackendsWithWebhooks {
    pub backends: Backends,
    /// Tenants' webhooks: endpoints and deliveries in the database.
    pub webhooks: Webhooks,
    /// Tenants, keys and limits.
    pub deployment: onboarding::Deployment,
}

/// Connects the backends the flags name (running the SQL migrations);
/// `rate` is the per-tenant rate limit to share (servers only).
pub async fn connect(
    args: &CommonArgs,
    rate: Option<onboarding::limits::Rate>,
) -> Result<BackendsWithWebhooks, String> {
    let urls = args.urls();
    let deployment = urls
        .connect_deployment(rate)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(backends = ?urls, "backends connected");
    let mut backends = deployment.backends.clone();
    let (webhooks, events) = shared::webhooks(args, &deployment, backends.events.clone()).await?;
    backends.events = events;
    Ok(BackendsWithWebhooks {
        backends,
        webhooks,
        deployment,
    })
}

/// The processor the flags ask for.
pub fn processor(args: &CommonArgs) -> Result<Arc<dyn Processor>, String> {
    let processor: Arc<dyn Processor> = match args
        .processor_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        Some(url) => Arc::new(HttpProcessor::new(url)?),
        None if args.processor == "noop" => Arc::new(onboarding::NoopProcessor),
        None => Arc::new(WelcomeProcessor),
    };
    match args.domain_check.as_str() {
        "dns" => domain_check(processor, args.dns_resolver),
        _ => Ok(processor),
    }
}

/// `DOMAIN_CHECK=dns`: the processor behind a DNS check of each domain.
#[cfg(feature = "dns")]
fn domain_check(
    processor: Arc<dyn Processor>,
    resolver: Option<std::net::SocketAddr>,
) -> Result<Arc<dyn Processor>, String> {
    let mut config = onboarding::dns::DnsConfig::default();
    if let Some(address) = resolver {
        config = config.with_resolver(address);
    }
    let checked = onboarding::dns::DomainCheck::new(processor, config)
        .map_err(|e| format!("DOMAIN_CHECK=dns: {e}"))?;
    Ok(Arc::new(checked))
}

#[cfg(not(feature = "dns"))]
fn domain_check(
    _processor: Arc<dyn Processor>,
    _resolver: Option<std::net::SocketAddr>,
) -> Result<Arc<dyn Processor>, String> {
    Err(
        "DOMAIN_CHECK=dns needs the `dns` feature: cargo run --release --features dns --example …"
            .to_owned(),
    )
}

/// The built-in onboarding step: "provisions" the organization (a short
/// pause standing in for real work) and logs a line for it. The line names
/// ids and the domain only: the name and contact email are personal data,
/// and logs travel further than the database.
pub struct WelcomeProcessor;

#[async_trait]
impl Processor for WelcomeProcessor {
    async fn process(&self, item: &WorkItem) -> Result<(), ProcessError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        tracing::info!(
            batch_id = %item.batch_id, item_id = %item.item_id,
            organization_id = %item.organization.id, domain = %item.organization.domain,
            tenant = %item.tenant, attempt = item.attempt,
            "welcome aboard: workspace provisioned"
        );
        Ok(())
    }
}

/// POSTs each organization to an HTTP endpoint: 2xx done, 5xx/429/timeouts
/// retried, other 4xx permanent. Redirects are not followed (a 3xx is a
/// permanent failure): a 307 would re-send the organization's data to
/// wherever it points.
pub struct HttpProcessor {
    url: String,
    client: reqwest::Client,
}

impl HttpProcessor {
    pub fn new(url: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("PROCESSOR_URL client: {e}"))?;
        Ok(Self {
            url: url.to_owned(),
            client,
        })
    }
}

#[async_trait]
impl Processor for HttpProcessor {
    async fn process(&self, item: &WorkItem) -> Result<(), ProcessError> {
        let org = &item.organization;
        let body = serde_json::json!({
            "item_id": item.item_id,
            "batch_id": item.batch_id,
            "tenant": item.tenant,
            "attempt": item.attempt,
            "change": item.change,
            "organization": {
                "id": org.id, "name": org.name, "domain": org.domain,
                "contact_email": org.contact_email, "version": org.version,
            },
        });
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            // Lets the endpoint deduplicate repeated attempts of one item.
            .header("idempotency-key", item.item_id.to_string())
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| {
                ProcessError::Retryable(format!(
                    "processor endpoint unreachable: {}",
                    e.without_url()
                ))
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(ProcessError::Retryable(format!(
                "processor endpoint answered {status}"
            )))
        } else {
            Err(ProcessError::Permanent(format!(
                "processor endpoint answered {status}"
            )))
        }
    }
}

/// Logs to stderr (and exports traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// set), runs `program`, and turns its error into exit code 1.
pub async fn run_main<F>(program: impl FnOnce() -> F) -> ExitCode
where
    F: Future<Output = Result<(), String>>,
{
    let traces = match init_logging() {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = match program().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    };
    traces.shutdown().await;
    code
}

/// Logs to stderr; `RUST_LOG` takes `info`, `debug`, `onboarding_http=debug,info`, ….
/// Spans at `info` and above go to OpenTelemetry when it is on, whatever `RUST_LOG` says.
fn init_logging() -> Result<traces::Traces, String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| "info".parse().unwrap_or_default());
    let traces = traces::Traces::from_env()?;
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(filter),
        )
        .with(traces.layer())
        .init();
    traces.announce();
    Ok(traces)
}

/// Something for the person at the terminal (stdout, so it can be piped).
#[allow(clippy::print_stdout)]
pub fn print_line(line: &str) {
    println!("{line}");
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
