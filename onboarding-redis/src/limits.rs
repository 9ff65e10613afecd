//! Limits shared by every server on one Redis: [`RedisRateLimiter`] (GCRA
//! in one Lua script, one round trip per request) and [`RedisLedger`]
//! (the backlog limit's reading and admitted count). Both use the Redis
//! server's clock, so the processes' clocks need not agree.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use onboarding_core::limits::{Admission, Admit, BacklogLedger, LedgerAnswer, Rate, RateLimiter};
use onboarding_core::Result;
use redis::Script;

use crate::config::RedisConfig;
use crate::connect::{self, Conn, Connector};
use crate::error::from_redis;

static GCRA: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/gcra.lua")));
static ADMIT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/ledger_admit.lua")));
static RECORD: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/ledger_record.lua")));

/// Just the connection (one server or a cluster: every script here touches
/// one key): what the limiter and the ledger are built on.
struct Managed(Conn);

impl connect::FromConnection for Managed {
    fn from_connection(_: Connector, conn: Conn, _: RedisConfig) -> Self {
        Self(conn)
    }
}

async fn manager(config: &RedisConfig) -> Result<Conn> {
    Ok(connect::open::<Managed>(config.clone()).await?.0)
}

/// A [`RateLimiter`] whose buckets live in Redis under
/// `{prefix}:limits:rate:{key}`: every server sharing the Redis shares each
/// key's allowance.
#[derive(Clone)]
pub struct RedisRateLimiter {
    conn: Conn,
    prefix: String,
    rate: Rate,
}

impl std::fmt::Debug for RedisRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRateLimiter")
            .field("prefix", &self.prefix)
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

impl RedisRateLimiter {
    /// Connects; fails with `Unavailable` when Redis does not answer.
    pub async fn connect(config: RedisConfig, rate: Rate) -> Result<Self> {
        Ok(Self {
            conn: manager(&config).await?,
            prefix: format!("{}:limits:rate:", config.prefix),
            rate,
        })
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn check(&self, key: &str) -> Result<Admit> {
        let interval = u64::try_from(self.rate.emission_interval().as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut conn = self.conn.clone();
        let wait_us: u64 = GCRA
            .key(format!("{}{key}", self.prefix))
            .arg(interval)
            .arg(self.rate.burst)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| from_redis("rate limit", e))?;
        Ok(if wait_us == 0 {
            Admit::Allowed
        } else {
            Admit::Limited(Duration::from_micros(wait_us))
        })
    }

    fn rate(&self) -> Rate {
        self.rate
    }
}

/// A [`BacklogLedger`] in one Redis hash, `{prefix}:limits:backlog`: what
/// any server admits counts against the limit for all of them.
#[derive(Clone)]
pub struct RedisLedger {
    conn: Conn,
    key: String,
}

impl std::fmt::Debug for RedisLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLedger")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RedisLedger {
    /// Connects; fails with `Unavailable` when Redis does not answer.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        Ok(Self {
            conn: manager(&config).await?,
            key: format!("{}:limits:backlog", config.prefix),
        })
    }
}

#[async_trait]
impl BacklogLedger for RedisLedger {
    async fn admit(
        &self,
        incoming: u64,
        max: u64,
        fresh_for: Duration,
    ) -> Result<Option<LedgerAnswer>> {
        let mut conn = self.conn.clone();
        let fresh_ms = u64::try_from(fresh_for.as_millis()).unwrap_or(u64::MAX);
        let answer: Vec<i64> = ADMIT
            .key(&self.key)
            .arg(incoming)
            .arg(max)
            .arg(fresh_ms)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| from_redis("backlog ledger", e))?;
        let waiting = u64::try_from(answer.get(1).copied().unwrap_or(0)).unwrap_or(0);
        let admission = match answer.first() {
            Some(0) => Admission::Admitted,
            Some(1) => Admission::Refused { waiting },
            Some(2) => Admission::Unknown,
            _ => return Ok(None),
        };
        let fresh = answer.get(2) == Some(&1);
        Ok(Some(LedgerAnswer::new(admission, fresh)))
    }

    async fn record(&self, waiting: Option<u64>) -> Result<()> {
        let mut conn = self.conn.clone();
        let value = waiting.map_or(-1, |w| i64::try_from(w).unwrap_or(i64::MAX));
        RECORD
            .key(&self.key)
            .arg(value)
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(|e| from_redis("backlog ledger", e))?;
        Ok(())
    }
}
