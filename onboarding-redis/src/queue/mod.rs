//! `RedisQueue`: per-tenant ready lanes served round-robin by Lua scripts,
//! delayed jobs and in-flight deliveries that come back after a visibility
//! timeout; on one Redis server or on a Redis Cluster.

mod cluster;
mod keys;
mod scripts;
mod single;

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use onboarding_core::{Delivery, Job, JobQueue, QueueDepth, Receipt, Result};
use uuid::Uuid;

use crate::config::RedisConfig;
use crate::connect::{self, Conn, Connector};
use crate::error::from_redis;
use keys::{decode, Keys};

/// Most delayed or expired entries one take moves to the ready lanes (per
/// tenant group on Redis Cluster).
const MOVE_LIMIT: usize = 1000;
/// Jobs per enqueue script call (all calls of one `enqueue` share one round trip).
const ENQUEUE_CHUNK: usize = 1000;
/// Receipts per command of one `ack`.
const ACK_CHUNK: usize = 1000;
/// Idle blocking connections kept for later `dequeue` calls.
const MAX_IDLE_BLOCKING: usize = 32;
/// Takes in a row, within one `dequeue`, that found nothing while the
/// rotation still named tenants (Redis Cluster: their lanes emptied meanwhile).
const MAX_EMPTY_RETAKES: usize = 3;

/// What one take found.
struct Taken {
    /// `(receipt, entry)` of each delivery.
    entries: Vec<(String, String)>,
    /// When nothing was taken: how long until a delayed job is due or a
    /// delivery expires.
    wake: Option<Duration>,
    /// When nothing was taken: tenants may still have ready entries (take
    /// again before waiting).
    again: bool,
}

/// Adds to `pipe` the commands that forget `tenant`'s deliveries `ids`
/// (`ZREM` from `inflight`, `HDEL` from `payloads`).
fn forget_deliveries(pipe: &mut redis::Pipeline, keys: &Keys, tenant: &str, ids: &[&str]) {
    let [_, _, inflight, payloads, _] = keys.tenant(tenant);
    for chunk in ids.chunks(ACK_CHUNK) {
        pipe.cmd("ZREM")
            .arg(&inflight)
            .arg(chunk)
            .ignore()
            .cmd("HDEL")
            .arg(&payloads)
            .arg(chunk)
            .ignore();
    }
}

/// A reliable, tenant-fair job queue on Redis or Redis Cluster.
///
/// See the crate documentation for the key layout. Every operation that
/// moves entries is a Lua script, atomic, on the server's clock (`TIME`).
/// On one server each operation is one script call; on Redis Cluster no
/// script spans two hash slots: a call runs one script per tenant group
/// (in parallel) and one on the global group.
///
/// `enqueue` sends all its jobs in one round trip (per tenant group on a
/// cluster); `dequeue` first moves due delayed entries and expired
/// deliveries back to their lanes, then takes up to `max` entries
/// round-robin across tenants and records them in flight; `ack` forgets the
/// receipts, so acknowledged jobs leave nothing behind. A `dequeue` that
/// finds nothing waits on the `signal` list with `BLPOP` on a connection of
/// its own, for at most the remaining wait, the next scheduled event or
/// `poll_interval`, whichever is first.
///
/// The database stays the truth: if the keys are lost (restart without
/// persistence, eviction, `FLUSHDB`, a failover that lost the last writes),
/// the worker's sweeper enqueues again.
pub struct RedisQueue {
    conn: Conn,
    connector: Connector,
    blocking: Mutex<Vec<Conn>>,
    keys: Keys,
    config: RedisConfig,
}

connect::debug_config!(RedisQueue);

impl connect::FromConnection for RedisQueue {
    fn from_connection(connector: Connector, conn: Conn, config: RedisConfig) -> Self {
        Self {
            conn,
            connector,
            blocking: Mutex::new(Vec::new()),
            keys: Keys::new(&config.prefix),
            config,
        }
    }
}

impl RedisQueue {
    /// Connects to Redis (or to the cluster when the URL says
    /// `cluster=true`); fails with `Unavailable` when it does not answer
    /// and with `Invalid` when the URL is not valid.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        connect::open(config).await
    }

    /// Builds the queue without connecting; the first call connects (and
    /// reports `Unavailable` while Redis is down). Must be called inside a
    /// Tokio runtime.
    pub fn connect_lazy(config: RedisConfig) -> Result<Self> {
        connect::open_lazy(config)
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    /// One take: move due entries, pop round-robin, decode.
    async fn take(&self, max: usize) -> Result<(Vec<Delivery>, Taken)> {
        let nonce = Uuid::new_v4().simple().to_string();
        let visibility = u64::try_from(self.config.visibility_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut taken = if self.conn.is_cluster() {
            cluster::take(&self.conn, &self.keys, max, visibility, &nonce).await?
        } else {
            single::take(&mut self.conn.clone(), &self.keys, max, visibility, &nonce).await?
        };
        let mut deliveries = Vec::with_capacity(taken.entries.len());
        let mut corrupt = Vec::new();
        for (receipt, entry) in std::mem::take(&mut taken.entries) {
            match decode(&entry) {
                Some(job) => deliveries.push(Delivery {
                    job,
                    receipt: Receipt(receipt),
                }),
                None => {
                    tracing::warn!(entry = %entry, "dropping an undecodable queue entry");
                    corrupt.push(Receipt(receipt));
                }
            }
        }
        if !corrupt.is_empty() {
            self.ack(&corrupt).await?;
        }
        Ok((deliveries, taken))
    }

    /// Waits up to `timeout` for a wake-up token, on a connection of its own.
    ///
    /// A failure here is not reported: the connection is dropped (not
    /// pooled), the call sleeps out `timeout` instead, and the next take
    /// reports an outage if there is one.
    async fn wait_for_signal(&self, timeout: Duration) {
        let pooled = self
            .blocking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => Ok(conn),
            // A blocking call lasts at most `poll_interval`; allow that on top.
            None => {
                let timeout = self.config.response_timeout + self.config.poll_interval;
                self.connector.connect(&self.config, timeout).await
            }
        };
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "no blocking connection; sleeping instead");
                tokio::time::sleep(timeout).await;
                return;
            }
        };
        let seconds = timeout.as_secs_f64().max(0.001);
        let answer: redis::RedisResult<Option<(String, String)>> = redis::cmd("BLPOP")
            .arg(self.keys.signal())
            .arg(format!("{seconds:.3}"))
            .query_async(&mut conn)
            .await;
        match answer {
            Ok(_) => {
                let mut pool = self.blocking.lock().unwrap_or_else(PoisonError::into_inner);
                if pool.len() < MAX_IDLE_BLOCKING {
                    pool.push(conn);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "blocking read failed; sleeping instead");
                drop(conn);
                tokio::time::sleep(timeout).await;
            }
        }
    }
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        if self.conn.is_cluster() {
            cluster::enqueue(&self.conn, &self.keys, jobs).await
        } else {
            single::enqueue(&mut self.conn.clone(), &self.keys, jobs).await
        }
    }

    async fn dequeue(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + wait;
        let max = max.max(1);
        let mut retakes = 0;
        loop {
            let (deliveries, taken) = self.take(max).await?;
            if !deliveries.is_empty() {
                return Ok(deliveries);
            }
            if taken.again && retakes < MAX_EMPTY_RETAKES {
                retakes += 1;
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut block = (deadline - now).min(self.config.poll_interval);
            if let Some(wake) = taken.wake {
                block = block.min(wake);
            }
            if block >= Duration::from_millis(1) {
                self.wait_for_signal(block).await;
            }
        }
    }

    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        if receipts.is_empty() {
            return Ok(());
        }
        if self.conn.is_cluster() {
            cluster::ack(&self.conn, &self.keys, receipts).await
        } else {
            single::ack(&mut self.conn.clone(), &self.keys, receipts).await
        }
    }

    async fn depth(&self) -> Result<QueueDepth> {
        if self.conn.is_cluster() {
            cluster::depth(&self.conn, &self.keys).await
        } else {
            single::depth(&mut self.conn.clone(), &self.keys).await
        }
    }

    async fn ping(&self) -> Result<()> {
        // On a cluster, the node holding the global group answers.
        redis::cmd("EXISTS")
            .arg(self.keys.signal())
            .query_async::<u64>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(|e| from_redis("ping", e))
    }
}
