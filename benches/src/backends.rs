//! Backends for the benchmarks, each on a namespace of its own that goes
//! when the run ends: a fresh database per engine (a file for SQLite), a
//! fresh Redis key prefix, a fresh RabbitMQ queue prefix (its queues expire).
//!
//! The servers are the tests' (the adapters' `testing` modules):
//! `ONBOARDING_TEST_POSTGRES_URL`, `ONBOARDING_TEST_MYSQL_URL`,
//! `ONBOARDING_TEST_REDIS_URL`, `ONBOARDING_TEST_AMQP_URL`, loopback by default.

use std::sync::Arc;
use std::time::Duration;

use onboarding::memory::{MemoryCache, TracingEventSink};
use onboarding::repository::OrgRepository;
use onboarding::sql::{SqlBackend, SqlOptions};
use onboarding::AmqpQueue;
use onboarding::{Backends, JobQueue};
use onboarding::{RedisConfig, RedisQueue};
pub use onboarding_redis::testing::{url as redis_url, TestPrefix};
pub use onboarding_sqlx::testing::TestDatabase;
pub use onboarding_sqlx::Engine;

/// A fresh database on `engine`, dropped with the value.
pub async fn database(engine: Engine) -> TestDatabase {
    TestDatabase::create_labelled(engine, "bench").await
}

/// Connects the adapter to `db` with a pool of `max_connections` (running
/// its migrations), otherwise the library's defaults.
pub async fn connect(db: &TestDatabase, max_connections: u32) -> SqlBackend {
    db.connect(SqlOptions::default().with_max_connections(max_connections))
        .await
}

/// The three SQL engines, each on a fresh database, connected; the
/// databases are dropped with the value (after [`SqlEngines::close`]).
pub struct SqlEngines {
    /// SQLite (a file).
    pub sqlite: SqlBackend,
    /// MariaDB / MySQL.
    pub mysql: SqlBackend,
    /// PostgreSQL.
    pub postgres: SqlBackend,
    /// The URL of the PostgreSQL database, for the raw floors.
    pub postgres_url: String,
    _databases: [TestDatabase; 3],
}

impl SqlEngines {
    /// Fresh databases on every engine, each connected with a pool of `pool`.
    pub async fn create(pool: u32) -> Self {
        let databases = [
            database(Engine::Sqlite).await,
            database(Engine::MySql).await,
            database(Engine::Postgres).await,
        ];
        let [sqlite, mysql, postgres] = &databases;
        Self {
            sqlite: connect(sqlite, pool).await,
            mysql: connect(mysql, pool).await,
            postgres: connect(postgres, pool).await,
            postgres_url: postgres.url().to_owned(),
            _databases: databases,
        }
    }

    /// Closes the pools.
    pub async fn close(&self) {
        for backend in [&self.sqlite, &self.mysql, &self.postgres] {
            backend.close().await;
        }
    }
}

/// A fresh Redis key prefix, deleted with the value.
pub async fn redis_prefix() -> TestPrefix {
    TestPrefix::create().await
}

/// A Redis queue under `prefix`, otherwise the library's defaults.
pub async fn redis_queue(prefix: &TestPrefix) -> RedisQueue {
    RedisQueue::connect(RedisConfig::new(redis_url()).with_prefix(prefix.prefix()))
        .await
        .expect("Redis must be reachable (ONBOARDING_TEST_REDIS_URL)")
}

/// A RabbitMQ queue on a fresh prefix (its queues expire 10 minutes after
/// the run).
pub async fn amqp_queue(prefetch: u16) -> AmqpQueue {
    let config = onboarding_amqp::testing::config(Duration::from_secs(30))
        .with_prefetch(prefetch)
        .with_queue_expiry(Duration::from_secs(600));
    AmqpQueue::connect(config)
        .await
        .expect("RabbitMQ must be reachable (ONBOARDING_TEST_AMQP_URL)")
}

/// A deployment's backends on one SQL engine, with its own SQL queue.
pub fn sql_backends(sql: &SqlBackend) -> Backends {
    backends(sql.repository(), sql.queue())
}

/// A deployment's backends: this repository and queue, a memory cache,
/// events to `tracing` (no subscriber: dropped).
pub fn backends(repository: Arc<dyn OrgRepository>, queue: Arc<dyn JobQueue>) -> Backends {
    Backends::new(
        repository,
        queue,
        Arc::new(MemoryCache::default()),
        Arc::new(TracingEventSink),
    )
}

/// A multi-threaded runtime with the machine's 2 cores.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
