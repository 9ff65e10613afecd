//! Webhooks as every process of a deployment shares them: endpoints and
//! deliveries in the database (`WEBHOOK_URLS` registered there), the
//! operator's URL policy. Both examples run the delivery loop: any process
//! sends due deliveries.

use std::sync::Arc;

use onboarding::model::TenantId;
use onboarding::web::{UrlPolicy, WebhookConfig, WebhookSink, Webhooks};
use onboarding::{redact_url, Deployment, EventSink};

use super::{print_line, CommonArgs};

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

/// The webhooks of the deployment, with `WEBHOOK_URLS` / `WEBHOOK_SECRET`
/// registered (the one-tenant setup), and the sink that records events
/// as deliveries before passing them to `events`.
pub async fn webhooks(
    args: &CommonArgs,
    deployment: &Deployment,
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
        deployment.endpoints.clone(),
        deployment.deliveries.clone(),
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
                .map_err(|e| format!("WEBHOOK_URLS {}: {e}", redact_url(url.trim())))?;
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
