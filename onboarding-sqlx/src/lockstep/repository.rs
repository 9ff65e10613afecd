//! `OrgRepository` for engines without `UPDATE … RETURNING` everywhere
//! (MySQL/MariaDB) or with a single writer (SQLite): each write runs in a
//! transaction that first reads the affected rows with a locking read
//! (`FOR UPDATE [SKIP LOCKED]` on MySQL; the `BEGIN IMMEDIATE` write lock on
//! SQLite), decides in Rust, then writes with one set-based statement per
//! kind of change (`IN (…)` lists, `CASE id WHEN …` for per-row values).
//!
//! This file is compiled once per engine (`#[path]`): `super::Db` and
//! `super::dialect` are that engine's.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use onboarding_core::model::{
    after, trim_error_history, BatchId, BatchStatus, Change, ConflictPolicy, Domain, ItemId,
    ItemStatus, Organization, OrganizationId, TenantId, Timestamp,
};
use onboarding_core::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use onboarding_core::repository::{
    BatchPage, BatchQuery, ClaimRequest, ClaimedItem, Finish, ItemPage, ItemQuery, Lease,
    OrgRepository, Resolution, StoreResult, StoredItem, Submission, ThroughputBucket,
};
use onboarding_core::Job;
use onboarding_core::{Error, Result};
use sqlx::{FromRow, Pool, QueryBuilder, Row};
use uuid::Uuid;

use super::{dialect, Db};
use crate::chunk_len;
use crate::error::{is_unique_violation, DbResultExt};
use crate::rows::{
    self, bind_new_batch, error_entry, BatchRow, CountRow, ItemRow, OrgRow, Text, BATCH_COLUMNS,
    ITEM_COLUMNS, ORG_COLUMNS,
};

pub(super) type Tx = crate::lockstep::WriteTx<Db>;

/// The repository of this engine.
#[derive(Debug, Clone)]
pub(crate) struct LockRepository {
    pool: Pool<Db>,
}

impl LockRepository {
    pub(crate) fn new(pool: Pool<Db>) -> Self {
        Self { pool }
    }

    async fn begin(&self) -> Result<Tx> {
        dialect::begin_write(&self.pool).await
    }

    /// The pool (the import staging in `imports.rs` shares it).
    pub(super) fn pool(&self) -> &Pool<Db> {
        &self.pool
    }
}

/// Rows per statement when each row binds `per_row` parameters.
fn rows_per(per_row: usize) -> usize {
    chunk_len(usize::MAX, dialect::MAX_PARAMS, per_row)
}

/// Pushes `(?, ?, …)` for `ids`.
fn push_in<'a>(qb: &mut QueryBuilder<'a, Db>, ids: &'a [Uuid]) {
    qb.push("(");
    let mut sep = qb.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    sep.push_unseparated(")");
}

async fn with_counts(
    exec: &mut sqlx::pool::PoolConnection<Db>,
    batches: Vec<BatchRow>,
) -> Result<Vec<BatchStatus>> {
    counts_on(&mut **exec, batches).await
}

async fn counts_on<'e, E>(exec: E, batches: Vec<BatchRow>) -> Result<Vec<BatchStatus>>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    if batches.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = batches.iter().map(|b| b.id).collect();
    let mut qb = QueryBuilder::new(
        "SELECT batch_id, status, change_kind, COUNT(*) AS n FROM batch_items WHERE batch_id IN ",
    );
    push_in(&mut qb, &ids);
    qb.push(" GROUP BY batch_id, status, change_kind");
    let counts: Vec<CountRow> = qb.build_query_as().fetch_all(exec).await.db()?;
    rows::statuses(batches, counts)
}

async fn tenant_batch<'e, E>(
    exec: E,
    tenant: &TenantId,
    batch: BatchId,
    lock: &str,
) -> Result<Option<BatchRow>>
where
    E: sqlx::Executor<'e, Database = Db>,
{
    sqlx::query_as(&format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE id = ? AND tenant = ?{lock}"
    ))
    .bind(batch.0)
    .bind(tenant.as_str())
    .fetch_optional(exec)
    .await
    .db()
}

fn parse_tenant(s: Text) -> Result<TenantId> {
    TenantId::parse(s.0)
}

/// The existing organization a submission found for one domain.
#[derive(Debug, sqlx::FromRow)]
struct Existing {
    id: Uuid,
    domain: String,
    name: String,
    contact_email: String,
    status: String,
    version: i64,
    deleted_at: Option<Timestamp>,
}

/// One leased item as read under lock before a fenced write.
#[derive(Debug, sqlx::FromRow)]
struct Leased {
    id: Uuid,
    lease_token: Option<Uuid>,
    attempts: i64,
    errors: String,
    organization_id: Uuid,
    tenant: Text,
}

/// Reads the listed items that are processing, under lock, and keeps those whose token matches.
async fn leased(tx: &mut Tx, leases: &[Lease]) -> Result<Vec<Leased>> {
    let tokens: HashMap<Uuid, Uuid> = leases.iter().map(|l| (l.item_id.0, l.token.0)).collect();
    let mut ids: Vec<Uuid> = tokens.keys().copied().collect();
    ids.sort_unstable();
    let mut out = Vec::new();
    for chunk in ids.chunks(rows_per(1)) {
        let mut qb = QueryBuilder::new(
            "SELECT id, lease_token, attempts, errors, organization_id, tenant FROM batch_items WHERE status = 'processing' AND id IN ",
        );
        push_in(&mut qb, chunk);
        qb.push(dialect::FOR_UPDATE);
        let found: Vec<Leased> = qb.build_query_as().fetch_all(&mut **tx).await.db()?;
        out.extend(
            found
                .into_iter()
                .filter(|r| r.lease_token.is_some() && r.lease_token == tokens.get(&r.id).copied()),
        );
    }
    Ok(out)
}

/// `UPDATE organizations SET status = ?, updated_at = ? WHERE id IN (…)`.
async fn set_org_status(tx: &mut Tx, ids: &[Uuid], status: ItemStatus) -> Result<()> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for chunk in ids.chunks(rows_per(1)) {
        // `updated_at` tracks changes of the data (like `version`), not of the status.
        let mut qb = QueryBuilder::new("UPDATE organizations SET status = ");
        qb.push_bind(status.as_str()).push(" WHERE id IN ");
        push_in(&mut qb, chunk);
        qb.build().execute(&mut **tx).await.db()?;
    }
    Ok(())
}

/// Open batches with no pending or processing item (filter on `b.id` and lock after it).
///
/// The open item is looked for from the end of the batch, as on
/// PostgreSQL (see `pg::repository`): workers finish a batch roughly in
/// position order, so a forward `NOT EXISTS` walks past every finished
/// item on each flush of a large batch, and the backward scan of
/// `(batch_id, position)` stops at the first entry.
const FINISHED_OPEN: &str =
    "SELECT b.id, b.tenant, b.idempotency_key, b.request_hash, b.total, b.policy, b.mode,
    b.created_at, b.completed_at, b.cancelled_at, b.announced_at
    FROM batches b WHERE b.completed_at IS NULL
    AND (SELECT i.position FROM batch_items i
         WHERE i.batch_id = b.id AND i.status IN ('pending', 'processing')
         ORDER BY i.position DESC LIMIT 1) IS NULL";

/// Whether any of `ids` is an open batch without open items, read without
/// the write lock (single-writer engines).
///
/// Every flush asks after its commit, and mostly the answer is no (a large
/// batch has items left): asking under the write lock held up every other
/// writer for it. A snapshot read may miss a batch whose last items a
/// concurrent flush is committing; that flush asks after its own commit and
/// sees them (and the sweeper completes whatever is left).
async fn any_finished_open(pool: &Pool<Db>, ids: &[Uuid]) -> Result<bool> {
    let mut conn = pool.acquire().await.db()?;
    for chunk in ids.chunks(rows_per(1)) {
        let mut qb = QueryBuilder::new(format!("{FINISHED_OPEN} AND b.id IN "));
        push_in(&mut qb, chunk);
        qb.push(" LIMIT 1");
        if qb.build().fetch_optional(&mut *conn).await.db()?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Sets `completed_at` on the batches read (and locked) in `tx`, and commits.
async fn mark_completed(
    mut tx: Tx,
    mut done: Vec<BatchRow>,
    now: Timestamp,
) -> Result<Vec<BatchStatus>> {
    let ids: Vec<Uuid> = done.iter().map(|b| b.id).collect();
    for chunk in ids.chunks(rows_per(1)) {
        let mut qb = QueryBuilder::new("UPDATE batches SET completed_at = ");
        qb.push_bind(now).push(" WHERE id IN ");
        push_in(&mut qb, chunk);
        qb.build().execute(&mut *tx).await.db()?;
    }
    for b in &mut done {
        b.completed_at = Some(now);
    }
    let out = counts_on(&mut *tx, done).await?;
    tx.commit().await.db()?;
    Ok(out)
}

/// Appends one attempt's error to a stored JSON history.
fn append_error(history: &str, entry: serde_json::Value) -> Result<String> {
    let mut list: Vec<serde_json::Value> = serde_json::from_str(history)
        .map_err(|e| Error::internal("stored error history is not valid JSON").with_source(e))?;
    list.push(entry);
    trim_error_history(&mut list);
    Ok(serde_json::Value::Array(list).to_string())
}

fn job_of(id: Uuid, tenant: Text, available: Timestamp, now: Timestamp) -> Result<Job> {
    Ok(Job {
        item_id: ItemId(id),
        tenant: parse_tenant(tenant)?,
        not_before: (available > now).then_some(available),
    })
}

/// Rows of organizations one `store_chunk` call may take (8 parameters each).
pub(super) fn org_chunk_len(chunk_size: usize) -> usize {
    chunk_len(chunk_size, dialect::MAX_PARAMS, 9)
}

/// Upserts one chunk of a submission's organizations (at most
/// [`org_chunk_len`]) and inserts their items (shared by `store_submission`
/// and the import's `finish_import`).
pub(super) async fn store_chunk(
    tx: &mut Tx,
    s: &Submission,
    chunk: &[(u32, onboarding_core::model::NewOrganization)],
) -> Result<Vec<StoredItem>> {
    let mut items = Vec::with_capacity(chunk.len());
    let domains: Vec<&str> = chunk.iter().map(|(_, o)| o.domain.as_str()).collect();
    let mut qb = QueryBuilder::new(
        "SELECT id, domain, name, contact_email, status, version, deleted_at FROM organizations WHERE tenant = ",
    );
    qb.push_bind(s.tenant.as_str()).push(" AND domain IN (");
    let mut sep = qb.separated(", ");
    for d in &domains {
        sep.push_bind(*d);
    }
    sep.push_unseparated(")");
    qb.push(dialect::FOR_UPDATE);
    let existing: Vec<Existing> = qb.build_query_as().fetch_all(&mut **tx).await.db()?;
    let existing: HashMap<String, Existing> = existing
        .into_iter()
        .map(|e| (e.domain.clone(), e))
        .collect();

    let mut writes = Vec::new();
    let mut to_pending = Vec::new();
    for (position, org) in chunk {
        let (id, change, done) = match existing.get(org.domain.as_str()) {
            None => {
                let id = OrganizationId::new().0;
                writes.push((id, org, 1));
                (id, Change::Created, false)
            }
            // A deleted organization comes back under either policy, as new,
            // its version continuing (the upsert clears `deleted_at`).
            Some(e) if e.deleted_at.is_some() => {
                writes.push((e.id, org, e.version + 1));
                (e.id, Change::Created, false)
            }
            Some(e) if s.policy == ConflictPolicy::Skip => (e.id, Change::Skipped, true),
            Some(e) if e.name == org.name && e.contact_email == org.contact_email => {
                let done =
                    rows::status(&e.status)? == ItemStatus::Completed && !s.reprocess_unchanged;
                if !done {
                    to_pending.push(e.id);
                }
                (e.id, Change::Unchanged, done)
            }
            Some(e) => {
                writes.push((e.id, org, e.version + 1));
                (e.id, Change::Updated, false)
            }
        };
        items.push(StoredItem {
            item_id: ItemId::new(),
            position: *position,
            organization_id: OrganizationId(id),
            domain: org.domain.clone(),
            change,
            status: if done {
                ItemStatus::Completed
            } else {
                ItemStatus::Pending
            },
        });
    }
    if !writes.is_empty() {
        let mut qb = QueryBuilder::new(
                "INSERT INTO organizations (id, tenant, name, domain, contact_email, status, version, created_at, updated_at) ",
            );
        qb.push_values(&writes, |mut b, (id, org, _)| {
            b.push_bind(*id)
                .push_bind(s.tenant.as_str())
                .push_bind(org.name.as_str())
                .push_bind(org.domain.as_str())
                .push_bind(org.contact_email.as_str())
                .push_bind("pending")
                .push_bind(1_i64)
                .push_bind(s.now)
                .push_bind(s.now);
        });
        qb.push(dialect::UPSERT);
        qb.build().execute(&mut **tx).await.db()?;
        // Each written row's version, in one multi-row insert (as many rows as the upsert's).
        let mut qb = QueryBuilder::new(
            "INSERT INTO organization_versions (organization_id, version, name, contact_email, batch_id, created_at) ",
        );
        qb.push_values(&writes, |mut b, (id, org, version)| {
            b.push_bind(*id)
                .push_bind(*version)
                .push_bind(org.name.as_str())
                .push_bind(org.contact_email.as_str())
                .push_bind(s.batch_id.0)
                .push_bind(s.now);
        });
        qb.build().execute(&mut **tx).await.db()?;
    }
    set_org_status(tx, &to_pending, ItemStatus::Pending).await?;
    for chunk in items.chunks(chunk_len(s.chunk_size, dialect::MAX_PARAMS, 15)) {
        let mut qb = QueryBuilder::new(
                "INSERT INTO batch_items (id, batch_id, tenant, position, organization_id, domain, status,
                    change_kind, attempts, available_at, sweep_at, errors, created_at, updated_at, finished_at) ",
            );
        qb.push_values(chunk, |mut b, i| {
            let done = i.status == ItemStatus::Completed;
            b.push_bind(i.item_id.0)
                .push_bind(s.batch_id.0)
                .push_bind(s.tenant.as_str())
                .push_bind(i64::from(i.position))
                .push_bind(i.organization_id.0)
                .push_bind(i.domain.as_str())
                .push_bind(i.status.as_str())
                .push_bind(i.change.as_str())
                .push_bind(0_i64)
                .push_bind(s.now)
                .push_bind(s.sweep_at)
                .push_bind("[]")
                .push_bind(s.now)
                .push_bind(s.now)
                .push_bind(done.then_some(s.now));
        });
        qb.build().execute(&mut **tx).await.db()?;
    }
    Ok(items)
}

/// Inserts a submission's batch row (`total` items): a unique violation
/// when its idempotency key names an earlier batch of the tenant.
pub(super) async fn insert_batch(
    tx: &mut Tx,
    s: &Submission,
    total: i64,
) -> std::result::Result<<Db as sqlx::Database>::QueryResult, sqlx::Error> {
    bind_new_batch(
        sqlx::query(
            "INSERT INTO batches (id, tenant, idempotency_key, request_hash, total, policy, mode, created_at, trace_parent)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        ),
        s,
        total,
    )
    .execute(&mut **tx)
    .await
}

/// Reads the items just claimed (with their organizations) and commits.
async fn read_claimed(
    mut tx: Tx,
    r: &ClaimRequest,
    item_ids: Vec<Uuid>,
) -> Result<Vec<ClaimedItem>> {
    let org_cols = ORG_COLUMNS
        .split(", ")
        .map(|c| format!("o.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = Vec::with_capacity(item_ids.len());
    for chunk in item_ids.chunks(rows_per(1)) {
        let mut qb = QueryBuilder::new(format!(
            "SELECT i.id AS item_id, i.batch_id, i.tenant, i.attempts, i.change_kind, t.trace_parent, {org_cols}
             FROM batch_items i JOIN organizations o ON o.id = i.organization_id
             LEFT JOIN batches t ON t.id = i.batch_id WHERE i.id IN "
        ));
        push_in(&mut qb, chunk);
        let rows = qb.build().fetch_all(&mut *tx).await.db()?;
        for row in rows {
            let organization = OrgRow::from_row(&row).db()?.into_model()?;
            let id: Uuid = row.try_get("item_id").db()?;
            let batch: Uuid = row.try_get("batch_id").db()?;
            let tenant: Text = row.try_get("tenant").db()?;
            let attempts: i64 = row.try_get("attempts").db()?;
            let change: String = row.try_get("change_kind").db()?;
            let trace_parent: Option<String> = row.try_get("trace_parent").db()?;
            out.push(ClaimedItem {
                lease: Lease {
                    item_id: ItemId(id),
                    token: r.token,
                },
                batch_id: BatchId(batch),
                tenant: parse_tenant(tenant)?,
                attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                change: rows::change(&change)?,
                organization,
                trace_parent,
            });
        }
    }
    tx.commit().await.db()?;
    Ok(out)
}

/// Completes the listed items that are still processing under their lease
/// (`UPDATE … RETURNING`, single-writer engines): the fenced write of
/// `finish_items` in one statement per lease token when every result is a
/// completion (nothing to read first: no error history, no attempt count).
/// Returns (item, organization) of each completed item.
async fn complete_returning(
    tx: &mut Tx,
    leases: &[Lease],
    now: Timestamp,
) -> Result<Vec<(Uuid, Uuid)>> {
    // A flush holds the items of a few claims, each claim one token.
    let mut by_token: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for l in leases {
        by_token.entry(l.token.0).or_default().push(l.item_id.0);
    }
    let mut done = Vec::with_capacity(leases.len());
    for (token, mut ids) in by_token {
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(rows_per(1) - 3) {
            let mut qb = QueryBuilder::new(
                "UPDATE batch_items SET status = 'completed', lease_token = NULL, lease_until = NULL, finished_at = ",
            );
            qb.push_bind(now)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE status = 'processing' AND lease_token = ")
                .push_bind(token)
                .push(" AND id IN ");
            push_in(&mut qb, chunk);
            qb.push(" RETURNING id, organization_id");
            for row in qb.build().fetch_all(&mut **tx).await.db()? {
                done.push((row.try_get("id").db()?, row.try_get("organization_id").db()?));
            }
        }
    }
    Ok(done)
}

/// The claim of a single-writer engine (SQLite, `UPDATE … RETURNING`): one
/// statement finds the claimable items among `ids` and leases them, instead
/// of a read and then a write of the same rows under the lock.
async fn claim_returning(tx: &mut Tx, r: &ClaimRequest, ids: &[Uuid]) -> Result<Vec<Uuid>> {
    let mut claimed = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(rows_per(1) - 5) {
        let mut qb = QueryBuilder::new("UPDATE batch_items SET status = 'processing', lease_token = ");
        qb.push_bind(r.token.0)
            .push(", lease_until = ")
            .push_bind(r.lease_until)
            .push(", attempts = attempts + 1, updated_at = ")
            .push_bind(r.now)
            .push(" WHERE id IN ");
        push_in(&mut qb, chunk);
        qb.push(" AND ((status = 'pending' AND available_at <= ")
            .push_bind(r.now)
            .push(") OR (status = 'processing' AND lease_until <= ")
            .push_bind(r.now)
            .push(")) RETURNING id");
        for row in qb.build().fetch_all(&mut **tx).await.db()? {
            claimed.push(row.try_get("id").db()?);
        }
    }
    Ok(claimed)
}

#[async_trait]
impl OrgRepository for LockRepository {
    async fn store_submission(&self, s: &Submission) -> Result<StoreResult> {
        let mut tx = self.begin().await?;
        let total = i64::try_from(s.organizations.len()).unwrap_or(i64::MAX);
        let inserted = insert_batch(&mut tx, s, total).await;
        if let Err(e) = inserted {
            if !(is_unique_violation(&e) && s.idempotency_key.is_some()) {
                return Err(crate::error::driver(e));
            }
            tx.rollback().await.db()?;
            let key = s.idempotency_key.as_deref().unwrap_or_default();
            let batch: BatchRow = sqlx::query_as(&format!(
                "SELECT {BATCH_COLUMNS} FROM batches WHERE tenant = ? AND idempotency_key = ?"
            ))
            .bind(s.tenant.as_str())
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .db()?
            .ok_or_else(|| Error::internal("idempotency key conflict without a batch"))?;
            let batch = batch.into_model()?;
            return Ok(StoreResult::for_earlier(batch, &s.request_hash));
        }

        let mut items = Vec::with_capacity(s.organizations.len());
        for chunk in s.organizations.chunks(org_chunk_len(s.chunk_size)) {
            items.extend(store_chunk(&mut tx, s, chunk).await?);
        }
        let all_done = items.iter().all(|i| i.status == ItemStatus::Completed);
        if all_done {
            sqlx::query("UPDATE batches SET completed_at = ? WHERE id = ?")
                .bind(s.now)
                .bind(s.batch_id.0)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        let batch = s.stored_batch(items.len(), all_done);
        Ok(StoreResult::Stored { batch, items })
    }

    async fn claim_items(&self, r: &ClaimRequest) -> Result<Vec<ClaimedItem>> {
        if r.item_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut ids: Vec<Uuid> = r.item_ids.iter().map(|i| i.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut tx = self.begin().await?;
        if dialect::SINGLE_WRITER {
            let claimed = claim_returning(&mut tx, r, &ids).await?;
            return read_claimed(tx, r, claimed).await;
        }
        let mut claimable: Vec<Uuid> = Vec::new();
        for chunk in ids.chunks(rows_per(1)) {
            let mut qb = QueryBuilder::new("SELECT id FROM batch_items WHERE id IN ");
            push_in(&mut qb, chunk);
            qb.push(" AND ((status = 'pending' AND available_at <= ")
                .push_bind(r.now)
                .push(") OR (status = 'processing' AND lease_until <= ")
                .push_bind(r.now)
                .push("))")
                .push(dialect::SKIP_LOCKED);
            let rows = qb.build().fetch_all(&mut *tx).await.db()?;
            for row in rows {
                claimable.push(row.try_get("id").db()?);
            }
        }
        if claimable.is_empty() {
            tx.commit().await.db()?;
            return Ok(Vec::new());
        }
        let item_ids = claimable;
        for chunk in item_ids.chunks(rows_per(1)) {
            let mut qb =
                QueryBuilder::new("UPDATE batch_items SET status = 'processing', lease_token = ");
            qb.push_bind(r.token.0)
                .push(", lease_until = ")
                .push_bind(r.lease_until)
                .push(", attempts = attempts + 1, updated_at = ")
                .push_bind(r.now)
                .push(" WHERE id IN ");
            push_in(&mut qb, chunk);
            qb.build().execute(&mut *tx).await.db()?;
        }
        read_claimed(tx, r, item_ids).await
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
        let mut tx = self.begin().await?;
        let held: Vec<Uuid> = leased(&mut tx, leases)
            .await?
            .into_iter()
            .map(|l| l.id)
            .collect();
        for chunk in held.chunks(rows_per(1)) {
            let mut qb = QueryBuilder::new("UPDATE batch_items SET lease_until = ");
            qb.push_bind(lease_until)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE id IN ");
            push_in(&mut qb, chunk);
            qb.build().execute(&mut *tx).await.db()?;
        }
        tx.commit().await.db()?;
        Ok(held.into_iter().map(ItemId).collect())
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
        let leases: Vec<Lease> = finishes.iter().map(|f| f.lease).collect();
        let by_id: HashMap<Uuid, &Resolution> = finishes
            .iter()
            .map(|f| (f.lease.item_id.0, &f.resolution))
            .collect();
        let mut tx = self.begin().await?;
        if dialect::SINGLE_WRITER
            && finishes
                .iter()
                .all(|f| matches!(f.resolution, Resolution::Completed))
        {
            let done = complete_returning(&mut tx, &leases, now).await?;
            let orgs: Vec<Uuid> = done.iter().map(|d| d.1).collect();
            set_org_status(&mut tx, &orgs, ItemStatus::Completed).await?;
            tx.commit().await.db()?;
            return Ok(done.into_iter().map(|d| ItemId(d.0)).collect());
        }
        let held = leased(&mut tx, &leases).await?;
        let mut completed = Vec::new();
        let mut retried: Vec<(Uuid, Timestamp, Timestamp, String)> = Vec::new();
        let mut failed: Vec<(Uuid, String)> = Vec::new();
        let mut org_done = Vec::new();
        let mut org_pending = Vec::new();
        let mut org_failed = Vec::new();
        for row in &held {
            let Some(resolution) = by_id.get(&row.id) else {
                continue;
            };
            match resolution {
                Resolution::Completed => {
                    completed.push(row.id);
                    org_done.push(row.organization_id);
                }
                Resolution::Retry {
                    available_at,
                    error,
                } => {
                    let errors =
                        append_error(&row.errors, error_entry(row.attempts, now, error, false))?;
                    retried.push((
                        row.id,
                        *available_at,
                        after(*available_at, stale_after),
                        errors,
                    ));
                    org_pending.push(row.organization_id);
                }
                Resolution::Failed { error, permanent } => {
                    let errors = append_error(
                        &row.errors,
                        error_entry(row.attempts, now, error, *permanent),
                    )?;
                    failed.push((row.id, errors));
                    org_failed.push(row.organization_id);
                }
            }
        }
        for chunk in completed.chunks(rows_per(1)) {
            let mut qb = QueryBuilder::new(
                "UPDATE batch_items SET status = 'completed', lease_token = NULL, lease_until = NULL, finished_at = ",
            );
            qb.push_bind(now)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE id IN ");
            push_in(&mut qb, chunk);
            qb.build().execute(&mut *tx).await.db()?;
        }
        for chunk in retried.chunks(rows_per(7)) {
            let mut qb = QueryBuilder::new(
                "UPDATE batch_items SET status = 'pending', lease_token = NULL, lease_until = NULL, updated_at = ",
            );
            qb.push_bind(now).push(", available_at = CASE id");
            for (id, at, _, _) in chunk {
                qb.push(" WHEN ")
                    .push_bind(*id)
                    .push(" THEN ")
                    .push_bind(*at);
            }
            qb.push(" END, sweep_at = CASE id");
            for (id, _, sweep, _) in chunk {
                qb.push(" WHEN ")
                    .push_bind(*id)
                    .push(" THEN ")
                    .push_bind(*sweep);
            }
            qb.push(" END, error_count = error_count + 1, errors = CASE id");
            for (id, _, _, errors) in chunk {
                qb.push(" WHEN ")
                    .push_bind(*id)
                    .push(" THEN ")
                    .push_bind(errors.as_str());
            }
            qb.push(" END WHERE id IN ");
            let ids: Vec<Uuid> = chunk.iter().map(|c| c.0).collect();
            qb.push("(");
            let mut sep = qb.separated(", ");
            for id in &ids {
                sep.push_bind(*id);
            }
            sep.push_unseparated(")");
            qb.build().execute(&mut *tx).await.db()?;
        }
        for chunk in failed.chunks(rows_per(3)) {
            let mut qb = QueryBuilder::new(
                "UPDATE batch_items SET status = 'failed', lease_token = NULL, lease_until = NULL, finished_at = ",
            );
            qb.push_bind(now)
                .push(", updated_at = ")
                .push_bind(now)
                .push(", error_count = error_count + 1, errors = CASE id");
            for (id, errors) in chunk {
                qb.push(" WHEN ")
                    .push_bind(*id)
                    .push(" THEN ")
                    .push_bind(errors.as_str());
            }
            qb.push(" END WHERE id IN (");
            let mut sep = qb.separated(", ");
            for (id, _) in chunk {
                sep.push_bind(*id);
            }
            sep.push_unseparated(")");
            qb.build().execute(&mut *tx).await.db()?;
        }
        set_org_status(&mut tx, &org_done, ItemStatus::Completed).await?;
        set_org_status(&mut tx, &org_pending, ItemStatus::Pending).await?;
        set_org_status(&mut tx, &org_failed, ItemStatus::Failed).await?;
        tx.commit().await.db()?;
        Ok(held.into_iter().map(|l| ItemId(l.id)).collect())
    }

    async fn release_items(&self, leases: &[Lease], now: Timestamp) -> Result<Vec<Job>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let held = leased(&mut tx, leases).await?;
        let ids: Vec<Uuid> = held.iter().map(|l| l.id).collect();
        for chunk in ids.chunks(rows_per(1)) {
            let mut qb = QueryBuilder::new(
                "UPDATE batch_items SET status = 'pending', lease_token = NULL, lease_until = NULL,
                 attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, available_at = ",
            );
            qb.push_bind(now)
                .push(", updated_at = ")
                .push_bind(now)
                .push(" WHERE id IN ");
            push_in(&mut qb, chunk);
            qb.build().execute(&mut *tx).await.db()?;
        }
        let orgs: Vec<Uuid> = held.iter().map(|l| l.organization_id).collect();
        set_org_status(&mut tx, &orgs, ItemStatus::Pending).await?;
        tx.commit().await.db()?;
        held.into_iter()
            .map(|l| {
                Ok(Job {
                    item_id: ItemId(l.id),
                    tenant: parse_tenant(l.tenant)?,
                    not_before: None,
                })
            })
            .collect()
    }

    async fn sweep(
        &self,
        now: Timestamp,
        pending_due: Timestamp,
        stale_after: Duration,
        limit: u32,
    ) -> Result<Vec<Job>> {
        let mut tx = self.begin().await?;
        let pending = sqlx::query(&format!(
            "SELECT id, tenant, available_at FROM batch_items
             WHERE status = 'pending' AND sweep_at <= ? ORDER BY sweep_at LIMIT ?{}",
            dialect::SKIP_LOCKED
        ))
        .bind(pending_due)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let mut jobs = Vec::new();
        let mut ids = Vec::new();
        for row in pending {
            let id: Uuid = row.try_get("id").db()?;
            ids.push(id);
            jobs.push(job_of(
                id,
                row.try_get("tenant").db()?,
                row.try_get("available_at").db()?,
                now,
            )?);
        }
        for chunk in ids.chunks(rows_per(1)) {
            let mut qb = QueryBuilder::new("UPDATE batch_items SET sweep_at = ");
            qb.push_bind(after(now, stale_after)).push(" WHERE id IN ");
            push_in(&mut qb, chunk);
            qb.build().execute(&mut *tx).await.db()?;
        }
        let left = i64::from(limit) - i64::try_from(jobs.len()).unwrap_or(0);
        if left > 0 {
            let expired = sqlx::query(
                "SELECT id, tenant, available_at FROM batch_items
                 WHERE status = 'processing' AND lease_until <= ? LIMIT ?",
            )
            .bind(now)
            .bind(left)
            .fetch_all(&mut *tx)
            .await
            .db()?;
            for row in expired {
                jobs.push(job_of(
                    row.try_get("id").db()?,
                    row.try_get("tenant").db()?,
                    row.try_get("available_at").db()?,
                    now,
                )?);
            }
        }
        tx.commit().await.db()?;
        Ok(jobs)
    }

    async fn complete_batches(
        &self,
        batches: &[BatchId],
        now: Timestamp,
    ) -> Result<Vec<BatchStatus>> {
        let mut ids: Vec<Uuid> = batches.iter().map(|b| b.0).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        ids.sort_unstable();
        ids.dedup();
        if dialect::SINGLE_WRITER && !any_finished_open(&self.pool, &ids).await? {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        let mut done: Vec<BatchRow> = Vec::new();
        for chunk in ids.chunks(rows_per(1)) {
            let mut qb = QueryBuilder::new(format!("{FINISHED_OPEN} AND b.id IN "));
            push_in(&mut qb, chunk);
            qb.push(dialect::FOR_UPDATE);
            done.extend(
                qb.build_query_as::<BatchRow>()
                    .fetch_all(&mut *tx)
                    .await
                    .db()?,
            );
        }
        mark_completed(tx, done, now).await
    }

    async fn complete_open_batches(&self, now: Timestamp, limit: u32) -> Result<Vec<BatchStatus>> {
        let mut tx = self.begin().await?;
        let mut qb = QueryBuilder::new(format!("{FINISHED_OPEN} ORDER BY b.created_at LIMIT "));
        qb.push_bind(i64::from(limit)).push(dialect::SKIP_LOCKED);
        let done = qb
            .build_query_as::<BatchRow>()
            .fetch_all(&mut *tx)
            .await
            .db()?;
        mark_completed(tx, done, now).await
    }

    async fn unannounced_batches(
        &self,
        completed_before: Timestamp,
        limit: u32,
    ) -> Result<Vec<BatchStatus>> {
        let batches: Vec<BatchRow> = sqlx::query_as(&format!(
            "SELECT {BATCH_COLUMNS} FROM batches
             WHERE announced_at IS NULL AND completed_at IS NOT NULL AND completed_at <= ?
             ORDER BY completed_at LIMIT ?"
        ))
        .bind(completed_before)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .db()?;
        let mut conn = self.pool.acquire().await.db()?;
        with_counts(&mut conn, batches).await
    }

    async fn mark_announced(&self, batches: &[BatchId], now: Timestamp) -> Result<()> {
        let ids: Vec<Uuid> = batches.iter().map(|b| b.0).collect();
        if ids.is_empty() {
            return Ok(());
        }
        // In a write transaction: on SQLite it waits at the write gate
        // instead of in the busy handler.
        let mut tx = self.begin().await?;
        for chunk in ids.chunks(rows_per(1)) {
            let mut qb = QueryBuilder::new("UPDATE batches SET announced_at = ");
            qb.push_bind(now)
                .push(" WHERE completed_at IS NOT NULL AND announced_at IS NULL AND id IN ");
            push_in(&mut qb, chunk);
            qb.build().execute(&mut *tx).await.db()?;
        }
        tx.commit().await.db()?;
        Ok(())
    }

    async fn cancel_batch(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<BatchStatus>> {
        let mut tx = self.begin().await?;
        let Some(mut row) = tenant_batch(&mut *tx, tenant, batch, dialect::FOR_UPDATE).await?
        else {
            return Ok(None);
        };
        let pending = sqlx::query(&format!(
            "SELECT id, organization_id FROM batch_items WHERE batch_id = ? AND status = 'pending'{}",
            dialect::FOR_UPDATE
        ))
        .bind(batch.0)
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let mut orgs = Vec::with_capacity(pending.len());
        for r in &pending {
            orgs.push(r.try_get::<Uuid, _>("organization_id").db()?);
        }
        sqlx::query(
            "UPDATE batch_items SET status = 'cancelled', finished_at = ?, updated_at = ?
             WHERE batch_id = ? AND status = 'pending'",
        )
        .bind(now)
        .bind(now)
        .bind(batch.0)
        .execute(&mut *tx)
        .await
        .db()?;
        set_org_status(&mut tx, &orgs, ItemStatus::Cancelled).await?;
        if row.cancelled_at.is_none() {
            sqlx::query("UPDATE batches SET cancelled_at = ? WHERE id = ?")
                .bind(now)
                .bind(batch.0)
                .execute(&mut *tx)
                .await
                .db()?;
            row.cancelled_at = Some(now);
        }
        let out = counts_on(&mut *tx, vec![row]).await?;
        tx.commit().await.db()?;
        Ok(out.into_iter().next())
    }

    async fn retry_failed(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        let mut tx = self.begin().await?;
        if tenant_batch(&mut *tx, tenant, batch, dialect::FOR_UPDATE)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let failed = sqlx::query(&format!(
            "SELECT id, tenant, organization_id FROM batch_items WHERE batch_id = ? AND status = 'failed'{}",
            dialect::FOR_UPDATE
        ))
        .bind(batch.0)
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let mut jobs = Vec::with_capacity(failed.len());
        let mut orgs = Vec::with_capacity(failed.len());
        for r in failed {
            orgs.push(r.try_get::<Uuid, _>("organization_id").db()?);
            jobs.push(Job {
                item_id: ItemId(r.try_get("id").db()?),
                tenant: parse_tenant(r.try_get("tenant").db()?)?,
                not_before: None,
            });
        }
        if !jobs.is_empty() {
            sqlx::query(
                "UPDATE batch_items SET status = 'pending', attempts = 0, available_at = ?,
                    finished_at = NULL, updated_at = ?, sweep_at = ?
                 WHERE batch_id = ? AND status = 'failed'",
            )
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(batch.0)
            .execute(&mut *tx)
            .await
            .db()?;
            set_org_status(&mut tx, &orgs, ItemStatus::Pending).await?;
            sqlx::query("UPDATE batches SET completed_at = NULL, announced_at = NULL WHERE id = ?")
                .bind(batch.0)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        Ok(Some(jobs))
    }

    async fn retry_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        items: &[ItemId],
        now: Timestamp,
    ) -> Result<Option<Vec<Job>>> {
        let mut tx = self.begin().await?;
        if tenant_batch(&mut *tx, tenant, batch, dialect::FOR_UPDATE)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let mut asked: Vec<Uuid> = items.iter().map(|i| i.0).collect();
        asked.sort_unstable();
        asked.dedup();
        let mut jobs = Vec::new();
        let mut orgs = Vec::new();
        let mut ids = Vec::new();
        for chunk in asked.chunks(rows_per(1) - 1) {
            let mut qb = QueryBuilder::new(
                "SELECT id, tenant, organization_id FROM batch_items WHERE status = 'failed' AND batch_id = ",
            );
            qb.push_bind(batch.0).push(" AND id IN ");
            push_in(&mut qb, chunk);
            qb.push(dialect::FOR_UPDATE);
            for r in qb.build().fetch_all(&mut *tx).await.db()? {
                let id: Uuid = r.try_get("id").db()?;
                ids.push(id);
                orgs.push(r.try_get::<Uuid, _>("organization_id").db()?);
                jobs.push(Job {
                    item_id: ItemId(id),
                    tenant: parse_tenant(r.try_get("tenant").db()?)?,
                    not_before: None,
                });
            }
        }
        if !jobs.is_empty() {
            for chunk in ids.chunks(rows_per(1) - 3) {
                let mut qb = QueryBuilder::new(
                    "UPDATE batch_items SET status = 'pending', attempts = 0, finished_at = NULL, available_at = ",
                );
                qb.push_bind(now)
                    .push(", updated_at = ")
                    .push_bind(now)
                    .push(", sweep_at = ")
                    .push_bind(now)
                    .push(" WHERE id IN ");
                push_in(&mut qb, chunk);
                qb.build().execute(&mut *tx).await.db()?;
            }
            set_org_status(&mut tx, &orgs, ItemStatus::Pending).await?;
            sqlx::query("UPDATE batches SET completed_at = NULL, announced_at = NULL WHERE id = ?")
                .bind(batch.0)
                .execute(&mut *tx)
                .await
                .db()?;
        }
        tx.commit().await.db()?;
        Ok(Some(jobs))
    }

    async fn list_batches(&self, tenant: &TenantId, query: &BatchQuery) -> Result<BatchPage> {
        let limit = query.limit.max(1);
        let mut conn = self.pool.acquire().await.db()?;
        let mut qb = QueryBuilder::new(format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE {} AND tenant = ",
            rows::state_condition(query.state)
        ));
        qb.push_bind(tenant.as_str());
        if let Some(before) = query.before {
            qb.push(" AND id < ").push_bind(before.0);
        }
        if let Some(after) = query.created_after {
            qb.push(" AND created_at > ").push_bind(after);
        }
        qb.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows: Vec<BatchRow> = qb.build_query_as().fetch_all(&mut *conn).await.db()?;
        // Tenants compare exactly in SQL on every engine (`utf8mb4_bin` on MariaDB).
        let (rows, next_cursor) = rows::batch_page(rows, limit);
        Ok(BatchPage {
            batches: with_counts(&mut conn, rows).await?,
            next_cursor,
        })
    }

    async fn batch_status(&self, tenant: &TenantId, batch: BatchId) -> Result<Option<BatchStatus>> {
        let mut conn = self.pool.acquire().await.db()?;
        let Some(row) = tenant_batch(&mut *conn, tenant, batch, "").await? else {
            return Ok(None);
        };
        Ok(with_counts(&mut conn, vec![row]).await?.into_iter().next())
    }

    async fn list_items(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        query: &ItemQuery,
    ) -> Result<Option<ItemPage>> {
        let mut conn = self.pool.acquire().await.db()?;
        if tenant_batch(&mut *conn, tenant, batch, "").await?.is_none() {
            return Ok(None);
        }
        let limit = query.limit.max(1);
        let mut qb = QueryBuilder::new(format!(
            "SELECT {ITEM_COLUMNS} FROM batch_items WHERE batch_id = "
        ));
        qb.push_bind(batch.0);
        if let Some(status) = query.status {
            qb.push(" AND status = ").push_bind(status.as_str());
        }
        qb.push(" AND position > ")
            .push_bind(query.after_position.map_or(-1, i64::from))
            .push(" ORDER BY position LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows: Vec<ItemRow> = qb.build_query_as().fetch_all(&mut *conn).await.db()?;
        crate::rows::page(rows, limit)
    }

    async fn throughput(
        &self,
        tenant: &TenantId,
        since: Timestamp,
        bucket_seconds: u32,
    ) -> Result<Vec<ThroughputBucket>> {
        let width = i64::from(bucket_seconds.max(1));
        let rows: Vec<(i64, i64, i64)> = sqlx::query_as(&format!(
            "SELECT ({epoch} {div} ?) * ? AS bucket,
                    COUNT(CASE WHEN status = 'completed' THEN 1 END),
                    COUNT(CASE WHEN status = 'failed' THEN 1 END)
             FROM batch_items
             WHERE tenant = ? AND finished_at >= ? AND status IN ('completed', 'failed')
             GROUP BY bucket ORDER BY bucket",
            epoch = dialect::FINISHED_EPOCH,
            div = dialect::INT_DIV,
        ))
        .bind(width)
        .bind(width)
        .bind(tenant.as_str())
        .bind(since)
        .fetch_all(&self.pool)
        .await
        .db()?;
        Ok(rows
            .into_iter()
            .map(crate::rows::throughput_bucket)
            .collect())
    }

    async fn organization_by_domain(
        &self,
        tenant: &TenantId,
        domain: &Domain,
    ) -> Result<Option<Organization>> {
        super::organizations::by_domain(&self.pool, tenant, domain).await
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
        let mut tx = self.begin().await?;
        let deleted = super::organizations::delete(&mut *tx, tenant, domain, now).await?;
        tx.commit().await.db()?;
        Ok(deleted)
    }

    async fn prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64> {
        let mut tx = self.begin().await?;
        let old = sqlx::query(&format!(
            "SELECT id FROM batches WHERE completed_at IS NOT NULL AND completed_at < ?
             ORDER BY completed_at LIMIT ?{}",
            dialect::FOR_UPDATE
        ))
        .bind(finished_before)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .db()?;
        let ids: Vec<Uuid> = old
            .iter()
            .map(|r| r.try_get("id").db())
            .collect::<Result<_>>()?;
        for chunk in ids.chunks(rows_per(1)) {
            let mut qb = QueryBuilder::new("DELETE FROM batch_items WHERE batch_id IN ");
            push_in(&mut qb, chunk);
            qb.build().execute(&mut *tx).await.db()?;
            let mut qb = QueryBuilder::new("DELETE FROM batches WHERE id IN ");
            push_in(&mut qb, chunk);
            qb.build().execute(&mut *tx).await.db()?;
        }
        // A file's staging goes with its batch, and with it uploads abandoned
        // `receiving` past the cutoff (their process died).
        let mut uploads =
            super::imports::abandoned_uploads(&mut tx, finished_before, limit).await?;
        uploads.extend_from_slice(&ids);
        super::imports::delete_uploads(&mut tx, &uploads).await?;
        tx.commit().await.db()?;
        Ok(ids.len() as u64)
    }

    fn imports(&self) -> Option<&dyn onboarding_core::import::ImportStore> {
        Some(self)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.db()?;
        Ok(())
    }
}
