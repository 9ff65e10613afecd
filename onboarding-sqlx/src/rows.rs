//! Row shapes shared by every engine, and their conversion to the core's model.

use onboarding_core::model::{
    trim_error_history, AttemptError, Batch, BatchCounts, BatchId, BatchItem, BatchStatus, Change,
    ConflictPolicy, Domain, ItemId, ItemStatus, Organization, OrganizationId, SubmitMode, TenantId,
    Timestamp,
};
use onboarding_core::{Error, Result};
use uuid::Uuid;

/// Columns of `organizations`, in this order, for `SELECT`s that build an [`OrgRow`].
pub(crate) const ORG_COLUMNS: &str =
    "id, name, domain, contact_email, status, version, created_at, updated_at, deleted_at";

/// Columns of `batches` for a [`BatchRow`].
pub(crate) const BATCH_COLUMNS: &str = "id, tenant, idempotency_key, request_hash, total, policy, mode, created_at, completed_at, cancelled_at, announced_at";

/// Columns of `batch_items` for an [`ItemRow`].
pub(crate) const ITEM_COLUMNS: &str = "id, batch_id, position, organization_id, domain, status, change_kind, attempts, available_at, lease_until, errors, error_count, created_at, updated_at, finished_at";

/// One `organizations` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OrgRow {
    id: Uuid,
    name: String,
    domain: String,
    contact_email: String,
    status: String,
    version: i64,
    created_at: Timestamp,
    updated_at: Timestamp,
    deleted_at: Option<Timestamp>,
}

impl OrgRow {
    pub(crate) fn into_model(self) -> Result<Organization> {
        Ok(Organization {
            id: OrganizationId(self.id),
            name: self.name,
            domain: Domain::from_normalized(self.domain),
            contact_email: self.contact_email,
            status: status(&self.status)?,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
            deleted_at: self.deleted_at,
        })
    }
}

/// Text of a column of any collation: MySQL reports text with a binary
/// collation (tenant ids, idempotency keys: they compare exactly) as
/// `VARBINARY`, which `String` alone refuses to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Text(pub(crate) String);

impl<DB: sqlx::Database> sqlx::Type<DB> for Text
where
    String: sqlx::Type<DB>,
    Vec<u8>: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <String as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <String as sqlx::Type<DB>>::compatible(ty) || <Vec<u8> as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for Text
where
    String: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> std::result::Result<Self, sqlx::error::BoxDynError> {
        <String as sqlx::Decode<'r, DB>>::decode(value).map(Text)
    }
}

/// One `batches` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BatchRow {
    pub(crate) id: Uuid,
    pub(crate) tenant: Text,
    pub(crate) idempotency_key: Option<Text>,
    pub(crate) request_hash: String,
    pub(crate) total: i64,
    pub(crate) policy: String,
    pub(crate) mode: String,
    pub(crate) created_at: Timestamp,
    pub(crate) completed_at: Option<Timestamp>,
    pub(crate) cancelled_at: Option<Timestamp>,
    pub(crate) announced_at: Option<Timestamp>,
}

impl BatchRow {
    pub(crate) fn into_model(self) -> Result<Batch> {
        Ok(Batch {
            id: BatchId(self.id),
            tenant: TenantId::parse(self.tenant.0)?,
            idempotency_key: self.idempotency_key.map(|k| k.0),
            request_hash: self.request_hash,
            total: u32::try_from(self.total).unwrap_or(u32::MAX),
            policy: match self.policy.as_str() {
                "skip" => ConflictPolicy::Skip,
                _ => ConflictPolicy::Update,
            },
            mode: match self.mode.as_str() {
                "partial" => SubmitMode::Partial,
                _ => SubmitMode::Atomic,
            },
            created_at: self.created_at,
            completed_at: self.completed_at,
            cancelled_at: self.cancelled_at,
            announced_at: self.announced_at,
        })
    }
}

/// One `batch_items` row.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ItemRow {
    id: Uuid,
    batch_id: Uuid,
    position: i64,
    organization_id: Uuid,
    domain: String,
    status: String,
    change_kind: String,
    attempts: i64,
    available_at: Timestamp,
    lease_until: Option<Timestamp>,
    errors: String,
    error_count: i64,
    created_at: Timestamp,
    updated_at: Timestamp,
    finished_at: Option<Timestamp>,
}

impl ItemRow {
    pub(crate) fn into_model(self) -> Result<BatchItem> {
        let mut errors: Vec<AttemptError> = serde_json::from_str(&self.errors).map_err(|e| {
            Error::internal("stored error history is not valid JSON").with_source(e)
        })?;
        // Rows written before the history was bounded may hold more.
        trim_error_history(&mut errors);
        Ok(BatchItem {
            id: ItemId(self.id),
            batch_id: BatchId(self.batch_id),
            position: u32::try_from(self.position).unwrap_or(u32::MAX),
            organization_id: OrganizationId(self.organization_id),
            domain: Domain::from_normalized(self.domain),
            status: status(&self.status)?,
            change: change(&self.change_kind)?,
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            available_at: self.available_at,
            lease_until: self.lease_until,
            errors,
            error_count: u32::try_from(self.error_count).unwrap_or(u32::MAX),
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
        })
    }
}

/// One `(status, change, n)` group of a batch's items.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CountRow {
    pub(crate) batch_id: Uuid,
    pub(crate) status: String,
    pub(crate) change_kind: String,
    pub(crate) n: i64,
}

/// Parses a stored item status.
pub(crate) fn status(s: &str) -> Result<ItemStatus> {
    ItemStatus::parse(s).ok_or_else(|| Error::internal(format!("unknown stored status {s:?}")))
}

/// Parses a stored change.
pub(crate) fn change(s: &str) -> Result<Change> {
    Change::parse(s).ok_or_else(|| Error::internal(format!("unknown stored change {s:?}")))
}

/// Adds count groups to per-batch counts.
pub(crate) fn fold_counts(
    rows: Vec<CountRow>,
) -> Result<std::collections::HashMap<Uuid, BatchCounts>> {
    let mut out: std::collections::HashMap<Uuid, BatchCounts> = std::collections::HashMap::new();
    for row in rows {
        let st = status(&row.status)?;
        let ch = change(&row.change_kind)?;
        let c = out.entry(row.batch_id).or_default();
        for _ in 0..row.n.max(0) {
            c.add(st, ch);
        }
    }
    Ok(out)
}

/// Joins batches with their counts.
pub(crate) fn statuses(batches: Vec<BatchRow>, counts: Vec<CountRow>) -> Result<Vec<BatchStatus>> {
    let mut counts = fold_counts(counts)?;
    batches
        .into_iter()
        .map(|b| {
            let c = counts.remove(&b.id).unwrap_or_default();
            Ok(BatchStatus {
                batch: b.into_model()?,
                counts: c,
            })
        })
        .collect()
}

/// The stored name of a policy.
pub(crate) fn policy_str(p: ConflictPolicy) -> &'static str {
    match p {
        ConflictPolicy::Update => "update",
        ConflictPolicy::Skip => "skip",
    }
}

/// A queue's job counts, as every engine's `depth` reads them (`n_`: `DELAYED`
/// is a reserved word in MySQL).
#[derive(sqlx::FromRow)]
pub(crate) struct DepthRow {
    n_ready: i64,
    n_delayed: i64,
    n_in_flight: i64,
}

impl DepthRow {
    pub(crate) fn into_model(self) -> onboarding_core::QueueDepth {
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        onboarding_core::QueueDepth {
            ready: count(self.n_ready),
            delayed: count(self.n_delayed),
            in_flight: count(self.n_in_flight),
        }
    }
}

/// A statement of `DB` with its arguments bound so far.
pub(crate) type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>;

/// Binds a submission's new `batches` row to an `INSERT INTO batches (id,
/// tenant, idempotency_key, request_hash, total, policy, mode, created_at,
/// trace_parent)` (`total` items), on every engine.
pub(crate) fn bind_new_batch<'q, DB>(
    query: Query<'q, DB>,
    s: &'q onboarding_core::repository::Submission,
    total: i64,
) -> Query<'q, DB>
where
    DB: sqlx::Database,
    Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Timestamp: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(s.batch_id.0)
        .bind(s.tenant.as_str())
        .bind(s.idempotency_key.as_deref())
        .bind(s.request_hash.as_str())
        .bind(total)
        .bind(policy_str(s.policy))
        .bind(mode_str(s.mode))
        .bind(s.now)
        .bind(s.trace_parent.as_deref())
}

/// The stored name of a mode.
pub(crate) fn mode_str(m: SubmitMode) -> &'static str {
    match m {
        SubmitMode::Atomic => "atomic",
        SubmitMode::Partial => "partial",
    }
}

/// One error-history entry, to append to the stored array.
#[cfg_attr(not(any(feature = "mysql", feature = "sqlite")), allow(dead_code))]
pub(crate) fn error_entry(
    attempt: i64,
    at: Timestamp,
    message: &str,
    permanent: bool,
) -> serde_json::Value {
    serde_json::json!({
        "attempt": attempt,
        "at": at,
        "message": message,
        "permanent": permanent,
    })
}

/// Cuts the `limit + 1` rows fetched into a page and its cursor.
pub(crate) fn page(
    rows: Vec<ItemRow>,
    limit: u32,
) -> Result<Option<onboarding_core::repository::ItemPage>> {
    let mut items = rows
        .into_iter()
        .map(ItemRow::into_model)
        .collect::<Result<Vec<_>>>()?;
    let next_cursor = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|i| i.position)
    } else {
        None
    };
    Ok(Some(onboarding_core::repository::ItemPage {
        items,
        next_cursor,
    }))
}

/// The SQL condition selecting batches in `state` (every engine spells it alike).
pub(crate) fn state_condition(state: Option<onboarding_core::model::BatchState>) -> &'static str {
    use onboarding_core::model::BatchState;
    match state {
        None => "1 = 1",
        Some(BatchState::Running) => "cancelled_at IS NULL AND completed_at IS NULL",
        Some(BatchState::Completed) => "cancelled_at IS NULL AND completed_at IS NOT NULL",
        Some(BatchState::Cancelled) => "cancelled_at IS NOT NULL",
    }
}

/// Cuts `limit + 1` rows (newest first) to a page and its cursor.
pub(crate) fn batch_page(mut rows: Vec<BatchRow>, limit: u32) -> (Vec<BatchRow>, Option<BatchId>) {
    let limit = limit as usize;
    if rows.len() > limit {
        rows.truncate(limit);
        let cursor = rows.last().map(|r| BatchId(r.id));
        (rows, cursor)
    } else {
        (rows, None)
    }
}

/// A `(bucket start, completed, failed)` row of a throughput query.
pub(crate) fn throughput_bucket(
    (start, completed, failed): (i64, i64, i64),
) -> onboarding_core::repository::ThroughputBucket {
    onboarding_core::repository::ThroughputBucket {
        start,
        completed: u64::try_from(completed).unwrap_or(0),
        failed: u64::try_from(failed).unwrap_or(0),
    }
}
