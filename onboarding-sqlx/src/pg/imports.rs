//! `ImportStore` on PostgreSQL: rows staged with a binary `COPY` per chunk,
//! repeated domains found by one grouping once the body has arrived; the
//! finish stores every staged row with one set-based statement.

use std::collections::HashMap;

use onboarding_core::import::{ImportRow, RepeatsRefused, RowError};
use onboarding_core::model::{BatchId, ConflictPolicy, Domain, ItemId, OrganizationId, TenantId};
use onboarding_core::repository::{StoreResult, Submission};
use onboarding_core::{Error, Result};
use sqlx::{PgPool, Row};

use super::repository::{
    close_stored_batch, insert_batch, store_rows, PgRepository, RowSource, Tx,
};
use crate::error::DbResultExt;
use crate::rows::{BatchRow, BATCH_COLUMNS};
use crate::staging::{numbered, split_duplicates, RECEIVING, STORED};

fn not_receiving(batch: BatchId) -> Error {
    Error::not_found(format!("no upload {batch} is being received"))
}

/// Locks the upload's row when it is still the request's: receiving, not sealed.
async fn lock_open(tx: &mut Tx, batch: BatchId) -> Result<bool> {
    let locked = sqlx::query(
        "SELECT 1 FROM imports WHERE batch_id = $1 AND state = $2 AND sealed_at IS NULL FOR UPDATE",
    )
    .bind(batch.0)
    .bind(RECEIVING)
    .fetch_optional(&mut **tx)
    .await
    .db()?;
    Ok(locked.is_some())
}

/// The `COPY` binary format's header: signature, flags, no extension.
const COPY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Appends one field of a `COPY` binary tuple: its length, then its bytes
/// (`None`: SQL NULL).
fn copy_field(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        Some(bytes) => {
            // Fields are bounded well below 2 GiB (a line is at most 64 KiB).
            out.extend_from_slice(&i32::try_from(bytes.len()).unwrap_or(i32::MAX).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        None => out.extend_from_slice(&(-1_i32).to_be_bytes()),
    }
}

/// The `COPY` binary data of staged rows: nothing to escape, and uuids and
/// numbers in their 16 and 8 bytes (the text format's uuids alone cost the
/// server ~1.3 s per 1,000,000 rows to parse).
fn copy_binary(batch: BatchId, rows: &[&ImportRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(COPY_HEADER.len() + rows.len() * 160 + 2);
    out.extend_from_slice(COPY_HEADER);
    let batch_bytes = batch.0.into_bytes();
    for row in rows {
        let item_id = ItemId::in_batch(batch, row.line);
        out.extend_from_slice(&8_i16.to_be_bytes());
        copy_field(&mut out, Some(&batch_bytes));
        copy_field(&mut out, Some(&i64::from(row.line).to_be_bytes()));
        // The ids the finish gives the row's organization (if new) and item.
        copy_field(
            &mut out,
            Some(&OrganizationId::first_stored_by(item_id).0.into_bytes()),
        );
        copy_field(&mut out, Some(&item_id.0.into_bytes()));
        copy_field(&mut out, Some(row.organization.name.as_bytes()));
        copy_field(&mut out, Some(row.organization.domain.as_str().as_bytes()));
        copy_field(&mut out, Some(row.organization.contact_email.as_bytes()));
        copy_field(&mut out, row.external_id.as_deref().map(str::as_bytes));
    }
    out.extend_from_slice(&(-1_i16).to_be_bytes());
    out
}

/// Stages rows with `COPY … FROM STDIN` (binary format), the fastest way
/// into a table (no statement per row, no parameter arrays).
async fn copy_rows(tx: &mut Tx, batch: BatchId, rows: &[&ImportRow]) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let data = copy_binary(batch, rows);
    let mut copy = tx
        .copy_in_raw(
            "COPY import_rows (batch_id, line_no, organization_id, item_id, name, domain, contact_email, external_id) FROM STDIN (FORMAT binary)",
        )
        .await?;
    if let Err(e) = copy.send(data).await {
        // The connection must leave the copy either way; the send's error is the one to report.
        copy.abort("send failed").await.ok();
        return Err(e);
    }
    copy.finish().await?;
    Ok(())
}

async fn insert_rejections<'a>(
    tx: &mut Tx,
    batch: BatchId,
    refused: impl IntoIterator<Item = &'a RowError>,
) -> Result<()> {
    let numbered = numbered(refused);
    if numbered.is_empty() {
        return Ok(());
    }
    let lines: Vec<i64> = numbered.iter().map(|(_, e)| i64::from(e.line)).collect();
    let seqs: Vec<i32> = numbered.iter().map(|(s, _)| *s).collect();
    let columns: Vec<Option<&str>> = numbered.iter().map(|(_, e)| e.column.as_deref()).collect();
    let codes: Vec<&str> = numbered.iter().map(|(_, e)| e.code.as_str()).collect();
    let details: Vec<&str> = numbered.iter().map(|(_, e)| e.detail.as_str()).collect();
    let values: Vec<Option<&str>> = numbered.iter().map(|(_, e)| e.value.as_deref()).collect();
    let ids: Vec<Option<&str>> = numbered
        .iter()
        .map(|(_, e)| e.external_id.as_deref())
        .collect();
    sqlx::query(
        "INSERT INTO import_rejections (batch_id, line_no, seq, column_name, code, detail, field_value, external_id)
         SELECT $1, u.* FROM UNNEST($2::bigint[], $3::int[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])
            AS u(line_no, seq, column_name, code, detail, field_value, external_id)
         ON CONFLICT DO NOTHING",
    )
    .bind(batch.0)
    .bind(lines)
    .bind(seqs)
    .bind(columns)
    .bind(codes)
    .bind(details)
    .bind(values)
    .bind(ids)
    .execute(&mut **tx)
    .await
    .db()?;
    Ok(())
}

async fn delete_upload(tx: &mut Tx, batch: BatchId) -> Result<()> {
    for table in ["import_rows", "import_rejections", "imports"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE batch_id = $1"))
            .bind(batch.0)
            .execute(&mut **tx)
            .await
            .db()?;
    }
    Ok(())
}

/// Stores every staged row of the upload as the batch's organizations and
/// items with one statement, set-based: [`store_rows`], the statement of a
/// JSON chunk, fed by the staged rows (ids made while staging); answers
/// whether every item is already completed.
async fn store_staged(tx: &mut Tx, s: &Submission) -> Result<bool> {
    let sql = staged_statement(s.policy);
    let row = sqlx::query(&sql)
        .bind(s.batch_id.0)
        .bind(s.tenant.as_str())
        .bind(s.now)
        .bind(s.sweep_at)
        .bind(s.reprocess_unchanged)
        .fetch_one(&mut **tx)
        .await
        .db()?;
    let open: i64 = row.try_get("open").db()?;
    Ok(open == 0)
}

/// The statement of [`store_staged`]: parameters the batch id, the tenant,
/// the submission's time, the sweep time and `reprocess_unchanged`.
fn staged_statement(policy: ConflictPolicy) -> String {
    let ctes = store_rows(
        policy,
        &RowSource {
            input: "SELECT COALESCE(organization_id, gen_random_uuid()) AS org, name, domain,
                contact_email AS email, COALESCE(item_id, batch_item_id($1, line_no)) AS item
                FROM import_rows WHERE batch_id = $1",
            now: "$3",
            sweep_at: "$4",
            reprocess_unchanged: "$5",
            ordered: true,
            input_rows: None,
        },
    );
    format!("WITH {ctes} SELECT open FROM arrived")
}

/// Rows of a finished import from which the statistics of the tables it
/// filled are refreshed at once.
const ANALYZE_AFTER_ROWS: i64 = 20_000;

/// Refreshes the planner's statistics of the tables a large import filled.
///
/// Autovacuum analyzes them only some time later. Until then the planner
/// believes the batch has a handful of items and pages its pending items
/// (the enqueue, `GET …/organizations`) with a bitmap scan of every
/// remaining position and a sort: 0.8-1.5 s a page of 2,000 from a
/// 1,000,000-row import, instead of an ordered index scan of milliseconds.
/// `ANALYZE` samples a fixed number of rows, so it costs about the same
/// whatever the size of the table. A failure only leaves it to autovacuum.
async fn refresh_statistics(pool: &PgPool, batch: BatchId) {
    if let Err(e) = sqlx::query("ANALYZE batch_items, organizations, organization_versions")
        .execute(pool)
        .await
    {
        tracing::warn!(batch_id = %batch, error = %e, "refreshing statistics after an import failed");
    }
}

// The `ImportStore` itself: its reads are shared, its writes these functions.
crate::staging::import_store!(PgRepository);

/// `ImportStore::append_import`: stages a chunk.
///
/// The chunk's own repeats are refused in memory and the rest is
/// `COPY`ed; a domain staged by an earlier chunk is left to
/// [`refuse_repeats`] (no index on the staged domains: keeping one cost
/// most of the staging).
async fn append(
    pool: &PgPool,
    batch: BatchId,
    rows: &[ImportRow],
    rejected: &[RowError],
) -> Result<Vec<RowError>> {
    let mut tx = pool.begin().await.db()?;
    // Staged rows are promised to no one before the seal, whose own commit
    // waits for the WAL to be flushed (and with it every staging commit
    // before it): a staging commit need not wait for its flush.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await
        .db()?;
    if !lock_open(&mut tx, batch).await? {
        return Err(not_receiving(batch));
    }
    let (fresh, duplicates) = split_duplicates(rows, &HashMap::new());
    copy_rows(&mut tx, batch, &fresh).await.db()?;
    insert_rejections(&mut tx, batch, rejected.iter().chain(&duplicates)).await?;
    let refused = onboarding_core::import::refused_rows(rejected);
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    sqlx::query(
        "UPDATE imports SET rows_received = rows_received + $2, rows_stored = rows_stored + $3,
            rows_rejected = rows_rejected + $4 WHERE batch_id = $1",
    )
    .bind(batch.0)
    .bind(count(rows.len()) + i64::try_from(refused).unwrap_or(i64::MAX))
    .bind(count(fresh.len()))
    .bind(i64::try_from(refused).unwrap_or(i64::MAX) + count(duplicates.len()))
    .execute(&mut *tx)
    .await
    .db()?;
    tx.commit().await.db()?;
    Ok(duplicates)
}

/// `ImportStore::refuse_repeats`: one grouping of the upload's staged rows
/// by domain; every row after a domain's first line is unstaged and
/// refused, in the words of [`RowError::duplicate`].
async fn refuse_repeats(pool: &PgPool, batch: BatchId, quote: usize) -> Result<RepeatsRefused> {
    let mut tx = pool.begin().await.db()?;
    if !lock_open(&mut tx, batch).await? {
        return Err(not_receiving(batch));
    }
    let rows = sqlx::query(
        "WITH firsts AS (
            SELECT domain, min(line_no) AS first FROM import_rows WHERE batch_id = $1
            GROUP BY domain HAVING count(*) > 1
        ), gone AS (
            DELETE FROM import_rows r USING firsts f
            WHERE r.batch_id = $1 AND r.domain = f.domain AND r.line_no > f.first
            RETURNING r.line_no, r.domain, r.external_id, f.first
        ), refused AS (
            INSERT INTO import_rejections (batch_id, line_no, seq, column_name, code, detail, field_value, external_id)
            SELECT $1, line_no, 0, 'domain', $2, 'domain ' || domain || ' already appears at line ' || first,
                domain, external_id FROM gone
            ON CONFLICT DO NOTHING
        ), counted AS (
            UPDATE imports SET rows_stored = rows_stored - (SELECT count(*) FROM gone),
                rows_rejected = rows_rejected + (SELECT count(*) FROM gone)
            WHERE batch_id = $1
        )
        SELECT line_no, domain, external_id, first, count(*) OVER () AS total
        FROM gone ORDER BY line_no LIMIT $3",
    )
    .bind(batch.0)
    .bind(onboarding_core::validate::codes::DOMAIN_DUPLICATE)
    .bind(i64::try_from(quote).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await
    .db()?;
    tx.commit().await.db()?;
    let mut refused = RepeatsRefused::default();
    for r in rows {
        refused.count = u64::try_from(r.try_get::<i64, _>("total").db()?).unwrap_or(0);
        let line: i64 = r.try_get("line_no").db()?;
        let first: i64 = r.try_get("first").db()?;
        refused.first.push(RowError::repeat(
            u32::try_from(line).unwrap_or(u32::MAX),
            &Domain::from_normalized(r.try_get::<String, _>("domain").db()?),
            r.try_get("external_id").db()?,
            u32::try_from(first).unwrap_or(0),
        ));
    }
    Ok(refused)
}

/// `ImportStore::finish_import`: stores the staged rows as the batch.
async fn finish(pool: &PgPool, s: &Submission) -> Result<StoreResult> {
    let mut tx = pool.begin().await.db()?;
    let stored: Option<i64> = sqlx::query_scalar(
        "SELECT rows_stored FROM imports WHERE batch_id = $1 AND state = $2 FOR UPDATE",
    )
    .bind(s.batch_id.0)
    .bind(RECEIVING)
    .fetch_optional(&mut *tx)
    .await
    .db()?;
    let Some(total) = stored else {
        return Err(not_receiving(s.batch_id));
    };
    if !insert_batch(&mut tx, s, total).await? {
        let batch: BatchRow = sqlx::query_as(&format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE tenant = $1 AND idempotency_key = $2"
        ))
        .bind(s.tenant.as_str())
        .bind(s.idempotency_key.as_deref())
        .fetch_one(&mut *tx)
        .await
        .db()?;
        delete_upload(&mut tx, s.batch_id).await?;
        tx.commit().await.db()?;
        let batch = batch.into_model()?;
        return Ok(StoreResult::for_earlier(batch, &s.request_hash));
    }
    let all_done = store_staged(&mut tx, s).await?;
    let batch = close_stored_batch(&mut tx, s, all_done).await?;
    sqlx::query("UPDATE imports SET state = $2 WHERE batch_id = $1")
        .bind(s.batch_id.0)
        .bind(STORED)
        .execute(&mut *tx)
        .await
        .db()?;
    tx.commit().await.db()?;
    if total >= ANALYZE_AFTER_ROWS {
        refresh_statistics(pool, s.batch_id).await;
    }
    Ok(StoreResult::Stored {
        batch: batch.into_model()?,
        items: Vec::new(),
    })
}

/// `ImportStore::abort_import`: discards an upload still receiving, unsealed.
async fn abort(pool: &PgPool, batch: BatchId) -> Result<()> {
    let mut tx = pool.begin().await.db()?;
    if lock_open(&mut tx, batch).await? {
        delete_upload(&mut tx, batch).await?;
    }
    tx.commit().await.db()?;
    Ok(())
}

/// `ImportStore::staged_rows`: staged rows by line.
async fn staged(
    pool: &PgPool,
    tenant: &TenantId,
    batch: BatchId,
    lines: &[u32],
) -> Result<Vec<ImportRow>> {
    let lines: Vec<i64> = lines.iter().map(|l| i64::from(*l)).collect();
    let rows = sqlx::query(
        "SELECT r.line_no, r.name, r.domain, r.contact_email, r.external_id
         FROM import_rows r JOIN imports i ON i.batch_id = r.batch_id
         WHERE r.batch_id = $1 AND i.tenant = $2 AND r.line_no = ANY($3)",
    )
    .bind(batch.0)
    .bind(tenant.as_str())
    .bind(lines)
    .fetch_all(pool)
    .await
    .db()?;
    rows.into_iter()
        .map(|r| crate::staging::staged_row(&r))
        .collect()
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use onboarding_core::model::{BatchId, ConflictPolicy};
    use sqlx::Connection;

    use crate::testing::TestDatabase;
    use crate::Engine;

    /// The finish of a large import finds the rows its upsert left alone
    /// with a hash anti-join. `NOT IN (SELECT …)` was planned, for 300,000
    /// staged rows, as a subplan scanned once per row (quadratic: a
    /// 1,000,000-row import would not finish); a `NOT IN` is hashed only
    /// while the planner expects its table to fit in `work_mem`.
    #[tokio::test]
    async fn a_large_imports_finish_is_planned_without_a_subplan_per_row() {
        let db = TestDatabase::create_labelled(Engine::Postgres, "finish_plan").await;
        let backend = db.connect(TestDatabase::options()).await;
        let mut c = sqlx::PgConnection::connect(db.url())
            .await
            .expect("connect");
        let batch = BatchId::new();
        sqlx::query(
            "INSERT INTO import_rows (batch_id, line_no, name, domain, contact_email)
             SELECT $1, g, 'Org', 'org' || g || '.example.com', 'ops@example.com'
             FROM generate_series(1, 300000) g",
        )
        .bind(batch.0)
        .execute(&mut c)
        .await
        .expect("stage rows");
        sqlx::query("ANALYZE import_rows")
            .execute(&mut c)
            .await
            .expect("analyze");
        for policy in [ConflictPolicy::Update, ConflictPolicy::Skip] {
            let plan: Vec<String> =
                sqlx::query_scalar(&format!("EXPLAIN {}", super::staged_statement(policy)))
                    .bind(batch.0)
                    .bind("tenant-a")
                    .bind(chrono::Utc::now())
                    .bind(chrono::Utc::now())
                    .bind(false)
                    .fetch_all(&mut c)
                    .await
                    .expect("explain");
            let plan = plan.join("\n");
            assert!(plan.contains("Anti Join"), "{policy:?}:\n{plan}");
            assert!(!plan.contains("NOT (SubPlan"), "{policy:?}:\n{plan}");
        }
        c.close().await.expect("close");
        backend.close().await;
    }
}
