//! MySQL / MariaDB (10.6+): writes lock the rows they decide on with
//! `SELECT … FOR UPDATE` (or `SKIP LOCKED` where another holder may simply
//! be passed over), then write set-based in the same transaction.

use std::str::FromStr;
use std::sync::Arc;

use onboarding_core::Result;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{Pool, Transaction};

use crate::detached::{DetachedQueue, DetachedRepository};
use crate::error::{DbResultExt, SqlError};
use crate::{DatabaseUrl, Engine, SqlBackend, SqlOptions};

pub(crate) type Db = sqlx::MySql;

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

/// MySQL's spelling of the statements that differ between engines.
pub(crate) mod dialect {
    use super::{Db, DbResultExt, Pool, Result, Transaction};

    /// Most placeholders in one prepared statement.
    pub(crate) const MAX_PARAMS: usize = 65535;
    /// A locking read that waits for the current holder.
    pub(crate) const FOR_UPDATE: &str = " FOR UPDATE";
    /// A locking read that passes over rows someone else holds.
    pub(crate) const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";
    /// Rank this many times `max` jobs, so rows held by other consumers can be skipped.
    pub(crate) const DEQUEUE_OVERFETCH: usize = 4;
    /// A random number, to break ties between tenants in a dequeue.
    pub(crate) const RANDOM: &str = "RAND()";
    /// Appended to the multi-row insert of new and changed organizations.
    /// Only rows the locking read found missing, different or deleted are
    /// written, so an existing row here is a change or a restore (text columns use a case-insensitive
    /// collation, so the comparison is made exactly, in Rust, not in SQL).
    pub(crate) const UPSERT: &str = " ON DUPLICATE KEY UPDATE
        version = version + 1,
        updated_at = VALUES(updated_at),
        status = 'pending',
        name = VALUES(name),
        contact_email = VALUES(contact_email),
        deleted_at = NULL";

    /// The statement that begins a write transaction (`None`: the driver's `BEGIN`).
    pub(crate) const BEGIN_WRITE: Option<&str> = None;

    /// `finished_at` in whole seconds since the Unix epoch (stored in UTC).
    pub(crate) const FINISHED_EPOCH: &str =
        "TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', finished_at)";
    /// Integer division.
    pub(crate) const INT_DIV: &str = "DIV";

    /// Begins a write transaction.
    pub(crate) async fn begin_write(pool: &Pool<Db>) -> Result<Transaction<'static, Db>> {
        pool.begin().await.db()
    }
}

/// Connects, migrates and builds the backend.
pub(crate) async fn connect(url: DatabaseUrl, options: &SqlOptions) -> Result<SqlBackend> {
    let connect = MySqlConnectOptions::from_str(url.expose())
        .db()?
        .charset("utf8mb4")
        .timezone(Some(String::from("+00:00")));
    let pool = MySqlPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        // READ COMMITTED: locking reads take no gap locks, so concurrent
        // submissions of new domains do not deadlock on each other's gaps.
        .after_connect(|conn, _| {
            Box::pin(async move {
                sqlx::Executor::execute(
                    &mut *conn,
                    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                )
                .await?;
                Ok(())
            })
        })
        .connect_with(connect)
        .await
        .db()?;
    if options.run_migrations {
        sqlx::migrate!("./migrations/mysql")
            .run(&pool)
            .await
            .map_err(SqlError::from)?;
    }
    Ok(SqlBackend {
        engine: Engine::MySql,
        url,
        repository: Arc::new(DetachedRepository::new(repository::LockRepository::new(
            pool.clone(),
        ))),
        queue: Arc::new(DetachedQueue::new(queue::LockQueue::new(
            pool.clone(),
            options,
        ))),
        stores: crate::stores::mysql::stores(pool.clone()),
        closer: Arc::new(pool),
    })
}
