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
        finished_epoch: $finished_epoch:expr,
        int_div: $int_div:expr $(,)?
    ) => {
        pub(crate) type Db = $db;

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

            /// Begins a write transaction with [`BEGIN_WRITE`].
            pub(crate) async fn begin_write(
                pool: &sqlx::Pool<Db>,
            ) -> onboarding_core::Result<sqlx::Transaction<'static, Db>> {
                match BEGIN_WRITE {
                    Some(begin) => pool.begin_with(begin).await,
                    None => pool.begin().await,
                }
                .db()
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
