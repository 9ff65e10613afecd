//! The conformance suite against the in-memory backends.
//!
//! One repository, cache, key store and webhook store are shared by every
//! case, as a database and a Redis would be, so this run also checks that
//! the cases isolate themselves; each case gets a fresh queue and ledger,
//! as the suite requires.

use std::sync::{Arc, OnceLock};

use onboarding_core::memory::{MemoryCache, MemoryKeyStore, MemoryRepository, MemoryWebhooks};
use onboarding_core::testing::TestBackend;

/// What every case shares.
type Shared = (
    Arc<MemoryRepository>,
    Arc<MemoryCache>,
    Arc<MemoryKeyStore>,
    Arc<MemoryWebhooks>,
);

async fn setup() -> TestBackend {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    let (repository, cache, keys, webhooks) = SHARED
        .get_or_init(|| {
            (
                Arc::new(MemoryRepository::new()),
                Arc::new(MemoryCache::new(100_000)),
                Arc::new(MemoryKeyStore::new()),
                Arc::new(MemoryWebhooks::new()),
            )
        })
        .clone();
    TestBackend::memory()
        .with_repository(repository)
        .with_cache(cache)
        .with_key_store(keys)
        .with_webhooks(webhooks.clone(), webhooks)
}

onboarding_core::conformance_tests!(
    setup,
    [repository, queue, cache, guarantees, imports, keys, webhooks, limits]
);
