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

async fn key_store() -> onboarding_core::testing::keys::KeyBackend {
    static SHARED: OnceLock<Arc<onboarding_core::memory::MemoryKeyStore>> = OnceLock::new();
    SHARED.get_or_init(Default::default).clone()
}

onboarding_core::key_store_conformance_tests!(key_store);

async fn webhooks() -> onboarding_core::testing::webhooks::WebhookBackend {
    static SHARED: OnceLock<Arc<onboarding_core::memory::MemoryWebhooks>> = OnceLock::new();
    let store = SHARED.get_or_init(Default::default).clone();
    onboarding_core::testing::webhooks::WebhookBackend {
        endpoints: store.clone(),
        deliveries: store,
    }
}

onboarding_core::webhook_conformance_tests!(webhooks);

async fn limits() -> onboarding_core::testing::limits::LimitsBackend {
    use onboarding_core::memory::{LocalRateLimiter, MemoryLedger};
    use onboarding_core::testing::limits::CASE_RATE;
    static SHARED: OnceLock<Arc<LocalRateLimiter>> = OnceLock::new();
    let limiter = SHARED
        .get_or_init(|| Arc::new(LocalRateLimiter::new(CASE_RATE)))
        .clone();
    let ledger = Arc::new(MemoryLedger::default());
    onboarding_core::testing::limits::LimitsBackend {
        limiters: [limiter.clone(), limiter],
        ledgers: [ledger.clone(), ledger],
    }
}

onboarding_core::limits_conformance_tests!(limits);
