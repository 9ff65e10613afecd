//! MySQL / MariaDB (10.6+): writes lock the rows they decide on with
//! `SELECT … FOR UPDATE` (or `SKIP LOCKED` where another holder may simply
//! be passed over), then write set-based in the same transaction.

use std::str::FromStr;

use onboarding_core::Result;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};

use crate::error::{DbResultExt, SqlError};
use crate::{DatabaseUrl, Engine, SqlBackend, SqlOptions};

crate::lockstep::engine! {
    db: sqlx::MySql,
    engine: Engine::MySql,
    stores: crate::stores::mysql::stores,
    max_params: 65535,
    for_update: " FOR UPDATE",
    skip_locked: " FOR UPDATE SKIP LOCKED",
    dequeue_overfetch: 4,
    random: "RAND()",
    // Only rows the locking read found missing, different or deleted are
    // written, so an existing row here is a change or a restore (text
    // columns use a case-insensitive collation, so the comparison is made
    // exactly, in Rust, not in SQL).
    upsert: " ON DUPLICATE KEY UPDATE
        version = version + 1,
        updated_at = VALUES(updated_at),
        status = 'pending',
        name = VALUES(name),
        contact_email = VALUES(contact_email),
        deleted_at = NULL",
    begin_write: None,
    single_writer: false,
    write_gate: crate::lockstep::no_write_gate,
    finished_epoch: "TIMESTAMPDIFF(SECOND, '1970-01-01 00:00:00', finished_at)",
    int_div: "DIV",
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
    Ok(backend(url, pool, options))
}
