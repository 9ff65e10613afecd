//! Webhooks per tenant, kept in the database so that every process sees
//! them: a tenant registers endpoints (URL, event types) and gets a signing
//! secret of its own; events become deliveries in an outbox
//! ([`DeliveryLog`]); any process running [`Webhooks::start`] claims due
//! deliveries, sends them signed with the endpoint's secrets and records
//! every attempt (status, response code, latency, next attempt). Failed
//! attempts are retried with backoff from the database, so a restart loses
//! nothing and one process makes each attempt (the claim's lease token
//! fences it).
//!
//! Receivers check deliveries with [`verify`]: signature by one of their
//! secrets, timestamp within [`TIMESTAMP_TOLERANCE`].

mod payload;
mod sign;
mod url;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use onboarding_core::model::{after, now, LeaseToken, TenantId};
use onboarding_core::webhooks::{
    check_events, AttemptRecord, AttemptResult, ClaimedDelivery, DeliveryId, DeliveryLog,
    DeliveryQuery, DeliveryRecord, DeliveryStatus, EndpointId, NewDelivery, RetrySchedule,
    WebhookEndpoint, WebhookStore,
};
use onboarding_core::{Error, ErrorKind, Event, EventSink, Result};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use sign::{
    sign, sign_all, verify, verify_signature, VerifyError, ID_HEADER, SIGNATURE_HEADER,
    TIMESTAMP_HEADER, TIMESTAMP_TOLERANCE,
};
pub use url::{is_public, UrlPolicy};

use crate::config::ConfigError;
use crate::metrics::Metrics;
use payload::Message;

/// How webhooks are sent.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WebhookConfig {
    /// Which URLs tenants may use (default: https and public addresses only).
    pub policy: UrlPolicy,
    /// Attempts per round and backoff (default 6 attempts, 5 s doubling).
    pub retry: RetrySchedule,
    /// Longest one attempt may take (default 10 s).
    pub attempt_timeout: Duration,
    /// How often the delivery loop looks for due deliveries (default 1 s;
    /// deliveries added by this process are sent at once).
    pub poll_interval: Duration,
    /// How long the old secret keeps signing after a rotation (default 24 h).
    pub rotation_overlap: Duration,
    /// Deliveries claimed (and sent at once) per round (default 16).
    pub batch_size: u32,
    /// Finished deliveries are deleted this long after their last attempt
    /// (default 7 days, like finished batches).
    pub retention: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            policy: UrlPolicy::strict(),
            retry: RetrySchedule::default(),
            attempt_timeout: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            rotation_overlap: Duration::from_secs(24 * 3600),
            batch_size: 16,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

impl WebhookConfig {
    onboarding_core::setters! {
        /// Sets the URL policy.
        with_policy(policy: UrlPolicy);
    }

    /// Sets attempts per round and the first backoff.
    pub fn with_retries(mut self, max_attempts: u32, first_delay: Duration) -> Self {
        self.retry = RetrySchedule::new(max_attempts, first_delay);
        self
    }

    onboarding_core::setters! {
        /// Sets the timeout of one attempt.
        with_attempt_timeout(attempt_timeout: Duration);
    }

    /// Sets how often the loop looks for due deliveries.
    pub fn with_poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every.max(Duration::from_millis(10));
        self
    }

    onboarding_core::setters! {
        /// Sets how long the old secret signs beside the new one after a rotation.
        with_rotation_overlap(rotation_overlap: Duration);
    }

    /// The lease of one claim: long enough for an attempt and its bookkeeping.
    fn lease(&self) -> Duration {
        self.attempt_timeout * 2 + Duration::from_secs(5)
    }
}

/// The most endpoints one tenant may register (each event is one delivery
/// per endpoint: the cap bounds what one tenant can make the senders do).
pub const MAX_ENDPOINTS_PER_TENANT: usize = 20;

/// Endpoints of one tenant, with when they were read.
type EndpointCache = HashMap<TenantId, (Instant, Arc<Vec<WebhookEndpoint>>)>;

/// How often a delivery loop deletes deliveries past the retention.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How long a tenant's endpoint list is reused when events are published
/// (the one-second freshness of DESIGN §2, guarantee 11).
const ENDPOINT_CACHE_TTL: Duration = Duration::from_secs(1);

struct Inner {
    endpoints: Arc<dyn WebhookStore>,
    log: Arc<dyn DeliveryLog>,
    config: WebhookConfig,
    client: reqwest::Client,
    wake: Notify,
    cache: Mutex<EndpointCache>,
    metrics: OnceLock<Metrics>,
}

/// Tenants' webhooks: endpoint management, the outbox, and the delivery
/// loop. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhooks")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A delivery with its attempts, as the API shows it.
pub type DeliveryDetail = (DeliveryRecord, Vec<AttemptRecord>);

/// Stops a running delivery loop (it also stops when dropped).
#[derive(Debug)]
pub struct DeliveryLoop {
    task: JoinHandle<()>,
}

impl DeliveryLoop {
    /// Stops the loop; an attempt in flight is abandoned (its claim lapses
    /// and another process takes it over).
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for DeliveryLoop {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Webhooks {
    /// Webhooks over these stores.
    pub fn new(
        endpoints: Arc<dyn WebhookStore>,
        log: Arc<dyn DeliveryLog>,
        config: WebhookConfig,
    ) -> Result<Self, ConfigError> {
        let client = reqwest::Client::builder()
            .timeout(config.attempt_timeout)
            .connect_timeout(config.attempt_timeout)
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would connect to addresses the policy never saw.
            .no_proxy()
            .dns_resolver(Arc::new(url::PolicyResolver(config.policy)))
            .user_agent(concat!(
                "bulk-onboarding-webhooks/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| ConfigError::new(format!("cannot build the webhook HTTP client: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                endpoints,
                log,
                config,
                client,
                wake: Notify::new(),
                cache: Mutex::new(HashMap::new()),
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

    fn cache(&self) -> MutexGuard<'_, EndpointCache> {
        self.inner.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ------------------------------------------------------------ endpoints

    /// Registers an endpoint for `tenant`; the answer carries its secret
    /// (show it once). A URL the policy refuses, or unknown event types,
    /// are `Invalid` naming the field.
    pub async fn register(
        &self,
        tenant: &TenantId,
        url: &str,
        events: &[String],
    ) -> Result<WebhookEndpoint> {
        let events = check_events(events)?;
        let parsed = self.check_url(url).await?;
        if self.inner.endpoints.endpoints(tenant).await?.len() >= MAX_ENDPOINTS_PER_TENANT {
            return Err(Error::new(
                ErrorKind::Conflict,
                format!("a tenant has at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints; delete one first"),
            ));
        }
        let endpoint = WebhookEndpoint::new(tenant.clone(), parsed.to_string(), events, now());
        self.inner.endpoints.save_endpoint(&endpoint).await?;
        self.forget(tenant);
        Ok(endpoint)
    }

    async fn check_url(&self, url: &str) -> Result<reqwest::Url> {
        let policy = self.inner.config.policy;
        let parsed = policy
            .check(url, "/url")
            .map_err(|e| Error::invalid(vec![e]))?;
        policy
            .check_resolved(&parsed, "/url")
            .await
            .map_err(|e| Error::invalid(vec![e]))?;
        Ok(parsed)
    }

    /// A tenant's endpoints.
    pub async fn endpoints(&self, tenant: &TenantId) -> Result<Vec<WebhookEndpoint>> {
        self.inner.endpoints.endpoints(tenant).await
    }

    /// Gives an endpoint a new secret; the old one keeps signing for
    /// `overlap` (default [`WebhookConfig::rotation_overlap`]).
    pub async fn rotate_secret(
        &self,
        tenant: &TenantId,
        id: EndpointId,
        overlap: Option<Duration>,
    ) -> Result<WebhookEndpoint> {
        let current = self
            .inner
            .endpoints
            .endpoint(tenant, id)
            .await?
            .ok_or_else(|| endpoint_not_found(id))?;
        let overlap = overlap.unwrap_or(self.inner.config.rotation_overlap);
        let rotated = current.rotated(now(), overlap);
        self.inner.endpoints.save_endpoint(&rotated).await?;
        self.forget(tenant);
        Ok(rotated)
    }

    /// Deletes an endpoint (its deliveries stay listed).
    pub async fn delete(&self, tenant: &TenantId, id: EndpointId) -> Result<()> {
        if !self.inner.endpoints.delete_endpoint(tenant, id).await? {
            return Err(endpoint_not_found(id));
        }
        self.forget(tenant);
        Ok(())
    }

    /// Registers `url` for `tenant`'s `batch.completed` under an id derived
    /// from both (the `WEBHOOK_URLS` bootstrap: every process agrees on it).
    /// Signs with `secret` when given; otherwise keeps the stored secret,
    /// or generates one and returns it (print it: it is shown only once).
    pub async fn bootstrap(
        &self,
        tenant: &TenantId,
        url: &str,
        secret: Option<&str>,
    ) -> Result<Option<String>> {
        let parsed = self.check_url(url).await?;
        let digest = Sha256::digest(format!("{tenant}\n{parsed}").as_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        let id = EndpointId(uuid::Uuid::from_bytes(id));
        let stored = self.inner.endpoints.endpoint(tenant, id).await?;
        let (mut endpoint, generated) = match (stored, secret) {
            // Registered by an earlier start (or another process): keep it.
            (Some(_), None) => return Ok(None),
            (Some(e), Some(s)) if e.secret == s => return Ok(None),
            (Some(e), Some(_)) => (e, None),
            (None, _) => {
                let mut e = WebhookEndpoint::new(
                    tenant.clone(),
                    parsed.to_string(),
                    vec!["batch.completed".to_owned()],
                    now(),
                );
                e.id = id;
                let generated = secret.is_none().then(|| e.secret.clone());
                (e, generated)
            }
        };
        if let Some(secret) = secret {
            endpoint.secret = secret.to_owned();
            endpoint.updated_at = now();
        }
        self.inner.endpoints.save_endpoint(&endpoint).await?;
        self.forget(tenant);
        Ok(generated)
    }

    fn forget(&self, tenant: &TenantId) {
        self.cache().remove(tenant);
    }

    /// A tenant's endpoints, read at most once a second per process.
    async fn subscribed(&self, tenant: &TenantId) -> Result<Arc<Vec<WebhookEndpoint>>> {
        if let Some((at, list)) = self.cache().get(tenant) {
            if at.elapsed() < ENDPOINT_CACHE_TTL {
                return Ok(list.clone());
            }
        }
        let list = Arc::new(self.inner.endpoints.endpoints(tenant).await?);
        let mut cache = self.cache();
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(tenant.clone(), (Instant::now(), list.clone()));
        Ok(list)
    }

    // ------------------------------------------------------------ deliveries

    /// Adds a delivery of each event to every endpoint that wants it, and
    /// wakes this process's loop.
    pub async fn enqueue(&self, events: &[Event]) -> Result<u64> {
        let at = now();
        let mut deliveries = Vec::new();
        for message in events.iter().filter_map(payload::message) {
            for endpoint in self.subscribed(&message.tenant).await?.iter() {
                if endpoint.wants(message.event) {
                    deliveries.push(new_delivery(endpoint, &message, at));
                }
            }
        }
        if deliveries.is_empty() {
            return Ok(0);
        }
        let added = self.inner.log.add_deliveries(&deliveries).await?;
        self.inner.wake.notify_one();
        Ok(added)
    }

    /// A tenant's deliveries, newest first.
    pub async fn deliveries(
        &self,
        tenant: &TenantId,
        query: &DeliveryQuery,
    ) -> Result<Vec<DeliveryRecord>> {
        self.inner.log.deliveries(tenant, query).await
    }

    /// One delivery of a tenant with its attempts.
    pub async fn delivery(&self, tenant: &TenantId, id: DeliveryId) -> Result<DeliveryDetail> {
        self.inner
            .log
            .delivery(tenant, id)
            .await?
            .ok_or_else(|| delivery_not_found(id))
    }

    /// Sends a delivery again now (a new round of retries follows when it
    /// fails) and answers it with its attempts. `Conflict` while another
    /// attempt of it is in flight.
    pub async fn replay(&self, tenant: &TenantId, id: DeliveryId) -> Result<DeliveryDetail> {
        let at = now();
        let claimed = self
            .inner
            .log
            .claim_delivery(tenant, id, at, after(at, self.inner.config.lease()))
            .await?
            .ok_or_else(|| delivery_not_found(id))?;
        self.attempt(claimed).await;
        self.delivery(tenant, id).await
    }

    /// Sends a test ping to an endpoint now, logged like any delivery.
    pub async fn ping(&self, tenant: &TenantId, id: EndpointId) -> Result<DeliveryDetail> {
        let endpoint = self
            .inner
            .endpoints
            .endpoint(tenant, id)
            .await?
            .ok_or_else(|| endpoint_not_found(id))?;
        let at = now();
        let lease = LeaseToken::new();
        let delivery = new_delivery(&endpoint, &payload::ping(tenant), at)
            .claimed(lease, after(at, self.inner.config.lease()));
        self.inner
            .log
            .add_deliveries(std::slice::from_ref(&delivery))
            .await?;
        let (record, _) = self.delivery(tenant, delivery.id).await?;
        self.attempt(ClaimedDelivery::new(record, lease)).await;
        self.delivery(tenant, delivery.id).await
    }

    /// Runs the delivery loop in a task: due deliveries are claimed and
    /// sent, by this process or any other running it.
    pub fn start(&self) -> DeliveryLoop {
        let this = self.clone();
        DeliveryLoop {
            task: tokio::spawn(async move { this.run().await }),
        }
    }

    async fn run(&self) {
        let config = &self.inner.config;
        let mut next_prune = Instant::now();
        loop {
            if Instant::now() >= next_prune {
                next_prune = Instant::now() + PRUNE_EVERY;
                let before = onboarding_core::model::before(now(), config.retention);
                match self.inner.log.prune(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(deleted = n, "old webhook deliveries pruned"),
                    Err(error) => tracing::warn!(%error, "cannot prune old webhook deliveries"),
                }
            }
            loop {
                let at = now();
                let claimed = match self
                    .inner
                    .log
                    .claim_due(at, config.batch_size, after(at, config.lease()))
                    .await
                {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::warn!(%error, "cannot claim due webhook deliveries");
                        break;
                    }
                };
                if claimed.is_empty() {
                    break;
                }
                futures::future::join_all(claimed.into_iter().map(|c| self.attempt(c))).await;
            }
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(config.poll_interval) => {}
            }
        }
    }

    /// Makes one attempt of a claimed delivery and records it.
    async fn attempt(&self, claimed: ClaimedDelivery) {
        let record = &claimed.record;
        let started_at = now();
        let started = Instant::now();
        let Sent {
            status_code,
            error,
            hopeless,
        } = match self
            .inner
            .endpoints
            .endpoint(&record.tenant, record.endpoint_id)
            .await
        {
            Ok(Some(endpoint)) => self.send(&endpoint, record).await,
            Ok(None) => Sent::hopeless("the endpoint was deleted"),
            Err(e) => Sent::failed(None, format!("cannot read the endpoint: {}", e.message())),
        };
        let delivered = status_code.is_some_and(|c| (200..300).contains(&c));
        let attempt = AttemptRecord {
            delivery_id: record.id,
            attempt: record.attempts + 1,
            started_at,
            latency_ms: u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX),
            status_code,
            error: if delivered { None } else { error },
            delivered,
        };
        let mut result = AttemptResult::new(&claimed, attempt, &self.inner.config.retry, now());
        if hopeless {
            // Trying again cannot help: no retry (a replay may, once fixed).
            result.status = DeliveryStatus::Failed;
            result.next_attempt_at = None;
        }
        tracing::info!(
            delivery_id = %record.id, webhook_id = %record.webhook_id, tenant = %record.tenant,
            event = %record.event, attempt = result.attempt.attempt, status = ?status_code,
            outcome = result.status.as_str(), error = result.attempt.error.as_deref().unwrap_or(""),
            "webhook delivery attempt"
        );
        if let Some(metrics) = self.inner.metrics.get() {
            metrics.record_webhook(if delivered { "delivered" } else { "failed" });
        }
        match self.inner.log.record_attempt(&result).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(delivery_id = %record.id, "the claim passed to another process; attempt not recorded")
            }
            Err(error) => {
                tracing::warn!(delivery_id = %record.id, %error, "cannot record a webhook attempt; it will be made again")
            }
        }
    }

    /// POSTs the delivery's body, signed; the answer's status or the error.
    async fn send(&self, endpoint: &WebhookEndpoint, record: &DeliveryRecord) -> Sent {
        // Checked again at delivery: the URL may predate a stricter policy;
        // the client's resolver checks the addresses it connects to.
        let url = match self.inner.config.policy.check(&endpoint.url, "/url") {
            Ok(url) => url,
            Err(e) => return Sent::hopeless(&format!("the URL is not allowed: {}", e.detail)),
        };
        let at = now();
        let timestamp = at.timestamp();
        let signature = sign_all(
            &endpoint.signing_secrets(at),
            timestamp,
            record.body.as_bytes(),
        );
        let sent = self
            .inner
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(ID_HEADER, &record.webhook_id)
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(record.body.clone())
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Sent {
                status_code: Some(response.status().as_u16()),
                error: None,
                hopeless: false,
            },
            Ok(response) => Sent::failed(
                Some(response.status().as_u16()),
                format!("the endpoint answered {}", response.status()),
            ),
            Err(e) => Sent::failed(None, transport_error(e)),
        }
    }
}

/// How one attempt went.
struct Sent {
    /// The endpoint's HTTP status, when it answered.
    status_code: Option<u16>,
    /// Why it failed.
    error: Option<String>,
    /// Whether retrying cannot help (the endpoint is gone or its URL refused).
    hopeless: bool,
}

impl Sent {
    fn failed(status_code: Option<u16>, error: String) -> Self {
        Self {
            status_code,
            error: Some(error),
            hopeless: false,
        }
    }

    fn hopeless(error: &str) -> Self {
        Self {
            status_code: None,
            error: Some(error.to_owned()),
            hopeless: true,
        }
    }
}

/// Why a request failed, without the URL (it may carry a tenant's token).
fn transport_error(e: reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.downcast_ref::<url::PrivateAddress>().is_some() {
            return s.to_string();
        }
        source = s.source();
    }
    if e.is_timeout() {
        "the endpoint did not answer in time".to_owned()
    } else if e.is_connect() {
        "could not connect to the endpoint".to_owned()
    } else {
        format!("request failed: {}", e.without_url())
    }
}

fn new_delivery(
    endpoint: &WebhookEndpoint,
    message: &Message,
    at: onboarding_core::model::Timestamp,
) -> NewDelivery {
    NewDelivery::new(
        endpoint,
        message.webhook_id.clone(),
        message.event,
        message.batch_id,
        message.body.clone(),
        at,
    )
}

fn endpoint_not_found(id: EndpointId) -> Error {
    Error::not_found(format!("webhook endpoint {id} does not exist"))
}

fn delivery_not_found(id: DeliveryId) -> Error {
    Error::not_found(format!("webhook delivery {id} does not exist"))
}

/// An [`EventSink`] that turns events into deliveries in the outbox (see
/// [`Webhooks::enqueue`]) after handing every event to an inner sink. A
/// failure to record them fails `publish`, so the core publishes
/// `BatchCompleted` again later (at least once).
#[derive(Clone)]
pub struct WebhookSink {
    webhooks: Webhooks,
    next: Arc<dyn EventSink>,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("webhooks", &self.webhooks)
            .finish_non_exhaustive()
    }
}

impl WebhookSink {
    /// A sink recording deliveries in `webhooks`, after handing every event to `next`.
    pub fn new(webhooks: Webhooks, next: Arc<dyn EventSink>) -> Self {
        Self { webhooks, next }
    }
}

#[async_trait]
impl EventSink for WebhookSink {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        let forwarded = self.next.publish(events).await;
        if let Err(e) = self.webhooks.enqueue(events).await {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("webhook deliveries could not be recorded ({}); the events are published again later", e.message()),
            ));
        }
        forwarded
    }
}

pub(crate) fn hex_bytes(bytes: &[u8]) -> String {
    sign::hex(bytes)
}

pub(crate) fn unhex_bytes(s: &str) -> Option<Vec<u8>> {
    sign::unhex(s)
}
