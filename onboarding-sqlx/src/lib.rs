#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
// Without an engine feature the crate only has its types and an error-returning `connect`.
#![cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code, unused_variables, unused_imports)
)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use onboarding_core::{Error, ErrorKind, JobQueue, Result};

use onboarding_core::keys::KeyStore;
use onboarding_core::repository::OrgRepository;
use onboarding_core::webhooks::{DeliveryLog, WebhookStore};

mod detached;
mod error;
#[cfg(any(feature = "mysql", feature = "sqlite"))]
mod lockstep;
mod organizations;
mod rows;
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
mod staging;
mod stores;
mod wake;

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub mod replica;
#[cfg(feature = "sqlite")]
mod sqlite;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

/// Which SQL engine a backend talks to.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// MySQL or MariaDB (10.6+).
    MySql,
    /// SQLite.
    Sqlite,
}

impl Engine {
    /// The engine a URL names by its scheme.
    pub fn from_url(url: &str) -> Result<Self> {
        let scheme = url
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "mysql" | "mariadb" => Ok(Self::MySql),
            "sqlite" => Ok(Self::Sqlite),
            _ => Err(Error::new(
                ErrorKind::Invalid,
                format!("unsupported database URL scheme {scheme:?} (postgres, mysql or sqlite)"),
            )),
        }
    }
}

/// How [`connect`] builds its pool, queue and schema.
#[non_exhaustive]
#[derive(Clone)]
pub struct SqlOptions {
    /// Most connections in the pool (default 10; SQLite in-memory: always 1).
    pub max_connections: u32,
    /// How long to wait for a free connection (default 10 s).
    pub acquire_timeout: Duration,
    /// Whether [`connect`] runs the embedded migrations (default true).
    pub run_migrations: bool,
    /// How long a dequeued, unacknowledged job stays invisible (default 30 s).
    pub visibility_timeout: Duration,
    /// How often a waiting `dequeue` looks again (default 25 ms).
    pub poll_interval: Duration,
    /// SQLite: how long a writer waits for the write lock (default 10 s).
    pub busy_timeout: Duration,
}

impl Default for SqlOptions {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(10),
            run_migrations: true,
            visibility_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(25),
            busy_timeout: Duration::from_secs(10),
        }
    }
}

impl fmt::Debug for SqlOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlOptions")
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("run_migrations", &self.run_migrations)
            .field("visibility_timeout", &self.visibility_timeout)
            .field("poll_interval", &self.poll_interval)
            .field("busy_timeout", &self.busy_timeout)
            .finish()
    }
}

impl SqlOptions {
    /// Sets the pool size.
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    onboarding_core::setters! {
        /// Sets how long to wait for a free connection.
        with_acquire_timeout(acquire_timeout: Duration);
        /// Turns the migrations on connect on or off.
        with_migrations(run_migrations: bool);
        /// Sets the queue's visibility timeout.
        with_visibility_timeout(visibility_timeout: Duration);
    }

    /// Sets how often a waiting `dequeue` polls.
    pub fn with_poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d.max(Duration::from_millis(1));
        self
    }

    onboarding_core::setters! {
        /// Sets SQLite's busy timeout.
        with_busy_timeout(busy_timeout: Duration);
    }
}

/// The URL of a database: core's [`SecretUrl`](onboarding_core::SecretUrl)
/// (the name the engine modules use).
pub(crate) use onboarding_core::SecretUrl as DatabaseUrl;

/// A connected SQL backend: its repository and its queue share one pool.
#[derive(Clone)]
pub struct SqlBackend {
    engine: Engine,
    url: DatabaseUrl,
    repository: Arc<dyn OrgRepository>,
    queue: Arc<dyn JobQueue>,
    stores: stores::Stores,
    closer: Arc<dyn Close>,
}

impl fmt::Debug for SqlBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlBackend")
            .field("engine", &self.engine)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl SqlBackend {
    /// The repository (organizations, batches, items).
    pub fn repository(&self) -> Arc<dyn OrgRepository> {
        self.repository.clone()
    }

    /// The SQL-table job queue.
    pub fn queue(&self) -> Arc<dyn JobQueue> {
        self.queue.clone()
    }

    /// Tenants and API keys.
    pub fn key_store(&self) -> Arc<dyn KeyStore> {
        self.stores.keys.clone()
    }

    /// Tenants' webhook endpoints.
    pub fn webhook_store(&self) -> Arc<dyn WebhookStore> {
        self.stores.endpoints.clone()
    }

    /// The webhook delivery outbox.
    pub fn delivery_log(&self) -> Arc<dyn DeliveryLog> {
        self.stores.deliveries.clone()
    }

    /// Which engine this is.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The URL it connected to (its `Debug`/`Display` hide the password).
    pub fn url(&self) -> &onboarding_core::SecretUrl {
        &self.url
    }

    /// Closes the pool: waits for checked-out connections to come back.
    pub async fn close(&self) {
        self.closer.close().await;
    }
}

#[async_trait::async_trait]
trait Close: Send + Sync {
    async fn close(&self);
}

#[async_trait::async_trait]
impl<DB: sqlx::Database> Close for sqlx::Pool<DB> {
    async fn close(&self) {
        sqlx::Pool::close(self).await;
    }
}

/// Connects to the database `url` names, runs its migrations (unless turned
/// off) and returns its repository and queue.
///
/// # Errors
/// `Invalid` for an unknown scheme or a scheme whose feature is off;
/// `Unavailable` when the server cannot be reached.
pub async fn connect(url: &str, options: SqlOptions) -> Result<SqlBackend> {
    let engine = Engine::from_url(url)?;
    let url = DatabaseUrl::new(url);
    match engine {
        #[cfg(feature = "postgres")]
        Engine::Postgres => pg::connect(url, &options).await,
        #[cfg(feature = "mysql")]
        Engine::MySql => mysql::connect(url, &options).await,
        #[cfg(feature = "sqlite")]
        Engine::Sqlite => sqlite::connect(url, &options).await,
        #[allow(unreachable_patterns)]
        other => Err(Error::new(
            ErrorKind::Invalid,
            format!("support for {other:?} is not compiled in (enable the crate feature)"),
        )),
    }
}

/// Splits `len` rows into chunks of at most `chunk_size` rows and at most
/// `max_params / params_per_row` rows.
#[cfg_attr(not(any(feature = "mysql", feature = "sqlite")), allow(dead_code))]
pub(crate) fn chunk_len(chunk_size: usize, max_params: usize, params_per_row: usize) -> usize {
    chunk_size
        .max(1)
        .min((max_params / params_per_row.max(1)).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_by_scheme() {
        assert_eq!(
            Engine::from_url("postgresql://x/y").ok(),
            Some(Engine::Postgres)
        );
        assert_eq!(Engine::from_url("mariadb://x/y").ok(), Some(Engine::MySql));
        assert_eq!(
            Engine::from_url("sqlite::memory:").ok(),
            Some(Engine::Sqlite)
        );
        assert!(Engine::from_url("redis://x").is_err());
    }
}
