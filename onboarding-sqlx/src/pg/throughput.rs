//! A tenant's finished items counted per second (`throughput_seconds`).
//!
//! PostgreSQL keeps the throughput history as counts rather than reading it
//! from `batch_items` through an index on `finished_at`: such an index makes
//! every finish a non-HOT update (a new heap tuple and three index entries
//! per finished item instead of one heap tuple; migration
//! `20270106000000_throughput_seconds`). Every statement that moves items
//! into or out of `completed` / `failed` adds [`count_finishes`] as a
//! data-modifying CTE, so the counts change in the same transaction as the
//! items and equal, per (tenant, second of `finished_at`), the items that
//! are completed or failed now.

use onboarding_core::model::{TenantId, Timestamp};
use onboarding_core::repository::ThroughputBucket;
use onboarding_core::Result;
use sqlx::postgres::PgPool;

use crate::error::DbResultExt;
use crate::rows;

/// Whether [`count_finishes`] adds the rows it reads or takes them away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    /// Items that became completed or failed.
    Add,
    /// Items that were completed or failed and are not any more (retried,
    /// pruned).
    Remove,
}

/// An `INSERT … ON CONFLICT` that adds (or removes) the completed and failed
/// rows of `source` to their tenant's count of the second of their
/// `finished_at`. `source` is a CTE or subquery with the columns `tenant`,
/// `status` and `finished_at`; rows of other statuses are ignored.
///
/// Rows are grouped and upserted in (tenant, second) order, so concurrent
/// statements lock counters in one order; `shard` (the backend's pid
/// modulo 8) spreads one tenant's concurrent finishes of a second over
/// several rows, so flushes of two connections do not queue on one lock.
pub(super) fn count_finishes(source: &str, direction: Direction) -> String {
    let sign = match direction {
        Direction::Add => "",
        Direction::Remove => "-",
    };
    format!(
        "INSERT INTO throughput_seconds AS t (tenant, second, shard, completed, failed)
            SELECT tenant, floor(extract(epoch FROM finished_at))::bigint, pg_backend_pid() % 8,
                {sign}count(*) FILTER (WHERE status = 'completed'),
                {sign}count(*) FILTER (WHERE status = 'failed')
            FROM {source}
            WHERE status IN ('completed', 'failed') AND finished_at IS NOT NULL
            GROUP BY 1, 2 ORDER BY 1, 2
            ON CONFLICT (tenant, second, shard) DO UPDATE SET
                completed = t.completed + EXCLUDED.completed,
                failed = t.failed + EXCLUDED.failed
            RETURNING t.tenant, t.second"
    )
}

/// The tenant's counts per bucket of `bucket_seconds` since `since`, at one
/// second's resolution: the second that holds `since` counts whole.
pub(super) async fn buckets(
    pool: &PgPool,
    tenant: &TenantId,
    since: Timestamp,
    bucket_seconds: u32,
) -> Result<Vec<ThroughputBucket>> {
    let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT (floor(second::numeric / $3) * $3)::bigint AS bucket,
                sum(completed)::bigint, sum(failed)::bigint
         FROM throughput_seconds
         WHERE tenant = $1 AND second >= floor(extract(epoch FROM $2::timestamptz))::bigint
         GROUP BY bucket
         HAVING sum(completed) > 0 OR sum(failed) > 0
         ORDER BY bucket",
    )
    .bind(tenant.as_str())
    .bind(since)
    .bind(i64::from(bucket_seconds.max(1)))
    .fetch_all(pool)
    .await
    .db()?;
    Ok(rows.into_iter().map(rows::throughput_bucket).collect())
}

/// Removes the counters of `keys` (tenant, second) that count nothing any
/// more, after [`Direction::Remove`] took their items away (a prune): found
/// by primary-key prefix, so the table is never scanned. A removal lands on
/// the shard of the connection that makes it, not on the one that counted
/// the items, so a (tenant, second) is empty when its shards sum to zero
/// (each alone need not be), and then all of them go.
pub(super) async fn forget_empty(
    pool: &PgPool,
    tenants: Vec<String>,
    seconds: Vec<i64>,
) -> Result<()> {
    if tenants.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM throughput_seconds t
         USING (
            SELECT s.tenant, s.second FROM throughput_seconds s
            JOIN (SELECT DISTINCT * FROM UNNEST($1::text[], $2::bigint[])) AS k(tenant, second)
                ON s.tenant = k.tenant AND s.second = k.second
            GROUP BY s.tenant, s.second
            HAVING sum(s.completed) = 0 AND sum(s.failed) = 0
         ) AS empty
         WHERE t.tenant = empty.tenant AND t.second = empty.second",
    )
    .bind(tenants)
    .bind(seconds)
    .execute(pool)
    .await
    .db()?;
    Ok(())
}
