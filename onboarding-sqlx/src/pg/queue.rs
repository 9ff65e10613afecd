//! The PostgreSQL `jobs` table queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    cursors: Mutex<Cursors>,
    statistics: Arc<Statistics>,
}

/// Jobs enqueued by this process between two `ANALYZE jobs`.
const ANALYZE_EVERY: u64 = 10_000;

/// When this process last refreshed the planner's statistics of `jobs`.
///
/// The dequeue's plan depends on them: without statistics of a burst (the
/// table was empty when autovacuum last analyzed it, and autovacuum looks
/// again only every minute) the planner estimates a few rows per tenant and
/// bitmap-scans and sorts every job of the tenant to lock the first ones
/// (measured: 40 ms per dequeue at 100,000 jobs instead of 1.3 ms; a
/// 100,000-job drain 19k → 25k/s). So every [`ANALYZE_EVERY`] jobs an
/// enqueue starts an `ANALYZE jobs` in the background (one at a time per
/// process; it samples at most 30,000 rows and blocks no reader or writer),
/// as the import does for its tables after a large finish.
#[derive(Debug, Default)]
struct Statistics {
    enqueued: AtomicU64,
    analyzing: AtomicBool,
}

/// How long keyset dequeues run before the next full one (see [`Cursors`]).
const FULL_SCAN_EVERY: Duration = Duration::from_secs(1);

/// Where each tenant's next dequeue starts in `jobs_tenant`.
///
/// Acked jobs are deleted, and their dead index entries stay at the head of
/// each tenant's `(tenant, id)` range until VACUUM: a dequeue that starts at
/// the head walks all of them (50-100 ms per dequeue at 669,000 dead rows,
/// BENCHMARKS.md). So after a full dequeue (tenants found by a skip scan,
/// each from its first job), the next ones start past the highest id handed
/// out per tenant. A job below that mark (redelivered after its visibility
/// timeout, delayed until its `not_before`, committed out of id order, or
/// locked by a concurrent dequeue that did not pick it) waits for the next
/// full dequeue: at most [`FULL_SCAN_EVERY`], or at once when a keyset
/// dequeue comes back short, and a tenant that appears meanwhile too.
#[derive(Debug, Default)]
struct Cursors {
    /// Tenant → highest job id handed out.
    after: HashMap<String, i64>,
    /// When the next dequeue must be a full one (`None`: now).
    keyset_until: Option<Instant>,
}

/// Fair dequeue without ranking every ready job: each tenant's oldest ready
/// jobs are locked (`SKIP LOCKED`), and the first `$2` by rank within their
/// tenant are taken, so one tenant's backlog cannot starve another's. The
/// full form finds the tenants with a skip scan (`jobs_tenant` index) and
/// reads each from its first job; the keyset form reads the tenants `$4`
/// from past the ids `$5` (see [`Cursors`]).
macro_rules! lease_picked {
    () => {
        ", pick AS (
    SELECT id, rn FROM (
        SELECT id, ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY id) AS rn FROM heads
    ) r
    ORDER BY rn, random()
    LIMIT $2
)
UPDATE jobs SET available_at = $3, leased_until = $3
FROM pick WHERE jobs.id = pick.id
RETURNING jobs.id, jobs.item_id, jobs.tenant, jobs.not_before, pick.rn"
    };
}

const DEQUEUE: &str = concat!(
    "
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
)",
    lease_picked!()
);

const DEQUEUE_AFTER: &str = concat!(
    "
WITH heads AS (
    SELECT h.id, h.tenant FROM UNNEST($4::text[], $5::bigint[]) AS k(tenant, after_id)
    CROSS JOIN LATERAL (
        SELECT j.id, j.tenant FROM jobs j
        WHERE j.tenant = k.tenant AND j.id > k.after_id AND j.available_at <= $1
        ORDER BY j.id LIMIT $2
        FOR UPDATE SKIP LOCKED
    ) h
)",
    lease_picked!()
);

/// [`DEQUEUE_AFTER`] when the marks name one tenant, the common case of a
/// deep backlog: no ranking across tenants (there is one), so no window,
/// no sort and no join; `rn` is the order of the ids, which the caller
/// sorts by. Measured on a 100,000-job drain: the ranking form spent
/// ~5.5 µs per job executing and ~1.7 µs planning. `= ANY(ARRAY(…))`
/// rather than `IN (…)`: one plan shape, planned in 0.1 ms instead of
/// 1 ms (a semi-join the planner weighs anew for every call).
const DEQUEUE_AFTER_ONE: &str = "
UPDATE jobs SET available_at = $3, leased_until = $3
WHERE id = ANY(ARRAY(
    SELECT j.id FROM jobs j
    WHERE j.tenant = ($4::text[])[1] AND j.id > ($5::bigint[])[1] AND j.available_at <= $1
    ORDER BY j.id LIMIT $2
    FOR UPDATE SKIP LOCKED
))
RETURNING id, item_id, tenant, not_before, id AS rn";

impl PgQueue {
    pub(crate) fn new(pool: PgPool, options: &SqlOptions) -> Self {
        Self {
            pool,
            visibility_timeout: options.visibility_timeout,
            poll_interval: options.poll_interval,
            waker: Waker::default(),
            cursors: Mutex::new(Cursors::default()),
            statistics: Arc::default(),
        }
    }

    /// Counts `enqueued` jobs and, every [`ANALYZE_EVERY`], starts an
    /// `ANALYZE jobs` unless one of this process is running (see [`Statistics`]).
    fn refresh_statistics(&self, enqueued: usize) {
        let stats = &self.statistics;
        let total = stats
            .enqueued
            .fetch_add(
                u64::try_from(enqueued).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            )
            .saturating_add(u64::try_from(enqueued).unwrap_or(u64::MAX));
        if total < ANALYZE_EVERY || stats.analyzing.swap(true, Ordering::AcqRel) {
            return;
        }
        stats.enqueued.store(0, Ordering::Relaxed);
        let (pool, stats) = (self.pool.clone(), self.statistics.clone());
        tokio::spawn(async move {
            if let Err(e) = sqlx::query("ANALYZE jobs").execute(&pool).await {
                tracing::warn!(error = %e, "ANALYZE jobs failed; dequeues may be planned from stale statistics");
            }
            stats.analyzing.store(false, Ordering::Release);
        });
    }

    fn cursors(&self) -> MutexGuard<'_, Cursors> {
        // The marks are only a starting point: a poisoned lock's are as good.
        self.cursors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The marks to dequeue past, while keyset dequeues are due.
    fn marks(&self) -> Option<(Vec<String>, Vec<i64>)> {
        let c = self.cursors();
        match c.keyset_until {
            Some(until) if Instant::now() < until && !c.after.is_empty() => {
                Some(c.after.iter().map(|(t, id)| (t.clone(), *id)).unzip())
            }
            _ => None,
        }
    }

    async fn take(&self, max: usize) -> Result<Vec<Delivery>> {
        if let Some(marks) = self.marks() {
            let got = self.take_from(max, Some(marks)).await?;
            if !got.is_empty() {
                return Ok(got);
            }
        }
        self.take_from(max, None).await
    }

    /// One dequeue: past `marks` when given, else from each tenant's first job.
    async fn take_from(
        &self,
        max: usize,
        marks: Option<(Vec<String>, Vec<i64>)>,
    ) -> Result<Vec<Delivery>> {
        let at = now();
        let max = max.max(1);
        let full = marks.is_none();
        let sql = match &marks {
            None => DEQUEUE,
            Some((tenants, _)) if tenants.len() == 1 => DEQUEUE_AFTER_ONE,
            Some(_) => DEQUEUE_AFTER,
        };
        let mut query = sqlx::query(sql)
            .bind(at)
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .bind(after(at, self.visibility_timeout));
        if let Some((tenants, past)) = marks {
            query = query.bind(tenants).bind(past);
        }
        let rows = query.fetch_all(&self.pool).await.db()?;
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
        let mut c = self.cursors();
        if full {
            // Tenants without a ready job now are left to the next full dequeue.
            c.after.clear();
            c.keyset_until = Some(Instant::now() + FULL_SCAN_EVERY);
        } else if out.len() < max {
            // Short: what is left may be below the marks.
            c.keyset_until = None;
        }
        for (_, id, d) in &out {
            let mark = c
                .after
                .entry(d.job.tenant.as_str().to_owned())
                .or_insert(*id);
            *mark = (*mark).max(*id);
        }
        drop(c);
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
        self.refresh_statistics(jobs.len());
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
