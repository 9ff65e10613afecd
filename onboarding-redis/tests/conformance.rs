//! The core conformance suite for the traits this crate implements: every
//! `# Behavior` bullet of `JobQueue` and `Cache` against a real Redis (the
//! repository field is the in-memory one; its own cases run in
//! onboarding-core's `conformance_memory`).
//!
//! Each case gets a fresh key prefix, deleted when the case drops its
//! backends. The queue and cache are built per case because each case runs
//! on its own tokio runtime, which owns the connections' driver tasks.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use onboarding_core::memory::MemoryRepository;
use onboarding_core::testing::TestBackend;
use support::{cache, fresh_prefix, queue, CleanCache, CleanQueue, Cleanup};

/// Visibility timeout of the per-case queues (the suite wants 0.5-2 s).
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(1);

async fn setup() -> TestBackend {
    let prefix = fresh_prefix();
    let cleanup = Arc::new(Cleanup(prefix.clone()));
    TestBackend {
        repository: Arc::new(MemoryRepository::new()),
        queue: Arc::new(CleanQueue {
            inner: queue(&prefix, VISIBILITY_TIMEOUT).await,
            _cleanup: Arc::clone(&cleanup),
        }),
        cache: Arc::new(CleanCache {
            inner: cache(&prefix).await,
            _cleanup: cleanup,
        }),
    }
}

// The whole suite: the repository cases run on a fresh memory repository,
// and the guarantee cases run real workers over this Redis queue.
onboarding_core::conformance_tests!(setup);

/// A limiter or ledger whose prefix's keys go when the last handle is dropped.
struct Clean<T> {
    inner: T,
    _cleanup: Arc<Cleanup>,
}

#[async_trait::async_trait]
impl<T: onboarding_core::RateLimiter> onboarding_core::RateLimiter for Clean<T> {
    async fn check(&self, key: &str) -> onboarding_core::Result<onboarding_core::limits::Admit> {
        self.inner.check(key).await
    }
    fn rate(&self) -> onboarding_core::limits::Rate {
        self.inner.rate()
    }
}

#[async_trait::async_trait]
impl<T: onboarding_core::BacklogLedger> onboarding_core::BacklogLedger for Clean<T> {
    async fn admit(
        &self,
        incoming: u64,
        max: u64,
        fresh_for: Duration,
    ) -> onboarding_core::Result<Option<onboarding_core::limits::LedgerAnswer>> {
        self.inner.admit(incoming, max, fresh_for).await
    }
    async fn record(&self, waiting: Option<u64>) -> onboarding_core::Result<()> {
        self.inner.record(waiting).await
    }
}

/// Two connections under one fresh prefix: two processes sharing a Redis.
async fn limits() -> onboarding_core::testing::limits::LimitsBackend {
    use onboarding_core::testing::limits::CASE_RATE;
    use onboarding_redis::{RedisLedger, RedisRateLimiter};
    let prefix = fresh_prefix();
    let cleanup = Arc::new(Cleanup(prefix.clone()));
    let config = || support::config(&prefix, VISIBILITY_TIMEOUT);
    let limiter = || async {
        Arc::new(Clean {
            inner: RedisRateLimiter::connect(config(), CASE_RATE)
                .await
                .unwrap(),
            _cleanup: cleanup.clone(),
        })
    };
    let ledger = || async {
        Arc::new(Clean {
            inner: RedisLedger::connect(config()).await.unwrap(),
            _cleanup: cleanup.clone(),
        })
    };
    onboarding_core::testing::limits::LimitsBackend {
        limiters: [limiter().await, limiter().await],
        ledgers: [ledger().await, ledger().await],
    }
}

onboarding_core::limits_conformance_tests!(limits);
