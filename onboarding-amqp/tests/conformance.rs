//! The core conformance suite with the RabbitMQ queue: every case gets a
//! fresh queue (its own name prefix, deleted by the broker 5 minutes after
//! its last use); the repository and the cache are the in-memory ones,
//! shared by every case.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use onboarding_core::memory::{MemoryCache, MemoryRepository};
use onboarding_core::testing::TestBackend;

/// Visibility timeout of the per-case queues (the suite wants 0.5-2 s).
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(1);

async fn setup() -> TestBackend {
    static SHARED: OnceLock<(Arc<MemoryRepository>, Arc<MemoryCache>)> = OnceLock::new();
    let (repository, cache) = SHARED
        .get_or_init(|| {
            (
                Arc::new(MemoryRepository::new()),
                Arc::new(MemoryCache::new(100_000)),
            )
        })
        .clone();
    TestBackend {
        repository,
        queue: Arc::new(common::queue(VISIBILITY_TIMEOUT).await),
        cache,
    }
}

onboarding_core::conformance_tests!(setup);
