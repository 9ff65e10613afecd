//! The conformance suite against the in-memory backends.
//!
//! One repository and one cache are shared by every case, as a database and
//! a Redis would be, so this run also checks that the cases isolate
//! themselves; each case gets a fresh queue, as the suite requires.

#![cfg(feature = "testing")]

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use onboarding_core::memory::{MemoryCache, MemoryQueue, MemoryRepository};
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
        queue: Arc::new(MemoryQueue::new(VISIBILITY_TIMEOUT)),
        cache,
    }
}

onboarding_core::conformance_tests!(setup);
