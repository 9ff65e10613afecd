//! SQLite: one writer at a time. Every write runs in a `BEGIN IMMEDIATE`
//! transaction (it takes the write lock up front, so a read-then-write can
//! neither race nor deadlock), in WAL mode with a busy timeout.

use std::str::FromStr;
use std::sync::Arc;

use onboarding_core::Result;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Transaction};

use crate::detached::{DetachedQueue, DetachedRepository};
use crate::error::{DbResultExt, SqlError};
use crate::{DatabaseUrl, Engine, SqlBackend, SqlOptions};

pub(crate) type Db = sqlx::Sqlite;

// The same source is compiled once per engine, each time with this
// module's `Db` and `dialect`: that is the point, not an accident.
#[allow(clippy::duplicate_mod)]
#[path = "../lockstep/imports.rs"]
mod imports;
#[allow(clippy::duplicate_mod)]
#[path = "../lockstep/organizations.rs"]
mod organizations;
#[allow(clippy::duplicate_mod)]
#[path = "../lockstep/queue.rs"]
mod queue;
#[allow(clippy::duplicate_mod)]
#[path = "../lockstep/repository.rs"]
mod repository;

/// SQLite's spelling of the statements that differ between engines.
pub(crate) mod dialect {
    use super::{Db, DbResultExt, Pool, Result, Transaction};

    /// `SQLITE_MAX_VARIABLE_NUMBER` of the bundled SQLite (3.32+).
    pub(crate) const MAX_PARAMS: usize = 32766;
    /// No row locks: the IMMEDIATE transaction already holds the write lock.
    pub(crate) const FOR_UPDATE: &str = "";
    /// Same.
    pub(crate) const SKIP_LOCKED: &str = "";
    /// Nothing is locked by others, so the first `max` ranked jobs suffice.
    pub(crate) const DEQUEUE_OVERFETCH: usize = 1;
    /// A random number, to break ties between tenants in a dequeue.
    pub(crate) const RANDOM: &str = "RANDOM()";
    /// Appended to the multi-row insert of new and changed organizations.
    pub(crate) const UPSERT: &str = " ON CONFLICT (tenant, domain) DO UPDATE SET
        name = excluded.name,
        contact_email = excluded.contact_email,
        version = organizations.version + 1,
        status = 'pending',
        updated_at = excluded.updated_at,
        deleted_at = NULL
        WHERE organizations.name IS NOT excluded.name
           OR organizations.contact_email IS NOT excluded.contact_email
           OR organizations.deleted_at IS NOT NULL";

    /// `finished_at` in whole seconds since the Unix epoch (stored in UTC).
    pub(crate) const FINISHED_EPOCH: &str = "CAST(strftime('%s', finished_at) AS INTEGER)";
    /// Integer division.
    pub(crate) const INT_DIV: &str = "/";

    /// Begins a write transaction holding the database's write lock.
    pub(crate) async fn begin_write(pool: &Pool<Db>) -> Result<Transaction<'static, Db>> {
        pool.begin_with("BEGIN IMMEDIATE").await.db()
    }

    /// The statement [`begin_write`] begins with.
    pub(crate) const BEGIN_WRITE: Option<&str> = Some("BEGIN IMMEDIATE");
}

/// Extra attempts at migrating when another process migrates the same file.
const MIGRATION_TRIES: u32 = 5;

/// Connects (creating the file), migrates and builds the backend.
pub(crate) async fn connect(url: DatabaseUrl, options: &SqlOptions) -> Result<SqlBackend> {
    let connect = SqliteConnectOptions::from_str(url.expose())
        .db()?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(options.busy_timeout)
        .foreign_keys(false);
    let memory = url.expose().contains(":memory:") || url.expose().contains("mode=memory");
    let pool = SqlitePoolOptions::new()
        .max_connections(if memory { 1 } else { options.max_connections })
        .acquire_timeout(options.acquire_timeout)
        // An in-memory database lives only as long as its one connection.
        .idle_timeout(if memory {
            None
        } else {
            Some(std::time::Duration::from_secs(600))
        })
        .max_lifetime(if memory {
            None
        } else {
            Some(std::time::Duration::from_secs(1800))
        })
        .connect_with(connect)
        .await
        .db()?;
    if options.run_migrations {
        // SQLite has no migration lock (PostgreSQL and MySQL take an advisory
        // one): two processes starting on a new file race, and the loser fails
        // on "table … already exists". By then the winner has committed, so
        // trying again sees the migrations applied.
        let mut tries = 0;
        loop {
            match sqlx::migrate!("./migrations/sqlite").run(&pool).await {
                Ok(()) => break,
                Err(e) if tries < MIGRATION_TRIES => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "SQLite migration raced another process; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                }
                Err(e) => return Err(SqlError::from(e).into()),
            }
        }
    }
    Ok(SqlBackend {
        engine: Engine::Sqlite,
        url,
        repository: Arc::new(DetachedRepository::new(repository::LockRepository::new(
            pool.clone(),
        ))),
        queue: Arc::new(DetachedQueue::new(queue::LockQueue::new(
            pool.clone(),
            options,
        ))),
        stores: crate::stores::sqlite::stores(pool.clone()),
        closer: Arc::new(pool),
    })
}
