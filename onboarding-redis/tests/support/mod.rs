//! Shared test helpers: a real Redis (never skipped), a random prefix per
//! test, and cleanup of that prefix's keys (`SCAN` + `DEL`, never `FLUSHDB`).

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use onboarding_core::{Cache, Delivery, Job, JobQueue, QueueDepth, Receipt, Result};
use onboarding_redis::{RedisCache, RedisConfig, RedisQueue};

/// `ONBOARDING_TEST_REDIS_URL`, else the local default.
pub fn redis_url() -> String {
    std::env::var("ONBOARDING_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A prefix no other test uses.
pub fn fresh_prefix() -> String {
    format!("onboarding-test-{}", uuid::Uuid::new_v4().simple())
}

/// A config for `prefix` with short timeouts.
pub fn config(prefix: &str, visibility: Duration) -> RedisConfig {
    RedisConfig::new(redis_url())
        .with_prefix(prefix)
        .with_visibility_timeout(visibility)
        .with_poll_interval(Duration::from_millis(100))
}

/// Connects a queue; panics (fails the test) when Redis is not there.
pub async fn queue(prefix: &str, visibility: Duration) -> RedisQueue {
    RedisQueue::connect(config(prefix, visibility))
        .await
        .unwrap_or_else(|e| panic!("Redis must run at {} for these tests: {e}", redis_url()))
}

/// Connects a cache; panics (fails the test) when Redis is not there.
pub async fn cache(prefix: &str) -> RedisCache {
    RedisCache::connect(config(prefix, Duration::from_secs(30)))
        .await
        .unwrap_or_else(|e| panic!("Redis must run at {} for these tests: {e}", redis_url()))
}

/// Every key under `{prefix}:`.
pub fn keys(prefix: &str) -> Vec<String> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut con = client.get_connection().unwrap();
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query(&mut con)
            .unwrap();
        out.extend(batch);
        if next == 0 {
            return out;
        }
        cursor = next;
    }
}

/// Deletes every key under `{prefix}:`; returns how many there were.
pub fn delete_keys(prefix: &str) -> usize {
    let found = keys(prefix);
    if !found.is_empty() {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut con = client.get_connection().unwrap();
        for chunk in found.chunks(500) {
            redis::cmd("DEL").arg(chunk).query::<()>(&mut con).unwrap();
        }
    }
    found.len()
}

/// Deletes the prefix's keys when dropped (also when the test panics).
#[derive(Debug)]
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(redis_url()) {
            if client.get_connection().is_ok() {
                delete_keys(&self.0);
            }
        }
    }
}

/// A queue that deletes its prefix's keys once it and its sibling cache are dropped.
pub struct CleanQueue {
    pub inner: RedisQueue,
    pub _cleanup: Arc<Cleanup>,
}

#[async_trait]
impl JobQueue for CleanQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        self.inner.enqueue(jobs).await
    }
    async fn dequeue(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.inner.dequeue(max, wait).await
    }
    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        self.inner.ack(receipts).await
    }
    async fn depth(&self) -> Result<QueueDepth> {
        self.inner.depth().await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}

/// A cache that deletes its prefix's keys once it and its sibling queue are dropped.
pub struct CleanCache {
    pub inner: RedisCache,
    pub _cleanup: Arc<Cleanup>,
}

#[async_trait]
impl Cache for CleanCache {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, value: &[u8], ttl: Duration) -> Result<()> {
        self.inner.set(key, value, ttl).await
    }
    async fn delete(&self, keys: &[String]) -> Result<()> {
        self.inner.delete(keys).await
    }
    async fn ping(&self) -> Result<()> {
        self.inner.ping().await
    }
}
