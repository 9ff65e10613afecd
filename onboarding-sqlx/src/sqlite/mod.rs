//! SQLite: one writer at a time. Every write runs in a `BEGIN IMMEDIATE`
//! transaction (it takes the write lock up front, so a read-then-write can
//! neither race nor deadlock), in WAL mode with a busy timeout.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use onboarding_core::Result;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::error::{DbResultExt, SqlError};
use crate::{DatabaseUrl, Engine, SqlBackend, SqlOptions};

crate::lockstep::engine! {
    db: sqlx::Sqlite,
    engine: Engine::Sqlite,
    stores: crate::stores::sqlite::stores,
    // `SQLITE_MAX_VARIABLE_NUMBER` of the bundled SQLite (3.32+).
    max_params: 32766,
    // No row locks: the IMMEDIATE transaction already holds the write lock.
    for_update: "",
    skip_locked: "",
    // Nothing is locked by others, so the first `max` ranked jobs suffice.
    dequeue_overfetch: 1,
    random: "RANDOM()",
    upsert: " ON CONFLICT (tenant, domain) DO UPDATE SET
        name = excluded.name,
        contact_email = excluded.contact_email,
        version = organizations.version + 1,
        status = 'pending',
        updated_at = excluded.updated_at,
        deleted_at = NULL
        WHERE organizations.name IS NOT excluded.name
           OR organizations.contact_email IS NOT excluded.contact_email
           OR organizations.deleted_at IS NOT NULL",
    // Takes the database's write lock up front.
    begin_write: Some("BEGIN IMMEDIATE"),
    single_writer: true,
    write_gate: crate::sqlite::write_gate,
    finished_epoch: "CAST(strftime('%s', finished_at) AS INTEGER)",
    int_div: "/",
}

/// This process's write gate of the database file of `pool` (see
/// `lockstep::WriteTx`): one per file, shared by every pool on it, so that
/// two backends on one file (a server and a worker in one process) queue
/// behind each other too. `None` for an in-memory database, whose one
/// connection already lets one writer in at a time.
pub(crate) fn write_gate(pool: &sqlx::Pool<sqlx::Sqlite>) -> Option<Arc<tokio::sync::Mutex<()>>> {
    static GATES: LazyLock<Mutex<HashMap<PathBuf, Weak<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Mutex::default);
    let options = pool.connect_options();
    let file = options.get_filename();
    if pool.options().get_max_connections() <= 1 || file.as_os_str().is_empty() {
        return None;
    }
    // A poisoned map only means a panic elsewhere while it was held; its
    // contents are still whole (every change is one insert or retain).
    let mut gates = GATES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(gate) = gates.get(file).and_then(Weak::upgrade) {
        return Some(gate);
    }
    gates.retain(|_, gate| gate.strong_count() > 0);
    let gate = Arc::new(tokio::sync::Mutex::new(()));
    gates.insert(file.to_path_buf(), Arc::downgrade(&gate));
    Some(gate)
}

/// Rows a connection's thread may hand over before its reader takes them.
const ROW_BUFFER: usize = 4096;

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
        // sqlx runs each connection on a thread of its own and hands every
        // row over a channel of this many: with the default 50 a claim or a
        // page of 2,000 items stalled the connection's thread every 50 rows
        // until the reader caught up (most of a busy worker's time went into
        // those thread switches). Rows are only buffered while the reader lags.
        .row_buffer_size(ROW_BUFFER)
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
    Ok(backend(url, pool, options))
}
