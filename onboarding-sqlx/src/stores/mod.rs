//! Tenants and API keys ([`KeyStore`]) and webhooks ([`WebhookStore`],
//! [`DeliveryLog`]) in the database, so that every process of a deployment
//! sees the same keys, endpoints and deliveries. `keys.rs` and
//! `webhooks.rs` are one source compiled per engine, each time with that
//! engine's `Db` and `dialect` (placeholders come from `QueryBuilder`).

use std::sync::Arc;

use onboarding_core::keys::KeyStore;
use onboarding_core::webhooks::{DeliveryLog, WebhookStore};

/// The stores of one pool.
#[derive(Clone)]
pub(crate) struct Stores {
    pub(crate) keys: Arc<dyn KeyStore>,
    pub(crate) endpoints: Arc<dyn WebhookStore>,
    pub(crate) deliveries: Arc<dyn DeliveryLog>,
}

/// Column lists shared by every engine.
mod columns {
    pub(super) const KEY: &str = "id, tenant, prefix, label, created_at, revoked_at";
    pub(super) const ENDPOINT: &str = "id, tenant, url, events, secret, previous_secret, \
        previous_secret_until, created_at, updated_at";
    pub(super) const DELIVERY: &str = "id, tenant, endpoint_id, webhook_id, event, batch_id, \
        url, body, status, attempts, round_start, next_attempt_at, last_status_code, last_error, \
        last_latency_ms, created_at, updated_at";
    pub(super) const ATTEMPT: &str =
        "delivery_id, attempt, started_at, latency_ms, status_code, error, delivered";
}

/// Reads a text column as `String`, or as bytes holding UTF-8 (MySQL
/// reports text with a binary collation as `VARBINARY`).
fn text<R>(row: &R, column: &str) -> onboarding_core::Result<Option<String>>
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    use crate::error::DbResultExt;
    match row.try_get::<Option<String>, _>(column) {
        Ok(value) => Ok(value),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let bytes: Option<Vec<u8>> = row.try_get(column).db()?;
            bytes
                .map(|b| {
                    String::from_utf8(b).map_err(|_| {
                        onboarding_core::Error::internal(format!("column {column} is not UTF-8"))
                    })
                })
                .transpose()
        }
        Err(e) => Err(crate::error::driver(e)),
    }
}

/// [`text`] of a `NOT NULL` column.
fn required_text<R>(row: &R, column: &str) -> onboarding_core::Result<String>
where
    R: sqlx::Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'r> Option<Vec<u8>>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    text(row, column)?
        .ok_or_else(|| onboarding_core::Error::internal(format!("column {column} is NULL")))
}

/// Converts a stored count back (negative or huge values cannot be stored by this crate).
fn count(value: i64) -> u32 {
    u32::try_from(value.max(0)).unwrap_or(u32::MAX)
}

/// The body of one engine's module (`postgres.rs`, `mysql.rs`, `sqlite.rs`):
/// its `Db`, its dialect, and `keys.rs` / `webhooks.rs` compiled for it.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
macro_rules! engine {
    ($db:ty, begin: $begin:expr, skip_locked: $skip:expr, ignore: ($ins:expr, $suffix:expr)) => {
        use std::sync::Arc;

        pub(crate) type Db = $db;

        pub(crate) mod dialect {
            use super::Db;

            /// Locks the selected rows, passing over rows others hold.
            pub(crate) const SKIP_LOCKED: &str = $skip;
            /// Locks the selected rows (nothing on SQLite: the transaction holds the write lock).
            pub(crate) const FOR_UPDATE: &str = if $skip.is_empty() { "" } else { " FOR UPDATE" };
            /// `INSERT` that skips rows violating a unique key: prefix and suffix.
            pub(crate) const INSERT_IGNORE: (&str, &str) = ($ins, $suffix);

            /// Begins a write transaction, in a task of its own: a caller
            /// that stops waiting (an HTTP timeout) cannot cut the `BEGIN`
            /// off half-way and leave a pooled connection inside a
            /// transaction nobody owns. A transaction dropped later rolls back.
            pub(crate) async fn begin(
                pool: &sqlx::Pool<Db>,
            ) -> onboarding_core::Result<sqlx::Transaction<'static, Db>> {
                crate::error::begin_detached(pool, $begin).await
            }
        }

        // The same source is compiled once per engine, each time with this
        // module's `Db` and `dialect`: that is the point, not an accident.
        #[allow(clippy::duplicate_mod)]
        #[path = "keys.rs"]
        mod keys;
        #[allow(clippy::duplicate_mod)]
        #[path = "webhooks.rs"]
        mod webhooks;

        /// The stores on `pool`.
        pub(crate) fn stores(pool: sqlx::Pool<Db>) -> super::Stores {
            let webhooks = Arc::new(webhooks::SqlWebhooks::new(pool.clone()));
            super::Stores {
                keys: Arc::new(keys::SqlKeyStore::new(pool)),
                endpoints: webhooks.clone(),
                deliveries: webhooks,
            }
        }
    };
}
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
pub(crate) use engine;

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;
