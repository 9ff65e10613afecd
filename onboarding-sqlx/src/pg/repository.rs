//! `OrgRepository` on PostgreSQL.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use onboarding_core::model::{
    BatchId, BatchStatus, Change, ConflictPolicy, Domain, ItemId, ItemStatus, Organization,
    OrganizationId, TenantId, Timestamp, ERROR_HISTORY_LIMIT,
};
use onboarding_core::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use onboarding_core::repository::{
    BatchPage, BatchQuery, ClaimRequest, ClaimedItem, Finish, ItemPage, ItemQuery, Lease,
    OrgRepository, Resolution, StoreResult, StoredItem, Submission, ThroughputBucket,
};
use onboarding_core::Job;
use onboarding_core::{Error, Result};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{FromRow, Postgres, Row, Transaction};
use uuid::Uuid;

use crate::error::{DbResultExt, SqlError};
use crate::rows::{
    self, add, bind_new_batch, BatchRow, CountRow, ItemRow, OrgRow, BATCH_COLUMNS, ITEM_COLUMNS,
    ORG_COLUMNS,
};

/// Open batches one sweep looks into (least recently swept first): bounds a
/// sweep's scan to this many batches' items however deep the backlog; with
/// more open batches, each is visited every few sweeps.
const SWEEP_BATCHES: i64 = 64;

/// The PostgreSQL repository.
#[derive(Debug, Clone)]
pub(crate) struct PgRepository {
    pool: PgPool,
}

pub(super) type Tx = Transaction<'static, Postgres>;

impl PgRepository {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Makes the batch's failed items (all, or those in `only`) pending again.
    async fn redrive(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        only: Option<Vec<Uuid>>,
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        let mut tx = self.begin().await?;
        if tenant_batch(&mut *tx, tenant, batch).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "WITH u AS (
                UPDATE batch_items SET status = 'pending', attempts = 0, available_at = $2,
                    finished_at = NULL, updated_at = $2, sweep_at = $2
                WHERE batch_id = $1 AND status = 'failed' AND ($3::uuid[] IS NULL OR id = ANY($3))
                RETURNING id, tenant, organization_id
            ), o AS (
                UPDATE organizations o SET status = 'pending'
                FROM u WHERE o.id = u.organization_id
            )
            SELECT id, tenant FROM u",
        )
        .bind(batch.0)
        .bind(now)
        .bind(only)
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let jobs = job_rows(rows)?;
        if !jobs.is_empty() {
            sqlx::query(
                "UPDATE batches SET completed_at = NULL, announced_at = NULL WHERE id = $1",
            )
            .bind(batch.0)
            .execute(&mut *tx)
            .await
            .db()?;
        }
        tx.commit().await.db()?;
        Ok(Some(jobs))
    }

    // Every call already runs in a task of its own (`DetachedRepository`),
    // so a plain `begin` cannot be interrupted half-way.
    async fn begin(&self) -> Result<Tx> {
        self.pool.begin().await.db()
    }

    /// The pool (the import staging in `imports.rs` shares it).
    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Statuses (with counts) of `ids`, in the order of `batches`.
async fn with_counts<'e, E>(exec: E, batches: Vec<BatchRow>) -> Result<Vec<BatchStatus>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = batches.iter().map(|b| b.id).collect();
    let counts: Vec<CountRow> = sqlx::query_as(
        "SELECT batch_id, status, change_kind, COUNT(*) AS n FROM batch_items
         WHERE batch_id = ANY($1) GROUP BY batch_id, status, change_kind",
    )
    .bind(ids)
    .fetch_all(exec)
    .await
    .db()?;
    rows::statuses(batches, counts)
}

async fn tenant_batch<'e, E>(exec: E, tenant: &TenantId, batch: BatchId) -> Result<Option<BatchRow>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    sqlx::query_as(&format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE id = $1 AND tenant = $2"
    ))
    .bind(batch.0)
    .bind(tenant.as_str())
    .fetch_optional(exec)
    .await
    .db()
}

async fn batch_by_key(pool: &PgPool, tenant: &TenantId, key: &str) -> Result<Option<BatchRow>> {
    sqlx::query_as(&format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE tenant = $1 AND idempotency_key = $2"
    ))
    .bind(tenant.as_str())
    .bind(key)
    .fetch_optional(pool)
    .await
    .db()
}

fn job_rows(rows: Vec<PgRow>) -> Result<Vec<Job>> {
    rows.into_iter()
        .map(|r| {
            let id: Uuid = r.try_get("id").db()?;
            let tenant: String = r.try_get("tenant").db()?;
            Ok(Job {
                item_id: ItemId(id),
                tenant: TenantId::parse(tenant)?,
                not_before: None,
            })
        })
        .collect()
}

/// What the upsert of one chunk found, per domain.
struct Upserted {
    id: Uuid,
    change: Change,
    /// The organization's status before this submission (for `Unchanged`).
    status: ItemStatus,
}

/// The `ON CONFLICT` clause of an upsert into `organizations AS o` (shared
/// by `store_chunk` and the import's set-based finish, so both decide alike):
/// a soft-deleted row is restored under either policy (reported `Created`,
/// its version continuing); a live one changes only under `Update` with
/// different data.
pub(super) fn on_conflict(policy: ConflictPolicy) -> String {
    let changed = match policy {
        ConflictPolicy::Skip => "",
        ConflictPolicy::Update => {
            " OR (o.name, o.contact_email) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.contact_email)"
        }
    };
    format!(
        "ON CONFLICT (tenant, domain) DO UPDATE SET
                name = EXCLUDED.name,
                contact_email = EXCLUDED.contact_email,
                version = o.version + 1,
                status = 'pending',
                updated_at = EXCLUDED.updated_at,
                deleted_at = NULL
             WHERE o.deleted_at IS NOT NULL{changed}"
    )
}

async fn upsert_chunk(
    tx: &mut Tx,
    s: &Submission,
    chunk: &[(u32, onboarding_core::model::NewOrganization)],
) -> Result<HashMap<String, Upserted>> {
    let ids: Vec<Uuid> = chunk.iter().map(|_| OrganizationId::new().0).collect();
    let names: Vec<&str> = chunk.iter().map(|(_, o)| o.name.as_str()).collect();
    let domains: Vec<&str> = chunk.iter().map(|(_, o)| o.domain.as_str()).collect();
    let emails: Vec<&str> = chunk
        .iter()
        .map(|(_, o)| o.contact_email.as_str())
        .collect();
    let on_conflict = on_conflict(s.policy);
    // Every row the upsert wrote (created, updated, restored) gets its
    // version in the same statement: one set-based insert, of changed rows
    // only. The lateral read of `organizations` sees the snapshot from
    // before the statement, so it tells a restored row (deleted before)
    // from an updated one; inserted rows skip it (a one-time filter).
    let sql = format!(
        "WITH up AS (
            INSERT INTO organizations AS o (id, tenant, name, domain, contact_email, status, version, created_at, updated_at)
            SELECT u.id, $6, u.name, u.domain, u.email, 'pending', 1, $5, $5
            FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(id, name, domain, email)
            {on_conflict}
            RETURNING o.id, o.domain, o.version, o.name, o.contact_email, (o.xmax = 0) AS inserted
         ), versions AS (
            INSERT INTO organization_versions (organization_id, version, name, contact_email, batch_id, created_at)
            SELECT id, version, name, contact_email, $7, $5 FROM up
         )
         SELECT up.id, up.domain, up.inserted OR COALESCE(before.deleted, false) AS created
         FROM up LEFT JOIN LATERAL (
            SELECT p.deleted_at IS NOT NULL AS deleted FROM organizations p
            WHERE NOT up.inserted AND p.id = up.id
         ) before ON true"
    );
    let written = sqlx::query(&sql)
        .bind(&ids)
        .bind(&names)
        .bind(&domains)
        .bind(&emails)
        .bind(s.now)
        .bind(s.tenant.as_str())
        .bind(s.batch_id.0)
        .fetch_all(&mut **tx)
        .await
        .db()?;
    let mut found = HashMap::with_capacity(chunk.len());
    for row in written {
        let domain: String = row.try_get("domain").db()?;
        let created: bool = row.try_get("created").db()?;
        found.insert(
            domain,
            Upserted {
                id: row.try_get("id").db()?,
                change: if created {
                    Change::Created
                } else {
                    Change::Updated
                },
                status: ItemStatus::Pending,
            },
        );
    }
    if found.len() < chunk.len() {
        let missing: Vec<&str> = domains
            .iter()
            .copied()
            .filter(|d| !found.contains_key(*d))
            .collect();
        let existing = sqlx::query(
            "SELECT id, domain, status FROM organizations WHERE tenant = $2 AND domain = ANY($1)",
        )
        .bind(&missing)
        .bind(s.tenant.as_str())
        .fetch_all(&mut **tx)
        .await
        .db()?;
        let kept = match s.policy {
            ConflictPolicy::Skip => Change::Skipped,
            ConflictPolicy::Update => Change::Unchanged,
        };
        for row in existing {
            let domain: String = row.try_get("domain").db()?;
            let status: String = row.try_get("status").db()?;
            found.insert(
                domain,
                Upserted {
                    id: row.try_get("id").db()?,
                    change: kept,
                    status: rows::status(&status)?,
                },
            );
        }
    }
    Ok(found)
}

/// Upserts one chunk of a submission's organizations and inserts their
/// items (shared by `store_submission` and the import's `finish_import`).
pub(super) async fn store_chunk(
    tx: &mut Tx,
    s: &Submission,
    chunk: &[(u32, onboarding_core::model::NewOrganization)],
) -> Result<Vec<StoredItem>> {
    let mut items = Vec::with_capacity(chunk.len());
    let found = upsert_chunk(tx, s, chunk).await?;
    let mut to_pending = Vec::new();
    for (position, org) in chunk {
        let up = found
            .get(org.domain.as_str())
            .ok_or_else(|| Error::internal(format!("upsert lost domain {}", org.domain)))?;
        let done = up.change == Change::Skipped
            || (up.change == Change::Unchanged
                && up.status == ItemStatus::Completed
                && !s.reprocess_unchanged);
        if up.change == Change::Unchanged && !done {
            to_pending.push(up.id);
        }
        items.push(StoredItem {
            item_id: ItemId::new(),
            position: *position,
            organization_id: OrganizationId(up.id),
            domain: org.domain.clone(),
            change: up.change,
            status: if done {
                ItemStatus::Completed
            } else {
                ItemStatus::Pending
            },
        });
    }
    if !to_pending.is_empty() {
        sqlx::query("UPDATE organizations SET status = 'pending' WHERE id = ANY($1)")
            .bind(&to_pending)
            .execute(&mut **tx)
            .await
            .db()?;
    }
    {
        let chunk = &items;
        let ids: Vec<Uuid> = chunk.iter().map(|i| i.item_id.0).collect();
        let positions: Vec<i64> = chunk.iter().map(|i| i64::from(i.position)).collect();
        let orgs: Vec<Uuid> = chunk.iter().map(|i| i.organization_id.0).collect();
        let domains: Vec<&str> = chunk.iter().map(|i| i.domain.as_str()).collect();
        let statuses: Vec<&str> = chunk.iter().map(|i| i.status.as_str()).collect();
        let changes: Vec<&str> = chunk.iter().map(|i| i.change.as_str()).collect();
        sqlx::query(
                "INSERT INTO batch_items (id, batch_id, tenant, position, organization_id, domain, status,
                    change_kind, attempts, available_at, sweep_at, errors, created_at, updated_at, finished_at)
                 SELECT u.id, $7, $8, u.position, u.org, u.domain, u.status, u.change, 0, $9, $10, '[]', $9, $9,
                    CASE WHEN u.status = 'completed' THEN $9 END
                 FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], $6::text[])
                    AS u(id, position, org, domain, status, change)",
            )
            .bind(ids)
            .bind(positions)
            .bind(orgs)
            .bind(domains)
            .bind(statuses)
            .bind(changes)
            .bind(s.batch_id.0)
            .bind(s.tenant.as_str())
            .bind(s.now)
            .bind(s.sweep_at)
            .execute(&mut **tx)
            .await
            .db()?;
    }
    Ok(items)
}

/// Inserts a submission's batch row (`total` items); `false` when its
/// idempotency key names an earlier batch of the tenant.
pub(super) async fn insert_batch(tx: &mut Tx, s: &Submission, total: i64) -> Result<bool> {
    let inserted = bind_new_batch(
        sqlx::query(
            "INSERT INTO batches (id, tenant, idempotency_key, request_hash, total, policy, mode, created_at, trace_parent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant, idempotency_key) DO NOTHING",
        ),
        s,
        total,
    )
    .execute(&mut **tx)
    .await
    .db()?;
    Ok(inserted.rows_affected() == 1)
}

#[async_trait]
impl OrgRepository for PgRepository {
    async fn store_submission(&self, s: &Submission) -> Result<StoreResult> {
        let mut tx = self.begin().await?;
        let total = i64::try_from(s.organizations.len()).unwrap_or(i64::MAX);
        if !insert_batch(&mut tx, s, total).await? {
            tx.rollback().await.db()?;
            let key = s.idempotency_key.as_deref().unwrap_or_default();
            let batch = batch_by_key(&self.pool, &s.tenant, key)
                .await?
                .ok_or_else(|| Error::internal("idempotency key conflict without a batch"))?
                .into_model()?;
            return Ok(StoreResult::for_earlier(batch, &s.request_hash));
        }

        let mut items = Vec::with_capacity(s.organizations.len());
        for chunk in s.organizations.chunks(s.chunk_size.max(1)) {
            items.extend(store_chunk(&mut tx, s, chunk).await?);
        }
        let all_done = items.iter().all(|i| i.status == ItemStatus::Completed);
        let batch: BatchRow = sqlx::query_as(&format!(
            "UPDATE batches SET completed_at = CASE WHEN $2 THEN $3 END WHERE id = $1 RETURNING {BATCH_COLUMNS}"
        ))
        .bind(s.batch_id.0)
        .bind(all_done)
        .bind(s.now)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        match tx.commit().await {
            Ok(()) => {}
            Err(e) => return Err(SqlError::from(e).into()),
        }
        Ok(StoreResult::Stored {
            batch: batch.into_model()?,
            items,
        })
    }

    async fn claim_items(&self, r: &ClaimRequest) -> Result<Vec<ClaimedItem>> {
        if r.item_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = r.item_ids.iter().map(|i| i.0).collect();
        let org_cols = ORG_COLUMNS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Rows are found through the primary key only (a `status = ...`
        // predicate would tempt the planner into bitmap-scanning the whole
        // partial index of pending items, which grows with the backlog), and
        // the organization is read, not written (see the trait).
        let sql = format!(
            "WITH c AS (
                UPDATE batch_items b SET status = 'processing', lease_token = $2, lease_until = $4,
                    attempts = b.attempts + 1, updated_at = $3
                FROM UNNEST($1::uuid[]) AS ids(id)
                WHERE b.id = ids.id AND CASE b.status
                    WHEN 'pending' THEN b.available_at <= $3
                    WHEN 'processing' THEN b.lease_until <= $3
                    ELSE false END
                RETURNING b.id, b.batch_id, b.tenant, b.attempts, b.change_kind, b.organization_id
            )
            SELECT c.id AS item_id, c.batch_id, c.tenant, c.attempts, c.change_kind, t.trace_parent, {org_cols}
            FROM c JOIN organizations o ON o.id = c.organization_id
            LEFT JOIN batches t ON t.id = c.batch_id"
        );
        let found = sqlx::query(&sql)
            .bind(ids)
            .bind(r.token.0)
            .bind(r.now)
            .bind(r.lease_until)
            .fetch_all(&self.pool)
            .await
            .db()?;
        found
            .into_iter()
            .map(|row| {
                let org = OrgRow::from_row(&row).db()?.into_model()?;
                claimed(&row, r, org)
            })
            .collect()
    }

    async fn extend_leases(
        &self,
        leases: &[Lease],
        now: Timestamp,
        lease_until: Timestamp,
    ) -> Result<Vec<ItemId>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, tokens) = split(leases);
        let rows = sqlx::query(
            "UPDATE batch_items b SET lease_until = $3, updated_at = $4
             FROM UNNEST($1::uuid[], $2::uuid[]) AS l(id, token)
             WHERE b.id = l.id AND b.lease_token = l.token AND b.status = 'processing'
             RETURNING b.id",
        )
        .bind(ids)
        .bind(tokens)
        .bind(lease_until)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.into_iter()
            .map(|r| Ok(ItemId(r.try_get("id").db()?)))
            .collect()
    }

    async fn finish_items(
        &self,
        finishes: &[Finish],
        now: Timestamp,
        stale_after: Duration,
    ) -> Result<Vec<ItemId>> {
        if finishes.is_empty() {
            return Ok(Vec::new());
        }
        let n = finishes.len();
        let mut ids = Vec::with_capacity(n);
        let mut tokens = Vec::with_capacity(n);
        let mut kinds = Vec::with_capacity(n);
        let mut available = Vec::with_capacity(n);
        let mut sweep = Vec::with_capacity(n);
        let mut messages = Vec::with_capacity(n);
        let mut permanent = Vec::with_capacity(n);
        for f in finishes {
            ids.push(f.lease.item_id.0);
            tokens.push(f.lease.token.0);
            let (kind, at, msg, perm) = match &f.resolution {
                Resolution::Completed => ("completed", now, "", false),
                Resolution::Retry {
                    available_at,
                    error,
                } => ("retry", *available_at, error.as_str(), false),
                Resolution::Failed { error, permanent } => {
                    ("failed", now, error.as_str(), *permanent)
                }
            };
            kinds.push(kind);
            available.push(at);
            sweep.push(add(at, stale_after));
            messages.push(msg);
            permanent.push(perm);
        }
        let rows = sqlx::query(
            "WITH f AS (
                SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[],
                    $5::timestamptz[], $6::text[], $7::bool[])
                    AS f(id, token, kind, available_at, sweep_at, message, permanent)
            ), u AS (
                UPDATE batch_items b SET
                    status = CASE f.kind WHEN 'retry' THEN 'pending' ELSE f.kind END,
                    lease_token = NULL,
                    lease_until = NULL,
                    updated_at = $8,
                    available_at = CASE WHEN f.kind = 'retry' THEN f.available_at ELSE b.available_at END,
                    sweep_at = CASE WHEN f.kind = 'retry' THEN f.sweep_at ELSE b.sweep_at END,
                    finished_at = CASE WHEN f.kind = 'retry' THEN b.finished_at ELSE $8 END,
                    error_count = CASE WHEN f.kind = 'completed' THEN b.error_count
                        ELSE b.error_count + 1 END,
                    -- The new entry appended, then only the last $10 kept.
                    errors = CASE WHEN f.kind = 'completed' THEN b.errors ELSE (
                        SELECT jsonb_agg(h.entry ORDER BY h.n)::text
                        FROM jsonb_array_elements(b.errors::jsonb || jsonb_build_array(
                            jsonb_build_object('attempt', b.attempts, 'at', $9::text,
                                'message', f.message, 'permanent', f.permanent)))
                            WITH ORDINALITY AS h(entry, n)
                        WHERE h.n > jsonb_array_length(b.errors::jsonb) + 1 - $10) END
                FROM f
                WHERE b.id = f.id AND b.lease_token = f.token AND b.status = 'processing'
                RETURNING b.id, b.organization_id, b.status
            ), o AS (
                UPDATE organizations o SET status = u.status
                FROM u WHERE o.id = u.organization_id
            )
            SELECT id FROM u",
        )
        .bind(ids)
        .bind(tokens)
        .bind(kinds)
        .bind(available)
        .bind(sweep)
        .bind(messages)
        .bind(permanent)
        .bind(now)
        .bind(now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
        .bind(i64::try_from(ERROR_HISTORY_LIMIT).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows.into_iter()
            .map(|r| Ok(ItemId(r.try_get("id").db()?)))
            .collect()
    }

    async fn release_items(&self, leases: &[Lease], now: Timestamp) -> Result<Vec<Job>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, tokens) = split(leases);
        let rows = sqlx::query(
            "WITH u AS (
                UPDATE batch_items b SET status = 'pending', lease_token = NULL, lease_until = NULL,
                    available_at = $3, attempts = GREATEST(b.attempts - 1, 0), updated_at = $3
                FROM UNNEST($1::uuid[], $2::uuid[]) AS l(id, token)
                WHERE b.id = l.id AND b.lease_token = l.token AND b.status = 'processing'
                RETURNING b.id, b.tenant, b.organization_id
            ), o AS (
                UPDATE organizations o SET status = 'pending'
                FROM u WHERE o.id = u.organization_id
            )
            SELECT id, tenant FROM u",
        )
        .bind(ids)
        .bind(tokens)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .db()?;
        job_rows(rows)
    }

    async fn sweep(&self, now: Timestamp, stale_after: Duration, limit: u32) -> Result<Vec<Job>> {
        // Batch by batch: the least recently swept open batches, each item
        // scanned through `(batch_id, position)`. No item index reads the
        // columns claims and finishes change, which keeps those HOT.
        let found = sqlx::query(
            "WITH due AS (
                SELECT id FROM batches WHERE completed_at IS NULL
                ORDER BY swept_at NULLS FIRST, created_at
                LIMIT $4
                FOR UPDATE SKIP LOCKED
            ), found AS (
                SELECT i.id, i.tenant, i.available_at, i.status FROM batch_items i
                WHERE i.batch_id IN (SELECT id FROM due) AND CASE i.status
                    WHEN 'pending' THEN i.sweep_at <= $1
                    WHEN 'processing' THEN i.lease_until <= $1
                    ELSE false END
                ORDER BY i.sweep_at
                LIMIT $3
            ), bumped AS (
                UPDATE batch_items b SET sweep_at = $2
                FROM found f WHERE b.id = f.id AND f.status = 'pending'
            ), marked AS (
                UPDATE batches b SET swept_at = $1 FROM due WHERE b.id = due.id
            )
            SELECT id, tenant, available_at FROM found",
        )
        .bind(now)
        .bind(add(now, stale_after))
        .bind(i64::from(limit))
        .bind(SWEEP_BATCHES)
        .fetch_all(&self.pool)
        .await
        .db()?;
        found
            .into_iter()
            .map(|r| {
                let available: Timestamp = r.try_get("available_at").db()?;
                let tenant: String = r.try_get("tenant").db()?;
                Ok(Job {
                    item_id: ItemId(r.try_get("id").db()?),
                    tenant: TenantId::parse(tenant)?,
                    not_before: (available > now).then_some(available),
                })
            })
            .collect()
    }

    async fn complete_batches(
        &self,
        batches: &[BatchId],
        now: Timestamp,
    ) -> Result<Vec<BatchStatus>> {
        if batches.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = batches.iter().map(|b| b.0).collect();
        let done: Vec<BatchRow> = sqlx::query_as(&format!(
            "UPDATE batches b SET completed_at = $2
             WHERE b.id = ANY($1) AND b.completed_at IS NULL
               AND NOT EXISTS (SELECT 1 FROM batch_items i
                               WHERE i.batch_id = b.id AND i.status IN ('pending', 'processing'))
             RETURNING {BATCH_COLUMNS}"
        ))
        .bind(ids)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .db()?;
        with_counts(&self.pool, done).await
    }

    async fn complete_open_batches(&self, now: Timestamp, limit: u32) -> Result<Vec<BatchStatus>> {
        let done: Vec<BatchRow> = sqlx::query_as(&format!(
            "WITH open AS (
                SELECT b.id FROM batches b
                WHERE b.completed_at IS NULL
                  AND NOT EXISTS (SELECT 1 FROM batch_items i
                                  WHERE i.batch_id = b.id AND i.status IN ('pending', 'processing'))
                ORDER BY b.created_at LIMIT $2
                FOR UPDATE SKIP LOCKED
            )
            UPDATE batches b SET completed_at = $1
            FROM open WHERE b.id = open.id AND b.completed_at IS NULL
            RETURNING {}",
            BATCH_COLUMNS
                .split(", ")
                .map(|c| format!("b.{c}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .db()?;
        with_counts(&self.pool, done).await
    }

    async fn unannounced_batches(
        &self,
        completed_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<BatchStatus>> {
        let batches: Vec<BatchRow> = sqlx::query_as(&format!(
            "SELECT {BATCH_COLUMNS} FROM batches
             WHERE announced_at IS NULL AND completed_at <= $1
             ORDER BY completed_at LIMIT $2"
        ))
        .bind(completed_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .db()?;
        with_counts(&self.pool, batches).await
    }

    async fn mark_announced(&self, batches: &[BatchId], now: Timestamp) -> Result<()> {
        if batches.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = batches.iter().map(|b| b.0).collect();
        sqlx::query(
            "UPDATE batches SET announced_at = $2
             WHERE id = ANY($1) AND completed_at IS NOT NULL AND announced_at IS NULL",
        )
        .bind(ids)
        .bind(now)
        .execute(&self.pool)
        .await
        .db()?;
        Ok(())
    }

    async fn cancel_batch(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<BatchStatus>> {
        let mut tx = self.begin().await?;
        if tenant_batch(&mut *tx, tenant, batch).await?.is_none() {
            return Ok(None);
        }
        let row: BatchRow = sqlx::query_as(&format!(
            "WITH u AS (
                UPDATE batch_items SET status = 'cancelled', finished_at = $2, updated_at = $2
                WHERE batch_id = $1 AND status = 'pending'
                RETURNING organization_id
            ), o AS (
                UPDATE organizations o SET status = 'cancelled'
                FROM u WHERE o.id = u.organization_id
            )
            UPDATE batches SET cancelled_at = COALESCE(cancelled_at, $2) WHERE id = $1
            RETURNING {BATCH_COLUMNS}"
        ))
        .bind(batch.0)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        tx.commit().await.db()?;
        Ok(with_counts(&self.pool, vec![row]).await?.into_iter().next())
    }

    async fn retry_failed(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        self.redrive(tenant, batch, None, now).await
    }

    async fn retry_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        items: &[ItemId],
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        let ids: Vec<Uuid> = items.iter().map(|i| i.0).collect();
        self.redrive(tenant, batch, Some(ids), now).await
    }

    async fn list_batches(&self, tenant: &TenantId, query: &BatchQuery) -> Result<BatchPage> {
        let limit = query.limit.max(1);
        let rows: Vec<BatchRow> = sqlx::query_as(&format!(
            "SELECT {BATCH_COLUMNS} FROM batches
             WHERE tenant = $1 AND ($2::uuid IS NULL OR id < $2)
               AND ($3::timestamptz IS NULL OR created_at > $3) AND {}
             ORDER BY id DESC LIMIT $4",
            rows::state_condition(query.state)
        ))
        .bind(tenant.as_str())
        .bind(query.before.map(|b| b.0))
        .bind(query.created_after)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .db()?;
        let (rows, next_cursor) = rows::batch_page(rows, limit);
        Ok(BatchPage {
            batches: with_counts(&self.pool, rows).await?,
            next_cursor,
        })
    }

    async fn batch_status(&self, tenant: &TenantId, batch: BatchId) -> Result<Option<BatchStatus>> {
        let Some(row) = tenant_batch(&self.pool, tenant, batch).await? else {
            return Ok(None);
        };
        Ok(with_counts(&self.pool, vec![row]).await?.into_iter().next())
    }

    async fn list_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        query: &ItemQuery,
    ) -> Result<Option<ItemPage>> {
        if tenant_batch(&self.pool, tenant, batch).await?.is_none() {
            return Ok(None);
        }
        let limit = query.limit.max(1);
        let rows: Vec<ItemRow> = sqlx::query_as(&format!(
            "SELECT {ITEM_COLUMNS} FROM batch_items
             WHERE batch_id = $1 AND ($2::text IS NULL OR status = $2) AND position > $3
             ORDER BY position LIMIT $4"
        ))
        .bind(batch.0)
        .bind(query.status.map(ItemStatus::as_str))
        .bind(query.after_position.map_or(-1, i64::from))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .db()?;
        rows::page(rows, limit)
    }

    async fn throughput(
        &self,
        tenant: &TenantId,
        since: Timestamp,
        bucket_seconds: u32,
    ) -> Result<Vec<ThroughputBucket>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(
            "SELECT (floor(extract(epoch FROM finished_at) / $3::bigint) * $3::bigint)::bigint AS bucket,
                    count(*) FILTER (WHERE status = 'completed'),
                    count(*) FILTER (WHERE status = 'failed')
             FROM batch_items
             WHERE tenant = $1 AND finished_at >= $2 AND status IN ('completed', 'failed')
             GROUP BY bucket ORDER BY bucket",
        )
        .bind(tenant.as_str())
        .bind(since)
        .bind(i64::from(bucket_seconds.max(1)))
        .fetch_all(&self.pool)
        .await
        .db()?;
        Ok(rows.into_iter().map(rows::throughput_bucket).collect())
    }

    async fn organization_by_domain(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Result<Option<Organization>> {
        let row: Option<OrgRow> = sqlx::query_as(&format!(
            "SELECT {ORG_COLUMNS} FROM organizations
             WHERE tenant = $1 AND domain = $2 AND deleted_at IS NULL"
        ))
        .bind(tenant.as_str())
        .bind(domain.as_str())
        .fetch_optional(&self.pool)
        .await
        .db()?;
        row.map(OrgRow::into_model).transpose()
    }

    async fn list_organizations(
        &self,
        tenant: &TenantId,
        query: &OrganizationQuery,
    ) -> Result<OrganizationPage> {
        super::organizations::list(&self.pool, tenant, query).await
    }

    async fn organization_versions(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Result<Option<Vec<OrganizationVersion>>> {
        super::organizations::versions(&self.pool, tenant, domain).await
    }

    async fn delete_organization(
        &self,
        tenant: &TenantId,
        domain: &Domain,
        now: Timestamp,
    ) -> Result<bool> {
        super::organizations::delete(&self.pool, tenant, domain, now).await
    }

    async fn prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64> {
        // Items have no foreign key (it cost a trigger per inserted row): delete them explicitly.
        let done = sqlx::query(
            "WITH gone AS (
                DELETE FROM batches WHERE id IN (
                    SELECT id FROM batches WHERE completed_at < $1 ORDER BY completed_at LIMIT $2)
                RETURNING id
            ), items AS (
                DELETE FROM batch_items WHERE batch_id IN (SELECT id FROM gone)
            ), uploads AS (
                -- A file's staging goes with its batch; an upload still
                -- `receiving` past the cutoff was abandoned by a process that died.
                DELETE FROM imports WHERE batch_id IN (SELECT id FROM gone)
                    OR batch_id IN (SELECT batch_id FROM imports
                        WHERE state = 'receiving' AND started_at < $1 LIMIT $2)
                RETURNING batch_id
            ), staged AS (
                DELETE FROM import_rows WHERE batch_id IN (SELECT batch_id FROM uploads)
            ), refused AS (
                DELETE FROM import_rejections WHERE batch_id IN (SELECT batch_id FROM uploads)
            )
            SELECT id FROM gone",
        )
        .bind(finished_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .db()?;
        Ok(u64::try_from(done.len()).unwrap_or(u64::MAX))
    }

    fn imports(&self) -> Option<&dyn onboarding_core::import::ImportStore> {
        Some(self)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.db()?;
        Ok(())
    }
}

fn split(leases: &[Lease]) -> (Vec<Uuid>, Vec<Uuid>) {
    leases.iter().map(|l| (l.item_id.0, l.token.0)).unzip()
}

fn claimed(row: &PgRow, r: &ClaimRequest, organization: Organization) -> Result<ClaimedItem> {
    let id: Uuid = row.try_get("item_id").db()?;
    let batch: Uuid = row.try_get("batch_id").db()?;
    let tenant: String = row.try_get("tenant").db()?;
    let attempts: i64 = row.try_get("attempts").db()?;
    let change: String = row.try_get("change_kind").db()?;
    let trace_parent: Option<String> = row.try_get("trace_parent").db()?;
    Ok(ClaimedItem {
        lease: Lease {
            item_id: ItemId(id),
            token: r.token,
        },
        batch_id: BatchId(batch),
        tenant: TenantId::parse(tenant)?,
        attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
        change: rows::change(&change)?,
        organization,
        trace_parent,
    })
}
