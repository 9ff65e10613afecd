//! Opening self-healing connections.

use std::time::Duration;

use onboarding_core::Result;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Client;

use crate::config::RedisConfig;
use crate::error::from_redis;

/// A client for the configured URL (no I/O yet).
pub(crate) fn client(config: &RedisConfig) -> Result<Client> {
    Client::open(config.url.as_str()).map_err(|e| from_redis("invalid redis URL", e))
}

/// Settings of a [`ConnectionManager`]: a few quick reconnection attempts per
/// call, so a Redis outage surfaces as `Unavailable` within seconds instead
/// of stalling callers, and the next call tries again.
pub(crate) fn manager_config(
    config: &RedisConfig,
    response_timeout: Duration,
) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
        .set_connection_timeout(Some(config.connection_timeout))
        .set_response_timeout(Some(response_timeout))
}

/// Connects now; fails with `Unavailable` when Redis does not answer.
pub(crate) async fn connect(
    client: &Client,
    settings: ConnectionManagerConfig,
) -> Result<ConnectionManager> {
    ConnectionManager::new_with_config(client.clone(), settings)
        .await
        .map_err(|e| from_redis("cannot connect", e))
}

/// A manager that connects on first use.
pub(crate) fn connect_lazy(
    client: &Client,
    settings: ConnectionManagerConfig,
) -> Result<ConnectionManager> {
    ConnectionManager::new_lazy_with_config(client.clone(), settings)
        .map_err(|e| from_redis("cannot create a connection manager", e))
}
