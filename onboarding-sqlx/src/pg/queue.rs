//! The PostgreSQL `jobs` table queue.

use std::time::Duration;

use async_trait::async_trait;
use onboarding_core::model::{after, now, ItemId, TenantId};
use onboarding_core::{Delivery, Job, JobQueue, QueueDepth, Receipt, Result};
use sqlx::postgres::PgPool;
use sqlx::Row;
use uuid::Uuid;

use crate::error::DbResultExt;
use crate::rows::DepthRow;
use crate::wake::Waker;
use crate::SqlOptions;

/// A queue in the `jobs` table (UNLOGGED: the sweeper refills it after a
/// crash): `FOR UPDATE SKIP LOCKED` dequeues interleaved per tenant,
/// visibility by moving `available_at`.
#[derive(Debug)]
pub(crate) struct PgQueue {
    pool: PgPool,
    visibility_timeout: Duration,
    poll_interval: Duration,
    waker: Waker,
}

/// Fair dequeue without ranking every ready job: a skip scan lists the
/// tenants (`jobs_tenant` index), each tenant's oldest ready jobs are locked
/// (`SKIP LOCKED`), and the first `$2` by rank within their tenant are taken,
/// so one tenant's backlog cannot starve another's.
const DEQUEUE: &str = "
WITH RECURSIVE tenants AS (
    (SELECT tenant FROM jobs ORDER BY tenant LIMIT 1)
    UNION ALL
    SELECT (SELECT j.tenant FROM jobs j WHERE j.tenant > t.tenant ORDER BY j.tenant LIMIT 1)
    FROM tenants t WHERE t.tenant IS NOT NULL
), heads AS (
    SELECT h.id, h.tenant FROM tenants t
    CROSS JOIN LATERAL (
        SELECT j.id, j.tenant FROM jobs j
        WHERE j.tenant = t.tenant AND j.available_at <= $1
        ORDER BY j.id LIMIT $2
        FOR UPDATE SKIP LOCKED
    ) h
    WHERE t.tenant IS NOT NULL
), pick AS (
    SELECT id, rn FROM (
        SELECT id, ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY id) AS rn FROM heads
    ) r
    ORDER BY rn, random()
    LIMIT $2
)
UPDATE jobs SET available_at = $3, leased_until = $3
FROM pick WHERE jobs.id = pick.id
RETURNING jobs.id, jobs.item_id, jobs.tenant, jobs.not_before, pick.rn";

impl PgQueue {
    pub(crate) fn new(pool: PgPool, options: &SqlOptions) -> Self {
        Self {
            pool,
            visibility_timeout: options.visibility_timeout,
            poll_interval: options.poll_interval,
            waker: Waker::default(),
        }
    }

    async fn take(&self, max: usize) -> Result<Vec<Delivery>> {
        let at = now();
        let rows = sqlx::query(DEQUEUE)
            .bind(at)
            .bind(i64::try_from(max.max(1)).unwrap_or(i64::MAX))
            .bind(after(at, self.visibility_timeout))
            .fetch_all(&self.pool)
            .await
            .db()?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id").db()?;
            let item: Uuid = row.try_get("item_id").db()?;
            let tenant: String = row.try_get("tenant").db()?;
            let rn: i64 = row.try_get("rn").db()?;
            let not_before: Option<chrono::DateTime<chrono::Utc>> =
                row.try_get("not_before").db()?;
            out.push((
                rn,
                id,
                Delivery {
                    job: Job {
                        item_id: ItemId(item),
                        tenant: TenantId::parse(tenant)?,
                        not_before,
                    },
                    receipt: Receipt(id.to_string()),
                },
            ));
        }
        out.sort_by_key(|(rn, id, _)| (*rn, *id));
        Ok(out.into_iter().map(|(_, _, d)| d).collect())
    }
}

#[async_trait]
impl JobQueue for PgQueue {
    async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
        if jobs.is_empty() {
            return Ok(());
        }
        let at = now();
        let items: Vec<Uuid> = jobs.iter().map(|j| j.item_id.0).collect();
        let tenants: Vec<String> = jobs.iter().map(|j| j.tenant.as_str().to_owned()).collect();
        let due: Vec<chrono::DateTime<chrono::Utc>> = jobs
            .iter()
            .map(|j| j.not_before.map_or(at, |t| t.max(at)))
            .collect();
        let not_before: Vec<Option<chrono::DateTime<chrono::Utc>>> =
            jobs.iter().map(|j| j.not_before).collect();
        sqlx::query(
            "INSERT INTO jobs (item_id, tenant, available_at, not_before)
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::timestamptz[])",
        )
        .bind(items)
        .bind(tenants)
        .bind(due)
        .bind(not_before)
        .execute(&self.pool)
        .await
        .db()?;
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
        sqlx::query("DELETE FROM jobs WHERE id = ANY($1)")
            .bind(ids)
            .execute(&self.pool)
            .await
            .db()?;
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let row: DepthRow = sqlx::query_as(
            "SELECT
                COUNT(*) FILTER (WHERE available_at <= $1) AS n_ready,
                COUNT(*) FILTER (WHERE available_at > $1 AND leased_until IS NULL) AS n_delayed,
                COUNT(*) FILTER (WHERE available_at > $1 AND leased_until IS NOT NULL) AS n_in_flight
             FROM jobs",
        )
        .bind(now())
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
