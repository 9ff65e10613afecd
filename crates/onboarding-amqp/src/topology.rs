//! The queues: a work queue, a dead-letter queue and wait queues for delayed
//! jobs, all classic, durable, declared by every session.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::Channel;

use crate::config::AmqpConfig;
use crate::error::AmqpError;

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Arguments shared by every queue: classic type, so that no delivery limit
/// (RabbitMQ 4 quorum queues default to 20 deliveries) ever drops a message,
/// whatever the vhost's default queue type.
fn classic(config: &AmqpConfig) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("classic"));
    if let Some(expiry) = config.queue_expiry {
        let ms = i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-expires".into(), AMQPValue::LongLongInt(ms));
    }
    args
}

/// Declares every queue of `config` on `channel`.
pub(crate) async fn declare(channel: &Channel, config: &AmqpConfig) -> Result<(), AmqpError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let dead = config.dead_letter_queue();
    let work = config.work_queue();
    channel
        .queue_declare(dead.as_str().into(), durable, classic(config))
        .await
        .map_err(AmqpError::lapin("declaring the dead-letter queue"))?;

    // Rejected (unprocessable) messages go to the dead-letter queue.
    let mut args = classic(config);
    args.insert("x-dead-letter-exchange".into(), text(""));
    args.insert("x-dead-letter-routing-key".into(), text(&dead));
    channel
        .queue_declare(work.as_str().into(), durable, args)
        .await
        .map_err(AmqpError::lapin("declaring the work queue"))?;

    // Expired delayed messages go to the work queue.
    for bucket in 0..config.delay_buckets {
        let mut args = classic(config);
        args.insert("x-dead-letter-exchange".into(), text(""));
        args.insert("x-dead-letter-routing-key".into(), text(&work));
        channel
            .queue_declare(config.wait_queue(bucket).as_str().into(), durable, args)
            .await
            .map_err(AmqpError::lapin("declaring a wait queue"))?;
    }
    Ok(())
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
