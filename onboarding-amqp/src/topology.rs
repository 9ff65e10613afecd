//! Exchanges and queues, all durable, of the configured type (classic or
//! quorum):
//!
//! - `{prefix}.jobs.t.{tenant}`: one work queue per tenant, bound to the
//!   direct exchange `{prefix}.route` with the tenant as routing key;
//! - `{prefix}.route` sends what matches no tenant queue (a tenant queue
//!   that expired) to its alternate exchange `{prefix}.unrouted`, a fanout
//!   into the shared work queue `{prefix}.jobs`, consumed like the others;
//! - `{prefix}.wait.{n}` fanout exchanges, each into wait queue
//!   `{prefix}.jobs.wait.{n}`, whose expired messages are dead-lettered to
//!   `{prefix}.route` with their original routing key (the tenant);
//! - work queues dead-letter rejected messages (and, quorum queues, messages
//!   past the delivery limit) to `{prefix}.jobs.dead`;
//! - `{prefix}.announce`, a direct exchange of tenant names (key `tenants`):
//!   every consuming process binds a private queue to it and starts consuming
//!   the tenants it hears of.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use onboarding_core::model::TenantId;

use crate::config::{AmqpConfig, QueueType};
use crate::error::AmqpError;

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn millis(d: Duration) -> AMQPValue {
    AMQPValue::LongLongInt(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

const DURABLE: QueueDeclareOptions = QueueDeclareOptions {
    passive: false,
    durable: true,
    exclusive: false,
    auto_delete: false,
    nowait: false,
};

/// Arguments shared by every durable queue: its type, always explicit so
/// the vhost's default type never applies (RabbitMQ 4 quorum queues default
/// to a delivery limit of 20: ours is set here), and the configured expiry.
fn durable(config: &AmqpConfig, expiry: Option<Duration>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text(config.queue_type.as_str()));
    if config.queue_type == QueueType::Quorum {
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(i64::from(config.delivery_limit)),
        );
    }
    if let Some(expiry) = expiry {
        args.insert("x-expires".into(), millis(expiry));
    }
    args
}

/// Adds dead-lettering to `exchange` (with `routing_key`, or the message's
/// own key). Quorum queues dead-letter at least once: a message leaves the
/// queue only once the target confirmed it (RabbitMQ requires
/// `x-overflow: reject-publish` for that; no queue here has a length limit,
/// so it changes nothing else).
fn dead_letter(
    args: &mut FieldTable,
    config: &AmqpConfig,
    exchange: &str,
    routing_key: Option<&str>,
) {
    args.insert("x-dead-letter-exchange".into(), text(exchange));
    if let Some(key) = routing_key {
        args.insert("x-dead-letter-routing-key".into(), text(key));
    }
    if config.queue_type == QueueType::Quorum {
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
    }
}

/// A work queue's arguments: rejected messages, and on quorum queues
/// messages past the delivery limit, go to the dead-letter queue.
fn work_args(config: &AmqpConfig, expiry: Option<Duration>) -> FieldTable {
    let mut args = durable(config, expiry);
    dead_letter(&mut args, config, "", Some(&config.dead_letter_queue()));
    args
}

/// Declares an exchange; with a queue expiry it is auto-deleted with its
/// last binding (so it goes when the queues expire).
async fn exchange(
    channel: &Channel,
    config: &AmqpConfig,
    name: &str,
    kind: ExchangeKind,
    args: FieldTable,
) -> Result<(), AmqpError> {
    let options = ExchangeDeclareOptions {
        durable: true,
        auto_delete: config.queue_expiry.is_some(),
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(name.into(), kind, options, args)
        .await
        .map_err(AmqpError::lapin("declaring an exchange"))
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), AmqpError> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(AmqpError::lapin("binding a queue"))
}

/// Declares the shared work queue; answers its ready messages.
pub(crate) async fn work_queue(channel: &Channel, config: &AmqpConfig) -> Result<u32, AmqpError> {
    let args = work_args(config, config.queue_expiry);
    let queue = channel
        .queue_declare(config.work_queue().as_str().into(), DURABLE, args)
        .await
        .map_err(AmqpError::lapin("declaring the work queue"))?;
    Ok(queue.message_count())
}

/// Declares wait queue `bucket`; answers its messages.
pub(crate) async fn wait_queue(
    channel: &Channel,
    config: &AmqpConfig,
    bucket: u8,
) -> Result<u32, AmqpError> {
    let mut args = durable(config, config.queue_expiry);
    dead_letter(&mut args, config, &config.route_exchange(), None);
    let queue = channel
        .queue_declare(config.wait_queue(bucket).as_str().into(), DURABLE, args)
        .await
        .map_err(AmqpError::lapin("declaring a wait queue"))?;
    Ok(queue.message_count())
}

/// Declares a tenant's work queue and its binding; answers its ready messages.
pub(crate) async fn tenant_queue(
    channel: &Channel,
    config: &AmqpConfig,
    tenant: &TenantId,
) -> Result<u32, AmqpError> {
    let name = config.tenant_queue(tenant);
    let expiry = match (config.tenant_queue_expiry, config.queue_expiry) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let queue = channel
        .queue_declare(name.as_str().into(), DURABLE, work_args(config, expiry))
        .await
        .map_err(AmqpError::lapin("declaring a tenant queue"))?;
    bind(channel, &name, &config.route_exchange(), tenant.as_str()).await?;
    Ok(queue.message_count())
}

/// Routing key of announcements.
pub(crate) const ANNOUNCE_KEY: &str = "tenants";

/// Declares everything but the tenant queues.
pub(crate) async fn declare(channel: &Channel, config: &AmqpConfig) -> Result<(), AmqpError> {
    channel
        .queue_declare(
            config.dead_letter_queue().as_str().into(),
            DURABLE,
            durable(config, config.queue_expiry),
        )
        .await
        .map_err(AmqpError::lapin("declaring the dead-letter queue"))?;
    let work = config.work_queue();
    work_queue(channel, config).await?;
    let unrouted = config.unrouted_exchange();
    exchange(
        channel,
        config,
        &unrouted,
        ExchangeKind::Fanout,
        FieldTable::default(),
    )
    .await?;
    bind(channel, &work, &unrouted, "").await?;
    let mut args = FieldTable::default();
    args.insert("alternate-exchange".into(), text(&unrouted));
    let route = config.route_exchange();
    exchange(channel, config, &route, ExchangeKind::Direct, args).await?;
    for bucket in 0..config.delay_buckets {
        let name = config.wait_exchange(bucket);
        exchange(
            channel,
            config,
            &name,
            ExchangeKind::Fanout,
            FieldTable::default(),
        )
        .await?;
        wait_queue(channel, config, bucket).await?;
        bind(channel, &config.wait_queue(bucket), &name, "").await?;
    }
    let announce = config.announce_exchange();
    exchange(
        channel,
        config,
        &announce,
        ExchangeKind::Direct,
        FieldTable::default(),
    )
    .await?;
    if config.queue_expiry.is_some() {
        // Auto-deleted exchanges live as long as a binding: tie these two
        // to the work queue, with keys no message carries (a tenant id is
        // never empty; announcements use another key).
        bind(channel, &work, &route, "").await?;
        bind(channel, &work, &announce, "").await?;
    }
    Ok(())
}

/// The announcement queue's arguments: exclusive queues are always classic.
fn classic() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("classic"));
    args
}

/// Declares this process's private announcement queue; answers its name.
pub(crate) async fn announce_queue(
    channel: &Channel,
    config: &AmqpConfig,
) -> Result<String, AmqpError> {
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let queue = channel
        .queue_declare("".into(), options, classic())
        .await
        .map_err(AmqpError::lapin("declaring the announcement queue"))?;
    let name = queue.name().to_string();
    bind(channel, &name, &config.announce_exchange(), ANNOUNCE_KEY).await?;
    Ok(name)
}

/// The wait queue for a delay: bucket `n ≥ 1` holds `[2^n, 2^(n+1))`
/// seconds, bucket 0 everything under 2 s, the last bucket everything longer.
pub(crate) fn bucket(delay: Duration, buckets: u8) -> u8 {
    let secs = delay.as_secs();
    let n = if secs < 2 { 0 } else { secs.ilog2() };
    let last = u32::from(buckets.max(1) - 1);
    u8::try_from(n.min(last)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_of_seconds() {
        let b = |ms: u64| bucket(Duration::from_millis(ms), 16);
        assert_eq!(b(1), 0);
        assert_eq!(b(1_999), 0);
        assert_eq!(b(2_000), 1);
        assert_eq!(b(3_999), 1);
        assert_eq!(b(4_000), 2);
        assert_eq!(b(10_000), 3);
        assert_eq!(b(40_000), 5);
        assert_eq!(b(u64::MAX / 2), 15);
        assert_eq!(bucket(Duration::from_secs(100), 1), 0);
    }
}
