//! What `mysql/mod.rs` and `sqlite/mod.rs` share: the lock-then-write
//! engines run one repository, queue and import staging (the other files of
//! this folder), compiled once per engine by [`engine!`].

/// The body every lock-then-write engine's module shares: its `Db`, this
/// folder's files compiled for it, its `dialect` (the statements that differ
/// between engines, from the values given) and the backend on a pool.
macro_rules! engine {
    (
        db: $db:ty,
        engine: $engine:expr,
        stores: $stores:path,
        max_params: $max_params:expr,
        for_update: $for_update:expr,
        skip_locked: $skip_locked:expr,
        dequeue_overfetch: $overfetch:expr,
        random: $random:expr,
        upsert: $upsert:expr,
        begin_write: $begin_write:expr,
        single_writer: $single_writer:expr,
        write_gate: $write_gate:path,
        finished_epoch: $finished_epoch:expr,
        int_div: $int_div:expr $(,)?
    ) => {
        pub(crate) type Db = $db;
        /// What organizations are read from (their status is the row's own).
        pub(crate) const ORGANIZATIONS_READ: &str = "organizations";

        // The same source is compiled once per engine, each time with this
        // module's `Db` and `dialect`: that is the point, not an accident.
        #[allow(clippy::duplicate_mod)]
        #[path = "../lockstep/imports.rs"]
        mod imports;
        #[allow(clippy::duplicate_mod)]
        #[path = "../organizations/engine.rs"]
        mod organizations;
        #[allow(clippy::duplicate_mod)]
        #[path = "../lockstep/queue.rs"]
        mod queue;
        #[allow(clippy::duplicate_mod)]
        #[path = "../lockstep/repository.rs"]
        mod repository;

        /// This engine's spelling of the statements that differ between engines.
        pub(crate) mod dialect {
            use super::Db;
            use crate::error::DbResultExt;

            /// Most placeholders in one prepared statement.
            pub(crate) const MAX_PARAMS: usize = $max_params;
            /// A locking read that waits for the current holder (nothing
            /// where the write transaction already holds the database's lock).
            pub(crate) const FOR_UPDATE: &str = $for_update;
            /// A locking read that passes over rows someone else holds.
            pub(crate) const SKIP_LOCKED: &str = $skip_locked;
            /// Rank this many times `max` jobs, so rows held by other consumers can be skipped.
            pub(crate) const DEQUEUE_OVERFETCH: usize = $overfetch;
            /// A random number, to break ties between tenants in a dequeue.
            pub(crate) const RANDOM: &str = $random;
            /// Appended to the multi-row insert of new and changed organizations.
            pub(crate) const UPSERT: &str = $upsert;
            /// The statement that begins a write transaction (`None`: the driver's `BEGIN`).
            pub(crate) const BEGIN_WRITE: Option<&str> = $begin_write;
            /// One writer at a time (SQLite): a write transaction holds the
            /// whole database, so what it reads under that lock must be found
            /// through indexes, never by ranking a whole table.
            pub(crate) const SINGLE_WRITER: bool = $single_writer;
            /// `finished_at` in whole seconds since the Unix epoch (stored in UTC).
            pub(crate) const FINISHED_EPOCH: &str = $finished_epoch;
            /// Integer division.
            pub(crate) const INT_DIV: &str = $int_div;

            /// Begins a write transaction with [`BEGIN_WRITE`], first
            /// passing this process's write gate of the database, if it has one.
            pub(crate) async fn begin_write(
                pool: &sqlx::Pool<Db>,
            ) -> onboarding_core::Result<crate::lockstep::WriteTx<Db>> {
                let gate = crate::lockstep::pass(($write_gate)(pool)).await;
                let tx = match BEGIN_WRITE {
                    Some(begin) => pool.begin_with(begin).await,
                    None => pool.begin().await,
                }
                .db()?;
                Ok(crate::lockstep::WriteTx::new(tx, gate))
            }

            /// [`begin_write`] whose `BEGIN` runs in a task of its own, so
            /// that a caller who leaves cannot cut it off half-way (see
            /// `crate::error::begin_detached`).
            pub(crate) async fn begin_write_detached(
                pool: &sqlx::Pool<Db>,
            ) -> onboarding_core::Result<crate::lockstep::WriteTx<Db>> {
                let gate = crate::lockstep::pass(($write_gate)(pool)).await;
                let tx = crate::error::begin_detached(pool, BEGIN_WRITE).await?;
                Ok(crate::lockstep::WriteTx::new(tx, gate))
            }
        }

        /// The backend on `pool` (migrated): every call detached.
        fn backend(
            url: crate::DatabaseUrl,
            pool: sqlx::Pool<Db>,
            options: &crate::SqlOptions,
        ) -> crate::SqlBackend {
            use std::sync::Arc;

            use crate::detached::{DetachedQueue, DetachedRepository};

            crate::SqlBackend {
                engine: $engine,
                url,
                repository: Arc::new(DetachedRepository::new(repository::LockRepository::new(
                    pool.clone(),
                ))),
                queue: Arc::new(DetachedQueue::new(queue::LockQueue::new(
                    pool.clone(),
                    options,
                ))),
                stores: $stores(pool.clone()),
                closer: Arc::new(pool),
            }
        }
    };
}

pub(crate) use engine;

use std::sync::Arc;

use tokio::sync::{Mutex, OwnedMutexGuard};

/// A write transaction, holding this process's write gate of its database
/// (SQLite) until it commits, rolls back or is dropped.
///
/// SQLite lets one connection write at a time. Without the gate every other
/// connection of the pool that wants to write spins in SQLite's busy
/// handler, which sleeps between tries (up to 100 ms each): under a busy
/// worker most of a waiting writer's time went into those sleeps (acks of
/// 128 jobs taking 1 to 8 s). Behind the gate the writers of this process
/// queue in order and each begins the moment the previous one ends; the busy
/// timeout is left for writers of other processes.
///
/// It dereferences to the connection, like the `sqlx::Transaction` it wraps.
pub(crate) struct WriteTx<DB: sqlx::Database> {
    tx: sqlx::Transaction<'static, DB>,
    /// Released after the transaction ends (fields drop in order).
    _gate: Option<OwnedMutexGuard<()>>,
}

impl<DB: sqlx::Database> WriteTx<DB> {
    pub(crate) fn new(
        tx: sqlx::Transaction<'static, DB>,
        gate: Option<OwnedMutexGuard<()>>,
    ) -> Self {
        Self { tx, _gate: gate }
    }

    /// Commits, then opens the gate.
    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }

    /// Rolls back, then opens the gate.
    pub(crate) async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl<DB: sqlx::Database> std::ops::Deref for WriteTx<DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        &self.tx
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for WriteTx<DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        &mut self.tx
    }
}

/// Waits for the gate, if there is one.
pub(crate) async fn pass(gate: Option<Arc<Mutex<()>>>) -> Option<OwnedMutexGuard<()>> {
    match gate {
        Some(gate) => Some(gate.lock_owned().await),
        None => None,
    }
}

/// No write gate: the engine locks rows, so writers run side by side (MySQL).
#[cfg(feature = "mysql")]
pub(crate) fn no_write_gate<DB: sqlx::Database>(_: &sqlx::Pool<DB>) -> Option<Arc<Mutex<()>>> {
    None
}
