//! Shared helpers: the broker URL and a fresh queue per test.
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use onboarding_amqp::{AmqpConfig, AmqpQueue};
use onboarding_core::model::{ItemId, TenantId};
use onboarding_core::Job;

/// The broker under test: `ONBOARDING_TEST_AMQP_URL` or the local one.
pub fn url() -> String {
    std::env::var("ONBOARDING_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A configuration with a prefix no other test (or run) uses.
pub fn config(visibility: Duration) -> AmqpConfig {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let prefix = format!(
        "test-onboarding-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    AmqpConfig::new(url())
        .with_prefix(prefix)
        .with_visibility_timeout(visibility)
        .with_reconnect_backoff(Duration::from_millis(50), Duration::from_millis(500))
        // Queues a test leaves behind (conformance cases do not clean up)
        // are deleted by the broker.
        .with_queue_expiry(Duration::from_secs(300))
}

/// A connected queue; a missing broker fails the test.
pub async fn queue(visibility: Duration) -> AmqpQueue {
    AmqpQueue::connect(config(visibility))
        .await
        .expect("the RabbitMQ broker must be running (ONBOARDING_TEST_AMQP_URL)")
}

/// A ready job of `tenant`.
pub fn job(tenant: &str) -> Job {
    Job {
        item_id: ItemId::new(),
        tenant: TenantId::parse(tenant).expect("valid tenant"),
        not_before: None,
    }
}
