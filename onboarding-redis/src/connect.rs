//! Opening self-healing connections.

use std::time::Duration;

use onboarding_core::Result;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Client;

use crate::config::RedisConfig;
use crate::error::from_redis;

/// A client for the configured URL (no I/O yet).
fn client(config: &RedisConfig) -> Result<Client> {
    Client::open(config.url.expose()).map_err(|e| from_redis("invalid redis URL", e))
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

/// What is built of a client and its main connection.
pub(crate) trait FromConnection: Sized {
    fn from_connection(client: Client, conn: ConnectionManager, config: RedisConfig) -> Self;
}

/// Builds `T` on a client and its main connection (the config's response
/// timeout), connected now: `Unavailable` when Redis does not answer,
/// `Invalid` for a bad URL.
pub(crate) async fn open<T: FromConnection>(config: RedisConfig) -> Result<T> {
    let client = client(&config)?;
    let conn = connect(&client, manager_config(&config, config.response_timeout)).await?;
    Ok(T::from_connection(client, conn, config))
}

/// [`open`] without connecting: the first call connects.
pub(crate) fn open_lazy<T: FromConnection>(config: RedisConfig) -> Result<T> {
    let client = client(&config)?;
    let conn = connect_lazy(&client, manager_config(&config, config.response_timeout))?;
    Ok(T::from_connection(client, conn, config))
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
fn connect_lazy(client: &Client, settings: ConnectionManagerConfig) -> Result<ConnectionManager> {
    ConnectionManager::new_lazy_with_config(client.clone(), settings)
        .map_err(|e| from_redis("cannot create a connection manager", e))
}
