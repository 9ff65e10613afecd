//! `RedisCache`: `GET`, `SET … PX`, `DEL` under `{prefix}:cache:`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use onboarding_core::{Cache, Result};
use redis::cluster_routing::Slot;

use crate::config::RedisConfig;
use crate::connect::{self, Conn, Connector};
use crate::error::from_redis;

/// Keys per `DEL` command of one `delete`.
const DELETE_CHUNK: usize = 1000;

/// A [`Cache`] on Redis. Every call is one round trip; while Redis is down
/// every call fails with `Unavailable`, which callers treat as a miss.
#[derive(Clone)]
pub struct RedisCache {
    conn: Conn,
    key_prefix: String,
    config: RedisConfig,
}

connect::debug_config!(RedisCache);

impl connect::FromConnection for RedisCache {
    fn from_connection(_: Connector, conn: Conn, config: RedisConfig) -> Self {
        Self {
            conn,
            key_prefix: format!("{}:cache:", config.prefix),
            config,
        }
    }
}

impl RedisCache {
    /// Connects to Redis; fails with `Unavailable` when it does not answer
    /// and with `Invalid` when the URL is not valid.
    pub async fn connect(config: RedisConfig) -> Result<Self> {
        connect::open(config).await
    }

    /// Builds the cache without connecting (a cache that is down must not
    /// stop a service from starting); the first call connects. Must be
    /// called inside a Tokio runtime.
    pub fn connect_lazy(config: RedisConfig) -> Result<Self> {
        connect::open_lazy(config)
    }

    /// The configuration in use.
    pub fn config(&self) -> &RedisConfig {
        &self.config
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut conn = self.conn.clone();
        redis::cmd("GET")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await
            .map_err(|e| from_redis("cache get", e))
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        let mut conn = self.conn.clone();
        // Redis refuses `PX 0`; a zero TTL means "expired at once", i.e. absent.
        let ms = ttl.as_nanos().div_ceil(1_000_000);
        let cmd = if ms == 0 {
            let mut cmd = redis::cmd("DEL");
            cmd.arg(self.key(key));
            cmd
        } else {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.key(key))
                .arg(value)
                .arg("PX")
                .arg(u64::try_from(ms).unwrap_or(u64::MAX));
            cmd
        };
        cmd.query_async::<()>(&mut conn)
            .await
            .map_err(|e| from_redis("cache set", e))
    }

    async fn delete(&self, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        // One `DEL` per chunk on one server; on a cluster one `DEL` may
        // only name keys of one hash slot: a pipeline per slot, in parallel.
        let groups: Vec<Vec<&String>> = if self.conn.is_cluster() {
            let mut by_slot: HashMap<Slot, Vec<&String>> = HashMap::new();
            for key in &keys {
                by_slot.entry(Slot::for_key(key)).or_default().push(key);
            }
            by_slot.into_values().collect()
        } else {
            vec![keys.iter().collect()]
        };
        let calls = groups.into_iter().map(|group| {
            let mut pipe = redis::pipe();
            for chunk in group.chunks(DELETE_CHUNK) {
                pipe.cmd("DEL").arg(chunk).ignore();
            }
            let mut conn = self.conn.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
        });
        for answer in join_all(calls).await {
            answer.map_err(|e| from_redis("cache delete", e))?;
        }
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| from_redis("cache ping", e))
    }
}
