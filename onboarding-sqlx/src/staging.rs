//! What every engine's `ImportStore` shares: the rows of a chunk that are
//! new in their upload, and the refused rows numbered per line.

use std::collections::HashMap;

use onboarding_core::import::{ImportProgress, ImportRow, ImportState, NewImport, RowError};
use onboarding_core::model::{
    BatchId, ConflictPolicy, Domain, NewOrganization, SubmitMode, TenantId, Timestamp,
};
use sqlx::Row;

use crate::error::DbResultExt;
use onboarding_core::{Error, ErrorKind, Result};

/// The rows of a chunk to stage, and the refusals of those whose domain an
/// earlier line has (`earlier`: domain → line of the rows staged before).
pub(crate) fn split_duplicates<'a>(
    rows: &'a [ImportRow],
    earlier: &HashMap<String, i64>,
) -> (Vec<&'a ImportRow>, Vec<RowError>) {
    let mut first_in_chunk: HashMap<&str, u32> = HashMap::with_capacity(rows.len());
    let mut fresh = Vec::with_capacity(rows.len());
    let mut duplicates = Vec::new();
    for row in rows {
        let domain = row.organization.domain.as_str();
        if let Some(&line) = earlier.get(domain) {
            duplicates.push(RowError::duplicate(row, u32::try_from(line).unwrap_or(0)));
        } else if let Some(&line) = first_in_chunk.get(domain) {
            duplicates.push(RowError::duplicate(row, line));
        } else {
            first_in_chunk.insert(domain, row.line);
            fresh.push(row);
        }
    }
    (fresh, duplicates)
}

/// Each problem with its number within its line (the key's `seq`).
pub(crate) fn numbered<'a>(
    refused: impl IntoIterator<Item = &'a RowError>,
) -> Vec<(i32, &'a RowError)> {
    let mut last = None;
    let mut seq = 0;
    refused
        .into_iter()
        .map(|e| {
            seq = if last == Some(e.line) { seq + 1 } else { 0 };
            last = Some(e.line);
            (seq, e)
        })
        .collect()
}

/// The columns [`ProgressRow`] reads.
pub(crate) const PROGRESS_COLUMNS: &str =
    "batch_id, state, rows_received, rows_stored, rows_rejected, started_at, policy, mode, sealed_at";

/// One row of `imports`.
#[derive(sqlx::FromRow)]
pub(crate) struct ProgressRow {
    batch_id: uuid::Uuid,
    state: String,
    rows_received: i64,
    rows_stored: i64,
    rows_rejected: i64,
    started_at: Timestamp,
    /// Null for uploads begun before the column existed.
    policy: Option<String>,
    mode: Option<String>,
    /// When the body had arrived (null while it arrives, and for older uploads).
    sealed_at: Option<Timestamp>,
}

impl ProgressRow {
    pub(crate) fn into_model(self) -> Result<ImportProgress> {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(ImportProgress {
            batch_id: BatchId(self.batch_id),
            state: match (self.state == RECEIVING, self.sealed_at) {
                (true, None) => ImportState::Receiving,
                (true, Some(_)) => ImportState::Staged,
                (false, _) => ImportState::Stored,
            },
            rows_received: count(self.rows_received),
            rows_stored: count(self.rows_stored),
            rows_rejected: count(self.rows_rejected),
            started_at: self.started_at,
            policy: match self.policy.as_deref() {
                Some("skip") => ConflictPolicy::Skip,
                _ => ConflictPolicy::Update,
            },
            // Files default to partial mode.
            mode: match self.mode.as_deref() {
                Some("atomic") => SubmitMode::Atomic,
                _ => SubmitMode::Partial,
            },
        })
    }
}

/// The columns [`RejectionRow`] reads.
pub(crate) const REJECTION_COLUMNS: &str =
    "line_no, column_name, code, detail, field_value, external_id";

/// One row of `import_rejections`.
#[derive(sqlx::FromRow)]
pub(crate) struct RejectionRow {
    line_no: i64,
    column_name: Option<String>,
    code: String,
    detail: String,
    field_value: Option<String>,
    external_id: Option<String>,
}

impl RejectionRow {
    pub(crate) fn into_model(self) -> RowError {
        RowError {
            line: u32::try_from(self.line_no).unwrap_or(u32::MAX),
            column: self.column_name,
            code: self.code,
            detail: self.detail,
            value: self.field_value,
            external_id: self.external_id,
        }
    }
}

/// `imports.state` of an upload still arriving.
pub(crate) const RECEIVING: &str = "receiving";
/// `imports.state` of an upload whose batch exists.
pub(crate) const STORED: &str = "stored";

/// A staged row read back (`line_no, name, domain, contact_email, external_id`).
pub(crate) fn staged_row<R>(r: &R) -> Result<ImportRow>
where
    R: Row,
    for<'c> &'c str: sqlx::ColumnIndex<R>,
    i64: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    Option<String>: for<'r> sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let line: i64 = r.try_get("line_no").db()?;
    Ok(ImportRow {
        line: u32::try_from(line).unwrap_or(u32::MAX),
        organization: NewOrganization {
            name: r.try_get("name").db()?,
            domain: Domain::from_normalized(r.try_get::<String, _>("domain").db()?),
            contact_email: r.try_get("contact_email").db()?,
        },
        external_id: r.try_get("external_id").db()?,
    })
}

/// The next chunk (at most `chunk` rows) of an upload's staged rows after
/// line `*after`, read by `sql` (an engine's spelling of `SELECT line_no,
/// name, domain, contact_email, external_id FROM import_rows WHERE batch_id
/// = ? AND line_no > ? ORDER BY line_no LIMIT ?`), with `*after` moved to
/// its last line: empty once every row is read.
#[cfg(any(feature = "mysql", feature = "sqlite"))]
pub(crate) async fn next_staged_chunk<'c, DB>(
    conn: &'c mut DB::Connection,
    sql: &'c str,
    batch: BatchId,
    after: &mut i64,
    chunk: i64,
) -> Result<Vec<(u32, NewOrganization)>>
where
    DB: sqlx::Database,
    &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    uuid::Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'s> &'s str: sqlx::ColumnIndex<DB::Row>,
    i64: for<'q> sqlx::Encode<'q, DB> + for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    String: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
    Option<String>: for<'r> sqlx::Decode<'r, DB> + sqlx::Type<DB>,
{
    let rows = sqlx::query(sql)
        .bind(batch.0)
        .bind(*after)
        .bind(chunk)
        .fetch_all(conn)
        .await
        .db()?;
    let mut organizations = Vec::with_capacity(rows.len());
    for r in &rows {
        let staged = staged_row(r)?;
        *after = i64::from(staged.line);
        organizations.push((staged.line, staged.organization));
    }
    Ok(organizations)
}

/// `sql` with its `?` placeholders in the engine's spelling: `$1, $2, …`
/// on PostgreSQL (no `?` may stand in `sql` but as a placeholder).
fn placed<DB: sqlx::Database>(sql: &str) -> String {
    // `sqlx::Postgres::NAME` (spelled out: that type exists only with the feature).
    if DB::NAME != "PostgreSQL" {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + 8);
    for (n, part) in sql.split('?').enumerate() {
        if n > 0 {
            out.push('$');
            out.push_str(&n.to_string());
        }
        out.push_str(part);
    }
    out
}

/// `ImportStore::begin_import`: the upload's row, one per idempotency key
/// while it receives (a second upload under the key is a `Conflict`).
pub(crate) async fn begin<DB>(pool: &sqlx::Pool<DB>, import: &NewImport) -> Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    uuid::Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB>,
    chrono::DateTime<chrono::Utc>: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let sql = placed::<DB>(
        "INSERT INTO imports (batch_id, tenant, idempotency_key, state, started_at, policy, mode)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    let inserted = sqlx::query(&sql)
        .bind(import.batch_id.0)
        .bind(import.tenant.as_str())
        .bind(import.idempotency_key.as_deref())
        .bind(RECEIVING)
        .bind(import.now)
        .bind(crate::rows::policy_str(import.policy))
        .bind(crate::rows::mode_str(import.mode))
        .execute(pool)
        .await;
    match inserted {
        Ok(_) => Ok(()),
        Err(e) if crate::error::is_unique_violation(&e) => Err(Error::new(
            ErrorKind::Conflict,
            "an upload with this idempotency key is still in progress",
        )),
        Err(e) => Err(crate::error::driver(e)),
    }
}

/// `ImportStore::seal_import`: answers a key of an earlier batch (and
/// discards the upload with `abort`), else marks the upload sealed with the
/// options of its batch.
pub(crate) async fn seal<DB, A, F>(
    pool: &sqlx::Pool<DB>,
    s: &onboarding_core::repository::Submission,
    affected: fn(&DB::QueryResult) -> u64,
    abort: A,
) -> Result<Option<onboarding_core::repository::StoreResult>>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'r> crate::rows::BatchRow: sqlx::FromRow<'r, DB::Row>,
    uuid::Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    chrono::DateTime<chrono::Utc>: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    A: FnOnce() -> F,
    F: std::future::Future<Output = Result<()>>,
{
    if let Some(key) = &s.idempotency_key {
        let sql = placed::<DB>(&format!(
            "SELECT {} FROM batches WHERE tenant = ? AND idempotency_key = ?",
            crate::rows::BATCH_COLUMNS
        ));
        let earlier: Option<crate::rows::BatchRow> = sqlx::query_as(&sql)
            .bind(s.tenant.as_str())
            .bind(key.as_str())
            .fetch_optional(pool)
            .await
            .db()?;
        if let Some(batch) = earlier {
            abort().await?;
            return Ok(Some(onboarding_core::repository::StoreResult::for_earlier(
                batch.into_model()?,
                &s.request_hash,
            )));
        }
    }
    let sql = placed::<DB>(
        "UPDATE imports SET sealed_at = ?, sealed = ?
         WHERE batch_id = ? AND state = ? AND sealed_at IS NULL",
    );
    let sealed = sqlx::query(&sql)
        .bind(s.now)
        .bind(onboarding_core::import::SealedOptions::of(s).to_json())
        .bind(s.batch_id.0)
        .bind(RECEIVING)
        .execute(pool)
        .await
        .db()?;
    if affected(&sealed) == 0 {
        return Err(Error::not_found(format!(
            "no upload {} is being received",
            s.batch_id
        )));
    }
    Ok(None)
}

/// One sealed upload and what finishes it.
#[derive(sqlx::FromRow)]
pub(crate) struct SealedRow {
    #[sqlx(flatten)]
    progress: ProgressRow,
    tenant: crate::rows::Text,
    idempotency_key: Option<crate::rows::Text>,
    sealed: Option<String>,
}

/// `ImportStore::sealed_imports`: uploads sealed before `before`, not stored.
pub(crate) async fn sealed<DB>(
    pool: &sqlx::Pool<DB>,
    before: Timestamp,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<onboarding_core::repository::Submission>>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'r> SealedRow: sqlx::FromRow<'r, DB::Row>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    chrono::DateTime<chrono::Utc>: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let sql = placed::<DB>(&format!(
        "SELECT {PROGRESS_COLUMNS}, tenant, idempotency_key, sealed FROM imports
         WHERE state = ? AND sealed_at IS NOT NULL AND sealed_at < ?
         ORDER BY sealed_at LIMIT ?"
    ));
    let rows: Vec<SealedRow> = sqlx::query_as(&sql)
        .bind(RECEIVING)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .db()?;
    rows.into_iter()
        .map(|r| {
            let progress = r.progress.into_model()?;
            onboarding_core::import::SealedOptions::submission(
                r.sealed.as_deref().unwrap_or_default(),
                &progress,
                TenantId::parse(r.tenant.0)?,
                r.idempotency_key.map(|k| k.0),
                now,
            )
        })
        .collect()
}

/// A tenant's upload's progress.
pub(crate) async fn progress<DB>(
    pool: &sqlx::Pool<DB>,
    tenant: &TenantId,
    batch: BatchId,
) -> Result<Option<ImportProgress>>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'r> ProgressRow: sqlx::FromRow<'r, DB::Row>,
    uuid::Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let sql = placed::<DB>(&format!(
        "SELECT {PROGRESS_COLUMNS} FROM imports WHERE batch_id = ? AND tenant = ?"
    ));
    let row: Option<ProgressRow> = sqlx::query_as(&sql)
        .bind(batch.0)
        .bind(tenant.as_str())
        .fetch_optional(pool)
        .await
        .db()?;
    row.map(ProgressRow::into_model).transpose()
}

/// A tenant's uploads still receiving, newest first (those under `key`
/// when given).
pub(crate) async fn receiving<DB>(
    pool: &sqlx::Pool<DB>,
    tenant: &TenantId,
    key: Option<&str>,
) -> Result<Vec<ImportProgress>>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'r> ProgressRow: sqlx::FromRow<'r, DB::Row>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let mut sql = format!("SELECT {PROGRESS_COLUMNS} FROM imports WHERE tenant = ? AND state = ?");
    if key.is_some() {
        sql.push_str(" AND idempotency_key = ?");
    }
    sql.push_str(" ORDER BY started_at DESC LIMIT ?");
    let sql = placed::<DB>(&sql);
    let mut query = sqlx::query_as(&sql).bind(tenant.as_str()).bind(RECEIVING);
    if let Some(key) = key {
        query = query.bind(key);
    }
    let rows: Vec<ProgressRow> = query
        .bind(i64::from(onboarding_core::import::RECEIVING_LISTED))
        .fetch_all(pool)
        .await
        .db()?;
    rows.into_iter().map(ProgressRow::into_model).collect()
}

/// A page of a tenant's upload's refused rows after line `after_line`, in
/// line order (`None`: no such upload).
pub(crate) async fn rejected<DB>(
    pool: &sqlx::Pool<DB>,
    tenant: &TenantId,
    batch: BatchId,
    after_line: Option<u32>,
    limit: u32,
) -> Result<Option<Vec<RowError>>>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'r> ProgressRow: sqlx::FromRow<'r, DB::Row>,
    for<'r> RejectionRow: sqlx::FromRow<'r, DB::Row>,
    uuid::Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    if progress(pool, tenant, batch).await?.is_none() {
        return Ok(None);
    }
    let sql = placed::<DB>(&format!(
        "SELECT {REJECTION_COLUMNS} FROM import_rejections
         WHERE batch_id = ? AND line_no > ? ORDER BY line_no, seq LIMIT ?"
    ));
    let rows: Vec<RejectionRow> = sqlx::query_as(&sql)
        .bind(batch.0)
        .bind(after_line.map_or(-1, i64::from))
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .db()?;
    Ok(Some(
        rows.into_iter().map(RejectionRow::into_model).collect(),
    ))
}

/// The [`ImportStore`](onboarding_core::import::ImportStore) of an engine's
/// repository `$repo` (it has `pool()`), written once for every engine.
/// The module invoking it gives what differs between engines as functions
/// on the pool: `append`, `refuse_repeats`, `finish` and `abort` (the writes) and
/// `staged` (rows by line); the other reads are this module's, on the
/// engine's `super::Db`.
macro_rules! import_store {
    ($repo:ty) => {
        #[async_trait::async_trait]
        impl onboarding_core::import::ImportStore for $repo {
            async fn begin_import(
                &self,
                import: &onboarding_core::import::NewImport,
            ) -> onboarding_core::Result<()> {
                $crate::staging::begin(self.pool(), import).await
            }

            async fn append_import(
                &self,
                batch: onboarding_core::model::BatchId,
                rows: &[onboarding_core::import::ImportRow],
                rejected: &[onboarding_core::import::RowError],
            ) -> onboarding_core::Result<Vec<onboarding_core::import::RowError>> {
                append(self.pool(), batch, rows, rejected).await
            }

            async fn refuse_repeats(
                &self,
                batch: onboarding_core::model::BatchId,
                quote: usize,
            ) -> onboarding_core::Result<onboarding_core::import::RepeatsRefused> {
                refuse_repeats(self.pool(), batch, quote).await
            }

            async fn seal_import(
                &self,
                s: &onboarding_core::repository::Submission,
            ) -> onboarding_core::Result<Option<onboarding_core::repository::StoreResult>> {
                crate::staging::seal::<super::Db, _, _>(
                    self.pool(),
                    s,
                    |done| done.rows_affected(),
                    || abort(self.pool(), s.batch_id),
                )
                .await
            }

            async fn sealed_imports(
                &self,
                before: onboarding_core::model::Timestamp,
                now: onboarding_core::model::Timestamp,
                limit: u32,
            ) -> onboarding_core::Result<Vec<onboarding_core::repository::Submission>> {
                crate::staging::sealed::<super::Db>(self.pool(), before, now, limit).await
            }

            async fn finish_import(
                &self,
                s: &onboarding_core::repository::Submission,
            ) -> onboarding_core::Result<onboarding_core::repository::StoreResult> {
                finish(self.pool(), s).await
            }

            async fn abort_import(
                &self,
                batch: onboarding_core::model::BatchId,
            ) -> onboarding_core::Result<()> {
                abort(self.pool(), batch).await
            }

            async fn import_progress(
                &self,
                tenant: &onboarding_core::model::TenantId,
                batch: onboarding_core::model::BatchId,
            ) -> onboarding_core::Result<Option<onboarding_core::import::ImportProgress>> {
                crate::staging::progress::<super::Db>(self.pool(), tenant, batch).await
            }

            async fn receiving_imports(
                &self,
                tenant: &onboarding_core::model::TenantId,
                key: Option<&str>,
            ) -> onboarding_core::Result<Vec<onboarding_core::import::ImportProgress>> {
                crate::staging::receiving::<super::Db>(self.pool(), tenant, key).await
            }

            async fn staged_rows(
                &self,
                tenant: &onboarding_core::model::TenantId,
                batch: onboarding_core::model::BatchId,
                lines: &[u32],
            ) -> onboarding_core::Result<Vec<onboarding_core::import::ImportRow>> {
                staged(self.pool(), tenant, batch, lines).await
            }

            async fn rejected_rows(
                &self,
                tenant: &onboarding_core::model::TenantId,
                batch: onboarding_core::model::BatchId,
                after_line: Option<u32>,
                limit: u32,
            ) -> onboarding_core::Result<Option<Vec<onboarding_core::import::RowError>>> {
                crate::staging::rejected::<super::Db>(self.pool(), tenant, batch, after_line, limit)
                    .await
            }
        }
    };
}
pub(crate) use import_store;
