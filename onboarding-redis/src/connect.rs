//! Opening self-healing connections, to one Redis server or to a Redis
//! Cluster, behind one type ([`Conn`]) that runs commands, pipelines and
//! scripts on either.

use std::time::Duration;

use onboarding_core::{Error, ErrorKind, Result};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, Pipeline, RedisFuture, Value};

use crate::config::{target, RedisConfig, Target};
use crate::error::from_redis;

/// Opens connections to what the configured URL names.
#[derive(Clone)]
pub(crate) enum Connector {
    /// One Redis server.
    Single(Client),
    /// A Redis Cluster (the client finds every node from the seeds).
    Cluster(Box<ClusterClient>),
}

/// A connection that reconnects by itself: a [`ConnectionManager`] to one
/// server, or a [`ClusterConnection`] (which follows `MOVED` and reconnects
/// to nodes, e.g. after a failover). Cheap to clone; clones share the
/// connection.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Whether commands go to a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Connector {
    /// A connector for the configured URL (no I/O yet); `Invalid` when the
    /// URL is not one.
    pub(crate) fn new(config: &RedisConfig) -> Result<Self> {
        let invalid = |e: redis::RedisError| from_redis("invalid redis URL", e);
        match target(config.url.expose()) {
            Ok(Target::Single(url)) => Client::open(url.as_str())
                .map(Connector::Single)
                .map_err(invalid),
            Ok(Target::Cluster(nodes)) => ClusterClientBuilder::new(nodes)
                // A few quick retries per call (they follow MOVED and
                // reconnect), so an outage surfaces as `Unavailable` within
                // seconds, and the next call tries again.
                .retries(3)
                .min_retry_wait(50)
                .max_retry_wait(500)
                .connection_timeout(config.connection_timeout)
                .response_timeout(config.response_timeout)
                .build()
                .map(|client| Connector::Cluster(Box::new(client)))
                .map_err(invalid),
            Err(message) => Err(Error::new(
                ErrorKind::Invalid,
                format!("invalid redis URL: {message}"),
            )),
        }
    }

    /// Connects now; fails with `Unavailable` when Redis does not answer.
    pub(crate) async fn connect(
        &self,
        config: &RedisConfig,
        response_timeout: Duration,
    ) -> Result<Conn> {
        match self {
            Connector::Single(client) => ConnectionManager::new_with_config(
                client.clone(),
                manager_config(config, response_timeout),
            )
            .await
            .map(Conn::Single),
            Connector::Cluster(client) => client
                .get_async_connection_with_config(cluster_config(config, response_timeout))
                .await
                .map(Conn::Cluster),
        }
        .map_err(|e| from_redis("cannot connect", e))
    }

    /// A connection that connects on first use. Must be called inside a
    /// Tokio runtime.
    pub(crate) fn connect_lazy(
        &self,
        config: &RedisConfig,
        response_timeout: Duration,
    ) -> Result<Conn> {
        match self {
            Connector::Single(client) => ConnectionManager::new_lazy_with_config(
                client.clone(),
                manager_config(config, response_timeout),
            )
            .map(Conn::Single)
            .map_err(|e| from_redis("cannot create a connection manager", e)),
            Connector::Cluster(client) => Ok(Conn::Cluster(
                client.get_pending_async_connection_with_config(cluster_config(
                    config,
                    response_timeout,
                )),
            )),
        }
    }
}

/// `Debug` for what is built of a connection (the queue, the cache): its
/// type name and its config (whose `Debug` hides the password), nothing of
/// the connection.
macro_rules! debug_config {
    ($t:ident) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))
                    .field("config", &self.config)
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use debug_config;

/// What is built of a connector and its main connection (the queue, the cache).
pub(crate) trait FromConnection: Sized {
    fn from_connection(connector: Connector, conn: Conn, config: RedisConfig) -> Self;
}

/// Builds `T` on a connector and its main connection (the config's response
/// timeout), connected now: `Unavailable` when Redis does not answer,
/// `Invalid` for a bad URL.
pub(crate) async fn open<T: FromConnection>(config: RedisConfig) -> Result<T> {
    let connector = Connector::new(&config)?;
    let conn = connector.connect(&config, config.response_timeout).await?;
    Ok(T::from_connection(connector, conn, config))
}

/// [`open`] without connecting: the first call connects. Must be called
/// inside a Tokio runtime.
pub(crate) fn open_lazy<T: FromConnection>(config: RedisConfig) -> Result<T> {
    let connector = Connector::new(&config)?;
    let conn = connector.connect_lazy(&config, config.response_timeout)?;
    Ok(T::from_connection(connector, conn, config))
}

/// Settings of a [`ConnectionManager`]: a few quick reconnection attempts per
/// call, so a Redis outage surfaces as `Unavailable` within seconds instead
/// of stalling callers, and the next call tries again.
fn manager_config(config: &RedisConfig, response_timeout: Duration) -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500))
        .set_connection_timeout(Some(config.connection_timeout))
        .set_response_timeout(Some(response_timeout))
}

fn cluster_config(config: &RedisConfig, response_timeout: Duration) -> ClusterConfig {
    ClusterConfig::new()
        .set_connection_timeout(config.connection_timeout)
        .set_response_timeout(response_timeout)
}
