//! bulk-onboarding on SQL databases: an [`OrgRepository`] and a SQL-table
//! [`JobQueue`] for PostgreSQL, MySQL/MariaDB (10.6+) and SQLite, on sqlx 0.8.
//!
//! ```no_run
//! # async fn demo() -> onboarding_core::Result<()> {
//! use onboarding_sqlx::{connect, SqlOptions};
//! let backend = connect("sqlite://onboarding.db", SqlOptions::default()).await?;
//! let repository = backend.repository(); // Arc<dyn OrgRepository>
//! let queue = backend.queue();           // Arc<dyn JobQueue>
//! # let _ = (repository, queue); Ok(()) }
//! ```
//!
//! The engine is chosen by the URL scheme (`postgres://`/`postgresql://`,
//! `mysql://`/`mariadb://`, `sqlite:`); each is behind the crate feature of
//! the same name. Migrations are embedded per engine and run on
//! [`connect`] unless [`SqlOptions::with_migrations`] turns them off.
//!
//! # How the hot paths stay set-based
//! - Submissions: one transaction; organizations upserted in multi-row
//!   statements (PostgreSQL `UNNEST` + `ON CONFLICT … DO UPDATE … WHERE … IS
//!   DISTINCT FROM` + `RETURNING xmax = 0`; MySQL `SELECT … FOR UPDATE` then
//!   `INSERT … ON DUPLICATE KEY UPDATE`; SQLite reads, then `INSERT … ON
//!   CONFLICT(domain) DO UPDATE … WHERE`), items inserted multi-row, all
//!   chunked by `chunk_size` and the engine's bind-parameter limit.
//! - Claims, heartbeats, finishes and releases: one conditional statement per
//!   kind of change for all ids, fenced by the lease token.
//! - Counts: derived with `GROUP BY status, change_kind` over the batch's
//!   items (served by the `(batch_id, position)` index); no counter row.
//!
//! # Indexes and HOT updates (PostgreSQL)
//! `batch_items` has two indexes: the primary key `id` and the unique
//! `(batch_id, position)`. No index reads `status`, `lease_token`,
//! `lease_until`, `attempts`, `sweep_at` or `finished_at`, so claims,
//! heartbeats, finishes and sweeps are HOT updates (no index entries are
//! written; `fillfactor = 50` leaves room on each page for the new row
//! versions), and an inserted item writes two index entries. Hot-path
//! statements find rows through the primary key only. The sweeper works
//! batch by batch: it takes the 64 least recently swept open batches
//! (`batches (swept_at, created_at) WHERE completed_at IS NULL`) and scans
//! their items through `(batch_id, position)`; with more open batches than
//! that, each is visited every few sweeps. Counts, completion checks,
//! cancels and re-drives read a batch's items through the same index.
//! `organizations` only indexes `domain`, so its status changes are HOT
//! (`fillfactor = 80`). `batch_items` has no foreign keys (a trigger per
//! inserted row); pruning deletes a batch's items itself. MySQL uses a
//! plain `(status, sweep_at)` index; SQLite partial `(sweep_at)` indexes per
//! status.
//!
//! # The queue
//! A `jobs` table (`id`, `item_id`, `tenant`, `available_at`, `leased_until`).
//! A dequeue takes up to `max` ready jobs in one statement, interleaving
//! tenants (rank within the tenant first, ties between tenants broken at
//! random, so one-job dequeues rotate among tenants too), locked with `FOR
//! UPDATE SKIP LOCKED` (PostgreSQL, MariaDB 10.6+) or inside a `BEGIN
//! IMMEDIATE` transaction (SQLite), and made invisible by moving
//! `available_at` to `now + visibility_timeout`. `ack` deletes by id.
//! `dequeue` waits by polling every [`SqlOptions::with_poll_interval`]
//! (default 25 ms), woken at once by enqueues made through the same
//! [`SqlBackend`]; there is no LISTEN/NOTIFY.
//!
//! On PostgreSQL the table is `UNLOGGED` (the queue is a wake-up call: after
//! a crash empties it, the sweeper re-enqueues every pending item), and a
//! dequeue finds the tenants with a skip scan over the `(tenant, id)` index
//! and reads only the head of each tenant's jobs (`LATERAL … LIMIT n`), so
//! its cost does not grow with the backlog. MariaDB and SQLite rank every
//! ready job with `ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY id)`,
//! which is fine for backlogs of thousands.

#![cfg_attr(docsrs, feature(doc_cfg))]
// Without an engine feature the crate only has its types and an error-returning `connect`.
#![cfg_attr(
    not(any(feature = "postgres", feature = "mysql", feature = "sqlite")),
    allow(dead_code, unused_variables, unused_imports)
)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use onboarding_core::{
    DeliveryLog, Error, ErrorKind, JobQueue, KeyStore, OrgRepository, Result, WebhookStore,
};

mod detached;
mod error;
mod rows;
mod stores;
mod wake;

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "sqlite")]
mod sqlite;

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

    /// Sets how long to wait for a free connection.
    pub fn with_acquire_timeout(mut self, d: Duration) -> Self {
        self.acquire_timeout = d;
        self
    }

    /// Turns the migrations on connect on or off.
    pub fn with_migrations(mut self, run: bool) -> Self {
        self.run_migrations = run;
        self
    }

    /// Sets the queue's visibility timeout.
    pub fn with_visibility_timeout(mut self, d: Duration) -> Self {
        self.visibility_timeout = d;
        self
    }

    /// Sets how often a waiting `dequeue` polls.
    pub fn with_poll_interval(mut self, d: Duration) -> Self {
        self.poll_interval = d.max(Duration::from_millis(1));
        self
    }

    /// Sets SQLite's busy timeout.
    pub fn with_busy_timeout(mut self, d: Duration) -> Self {
        self.busy_timeout = d;
        self
    }
}

/// A database URL whose `Debug` and `Display` hide the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its secret (use only to connect).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = url[..rest_start].to_owned();
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..colon]);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    match tail.find('?') {
        Some(q) => {
            out.push_str(&tail[..=q]);
            let params: Vec<String> = tail[q + 1..]
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            out.push_str(&params.join("&"));
        }
        None => out.push_str(tail),
    }
    out
}

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
    pub fn url(&self) -> &DatabaseUrl {
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
    fn urls_hide_passwords() {
        let u = DatabaseUrl::new("postgres://app:s3cret@db:5432/onb?sslmode=disable");
        assert_eq!(
            format!("{u:?}"),
            "\"postgres://app:***@db:5432/onb?sslmode=disable\""
        );
        assert!(!format!("{u}").contains("s3cret"));
        let u = DatabaseUrl::new("mysql://root@127.0.0.1/x?password=hunter2&ssl-mode=disabled");
        assert_eq!(
            u.redacted(),
            "mysql://root@127.0.0.1/x?password=***&ssl-mode=disabled"
        );
        assert_eq!(redact("sqlite:///tmp/a.db"), "sqlite:///tmp/a.db");
    }

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
