//! What every process of a deployment shares beyond the work itself:
//! tenants and API keys, webhook endpoints and deliveries (in the
//! database), and the rate and backlog limits (in Redis when `CACHE_URL`
//! names one, else per process). Both examples run the webhook delivery
//! loop: any process sends due deliveries.

use std::sync::Arc;

use onboarding::http::{UrlPolicy, WebhookConfig, WebhookSink, Webhooks};
use onboarding::keys::KeyStore;
use onboarding::limits::{BacklogLedger, MemoryLedger, Rate, RateLimiter};
use onboarding::memory::{MemoryKeyStore, MemoryWebhooks};
use onboarding::model::TenantId;
use onboarding::{DeliveryLog, EventSink, WebhookStore};

use super::{print_line, redact, CommonArgs};

/// Webhook flags (server and worker alike: both send).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct WebhookArgs {
    /// Let tenants register `http://` webhook URLs (default: https only).
    #[arg(long, env = "WEBHOOK_ALLOW_HTTP", default_value_t = false)]
    pub webhook_allow_http: bool,
    /// Let tenants' webhook URLs point at loopback, private or link-local
    /// addresses (default: public addresses only).
    #[arg(long, env = "WEBHOOK_ALLOW_PRIVATE", default_value_t = false)]
    pub webhook_allow_private: bool,
    /// How often the webhook loop looks for due deliveries, in ms (default 1000).
    #[arg(long, env = "WEBHOOK_POLL_MS")]
    pub webhook_poll_ms: Option<u64>,
    /// First retry delay of a failed webhook attempt, in ms (default 5000).
    #[arg(long, env = "WEBHOOK_RETRY_BASE_MS")]
    pub webhook_retry_base_ms: Option<u64>,
}

/// The stores of tenants, keys and webhooks.
pub struct Directory {
    pub keys: Arc<dyn KeyStore>,
    pub endpoints: Arc<dyn WebhookStore>,
    pub deliveries: Arc<dyn DeliveryLog>,
}

impl Directory {
    /// In process memory (`DATABASE_URL=memory`).
    pub fn memory() -> Self {
        let webhooks = Arc::new(MemoryWebhooks::new());
        Self {
            keys: Arc::new(MemoryKeyStore::new()),
            endpoints: webhooks.clone(),
            deliveries: webhooks,
        }
    }

    /// In the database.
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
    pub fn sql(backend: &onboarding::sqlx::SqlBackend) -> Self {
        Self {
            keys: backend.key_store(),
            endpoints: backend.webhook_store(),
            deliveries: backend.delivery_log(),
        }
    }
}

/// The webhooks of `directory`, with `WEBHOOK_URLS` / `WEBHOOK_SECRET`
/// registered (the one-tenant setup), and the sink that records events
/// as deliveries before passing them to `events`.
pub async fn webhooks(
    args: &CommonArgs,
    directory: &Directory,
    events: Arc<dyn EventSink>,
) -> Result<(Webhooks, Arc<dyn EventSink>), String> {
    let w = &args.webhook;
    let mut config = WebhookConfig::default().with_policy(
        UrlPolicy::strict()
            .with_http(w.webhook_allow_http)
            .with_private(w.webhook_allow_private),
    );
    if let Some(ms) = w.webhook_poll_ms {
        config = config.with_poll_interval(std::time::Duration::from_millis(ms));
    }
    if let Some(ms) = w.webhook_retry_base_ms {
        let attempts = config.retry.max_attempts;
        config = config.with_retries(attempts, std::time::Duration::from_millis(ms));
    }
    let webhooks = Webhooks::new(
        directory.endpoints.clone(),
        directory.deliveries.clone(),
        config,
    )
    .map_err(|e| e.to_string())?;
    if let Some(urls) = args
        .webhook_urls
        .as_deref()
        .filter(|u| !u.trim().is_empty())
    {
        let secret = args.webhook_secret.as_deref().filter(|s| !s.is_empty());
        if secret.is_none() && !args.generate_secrets {
            return Err(
                "WEBHOOK_URLS is set but WEBHOOK_SECRET is not (and GENERATE_SECRETS=false)".into(),
            );
        }
        for entry in urls.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (tenant, url) = entry.split_once('=').ok_or_else(|| {
                format!("WEBHOOK_URLS: entry {entry:?} must look like tenant=https://…")
            })?;
            let tenant =
                TenantId::parse(tenant.trim()).map_err(|e| format!("WEBHOOK_URLS: {e}"))?;
            let generated = webhooks
                .bootstrap(&tenant, url.trim(), secret)
                .await
                .map_err(|e| format!("WEBHOOK_URLS {}: {e}", redact(url.trim())))?;
            if let Some(generated) = generated {
                print_line(&format!(
                    "WEBHOOK_SECRET is unset; {tenant}'s webhooks are signed with: {generated}"
                ));
            }
        }
    }
    let sink: Arc<dyn EventSink> = Arc::new(WebhookSink::new(webhooks.clone(), events));
    Ok((webhooks, sink))
}

/// The shared rate limiter and backlog ledger: in Redis when `CACHE_URL`
/// names one (so the limits hold across servers), else `None` (per process).
pub async fn limits(
    args: &CommonArgs,
    rate: Option<Rate>,
) -> Result<(Option<Arc<dyn RateLimiter>>, Arc<dyn BacklogLedger>), String> {
    let url = args.cache_url.trim();
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Ok((None, Arc::new(MemoryLedger::default())));
    }
    redis_limits(url, args.hooks.prefix(), rate).await
}

#[cfg(feature = "redis")]
async fn redis_limits(
    url: &str,
    prefix: Option<&str>,
    rate: Option<Rate>,
) -> Result<(Option<Arc<dyn RateLimiter>>, Arc<dyn BacklogLedger>), String> {
    use onboarding::redis::{RedisLedger, RedisRateLimiter};
    let config = super::redis_config(url, prefix);
    let err = |e: onboarding::Error| format!("CACHE_URL {}: {e}", redact(url));
    let limiter: Option<Arc<dyn RateLimiter>> = match rate {
        Some(rate) => Some(Arc::new(
            RedisRateLimiter::connect(config.clone(), rate)
                .await
                .map_err(err)?,
        )),
        None => None,
    };
    let ledger = RedisLedger::connect(config).await.map_err(err)?;
    Ok((limiter, Arc::new(ledger)))
}

#[cfg(not(feature = "redis"))]
async fn redis_limits(
    _url: &str,
    _prefix: Option<&str>,
    _rate: Option<Rate>,
) -> Result<(Option<Arc<dyn RateLimiter>>, Arc<dyn BacklogLedger>), String> {
    Err(super::needs("redis", "CACHE_URL=redis://…"))
}
