//! Backends for the benchmarks: a fresh database per run (PostgreSQL,
//! MariaDB) or a fresh file (SQLite), a fresh Redis key prefix, a fresh
//! RabbitMQ queue prefix; each is removed again by `cleanup`.
//!
//! Servers (override with the environment variables):
//! `ONBOARDING_BENCH_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`),
//! `ONBOARDING_BENCH_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/mysql`),
//! `ONBOARDING_BENCH_REDIS_URL` (default `redis://127.0.0.1:6379`),
//! `ONBOARDING_BENCH_AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use onboarding::memory::{MemoryCache, TracingEventSink};
use onboarding::sqlx::{connect, SqlBackend, SqlOptions};
use onboarding::{Backends, JobQueue, OrgRepository};
use sqlx::Connection;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The PostgreSQL admin URL (a database that exists).
pub(crate) fn postgres_admin() -> String {
    env_or(
        "ONBOARDING_BENCH_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/postgres",
    )
}

/// The MariaDB / MySQL admin URL.
pub(crate) fn mysql_admin() -> String {
    env_or(
        "ONBOARDING_BENCH_MYSQL_URL",
        "mysql://root@127.0.0.1:3306/mysql",
    )
}

/// The Redis URL.
pub(crate) fn redis_url() -> String {
    env_or("ONBOARDING_BENCH_REDIS_URL", "redis://127.0.0.1:6379")
}

/// The RabbitMQ URL.
pub(crate) fn amqp_url() -> String {
    env_or(
        "ONBOARDING_BENCH_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    )
}

/// A name no other run uses: `onb_bench_<unix seconds>_<random>`.
pub(crate) fn fresh_name() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "onb_bench_{secs}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}

/// `url` with its database (path) replaced by `db`.
pub(crate) fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    let mut out = format!("{}/{db}", &base[..host_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Which SQL engine a fresh database is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    Postgres,
    MySql,
    Sqlite,
}

/// A database made for this run.
#[derive(Debug, Clone)]
pub(crate) struct FreshDb {
    pub(crate) engine: Engine,
    /// The URL to connect to.
    pub(crate) url: String,
    name: String,
}

impl FreshDb {
    /// Creates a database (or names a fresh SQLite file).
    pub(crate) async fn create(engine: Engine) -> Self {
        let name = fresh_name();
        let url = match engine {
            Engine::Postgres => {
                let admin = postgres_admin();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL must be reachable (ONBOARDING_BENCH_POSTGRES_URL)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                conn.close().await.ok();
                with_database(&admin, &name)
            }
            Engine::MySql => {
                let admin = mysql_admin();
                let mut conn = sqlx::MySqlConnection::connect(&admin)
                    .await
                    .expect("MariaDB must be reachable (ONBOARDING_BENCH_MYSQL_URL)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create database");
                conn.close().await.ok();
                with_database(&admin, &name)
            }
            Engine::Sqlite => {
                let path = std::env::temp_dir().join(format!("{name}.db"));
                format!("sqlite://{}?mode=rwc", path.display())
            }
        };
        Self { engine, url, name }
    }

    /// Connects the adapter (runs its migrations).
    pub(crate) async fn connect(&self, max_connections: u32) -> SqlBackend {
        connect(
            &self.url,
            SqlOptions::default().with_max_connections(max_connections),
        )
        .await
        .expect("connect the SQL backend")
    }

    /// Drops the database (or deletes the SQLite files).
    pub(crate) async fn drop_db(&self) {
        match self.engine {
            Engine::Postgres => {
                if let Ok(mut c) = sqlx::PgConnection::connect(&postgres_admin()).await {
                    let _ = sqlx::query(&format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        self.name
                    ))
                    .execute(&mut c)
                    .await;
                }
            }
            Engine::MySql => {
                if let Ok(mut c) = sqlx::MySqlConnection::connect(&mysql_admin()).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {}", self.name))
                        .execute(&mut c)
                        .await;
                }
            }
            Engine::Sqlite => {
                let path = std::env::temp_dir().join(format!("{}.db", self.name));
                for suffix in ["", "-wal", "-shm"] {
                    let mut p = path.clone().into_os_string();
                    p.push(suffix);
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
}

/// A fresh Redis key prefix.
pub(crate) fn redis_prefix() -> String {
    format!("onb-bench-{}", uuid::Uuid::new_v4().simple())
}

/// Deletes every key under `{prefix}:` (`SCAN` + `DEL`, never `FLUSHDB`).
pub(crate) async fn redis_cleanup(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut con) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let mut cursor: u64 = 0;
    loop {
        let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}:*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut con)
            .await
        else {
            return;
        };
        for chunk in keys.chunks(500) {
            let _: redis::RedisResult<()> =
                redis::cmd("DEL").arg(chunk).query_async(&mut con).await;
        }
        if next == 0 {
            return;
        }
        cursor = next;
    }
}

/// A Redis queue on a fresh prefix.
pub(crate) async fn redis_queue(prefix: &str) -> onboarding::redis::RedisQueue {
    onboarding::redis::RedisQueue::connect(
        onboarding::redis::RedisConfig::new(redis_url()).with_prefix(prefix),
    )
    .await
    .expect("Redis must be reachable (ONBOARDING_BENCH_REDIS_URL)")
}

/// A RabbitMQ queue on a fresh prefix (queues expire if cleanup is missed).
pub(crate) async fn amqp_queue(prefetch: u16) -> onboarding::amqp::AmqpQueue {
    let config = onboarding::amqp::AmqpConfig::new(amqp_url())
        .with_prefix(fresh_name())
        .with_prefetch(prefetch)
        .with_queue_expiry(Duration::from_secs(600));
    onboarding::amqp::AmqpQueue::connect(config)
        .await
        .expect("RabbitMQ must be reachable (ONBOARDING_BENCH_AMQP_URL)")
}

/// A deployment's backends: this repository and queue, a memory cache,
/// events to `tracing` (no subscriber: dropped).
pub(crate) fn backends(repository: Arc<dyn OrgRepository>, queue: Arc<dyn JobQueue>) -> Backends {
    Backends::new(
        repository,
        queue,
        Arc::new(MemoryCache::default()),
        Arc::new(TracingEventSink),
    )
}

/// A multi-threaded runtime with the machine's 2 cores.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}
