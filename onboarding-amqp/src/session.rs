//! One connection to the broker: a publishing channel in confirm mode, a
//! consuming channel with one consumer per tenant queue, the local state of
//! its deliveries, and the task that gives back overdue deliveries.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use lapin::message::DeliveryResult;
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ConsumerDelegate};
use onboarding_core::model::TenantId;
use onboarding_core::{Delivery, Job};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::AmqpConfig;
use crate::error::AmqpError;
use crate::local::Local;
use crate::topology;

static CONSUMERS: AtomicU64 = AtomicU64::new(0);

/// Tenants a queue has heard of (enqueued for, or announced), across sessions.
pub(crate) type Tenants = Arc<Mutex<HashSet<TenantId>>>;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a panic elsewhere; every state kept here is
    // consistent between statements.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the consumer delegates share with the calls.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    local: Mutex<Local>,
    /// Signalled when the buffer grows or the session breaks.
    pub(crate) changed: Notify,
    /// Signalled when a new redelivery deadline exists or the session breaks.
    timer: Notify,
    broken: AtomicBool,
}

impl Shared {
    pub(crate) fn local(&self) -> MutexGuard<'_, Local> {
        lock(&self.local)
    }

    fn mark_broken(&self) {
        if !self.broken.swap(true, Ordering::SeqCst) {
            tracing::warn!("rabbitmq session broken");
        }
        self.changed.notify_waiters();
        self.timer.notify_one();
    }
}

/// A live connection and everything tied to it. Delivery tags, receipts and
/// the local buffer are only meaningful within one session (`generation`).
pub(crate) struct Session {
    pub(crate) generation: u64,
    config: AmqpConfig,
    /// `Some` until dropped.
    connection: Option<Connection>,
    pub(crate) publish: Channel,
    pub(crate) consume: Channel,
    pub(crate) shared: Arc<Shared>,
    /// Tenant queues declared (and bound) by this session.
    declared: Mutex<HashSet<TenantId>>,
    /// Whether this session consumes (it does once `dequeue` was called).
    consuming: AtomicBool,
    /// Tenant queues this session consumes.
    subscribed: Mutex<HashSet<TenantId>>,
    tenants: Tenants,
    reaper: Mutex<Option<AbortHandle>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(handle) = lock(&self.reaper).take() {
            handle.abort();
        }
        // Lapin keeps a connection open while its consumers exist: close it,
        // so that the broker gives the unacknowledged deliveries back now.
        let connection = self.connection.take();
        if let (Some(connection), Ok(runtime)) = (connection, tokio::runtime::Handle::try_current())
        {
            runtime.spawn(async move {
                if connection.status().connected() {
                    let _ = connection.close(200, "dropped".into()).await;
                }
            });
        }
    }
}

impl Session {
    /// Connects and declares the exchanges and shared queues.
    pub(crate) async fn open(
        config: &AmqpConfig,
        generation: u64,
        tenants: Tenants,
    ) -> Result<Arc<Self>, AmqpError> {
        let connection = Connection::connect(config.url.expose(), ConnectionProperties::default())
            .await
            .map_err(AmqpError::lapin("connecting to the broker"))?;
        let publish = connection
            .create_channel()
            .await
            .map_err(AmqpError::lapin("opening the publishing channel"))?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(AmqpError::lapin("enabling publisher confirms"))?;
        topology::declare(&publish, config).await?;
        let consume = connection
            .create_channel()
            .await
            .map_err(AmqpError::lapin("opening the consuming channel"))?;
        consume
            .basic_qos(config.prefetch, BasicQosOptions::default())
            .await
            .map_err(AmqpError::lapin("setting the prefetch"))?;
        let session = Arc::new(Self {
            generation,
            config: config.clone(),
            connection: Some(connection),
            publish,
            consume,
            shared: Arc::new(Shared::default()),
            declared: Mutex::new(HashSet::new()),
            consuming: AtomicBool::new(false),
            subscribed: Mutex::new(HashSet::new()),
            tenants,
            reaper: Mutex::new(None),
        });
        let reaper = tokio::spawn(reap(Arc::downgrade(&session)));
        *lock(&session.reaper) = Some(reaper.abort_handle());
        Ok(session)
    }

    /// Whether the session can still be used.
    pub(crate) fn healthy(&self) -> bool {
        !self.is_broken()
            && self
                .connection
                .as_ref()
                .is_some_and(|c| c.status().connected())
            && self.publish.status().connected()
            && self.consume.status().connected()
    }

    /// Marks the session unusable: the next call opens a new one.
    pub(crate) fn mark_broken(&self) {
        self.shared.mark_broken();
    }

    /// Whether the session was marked unusable.
    pub(crate) fn is_broken(&self) -> bool {
        self.shared.broken.load(Ordering::SeqCst)
    }

    /// Wraps a lapin error, marking the session broken.
    pub(crate) fn fail(
        &self,
        context: &'static str,
    ) -> impl FnOnce(lapin::Error) -> AmqpError + '_ {
        move |source| {
            self.mark_broken();
            AmqpError::Lapin { context, source }
        }
    }

    fn check<T>(&self, result: Result<T, AmqpError>) -> Result<T, AmqpError> {
        if result.is_err() {
            self.mark_broken();
        }
        result
    }

    /// Declares a tenant's queue once per session, and consumes it when
    /// this session consumes.
    pub(crate) async fn ensure_tenant(
        self: &Arc<Self>,
        tenant: &TenantId,
    ) -> Result<(), AmqpError> {
        lock(&self.tenants).insert(tenant.clone());
        if !lock(&self.declared).contains(tenant) {
            let declared = topology::tenant_queue(&self.publish, &self.config, tenant).await;
            self.check(declared)?;
            lock(&self.declared).insert(tenant.clone());
        }
        if self.consuming.load(Ordering::SeqCst) {
            self.subscribe(tenant).await?;
        }
        Ok(())
    }

    /// Whether this session consumes.
    pub(crate) fn consuming(&self) -> bool {
        self.consuming.load(Ordering::SeqCst)
    }

    /// Starts consuming: the shared work queue, the announcements, and the
    /// queue of every tenant heard of so far.
    pub(crate) async fn start_consuming(self: &Arc<Self>) -> Result<(), AmqpError> {
        if self.consuming.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let announce = topology::announce_queue(&self.consume, &self.config).await;
        let announce = self.check(announce)?;
        let options = BasicConsumeOptions {
            no_ack: true,
            ..BasicConsumeOptions::default()
        };
        self.consume
            .basic_consume(
                announce.as_str().into(),
                self.consumer_tag().as_str().into(),
                options,
                FieldTable::default(),
            )
            .await
            .map_err(self.fail("consuming announcements"))?
            .set_delegate(Announcements(Arc::downgrade(self)));
        self.consume_queue(self.config.work_queue(), None).await?;
        let tenants: Vec<TenantId> = lock(&self.tenants).iter().cloned().collect();
        for tenant in tenants {
            self.ensure_tenant(&tenant).await?;
        }
        Ok(())
    }

    async fn subscribe(&self, tenant: &TenantId) -> Result<(), AmqpError> {
        if !lock(&self.subscribed).insert(tenant.clone()) {
            return Ok(());
        }
        let result = self
            .consume_queue(self.config.tenant_queue(tenant), Some(tenant.clone()))
            .await;
        if result.is_err() {
            lock(&self.subscribed).remove(tenant);
        }
        result
    }

    async fn consume_queue(
        &self,
        queue: String,
        tenant: Option<TenantId>,
    ) -> Result<(), AmqpError> {
        self.consume
            .basic_consume(
                queue.as_str().into(),
                self.consumer_tag().as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(self.fail("starting a consumer"))?
            .set_delegate(Jobs {
                shared: self.shared.clone(),
                tenant,
            });
        Ok(())
    }

    fn consumer_tag(&self) -> String {
        format!(
            "{}-{}-{}",
            self.config.prefix,
            std::process::id(),
            CONSUMERS.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Hands out up to `max` buffered jobs, arming their redelivery.
    pub(crate) fn take(&self, max: usize) -> Vec<Delivery> {
        let got = self
            .shared
            .local()
            .take(max, self.generation, self.config.visibility_timeout);
        if !got.is_empty() {
            self.shared.timer.notify_one();
        }
        got
    }

    /// Closes the connection politely.
    pub(crate) async fn close(&self) {
        self.mark_broken();
        if let Some(connection) = &self.connection {
            if let Err(e) = connection.close(200, "bye".into()).await {
                tracing::debug!(error = %e, "closing the rabbitmq connection");
            }
        }
    }
}

type Ready = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Puts each delivery of a work queue into the local buffer as soon as the
/// client has read it (synchronously, so nothing the client holds is ever
/// missed by `dequeue`).
struct Jobs {
    shared: Arc<Shared>,
    tenant: Option<TenantId>,
}

impl ConsumerDelegate for Jobs {
    fn on_new_delivery(&self, delivery: DeliveryResult) -> Ready {
        match delivery {
            Ok(Some(delivery)) => match serde_json::from_slice::<Job>(&delivery.data) {
                Ok(job) => {
                    self.shared.local().push(delivery.delivery_tag, job);
                    self.shared.changed.notify_waiters();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "unparseable job message sent to the dead-letter queue");
                    let shared = self.shared.clone();
                    return Box::pin(async move {
                        let options = BasicRejectOptions { requeue: false };
                        if let Err(e) = delivery.acker.reject(options).await {
                            tracing::warn!(error = %e, "rejecting an unparseable message failed");
                            shared.mark_broken();
                        }
                    });
                }
            },
            Ok(None) => {
                // Cancelled by the broker (its queue was deleted): a new
                // session declares and consumes again.
                tracing::warn!(tenant = ?self.tenant, "rabbitmq consumer cancelled");
                self.shared.mark_broken();
            }
            Err(e) => {
                tracing::warn!(error = %e, "rabbitmq consumer failed");
                self.shared.mark_broken();
            }
        }
        Box::pin(std::future::ready(()))
    }
}

/// Starts consuming the queue of each tenant another process announces.
struct Announcements(Weak<Session>);

impl ConsumerDelegate for Announcements {
    fn on_new_delivery(&self, delivery: DeliveryResult) -> Ready {
        let session = self.0.clone();
        Box::pin(async move {
            let Ok(Some(delivery)) = delivery else {
                return;
            };
            let Ok(tenant) = std::str::from_utf8(&delivery.data).map(TenantId::parse) else {
                return;
            };
            let (Ok(tenant), Some(session)) = (tenant, session.upgrade()) else {
                return;
            };
            if let Err(e) = session.ensure_tenant(&tenant).await {
                tracing::warn!(error = %e, %tenant, "cannot consume an announced tenant");
            }
        })
    }
}

/// Gives back deliveries not acknowledged within the visibility timeout
/// (`basic.nack` with requeue), so the broker delivers them again.
async fn reap(session: Weak<Session>) {
    loop {
        let (next, shared) = {
            let Some(s) = session.upgrade() else { return };
            if s.is_broken() {
                return;
            }
            let next = s.shared.local().next_deadline();
            (next, s.shared.clone())
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = shared.timer.notified() => continue,
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => {
                shared.timer.notified().await;
                continue;
            }
        }
        drop(shared);
        let Some(s) = session.upgrade() else { return };
        let expired = s.shared.local().expire(Instant::now());
        for tag in expired {
            let options = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            if let Err(e) = s.consume.basic_nack(tag, options).await {
                tracing::warn!(error = %e, "giving back an overdue delivery failed");
                s.mark_broken();
                return;
            }
        }
    }
}
