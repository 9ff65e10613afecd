//! `ImportStore` for MySQL/MariaDB and SQLite: rows staged with multi-row
//! inserts per chunk; the finish reads them back in chunks (keyset by line)
//! inside one write transaction and stores them with the submission's own
//! `store_chunk`.
//!
//! Compiled once per engine (`#[path]`), like `repository.rs`.

use std::collections::HashMap;

use onboarding_core::import::{ImportRow, RowError};
use onboarding_core::model::{BatchId, ItemStatus, TenantId};
use onboarding_core::repository::{StoreResult, Submission};
use onboarding_core::{Error, Result};
use sqlx::{Pool, QueryBuilder, Row};

use super::dialect;
use super::repository::{insert_batch, org_chunk_len, store_chunk, LockRepository, Tx};
use crate::chunk_len;
use crate::error::DbResultExt;
use crate::rows::{BatchRow, BATCH_COLUMNS};
use crate::staging::{numbered, split_duplicates, RECEIVING, STORED};

fn not_receiving(batch: BatchId) -> Error {
    Error::not_found(format!("no upload {batch} is being received"))
}

/// Locks the upload's row when it is still receiving (sealed or not, with
/// `sealed`; else only an unsealed one, the request's own): its staged rows.
async fn lock_receiving(tx: &mut Tx, batch: BatchId, sealed: bool) -> Result<Option<i64>> {
    let unsealed = if sealed { "" } else { " AND sealed_at IS NULL" };
    sqlx::query_scalar(&format!(
        "SELECT rows_stored FROM imports WHERE batch_id = ? AND state = ?{unsealed}{}",
        dialect::FOR_UPDATE
    ))
    .bind(batch.0)
    .bind(RECEIVING)
    .fetch_optional(&mut **tx)
    .await
    .db()
}

async fn insert_rejections<'a>(
    tx: &mut Tx,
    batch: BatchId,
    refused: impl IntoIterator<Item = &'a RowError>,
) -> Result<()> {
    let numbered = numbered(refused);
    for chunk in numbered.chunks(chunk_len(usize::MAX, dialect::MAX_PARAMS, 8)) {
        let mut qb = QueryBuilder::new(
            "INSERT INTO import_rejections (batch_id, line_no, seq, column_name, code, detail, field_value, external_id) ",
        );
        qb.push_values(chunk, |mut b, (seq, e)| {
            b.push_bind(batch.0)
                .push_bind(i64::from(e.line))
                .push_bind(*seq)
                .push_bind(e.column.as_deref())
                .push_bind(e.code.as_str())
                .push_bind(e.detail.as_str())
                .push_bind(e.value.as_deref())
                .push_bind(e.external_id.as_deref());
        });
        qb.build().execute(&mut **tx).await.db()?;
    }
    Ok(())
}

async fn delete_upload(tx: &mut Tx, batch: BatchId) -> Result<()> {
    delete_uploads(tx, &[batch.0]).await
}

/// Deletes the staging of these uploads: rows, refusals and counters.
pub(super) async fn delete_uploads(tx: &mut Tx, batches: &[uuid::Uuid]) -> Result<()> {
    for chunk in batches.chunks(chunk_len(usize::MAX, dialect::MAX_PARAMS, 1)) {
        for table in ["import_rows", "import_rejections", "imports"] {
            let mut qb = QueryBuilder::new(format!("DELETE FROM {table} WHERE batch_id IN ("));
            let mut ids = qb.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            ids.push_unseparated(")");
            qb.build().execute(&mut **tx).await.db()?;
        }
    }
    Ok(())
}

/// Uploads still receiving that began before `before`: abandoned by a
/// process that died mid-upload (a live one discards its own on failure).
pub(super) async fn abandoned_uploads(
    tx: &mut Tx,
    before: onboarding_core::model::Timestamp,
    limit: u32,
) -> Result<Vec<uuid::Uuid>> {
    // A sealed upload is not abandoned: a sweeper finishes it.
    sqlx::query_scalar(
        "SELECT batch_id FROM imports WHERE state = ? AND sealed_at IS NULL AND started_at < ? LIMIT ?",
    )
        .bind(RECEIVING)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut **tx)
        .await
        .db()
}

// The `ImportStore` itself: its reads are shared, its writes these functions.
crate::staging::import_store!(LockRepository);

/// `ImportStore::append_import`: stages a chunk.
async fn append(
    pool: &Pool<super::Db>,
    batch: BatchId,
    rows: &[ImportRow],
    rejected: &[RowError],
) -> Result<Vec<RowError>> {
    let mut tx = dialect::begin_write(pool).await?;
    if lock_receiving(&mut tx, batch, false).await?.is_none() {
        return Err(not_receiving(batch));
    }
    let mut earlier: HashMap<String, i64> = HashMap::new();
    for chunk in rows.chunks(
        chunk_len(usize::MAX, dialect::MAX_PARAMS, 1)
            .saturating_sub(1)
            .max(1),
    ) {
        let mut qb =
            QueryBuilder::new("SELECT domain, line_no FROM import_rows WHERE batch_id = ");
        qb.push_bind(batch.0).push(" AND domain IN (");
        let mut sep = qb.separated(", ");
        for r in chunk {
            sep.push_bind(r.organization.domain.as_str());
        }
        sep.push_unseparated(")");
        for r in qb.build().fetch_all(&mut *tx).await.db()? {
            earlier.insert(r.try_get("domain").db()?, r.try_get("line_no").db()?);
        }
    }
    let (fresh, duplicates) = split_duplicates(rows, &earlier);
    for chunk in fresh.chunks(chunk_len(usize::MAX, dialect::MAX_PARAMS, 6)) {
        let mut qb = QueryBuilder::new(
            "INSERT INTO import_rows (batch_id, line_no, name, domain, contact_email, external_id) ",
        );
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(batch.0)
                .push_bind(i64::from(r.line))
                .push_bind(r.organization.name.as_str())
                .push_bind(r.organization.domain.as_str())
                .push_bind(r.organization.contact_email.as_str())
                .push_bind(r.external_id.as_deref());
        });
        qb.build().execute(&mut *tx).await.db()?;
    }
    insert_rejections(&mut tx, batch, rejected.iter().chain(&duplicates)).await?;
    let refused =
        i64::try_from(onboarding_core::import::refused_rows(rejected)).unwrap_or(i64::MAX);
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    sqlx::query(
        "UPDATE imports SET rows_received = rows_received + ?, rows_stored = rows_stored + ?,
            rows_rejected = rows_rejected + ? WHERE batch_id = ?",
    )
    .bind(count(rows.len()) + refused)
    .bind(count(fresh.len()))
    .bind(refused + count(duplicates.len()))
    .bind(batch.0)
    .execute(&mut *tx)
    .await
    .db()?;
    tx.commit().await.db()?;
    Ok(duplicates)
}

/// `ImportStore::refuse_repeats`: nothing left to refuse, `append` refused
/// every repeat (a unique index on the staged domains); a read that the
/// upload is still the request's, without taking the write lock.
async fn refuse_repeats(
    pool: &Pool<super::Db>,
    batch: BatchId,
    _quote: usize,
) -> Result<onboarding_core::import::RepeatsRefused> {
    let open: Option<i64> = sqlx::query_scalar(
        "SELECT rows_stored FROM imports WHERE batch_id = ? AND state = ? AND sealed_at IS NULL",
    )
    .bind(batch.0)
    .bind(RECEIVING)
    .fetch_optional(pool)
    .await
    .db()?;
    match open {
        Some(_) => Ok(onboarding_core::import::RepeatsRefused::default()),
        None => Err(not_receiving(batch)),
    }
}

/// `ImportStore::finish_import`: stores the staged rows as the batch.
async fn finish(pool: &Pool<super::Db>, s: &Submission) -> Result<StoreResult> {
    let mut tx = dialect::begin_write(pool).await?;
    let Some(total) = lock_receiving(&mut tx, s.batch_id, true).await? else {
        return Err(not_receiving(s.batch_id));
    };
    if let Some(key) = &s.idempotency_key {
        let earlier: Option<BatchRow> = sqlx::query_as(&format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE tenant = ? AND idempotency_key = ?{}",
            dialect::FOR_UPDATE
        ))
        .bind(s.tenant.as_str())
        .bind(key)
        .fetch_optional(&mut *tx)
        .await
        .db()?;
        if let Some(batch) = earlier {
            delete_upload(&mut tx, s.batch_id).await?;
            tx.commit().await.db()?;
            let batch = batch.into_model()?;
            return Ok(StoreResult::for_earlier(batch, &s.request_hash));
        }
    }
    insert_batch(&mut tx, s, total).await.db()?;
    let chunk = i64::try_from(org_chunk_len(s.chunk_size)).unwrap_or(500);
    let mut after = 0_i64;
    let mut all_done = true;
    loop {
        let organizations = crate::staging::next_staged_chunk::<super::Db>(
            &mut *tx,
            "SELECT line_no, name, domain, contact_email, external_id FROM import_rows
             WHERE batch_id = ? AND line_no > ? ORDER BY line_no LIMIT ?",
            s.batch_id,
            &mut after,
            chunk,
        )
        .await?;
        if organizations.is_empty() {
            break;
        }
        let items = store_chunk(&mut tx, s, &organizations).await?;
        all_done &= items.iter().all(|i| i.status == ItemStatus::Completed);
    }
    if all_done {
        sqlx::query("UPDATE batches SET completed_at = ? WHERE id = ?")
            .bind(s.now)
            .bind(s.batch_id.0)
            .execute(&mut *tx)
            .await
            .db()?;
    }
    sqlx::query("UPDATE imports SET state = ? WHERE batch_id = ?")
        .bind(STORED)
        .bind(s.batch_id.0)
        .execute(&mut *tx)
        .await
        .db()?;
    let batch: BatchRow =
        sqlx::query_as(&format!("SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?"))
            .bind(s.batch_id.0)
            .fetch_one(&mut *tx)
            .await
            .db()?;
    tx.commit().await.db()?;
    Ok(StoreResult::Stored {
        batch: batch.into_model()?,
        items: Vec::new(),
    })
}

/// `ImportStore::abort_import`: discards an upload still receiving.
async fn abort(pool: &Pool<super::Db>, batch: BatchId) -> Result<()> {
    let mut tx = dialect::begin_write(pool).await?;
    if lock_receiving(&mut tx, batch, false).await?.is_some() {
        delete_upload(&mut tx, batch).await?;
    }
    tx.commit().await.db()?;
    Ok(())
}

/// `ImportStore::staged_rows`: staged rows by line.
async fn staged(
    pool: &Pool<super::Db>,
    tenant: &TenantId,
    batch: BatchId,
    lines: &[u32],
) -> Result<Vec<ImportRow>> {
    let mut out = Vec::with_capacity(lines.len());
    for chunk in lines.chunks(
        chunk_len(usize::MAX, dialect::MAX_PARAMS, 1)
            .saturating_sub(2)
            .max(1),
    ) {
        let mut qb = QueryBuilder::new(
            "SELECT r.line_no, r.name, r.domain, r.contact_email, r.external_id
             FROM import_rows r JOIN imports i ON i.batch_id = r.batch_id WHERE r.batch_id = ",
        );
        qb.push_bind(batch.0)
            .push(" AND i.tenant = ")
            .push_bind(tenant.as_str())
            .push(" AND r.line_no IN (");
        let mut sep = qb.separated(", ");
        for line in chunk {
            sep.push_bind(i64::from(*line));
        }
        sep.push_unseparated(")");
        for r in qb.build().fetch_all(pool).await.db()? {
            out.push(crate::staging::staged_row(&r)?);
        }
    }
    Ok(out)
}
