//! Test queues (feature `testing`): a fresh queue prefix per test on the
//! broker the environment names. The broker deletes the queues of a prefix
//! five minutes after their last use (`x-expires`), so tests that end, fail
//! or crash leave nothing for long. Tests, benchmarks and the reliability
//! suite get their queues here.
//!
//! Broker: `ONBOARDING_TEST_AMQP_URL` (default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`). A broker that cannot be
//! reached fails the test: nothing is skipped.

use std::sync::Arc;
use std::time::Duration;

use onboarding_core::testing::namespace::{unique_name, Cleanup};
use onboarding_core::testing::TestBackend;

use crate::session::lock;
use crate::{AmqpConfig, AmqpQueue, QueueType};

/// How long the broker keeps a test prefix's queues after their last use.
pub const QUEUE_EXPIRY: Duration = Duration::from_secs(300);

/// The broker under test (see the module documentation).
pub fn url() -> String {
    std::env::var("ONBOARDING_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A configuration with a prefix no other test (or run) uses, quick
/// reconnects, the given visibility timeout and queues that expire
/// ([`QUEUE_EXPIRY`]).
pub fn config(visibility: Duration) -> AmqpConfig {
    AmqpConfig::new(url())
        .with_prefix(unique_name(""))
        .with_visibility_timeout(visibility)
        .with_reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        .with_queue_expiry(QUEUE_EXPIRY)
}

/// A connected queue with [`config`].
///
/// # Panics
///
/// When the broker cannot be reached.
pub async fn queue(visibility: Duration) -> AmqpQueue {
    AmqpQueue::connect(config(visibility))
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the RabbitMQ broker must run at {} for this test: {e}",
                url()
            )
        })
}

/// The backends of one conformance case: a fresh queue (visibility
/// [`TestBackend::VISIBILITY_TIMEOUT`]), the repository and cache in memory.
pub async fn test_backend() -> TestBackend {
    TestBackend::memory().with_queue(Arc::new(queue(TestBackend::VISIBILITY_TIMEOUT).await))
}

/// The backends of one conformance case on quorum queues: like
/// [`test_backend`], with 2 wait queues instead of 16 (the suite's delays
/// are a few seconds), a minute for a slow broker to declare them (each
/// quorum queue is a Raft group), and a clean-up that deletes the case's
/// queues when it ends: left to expire together, a run's quorum queues are
/// deleted in one burst that stalls a small broker for minutes.
pub async fn quorum_test_backend() -> TestBackend {
    let config = config(TestBackend::VISIBILITY_TIMEOUT)
        .with_queue_type(QueueType::Quorum)
        .with_delay_buckets(2)
        .with_connect_timeout(Duration::from_secs(60));
    let queue = AmqpQueue::connect(config.clone())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the RabbitMQ broker must run at {} for this test: {e}",
                url()
            )
        });
    let tenants = queue.tenants.clone();
    let cleanup = Cleanup::new(move || async move {
        // The case's connection is gone with its runtime: a new one, told
        // of the tenants whose queues the case declared.
        let fresh = AmqpQueue::new(config);
        lock(&fresh.tenants).extend(lock(&tenants).iter().cloned());
        if let Err(e) = fresh.delete_queues().await {
            tracing::warn!(error = %e, "deleting a case's quorum queues failed; they expire later");
        }
    });
    TestBackend::memory()
        .with_queue(Arc::new(queue))
        .with_cleanup(cleanup)
}

/// Runs `rabbitmqctl args…`; its standard output.
///
/// # Panics
///
/// When `rabbitmqctl` is missing or fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl must be installed to run this test");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
