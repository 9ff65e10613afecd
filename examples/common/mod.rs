//! What `examples/server.rs` and `examples/worker.rs` share: backend
//! selection from URLs, the demo processor, logging and signals.

#![allow(dead_code, unreachable_pub)] // shared by two examples; each uses a part

pub mod hooks;
pub mod serving;
pub mod shared;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onboarding::http::Webhooks;
use onboarding::memory::{MemoryCache, MemoryQueue, MemoryRepository, TracingEventSink};
use onboarding::{Backends, Cache, JobQueue, OrgRepository, ProcessError, Processor, WorkItem};

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
    /// Generate a missing API key (server) or webhook secret and print it
    /// (handy at a terminal). `false` makes a missing one an error instead,
    /// so that no secret is written to a log (the Dockerfile sets it).
    #[arg(long, env = "GENERATE_SECRETS", default_value_t = true, action = clap::ArgAction::Set)]
    pub generate_secrets: bool,
    #[command(flatten)]
    pub webhook: shared::WebhookArgs,
    #[command(flatten)]
    pub hooks: hooks::Hooks,
}

/// `scheme://user:***@host/…`: a URL fit for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The backends, plus what must be closed at exit.
pub struct Stack {
    pub backends: Backends,
    /// Tenants' webhooks (endpoints and deliveries in the database).
    pub webhooks: Webhooks,
    /// Tenants and API keys.
    pub directory: shared::Directory,
    /// Whether the repository lives in this process only.
    pub in_memory: bool,
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
    sql: Option<onboarding::sqlx::SqlBackend>,
}

impl Stack {
    /// Closes connection pools.
    pub async fn close(self) {
        #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
        if let Some(sql) = self.sql {
            sql.close().await;
        }
    }
}

pub(crate) fn needs(feature: &str, what: &str) -> String {
    format!("{what} needs the `{feature}` feature: cargo run --release --features {feature} --example …")
}

/// Builds the backends the URLs name.
pub async fn build(args: &CommonArgs) -> Result<Stack, String> {
    let database = args.database_url.trim();
    let (repository, sql_queue, in_memory): (
        Arc<dyn OrgRepository>,
        Option<Arc<dyn JobQueue>>,
        bool,
    );
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
    let mut sql = None;
    let directory;
    if database == "memory" {
        directory = shared::Directory::memory();
        repository = Arc::new(MemoryRepository::new());
        sql_queue = Some(Arc::new(MemoryQueue::new(Duration::from_secs(30))));
        in_memory = true;
    } else if ["sqlite:", "postgres:", "postgresql:", "mysql:", "mariadb:"]
        .iter()
        .any(|s| database.starts_with(s))
    {
        #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
        {
            let backend =
                onboarding::sqlx::connect(database, onboarding::sqlx::SqlOptions::default())
                    .await
                    .map_err(|e| format!("DATABASE_URL {}: {e}", redact(database)))?;
            tracing::info!(database = %redact(database), "database connected, migrations applied");
            repository = backend.repository();
            sql_queue = Some(backend.queue());
            directory = shared::Directory::sql(&backend);
            in_memory = false;
            sql = Some(backend);
        }
        #[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
        {
            return Err(needs("sqlite", "a SQL DATABASE_URL"));
        }
    } else {
        return Err(format!(
            "DATABASE_URL {} is not supported: use sqlite://…, postgres://…, mysql://… or memory",
            redact(database)
        ));
    }

    let queue_url = args.queue_url.trim();
    let queue: Arc<dyn JobQueue> = match queue_url {
        "database" => sql_queue.ok_or("QUEUE_URL=database needs a SQL DATABASE_URL")?,
        "memory" => Arc::new(MemoryQueue::new(Duration::from_secs(30))),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => {
            redis_queue(url, args.hooks.prefix()).await?
        }
        url if url.starts_with("amqp://") || url.starts_with("amqps://") => {
            amqp_queue(url, &args.hooks).await?
        }
        other => {
            return Err(format!(
                "QUEUE_URL {} is not supported: use database, redis://…, amqp://… or memory",
                redact(other)
            ))
        }
    };

    let cache_url = args.cache_url.trim();
    let cache: Arc<dyn Cache> = match cache_url {
        "memory" => Arc::new(MemoryCache::default()),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => {
            redis_cache(url, args.hooks.prefix()).await?
        }
        other => {
            return Err(format!(
                "CACHE_URL {} is not supported: use memory or redis://…",
                redact(other)
            ))
        }
    };

    let (webhooks, events) = shared::webhooks(args, &directory, Arc::new(TracingEventSink)).await?;

    Ok(Stack {
        backends: Backends::new(repository, queue, cache, events),
        webhooks,
        directory,
        in_memory,
        #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
        sql,
    })
}

#[cfg(feature = "redis")]
pub(crate) fn redis_config(url: &str, prefix: Option<&str>) -> onboarding::redis::RedisConfig {
    let config = onboarding::redis::RedisConfig::new(url);
    match prefix {
        Some(prefix) => config.with_prefix(prefix),
        None => config,
    }
}

#[cfg(feature = "redis")]
async fn redis_queue(url: &str, prefix: Option<&str>) -> Result<Arc<dyn JobQueue>, String> {
    let queue = onboarding::redis::RedisQueue::connect(redis_config(url, prefix))
        .await
        .map_err(|e| format!("QUEUE_URL {}: {e}", redact(url)))?;
    Ok(Arc::new(queue))
}

#[cfg(not(feature = "redis"))]
async fn redis_queue(_url: &str, _prefix: Option<&str>) -> Result<Arc<dyn JobQueue>, String> {
    Err(needs("redis", "QUEUE_URL=redis://…"))
}

#[cfg(feature = "redis")]
async fn redis_cache(url: &str, prefix: Option<&str>) -> Result<Arc<dyn Cache>, String> {
    let cache = onboarding::redis::RedisCache::connect(redis_config(url, prefix))
        .await
        .map_err(|e| format!("CACHE_URL {}: {e}", redact(url)))?;
    Ok(Arc::new(cache))
}

#[cfg(not(feature = "redis"))]
async fn redis_cache(_url: &str, _prefix: Option<&str>) -> Result<Arc<dyn Cache>, String> {
    Err(needs("redis", "CACHE_URL=redis://…"))
}

#[cfg(feature = "amqp")]
async fn amqp_queue(url: &str, hooks: &hooks::Hooks) -> Result<Arc<dyn JobQueue>, String> {
    let mut config = onboarding::amqp::AmqpConfig::new(url);
    if let Some(prefix) = hooks.prefix() {
        config = config.with_prefix(prefix);
    }
    if let Some(ms) = hooks.queue_expiry_ms {
        let expiry = Duration::from_millis(ms);
        config = config
            .with_queue_expiry(expiry)
            .with_tenant_queue_expiry(Some(expiry));
    }
    let queue = onboarding::amqp::AmqpQueue::connect(config)
        .await
        .map_err(|e| format!("QUEUE_URL {}: {e}", redact(url)))?;
    Ok(Arc::new(queue))
}

#[cfg(not(feature = "amqp"))]
async fn amqp_queue(_url: &str, _hooks: &hooks::Hooks) -> Result<Arc<dyn JobQueue>, String> {
    Err(needs("amqp", "QUEUE_URL=amqp://…"))
}

/// The processor the flags ask for.
pub fn processor(args: &CommonArgs) -> Result<Arc<dyn Processor>, String> {
    match args
        .processor_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        Some(url) => Ok(Arc::new(HttpProcessor::new(url)?)),
        None if args.processor == "noop" => Ok(Arc::new(onboarding::NoopProcessor)),
        None => Ok(Arc::new(WelcomeProcessor)),
    }
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

/// Logs to stderr; `RUST_LOG` takes `info`, `debug`, `onboarding_http=debug,info`, ….
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter: tracing_subscriber::filter::Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| "info".parse().unwrap_or_default());
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
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
