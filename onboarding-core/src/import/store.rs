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
    /// The body has arrived and every row is staged (the import was
    /// answered); the batch is being created from them.
    Staged,
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

/// What a sealed upload keeps so that any process can create its batch:
/// the options of its [`Submission`] that its record does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedOptions {
    /// The request's hash (idempotency).
    pub request_hash: String,
    /// Whether unchanged, completed organizations are processed again.
    pub reprocess_unchanged: bool,
    /// Organizations per chunk of the batch's statements.
    pub chunk_size: usize,
    /// How long after its creation an untouched pending item is swept, in milliseconds.
    pub sweep_after_ms: u64,
    /// The W3C trace context of the request.
    pub trace_parent: Option<String>,
}

impl SealedOptions {
    /// The options of `submission` to keep.
    pub fn of(submission: &Submission) -> Self {
        let sweep_after = submission.sweep_at - submission.now;
        Self {
            request_hash: submission.request_hash.clone(),
            reprocess_unchanged: submission.reprocess_unchanged,
            chunk_size: submission.chunk_size,
            sweep_after_ms: u64::try_from(sweep_after.num_milliseconds()).unwrap_or(0),
            trace_parent: submission.trace_parent.clone(),
        }
    }

    /// As kept in a record (JSON).
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and booleans always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The submission that finishes the upload `progress` of `tenant` under
    /// `key`, timed from `now`.
    ///
    /// # Errors
    /// `Internal` when `json` is not what [`SealedOptions::to_json`] wrote.
    pub fn submission(
        json: &str,
        progress: &ImportProgress,
        tenant: TenantId,
        idempotency_key: Option<String>,
        now: Timestamp,
    ) -> Result<Submission> {
        let options: Self = serde_json::from_str(json).map_err(|e| {
            crate::error::Error::internal(format!(
                "the sealed options of upload {} are unreadable: {e}",
                progress.batch_id
            ))
        })?;
        let sweep_after =
            chrono::Duration::milliseconds(i64::try_from(options.sweep_after_ms).unwrap_or(0));
        Ok(Submission {
            batch_id: progress.batch_id,
            tenant,
            idempotency_key,
            request_hash: options.request_hash,
            policy: progress.policy,
            mode: progress.mode,
            organizations: Vec::new(),
            chunk_size: options.chunk_size,
            reprocess_unchanged: options.reprocess_unchanged,
            now,
            sweep_at: now + sweep_after,
            trace_parent: options.trace_parent,
        })
    }
}

/// How many rows [`ImportStore::refuse_repeats`] refused, and the first of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepeatsRefused {
    /// Rows refused.
    pub count: u64,
    /// The first refusals by line (at most the `quote` asked for).
    pub first: Vec<RowError>,
}

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

    /// Refuses every staged row whose domain an earlier staged line of the
    /// upload has, as `append_import` refuses the repeats it sees.
    ///
    /// `append_import` may leave repeats across chunks to this call (it
    /// need not look every domain up while the body arrives); the caller
    /// calls it once every row is staged, whenever a domain may repeat.
    ///
    /// # Behavior
    /// - Each such row is unstaged and refused with `domain_duplicate`,
    ///   naming the earliest line with its domain; the counters move as for
    ///   a repeat refused by `append_import`.
    /// - Answers how many it refused and the first `quote` of them by line;
    ///   none when `append_import` refused every repeat itself.
    /// - `NotFound` when the upload is not `Receiving` or is sealed.
    async fn refuse_repeats(&self, batch: BatchId, quote: usize) -> Result<RepeatsRefused>;

    /// Seals an upload whose rows are all staged: from now on it is no
    /// longer the request's to discard but any process's to finish.
    ///
    /// `submission` is the batch's (its `organizations` are empty); its
    /// options are kept with the upload ([`SealedOptions`]).
    ///
    /// # Behavior
    /// - A `(tenant, idempotency_key)` of an earlier batch answers
    ///   `Some(Replayed)` / `Some(KeyConflict)` like `store_submission` and
    ///   discards the upload.
    /// - Otherwise answers `None`: the upload is `Staged` in
    ///   `import_progress`, `abort_import` leaves it alone, and
    ///   `sealed_imports` lists it until `finish_import` stores it.
    /// - `NotFound` when the upload is not `Receiving`.
    async fn seal_import(&self, submission: &Submission) -> Result<Option<StoreResult>>;

    /// Sealed uploads not yet finished that were sealed before `before`,
    /// oldest first, with the submissions that finish them (timed from
    /// `now`), at most `limit`: the work a process that stopped after
    /// answering an import left behind.
    ///
    /// # Behavior
    /// - Receiving (unsealed) and finished uploads are left out.
    async fn sealed_imports(
        &self,
        before: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Submission>>;

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
    /// - All or nothing: on error the upload is as it was, no batch exists.
    /// - A sealed upload is finished once: a second call (another process
    ///   recovering it) waits for the first and answers `NotFound`.
    async fn finish_import(&self, submission: &Submission) -> Result<StoreResult>;

    /// Discards an upload.
    ///
    /// # Behavior
    /// - Deletes its staged and refused rows and its record; no batch ever
    ///   appears. An unknown upload is not an error.
    /// - A sealed or finished upload is left as it is.
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
