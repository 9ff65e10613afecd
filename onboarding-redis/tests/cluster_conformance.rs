//! The core conformance suite (queue, cache, guarantees, limits) against a
//! Redis Cluster of three masters and three replicas, started for this test
//! binary on free loopback ports and removed when it ends
//! (`onboarding_redis::testing::TestCluster`). Every case gets a fresh key
//! prefix; its tenants' key groups spread over the masters, so every queue
//! call crosses nodes.

use onboarding_core::testing::TestBackend;
use onboarding_redis::testing::TestCluster;

async fn setup() -> TestBackend {
    TestCluster::test_backend().await
}

onboarding_core::conformance_tests!(setup, [queue, cache, guarantees, limits]);
