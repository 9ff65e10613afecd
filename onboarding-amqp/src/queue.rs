//! `AmqpQueue`: the [`JobQueue`] on RabbitMQ.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use lapin::options::{
    BasicAckOptions, BasicPublishOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use lapin::Confirmation;
use onboarding_core::model::{now, TenantId};
use onboarding_core::{Delivery, Job, JobQueue, QueueDepth, Receipt, Result};
use tokio::time::Instant;

use crate::config::AmqpConfig;
use crate::error::AmqpError;
use crate::local::parse_receipt;
use crate::session::{lock, Session, Shared, Tenants};
use crate::topology;

/// A durable job queue on RabbitMQ. See the crate documentation for the
/// design; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct AmqpQueue {
    config: AmqpConfig,
    slot: tokio::sync::Mutex<Slot>,
    /// Tenants this queue enqueued for or heard announced: a new session
    /// consumes all their queues (and `delete_queues` deletes them).
    pub(crate) tenants: Tenants,
    /// Connections opened so far.
    connections: AtomicU64,
}

/// The current session, or when the next connection attempt is due.
#[derive(Default)]
struct Slot {
    session: Option<Arc<Session>>,
    generation: u64,
    failures: u32,
    retry_at: Option<Instant>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field(
                "connected",
                &self.session.as_ref().is_some_and(|s| s.healthy()),
            )
            .field("generation", &self.generation)
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl AmqpQueue {
    /// A queue for `config`. Connects lazily, on the first call; use
    /// [`AmqpQueue::connect`] to fail fast on a wrong URL.
    pub fn new(config: AmqpConfig) -> Self {
        Self {
            config,
            slot: tokio::sync::Mutex::new(Slot::default()),
            tenants: Tenants::default(),
            connections: AtomicU64::new(0),
        }
    }

    /// A queue for `config`, connected and with its queues declared.
    pub async fn connect(config: AmqpConfig) -> Result<Self> {
        let queue = Self::new(config);
        queue.session().await?;
        Ok(queue)
    }

    /// How many times the queue connected again after losing its
    /// connection (for metrics and tests).
    pub fn reconnects(&self) -> u64 {
        self.connections.load(Ordering::Relaxed).saturating_sub(1)
    }

    /// Its configuration.
    pub fn config(&self) -> &AmqpConfig {
        &self.config
    }

    /// Messages in the dead-letter queue (unprocessable payloads).
    pub async fn dead_lettered(&self) -> Result<u64> {
        let s = self.session().await?;
        Ok(u64::from(
            count(&s, &self.config.dead_letter_queue()).await?,
        ))
    }

    /// Deletes every queue of this configuration (with their messages) and
    /// closes the connection. Meant for tests and teardown.
    pub async fn delete_queues(&self) -> Result<()> {
        let s = self.session().await?;
        let tenants: Vec<TenantId> = lock(&self.tenants).iter().cloned().collect();
        let queues = self
            .config
            .queue_names()
            .into_iter()
            .chain(tenants.iter().map(|t| self.config.tenant_queue(t)));
        for name in queues {
            s.publish
                .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(s.fail("deleting a queue"))?;
        }
        for name in self.config.exchange_names() {
            s.publish
                .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                .await
                .map_err(s.fail("deleting an exchange"))?;
        }
        self.close().await;
        Ok(())
    }

    /// Closes the connection; unacknowledged deliveries go back to the
    /// broker. A later call connects again.
    pub async fn close(&self) {
        let session = self.slot.lock().await.session.take();
        if let Some(s) = session {
            s.close().await;
        }
    }

    /// The current session, connecting (with backoff after failures) when
    /// there is none or it broke.
    async fn session(&self) -> Result<Arc<Session>, AmqpError> {
        let mut slot = self.slot.lock().await;
        if let Some(s) = &slot.session {
            if s.healthy() {
                return Ok(s.clone());
            }
            s.mark_broken();
            slot.session = None;
        }
        let now = Instant::now();
        if let Some(at) = slot.retry_at {
            if now < at {
                return Err(AmqpError::Backoff(at - now));
            }
        }
        slot.generation += 1;
        let generation = slot.generation;
        let opened = tokio::time::timeout(
            self.config.connect_timeout,
            Session::open(&self.config, generation, self.tenants.clone()),
        )
        .await
        .unwrap_or(Err(AmqpError::ConnectTimeout(self.config.connect_timeout)));
        match opened {
            Ok(s) => {
                self.connections.fetch_add(1, Ordering::Relaxed);
                if slot.failures > 0 {
                    tracing::info!(generation, "reconnected to rabbitmq");
                }
                slot.failures = 0;
                slot.retry_at = None;
                slot.session = Some(s.clone());
                Ok(s)
            }
            Err(e) => {
                slot.failures = slot.failures.saturating_add(1);
                let pause = backoff(&self.config, slot.failures);
                slot.retry_at = Some(Instant::now() + pause);
                tracing::warn!(error = %e, retry_in = ?pause, "cannot connect to rabbitmq");
                Err(e)
            }
        }
    }

    /// The current session if it is usable, without connecting.
    async fn current(&self) -> Option<Arc<Session>> {
        self.slot
            .lock()
            .await
            .session
            .clone()
            .filter(|s| s.healthy())
    }

    async fn publish(&self, jobs: &[Job]) -> Result<(), AmqpError> {
        let s = self.session().await?;
        let mut tenants: Vec<&TenantId> = Vec::new();
        for job in jobs {
            if !tenants.contains(&&job.tenant) {
                tenants.push(&job.tenant);
            }
        }
        for tenant in &tenants {
            s.ensure_tenant(tenant).await?;
        }
        let route = self.config.route_exchange();
        let wall = now();
        let mandatory = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut confirms = Vec::with_capacity(jobs.len() + tenants.len());
        for job in jobs {
            let payload = serde_json::to_vec(job).map_err(AmqpError::Encode)?;
            let mut properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into());
            let delay = job
                .not_before
                .and_then(|at| (at - wall).to_std().ok())
                .filter(|d| !d.is_zero());
            let exchange = match delay {
                Some(delay) => {
                    // Rounded up: a message never expires early.
                    let ms = delay.as_nanos().div_ceil(1_000_000);
                    properties = properties.with_expiration(ms.to_string().as_str().into());
                    self.config
                        .wait_exchange(topology::bucket(delay, self.config.delay_buckets))
                }
                None => route.clone(),
            };
            let confirm = s
                .publish
                .basic_publish(
                    exchange.as_str().into(),
                    job.tenant.as_str().into(),
                    mandatory,
                    &payload,
                    properties,
                )
                .await
                .map_err(s.fail("publishing"))?;
            confirms.push(confirm);
        }
        // Tell every consuming process to consume these tenants' queues.
        let announce = self.config.announce_exchange();
        for tenant in &tenants {
            let confirm = s
                .publish
                .basic_publish(
                    announce.as_str().into(),
                    topology::ANNOUNCE_KEY.into(),
                    BasicPublishOptions::default(),
                    tenant.as_str().as_bytes(),
                    BasicProperties::default(),
                )
                .await
                .map_err(s.fail("announcing a tenant"))?;
            confirms.push(confirm);
        }
        let (mut nacked, mut unroutable) = (0, 0);
        for confirmation in join_all(confirms).await {
            match confirmation.map_err(s.fail("awaiting a publisher confirm"))? {
                Confirmation::Ack(None) => {}
                Confirmation::Ack(Some(_)) => unroutable += 1,
                Confirmation::Nack(_) | Confirmation::NotRequested => nacked += 1,
            }
        }
        if unroutable > 0 {
            // The exchanges or queues are gone: declare them again on a new session.
            s.mark_broken();
            return Err(AmqpError::Unroutable(unroutable));
        }
        if nacked > 0 {
            return Err(AmqpError::Nacked(nacked));
        }
        Ok(())
    }

    async fn take(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, AmqpError> {
        let max = max.max(1);
        let s = self.session().await?;
        let deadline = Instant::now() + wait;
        if !s.consuming() {
            s.start_consuming().await?;
            // The first deliveries of every tenant queue arrive together:
            // let them, so the first pick already interleaves tenants.
            settle(&s.shared, deadline).await;
        }
        loop {
            // Register interest before looking, so no wake-up is missed.
            let notified = s.shared.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if !s.healthy() {
                // Buffered deliveries of a lost connection come back on the next one.
                s.mark_broken();
                return Err(AmqpError::ConnectionLost);
            }
            let got = s.take(max);
            if !got.is_empty() {
                return Ok(got);
            }
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {}
                () = &mut notified => {}
            }
        }
    }

    async fn settle(&self, receipts: &[Receipt]) -> Result<(), AmqpError> {
        let Some(s) = self.current().await else {
            // Without a live session every receipt is stale: its message is
            // delivered again by the broker, and its claim misses.
            return Ok(());
        };
        let tags: Vec<u64> = {
            let mut local = s.shared.local();
            receipts
                .iter()
                .filter_map(parse_receipt)
                .filter(|(generation, tag)| *generation == s.generation && local.settle(*tag))
                .map(|(_, tag)| tag)
                .collect()
        };
        let acks = tags
            .iter()
            .map(|tag| s.consume.basic_ack(*tag, BasicAckOptions::default()));
        for result in join_all(acks).await {
            result.map_err(s.fail("acknowledging"))?;
        }
        Ok(())
    }

    async fn counts(&self) -> Result<QueueDepth, AmqpError> {
        let s = self.session().await?;
        let channel = &s.publish;
        let config = &self.config;
        let tenants: Vec<TenantId> = lock(&self.tenants).iter().cloned().collect();
        // Full declarations (idempotent) rather than passive ones: a queue
        // that expired is re-created instead of closing the channel.
        let work = topology::work_queue(channel, config);
        let waits =
            join_all((0..config.delay_buckets).map(|b| topology::wait_queue(channel, config, b)));
        let per_tenant = join_all(
            tenants
                .iter()
                .map(|t| topology::tenant_queue(channel, config, t)),
        );
        let (work, waits, per_tenant) = tokio::join!(work, waits, per_tenant);
        let (buffered, in_flight) = {
            let local = s.shared.local();
            (local.buffered(), local.in_flight())
        };
        let mut depth = QueueDepth {
            ready: buffered as u64,
            delayed: 0,
            in_flight: in_flight as u64,
        };
        let checked = |r: Result<u32, AmqpError>| {
            if r.is_err() {
                s.mark_broken();
            }
            r.map(u64::from)
        };
        depth.ready += checked(work)?;
        for n in per_tenant {
            depth.ready += checked(n)?;
        }
        for n in waits {
            depth.delayed += checked(n)?;
        }
        Ok(depth)
    }
}

/// Waits until deliveries stop arriving for a moment (20 ms, at most 200 ms
/// in all, never past `deadline`).
async fn settle(shared: &Shared, deadline: Instant) {
    const QUIET: Duration = Duration::from_millis(20);
    let until = deadline.min(Instant::now() + Duration::from_millis(200));
    loop {
        let notified = shared.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let quiet = (Instant::now() + QUIET).min(until);
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep_until(quiet) => return,
        }
        if Instant::now() >= until {
            return;
        }
    }
}

/// The ready messages of a queue (passive declare).
async fn count(s: &Session, name: &str) -> Result<u32, AmqpError> {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    let queue = s
        .publish
        .queue_declare(name.into(), options, FieldTable::default())
        .await
        .map_err(s.fail("counting messages"))?;
    Ok(queue.message_count())
}

/// The pause after `failures` failed connection attempts.
fn backoff(config: &AmqpConfig, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    config
        .reconnect_min
        .saturating_mul(factor)
        .min(config.reconnect_max)
}

#[async_trait]
impl JobQueue for AmqpQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        Ok(self.publish(jobs).await?)
    }

    async fn dequeue(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        Ok(self.take(max, wait).await?)
    }

    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        Ok(self.settle(receipts).await?)
    }

    async fn depth(&self) -> Result<QueueDepth> {
        Ok(self.counts().await?)
    }

    async fn ping(&self) -> Result<()> {
        let s = self.session().await?;
        count(&s, &self.config.work_queue()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let config = AmqpConfig::default()
            .with_reconnect_backoff(Duration::from_millis(100), Duration::from_secs(1));
        let pauses: Vec<u128> = (1..=6).map(|n| backoff(&config, n).as_millis()).collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff(&config, u32::MAX), Duration::from_secs(1));
    }
}
