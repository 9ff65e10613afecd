//! Test databases: one fresh database per test (PostgreSQL, MariaDB) or one
//! fresh file (SQLite), so tests run in parallel and can be rerun. A server
//! that cannot be reached fails the test; nothing is skipped.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod cases;

use std::time::Duration;

use onboarding_sqlx::{connect, SqlBackend, SqlOptions};
use sqlx::Connection;

/// A backend on its own database, and how to drop that database.
pub struct TestDb {
    pub backend: SqlBackend,
    admin_url: Option<String>,
    name: String,
    _dir: Option<tempfile::TempDir>,
}

fn options() -> SqlOptions {
    SqlOptions::default()
        .with_max_connections(5)
        .with_visibility_timeout(Duration::from_secs(2))
        .with_poll_interval(Duration::from_millis(20))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `onb_test_<unix seconds>_<random>`: the time lets later runs drop what
/// earlier runs left (the conformance suite has no teardown hook).
fn db_name() -> String {
    format!(
        "onb_test_{}_{}",
        unix_now(),
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Test databases older than this are dropped by the first setup of a run.
const STALE_AFTER_SECS: u64 = 3600;

fn is_stale(name: &str) -> bool {
    name.strip_prefix("onb_test_")
        .and_then(|rest| rest.split('_').next())
        .and_then(|t| t.parse::<u64>().ok())
        .is_some_and(|t| t + STALE_AFTER_SECS < unix_now())
}

/// Drops stale test databases, once per process.
async fn drop_stale_postgres(conn: &mut sqlx::PgConnection) {
    static ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if ONCE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let names: Vec<(String,)> =
        sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE 'onb_test_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for (name,) in names.into_iter().filter(|(n,)| is_stale(n)) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut *conn)
            .await;
    }
}

async fn drop_stale_mysql(conn: &mut sqlx::MySqlConnection) {
    static ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if ONCE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let names: Vec<(String,)> = sqlx::query_as(
        "SELECT CAST(SCHEMA_NAME AS CHAR) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE 'onb\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for (name,) in names.into_iter().filter(|(n,)| is_stale(n)) {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
            .execute(&mut *conn)
            .await;
    }
}

/// `url` with its database (path) replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
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

pub fn postgres_url() -> String {
    std::env::var("ONBOARDING_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn mysql_url() -> String {
    std::env::var("ONBOARDING_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".into())
}

pub async fn postgres() -> TestDb {
    let admin = postgres_url();
    let name = db_name();
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .expect("PostgreSQL must be reachable (ONBOARDING_TEST_POSTGRES_URL)");
    drop_stale_postgres(&mut conn).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    let backend = connect(&with_database(&admin, &name), options())
        .await
        .expect("connect to the test database");
    TestDb {
        backend,
        admin_url: Some(admin),
        name,
        _dir: None,
    }
}

pub async fn mysql() -> TestDb {
    let admin = mysql_url();
    let name = db_name();
    let mut conn = sqlx::MySqlConnection::connect(&admin)
        .await
        .expect("MariaDB/MySQL must be reachable (ONBOARDING_TEST_MYSQL_URL)");
    drop_stale_mysql(&mut conn).await;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    conn.close().await.ok();
    let backend = connect(&with_database(&admin, &name), options())
        .await
        .expect("connect to the test database");
    TestDb {
        backend,
        admin_url: Some(admin),
        name,
        _dir: None,
    }
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("onboarding.db");
    let backend = connect(&format!("sqlite://{}", path.display()), options())
        .await
        .expect("open the SQLite file");
    TestDb {
        backend,
        admin_url: None,
        name: String::new(),
        _dir: Some(dir),
    }
}

impl TestDb {
    /// The backends for one conformance case. The database (or SQLite file)
    /// outlives the case; a later run drops it once it is stale.
    pub fn into_test_backend(self) -> onboarding_core::testing::TestBackend {
        if let Some(dir) = self._dir {
            // Keep the file: the pool outlives this function.
            let _ = dir.keep();
        }
        onboarding_core::testing::TestBackend {
            repository: self.backend.repository(),
            queue: self.backend.queue(),
            cache: std::sync::Arc::new(onboarding_core::memory::MemoryCache::new(100_000)),
        }
    }

    /// The backend, its database (or SQLite file) kept for a later run to drop.
    pub fn keep(self) -> SqlBackend {
        if let Some(dir) = self._dir {
            let _ = dir.keep();
        }
        self.backend
    }

    /// Closes the pool and drops the database.
    pub async fn drop_db(self) {
        self.backend.close().await;
        let Some(admin) = self.admin_url else {
            return;
        };
        if admin.starts_with("postgres") {
            if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                let _ = sqlx::query(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .execute(&mut c)
                .await;
            }
        } else if let Ok(mut c) = sqlx::MySqlConnection::connect(&admin).await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {}", self.name))
                .execute(&mut c)
                .await;
        }
    }
}

/// One `#[tokio::test]` per case in `cases`, each on a fresh database from `$setup`.
#[macro_export]
macro_rules! engine_cases {
    ($setup:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let db = $setup().await;
                common::cases::$case(db.backend.clone()).await;
                db.drop_db().await;
            }
        )*
    };
}

/// Every focused case.
#[macro_export]
macro_rules! all_engine_cases {
    ($setup:path) => {
        $crate::engine_cases!($setup;
            upsert_outcomes,
            idempotency_replay_and_conflict,
            claims_are_fenced,
            concurrent_claims_take_each_item_once,
            finish_retry_fail_and_redrive,
            release_sweep_cancel_prune,
            large_submission_is_chunked,
            queue_delivers_interleaves_and_redelivers,
        );
    };
}

/// Rows of `batch_items` left for `batch`, read with a connection of its own
/// (what no trait method can show: orphaned rows).
pub async fn item_rows(backend: &SqlBackend, batch: uuid::Uuid) -> i64 {
    let url = backend.url().expose();
    let sql = "SELECT COUNT(*) FROM batch_items WHERE batch_id = ";
    if url.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query_scalar(&format!("{sql}$1"))
            .bind(batch)
            .fetch_one(&mut c)
            .await
            .unwrap()
    } else if url.starts_with("mysql") {
        let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
        sqlx::query_scalar(&format!("{sql}?"))
            .bind(batch)
            .fetch_one(&mut c)
            .await
            .unwrap()
    } else {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar(&format!("{sql}?"))
            .bind(batch)
            .fetch_one(&mut c)
            .await
            .unwrap()
    }
}
