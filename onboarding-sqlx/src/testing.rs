//! Test databases (feature `testing`): a fresh database per test on the
//! PostgreSQL or MariaDB server the environment names, or a fresh SQLite
//! file, dropped when the test ends. Tests, benchmarks and the reliability
//! suite get their databases here.
//!
//! Servers: `ONBOARDING_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and
//! `ONBOARDING_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306/mysql`),
//! each a database that exists, used to create and drop the test ones. A
//! server that cannot be reached fails the test: nothing is skipped.
//!
//! Names come from [`unique_name`]; the first database a process creates
//! on a server drops what runs that crashed left behind (older than
//! [`STALE_AFTER`]).
//!
//! ```no_run
//! # async fn demo() {
//! use onboarding_sqlx::testing::TestDatabase;
//! use onboarding_sqlx::Engine;
//!
//! let db = TestDatabase::create(Engine::Postgres).await;
//! let backend = db.connect(TestDatabase::options()).await;
//! // ... the test ...
//! drop(db); // the database is dropped (also when the test panics)
//! # let _ = backend; }
//! ```

use std::sync::Arc;
use std::time::Duration;

use onboarding_core::memory::MemoryCache;
use onboarding_core::testing::namespace::{is_stale, unique_name, PREFIX};
use onboarding_core::testing::{Cleanup, TestBackend};

use crate::{connect, Engine, SqlBackend, SqlOptions};

#[cfg(feature = "postgres")]
mod postgres_cluster;
#[cfg(feature = "postgres")]
pub use postgres_cluster::PostgresCluster;

/// Test databases older than this are left-overs of a run that crashed.
pub const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The admin URL of the server for `engine` (see the module documentation).
///
/// # Panics
///
/// For SQLite, which has no server.
pub fn admin_url(engine: Engine) -> String {
    let (variable, default) = match engine {
        Engine::Postgres => (
            "ONBOARDING_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        Engine::MySql => (
            "ONBOARDING_TEST_MYSQL_URL",
            "mysql://root@127.0.0.1:3306/mysql",
        ),
        Engine::Sqlite => panic!("SQLite has no server: its test databases are files"),
    };
    std::env::var(variable).unwrap_or_else(|_| default.to_owned())
}

/// `url` with its database (the path) replaced by `database`; the query
/// string is kept.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A database made for one test, dropped (with everything in it) when this
/// value is dropped, or when the [`Cleanup`] it became runs.
#[derive(Debug)]
pub struct TestDatabase {
    engine: Engine,
    name: String,
    url: String,
    cleanup: Cleanup,
}

impl TestDatabase {
    /// A fresh database on the test server of `engine` (a file for SQLite).
    ///
    /// # Panics
    ///
    /// When the server cannot be reached or refuses to create it, or when
    /// the engine's feature is off.
    pub async fn create(engine: Engine) -> Self {
        Self::create_labelled(engine, "").await
    }

    /// [`TestDatabase::create`] with `label` (a scenario, a benchmark) at the
    /// end of the database's name, to tell it apart while it exists.
    ///
    /// # Panics
    ///
    /// As [`TestDatabase::create`].
    pub async fn create_labelled(engine: Engine, label: &str) -> Self {
        let name = unique_name(label);
        match engine {
            Engine::Sqlite => {
                drop_stale_files();
                let path = sqlite_path(&name);
                let url = format!("sqlite://{}?mode=rwc", path.display());
                let cleanup = Cleanup::new(move || async move { remove_sqlite_files(&name) });
                Self {
                    engine,
                    name: String::new(),
                    url,
                    cleanup,
                }
            }
            _ => {
                let admin = admin_url(engine);
                server::drop_stale(engine, &admin).await;
                server::execute(engine, &admin, &format!("CREATE DATABASE {name}"))
                    .await
                    .unwrap_or_else(|e| {
                        panic!("creating the test database on {engine:?} failed ({admin}): {e}")
                    });
                let url = with_database(&admin, &name);
                let drop_sql = drop_statement(engine, &name);
                let cleanup = Cleanup::new(move || async move {
                    // A failed drop leaves a stale database for a later run.
                    let _ = server::execute(engine, &admin, &drop_sql).await;
                });
                Self {
                    engine,
                    name,
                    url,
                    cleanup,
                }
            }
        }
    }

    /// The engine.
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// The URL of the test database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Options for tests: 5 connections, a 2 s visibility timeout (the
    /// conformance suite wants 0.5-2 s) and a 20 ms poll interval.
    pub fn options() -> SqlOptions {
        SqlOptions::default()
            .with_max_connections(5)
            .with_visibility_timeout(Duration::from_secs(2))
            .with_poll_interval(Duration::from_millis(20))
    }

    /// Connects the adapter to the test database (running its migrations).
    ///
    /// # Panics
    ///
    /// When it cannot connect.
    pub async fn connect(&self, options: SqlOptions) -> SqlBackend {
        connect(&self.url, options)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test database {} failed: {e}", self.name))
    }

    /// The backends of one conformance case on a fresh database of `engine`
    /// (repository and queue on it, a memory cache), dropped when the case
    /// ends.
    ///
    /// # Panics
    ///
    /// As [`TestDatabase::create`] and [`TestDatabase::connect`].
    pub async fn test_backend(engine: Engine) -> TestBackend {
        let db = Self::create(engine).await;
        let backend = db.connect(Self::options()).await;
        TestBackend::new(
            backend.repository(),
            backend.queue(),
            Arc::new(MemoryCache::new(100_000)),
        )
        .with_key_store(backend.key_store())
        .with_webhooks(backend.webhook_store(), backend.delivery_log())
        .with_cleanup(db.into_cleanup())
    }

    /// Keeps the database after this value is dropped (for inspection; a
    /// later run drops it once it is stale) and returns its URL.
    pub fn keep(self) -> String {
        self.cleanup.disarm();
        self.url
    }

    /// The guard that drops the database, for a caller that keeps it
    /// elsewhere (a [`TestBackend`]).
    pub fn into_cleanup(self) -> Cleanup {
        self.cleanup
    }
}

fn drop_statement(engine: Engine, name: &str) -> String {
    match engine {
        // Other sessions (a pool the test did not close) would block the drop.
        Engine::Postgres => format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        _ => format!("DROP DATABASE IF EXISTS {name}"),
    }
}

fn sqlite_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{name}.db"))
}

fn remove_sqlite_files(name: &str) {
    let path = sqlite_path(name);
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.clone().into_os_string();
        file.push(suffix);
        let _ = std::fs::remove_file(file);
    }
}

/// Removes SQLite test files of crashed runs, once per process.
fn drop_stale_files() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let name = file.split('.').next().unwrap_or_default();
            if file.starts_with(PREFIX) && is_stale(name, STALE_AFTER) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    });
}

/// Statements on the admin connection of a server.
mod server {
    use super::*;

    /// Runs one statement on a connection of its own.
    pub(super) async fn execute(engine: Engine, admin: &str, sql: &str) -> Result<(), sqlx::Error> {
        match engine {
            #[cfg(feature = "postgres")]
            Engine::Postgres => execute_on::<sqlx::Postgres>(admin, sql).await,
            #[cfg(feature = "mysql")]
            Engine::MySql => execute_on::<sqlx::MySql>(admin, sql).await,
            _ => Err(sqlx::Error::Configuration(
                format!("the {engine:?} feature of onboarding-sqlx is off").into(),
            )),
        }
    }

    /// [`execute`] on a pool of one (a pool's executor keeps the future
    /// `Send` where a connection's does not).
    #[allow(dead_code)] // without an engine feature nothing calls it
    async fn execute_on<DB>(admin: &str, sql: &str) -> Result<(), sqlx::Error>
    where
        DB: sqlx::Database,
        for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    {
        let pool = sqlx::pool::PoolOptions::<DB>::new()
            .max_connections(1)
            .connect(admin)
            .await?;
        let done = sqlx::raw_sql(sql).execute(&pool).await.map(drop);
        pool.close().await;
        done
    }

    /// The names of the test databases on the server.
    async fn test_databases(engine: Engine, admin: &str) -> Result<Vec<String>, sqlx::Error> {
        let pattern = format!("{}%", PREFIX.replace('_', "\\_"));
        match engine {
            #[cfg(feature = "postgres")]
            Engine::Postgres => {
                let pool = sqlx::PgPool::connect(admin).await?;
                let names =
                    sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                        .bind(pattern)
                        .fetch_all(&pool)
                        .await;
                pool.close().await;
                names
            }
            #[cfg(feature = "mysql")]
            Engine::MySql => {
                let pool = sqlx::MySqlPool::connect(admin).await?;
                let names = sqlx::query_scalar(
                    "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA \
                     WHERE SCHEMA_NAME LIKE ?",
                )
                .bind(pattern)
                .fetch_all(&pool)
                .await;
                pool.close().await;
                names
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Drops the stale test databases of `engine`'s server, once per process.
    pub(super) async fn drop_stale(engine: Engine, admin: &str) {
        static POSTGRES: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        static MYSQL: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
        let once = match engine {
            Engine::Postgres => &POSTGRES,
            _ => &MYSQL,
        };
        once.get_or_init(|| async {
            let names = test_databases(engine, admin).await.unwrap_or_default();
            for name in names.iter().filter(|n| is_stale(n, STALE_AFTER)) {
                let _ = execute(engine, admin, &drop_statement(engine, name)).await;
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_the_path_and_keeps_the_query() {
        assert_eq!(
            with_database("postgres://u@h:5432/postgres?sslmode=disable", "t1"),
            "postgres://u@h:5432/t1?sslmode=disable"
        );
        assert_eq!(with_database("mysql://root@h", "t2"), "mysql://root@h/t2");
    }
}
