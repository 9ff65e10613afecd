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
