//! PostgreSQL: set-based statements over `UNNEST` arrays, data-modifying
//! CTEs, `RETURNING`, and `FOR UPDATE SKIP LOCKED` for the queue.

use std::sync::Arc;

use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::detached::{DetachedQueue, DetachedRepository};
use crate::error::{DbResultExt, SqlError};
use crate::{DatabaseUrl, Engine, SqlBackend, SqlOptions};

pub(crate) type Db = sqlx::Postgres;
/// What organizations are read from: the view that takes each one's status
/// from its latest item (a finish does not write the organization;
/// migration `20270107000000_status_from_latest_item`).
pub(crate) const ORGANIZATIONS_READ: &str = "organization_states";

/// The condition that `batch_items` row `{alias}` is an item of the batch
/// `batch` (an SQL expression): its id in the batch's range of the primary
/// key (`ItemId::in_batch`; there is no index on `batch_id`, migration
/// `20270109000000_item_ids_by_position`), ordered by position. `alias`
/// is the table's name or alias, with its dot (or empty).
pub(crate) fn in_batch(alias: &str, batch: &str) -> String {
    format!(
        "{alias}id BETWEEN batch_item_first({batch}) AND batch_item_last({batch}) \
         AND {alias}batch_id = {batch}"
    )
}

mod imports;
// One source with the other engines', compiled for this module's `Db`.
#[allow(clippy::duplicate_mod)]
#[path = "../organizations/engine.rs"]
mod organizations;
mod queue;
mod repository;
mod throughput;

pub(crate) use queue::PgQueue;
pub(crate) use repository::PgRepository;

/// Connects, migrates and builds the backend.
pub(crate) async fn connect(
    url: DatabaseUrl,
    options: &SqlOptions,
) -> onboarding_core::Result<SqlBackend> {
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections)
        .acquire_timeout(options.acquire_timeout)
        .connect(url.expose())
        .await
        .db()?;
    if options.run_migrations {
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .map_err(SqlError::from)?;
    }
    Ok(from_pool(url, pool, options))
}

fn from_pool(url: DatabaseUrl, pool: PgPool, options: &SqlOptions) -> SqlBackend {
    SqlBackend {
        engine: Engine::Postgres,
        url,
        repository: Arc::new(DetachedRepository::new(PgRepository::new(pool.clone()))),
        queue: Arc::new(DetachedQueue::new(PgQueue::new(pool.clone(), options))),
        stores: crate::stores::postgres::stores(pool.clone()),
        closer: Arc::new(pool),
    }
}
