//! The `jobs` table queue for MySQL/MariaDB and SQLite (compiled once per
//! engine, like `repository.rs`).
//!
//! A dequeue ranks ready jobs per tenant with `ROW_NUMBER()`, then, in one
//! write transaction, locks candidates (`FOR UPDATE SKIP LOCKED` on MariaDB
//! 10.6+/MySQL 8; the `BEGIN IMMEDIATE` write lock on SQLite) and moves
//! their `available_at` past the visibility timeout.

use std::time::Duration;

use async_trait::async_trait;
use onboarding_core::model::{after, now, ItemId, TenantId};
use onboarding_core::{Delivery, Job, JobQueue, QueueDepth, Receipt, Result};
use sqlx::{Pool, QueryBuilder, Row};
use uuid::Uuid;

use super::{dialect, Db};
use crate::chunk_len;
use crate::error::DbResultExt;
use crate::rows::DepthRow;
use crate::wake::Waker;
use crate::SqlOptions;

/// The queue of this engine.
#[derive(Debug)]
pub(crate) struct LockQueue {
    pool: Pool<Db>,
    visibility_timeout: Duration,
    poll_interval: Duration,
    waker: Waker,
}

impl LockQueue {
    pub(crate) fn new(pool: Pool<Db>, options: &SqlOptions) -> Self {
        Self {
            pool,
            visibility_timeout: options.visibility_timeout,
            poll_interval: options.poll_interval,
            waker: Waker::default(),
        }
    }

    async fn take(&self, max: usize) -> Result<Vec<Delivery>> {
        if dialect::SINGLE_WRITER {
            return self.take_by_tenant(max).await;
        }
        let at = now();
        let max = max.max(1);
        // The one transaction not run in a task by `DetachedQueue` (a dequeue
        // whose caller left must stop): its `begin` at least cannot be cut off.
        let mut tx = dialect::begin_write_detached(&self.pool).await?;
        // Rank without locks (window functions cannot be locked), over-fetch
        // so that rows a concurrent consumer holds can be skipped.
        // Ties (the n-th job of each tenant) are broken at random, so that
        // dequeues of one job rotate among tenants instead of always
        // serving the tenant with the oldest job.
        let ranked = sqlx::query(&format!(
            "SELECT id FROM (
                SELECT id, ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY id) AS rn
                FROM jobs WHERE available_at <= ?
             ) r ORDER BY rn, {} LIMIT ?",
            dialect::RANDOM
        ))
        .bind(at)
        .bind(i64::try_from(max.saturating_mul(dialect::DEQUEUE_OVERFETCH)).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        if ranked.is_empty() {
            tx.commit().await.db()?;
            return Ok(Vec::new());
        }
        let mut rank = std::collections::HashMap::with_capacity(ranked.len());
        for (order, row) in ranked.iter().enumerate() {
            let id: i64 = row.try_get("id").db()?;
            rank.insert(id, order);
        }
        let mut qb =
            QueryBuilder::new("SELECT id, item_id, tenant, not_before FROM jobs WHERE id IN (");
        let mut sep = qb.separated(", ");
        for id in rank.keys() {
            sep.push_bind(*id);
        }
        sep.push_unseparated(")");
        qb.push(" AND available_at <= ").push_bind(at);
        qb.push(dialect::SKIP_LOCKED);
        let locked = qb.build().fetch_all(&mut *tx).await.db()?;
        let mut picked = Vec::with_capacity(locked.len());
        for row in locked {
            let id: i64 = row.try_get("id").db()?;
            let item: Uuid = row.try_get("item_id").db()?;
            let tenant: crate::rows::Text = row.try_get("tenant").db()?;
            let not_before: Option<chrono::DateTime<chrono::Utc>> =
                row.try_get("not_before").db()?;
            picked.push((
                rank.get(&id).copied().unwrap_or(usize::MAX),
                id,
                item,
                tenant,
                not_before,
            ));
        }
        picked.sort_by_key(|p| (p.0, p.1));
        picked.truncate(max);
        let picked: Vec<Picked> = picked
            .into_iter()
            .map(|(_, id, item, tenant, not_before)| (id, item, tenant, not_before))
            .collect();
        self.lease(&mut tx, &picked, at).await?;
        tx.commit().await.db()?;
        deliveries(picked)
    }

    /// Moves the picked jobs' `available_at` past the visibility timeout.
    async fn lease(
        &self,
        tx: &mut crate::lockstep::WriteTx<Db>,
        picked: &[Picked],
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<()> {
        if picked.is_empty() {
            return Ok(());
        }
        let until = after(at, self.visibility_timeout);
        let mut qb = QueryBuilder::new("UPDATE jobs SET available_at = ");
        qb.push_bind(until)
            .push(", leased_until = ")
            .push_bind(until)
            .push(" WHERE id IN (");
        let mut sep = qb.separated(", ");
        for p in picked {
            sep.push_bind(p.0);
        }
        sep.push_unseparated(")");
        qb.build().execute(&mut **tx).await.db()?;
        Ok(())
    }

    /// The dequeue of a single-writer engine (SQLite), under its write lock.
    ///
    /// The ranking above reads and sorts every ready job while it holds the
    /// lock: behind an import's million jobs that took most of a second per
    /// dequeue, and every other write (acks, claims, finishes, the import's
    /// own enqueue) waited for it. Here the same order is found through the
    /// `(tenant, available_at)` index: the tenants with jobs by a skip scan
    /// (one seek each), then each tenant's oldest ready jobs by a range
    /// scan, ranked in Rust as the window function would (the n-th job of
    /// each tenant before the n+1-th of any, ties at random). Nothing is
    /// locked by another consumer, so nothing need be over-fetched.
    async fn take_by_tenant(&self, max: usize) -> Result<Vec<Delivery>> {
        let at = now();
        let max = max.max(1);
        let mut tx = dialect::begin_write_detached(&self.pool).await?;
        let mut tenants: Vec<crate::rows::Text> = sqlx::query_scalar(
            "WITH RECURSIVE t(tenant) AS (
                SELECT MIN(tenant) FROM jobs
                UNION ALL
                SELECT (SELECT MIN(tenant) FROM jobs WHERE tenant > t.tenant)
                FROM t WHERE t.tenant IS NOT NULL
             ) SELECT tenant FROM t WHERE tenant IS NOT NULL",
        )
        .fetch_all(&mut *tx)
        .await
        .db()?;
        if tenants.is_empty() {
            tx.commit().await.db()?;
            return Ok(Vec::new());
        }
        // The tenants in an order that rotates at random: it breaks the
        // ties between the n-th jobs of the tenants, so dequeues of fewer
        // jobs than tenants serve each in turn.
        let start = usize::try_from(Uuid::new_v4().as_u128() % tenants.len() as u128).unwrap_or(0);
        tenants.rotate_left(start);
        // A few tenants: each may fill the whole dequeue (one busy tenant
        // beside idle ones still gets `max`). Many: a fair share each.
        let many = tenants.len() > FULL_SHARE_TENANTS;
        let per = if many {
            max.div_ceil(tenants.len())
        } else {
            max
        };
        let mut picked: Vec<(usize, usize, Picked)> = Vec::with_capacity(max);
        for (turn, tenant) in tenants.iter().enumerate() {
            if many && picked.len() >= max {
                break;
            }
            let rows = sqlx::query(
                "SELECT id, item_id, tenant, not_before FROM jobs
                 WHERE tenant = ? AND available_at <= ?
                 ORDER BY available_at, id LIMIT ?",
            )
            .bind(tenant.0.as_str())
            .bind(at)
            .bind(i64::try_from(per).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .db()?;
            for (rank, row) in rows.into_iter().enumerate() {
                picked.push((
                    rank,
                    turn,
                    (
                        row.try_get("id").db()?,
                        row.try_get("item_id").db()?,
                        row.try_get("tenant").db()?,
                        row.try_get("not_before").db()?,
                    ),
                ));
            }
        }
        // The first job of every tenant, then the second of every tenant, …
        picked.sort_unstable_by_key(|p| (p.0, p.1));
        picked.truncate(max);
        let picked: Vec<Picked> = picked.into_iter().map(|p| p.2).collect();
        self.lease(&mut tx, &picked, at).await?;
        tx.commit().await.db()?;
        deliveries(picked)
    }
}

/// Tenants up to which each may fill a whole dequeue (see `take_by_tenant`).
const FULL_SHARE_TENANTS: usize = 8;

/// One picked job: its id, item, tenant, `not_before`.
type Picked = (
    i64,
    Uuid,
    crate::rows::Text,
    Option<chrono::DateTime<chrono::Utc>>,
);

fn deliveries(picked: Vec<Picked>) -> Result<Vec<Delivery>> {
    picked
            .into_iter()
            .map(|(id, item, tenant, not_before)| {
                Ok(Delivery {
                    job: Job {
                        item_id: ItemId(item),
                        tenant: TenantId::parse(tenant.0)?,
                        not_before,
                    },
                    receipt: Receipt(id.to_string()),
                })
            })
            .collect()
}

#[async_trait]
impl JobQueue for LockQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let at = now();
        let mut tx = dialect::begin_write(&self.pool).await?;
        for chunk in jobs.chunks(chunk_len(usize::MAX, dialect::MAX_PARAMS, 4)) {
            let mut qb =
                QueryBuilder::new("INSERT INTO jobs (item_id, tenant, available_at, not_before) ");
            qb.push_values(chunk, |mut b, j| {
                b.push_bind(j.item_id.0)
                    .push_bind(j.tenant.as_str())
                    .push_bind(j.not_before.map_or(at, |t| t.max(at)))
                    .push_bind(j.not_before);
            });
            qb.build().execute(&mut *tx).await.db()?;
        }
        tx.commit().await.db()?;
        self.waker.wake();
        Ok(())
    }

    async fn dequeue(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
        self.waker
            .poll(wait, self.poll_interval, || self.take(max))
            .await
    }

    async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
        let ids: Vec<i64> = receipts.iter().filter_map(|r| r.0.parse().ok()).collect();
        if ids.is_empty() {
            return Ok(());
        }
        // One writer at a time: through the write gate (a transaction),
        // not the busy handler's sleeps.
        let mut tx = if dialect::SINGLE_WRITER {
            Some(dialect::begin_write(&self.pool).await?)
        } else {
            None
        };
        for chunk in ids.chunks(chunk_len(usize::MAX, dialect::MAX_PARAMS, 1)) {
            let mut qb = QueryBuilder::new("DELETE FROM jobs WHERE id IN (");
            let mut sep = qb.separated(", ");
            for id in chunk {
                sep.push_bind(*id);
            }
            sep.push_unseparated(")");
            match tx.as_mut() {
                Some(tx) => qb.build().execute(&mut **tx).await.db()?,
                None => qb.build().execute(&self.pool).await.db()?,
            };
        }
        if let Some(tx) = tx {
            tx.commit().await.db()?;
        }
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let at = now();
        let row: DepthRow = sqlx::query_as(
            "SELECT
                COUNT(CASE WHEN available_at <= ? THEN 1 END) AS n_ready,
                COUNT(CASE WHEN available_at > ? AND leased_until IS NULL THEN 1 END) AS n_delayed,
                COUNT(CASE WHEN available_at > ? AND leased_until IS NOT NULL THEN 1 END) AS n_in_flight
             FROM jobs",
        )
        .bind(at)
        .bind(at)
        .bind(at)
        .fetch_one(&self.pool)
        .await
        .db()?;
        Ok(row.into_model())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.db()?;
        Ok(())
    }
}
