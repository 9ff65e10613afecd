//! `OrgRepository` on PostgreSQL.

use std::time::Duration;

use async_trait::async_trait;
use onboarding_core::model::{
    after, BatchId, BatchStatus, Change, ConflictPolicy, Domain, ItemId, ItemStatus, Organization,
    OrganizationId, TenantId, Timestamp, ERROR_HISTORY_LIMIT,
};
use onboarding_core::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use onboarding_core::repository::{
    BatchPage, BatchQuery, ClaimRequest, ClaimedItem, Finish, ItemPage, ItemQuery, Lease,
    OrgRepository, Resolution, StoreResult, StoredItem, Submission, ThroughputBucket,
};
use onboarding_core::Job;
use onboarding_core::{Error, ErrorKind, Result};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{FromRow, Postgres, Row, Transaction};
use uuid::Uuid;

use super::in_batch;
use super::throughput::{self, count_finishes, Direction};
use crate::error::{DbResultExt, SqlError};
use crate::rows::{
    self, bind_new_batch, BatchRow, CountRow, ItemRow, OrgRow, BATCH_COLUMNS, ITEM_COLUMNS,
    ORG_COLUMNS,
};

/// Open batches one sweep looks into (least recently swept first): bounds a
/// sweep's scan to this many batches' items however deep the backlog; with
/// more open batches, each is visited every few sweeps.
const SWEEP_BATCHES: i64 = 64;
/// Items of one batch one sweep statement reads at most (BENCHMARKS.md, "Backlog drain").
const SWEEP_WINDOW: i64 = 20_000;
/// Items one sweep call reads before it may answer that it found nothing:
/// while its windows find nothing and some batch has more beyond them, it
/// reads the next ones (a lost item near the end of a 1,000,000-item batch
/// is found within 5 calls, not 50).
const SWEEP_BUDGET: i64 = 10 * SWEEP_WINDOW;

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
        let rows = sqlx::query(&format!(
            "WITH was AS (
                SELECT id, finished_at FROM batch_items
                WHERE {of_batch} AND status = 'failed' AND ($3::uuid[] IS NULL OR id = ANY($3))
            ), u AS (
                UPDATE batch_items b SET status = 'pending', attempts = 0, available_at = $2,
                    finished_at = NULL, updated_at = $2, sweep_at = $2
                FROM was WHERE b.id = was.id AND b.status = 'failed'
                RETURNING b.id, b.tenant, b.domain, 'failed' AS status, was.finished_at
            ), o AS (
                -- The status follows the latest item (the view `organization_states`); an
                -- organization whose latest item is gone (pruned, or last
                -- written before `latest_item` existed) follows this one.
                UPDATE organizations o SET latest_item = u.id
                FROM u WHERE o.tenant = u.tenant AND o.domain = u.domain AND o.latest_item IS NULL
            ), uncounted AS (
                {uncounted}
            )
            SELECT id, tenant FROM u",
            uncounted = count_finishes("u", Direction::Remove),
            of_batch = in_batch("", "$1"),
        ))
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

    /// [`OrgRepository::finish_items`] when every finish is a completion,
    /// the common case: two arrays instead of seven and no per-row choice
    /// of status, retry time or error history (measured: the general
    /// statement spent ~9.5 µs per item in a drain, BENCHMARKS.md).
    async fn complete_items(&self, finishes: &[Finish], now: Timestamp) -> Result<Vec<ItemId>> {
        let (ids, tokens) = split(finishes.iter().map(|f| &f.lease));
        let sql = format!(
            "WITH u AS (
                UPDATE batch_items b SET status = 'completed', lease_token = NULL, lease_until = NULL,
                    updated_at = $3, finished_at = $3
                FROM UNNEST($1::uuid[], $2::uuid[]) AS f(id, token)
                WHERE b.id = f.id AND b.lease_token = f.token AND b.status = 'processing'
                RETURNING b.id, b.tenant, b.status, b.finished_at
            ), counted AS (
                {counted}
            )
            SELECT id FROM u",
            counted = count_finishes("u", Direction::Add),
        );
        let rows = sqlx::query(&sql)
            .bind(ids)
            .bind(tokens)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .db()?;
        item_ids(rows)
    }

    /// A submission of one chunk: batch, organizations, versions and items
    /// in one statement (its own transaction), the batch row made here
    /// from what was stored rather than read back.
    async fn store_in_one_statement(&self, s: &Submission) -> Result<StoreResult> {
        let items = match run_chunk(&self.pool, s, &s.organizations, true).await {
            Ok(items) => items,
            // The key names an earlier batch (the statement stored nothing).
            Err(e) if e.kind() == ErrorKind::Conflict && s.idempotency_key.is_some() => {
                return self.earlier(s).await
            }
            Err(e) => return Err(e),
        };
        let all_done = items.iter().all(|i| i.status == ItemStatus::Completed);
        let batch = s.stored_batch(items.len(), all_done);
        Ok(StoreResult::Stored { batch, items })
    }

    /// The answer to a submission whose idempotency key names an earlier batch.
    async fn earlier(&self, s: &Submission) -> Result<StoreResult> {
        let key = s.idempotency_key.as_deref().unwrap_or_default();
        let batch = batch_by_key(&self.pool, &s.tenant, key)
            .await?
            .ok_or_else(|| Error::internal("idempotency key conflict without a batch"))?
            .into_model()?;
        Ok(StoreResult::for_earlier(batch, &s.request_hash))
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
    let counts: Vec<CountRow> = sqlx::query_as(&format!(
        "SELECT b.id AS batch_id, c.status, c.change_kind, c.n FROM UNNEST($1::uuid[]) AS b(id)
         CROSS JOIN LATERAL (
            SELECT i.status, i.change_kind, COUNT(*) AS n FROM batch_items i
            WHERE {of_batch} GROUP BY i.status, i.change_kind
         ) c",
        of_batch = in_batch("i.", "b.id"),
    ))
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

/// The `id` column of each row, as item ids.
fn item_ids(rows: Vec<PgRow>) -> Result<Vec<ItemId>> {
    rows.into_iter()
        .map(|r| Ok(ItemId(r.try_get("id").db()?)))
        .collect()
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

/// The `ON CONFLICT` clause of an upsert into `organizations AS o` (shared
/// by the submission statement and the import's set-based finish, so both
/// decide alike): a soft-deleted row is restored under either policy (reported `Created`,
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
                written_by = EXCLUDED.written_by,
                written_at = EXCLUDED.written_at,
                latest_item = EXCLUDED.latest_item,
                deleted_at = NULL
             WHERE o.deleted_at IS NOT NULL{changed}"
    )
}

/// What the submission statement and the import's set-based finish decide
/// with, so both decide alike: the stored change and status words, and the
/// `ON CONFLICT` clause of the policy.
struct Decision {
    /// The change of a row the upsert left alone under the policy.
    pub(super) kept: &'static str,
    pub(super) created: &'static str,
    pub(super) updated: &'static str,
    pub(super) unchanged: &'static str,
    pub(super) skipped: &'static str,
    pub(super) pending: &'static str,
    pub(super) completed: &'static str,
    /// [`on_conflict`] of the policy.
    pub(super) on_conflict: String,
}

impl Decision {
    pub(super) fn new(policy: ConflictPolicy) -> Self {
        let kept = match policy {
            ConflictPolicy::Skip => Change::Skipped,
            ConflictPolicy::Update => Change::Unchanged,
        };
        Self {
            kept: kept.as_str(),
            created: Change::Created.as_str(),
            updated: Change::Updated.as_str(),
            unchanged: Change::Unchanged.as_str(),
            skipped: Change::Skipped.as_str(),
            pending: ItemStatus::Pending.as_str(),
            completed: ItemStatus::Completed.as_str(),
            on_conflict: on_conflict(policy),
        }
    }
}

/// One statement that stores a chunk of a submission: upserts its
/// organizations, writes a version of each row it changed, decides every
/// item (change kind, pending or already completed), marks the organizations
/// of unchanged items that will be processed again `pending`, and inserts
/// the items. With `batch`, it also inserts the batch row (completed when no
/// item is pending), so that a submission of one chunk is one statement,
/// one round trip and one implicit transaction.
///
/// Parameters: `$1`..`$9` those of [`bind_new_batch`], then the chunk's
/// organization ids, names, domains, contact emails and item ids
/// (`$10`..`$14`), the sweep time (`$15`) and `reprocess_unchanged` (`$16`).
/// An item's position is the one its id holds (`batch_item_position`), not
/// a parameter of its own.
///
/// Answers the items that are not new organizations (`outcome`), in any
/// order, each named by its item id, and a row with only `stored`: how many
/// items it stored (`arrived`).
fn chunk_statement(policy: ConflictPolicy, batch: bool) -> String {
    // A repeated idempotency key stores nothing: the batch insert then
    // fails on `batches_idempotency` and the caller answers with the
    // earlier batch.
    let (gate, batch) = if batch {
        (
            "WHERE $3::text IS NULL
               OR NOT EXISTS (SELECT 1 FROM batches WHERE tenant = $2 AND idempotency_key = $3)",
            ", batch AS (
            INSERT INTO batches (id, tenant, idempotency_key, request_hash, total, policy, mode,
                created_at, trace_parent, completed_at)
            SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN open = 0 THEN $8 END
            FROM arrived
         )",
        )
    } else {
        ("", "")
    };
    let input = format!(
        "SELECT org, name, domain, email, item
                FROM UNNEST($10::uuid[], $11::text[], $12::text[], $13::text[], $14::uuid[])
                AS u(org, name, domain, email, item)
            {gate}"
    );
    let ctes = store_rows(
        policy,
        &RowSource {
            input: &input,
            now: "$8",
            sweep_at: "$15",
            reprocess_unchanged: "$16",
            ordered: false,
            input_rows: Some("cardinality($14::uuid[])"),
        },
    );
    // A new organization's item is `created` and `pending`, its row the one
    // the caller made (`$10`): only the other items come back, and a count
    // of all, which saves the bulk of the answer (1000 rows) in the common
    // case of new organizations.
    format!(
        "WITH {ctes}{batch}
         SELECT item, org, change, status, NULL::bigint AS stored FROM outcome
         UNION ALL SELECT NULL, NULL, NULL, NULL, stored FROM arrived"
    )
}

/// Where the rows of [`store_rows`] come from, and the placeholders of its
/// parameters besides the batch id (`$1`) and the tenant (`$2`).
pub(super) struct RowSource<'a> {
    /// A `SELECT` of the rows to store, with the columns `org`, `name`,
    /// `domain`, `email` and `item` (ids made by the caller: an
    /// [`ItemId::in_batch`], which the outcome is read back by). An item's
    /// position is the one its id holds (`batch_item_position`), computed
    /// only where it is written: once per item (~0.33 µs a call; a column
    /// of the input computed it for every row, again for the new ones).
    pub(super) input: &'a str,
    /// The submission's time.
    pub(super) now: &'a str,
    /// When a pending item counts as lost.
    pub(super) sweep_at: &'a str,
    /// Whether an unchanged, completed organization is processed again.
    pub(super) reprocess_unchanged: &'a str,
    /// Whether the items are inserted in position order (sorted). An
    /// import's are, so that its pending items are paged along the heap;
    /// a chunk of at most `chunk_size` lands on a few pages either way, and
    /// the sort of its outcome was ~0.4 ms of a 1000-row statement.
    pub(super) ordered: bool,
    /// How many rows `input` has, as an expression that does not read it
    /// (a chunk: the length of its item array), or `None`. With it, `input`
    /// is not materialized (the upsert reads it straight), and the rows the
    /// upsert left alone are looked for only when it wrote fewer rows than
    /// that: a submission of new organizations, the common case, skips the
    /// anti-join and a copy of its 1000 input rows (~0.6-0.9 ms of a
    /// 1000-row statement, BENCHMARKS.md session 13). An import's input
    /// (its staged rows) is read once and kept.
    pub(super) input_rows: Option<&'a str>,
}

/// The common table expressions that store the rows of `source` as a
/// batch's organizations, versions and items, deciding each row by
/// `policy`: `input`, `up` (the upsert), `up_count` (how many rows it
/// wrote, how many it inserted), `outcome` (the organization,
/// change and status of every row it did not insert, and the state it
/// had), `items` (all of them), `arrived` (how many items were stored, how
/// many are open: what the callers answer), `versions` (the states updates
/// replaced: copy-on-write, the current version is the organization's row)
/// and `again` (unchanged organizations made pending). A JSON chunk and an
/// import's finish are both this statement, fed by `UNNEST` or by the
/// staged rows.
///
/// A new organization, most rows of most submissions, needs no decision:
/// its item is created and pending, written straight from the upsert's
/// `RETURNING`. Before, every row went through `outcome` (1000
/// rows stored and scanned by six parts): ~0.1x of the floor per
/// 1000-organization submission (BENCHMARKS.md, session 12).
///
/// `outcome` takes the rows the upsert updated or restored from its
/// `RETURNING` (their item is the row's `latest_item`; every item's
/// position is the one its id holds, computed once where `items` writes
/// it) and the rows it left alone from `input`, by an anti-join on the
/// written items (a hash anti-join, at any size): no join of input and
/// upsert, which the planner made a merge join with two sorts (~1 ms of a
/// 1000-row chunk). Not `NOT IN (SELECT …)`: for an import of 1,000,000
/// rows that is planned as a subplan scanned once per row (a hashed one
/// only when the planner expects it to fit in `work_mem`).
///
/// Every part sees the snapshot from before the statement: `e`, read only
/// for a domain the upsert did not insert, is the organization as it was,
/// which tells a restored row (deleted before) from an updated one and
/// gives an untouched row's id and status. Organizations are found by their
/// primary key (tenant, domain) only: `e` is a per-row `LIMIT 1` lookup
/// (not a join the planner could turn into a scan of the tenant's
/// organizations) and `again` an `= ANY` of the primary key. The items of
/// an `ordered` source are written in position order, so the pending items
/// of a large batch are paged (enqueue, listings) along the heap.
pub(super) fn store_rows(policy: ConflictPolicy, source: &RowSource<'_>) -> String {
    let Decision {
        kept,
        created,
        updated,
        unchanged,
        skipped,
        pending,
        completed,
        on_conflict,
    } = Decision::new(policy);
    let RowSource {
        input,
        now,
        sweep_at,
        reprocess_unchanged,
        ordered,
        input_rows,
    } = source;
    let item_order = if *ordered { "ORDER BY position" } else { "" };
    // Read once by the upsert, or twice when some rows were left alone.
    let (materialized, left_alone) = match input_rows {
        Some(rows) => (
            "NOT MATERIALIZED",
            format!("(SELECT written FROM up_count) < {rows} AND "),
        ),
        None => ("", String::new()),
    };
    format!(
        "input AS {materialized} (
            {input}
         ), up AS (
            INSERT INTO organizations AS o (id, tenant, name, domain, contact_email, status, version,
                created_at, updated_at, written_by, written_at, latest_item)
            SELECT org, $2, name, domain, email, '{pending}', 1, {now}, {now}, $1, {now}, item FROM input
            {on_conflict}
            RETURNING o.id, o.domain, o.latest_item AS item, (o.xmax = 0) AS inserted
         ), up_count AS (
            -- One scan of the upsert's rows for every count.
            SELECT count(*) AS written, count(*) FILTER (WHERE inserted) AS inserted FROM up
         ), outcome AS (
            -- The rows the upsert updated or restored: its RETURNING has
            -- all but the replaced state (`e`).
            SELECT up.item, up.domain, up.id AS org,
                CASE WHEN e.deleted_at IS NOT NULL THEN '{created}' ELSE '{updated}' END AS change,
                '{pending}' AS status,
                e.version AS was_version, e.name AS was_name, e.contact_email AS was_email,
                e.written_by AS was_by, COALESCE(e.written_at, e.updated_at) AS was_at
            FROM up
            LEFT JOIN LATERAL (
                SELECT p.deleted_at, p.version, p.name, p.contact_email, p.written_by, p.written_at,
                    p.updated_at FROM organizations p
                WHERE p.tenant = $2 AND p.domain = up.domain
                LIMIT 1
            ) e ON true
            WHERE NOT up.inserted
            UNION ALL
            -- The rows it left alone: an anti-join on the items it wrote
            -- (see above: not `NOT IN`, quadratic for a large import).
            SELECT i.item, i.domain, e.id, '{kept}',
                CASE WHEN '{kept}' = '{skipped}' OR (e.status = '{completed}' AND NOT {reprocess_unchanged})
                THEN '{completed}' ELSE '{pending}' END,
                NULL, NULL, NULL, NULL, NULL
            FROM input i
            LEFT JOIN LATERAL (
                SELECT p.id, p.status FROM organization_states p
                WHERE p.tenant = $2 AND p.domain = i.domain
                LIMIT 1
            ) e ON true
            WHERE {left_alone}NOT EXISTS (SELECT 1 FROM up WHERE up.item = i.item)
         ), items AS (
            -- A new organization's item comes straight from the upsert:
            -- created and pending, nothing replaced, no row of `outcome`.
            INSERT INTO batch_items (id, batch_id, tenant, position, organization_id, domain, status,
                change_kind, attempts, available_at, sweep_at, errors, created_at, updated_at, finished_at)
            SELECT item, $1, $2, position, org, domain, status, change, 0, {now}, {sweep_at}, '[]', {now}, {now},
                CASE WHEN status = '{completed}' THEN {now} END
            FROM (
                -- An item's position is the one its id holds, computed
                -- here once for every stored item.
                SELECT item, batch_item_position(item) AS position, org, domain, status, change
                FROM (
                    SELECT item, id AS org, domain, '{pending}' AS status, '{created}' AS change
                    FROM up WHERE inserted
                    UNION ALL
                    SELECT item, org, domain, status, change FROM outcome
                ) decided
            ) stored {item_order}
         ), arrived AS (
            -- What the callers answer: how many items were stored, and
            -- how many of them are still to process.
            SELECT (SELECT inserted FROM up_count) + count(*) AS stored,
                (SELECT inserted FROM up_count)
                    + count(*) FILTER (WHERE status <> '{completed}') AS open
            FROM outcome
         ), versions AS (
            -- Copy-on-write: the state an update (or a restore) replaces
            -- becomes a version; the current one is the row itself. A row
            -- written before has its version already (nothing to add).
            INSERT INTO organization_versions (organization_id, version, name, contact_email, batch_id, created_at)
            SELECT org, was_version, was_name, was_email, was_by, was_at FROM outcome
            WHERE change IN ('{created}', '{updated}') AND was_version IS NOT NULL
            ON CONFLICT DO NOTHING
         ), again AS (
            -- Found by `= ANY` of the key (a join could be planned as a
            -- scan of the table); the new item by a scan of the chunk's
            -- unchanged rows, which only a reprocessing submission has.
            -- The `EXISTS` is a one-time filter: without such rows the
            -- table is not read at all. (Seen without it: a bitmap scan of
            -- every organization of the tenant, `domain = ANY` as a mere
            -- filter, when the statistics thought the tenant small.)
            UPDATE organizations o SET status = '{pending}',
                latest_item = (SELECT a.item FROM outcome a
                    WHERE a.domain = o.domain AND a.change = '{unchanged}' LIMIT 1)
            WHERE EXISTS (SELECT 1 FROM outcome WHERE change = '{unchanged}' AND status = '{pending}')
                AND tenant = $2 AND domain = ANY(ARRAY(
                SELECT domain FROM outcome WHERE change = '{unchanged}' AND status = '{pending}'))
         ), counted AS (
            -- Items completed on arrival (skipped, or unchanged and done).
            {counted}
         )",
        counted = count_finishes(
            &format!("(SELECT $2::text AS tenant, status, {now}::timestamptz AS finished_at FROM outcome) arrived"),
            Direction::Add
        ),
    )
}

/// Runs [`chunk_statement`] for `chunk` on `exec`: the chunk's stored items,
/// in the chunk's order.
async fn run_chunk<'e, E>(
    exec: E,
    s: &Submission,
    chunk: &[(u32, onboarding_core::model::NewOrganization)],
    batch: bool,
) -> Result<Vec<StoredItem>>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let total = i64::try_from(s.organizations.len()).unwrap_or(i64::MAX);
    let item_ids: Vec<ItemId> = chunk
        .iter()
        .map(|(p, _)| ItemId::in_batch(s.batch_id, *p))
        .collect();
    let items: Vec<Uuid> = item_ids.iter().map(|i| i.0).collect();
    let orgs: Vec<Uuid> = item_ids
        .iter()
        .map(|i| OrganizationId::first_stored_by(*i).0)
        .collect();
    let names: Vec<&str> = chunk.iter().map(|(_, o)| o.name.as_str()).collect();
    let domains: Vec<&str> = chunk.iter().map(|(_, o)| o.domain.as_str()).collect();
    let emails: Vec<&str> = chunk
        .iter()
        .map(|(_, o)| o.contact_email.as_str())
        .collect();
    let sql = chunk_statement(s.policy, batch);
    let rows = bind_new_batch(sqlx::query(&sql), s, total)
        .bind(&orgs)
        .bind(&names)
        .bind(&domains)
        .bind(&emails)
        .bind(&items)
        .bind(s.sweep_at)
        .bind(s.reprocess_unchanged)
        .fetch_all(exec)
        .await
        .db()?;
    // Rows come back in any order, each named by its item, whose id holds
    // its position; a chunk's positions ascend (a found one is the item's).
    let mut stored: Vec<Option<StoredItem>> = Vec::new();
    stored.resize_with(chunk.len(), || None);
    let mut count = None;
    for row in rows {
        if let Some(n) = row.try_get::<Option<i64>, _>("stored").db()? {
            count = Some(n);
            continue;
        }
        let item = ItemId(row.try_get("item").db()?);
        let change: String = row.try_get("change").db()?;
        let status: String = row.try_get("status").db()?;
        let position = item.position();
        let found = chunk.binary_search_by_key(&position, |(p, _)| *p).ok();
        let (Some(i), Some(org)) = (found, found.and_then(|i| chunk.get(i))) else {
            return Err(Error::internal(format!(
                "the store returned item {item}, not one of the chunk's"
            )));
        };
        let Some(slot) = stored.get_mut(i).filter(|slot| slot.is_none()) else {
            return Err(Error::internal(format!(
                "the store returned item {item} twice"
            )));
        };
        *slot = Some(StoredItem {
            item_id: item,
            position,
            organization_id: OrganizationId(row.try_get("org").db()?),
            domain: org.1.domain.clone(),
            change: rows::change(&change)?,
            status: rows::status(&status)?,
        });
    }
    if count != i64::try_from(chunk.len()).ok() {
        return Err(Error::internal(format!(
            "the store stored {count:?} items of a chunk of {}",
            chunk.len()
        )));
    }
    // The rest are new organizations (see `chunk_statement`).
    chunk
        .iter()
        .zip(item_ids)
        .zip(stored)
        .map(|(((position, org), item_id), stored)| {
            Ok(stored.unwrap_or_else(|| StoredItem {
                item_id,
                position: *position,
                organization_id: OrganizationId::first_stored_by(item_id),
                domain: org.domain.clone(),
                change: Change::Created,
                status: ItemStatus::Pending,
            }))
        })
        .collect()
}

/// Upserts one chunk of a submission's organizations and inserts their
/// items, in the caller's transaction (a submission of several chunks; the
/// import's `finish_import`).
pub(super) async fn store_chunk(
    tx: &mut Tx,
    s: &Submission,
    chunk: &[(u32, onboarding_core::model::NewOrganization)],
) -> Result<Vec<StoredItem>> {
    run_chunk(&mut **tx, s, chunk, false).await
}

/// The batch row of a submission stored in several statements, completed
/// at once when every item already was (all skipped or unchanged).
pub(super) async fn close_stored_batch(
    tx: &mut Tx,
    s: &Submission,
    all_done: bool,
) -> Result<BatchRow> {
    sqlx::query_as(&format!(
        "UPDATE batches SET completed_at = CASE WHEN $2 THEN $3 END WHERE id = $1 RETURNING {BATCH_COLUMNS}"
    ))
    .bind(s.batch_id.0)
    .bind(all_done)
    .bind(s.now)
    .fetch_one(&mut **tx)
    .await
    .db()
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

/// What one sweep statement found: the jobs, the items it read, and
/// whether some batch has items beyond the window it read.
struct SweepPass {
    jobs: Vec<Job>,
    read: i64,
    more: bool,
}

/// One sweep statement (see [`OrgRepository::sweep`] of [`PgRepository`]).
async fn sweep_windows(
    pool: &PgPool,
    now: Timestamp,
    pending_due: Timestamp,
    stale_after: Duration,
    limit: u32,
) -> Result<SweepPass> {
    // Batch by batch: the least recently swept open batches, each read
    // through its range of item ids (in position order) from where its last
    // sweep stopped, at most `SWEEP_WINDOW` items per batch and statement
    // (a pass over a 1,000,000-item batch takes several, none a full scan
    // of it). No item index reads the columns claims and finishes change,
    // which keeps those HOT. A pending item a claim holds is left out (the
    // claim is taking it): the sweep waits for no item lock, so it cannot
    // deadlock with a claim, whose failure would leave its messages
    // invisible until the queue's visibility timeout. The last row (no
    // `id`) tells how many items were read and whether a window stopped
    // before the end of its batch.
    let rows = sqlx::query(
        "WITH due AS (
            SELECT id, sweep_position FROM batches WHERE completed_at IS NULL
            ORDER BY swept_at NULLS FIRST, created_at
            LIMIT $4
            FOR UPDATE SKIP LOCKED
        ), scanned AS (
            SELECT w.* FROM due d CROSS JOIN LATERAL (
                SELECT i.id, i.batch_id, i.position, i.tenant, i.available_at,
                    i.status, i.sweep_at, i.lease_until
                FROM batch_items i
                WHERE i.id BETWEEN batch_item_id(d.id, d.sweep_position) AND batch_item_last(d.id)
                    AND i.batch_id = d.id
                ORDER BY i.id LIMIT $5
            ) w
        ), found AS (
            SELECT id, tenant, available_at, status FROM scanned
            WHERE CASE status
                WHEN 'pending' THEN sweep_at <= $6
                WHEN 'processing' THEN lease_until <= $1
                ELSE false END
            ORDER BY sweep_at
            LIMIT $3
        ), locked AS (
            SELECT b.id FROM batch_items b JOIN found f ON b.id = f.id
            WHERE f.status = 'pending' AND b.status = 'pending' AND b.sweep_at <= $6
            FOR UPDATE OF b SKIP LOCKED
        ), bumped AS (
            UPDATE batch_items b SET sweep_at = $2 FROM locked l WHERE b.id = l.id
        ), windows AS (
            SELECT batch_id, count(*) AS n, max(position) AS last FROM scanned GROUP BY batch_id
        ), marked AS (
            -- Next time: past this window, or from the start after the
            -- last one; the same window while `found` was cut short.
            UPDATE batches b SET swept_at = $1, sweep_position = CASE
                WHEN (SELECT count(*) FROM found) >= $3 THEN b.sweep_position
                WHEN w.n >= $5 THEN w.last + 1
                ELSE 0 END
            FROM due LEFT JOIN windows w ON w.batch_id = due.id
            WHERE b.id = due.id
        )
        SELECT id, tenant, available_at, NULL::bigint AS read, NULL::bool AS more FROM found
        WHERE status = 'processing' OR id IN (SELECT id FROM locked)
        UNION ALL
        SELECT NULL, NULL, NULL, (SELECT count(*) FROM scanned),
            EXISTS (SELECT 1 FROM windows WHERE n >= $5)",
    )
    .bind(now)
    .bind(after(now, stale_after))
    .bind(i64::from(limit))
    .bind(SWEEP_BATCHES)
    .bind(SWEEP_WINDOW)
    .bind(pending_due)
    .fetch_all(pool)
    .await
    .db()?;
    let mut pass = SweepPass {
        jobs: Vec::with_capacity(rows.len()),
        read: 0,
        more: false,
    };
    for r in rows {
        let Some(id) = r.try_get::<Option<Uuid>, _>("id").db()? else {
            pass.read = r.try_get::<Option<i64>, _>("read").db()?.unwrap_or(0);
            pass.more = r.try_get::<Option<bool>, _>("more").db()?.unwrap_or(false);
            continue;
        };
        let available: Timestamp = r.try_get("available_at").db()?;
        let tenant: String = r.try_get("tenant").db()?;
        pass.jobs.push(Job {
            item_id: ItemId(id),
            tenant: TenantId::parse(tenant)?,
            not_before: (available > now).then_some(available),
        });
    }
    Ok(pass)
}

/// The position of batch `b`'s open item of the highest position (NULL
/// when none is left), looked for from the end of the batch.
///
/// Workers finish a batch roughly in position order, so while it runs its
/// last items are still open and the backward scan of the batch's range of
/// item ids (in position order) stops at the first entry. A `NOT EXISTS` does not: the
/// planner turns it into an anti-join that scans forward (or the whole
/// table), past every finished item first; for each flush of a
/// 1,000,000-item batch, up to a million index entries and heap visits.
/// A scalar subquery keeps its `ORDER BY … LIMIT 1` (`EXISTS` drops it).
fn last_open_item() -> String {
    format!(
        "SELECT i.position FROM batch_items i
         WHERE {of_batch} AND i.status IN ('pending', 'processing')
         ORDER BY i.id DESC LIMIT 1",
        of_batch = in_batch("i.", "b.id")
    )
}

#[async_trait]
impl OrgRepository for PgRepository {
    async fn store_submission(&self, s: &Submission) -> Result<StoreResult> {
        if s.organizations.len() <= s.chunk_size.max(1) {
            return self.store_in_one_statement(s).await;
        }
        let mut tx = self.begin().await?;
        let total = i64::try_from(s.organizations.len()).unwrap_or(i64::MAX);
        if !insert_batch(&mut tx, s, total).await? {
            tx.rollback().await.db()?;
            return self.earlier(s).await;
        }

        let mut items = Vec::with_capacity(s.organizations.len());
        for chunk in s.organizations.chunks(s.chunk_size.max(1)) {
            items.extend(store_chunk(&mut tx, s, chunk).await?);
        }
        let all_done = items.iter().all(|i| i.status == ItemStatus::Completed);
        let batch = close_stored_batch(&mut tx, s, all_done).await?;
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
                RETURNING b.id, b.batch_id, b.tenant, b.attempts, b.change_kind, b.domain
            )
            SELECT c.id AS item_id, c.batch_id, c.tenant, c.attempts, c.change_kind, t.trace_parent, {org_cols}
            FROM c JOIN organizations o ON o.tenant = c.tenant AND o.domain = c.domain
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
        item_ids(rows)
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
        if finishes
            .iter()
            .all(|f| matches!(f.resolution, Resolution::Completed))
        {
            return self.complete_items(finishes, now).await;
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
            sweep.push(after(at, stale_after));
            messages.push(msg);
            permanent.push(perm);
        }
        let sql = format!(
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
                RETURNING b.id, b.tenant, b.status, b.finished_at
            ), counted AS (
                -- The organization is not written: its status is its
                -- latest item's (the view `organization_states`).
                {counted}
            )
            SELECT id FROM u",
            counted = count_finishes("u", Direction::Add),
        );
        let rows = sqlx::query(&sql)
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
        item_ids(rows)
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
                RETURNING b.id, b.tenant
            )
            -- The organization is not written: its status is its latest
            -- item's (the view `organization_states`).
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

    async fn sweep(
        &self,
        now: Timestamp,
        pending_due: Timestamp,
        stale_after: Duration,
        limit: u32,
    ) -> Result<Vec<Job>> {
        let mut read = 0;
        loop {
            let pass = sweep_windows(&self.pool, now, pending_due, stale_after, limit).await?;
            read += pass.read;
            if !pass.jobs.is_empty() || !pass.more || read >= SWEEP_BUDGET {
                return Ok(pass.jobs);
            }
        }
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
             WHERE b.id = ANY($1) AND b.completed_at IS NULL AND ({last_open}) IS NULL
             RETURNING {BATCH_COLUMNS}",
            last_open = last_open_item(),
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
                WHERE b.completed_at IS NULL AND ({last_open}) IS NULL
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
                .join(", "),
            last_open = last_open_item(),
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
                WHERE {of_batch} AND status = 'pending'
            )
            -- The organizations are not written: their status is their
            -- latest item's (the view `organization_states`).
            UPDATE batches SET cancelled_at = COALESCE(cancelled_at, $2) WHERE id = $1
            RETURNING {BATCH_COLUMNS}",
            of_batch = in_batch("", "$1"),
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
        // The batch's ids after `after_position`, in position order.
        let first = match query.after_position {
            None => Some(0),
            Some(after) => after.checked_add(1),
        };
        let Some(first) = first else {
            return rows::page(Vec::new(), limit);
        };
        let rows: Vec<ItemRow> = sqlx::query_as(&format!(
            "SELECT {ITEM_COLUMNS} FROM batch_items
             WHERE id BETWEEN $3 AND $4 AND batch_id = $1 AND ($2::text IS NULL OR status = $2)
             ORDER BY id LIMIT $5"
        ))
        .bind(batch.0)
        .bind(query.status.map(ItemStatus::as_str))
        .bind(ItemId::in_batch(batch, first).0)
        .bind(ItemId::batch_range(batch).1 .0)
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
        throughput::buckets(&self.pool, tenant, since, bucket_seconds).await
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
        super::organizations::delete(&self.pool, tenant, domain, now).await
    }

    async fn prune(&self, finished_before: Timestamp, limit: u32) -> Result<u64> {
        // Items have no foreign key (it cost a trigger per inserted row): delete them explicitly.
        let sql = format!(
            "WITH gone AS (
                DELETE FROM batches WHERE id IN (
                    SELECT id FROM batches WHERE completed_at < $1 ORDER BY completed_at LIMIT $2)
                RETURNING id
            ), items AS (
                DELETE FROM batch_items i USING gone g WHERE {of_batch}
                RETURNING i.id, i.tenant, i.domain, i.status, i.finished_at
            ), settled AS (
                -- An organization whose latest item goes keeps its status.
                UPDATE organizations o SET latest_item = NULL,
                    status = CASE d.status WHEN 'processing' THEN 'pending' ELSE d.status END
                FROM items d
                WHERE o.tenant = d.tenant AND o.domain = d.domain AND o.latest_item = d.id
            ), uncounted AS (
                {uncounted}
            ), uploads AS (
                -- A file's staging goes with its batch; an upload still
                -- `receiving` past the cutoff was abandoned by a process that
                -- died (unless sealed: a sweeper finishes it).
                DELETE FROM imports WHERE batch_id IN (SELECT id FROM gone)
                    OR batch_id IN (SELECT batch_id FROM imports
                        WHERE state = 'receiving' AND sealed_at IS NULL AND started_at < $1 LIMIT $2)
                RETURNING batch_id
            ), staged AS (
                DELETE FROM import_rows WHERE batch_id IN (SELECT batch_id FROM uploads)
            ), refused AS (
                DELETE FROM import_rejections WHERE batch_id IN (SELECT batch_id FROM uploads)
            )
            SELECT (SELECT count(*) FROM gone) AS pruned,
                COALESCE(k.tenants, '{{}}') AS tenants, COALESCE(k.seconds, '{{}}') AS seconds
            FROM (SELECT array_agg(tenant) AS tenants, array_agg(second) AS seconds FROM uncounted) k",
            uncounted = count_finishes("items", Direction::Remove),
            of_batch = in_batch("i.", "g.id"),
        );
        let (pruned, tenants, seconds): (i64, Vec<String>, Vec<i64>) = sqlx::query_as(&sql)
            .bind(finished_before)
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await
            .db()?;
        // The counters the prune emptied (a separate statement: one
        // statement cannot update a row and then delete it).
        throughput::forget_empty(&self.pool, tenants, seconds).await?;
        Ok(u64::try_from(pruned).unwrap_or(0))
    }

    fn imports(&self) -> Option<&dyn onboarding_core::import::ImportStore> {
        Some(self)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.db()?;
        Ok(())
    }
}

/// The item ids and lease tokens of `leases`, as two arrays to bind.
fn split<'a>(leases: impl IntoIterator<Item = &'a Lease>) -> (Vec<Uuid>, Vec<Uuid>) {
    leases.into_iter().map(|l| (l.item_id.0, l.token.0)).unzip()
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
