//! The conformance suite against the in-memory backends.
//!
//! One repository and one cache are shared by every case, as a database and
//! a Redis would be, so this run also checks that the cases isolate
//! themselves; each case gets a fresh queue, as the suite requires.

use std::sync::{Arc, OnceLock};

use onboarding_core::memory::{MemoryCache, MemoryRepository};
use onboarding_core::testing::TestBackend;

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
    TestBackend::memory()
        .with_repository(repository)
        .with_cache(cache)
}

onboarding_core::conformance_tests!(setup);
