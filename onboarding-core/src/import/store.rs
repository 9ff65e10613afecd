//! `ImportStore`: an upload staged in chunks while its body arrives, turned
//! into ONE batch when it ends, or discarded.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::rows::{ImportRow, RowError};
use crate::error::Result;
use crate::model::{BatchId, ConflictPolicy, SubmitMode, TenantId, Timestamp};
use crate::repository::{StoreResult, Submission};

/// An upload to open.
#[derive(Debug, Clone)]
pub struct NewImport {
    /// The id its batch will have.
    pub batch_id: BatchId,
    /// Owner.
    pub tenant: TenantId,
    /// The request's idempotency key, if any.
    pub idempotency_key: Option<String>,
    /// When the upload began.
    pub now: Timestamp,
    /// The import's conflict policy (shown while it arrives).
    pub policy: ConflictPolicy,
    /// The import's mode (shown while it arrives).
    pub mode: SubmitMode,
}

/// Where an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportState {
    /// The body is still arriving; rows are being staged.
    Receiving,
    /// The batch was created from the staged rows.
    Stored,
}

/// Counters of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportProgress {
    /// The batch id the upload has (or will have).
    pub batch_id: BatchId,
    /// Where it is.
    pub state: ImportState,
    /// Rows parsed so far, valid or not.
    pub rows_received: u64,
    /// Valid rows staged so far.
    pub rows_stored: u64,
    /// Rows refused so far (validation, duplicates).
    pub rows_rejected: u64,
    /// When the upload began.
    pub started_at: Timestamp,
    /// The import's conflict policy.
    pub policy: ConflictPolicy,
    /// The import's mode.
    pub mode: SubmitMode,
}

/// Uploads still receiving that [`ImportStore::receiving_imports`] lists at most.
pub const RECEIVING_LISTED: u32 = 100;

/// Staged uploads. Every method of one upload is called by one caller at a
/// time (the request that owns it); uploads of different requests run in parallel.
#[async_trait]
pub trait ImportStore: Send + Sync + 'static {
    /// Opens an upload in state `Receiving`.
    ///
    /// # Behavior
    /// - Nothing of the upload is a batch yet: `batch_status`, `list_items`,
    ///   workers and the sweeper do not see it until [`ImportStore::finish_import`].
    /// - A second upload with the same `(tenant, idempotency_key)` while one is
    ///   `Receiving` fails with `Conflict`.
    async fn begin_import(&self, import: &NewImport) -> Result<()>;

    /// Stages the valid rows of one chunk and records its refused rows.
    ///
    /// # Behavior
    /// - A valid row whose domain was staged before in this upload (or earlier
    ///   in the chunk) is not staged: it is refused with `domain_duplicate`,
    ///   naming the earlier line, and returned.
    /// - `rows_received` grows by the rows of the chunk (a refused row counts
    ///   once however many problems it has), `rows_stored` by the rows staged,
    ///   `rows_rejected` by the rows refused.
    /// - `NotFound` when the upload is not `Receiving`.
    async fn append_import(
        &self,
        batch: BatchId,
        rows: &[ImportRow],
        rejected: &[RowError],
    ) -> Result<Vec<RowError>>;

    /// Creates the batch from the staged rows, in one transaction.
    ///
    /// `submission` gives the batch's options (its `organizations` are
    /// empty: the staged rows are the organizations).
    ///
    /// # Behavior
    /// - One item per staged row, at `position` = its line, with the upserts
    ///   and statuses of [`crate::repository::OrgRepository::store_submission`];
    ///   the answer is `Stored` with an empty `items` list (the caller pages
    ///   through the pending items to enqueue them).
    /// - The same `(tenant, idempotency_key)` as an earlier batch answers
    ///   `Replayed` / `KeyConflict` like `store_submission` and discards the upload.
    /// - The upload becomes `Stored`; its refused rows stay listed by
    ///   [`ImportStore::rejected_rows`].
    /// - All or nothing: on error the upload is still `Receiving`, no batch exists.
    async fn finish_import(&self, submission: &Submission) -> Result<StoreResult>;

    /// Discards an upload.
    ///
    /// # Behavior
    /// - Deletes its staged and refused rows and its record; no batch ever
    ///   appears. An unknown upload is not an error.
    async fn abort_import(&self, batch: BatchId) -> Result<()>;

    /// The counters of an upload.
    ///
    /// # Behavior
    /// - `None` for an unknown upload or one of another tenant.
    async fn import_progress(
        &self,
        tenant: &TenantId,
        batch: BatchId,
    ) -> Result<Option<ImportProgress>>;

    /// The tenant's uploads still receiving, newest first (at most
    /// [`RECEIVING_LISTED`]); only the one under `key` when a key is given.
    ///
    /// # Behavior
    /// - Stored or discarded uploads and other tenants' are left out.
    async fn receiving_imports(
        &self,
        tenant: &TenantId,
        key: Option<&str>,
    ) -> Result<Vec<ImportProgress>>;

    /// The refused rows of an upload, ordered by line (a line's problems in the order they were appended).
    ///
    /// # Behavior
    /// - `None` for an unknown upload or one of another tenant.
    /// - Only problems at lines after `after_line`; at most `limit` problems,
    ///   never splitting one line's problems across pages when `limit` allows.
    async fn rejected_rows(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        after_line: Option<u32>,
        limit: u32,
    ) -> Result<Option<Vec<RowError>>>;

    /// The staged rows of an upload at these lines (the submitted name,
    /// contact email and external id of a batch's items, for results).
    ///
    /// # Behavior
    /// - Rows of other tenants, of unknown uploads or at lines not staged are left out.
    async fn staged_rows(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        lines: &[u32],
    ) -> Result<Vec<ImportRow>>;
}
