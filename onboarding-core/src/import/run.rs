//! [`OnboardingService::import`]: a body of any size → one batch, in chunks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::parse::{ImportFormat, ImportParser};
use super::rows::{ImportRow, ParsedRow, RowError};
use super::store::{ImportProgress, ImportStore, NewImport};
use crate::completion::announce;
use crate::error::{Error, ErrorKind, FieldError, Result};
use crate::model::{after, now, BatchId, ConflictPolicy, ItemStatus, SubmitMode, TenantId};
use crate::queue::Job;
use crate::repository::{ItemQuery, OrgRepository, StoreResult, Submission};
use crate::service::{check_idempotency_key, key_reused, OnboardingService};

/// Rows parsed before they are staged with one call (bounds memory).
const STAGE_ROWS: usize = 2_000;
/// Pending items enqueued per call after the batch is stored.
const ENQUEUE_PAGE: u32 = 2_000;
/// Row problems quoted in a refusal.
const QUOTED_ERRORS: usize = 100;

/// How an import is treated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ImportOptions {
    /// The file's format.
    pub format: ImportFormat,
    /// What to do with domains that already exist (default `update`).
    pub policy: ConflictPolicy,
    /// `Partial` (default for files): refused rows are listed, the rest proceeds;
    /// `Atomic`: any refused row refuses the whole import.
    pub mode: SubmitMode,
    /// In partial mode, refuse the whole import once more than this many rows are refused.
    pub max_errors: Option<u64>,
    /// The request's idempotency key.
    pub idempotency_key: Option<String>,
    /// Whether unchanged, completed organizations are processed again.
    pub reprocess_unchanged: Option<bool>,
}

impl ImportOptions {
    /// Defaults for `format`: policy `update`, partial mode, no error limit.
    pub fn new(format: ImportFormat) -> Self {
        Self {
            format,
            policy: ConflictPolicy::Update,
            mode: SubmitMode::Partial,
            max_errors: None,
            idempotency_key: None,
            reprocess_unchanged: None,
        }
    }

    /// Sets the conflict policy.
    pub fn with_policy(mut self, policy: ConflictPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets the mode.
    pub fn with_mode(mut self, mode: SubmitMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the most refused rows a partial import tolerates.
    pub fn with_max_errors(mut self, max: Option<u64>) -> Self {
        self.max_errors = max;
        self
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: Option<String>) -> Self {
        self.idempotency_key = key;
        self
    }
}

/// The answer to an accepted import.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImportReceipt {
    /// The batch.
    pub batch_id: BatchId,
    /// Organizations in the batch.
    pub organizations_count: u32,
    /// Rows parsed (valid or not).
    pub rows_received: u64,
    /// Rows refused (listed by the results route with `status=rejected`).
    pub rows_rejected: u64,
    /// Whether this answers an earlier request with the same idempotency key (nothing new stored).
    pub replayed: bool,
}

/// Discards the upload unless it was finished: a dropped request (a client
/// that went away) leaves nothing behind.
struct AbortOnDrop {
    repository: Arc<dyn OrgRepository>,
    batch: BatchId,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (repository, batch) = (self.repository.clone(), self.batch);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Some(store) = repository.imports() {
                    if let Err(e) = store.abort_import(batch).await {
                        tracing::warn!(batch_id = %batch, error = %e, "could not discard an interrupted upload");
                    }
                }
            });
        }
    }
}

/// Time spent per stage of one import.
#[derive(Default)]
struct StageTimes {
    /// Waiting for the body's chunks.
    body: Duration,
    /// Hashing, parsing and validating them.
    parse: Duration,
    /// Staging the rows (`append_import`).
    stage: Duration,
    /// `finish_import`.
    finish: Duration,
}

struct Upload<'a> {
    store: &'a dyn ImportStore,
    batch: BatchId,
    options: &'a ImportOptions,
    received: u64,
    stored: u64,
    rejected: u64,
    quoted: Vec<RowError>,
}

impl Upload<'_> {
    async fn stage(&mut self, parsed: &mut Vec<ParsedRow>) -> Result<()> {
        if parsed.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<ImportRow> = Vec::with_capacity(parsed.len());
        let mut refused: Vec<RowError> = Vec::new();
        let mut refused_rows = 0u64;
        for row in parsed.drain(..) {
            match row {
                ParsedRow::Valid(r) => rows.push(r),
                ParsedRow::Rejected(errors) => {
                    refused_rows += 1;
                    refused.extend(errors);
                }
            }
        }
        let duplicates = self
            .store
            .append_import(self.batch, &rows, &refused)
            .await?;
        let count = u64::try_from(rows.len()).unwrap_or(u64::MAX);
        let dups = u64::try_from(duplicates.len()).unwrap_or(u64::MAX);
        self.received += count + refused_rows;
        self.stored += count - dups.min(count);
        self.rejected += refused_rows + dups;
        for e in refused.into_iter().chain(duplicates) {
            if self.quoted.len() < QUOTED_ERRORS {
                self.quoted.push(e);
            }
        }
        self.check_limits()
    }

    fn check_limits(&self) -> Result<()> {
        let too_many = match self.options.mode {
            SubmitMode::Atomic => self.rejected > 0,
            SubmitMode::Partial => self.options.max_errors.is_some_and(|m| self.rejected > m),
        };
        if !too_many {
            return Ok(());
        }
        let why = match self.options.mode {
            SubmitMode::Atomic => "a row was refused in atomic mode".to_owned(),
            SubmitMode::Partial => format!(
                "more than max_errors = {} rows were refused",
                self.options.max_errors.unwrap_or_default()
            ),
        };
        Err(refusal(
            format!("the import was refused: {why}; nothing was stored"),
            &self.quoted,
        ))
    }
}

/// An `Invalid` error quoting row problems as pointers `/lines/{line}/{column}`.
fn refusal(message: String, errors: &[RowError]) -> Error {
    let fields = errors
        .iter()
        .map(|e| {
            let pointer = match &e.column {
                Some(c) => format!("/lines/{}/{c}", e.line),
                None => format!("/lines/{}", e.line),
            };
            FieldError::new(pointer, e.code.clone(), e.detail.clone())
        })
        .collect();
    Error::new(ErrorKind::Invalid, message).with_field_errors(fields)
}

impl OnboardingService {
    /// Parses, validates and stages a file while it arrives, then stores it
    /// as one batch and enqueues its work.
    ///
    /// # Behavior
    /// - Memory is bounded by one chunk of the body, 64 KiB of line and
    ///   [`STAGE_ROWS`] rows, whatever the size of the file.
    /// - A body that fails (client gone, size limit) or a dropped future
    ///   discards the upload: no batch, nothing stored.
    /// - Partial mode: refused rows are kept for the results route, the rest
    ///   proceeds; `max_errors` or atomic mode refuse the whole import
    ///   (`Invalid`, quoting the first 100 problems) and store nothing.
    /// - A CSV header without a required column is `Invalid` at once.
    /// - No valid row at all is `Invalid`.
    /// - The idempotency key works as on [`OnboardingService::submit_valid`]
    ///   (another payload under a used key: `Invalid`, code
    ///   `idempotency_key_reused`); the request hash covers the options and
    ///   the body's bytes. A second upload with a key in use by one still
    ///   arriving is a `Conflict` (the first request is in progress).
    /// - Backpressure ([`IngestConfig::max_backlog`](crate::IngestConfig::max_backlog)):
    ///   the size of a file is not known before it has arrived, so an import
    ///   is refused with `Overloaded` (retryable, nothing read or stored)
    ///   when the queue's backlog is already at the limit, and otherwise
    ///   accepted whole, as a JSON submission is when no work waits.
    pub async fn import<S, B, E>(
        &self,
        tenant: &TenantId,
        options: ImportOptions,
        body: S,
    ) -> Result<ImportReceipt>
    where
        S: Stream<Item = std::result::Result<B, E>> + Send,
        B: AsRef<[u8]> + Send,
        E: Into<Error> + Send,
    {
        if let Some(key) = &options.idempotency_key {
            check_idempotency_key(key)?;
        }
        let backends = self.backends();
        let config = self.config();
        if let Some(max) = config.max_backlog {
            // At least one organization: refused once the backlog is full.
            self.check_backlog(max, 1).await?;
        }
        let store = backends.repository.imports().ok_or_else(|| {
            Error::new(
                ErrorKind::Unavailable,
                "this repository does not support imports",
            )
            .with_retryable(false)
        })?;
        let batch = BatchId::new();
        let started = now();
        store
            .begin_import(&NewImport {
                batch_id: batch,
                tenant: tenant.clone(),
                idempotency_key: options.idempotency_key.clone(),
                now: started,
                policy: options.policy,
                mode: options.mode,
            })
            .await?;
        let mut guard = AbortOnDrop {
            repository: backends.repository.clone(),
            batch,
            armed: true,
        };
        let mut upload = Upload {
            store,
            batch,
            options: &options,
            received: 0,
            stored: 0,
            rejected: 0,
            quoted: Vec::new(),
        };
        let mut hasher = Sha256::new();
        hasher.update(b"onboarding-core/import-hash/v1\0");
        hasher.update(
            format!(
                "{}|{:?}|{:?}|{:?}\0",
                options.format.as_str(),
                options.policy,
                options.mode,
                options.max_errors
            )
            .as_bytes(),
        );
        let mut parser = ImportParser::new(options.format);
        let mut parsed = Vec::with_capacity(STAGE_ROWS);
        let mut body = std::pin::pin!(body);
        // Where the time goes (logged with the answer): waiting for the
        // body, parsing and validating, staging, the finish.
        let mut stages = StageTimes::default();
        loop {
            let waited = Instant::now();
            let Some(chunk) = body.next().await else {
                break;
            };
            stages.body += waited.elapsed();
            let chunk = chunk.map_err(Into::into)?;
            let parsing = Instant::now();
            hasher.update(chunk.as_ref());
            parser.feed(chunk.as_ref(), &mut parsed)?;
            stages.parse += parsing.elapsed();
            if parsed.len() >= STAGE_ROWS {
                let staging = Instant::now();
                upload.stage(&mut parsed).await?;
                stages.stage += staging.elapsed();
            }
        }
        parser.finish(&mut parsed)?;
        let staging = Instant::now();
        upload.stage(&mut parsed).await?;
        stages.stage += staging.elapsed();
        if upload.stored == 0 {
            return Err(refusal(
                "the file has no valid row; nothing was stored".to_owned(),
                &upload.quoted,
            ));
        }
        let at = now();
        let submission = Submission {
            batch_id: batch,
            tenant: tenant.clone(),
            idempotency_key: options.idempotency_key.clone(),
            request_hash: crate::validate::hex(&hasher.finalize()),
            policy: options.policy,
            mode: options.mode,
            organizations: Vec::new(),
            chunk_size: config.chunk_size,
            reprocess_unchanged: options
                .reprocess_unchanged
                .unwrap_or(config.reprocess_unchanged),
            now: at,
            sweep_at: after(at, config.stale_after),
            trace_parent: crate::trace::current_traceparent(),
        };
        let finishing = Instant::now();
        let stored = store.finish_import(&submission).await?;
        stages.finish = finishing.elapsed();
        guard.armed = false;
        let batch = match stored {
            StoreResult::Stored { batch, .. } => batch,
            StoreResult::Replayed { batch } => {
                return Ok(ImportReceipt {
                    batch_id: batch.id,
                    organizations_count: batch.total,
                    rows_received: upload.received,
                    rows_rejected: upload.rejected,
                    replayed: true,
                })
            }
            StoreResult::KeyConflict { batch } => {
                return Err(key_reused(
                    options.idempotency_key.as_deref().unwrap_or_default(),
                    batch.id,
                ))
            }
        };
        if batch.completed_at.is_some() {
            if let Ok(Some(status)) = backends.repository.batch_status(tenant, batch.id).await {
                announce(backends, &[status]).await;
            }
        } else {
            self.enqueue_in_background(tenant, batch.id);
        }
        tracing::info!(batch_id = %batch.id, %tenant, organizations = batch.total,
            rejected = upload.rejected,
            body_ms = stages.body.as_millis(), parse_ms = stages.parse.as_millis(),
            stage_ms = stages.stage.as_millis(), finish_ms = stages.finish.as_millis(),
            "import accepted");
        Ok(ImportReceipt {
            batch_id: batch.id,
            organizations_count: batch.total,
            rows_received: upload.received,
            rows_rejected: upload.rejected,
            replayed: false,
        })
    }

    /// Enqueues a stored import's pending items after the answer.
    ///
    /// The items are durable once the finish commits, and the enqueue only
    /// wakes workers: a million of them take seconds to list and push, which
    /// the client need not wait for. Should this process stop before the
    /// task ends, the sweeper enqueues what is left, as after a failed
    /// enqueue.
    fn enqueue_in_background(&self, tenant: &TenantId, batch: BatchId) {
        let service = self.clone();
        let tenant = tenant.clone();
        let span = tracing::info_span!("import_enqueue", batch_id = %batch, %tenant);
        tokio::spawn(
            async move {
                let started = Instant::now();
                let queued = service.enqueue_pending(&tenant, batch).await;
                tracing::info!(
                    queued,
                    enqueue_ms = started.elapsed().as_millis(),
                    "import enqueued"
                );
            }
            .instrument(span),
        );
    }

    /// Enqueues a batch's pending items page by page (bounded memory). A
    /// failed enqueue is left to the sweeper, as after a submission.
    async fn enqueue_pending(&self, tenant: &TenantId, batch: BatchId) -> u64 {
        let repository = &self.backends().repository;
        let mut queued = 0u64;
        let mut after_position = None;
        loop {
            let query = ItemQuery {
                status: Some(ItemStatus::Pending),
                limit: ENQUEUE_PAGE,
                after_position,
            };
            let page = match repository.list_items(tenant, batch, &query).await {
                Ok(Some(page)) => page,
                Ok(None) => return queued,
                Err(e) => {
                    tracing::warn!(batch_id = %batch, error = %e,
                        "listing pending items failed; the sweeper will deliver the work");
                    return queued;
                }
            };
            let jobs: Vec<Job> = page
                .items
                .iter()
                .map(|i| Job {
                    item_id: i.id,
                    tenant: tenant.clone(),
                    not_before: None,
                })
                .collect();
            if let Err(e) = self.backends().queue.enqueue(&jobs).await {
                tracing::warn!(batch_id = %batch, jobs = jobs.len(), error = %e,
                    "enqueue after commit failed; the sweeper will deliver the work");
            } else {
                queued += u64::try_from(jobs.len()).unwrap_or(u64::MAX);
            }
            match page.next_cursor {
                Some(cursor) => after_position = Some(cursor),
                None => return queued,
            }
        }
    }

    /// The counters of an upload (while it arrives and after).
    ///
    /// # Errors
    /// `NotFound` for an unknown upload or one of another tenant.
    pub async fn import_progress(
        &self,
        tenant: &TenantId,
        batch: BatchId,
    ) -> Result<ImportProgress> {
        let missing = || Error::not_found(format!("import {batch} does not exist"));
        let store = self.backends().repository.imports().ok_or_else(missing)?;
        store
            .import_progress(tenant, batch)
            .await?
            .ok_or_else(missing)
    }

    /// The tenant's imports still being uploaded, newest first (at most
    /// [`super::RECEIVING_LISTED`]; none when the repository has no imports).
    ///
    /// # Errors
    /// Only a backend's.
    pub async fn receiving_imports(&self, tenant: &TenantId) -> Result<Vec<ImportProgress>> {
        match self.backends().repository.imports() {
            Some(store) => store.receiving_imports(tenant, None).await,
            None => Ok(Vec::new()),
        }
    }

    /// The staged rows of an import at these lines (none for a JSON batch).
    ///
    /// # Errors
    /// Only a backend's.
    pub async fn staged_rows(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        lines: &[u32],
    ) -> Result<Vec<ImportRow>> {
        match self.backends().repository.imports() {
            Some(store) if !lines.is_empty() => store.staged_rows(tenant, batch, lines).await,
            _ => Ok(Vec::new()),
        }
    }

    /// The rows an import refused, by line (see [`ImportStore::rejected_rows`]).
    ///
    /// # Errors
    /// `NotFound` for an unknown upload or one of another tenant.
    pub async fn rejected_rows(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        after_line: Option<u32>,
        limit: u32,
    ) -> Result<Vec<RowError>> {
        let missing = || Error::not_found(format!("import {batch} does not exist"));
        let store = self.backends().repository.imports().ok_or_else(missing)?;
        store
            .rejected_rows(tenant, batch, after_line, limit)
            .await?
            .ok_or_else(missing)
    }
}
