//! The core conformance suite against a Redis Cluster of three masters and
//! three replicas, started for this test binary on free loopback ports and
//! removed when it ends. Every case gets a fresh key prefix; its tenants'
//! key groups spread over the masters, so every queue call crosses nodes.

#![allow(clippy::unwrap_used)]

mod redis_cluster;

use std::sync::Arc;
use std::time::Duration;

use onboarding_core::memory::MemoryRepository;
use onboarding_core::testing::TestBackend;
use onboarding_redis::{RedisCache, RedisConfig, RedisQueue};

/// Visibility timeout of the per-case queues (the suite wants 0.5-2 s).
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(1);

async fn setup() -> TestBackend {
    let url = tokio::task::spawn_blocking(|| redis_cluster::cluster().url())
        .await
        .unwrap();
    let config = RedisConfig::new(url)
        .with_prefix(format!("conformance-{}", uuid::Uuid::new_v4().simple()))
        .with_visibility_timeout(VISIBILITY_TIMEOUT)
        .with_poll_interval(Duration::from_millis(100));
    assert!(config.is_cluster());
    TestBackend {
        repository: Arc::new(MemoryRepository::new()),
        queue: Arc::new(RedisQueue::connect(config.clone()).await.unwrap()),
        cache: Arc::new(RedisCache::connect(config).await.unwrap()),
    }
}

onboarding_core::conformance_tests!(setup);
