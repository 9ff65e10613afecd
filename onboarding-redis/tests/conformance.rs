//! The core conformance suite for what this crate implements: every
//! `# Behavior` bullet of `JobQueue`, `Cache`, `RateLimiter` and
//! `BacklogLedger` (two connections per case, as two processes), and the guarantees with
//! real workers over this queue, against a real Redis. The repository is the
//! in-memory one (its own cases run in onboarding-core and onboarding-sqlx).
//!
//! Each case gets a fresh key prefix, deleted when the case ends. The queue
//! and cache are built per case because each case runs on its own tokio
//! runtime, which owns the connections' driver tasks.

use onboarding_core::testing::TestBackend;
use onboarding_redis::testing::TestPrefix;

async fn setup() -> TestBackend {
    TestPrefix::test_backend().await
}

onboarding_core::conformance_tests!(setup, [queue, cache, guarantees, limits]);
