//! `RedisQueue`: per-tenant ready lanes served round-robin by Lua scripts,
//! delayed jobs in a sorted set, and in-flight deliveries that come back
//! after a visibility timeout.

use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use onboarding_core::{Delivery, Error, Job, JobQueue, QueueDepth, Receipt, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script, ScriptInvocation, ServerErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::RedisConfig;
use crate::connect;
use crate::error::from_redis;

/// Most delayed or expired entries one script call moves to the ready lanes.
const MOVE_LIMIT: usize = 1000;
/// Jobs per enqueue script call (all calls of one `enqueue` share one round trip).
const ENQUEUE_CHUNK: usize = 1000;
/// Receipts per command of one `ack`.
const ACK_CHUNK: usize = 1000;
/// Idle blocking connections kept for later `dequeue` calls.
const MAX_IDLE_BLOCKING: usize = 32;

macro_rules! queue_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("lua/common.lua"),
                "\n",
                include_str!(concat!("lua/", $file))
            ))
        })
    };
}

static ENQUEUE: LazyLock<Script> = queue_script!("enqueue.lua");
static TAKE: LazyLock<Script> = queue_script!("take.lua");
static DEPTH: LazyLock<Script> = queue_script!("depth.lua");

/// The keys of one queue, all under `{prefix}:q:`.
#[derive(Debug, Clone)]
struct Keys {
    delayed: String,
    rotation: String,
    rr: String,
    inflight: String,
    payloads: String,
    signal: String,
    lane_prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        let k = |name: &str| format!("{prefix}:q:{name}");
        Self {
            delayed: k("delayed"),
            rotation: k("rotation"),
            rr: k("rr"),
            inflight: k("inflight"),
            payloads: k("payloads"),
            signal: k("signal"),
            lane_prefix: k("lane:"),
        }
    }

    /// In the order of `KEYS[1..6]` in `lua/common.lua`.
    fn all(&self) -> [&str; 6] {
        [
            &self.delayed,
            &self.rotation,
            &self.rr,
            &self.inflight,
            &self.payloads,
            &self.signal,
        ]
    }
}

/// What a queue entry carries after `"<tenant> "`: a unique id (so equal jobs
/// stay distinct in the delayed set) and the job.
#[derive(Serialize)]
struct EnvelopeRef<'a> {
    id: Uuid,
    job: &'a Job,
}

#[derive(Deserialize)]
struct Envelope {
    job: Job,
}

fn encode(job: &Job) -> Result<String> {
    let json = serde_json::to_string(&EnvelopeRef {
        id: Uuid::new_v4(),
        job,
    })
    .map_err(|e| Error::internal("cannot encode a job").with_source(e))?;
    Ok(format!("{} {json}", job.tenant))
}

fn decode(entry: &str) -> Option<Job> {
    let (_, json) = entry.split_once(' ')?;
    serde_json::from_str::<Envelope>(json).ok().map(|e| e.job)
}

/// `not_before` in whole milliseconds, rounded up so a job is never due early; 0 = now.
fn due_ms(job: &Job) -> i64 {
    job.not_before.map_or(0, |t| {
        t.timestamp_micros().div_euclid(1000)
            + i64::from(t.timestamp_micros().rem_euclid(1000) != 0)
    })
}

fn is_noscript(err: &redis::RedisError) -> bool {
    err.kind() == redis::ErrorKind::Server(ServerErrorKind::NoScript)
}

/// A reliable, tenant-fair job queue on Redis.
///
/// # Layout (every key under `{prefix}:q:`)
///
/// | key | type | holds |
/// |---|---|---|
/// | `lane:{tenant}` | LIST | the tenant's ready entries |
/// | `rotation` | ZSET | tenants with ready entries, scored by serving order |
/// | `rr` | STRING | counter behind the serving order |
/// | `delayed` | ZSET | entries waiting for `not_before`, scored by due time (ms) |
/// | `inflight` | ZSET | receipts of deliveries, scored by redelivery deadline (ms) |
/// | `payloads` | HASH | receipt → entry of each delivery |
/// | `signal` | LIST | wake-up tokens for blocked consumers (at most 64) |
///
/// Every operation that moves entries is one Lua script, so it is atomic, and
/// uses the server's clock (`TIME`) for due times and deadlines. `enqueue`
/// sends all its jobs in one round trip; `dequeue` first moves due delayed
/// entries and expired deliveries back to their lanes, then takes up to `max`
/// entries round-robin across tenants and records them in flight; `ack`
/// removes receipts from `inflight` and `payloads`, so acknowledged jobs
/// leave nothing behind. A `dequeue` that finds nothing waits on `signal`
/// with `BLPOP` on a connection of its own, for at most the remaining wait,
/// the next scheduled event or `poll_interval`, whichever is first.
///
/// The database stays the truth: if the keys are lost (restart without
/// persistence, eviction, `FLUSHDB`), the worker's sweeper enqueues again.
pub struct RedisQueue {
    conn: ConnectionManager,
    client: Client,
    blocking: Mutex<Vec<ConnectionManager>>,
    keys: Keys,
    config: RedisConfig,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl connect::FromConnection for RedisQueue {
    fn from_connection(client: Client, conn: ConnectionManager, config: RedisConfig) -> Self {
        Self {
            conn,
            client,
            blocking: Mutex::new(Vec::new()),
            keys: Keys::new(&config.prefix),
            config,
        }
    }
}

impl RedisQueue {
    /// Connects to Redis; fails with `Unavailable` when it does not answer
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

    fn invocation<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for key in self.keys.all() {
            inv.key(key);
        }
        inv.arg(&self.keys.lane_prefix).arg(MOVE_LIMIT);
        inv
    }

    fn blocking_settings(&self) -> ConnectionManagerConfig {
        // A blocking call lasts at most `poll_interval`; allow that on top.
        connect::manager_config(
            &self.config,
            self.config.response_timeout + self.config.poll_interval,
        )
    }

    /// One take: promote, reclaim, pop round-robin. Returns the deliveries
    /// and, when there were none, how long until something is scheduled.
    async fn take(&self, max: usize) -> Result<(Vec<Delivery>, Option<Duration>)> {
        let mut conn = self.conn.clone();
        let nonce = Uuid::new_v4().simple().to_string();
        let visibility = u64::try_from(self.config.visibility_timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut inv = self.invocation(&TAKE);
        inv.arg(max).arg(visibility).arg(&nonce);
        let (wake, flat): (i64, Vec<String>) = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| from_redis("dequeue", e))?;

        let mut deliveries = Vec::with_capacity(flat.len() / 2);
        let mut corrupt = Vec::new();
        let mut pairs = flat.into_iter();
        while let (Some(receipt), Some(entry)) = (pairs.next(), pairs.next()) {
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
        let wake = u64::try_from(wake).ok().map(Duration::from_millis);
        Ok((deliveries, wake))
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
            None => connect::connect(&self.client, self.blocking_settings()).await,
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
            .arg(&self.keys.signal)
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
        let mut pipe = redis::pipe();
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            pipe.cmd("EVALSHA").arg(ENQUEUE.get_hash()).arg(6);
            for key in self.keys.all() {
                pipe.arg(key);
            }
            pipe.arg(&self.keys.lane_prefix).arg(MOVE_LIMIT);
            for job in chunk {
                pipe.arg(due_ms(job)).arg(encode(job)?);
            }
        }
        let mut conn = self.conn.clone();
        let first: redis::RedisResult<Vec<i64>> = pipe.query_async(&mut conn).await;
        match first {
            Ok(_) => Ok(()),
            // The script cache is empty (Redis restarted): load, then send again.
            // No script ran, so nothing is enqueued twice.
            Err(e) if is_noscript(&e) => {
                ENQUEUE
                    .load_async(&mut conn)
                    .await
                    .map_err(|e| from_redis("enqueue (loading the script)", e))?;
                pipe.query_async::<Vec<i64>>(&mut conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| from_redis("enqueue", e))
            }
            Err(e) => Err(from_redis("enqueue", e)),
        }
    }

    async fn dequeue(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        let deadline = Instant::now() + wait;
        let max = max.max(1);
        loop {
            let (deliveries, wake) = self.take(max).await?;
            if !deliveries.is_empty() {
                return Ok(deliveries);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let mut block = (deadline - now).min(self.config.poll_interval);
            if let Some(wake) = wake {
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
        let mut pipe = redis::pipe();
        for chunk in receipts.chunks(ACK_CHUNK) {
            let ids: Vec<&str> = chunk.iter().map(|r| r.0.as_str()).collect();
            pipe.cmd("ZREM")
                .arg(&self.keys.inflight)
                .arg(&ids)
                .ignore()
                .cmd("HDEL")
                .arg(&self.keys.payloads)
                .arg(&ids)
                .ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| from_redis("ack", e))
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let mut conn = self.conn.clone();
        let (ready, delayed, in_flight): (u64, u64, u64) = self
            .invocation(&DEPTH)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| from_redis("depth", e))?;
        Ok(QueueDepth {
            ready,
            delayed,
            in_flight,
        })
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| from_redis("ping", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onboarding_core::model::{ItemId, TenantId};

    fn job(tenant: &str) -> Job {
        Job {
            item_id: ItemId::new(),
            tenant: TenantId::parse(tenant).expect("tenant"),
            not_before: None,
        }
    }

    #[test]
    fn entries_round_trip_and_stay_distinct() {
        let j = job("acme");
        let a = encode(&j).expect("encode");
        let b = encode(&j).expect("encode");
        assert_ne!(a, b, "equal jobs must stay distinct in the delayed set");
        assert!(a.starts_with("acme {"));
        assert_eq!(decode(&a), Some(j));
        assert_eq!(decode("garbage"), None);
    }

    #[test]
    fn due_time_rounds_up() {
        let mut j = job("acme");
        assert_eq!(due_ms(&j), 0);
        let t = chrono::DateTime::from_timestamp_micros(1_700_000_000_000_001).expect("time");
        j.not_before = Some(t);
        assert_eq!(due_ms(&j), 1_700_000_000_001);
        let t = chrono::DateTime::from_timestamp_micros(1_700_000_000_000_000).expect("time");
        j.not_before = Some(t);
        assert_eq!(due_ms(&j), 1_700_000_000_000);
    }

    #[test]
    fn keys_share_the_prefix() {
        let k = Keys::new("p");
        for key in k.all() {
            assert!(key.starts_with("p:q:"), "{key}");
        }
        assert_eq!(k.lane_prefix, "p:q:lane:");
    }
}
