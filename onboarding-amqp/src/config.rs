//! `AmqpConfig`: where the broker is, how the queues are named, and how the
//! queue behaves (queue type, prefetch, visibility timeout, reconnection
//! backoff).

use std::time::Duration;

use onboarding_core::model::TenantId;
use onboarding_core::{Error, ErrorKind, Result, SecretUrl};

/// The RabbitMQ type of the durable queues (`x-queue-type`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Classic queues (the default): one copy, on the node that declared
    /// them; no delivery limit.
    #[default]
    Classic,
    /// Quorum queues: replicated over the cluster's nodes with Raft, they
    /// survive the loss of a minority of nodes. Each message has a delivery
    /// limit ([`AmqpConfig::delivery_limit`]); a message past it is
    /// dead-lettered to the dead-letter queue, never dropped.
    Quorum,
}

impl QueueType {
    /// The value of `x-queue-type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Quorum => "quorum",
        }
    }
}

impl std::str::FromStr for QueueType {
    type Err = Error;

    /// `classic` or `quorum`.
    fn from_str(value: &str) -> Result<Self> {
        match value {
            "classic" => Ok(Self::Classic),
            "quorum" => Ok(Self::Quorum),
            other => Err(Error::new(
                ErrorKind::Invalid,
                format!("queue_type {other:?} is not supported: use classic or quorum"),
            )),
        }
    }
}

/// Configuration of an [`AmqpQueue`](crate::AmqpQueue).
///
/// Build one with [`AmqpConfig::new`] and the `with_*` methods; its `Debug`
/// output hides the password of the URL.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` (vhost `/` is `%2f`).
    pub url: SecretUrl,
    /// The type of every durable queue (default [`QueueType::Classic`]).
    /// The per-connection announcement queue is always classic (exclusive
    /// queues cannot be quorum queues).
    pub queue_type: QueueType,
    /// Lets the broker delete each queue once it has had no consumer and no
    /// declaration for this long (`x-expires`; default `None`, never). For
    /// tests and throw-away deployments: a wait queue has no consumer, so it
    /// expires (with its delayed jobs) this long after the last connection.
    pub queue_expiry: Option<Duration>,
    /// Lets the broker delete a tenant's work queue once it has had no
    /// consumer and no declaration for this long (default 7 days), so
    /// queues of tenants gone quiet do not pile up. Jobs still in such a
    /// queue are lost with it and re-enqueued by the sweeper. The shorter of
    /// this and `queue_expiry` applies.
    pub tenant_queue_expiry: Option<Duration>,
    /// Quorum queues only: deliveries of one message (`x-delivery-limit`,
    /// default 1000) after which the broker dead-letters it to the
    /// dead-letter queue. Each redelivery (visibility timeout, lost
    /// connection) counts; the limit only stops a message that keeps coming
    /// back forever. The item stays in the repository, so the sweeper
    /// enqueues it again; [`AmqpQueue::dead_lettered`](crate::AmqpQueue::dead_lettered)
    /// counts such messages.
    pub delivery_limit: u32,
    /// Prefix of every queue name: the work queue is `{prefix}.jobs`, the
    /// dead-letter queue `{prefix}.jobs.dead`, the wait queues
    /// `{prefix}.jobs.wait.{n}` (default `onboarding`).
    pub prefix: String,
    /// Deliveries the broker pushes to this process before any is
    /// acknowledged (`basic.qos`, default 64). Tenant interleaving works
    /// within this window.
    pub prefetch: u16,
    /// A job taken by `dequeue` and not acknowledged within this time is
    /// given back to the broker (`basic.nack` with requeue) and delivered
    /// again (default 30 s).
    pub visibility_timeout: Duration,
    /// First pause before reconnecting after a failed connection attempt
    /// (default 100 ms); it doubles on every failure.
    pub reconnect_min: Duration,
    /// Longest pause between connection attempts (default 10 s).
    pub reconnect_max: Duration,
    /// Longest wait for the broker to accept a connection (default 10 s).
    pub connect_timeout: Duration,
    /// Number of wait queues for delayed jobs (default 16). Wait queue `n`
    /// holds delays of `[2^n, 2^(n+1))` seconds (queue 0: under 2 s); longer
    /// delays go to the last one. See the crate documentation for accuracy.
    pub delay_buckets: u8,
}

impl AmqpConfig {
    /// A configuration for the broker at `url` with every default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: SecretUrl::new(url),
            queue_type: QueueType::Classic,
            delivery_limit: 1000,
            prefix: "onboarding".to_owned(),
            prefetch: 64,
            visibility_timeout: Duration::from_secs(30),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            delay_buckets: 16,
            queue_expiry: None,
            tenant_queue_expiry: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }

    /// A configuration from a URL that may carry the queue settings in its
    /// query: `queue_type=classic|quorum` and `delivery_limit=N` (e.g.
    /// `amqp://guest:guest@host:5672/%2f?queue_type=quorum`). They are taken
    /// out of the URL; other parameters (`heartbeat`, …) stay for the client.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Invalid`] for an unknown queue type or a delivery limit
    /// that is not a positive number.
    pub fn from_url(url: &str) -> Result<Self> {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (url, ""),
        };
        let mut kept = Vec::new();
        let mut queue_type = QueueType::Classic;
        let mut delivery_limit = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "queue_type" => queue_type = value.parse()?,
                "delivery_limit" => {
                    let limit = value.parse::<u32>().ok().filter(|n| *n > 0);
                    delivery_limit = Some(limit.ok_or_else(|| {
                        Error::new(
                            ErrorKind::Invalid,
                            format!("delivery_limit {value:?} must be a positive number"),
                        )
                    })?);
                }
                _ => kept.push(pair),
            }
        }
        let url = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config = Self::new(url).with_queue_type(queue_type);
        if let Some(limit) = delivery_limit {
            config = config.with_delivery_limit(limit);
        }
        Ok(config)
    }

    onboarding_core::setters! {
        /// Sets the queue type. Changing the type of existing queues needs
        /// them deleted first (or a new prefix): RabbitMQ refuses to declare a
        /// queue again with another type. Their jobs are wake-up calls only;
        /// the sweeper enqueues the items again.
        with_queue_type(queue_type: QueueType);
    }

    /// Sets the delivery limit of quorum queues (at least 1).
    pub fn with_delivery_limit(mut self, limit: u32) -> Self {
        self.delivery_limit = limit.max(1);
        self
    }

    /// Sets the queue name prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the prefetch count (at least 1).
    pub fn with_prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    onboarding_core::setters! {
        /// Sets the visibility timeout.
        with_visibility_timeout(visibility_timeout: Duration);
    }

    /// Sets the reconnection backoff bounds.
    pub fn with_reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }

    onboarding_core::setters! {
        /// Sets the connection timeout.
        with_connect_timeout(connect_timeout: Duration);
    }

    /// Sets the number of wait queues (1 to 32).
    pub fn with_delay_buckets(mut self, buckets: u8) -> Self {
        self.delay_buckets = buckets.clamp(1, 32);
        self
    }

    /// Sets the queue expiry (`x-expires`); see [`AmqpConfig::queue_expiry`].
    pub fn with_queue_expiry(mut self, expiry: Duration) -> Self {
        self.queue_expiry = Some(expiry.max(Duration::from_millis(1)));
        self
    }

    /// Sets the tenant queue expiry; see [`AmqpConfig::tenant_queue_expiry`].
    pub fn with_tenant_queue_expiry(mut self, expiry: Option<Duration>) -> Self {
        self.tenant_queue_expiry = expiry.map(|e| e.max(Duration::from_millis(1)));
        self
    }

    /// The shared work queue: jobs whose tenant queue is missing.
    pub fn work_queue(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// The work queue of one tenant.
    pub fn tenant_queue(&self, tenant: &TenantId) -> String {
        format!("{}.jobs.t.{tenant}", self.prefix)
    }

    /// The direct exchange routing ready jobs to their tenant's queue.
    pub fn route_exchange(&self) -> String {
        format!("{}.route", self.prefix)
    }

    /// The fanout receiving what matches no tenant queue.
    pub fn unrouted_exchange(&self) -> String {
        format!("{}.unrouted", self.prefix)
    }

    /// The fanout into wait queue number `bucket`.
    pub fn wait_exchange(&self, bucket: u8) -> String {
        format!("{}.wait.{bucket}", self.prefix)
    }

    /// The direct exchange announcing tenants with new jobs to every consumer.
    pub fn announce_exchange(&self) -> String {
        format!("{}.announce", self.prefix)
    }

    /// Every exchange this configuration uses.
    pub fn exchange_names(&self) -> Vec<String> {
        let mut names = vec![
            self.route_exchange(),
            self.unrouted_exchange(),
            self.announce_exchange(),
        ];
        names.extend((0..self.delay_buckets).map(|b| self.wait_exchange(b)));
        names
    }

    /// The dead-letter queue: messages that cannot be processed.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.jobs.dead", self.prefix)
    }

    /// Wait queue number `bucket` (delayed jobs).
    pub fn wait_queue(&self, bucket: u8) -> String {
        format!("{}.jobs.wait.{bucket}", self.prefix)
    }

    /// Every queue this configuration uses but the tenant queues: work,
    /// dead-letter, then wait queues.
    pub fn queue_names(&self) -> Vec<String> {
        let mut names = vec![self.work_queue(), self.dead_letter_queue()];
        names.extend((0..self.delay_buckets).map(|b| self.wait_queue(b)));
        names
    }
}

impl Default for AmqpConfig {
    /// The local broker with the default `guest` account.
    fn default() -> Self {
        Self::new("amqp://guest:guest@127.0.0.1:5672/%2f")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        // The URL is a SecretUrl: Debug shows it redacted.
        let shown = format!("{:?}", AmqpConfig::new("amqp://bob:s3cr3t@broker:5672/%2f"));
        assert!(
            shown.contains("amqp://bob:***@broker:5672/%2f") && !shown.contains("s3cr3t"),
            "{shown}"
        );
    }

    #[test]
    fn from_url_takes_the_queue_settings_out_of_the_query() {
        let c =
            AmqpConfig::from_url("amqp://h/%2f?heartbeat=10&queue_type=quorum&delivery_limit=7")
                .expect("valid");
        assert_eq!(c.queue_type, QueueType::Quorum);
        assert_eq!(c.delivery_limit, 7);
        assert_eq!(c.url.expose(), "amqp://h/%2f?heartbeat=10");
        let c = AmqpConfig::from_url("amqp://h/%2f?queue_type=classic").expect("valid");
        assert_eq!(
            (c.queue_type, c.url.expose()),
            (QueueType::Classic, "amqp://h/%2f")
        );
        let c = AmqpConfig::from_url("amqp://h/%2f").expect("valid");
        assert_eq!((c.queue_type, c.delivery_limit), (QueueType::Classic, 1000));
        for bad in [
            "amqp://h?queue_type=stream",
            "amqp://h?delivery_limit=0",
            "amqp://h?delivery_limit=x",
        ] {
            let e = AmqpConfig::from_url(bad).expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::Invalid, "{bad}");
        }
    }

    #[test]
    fn names_derive_from_the_prefix() {
        let config = AmqpConfig::default()
            .with_prefix("t1")
            .with_delay_buckets(2);
        assert_eq!(
            config.queue_names(),
            [
                "t1.jobs",
                "t1.jobs.dead",
                "t1.jobs.wait.0",
                "t1.jobs.wait.1"
            ]
        );
    }
}
