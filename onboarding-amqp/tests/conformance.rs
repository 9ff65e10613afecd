//! The core conformance suite for what this crate implements: every
//! `# Behavior` bullet of `JobQueue`, and the guarantees with real workers
//! over this queue, against a real RabbitMQ. Every case gets a fresh queue
//! (its own name prefix, deleted by the broker 5 minutes after its last
//! use); the repository and the cache are in memory.

use onboarding_core::testing::TestBackend;

async fn setup() -> TestBackend {
    onboarding_amqp::testing::test_backend().await
}

onboarding_core::conformance_tests!(setup, [queue, guarantees]);
