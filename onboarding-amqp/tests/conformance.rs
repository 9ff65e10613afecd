//! The core conformance suite for what this crate implements: every
//! `# Behavior` bullet of `JobQueue`, and the guarantees with real workers
//! over this queue, against a real RabbitMQ, twice: on classic queues and
//! on quorum queues. Every case gets a fresh queue (its own name prefix;
//! classic queues are deleted by the broker 5 minutes after their last use,
//! quorum queues when the case ends); the repository and the cache are in
//! memory.

/// Classic queues (the default).
mod classic {
    use onboarding_core::testing::TestBackend;

    async fn setup() -> TestBackend {
        onboarding_amqp::testing::test_backend().await
    }

    onboarding_core::conformance_tests!(setup, [queue, guarantees]);
}

/// Quorum queues (`x-queue-type: quorum`).
mod quorum {
    use onboarding_core::testing::TestBackend;

    async fn setup() -> TestBackend {
        onboarding_amqp::testing::quorum_test_backend().await
    }

    onboarding_core::conformance_tests!(setup, [queue, guarantees]);
}
