//! Batch-completion webhooks: an [`EventSink`] that POSTs a signed JSON
//! document to the tenant's URL for every `BatchCompleted`, retries a few
//! times in process, and otherwise fails `publish` so the core's sweeper
//! publishes the completion again later (at-least-once delivery).
//!
//! Every attempt is kept in a bounded in-memory log that the HTTP API lists
//! and replays (`GET /api/v1/webhooks/deliveries`,
//! `POST /api/v1/webhooks/deliveries/{id}/replay`).

mod sign;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use onboarding_core::model::{BatchCounts, BatchId, TenantId, Timestamp};
use onboarding_core::{Error, ErrorKind, Event, EventSink, Result};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

pub use sign::{sign, verify, ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

use crate::config::ConfigError;
use crate::metrics::Metrics;

/// Where and how webhooks are sent.
#[derive(Clone)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Each tenant's endpoint (`http://` or `https://`); tenants without one get no webhooks.
    pub urls: HashMap<TenantId, String>,
    secret: Arc<[u8]>,
    /// Attempts per publish before giving up until the next sweep (default 3).
    pub max_attempts: u32,
    /// Pause after the first failed attempt, doubled after each (default 250 ms).
    pub initial_backoff: Duration,
    /// Longest one attempt may take (default 1.5 s), so a publish gives up within about 5 s.
    pub attempt_timeout: Duration,
    /// Deliveries kept in the log (default 1000; oldest dropped first).
    pub log_capacity: usize,
}

impl WebhookConfig {
    /// A configuration signing with `secret` and no URLs yet.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self {
            urls: HashMap::new(),
            secret: Arc::from(secret.as_ref()),
            max_attempts: 3,
            initial_backoff: Duration::from_millis(250),
            attempt_timeout: Duration::from_millis(1500),
            log_capacity: 1000,
        }
    }

    /// Sends `tenant`'s completions to `url`.
    pub fn with_url(mut self, tenant: TenantId, url: &str) -> Result<Self, ConfigError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| ConfigError::new(format!("webhook URL for {tenant}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(ConfigError::new(format!(
                "webhook URL for {tenant} must be an http:// or https:// URL"
            )));
        }
        self.urls.insert(tenant, url.to_owned());
        Ok(self)
    }

    /// Adds every `tenant=https://…` entry of a comma-separated list (the `WEBHOOK_URLS` format).
    pub fn with_urls(mut self, list: &str) -> Result<Self, ConfigError> {
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (tenant, url) = entry.split_once('=').ok_or_else(|| {
                ConfigError::new(format!(
                    "webhook entry {entry:?} must look like tenant=https://…"
                ))
            })?;
            let tenant = TenantId::parse(tenant.trim())
                .map_err(|e| ConfigError::new(e.message().to_owned()))?;
            self = self.with_url(tenant, url.trim())?;
        }
        Ok(self)
    }

    /// Sets attempts per publish and the first backoff.
    pub fn with_retries(mut self, max_attempts: u32, initial_backoff: Duration) -> Self {
        self.max_attempts = max_attempts.max(1);
        self.initial_backoff = initial_backoff;
        self
    }

    /// Sets the timeout of one attempt.
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// Sets how many deliveries the log keeps.
    pub fn with_log_capacity(mut self, n: usize) -> Self {
        self.log_capacity = n.max(1);
        self
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut tenants: Vec<&str> = self.urls.keys().map(TenantId::as_str).collect();
        tenants.sort_unstable();
        f.debug_struct("WebhookConfig")
            .field("tenants", &tenants)
            .field("urls", &"<redacted>")
            .field("secret", &"<redacted>")
            .field("max_attempts", &self.max_attempts)
            .field("initial_backoff", &self.initial_backoff)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("log_capacity", &self.log_capacity)
            .finish()
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The endpoint answered 2xx.
    Delivered,
    /// The endpoint answered otherwise, or could not be reached in time.
    Failed,
}

/// One delivery attempt, as logged.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[non_exhaustive]
pub struct Delivery {
    /// This attempt's id (what `replay` takes).
    pub id: Uuid,
    /// The event's stable id, sent as `Webhook-Id`: the same for every retry
    /// and replay of one completion, so receivers can deduplicate.
    pub webhook_id: String,
    /// The event type (`batch.completed`).
    pub event: String,
    /// The batch.
    pub batch_id: Uuid,
    /// Where it was sent.
    pub url: String,
    /// 1-based attempt number within its publish (or replay).
    pub attempt: u32,
    /// How it ended.
    pub outcome: DeliveryOutcome,
    /// The endpoint's HTTP status, when it answered.
    pub response_status: Option<u16>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// When the attempt started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// The delivery this one replays, if it is a replay.
    pub replay_of: Option<Uuid>,
    #[serde(skip)]
    #[schema(ignore)]
    tenant: TenantId,
    #[serde(skip)]
    #[schema(ignore)]
    body: Arc<str>,
}

impl Delivery {
    /// The tenant it belongs to.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The exact JSON body that was sent.
    pub fn body(&self) -> &str {
        &self.body
    }
}

struct Inner {
    next: Arc<dyn EventSink>,
    config: WebhookConfig,
    client: reqwest::Client,
    log: Mutex<VecDeque<Delivery>>,
    metrics: OnceLock<Metrics>,
}

/// An [`EventSink`] that sends `BatchCompleted` as a signed webhook and
/// passes every event on to an inner sink. Cheap to clone.
#[derive(Clone)]
pub struct WebhookSink {
    inner: Arc<Inner>,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Target<'a> {
    tenant: &'a TenantId,
    batch_id: Uuid,
    url: &'a str,
    webhook_id: &'a str,
    body: Arc<str>,
    replay_of: Option<Uuid>,
}

impl WebhookSink {
    /// A sink sending webhooks as `config` says, after handing every event to `next`.
    pub fn new(config: WebhookConfig, next: Arc<dyn EventSink>) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .timeout(config.attempt_timeout)
            .connect_timeout(config.attempt_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!(
                "bulk-onboarding-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| ConfigError::new(format!("cannot build the webhook HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                next,
                config,
                client,
                log: Mutex::new(VecDeque::new()),
                metrics: OnceLock::new(),
            }),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &WebhookConfig {
        &self.inner.config
    }

    /// Counts delivery attempts into `metrics` (the first call wins).
    pub fn attach_metrics(&self, metrics: &Metrics) {
        let _ = self.inner.metrics.set(metrics.clone());
    }

    fn log(&self) -> MutexGuard<'_, VecDeque<Delivery>> {
        self.inner
            .log
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A tenant's logged deliveries, newest first, optionally of one batch.
    pub fn deliveries(
        &self,
        tenant: &TenantId,
        batch: Option<BatchId>,
        limit: usize,
    ) -> Vec<Delivery> {
        self.log()
            .iter()
            .rev()
            .filter(|d| &d.tenant == tenant && batch.is_none_or(|b| b.0 == d.batch_id))
            .take(limit)
            .cloned()
            .collect()
    }

    /// One logged delivery of a tenant.
    pub fn delivery(&self, tenant: &TenantId, id: Uuid) -> Option<Delivery> {
        self.log()
            .iter()
            .find(|d| d.id == id && &d.tenant == tenant)
            .cloned()
    }

    /// Sends a logged delivery's body again (same `Webhook-Id`, fresh
    /// timestamp and signature, with the usual retries) and returns the
    /// last attempt. Another tenant's or an unknown id is `NotFound`.
    pub async fn replay(&self, tenant: &TenantId, id: Uuid) -> Result<Delivery> {
        let original = self
            .delivery(tenant, id)
            .ok_or_else(|| Error::not_found(format!("webhook delivery {id} does not exist")))?;
        let (_, last) = self
            .deliver(Target {
                tenant,
                batch_id: original.batch_id,
                url: &original.url,
                webhook_id: &original.webhook_id,
                body: original.body.clone(),
                replay_of: Some(original.id),
            })
            .await;
        last.ok_or_else(|| Error::internal("a replay made no attempt"))
    }

    /// Runs up to `max_attempts` attempts; returns whether one succeeded and the last attempt.
    async fn deliver(&self, target: Target<'_>) -> (bool, Option<Delivery>) {
        let config = &self.inner.config;
        let mut backoff = config.initial_backoff;
        let mut last = None;
        for attempt in 1..=config.max_attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
            }
            let delivery = self.attempt(&target, attempt).await;
            let ok = delivery.outcome == DeliveryOutcome::Delivered;
            last = Some(delivery);
            if ok {
                return (true, last);
            }
        }
        (false, last)
    }

    async fn attempt(&self, target: &Target<'_>, attempt: u32) -> Delivery {
        let started_at = Utc::now();
        let timestamp = started_at.timestamp();
        let signature = sign(&self.inner.config.secret, timestamp, target.body.as_bytes());
        let result = self
            .inner
            .client
            .post(target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(ID_HEADER, target.webhook_id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(target.body.to_string())
            .send()
            .await;
        let (outcome, response_status, error) = match result {
            Ok(response) if response.status().is_success() => (
                DeliveryOutcome::Delivered,
                Some(response.status().as_u16()),
                None,
            ),
            Ok(response) => (
                DeliveryOutcome::Failed,
                Some(response.status().as_u16()),
                Some(format!("the endpoint answered {}", response.status())),
            ),
            Err(e) => (
                DeliveryOutcome::Failed,
                None,
                Some(if e.is_timeout() {
                    "the endpoint did not answer in time".to_owned()
                } else if e.is_connect() {
                    "could not connect to the endpoint".to_owned()
                } else {
                    format!("request failed: {}", e.without_url())
                }),
            ),
        };
        let delivery = Delivery {
            id: Uuid::now_v7(),
            webhook_id: target.webhook_id.to_owned(),
            event: "batch.completed".to_owned(),
            batch_id: target.batch_id,
            url: target.url.to_owned(),
            attempt,
            outcome,
            response_status,
            error,
            started_at,
            finished_at: Utc::now(),
            replay_of: target.replay_of,
            tenant: target.tenant.clone(),
            body: target.body.clone(),
        };
        tracing::info!(
            delivery_id = %delivery.id, webhook_id = %delivery.webhook_id,
            batch_id = %delivery.batch_id, tenant = %delivery.tenant, attempt,
            outcome = ?delivery.outcome, status = ?delivery.response_status,
            error = delivery.error.as_deref().unwrap_or(""), "webhook delivery attempt"
        );
        if let Some(metrics) = self.inner.metrics.get() {
            metrics.record_webhook(match outcome {
                DeliveryOutcome::Delivered => "delivered",
                DeliveryOutcome::Failed => "failed",
            });
        }
        let mut log = self.log();
        log.push_back(delivery.clone());
        while log.len() > self.inner.config.log_capacity {
            log.pop_front();
        }
        delivery
    }
}

/// The webhook's stable id for one completion of one batch.
fn webhook_id(batch: BatchId, completed_at: Timestamp) -> String {
    format!(
        "whk_{}_{}",
        batch.0.simple(),
        completed_at.timestamp_micros()
    )
}

fn payload(
    webhook_id: &str,
    tenant: &TenantId,
    batch: BatchId,
    counts: &BatchCounts,
    completed_at: Timestamp,
) -> String {
    serde_json::json!({
        "id": webhook_id,
        "type": "batch.completed",
        "created_at": Utc::now(),
        "data": {
            "batch_id": batch,
            "tenant": tenant,
            "completed_at": completed_at,
            "total": counts.total(),
            "counts": {
                "completed": counts.completed,
                "failed": counts.failed,
                "cancelled": counts.cancelled,
            },
            "changes": {
                "created": counts.created,
                "updated": counts.updated,
                "unchanged": counts.unchanged,
                "skipped": counts.skipped,
            },
        },
    })
    .to_string()
}

#[async_trait]
impl EventSink for WebhookSink {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        let forwarded = self.inner.next.publish(events).await;
        let mut failed = 0usize;
        for event in events {
            let Event::BatchCompleted {
                tenant,
                batch_id,
                counts,
                completed_at,
            } = event
            else {
                continue;
            };
            let Some(url) = self.inner.config.urls.get(tenant) else {
                continue;
            };
            let id = webhook_id(*batch_id, *completed_at);
            let body: Arc<str> = payload(&id, tenant, *batch_id, counts, *completed_at).into();
            let (ok, _) = self
                .deliver(Target {
                    tenant,
                    batch_id: batch_id.0,
                    url,
                    webhook_id: &id,
                    body,
                    replay_of: None,
                })
                .await;
            if !ok {
                failed += 1;
            }
        }
        forwarded?;
        if failed > 0 {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{failed} batch completion webhook(s) could not be delivered; the batch stays unannounced and is published again later"
                ),
            ));
        }
        Ok(())
    }
}

pub(crate) fn hex_bytes(bytes: &[u8]) -> String {
    sign::hex(bytes)
}

pub(crate) fn unhex_bytes(s: &str) -> Option<Vec<u8>> {
    sign::unhex(s)
}
