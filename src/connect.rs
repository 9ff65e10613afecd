//! Backends from URLs, the way `examples/server.rs` reads `DATABASE_URL`,
//! `QUEUE_URL` and `CACHE_URL`.

use std::sync::Arc;
use std::time::Duration;

use onboarding_core::keys::KeyStore;
use onboarding_core::limits::{BacklogLedger, MemoryLedger, Rate, RateLimiter};
use onboarding_core::memory::{
    MemoryCache, MemoryKeyStore, MemoryQueue, MemoryRepository, MemoryWebhooks, TracingEventSink,
};
use onboarding_core::repository::OrgRepository;
use onboarding_core::webhooks::{DeliveryLog, WebhookStore};
use onboarding_core::{redact_url, Backends, Cache, Error, ErrorKind, JobQueue, Result, SecretUrl};

/// Where a deployment keeps its state, one URL per backend:
///
/// - `database`: `sqlite://…` (feature `sqlite`), `postgres://…` (`postgres`),
///   `mysql://…` (`mysql`), or `memory` (nothing survives the process);
/// - `queue`: `database` (the SQL table queue of a SQL `database`),
///   `redis://…` (`redis`), `amqp://…` (`amqp`), or `memory`;
/// - `cache`: `memory` or `redis://…` (`redis`).
///
/// Events go to `tracing`; replace [`Backends::events`] to send them
/// elsewhere. Connection pools close when the last clone of the backends
/// is dropped. `Debug` hides passwords (the URLs are [`SecretUrl`]s).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BackendUrls {
    /// The repository's URL.
    pub database: SecretUrl,
    /// A PostgreSQL read replica of `database` for status, items and
    /// organization reads (`DATABASE_READ_URL`; `onboarding_sqlx::replica`), if any.
    pub read_database: Option<SecretUrl>,
    /// The queue's URL.
    pub queue: SecretUrl,
    /// The cache's URL.
    pub cache: SecretUrl,
    /// The key prefix (Redis) or queue-name prefix (RabbitMQ); the adapters'
    /// default (`onboarding`) when `None`.
    pub prefix: Option<String>,
    /// RabbitMQ: let the broker delete queues unused this long (throw-away
    /// deployments and tests); never when `None`.
    pub queue_expiry: Option<Duration>,
}

impl BackendUrls {
    /// These URLs with no prefix and no queue expiry.
    pub fn new(
        database: impl Into<String>,
        queue: impl Into<String>,
        cache: impl Into<String>,
    ) -> Self {
        Self {
            database: SecretUrl::new(database),
            read_database: None,
            queue: SecretUrl::new(queue),
            cache: SecretUrl::new(cache),
            prefix: None,
            queue_expiry: None,
        }
    }

    /// Sets the read replica's URL (`None` or empty: every read on `database`).
    pub fn with_read_database(mut self, url: Option<String>) -> Self {
        self.read_database = url.filter(|u| !u.trim().is_empty()).map(SecretUrl::new);
        self
    }

    /// Sets the key / queue-name prefix.
    pub fn with_prefix(mut self, prefix: Option<String>) -> Self {
        self.prefix = prefix;
        self
    }

    /// Sets how long unused RabbitMQ queues live.
    pub fn with_queue_expiry(mut self, expiry: Option<Duration>) -> Self {
        self.queue_expiry = expiry;
        self
    }

    /// Whether the repository lives in this process only (`memory`).
    pub fn is_in_memory(&self) -> bool {
        self.database.expose().trim() == "memory"
    }

    /// Connects every backend (running the SQL migrations).
    ///
    /// # Errors
    ///
    /// `Invalid` for a URL this build does not support (an unknown scheme,
    /// or one whose feature is off), `Unavailable` when a server cannot be
    /// reached. Messages show URLs with their passwords hidden.
    pub async fn connect(&self) -> Result<Backends> {
        Ok(self.connect_deployment(None).await?.backends)
    }

    /// Connects every backend and what the processes of a deployment share
    /// beside them: tenants and API keys, webhook endpoints and deliveries
    /// (in the database), and the rate limit (`rate`, when given) and
    /// backlog ledger (in Redis when the cache is Redis, else in this
    /// process).
    ///
    /// # Errors
    ///
    /// As [`BackendUrls::connect`].
    pub async fn connect_deployment(&self, rate: Option<Rate>) -> Result<Deployment> {
        let read_url = self.read_database.as_ref().map(|u| u.expose().trim());
        let (repository, sql_queue, directory) =
            repository(self.database.expose().trim(), read_url).await?;
        let queue: Arc<dyn JobQueue> = match self.queue.expose().trim() {
            "database" => sql_queue
                .ok_or_else(|| invalid("QUEUE_URL=database needs a SQL DATABASE_URL".to_owned()))?,
            "memory" => Arc::new(MemoryQueue::new(Duration::from_secs(30))),
            url if is_redis(url) => redis::queue(url, self.prefix.as_deref()).await?,
            url if url.starts_with("amqp://") || url.starts_with("amqps://") => {
                amqp::queue(url, self.prefix.as_deref(), self.queue_expiry).await?
            }
            other => {
                return Err(invalid(format!(
                    "QUEUE_URL {} is not supported: use database, redis://…, amqp://… or memory",
                    redact_url(other)
                )))
            }
        };
        let cache: Arc<dyn Cache> = match self.cache.expose().trim() {
            "memory" => Arc::new(MemoryCache::default()),
            url if is_redis(url) => redis::cache(url, self.prefix.as_deref()).await?,
            other => {
                return Err(invalid(format!(
                    "CACHE_URL {} is not supported: use memory or redis://…",
                    redact_url(other)
                )))
            }
        };
        let (rate_limiter, ledger) = match self.cache.expose().trim() {
            url if is_redis(url) => redis::limits(url, self.prefix.as_deref(), rate).await?,
            _ => (
                None,
                Arc::new(MemoryLedger::default()) as Arc<dyn BacklogLedger>,
            ),
        };
        let (keys, endpoints, deliveries) = directory;
        Ok(Deployment {
            backends: Backends::new(repository, queue, cache, Arc::new(TracingEventSink)),
            keys,
            endpoints,
            deliveries,
            rate_limiter,
            ledger,
        })
    }
}

/// Everything one process of a deployment connects to (see
/// [`BackendUrls::connect_deployment`]).
#[derive(Clone)]
#[non_exhaustive]
pub struct Deployment {
    /// The repository, queue, cache and event sink.
    pub backends: Backends,
    /// Tenants and API keys.
    pub keys: Arc<dyn KeyStore>,
    /// Tenants' webhook endpoints.
    pub endpoints: Arc<dyn WebhookStore>,
    /// The webhook delivery log.
    pub deliveries: Arc<dyn DeliveryLog>,
    /// The per-tenant rate limit shared by every server (Redis), if any.
    pub rate_limiter: Option<Arc<dyn RateLimiter>>,
    /// The backlog limit's ledger (Redis, or this process).
    pub ledger: Arc<dyn BacklogLedger>,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("shared_rate_limit", &self.rate_limiter.is_some())
            .finish_non_exhaustive()
    }
}

/// Tenants and keys, webhook endpoints, the delivery log.
type Directory = (
    Arc<dyn KeyStore>,
    Arc<dyn WebhookStore>,
    Arc<dyn DeliveryLog>,
);

/// The backends these URLs name, with no prefix: see [`BackendUrls`].
///
/// # Errors
///
/// As [`BackendUrls::connect`].
pub async fn connect(database_url: &str, queue_url: &str, cache_url: &str) -> Result<Backends> {
    BackendUrls::new(database_url, queue_url, cache_url)
        .connect()
        .await
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::Invalid, message)
}

/// The error for a URL whose backend is not compiled in.
#[allow(dead_code)] // unused when every feature is on
fn needs(feature: &str, what: &str) -> Error {
    invalid(format!(
        "{what} needs the `{feature}` feature of bulk-onboarding"
    ))
}

fn is_redis(url: &str) -> bool {
    url.starts_with("redis://") || url.starts_with("rediss://")
}

/// The repository, the SQL queue beside it when the database is SQL, and
/// the directory in the same database.
async fn repository(
    url: &str,
    read_url: Option<&str>,
) -> Result<(Arc<dyn OrgRepository>, Option<Arc<dyn JobQueue>>, Directory)> {
    if url == "memory" && read_url.is_some() {
        return Err(invalid(
            "DATABASE_READ_URL needs a PostgreSQL DATABASE_URL".to_owned(),
        ));
    }
    if url == "memory" {
        let webhooks = Arc::new(MemoryWebhooks::new());
        return Ok((
            Arc::new(MemoryRepository::new()),
            Some(Arc::new(MemoryQueue::new(Duration::from_secs(30)))),
            (Arc::new(MemoryKeyStore::new()), webhooks.clone(), webhooks),
        ));
    }
    let sql = ["sqlite:", "postgres:", "postgresql:", "mysql:", "mariadb:"]
        .iter()
        .any(|scheme| url.starts_with(scheme));
    if !sql {
        return Err(invalid(format!(
            "DATABASE_URL {} is not supported: use sqlite://…, postgres://…, mysql://… or memory",
            redact_url(url)
        )));
    }
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
    {
        let options = onboarding_sqlx::SqlOptions::default();
        let mut backend = onboarding_sqlx::connect(url, options.clone()).await?;
        if let Some(read_url) = read_url {
            backend = read_replica(backend, read_url, &options)?;
        }
        let directory: Directory = (
            backend.key_store(),
            backend.webhook_store(),
            backend.delivery_log(),
        );
        Ok((backend.repository(), Some(backend.queue()), directory))
    }
    #[cfg(not(any(feature = "postgres", feature = "mysql", feature = "sqlite")))]
    Err(needs("sqlite", "a SQL DATABASE_URL"))
}

#[cfg(feature = "postgres")]
fn read_replica(
    backend: onboarding_sqlx::SqlBackend,
    read_url: &str,
    options: &onboarding_sqlx::SqlOptions,
) -> Result<onboarding_sqlx::SqlBackend> {
    backend.with_read_replica(read_url, options)
}

#[cfg(all(not(feature = "postgres"), any(feature = "mysql", feature = "sqlite")))]
fn read_replica(
    _: onboarding_sqlx::SqlBackend,
    _: &str,
    _: &onboarding_sqlx::SqlOptions,
) -> Result<onboarding_sqlx::SqlBackend> {
    Err(needs("postgres", "DATABASE_READ_URL"))
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use onboarding_redis::{RedisCache, RedisConfig, RedisQueue};

    fn config(url: &str, prefix: Option<&str>) -> RedisConfig {
        let config = RedisConfig::new(url);
        match prefix {
            Some(prefix) => config.with_prefix(prefix),
            None => config,
        }
    }

    pub(super) async fn queue(url: &str, prefix: Option<&str>) -> Result<Arc<dyn JobQueue>> {
        Ok(Arc::new(RedisQueue::connect(config(url, prefix)).await?))
    }

    pub(super) async fn cache(url: &str, prefix: Option<&str>) -> Result<Arc<dyn Cache>> {
        Ok(Arc::new(RedisCache::connect(config(url, prefix)).await?))
    }

    pub(super) async fn limits(
        url: &str,
        prefix: Option<&str>,
        rate: Option<Rate>,
    ) -> Result<(Option<Arc<dyn RateLimiter>>, Arc<dyn BacklogLedger>)> {
        use onboarding_redis::{RedisLedger, RedisRateLimiter};
        let limiter: Option<Arc<dyn RateLimiter>> = match rate {
            Some(rate) => Some(Arc::new(
                RedisRateLimiter::connect(config(url, prefix), rate).await?,
            )),
            None => None,
        };
        let ledger = RedisLedger::connect(config(url, prefix)).await?;
        Ok((limiter, Arc::new(ledger)))
    }
}

#[cfg(not(feature = "redis"))]
mod redis {
    use super::*;

    pub(super) async fn queue(_: &str, _: Option<&str>) -> Result<Arc<dyn JobQueue>> {
        Err(needs("redis", "QUEUE_URL=redis://…"))
    }

    pub(super) async fn cache(_: &str, _: Option<&str>) -> Result<Arc<dyn Cache>> {
        Err(needs("redis", "CACHE_URL=redis://…"))
    }

    pub(super) async fn limits(
        _: &str,
        _: Option<&str>,
        _: Option<Rate>,
    ) -> Result<(Option<Arc<dyn RateLimiter>>, Arc<dyn BacklogLedger>)> {
        Err(needs("redis", "CACHE_URL=redis://…"))
    }
}

#[cfg(feature = "amqp")]
mod amqp {
    use super::*;
    use onboarding_amqp::{AmqpConfig, AmqpQueue};

    pub(super) async fn queue(
        url: &str,
        prefix: Option<&str>,
        expiry: Option<Duration>,
    ) -> Result<Arc<dyn JobQueue>> {
        // `?queue_type=quorum` (and `delivery_limit=N`) pick replicated queues.
        let mut config = AmqpConfig::from_url(url)?;
        if let Some(prefix) = prefix {
            config = config.with_prefix(prefix);
        }
        if let Some(expiry) = expiry {
            config = config
                .with_queue_expiry(expiry)
                .with_tenant_queue_expiry(Some(expiry));
        }
        Ok(Arc::new(AmqpQueue::connect(config).await?))
    }
}

#[cfg(not(feature = "amqp"))]
mod amqp {
    use super::*;

    pub(super) async fn queue(
        _: &str,
        _: Option<&str>,
        _: Option<Duration>,
    ) -> Result<Arc<dyn JobQueue>> {
        Err(needs("amqp", "QUEUE_URL=amqp://…"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_urls_connect_and_unknown_ones_are_invalid_without_secrets() {
        let backends = connect("memory", "memory", "memory").await;
        assert!(backends.is_ok());
        let err = connect("oracle://app:s3cret@db/x", "memory", "memory")
            .await
            .expect_err("no such backend");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let err = connect("memory", "database", "memory").await;
        assert!(err.is_ok(), "the memory database has a queue beside it");
        let err = connect("memory", "kafka://x", "memory")
            .await
            .expect_err("no such queue");
        assert_eq!(err.kind(), ErrorKind::Invalid);
        let shown = format!(
            "{:?}",
            BackendUrls::new("postgres://u:pw@h/db", "memory", "memory")
        );
        assert!(!shown.contains("pw@"), "{shown}");
    }
}
