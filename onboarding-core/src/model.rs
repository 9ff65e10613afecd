//! Domain types: organizations, batches, batch items and their states.

use std::fmt;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, ErrorKind, Result};

/// A point in time, UTC, with microsecond precision (what every SQL engine stores).
pub type Timestamp = DateTime<Utc>;

/// The current time, truncated to microseconds so it round-trips through every backend.
pub fn now() -> Timestamp {
    Utc::now().trunc_subsecs(6)
}

/// `t + d`, saturating instead of overflowing for absurd durations (one
/// helper for every lease, backoff and sweep deadline).
pub fn after(t: Timestamp, d: std::time::Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `t - d`, saturating (see [`after`]).
pub fn before(t: Timestamp, d: std::time::Duration) -> Timestamp {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

// Other modules declare their ids with the same macro.
pub(crate) use uuid_id;

uuid_id!(
    /// Identifies a batch (one accepted submission).
    BatchId
);
uuid_id!(
    /// Identifies one batch item: one organization in one batch, the unit of work.
    ItemId
);
uuid_id!(
    /// Identifies an organization row (one per normalized domain).
    OrganizationId
);

impl ItemId {
    /// The id of the item at `position` of `batch`: the batch id's first
    /// twelve bytes, then the position (big-endian).
    ///
    /// A batch's items are then one range of ids, in position order, so a
    /// store can find, page and delete them by the id's index alone, with no
    /// second index on `(batch, position)` to write for every item (see
    /// [`ItemId::batch_range`]). Ids made by [`BatchId::new`] in one process
    /// differ within their first twelve bytes (a UUIDv7's timestamp and
    /// counter), so two batches' items never share an id; across processes,
    /// two batches made in the same millisecond share those bytes with a
    /// chance of one in 2^42.
    pub fn in_batch(batch: BatchId, position: u32) -> Self {
        let mut bytes = *batch.0.as_bytes();
        bytes[12..].copy_from_slice(&position.to_be_bytes());
        Self(Uuid::from_bytes(bytes))
    }

    /// The first and the last id a [`ItemId::in_batch`] of `batch` can have:
    /// positions `0` and `u32::MAX`.
    pub fn batch_range(batch: BatchId) -> (Self, Self) {
        (Self::in_batch(batch, 0), Self::in_batch(batch, u32::MAX))
    }

    /// The position an [`ItemId::in_batch`] id holds (its last four bytes).
    pub fn position(self) -> u32 {
        let b = self.0.as_bytes();
        u32::from_be_bytes([b[12], b[13], b[14], b[15]])
    }
}

impl OrganizationId {
    /// The id of an organization first stored by `item`: the item's id
    /// with the UUID version 8 ("custom") in place of its 7.
    ///
    /// Unique because item ids are (a bijection of them), never equal to an
    /// item id, and made without drawing random bytes: a submission of
    /// 1000 new organizations drew 1000 UUIDv7s, a `getrandom` system call
    /// each (BENCHMARKS.md, session 11).
    pub fn first_stored_by(item: ItemId) -> Self {
        let mut bytes = *item.0.as_bytes();
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        Self(Uuid::from_bytes(bytes))
    }
}

/// A fencing token handed out with each claim; every later write of that
/// attempt must present it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseToken(pub Uuid);

impl LeaseToken {
    /// A new random token.
    pub fn new() -> Self {
        Self(Uuid::new_v4())
    }
}

impl Default for LeaseToken {
    fn default() -> Self {
        Self::new()
    }
}

/// The owner of batches: every query is scoped to one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl TenantId {
    /// Longest accepted tenant id, in bytes.
    pub const MAX_LEN: usize = 64;

    /// Parses a tenant id: 1-64 ASCII letters, digits, `-`, `_` or `.`.
    pub fn parse(value: impl Into<String>) -> Result<Self> {
        let value = value.into();
        let ok = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if ok {
            Ok(Self(value))
        } else {
            Err(Error::new(
                ErrorKind::Invalid,
                format!(
                    "tenant id {value:?} must be 1-{} ASCII letters, digits, '-', '_' or '.'",
                    Self::MAX_LEN
                ),
            ))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A normalized domain: lowercase, punycode (IDNA), no trailing dot, with a
/// registrable public suffix. Build one with [`crate::validate::normalize_domain`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Domain(String);

impl Domain {
    /// Wraps a domain that was normalized before it was stored. Adapters use
    /// this when reading rows back; anything else goes through validation.
    pub fn from_normalized(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The domain as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated organization as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrganization {
    /// Display name, trimmed, 1-255 characters, no control characters.
    pub name: String,
    /// The normalized domain: the key of the upsert.
    pub domain: Domain,
    /// A syntactically valid email address.
    pub contact_email: String,
}

/// An organization as stored: one per domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    /// Row id.
    pub id: OrganizationId,
    /// Display name.
    pub name: String,
    /// Normalized domain (unique).
    pub domain: Domain,
    /// Contact address.
    pub contact_email: String,
    /// Processing status of its latest submission.
    pub status: ItemStatus,
    /// Incremented on every change of name or contact_email.
    pub version: i64,
    /// When the row was first inserted.
    pub created_at: Timestamp,
    /// When name or contact_email last changed (status changes do not count).
    pub updated_at: Timestamp,
    /// Soft-delete marker.
    pub deleted_at: Option<Timestamp>,
}

/// What to do when a submitted domain already exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictPolicy {
    /// Overwrite name and contact_email (the original service's upsert).
    #[default]
    Update,
    /// Keep the existing row untouched.
    Skip,
}

/// How a request with some invalid organizations is treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubmitMode {
    /// Any invalid organization rejects the whole request.
    #[default]
    Atomic,
    /// Valid organizations are accepted; invalid ones are listed as rejected.
    Partial,
}

/// Where one batch item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    /// Waiting to be claimed (possibly not before `available_at`).
    Pending,
    /// Claimed by a worker holding a live lease.
    Processing,
    /// Done (terminal).
    Completed,
    /// Failed permanently or out of attempts: the dead-letter list (terminal until re-driven).
    Failed,
    /// Its batch was cancelled before it was claimed (terminal).
    Cancelled,
}

impl ItemStatus {
    /// Every status, in life order.
    pub const ALL: [ItemStatus; 5] = [
        Self::Pending,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Whether the item will not change again on its own.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// A stable snake_case name (also the stored value in SQL backends).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses [`ItemStatus::as_str`] back.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// What the upsert did to the organization row, relative to the data it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// No row had this domain.
    Created,
    /// The row existed and name or contact_email changed.
    Updated,
    /// The row existed with identical data.
    Unchanged,
    /// The row existed and the policy was `skip`.
    Skipped,
}

impl Change {
    /// Every change, in order.
    pub const ALL: [Change; 4] = [Self::Created, Self::Updated, Self::Unchanged, Self::Skipped];

    /// A stable snake_case name (also the stored value in SQL backends).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Skipped => "skipped",
        }
    }

    /// Parses [`Change::as_str`] back.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// The result a client sees for one organization of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    /// Inserted.
    Created,
    /// Existing row updated.
    Updated,
    /// Existing row identical.
    Unchanged,
    /// Existing row kept (policy `skip`).
    Skipped,
    /// Processing failed permanently or ran out of attempts.
    Failed,
}

impl ItemOutcome {
    /// The outcome of an item with this status and change.
    pub fn of(status: ItemStatus, change: Change) -> Self {
        if status == ItemStatus::Failed {
            return Self::Failed;
        }
        match change {
            Change::Created => Self::Created,
            Change::Updated => Self::Updated,
            Change::Unchanged => Self::Unchanged,
            Change::Skipped => Self::Skipped,
        }
    }
}

/// One failed attempt, kept in the item's error history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    /// Which attempt (1-based) failed.
    pub attempt: u32,
    /// When it failed.
    pub at: Timestamp,
    /// What the processor said.
    pub message: String,
    /// Whether the processor declared it permanent.
    pub permanent: bool,
}

/// A batch as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Batch id.
    pub id: BatchId,
    /// Owner.
    pub tenant: TenantId,
    /// SHA-256 (hex) of the normalized request, to tell a replay from a reuse.
    pub request_hash: String,
    /// Client-chosen idempotency key, unique per tenant.
    pub idempotency_key: Option<String>,
    /// Number of items.
    pub total: u32,
    /// Conflict policy of the request.
    pub policy: ConflictPolicy,
    /// Submit mode of the request.
    pub mode: SubmitMode,
    /// When it was accepted.
    pub created_at: Timestamp,
    /// When its last item reached a terminal status (cleared by a re-drive).
    pub completed_at: Option<Timestamp>,
    /// When it was cancelled.
    pub cancelled_at: Option<Timestamp>,
    /// When `BatchCompleted` was handed to the event sink for the current completion.
    pub announced_at: Option<Timestamp>,
}

/// Exact item counts of one batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCounts {
    /// Items waiting.
    pub pending: u32,
    /// Items claimed.
    pub processing: u32,
    /// Items done.
    pub completed: u32,
    /// Items in the dead-letter list.
    pub failed: u32,
    /// Items stopped by a cancel.
    pub cancelled: u32,
    /// Items whose upsert inserted the row.
    pub created: u32,
    /// Items whose upsert changed the row.
    pub updated: u32,
    /// Items whose upsert found identical data.
    pub unchanged: u32,
    /// Items whose upsert kept the row (policy `skip`).
    pub skipped: u32,
}

impl BatchCounts {
    /// Adds one item.
    pub fn add(&mut self, status: ItemStatus, change: Change) {
        match status {
            ItemStatus::Pending => self.pending += 1,
            ItemStatus::Processing => self.processing += 1,
            ItemStatus::Completed => self.completed += 1,
            ItemStatus::Failed => self.failed += 1,
            ItemStatus::Cancelled => self.cancelled += 1,
        }
        match change {
            Change::Created => self.created += 1,
            Change::Updated => self.updated += 1,
            Change::Unchanged => self.unchanged += 1,
            Change::Skipped => self.skipped += 1,
        }
    }

    /// All items.
    pub fn total(&self) -> u32 {
        self.pending + self.processing + self.completed + self.failed + self.cancelled
    }

    /// Items in a terminal status.
    pub fn finished(&self) -> u32 {
        self.completed + self.failed + self.cancelled
    }

    /// Share of finished items, 0.0-100.0 (100 for an empty batch).
    pub fn percent(&self) -> f64 {
        match self.total() {
            0 => 100.0,
            total => f64::from(self.finished()) * 100.0 / f64::from(total),
        }
    }
}

/// A batch with its exact counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStatus {
    /// The batch row.
    pub batch: Batch,
    /// Counts derived from its items.
    pub counts: BatchCounts,
}

impl BatchStatus {
    /// Whether every item is terminal.
    pub fn is_finished(&self) -> bool {
        self.counts.pending == 0 && self.counts.processing == 0
    }
}

/// Where a batch is in its life, as listings filter it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// Neither completed nor cancelled.
    Running,
    /// Every item reached a terminal status (and it was not cancelled).
    Completed,
    /// Cancelled (whether or not its last items finished since).
    Cancelled,
}

impl BatchState {
    /// Every state.
    pub const ALL: [BatchState; 3] = [Self::Running, Self::Completed, Self::Cancelled];

    /// The state of a stored batch: cancelled wins over completed.
    pub fn of(batch: &Batch) -> Self {
        if batch.cancelled_at.is_some() {
            Self::Cancelled
        } else if batch.completed_at.is_some() {
            Self::Completed
        } else {
            Self::Running
        }
    }

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a wire name.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

/// How many failed attempts an item keeps in its history: a retry loop
/// (`POST /retry` again and again) must not grow a row without end, so
/// older entries go and [`BatchItem::error_count`] keeps the total.
pub const ERROR_HISTORY_LIMIT: usize = 10;

/// Drops the oldest entries of an error history past [`ERROR_HISTORY_LIMIT`].
pub fn trim_error_history<T>(history: &mut Vec<T>) {
    let excess = history.len().saturating_sub(ERROR_HISTORY_LIMIT);
    history.drain(..excess);
}

/// One item of a batch as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItem {
    /// Item id.
    pub id: ItemId,
    /// Its batch.
    pub batch_id: BatchId,
    /// Position in the submitted `organizations` array.
    pub position: u32,
    /// The organization row it upserted.
    pub organization_id: OrganizationId,
    /// The normalized domain.
    pub domain: Domain,
    /// Where it is in its life.
    pub status: ItemStatus,
    /// What the upsert did.
    pub change: Change,
    /// Claims so far (attempts started).
    pub attempts: u32,
    /// Not claimable before this time.
    pub available_at: Timestamp,
    /// Lease expiry while processing.
    pub lease_until: Option<Timestamp>,
    /// The last [`ERROR_HISTORY_LIMIT`] failed attempts, oldest first.
    pub errors: Vec<AttemptError>,
    /// Every failed attempt ever recorded, re-drives included (`errors`
    /// keeps only the last [`ERROR_HISTORY_LIMIT`] of them).
    #[serde(default)]
    pub error_count: u32,
    /// When the item was stored.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// When it reached its terminal status.
    pub finished_at: Option<Timestamp>,
}

impl BatchItem {
    /// The client-facing outcome.
    pub fn outcome(&self) -> ItemOutcome {
        ItemOutcome::of(self.status, self.change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batchs_item_ids_are_one_range_in_position_order() {
        let batch = BatchId::new();
        let (first, last) = ItemId::batch_range(batch);
        let ids: Vec<ItemId> = [0, 1, 255, 256, 70_000, u32::MAX]
            .into_iter()
            .map(|p| ItemId::in_batch(batch, p))
            .collect();
        assert_eq!(ids.first(), Some(&first));
        assert_eq!(ids.last(), Some(&last));
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        // Keyed by the batch: the next batch's items are after, never inside.
        let next = BatchId::new();
        assert!(ItemId::batch_range(next).0 > last);
        assert_eq!(
            ItemId::in_batch(batch, 7).0.as_bytes()[..12],
            batch.0.as_bytes()[..12]
        );
        assert_eq!(ItemId::in_batch(batch, 7).0.get_version_num(), 7);
        for p in [0, 1, 255, 256, 70_000, u32::MAX] {
            assert_eq!(ItemId::in_batch(batch, p).position(), p);
        }
    }

    #[test]
    fn an_organization_first_stored_by_an_item_has_an_id_of_its_own() {
        let batch = BatchId::new();
        let items: Vec<ItemId> = (0..1000).map(|p| ItemId::in_batch(batch, p)).collect();
        let orgs: std::collections::HashSet<OrganizationId> = items
            .iter()
            .map(|i| OrganizationId::first_stored_by(*i))
            .collect();
        assert_eq!(orgs.len(), items.len(), "one id per item");
        for (item, org) in items
            .iter()
            .zip(items.iter().map(|i| OrganizationId::first_stored_by(*i)))
        {
            assert_ne!(org.0, item.0);
            assert_eq!(org.0.get_version_num(), 8);
            assert_eq!(
                org,
                OrganizationId::first_stored_by(*item),
                "the same item, the same id"
            );
        }
    }

    #[test]
    fn tenant_ids_are_checked() {
        assert!(TenantId::parse("acme-1.eu_west").is_ok());
        for bad in ["", "a b", "ümlaut", &"x".repeat(65), "a/b"] {
            assert_eq!(
                TenantId::parse(bad).map_err(|e| e.kind()).err(),
                Some(ErrorKind::Invalid),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn status_and_change_names_round_trip() {
        for s in ItemStatus::ALL {
            assert_eq!(ItemStatus::parse(s.as_str()), Some(s));
        }
        for c in Change::ALL {
            assert_eq!(Change::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn counts_percent_and_outcome() {
        let mut c = BatchCounts::default();
        c.add(ItemStatus::Completed, Change::Created);
        c.add(ItemStatus::Failed, Change::Updated);
        c.add(ItemStatus::Pending, Change::Created);
        c.add(ItemStatus::Processing, Change::Unchanged);
        assert_eq!(c.total(), 4);
        assert_eq!(c.finished(), 2);
        assert!((c.percent() - 50.0).abs() < f64::EPSILON);
        assert_eq!(
            ItemOutcome::of(ItemStatus::Failed, Change::Created),
            ItemOutcome::Failed
        );
        assert_eq!(
            ItemOutcome::of(ItemStatus::Completed, Change::Skipped),
            ItemOutcome::Skipped
        );
    }
}
