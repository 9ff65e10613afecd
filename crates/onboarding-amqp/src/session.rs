//! One connection to the broker: a publishing channel in confirm mode, a
//! consuming channel with its prefetch and consumer, the local state of its
//! deliveries, and the task that gives back overdue deliveries.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use futures::{FutureExt, StreamExt};
use lapin::options::{
    BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use onboarding_core::{Delivery, Job};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::config::AmqpConfig;
use crate::error::AmqpError;
use crate::local::{Local, Tag};
use crate::topology;

static CONSUMERS: AtomicU64 = AtomicU64::new(0);

/// A live connection and everything tied to it. Delivery tags, receipts and
/// the local buffer are only meaningful within one session (`generation`).
pub(crate) struct Session {
    pub(crate) generation: u64,
    connection: Connection,
    pub(crate) publish: Channel,
    pub(crate) consume: Channel,
    consumer: tokio::sync::Mutex<Consumer>,
    local: Mutex<Local>,
    /// Signalled when the buffer grows, the consumer is released or the
    /// session breaks.
    pub(crate) changed: Notify,
    /// Signalled when a new redelivery deadline exists.
    timer: Arc<Notify>,
    broken: AtomicBool,
    reaper: Mutex<Option<AbortHandle>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(mut reaper) = self.reaper.lock() {
            if let Some(handle) = reaper.take() {
                handle.abort();
            }
        }
    }
}

impl Session {
    /// Connects, declares the queues and starts consuming.
    pub(crate) async fn open(config: &AmqpConfig, generation: u64) -> Result<Arc<Self>, AmqpError> {
        let connection = Connection::connect(&config.url, ConnectionProperties::default())
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
        let tag = format!(
            "{}-{}-{}",
            config.prefix,
            std::process::id(),
            CONSUMERS.fetch_add(1, Ordering::Relaxed)
        );
        let consumer = consume
            .basic_consume(
                config.work_queue().as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(AmqpError::lapin("starting the consumer"))?;

        let session = Arc::new(Self {
            generation,
            connection,
            publish,
            consume,
            consumer: tokio::sync::Mutex::new(consumer),
            local: Mutex::new(Local::default()),
            changed: Notify::new(),
            timer: Arc::new(Notify::new()),
            broken: AtomicBool::new(false),
            reaper: Mutex::new(None),
        });
        let reaper = tokio::spawn(reap(Arc::downgrade(&session), session.timer.clone()));
        if let Ok(mut slot) = session.reaper.lock() {
            *slot = Some(reaper.abort_handle());
        }
        Ok(session)
    }

    /// Whether the session can still be used.
    pub(crate) fn healthy(&self) -> bool {
        !self.broken.load(Ordering::SeqCst)
            && self.connection.status().connected()
            && self.publish.status().connected()
            && self.consume.status().connected()
    }

    /// Marks the session unusable: the next call opens a new one.
    pub(crate) fn mark_broken(&self) {
        if !self.broken.swap(true, Ordering::SeqCst) {
            tracing::warn!(generation = self.generation, "rabbitmq session broken");
        }
        self.changed.notify_waiters();
        self.timer.notify_one();
    }

    /// Whether the session was marked unusable.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
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

    /// The local state. A poisoned lock only means a panic elsewhere; the
    /// state itself is always consistent between statements.
    pub(crate) fn local(&self) -> MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands out up to `max` buffered jobs, arming their redelivery.
    pub(crate) fn take(&self, max: usize, config: &AmqpConfig) -> Vec<Delivery> {
        let got = self
            .local()
            .take(max, self.generation, config.visibility_timeout);
        if !got.is_empty() {
            self.timer.notify_one();
        }
        got
    }

    /// The consumer, if no other call is reading it.
    pub(crate) fn try_hold(&self) -> Option<Held<'_>> {
        self.consumer.try_lock().ok().map(|guard| Held {
            guard,
            _wake: WakeOnDrop(&self.changed),
        })
    }

    /// Moves every delivery the client already received into the buffer,
    /// without waiting.
    pub(crate) async fn drain(&self, held: &mut Held<'_>) -> Result<(), AmqpError> {
        let mut rejects = Vec::new();
        let mut result = Ok(());
        while let Some(next) = held.consumer().next().now_or_never() {
            if let Err(e) = self.accept(next, &mut rejects) {
                result = Err(e);
                break;
            }
        }
        self.changed.notify_waiters();
        self.reject(rejects).await?;
        result
    }

    /// Waits for the next delivery and buffers it.
    pub(crate) async fn receive(&self, held: &mut Held<'_>) -> Result<(), AmqpError> {
        let next = held.consumer().next().await;
        let mut rejects = Vec::new();
        let result = self.accept(next, &mut rejects);
        self.changed.notify_waiters();
        self.reject(rejects).await?;
        result
    }

    fn accept(
        &self,
        next: Option<lapin::Result<lapin::message::Delivery>>,
        rejects: &mut Vec<Tag>,
    ) -> Result<(), AmqpError> {
        match next {
            Some(Ok(delivery)) => {
                match serde_json::from_slice::<Job>(&delivery.data) {
                    Ok(job) => self.local().push(delivery.delivery_tag, job),
                    Err(e) => {
                        tracing::warn!(error = %e, "unparseable job message sent to the dead-letter queue");
                        rejects.push(delivery.delivery_tag);
                    }
                }
                Ok(())
            }
            Some(Err(source)) => {
                self.mark_broken();
                Err(AmqpError::Lapin {
                    context: "consuming",
                    source,
                })
            }
            None => {
                self.mark_broken();
                Err(AmqpError::ConnectionLost)
            }
        }
    }

    /// Rejects unprocessable deliveries without requeue: the work queue
    /// dead-letters them.
    async fn reject(&self, tags: Vec<Tag>) -> Result<(), AmqpError> {
        for tag in tags {
            self.consume
                .basic_reject(tag, BasicRejectOptions { requeue: false })
                .await
                .map_err(self.fail("dead-lettering an unparseable message"))?;
        }
        Ok(())
    }

    /// Closes the connection politely.
    pub(crate) async fn close(&self) {
        self.mark_broken();
        if let Err(e) = self.connection.close(200, "bye".into()).await {
            tracing::debug!(error = %e, "closing the rabbitmq connection");
        }
    }
}

/// Exclusive use of the consumer; releasing it wakes the other dequeuers so
/// one of them takes over waiting for deliveries.
pub(crate) struct Held<'a> {
    // Fields drop in order: the lock is released before the wake-up.
    guard: tokio::sync::MutexGuard<'a, Consumer>,
    _wake: WakeOnDrop<'a>,
}

impl Held<'_> {
    fn consumer(&mut self) -> &mut Consumer {
        &mut self.guard
    }
}

struct WakeOnDrop<'a>(&'a Notify);

impl Drop for WakeOnDrop<'_> {
    fn drop(&mut self) {
        self.0.notify_waiters();
    }
}

/// Gives back deliveries not acknowledged within the visibility timeout
/// (`basic.nack` with requeue), so the broker delivers them again.
async fn reap(session: Weak<Session>, timer: Arc<Notify>) {
    loop {
        let next = {
            let Some(s) = session.upgrade() else { return };
            if s.is_broken() {
                return;
            }
            let next = s.local().next_deadline();
            next
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = timer.notified() => continue,
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => {
                timer.notified().await;
                continue;
            }
        }
        let Some(s) = session.upgrade() else { return };
        let expired = s.local().expire(Instant::now());
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
