//! `ImportStore` on PostgreSQL: rows staged with `UNNEST` per chunk; the
//! finish reads them back in chunks (keyset by line) inside one transaction
//! and stores them with the submission's own `store_chunk`.

use std::collections::HashMap;

use async_trait::async_trait;
use onboarding_core::import::{ImportProgress, ImportRow, ImportStore, NewImport, RowError};
use onboarding_core::model::{BatchId, ItemStatus, TenantId};
use onboarding_core::repository::{StoreResult, Submission};
use onboarding_core::{Error, ErrorKind, Result};
use sqlx::Row;

use super::repository::{store_chunk, PgRepository, Tx};
use crate::error::DbResultExt;
use crate::rows::{mode_str, policy_str, BatchRow, BATCH_COLUMNS};
use crate::staging::{
    numbered, split_duplicates, ProgressRow, RejectionRow, PROGRESS_COLUMNS, RECEIVING,
    REJECTION_COLUMNS, STORED,
};

fn not_receiving(batch: BatchId) -> Error {
    Error::not_found(format!("no upload {batch} is being received"))
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

#[async_trait]
impl ImportStore for PgRepository {
    async fn begin_import(&self, import: &NewImport) -> Result<()> {
        let inserted = sqlx::query(
            "INSERT INTO imports (batch_id, tenant, idempotency_key, state, started_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(import.batch_id.0)
        .bind(import.tenant.as_str())
        .bind(import.idempotency_key.as_deref())
        .bind(RECEIVING)
        .bind(import.now)
        .execute(self.pool())
        .await
        .db()?;
        if inserted.rows_affected() == 0 {
            return Err(Error::new(
                ErrorKind::Conflict,
                "an upload with this idempotency key is still in progress",
            ));
        }
        Ok(())
    }

    async fn append_import(
        &self,
        batch: BatchId,
        rows: &[ImportRow],
        rejected: &[RowError],
    ) -> Result<Vec<RowError>> {
        let mut tx = self.pool().begin().await.db()?;
        let locked =
            sqlx::query("SELECT 1 FROM imports WHERE batch_id = $1 AND state = $2 FOR UPDATE")
                .bind(batch.0)
                .bind(RECEIVING)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        if locked.is_none() {
            return Err(not_receiving(batch));
        }
        let domains: Vec<&str> = rows
            .iter()
            .map(|r| r.organization.domain.as_str())
            .collect();
        let earlier: HashMap<String, i64> = sqlx::query(
            "SELECT domain, line_no FROM import_rows WHERE batch_id = $1 AND domain = ANY($2)",
        )
        .bind(batch.0)
        .bind(&domains)
        .fetch_all(&mut *tx)
        .await
        .db()?
        .into_iter()
        .map(|r| Ok((r.try_get("domain").db()?, r.try_get("line_no").db()?)))
        .collect::<Result<_>>()?;
        let (fresh, duplicates) = split_duplicates(rows, &earlier);
        if !fresh.is_empty() {
            let lines: Vec<i64> = fresh.iter().map(|r| i64::from(r.line)).collect();
            let names: Vec<&str> = fresh.iter().map(|r| r.organization.name.as_str()).collect();
            let domains: Vec<&str> = fresh
                .iter()
                .map(|r| r.organization.domain.as_str())
                .collect();
            let emails: Vec<&str> = fresh
                .iter()
                .map(|r| r.organization.contact_email.as_str())
                .collect();
            let ids: Vec<Option<&str>> = fresh.iter().map(|r| r.external_id.as_deref()).collect();
            sqlx::query(
                "INSERT INTO import_rows (batch_id, line_no, name, domain, contact_email, external_id)
                 SELECT $1, u.* FROM UNNEST($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[])
                    AS u(line_no, name, domain, contact_email, external_id)",
            )
            .bind(batch.0)
            .bind(lines)
            .bind(names)
            .bind(domains)
            .bind(emails)
            .bind(ids)
            .execute(&mut *tx)
            .await
            .db()?;
        }
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

    async fn finish_import(&self, s: &Submission) -> Result<StoreResult> {
        let mut tx = self.pool().begin().await.db()?;
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
        let inserted = sqlx::query(
            "INSERT INTO batches (id, tenant, idempotency_key, request_hash, total, policy, mode, created_at, trace_parent)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant, idempotency_key) DO NOTHING",
        )
        .bind(s.batch_id.0)
        .bind(s.tenant.as_str())
        .bind(s.idempotency_key.as_deref())
        .bind(&s.request_hash)
        .bind(total)
        .bind(policy_str(s.policy))
        .bind(mode_str(s.mode))
        .bind(s.now)
        .bind(s.trace_parent.as_deref())
        .execute(&mut *tx)
        .await
        .db()?;
        if inserted.rows_affected() == 0 {
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
        let chunk = i64::try_from(s.chunk_size.max(1)).unwrap_or(500);
        let mut after = 0_i64;
        let mut all_done = true;
        loop {
            let rows = sqlx::query(
                "SELECT line_no, name, domain, contact_email, external_id FROM import_rows
                 WHERE batch_id = $1 AND line_no > $2 ORDER BY line_no LIMIT $3",
            )
            .bind(s.batch_id.0)
            .bind(after)
            .bind(chunk)
            .fetch_all(&mut *tx)
            .await
            .db()?;
            if rows.is_empty() {
                break;
            }
            let mut organizations = Vec::with_capacity(rows.len());
            for r in &rows {
                let staged = crate::staging::staged_row(r)?;
                after = i64::from(staged.line);
                organizations.push((staged.line, staged.organization));
            }
            let items = store_chunk(&mut tx, s, &organizations).await?;
            all_done &= items.iter().all(|i| i.status == ItemStatus::Completed);
        }
        let batch: BatchRow = sqlx::query_as(&format!(
            "UPDATE batches SET completed_at = CASE WHEN $2 THEN $3 END WHERE id = $1 RETURNING {BATCH_COLUMNS}"
        ))
        .bind(s.batch_id.0)
        .bind(all_done)
        .bind(s.now)
        .fetch_one(&mut *tx)
        .await
        .db()?;
        sqlx::query("UPDATE imports SET state = $2 WHERE batch_id = $1")
            .bind(s.batch_id.0)
            .bind(STORED)
            .execute(&mut *tx)
            .await
            .db()?;
        tx.commit().await.db()?;
        Ok(StoreResult::Stored {
            batch: batch.into_model()?,
            items: Vec::new(),
        })
    }

    async fn abort_import(&self, batch: BatchId) -> Result<()> {
        let mut tx = self.pool().begin().await.db()?;
        let receiving =
            sqlx::query("SELECT 1 FROM imports WHERE batch_id = $1 AND state = $2 FOR UPDATE")
                .bind(batch.0)
                .bind(RECEIVING)
                .fetch_optional(&mut *tx)
                .await
                .db()?;
        if receiving.is_some() {
            delete_upload(&mut tx, batch).await?;
        }
        tx.commit().await.db()?;
        Ok(())
    }

    async fn import_progress(
        &self,
        tenant: &TenantId,
        batch: BatchId,
    ) -> Result<Option<ImportProgress>> {
        let row: Option<ProgressRow> = sqlx::query_as(&format!(
            "SELECT {PROGRESS_COLUMNS} FROM imports WHERE batch_id = $1 AND tenant = $2"
        ))
        .bind(batch.0)
        .bind(tenant.as_str())
        .fetch_optional(self.pool())
        .await
        .db()?;
        row.map(ProgressRow::into_model).transpose()
    }

    async fn staged_rows(
        &self,
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
        .fetch_all(self.pool())
        .await
        .db()?;
        rows.into_iter()
            .map(|r| crate::staging::staged_row(&r))
            .collect()
    }

    async fn rejected_rows(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        after_line: Option<u32>,
        limit: u32,
    ) -> Result<Option<Vec<RowError>>> {
        if self.import_progress(tenant, batch).await?.is_none() {
            return Ok(None);
        }
        let rows: Vec<RejectionRow> = sqlx::query_as(&format!(
            "SELECT {REJECTION_COLUMNS} FROM import_rejections
             WHERE batch_id = $1 AND line_no > $2 ORDER BY line_no, seq LIMIT $3"
        ))
        .bind(batch.0)
        .bind(after_line.map_or(-1, i64::from))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .db()?;
        Ok(Some(
            rows.into_iter().map(RejectionRow::into_model).collect(),
        ))
    }
}
