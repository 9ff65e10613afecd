//! Test key prefixes (feature `testing`): a fresh prefix per test on the
//! Redis the environment names, whose keys are deleted when the test ends
//! (`SCAN` + `DEL`, never `FLUSHDB`). Tests, benchmarks and the reliability
//! suite get their prefixes here.
//!
//! Server: `ONBOARDING_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`).
//! A server that cannot be reached fails the test: nothing is skipped.
//! Prefixes come from [`unique_name`]; the first prefix a process creates
//! deletes the keys of prefixes that crashed runs left behind.
//!
//! [`TestCluster`]: a Redis Cluster of its own for a test binary, on free
//! loopback ports, removed when the process ends.

mod cluster;

use std::sync::Arc;
use std::time::Duration;

use onboarding_core::testing::namespace::{is_stale, unique_name, PREFIX};
use onboarding_core::testing::{Cleanup, TestBackend};

use crate::{RedisCache, RedisConfig, RedisQueue};

pub use cluster::TestCluster;

/// Keys of prefixes older than this are left-overs of a run that crashed.
pub const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The Redis under test (see the module documentation).
pub fn url() -> String {
    std::env::var("ONBOARDING_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A key prefix made for one test; its keys are deleted when this value is
/// dropped, or when the [`Cleanup`] it became runs.
#[derive(Debug)]
pub struct TestPrefix {
    url: String,
    prefix: String,
    cleanup: Cleanup,
}

impl TestPrefix {
    /// A fresh prefix on [`url`].
    pub async fn create() -> Self {
        Self::create_on(&url()).await
    }

    /// A fresh prefix on the Redis at `url`.
    pub async fn create_on(url: &str) -> Self {
        delete_stale_keys(url).await;
        let prefix = unique_name("");
        let cleanup = Cleanup::new({
            let (url, prefix) = (url.to_owned(), prefix.clone());
            move || async move {
                delete_keys(&url, &prefix).await;
            }
        });
        Self {
            url: url.to_owned(),
            prefix,
            cleanup,
        }
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A configuration under this prefix: the given visibility timeout, a
    /// 100 ms poll interval.
    pub fn config(&self, visibility: Duration) -> RedisConfig {
        RedisConfig::new(&self.url)
            .with_prefix(&self.prefix)
            .with_visibility_timeout(visibility)
            .with_poll_interval(Duration::from_millis(100))
    }

    /// A queue under this prefix.
    ///
    /// # Panics
    ///
    /// When Redis cannot be reached.
    pub async fn queue(&self, visibility: Duration) -> RedisQueue {
        RedisQueue::connect(self.config(visibility))
            .await
            .unwrap_or_else(|e| panic!("Redis must run at {} for this test: {e}", self.url))
    }

    /// A cache under this prefix.
    ///
    /// # Panics
    ///
    /// When Redis cannot be reached.
    pub async fn cache(&self) -> RedisCache {
        RedisCache::connect(self.config(Duration::from_secs(30)))
            .await
            .unwrap_or_else(|e| panic!("Redis must run at {} for this test: {e}", self.url))
    }

    /// Every key under this prefix.
    pub async fn keys(&self) -> Vec<String> {
        keys(&self.url, &self.prefix).await
    }

    /// Deletes every key under this prefix; returns how many there were.
    pub async fn delete_keys(&self) -> usize {
        delete_keys(&self.url, &self.prefix).await
    }

    /// The guard that deletes the keys, for a caller that keeps it elsewhere.
    pub fn into_cleanup(self) -> Cleanup {
        self.cleanup
    }

    /// The backends of one conformance case: a queue (visibility
    /// [`TestBackend::VISIBILITY_TIMEOUT`]), a cache and the limits under a
    /// fresh prefix, deleted when the case ends; the repository in memory.
    pub async fn test_backend() -> TestBackend {
        let prefix = Self::create().await;
        backends_on(prefix.config(TestBackend::VISIBILITY_TIMEOUT))
            .await
            .with_cleanup(prefix.into_cleanup())
    }
}

/// The backends of one conformance case on the Redis `config` names: its
/// queue, cache, and two rate limiters and two ledgers (two processes
/// sharing the Redis); the repository in memory.
async fn backends_on(config: RedisConfig) -> TestBackend {
    let fail = |e: onboarding_core::Error| -> ! {
        panic!("Redis must run at {} for this test: {e}", config.url)
    };
    let queue = RedisQueue::connect(config.clone())
        .await
        .unwrap_or_else(|e| fail(e));
    let cache = RedisCache::connect(config.clone())
        .await
        .unwrap_or_else(|e| fail(e));
    let rate = onboarding_core::testing::limits::CASE_RATE;
    let limiter = || async {
        let limiter = crate::RedisRateLimiter::connect(config.clone(), rate)
            .await
            .unwrap_or_else(|e| fail(e));
        Arc::new(limiter) as Arc<dyn onboarding_core::limits::RateLimiter>
    };
    let ledger = || async {
        let ledger = crate::RedisLedger::connect(config.clone())
            .await
            .unwrap_or_else(|e| fail(e));
        Arc::new(ledger) as Arc<dyn onboarding_core::limits::BacklogLedger>
    };
    let limiters = [limiter().await, limiter().await];
    let ledgers = [ledger().await, ledger().await];
    TestBackend::memory()
        .with_queue(Arc::new(queue))
        .with_cache(Arc::new(cache))
        .with_limits(limiters, ledgers)
}

async fn connection(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await
}

/// Every key matching `pattern` (`SCAN`); what was found before an error.
async fn scan(url: &str, pattern: &str) -> Vec<String> {
    let Ok(mut con) = connection(url).await else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, batch)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await
        else {
            return found;
        };
        found.extend(batch);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

/// Every key under `{prefix}:` on the Redis at `url`.
pub async fn keys(url: &str, prefix: &str) -> Vec<String> {
    scan(url, &format!("{prefix}:*")).await
}

/// Deletes every key under `{prefix}:` on the Redis at `url`; returns how
/// many there were. Errors are ignored (a clean-up must not fail a test).
pub async fn delete_keys(url: &str, prefix: &str) -> usize {
    let found = keys(url, prefix).await;
    delete(url, &found).await;
    found.len()
}

async fn delete(url: &str, keys: &[String]) {
    let Ok(mut con) = connection(url).await else {
        return;
    };
    for chunk in keys.chunks(500) {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(chunk).query_async(&mut con).await;
    }
}

/// Deletes the keys of stale test prefixes on the Redis at `url`, once per process.
async fn delete_stale_keys(url: &str) {
    static ONCE: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let stale: Vec<String> = scan(url, &format!("{PREFIX}*"))
            .await
            .into_iter()
            .filter(|key| is_stale(key.split(':').next().unwrap_or_default(), STALE_AFTER))
            .collect();
        delete(url, &stale).await;
    })
    .await;
}
