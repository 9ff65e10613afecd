//! [`OnboardingService::import`]: a body of any size → one batch, in chunks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use super::parse::{ImportFormat, ImportParser};
use super::rows::{ImportRow, ParsedRow, RowError};
use super::store::{ImportProgress, ImportStore, NewImport};
use crate::backends::Backends;
use crate::completion::announce;
use crate::error::{Error, ErrorKind, FieldError, Result};
use crate::model::{after, now, BatchId, ConflictPolicy, ItemStatus, SubmitMode, TenantId};
use crate::queue::Job;
use crate::repository::{ItemQuery, OrgRepository, StoreResult, Submission};
use crate::service::{check_idempotency_key, key_reused, OnboardingService};

/// Rows parsed before they are staged with one call (bounds memory; fewer,
/// larger chunks mean fewer commits).
const STAGE_ROWS: usize = 5_000;
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
    /// Staging the rows (`append_import`), overlapping the parse.
    stage: Duration,
    /// Refusing repeats found across chunks and sealing.
    seal: Duration,
}

/// The staging side of an upload: its counters and the problems quoted in a refusal.
struct Upload<'a> {
    store: &'a dyn ImportStore,
    batch: BatchId,
    options: &'a ImportOptions,
    received: u64,
    stored: u64,
    rejected: u64,
    quoted: Vec<RowError>,
    repeats: RepeatFilter,
}

/// Hashes of the domains staged so far, to know whether a domain may
/// repeat across chunks (then [`ImportStore::refuse_repeats`] finds them
/// exactly). Bounded: past [`RepeatFilter::MAX_TRACKED`] domains it stops
/// remembering and answers "may repeat".
#[derive(Default)]
struct RepeatFilter {
    seen: std::collections::HashSet<u64>,
    may_repeat: bool,
}

impl RepeatFilter {
    /// Domains remembered at most: ~19 MiB of hashes (2^21 buckets).
    const MAX_TRACKED: usize = 1_835_000;

    /// Notes the domains of one chunk. A repeat inside the chunk is not a
    /// "may repeat": `append_import` refuses those itself; only a domain an
    /// earlier chunk may have had is.
    fn note(&mut self, rows: &[ImportRow]) {
        use std::hash::BuildHasher;
        if self.may_repeat {
            return;
        }
        // One keyed hasher for the whole upload: equal domains, equal hashes.
        static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
            std::sync::OnceLock::new();
        let keys = KEYS.get_or_init(std::collections::hash_map::RandomState::new);
        let chunk: std::collections::HashSet<u64> = rows
            .iter()
            .map(|row| keys.hash_one(row.organization.domain.as_str()))
            .collect();
        if chunk.iter().any(|h| self.seen.contains(h))
            || self.seen.len() + chunk.len() > Self::MAX_TRACKED
        {
            // Seen in an earlier chunk (or a hash collision), or too many to remember.
            self.may_repeat = true;
            self.seen = std::collections::HashSet::new();
            return;
        }
        self.seen.extend(chunk);
    }
}

impl Upload<'_> {
    async fn stage(&mut self, parsed: Vec<ParsedRow>) -> Result<()> {
        if parsed.is_empty() {
            return Ok(());
        }
        let mut rows: Vec<ImportRow> = Vec::with_capacity(parsed.len());
        let mut refused: Vec<RowError> = Vec::new();
        let mut refused_rows = 0u64;
        for row in parsed {
            match row {
                ParsedRow::Valid(r) => rows.push(r),
                ParsedRow::Rejected(errors) => {
                    refused_rows += 1;
                    refused.extend(errors);
                }
            }
        }
        self.repeats.note(&rows);
        let duplicates = self
            .store
            .append_import(self.batch, &rows, &refused)
            .await?;
        let count = u64::try_from(rows.len()).unwrap_or(u64::MAX);
        let dups = u64::try_from(duplicates.len()).unwrap_or(u64::MAX);
        self.received += count + refused_rows;
        self.stored += count - dups.min(count);
        self.rejected += refused_rows + dups;
        self.quote(refused.into_iter().chain(duplicates));
        self.check_limits()
    }

    fn quote(&mut self, errors: impl IntoIterator<Item = RowError>) {
        for e in errors {
            if self.quoted.len() < QUOTED_ERRORS {
                self.quoted.push(e);
            }
        }
    }

    /// Refuses the repeats across chunks that `append_import` left, when any may exist.
    async fn refuse_repeats(&mut self) -> Result<()> {
        if !self.repeats.may_repeat {
            return Ok(());
        }
        let refused = self.store.refuse_repeats(self.batch, QUOTED_ERRORS).await?;
        self.stored -= refused.count.min(self.stored);
        self.rejected += refused.count;
        self.quote(refused.first);
        self.quoted.sort_by_key(|e| e.line);
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

/// How much later than a JSON submission's the items of an import of
/// `rows` count as lost: their messages are sent only after the batch is
/// created from the staged rows and its pending items are listed page by
/// page (~10 s and ~5-13 s per 1,000,000 rows here). Without it, a sweep
/// between the creation and the enqueue of the last page sees a queue
/// that cannot yet hold those messages, and re-enqueues items that were
/// never lost (60,000 duplicates in a 1,000,000-row SQLite import).
/// 40 µs a row: 40 s per 1,000,000.
fn creation_allowance(rows: u64) -> Duration {
    Duration::from_micros(rows.saturating_mul(40))
}

/// Chunks of parsed rows on their way from the parse to the staging:
/// one being parsed, this many waiting, one being staged.
const CHUNKS_IN_FLIGHT: usize = 2;

impl OnboardingService {
    /// Parses, validates and stages a file while it arrives, answers once
    /// every row is stored, then creates the batch and enqueues its work
    /// after the answer.
    ///
    /// # Behavior
    /// - Memory is bounded by one chunk of the body, 64 KiB of line,
    ///   [`STAGE_ROWS`] rows per chunk with [`CHUNKS_IN_FLIGHT`] + 2 chunks
    ///   in hand (the next chunk is parsed while one is staged), and the
    ///   hashes of the domains (8 bytes each, at most ~19 MiB).
    /// - A body that fails (client gone, size limit) or a dropped future
    ///   discards the upload: no batch, nothing stored.
    /// - Partial mode: refused rows are kept for the results route, the rest
    ///   proceeds; `max_errors` or atomic mode refuse the whole import
    ///   (`Invalid`, quoting the first 100 problems) and store nothing.
    ///   Every refusal, repeated domains included, is known before the answer.
    /// - A CSV header without a required column is `Invalid` at once.
    /// - No valid row at all is `Invalid`.
    /// - The answer comes once the rows are staged and the upload sealed
    ///   (durable, any process can finish it): the batch exists shortly
    ///   after (its status shows the upload as `staged` meanwhile). Should
    ///   this process stop first, a worker's sweeper creates it
    ///   ([`ImportStore::sealed_imports`]).
    /// - The idempotency key works as on [`OnboardingService::submit_valid`]
    ///   (another payload under a used key: `Invalid`, code
    ///   `idempotency_key_reused`); the request hash covers the options and
    ///   the body's bytes. A second upload under a key in use by one still
    ///   arriving or not yet stored as a batch is a `Conflict` (the first
    ///   request is in progress).
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
            repeats: RepeatFilter::default(),
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
        // Where the time goes (logged with the answer): waiting for the
        // body, parsing and validating, staging (overlapping the parse),
        // sealing.
        let mut stages = StageTimes::default();
        let (chunks, mut staged_chunks) =
            tokio::sync::mpsc::channel::<Vec<ParsedRow>>(CHUNKS_IN_FLIGHT);
        // The parse and the staging run side by side in this task: the
        // database stores one chunk while the next one is parsed.
        let parsing = async {
            let mut parser = ImportParser::new(options.format);
            let mut parsed = Vec::with_capacity(STAGE_ROWS);
            let mut body = std::pin::pin!(body);
            let (mut waiting, mut working) = (Duration::ZERO, Duration::ZERO);
            loop {
                let waited = Instant::now();
                let Some(chunk) = body.next().await else {
                    break;
                };
                waiting += waited.elapsed();
                let chunk = chunk.map_err(Into::into)?;
                let started = Instant::now();
                hasher.update(chunk.as_ref());
                parser.feed(chunk.as_ref(), &mut parsed)?;
                working += started.elapsed();
                if parsed.len() >= STAGE_ROWS {
                    let full = std::mem::replace(&mut parsed, Vec::with_capacity(STAGE_ROWS));
                    if chunks.send(full).await.is_err() {
                        // The staging stopped: its error is the answer.
                        return Ok((waiting, working));
                    }
                }
            }
            parser.finish(&mut parsed)?;
            chunks.send(parsed).await.ok();
            drop(chunks);
            Ok::<_, Error>((waiting, working))
        };
        let staging = async {
            let mut spent = Duration::ZERO;
            while let Some(parsed) = staged_chunks.recv().await {
                let started = Instant::now();
                upload.stage(parsed).await?;
                spent += started.elapsed();
            }
            Ok::<_, Error>(spent)
        };
        let ((body_wait, parse_work), stage_work) = tokio::try_join!(parsing, staging)?;
        (stages.body, stages.parse, stages.stage) = (body_wait, parse_work, stage_work);
        let sealing = Instant::now();
        upload.refuse_repeats().await?;
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
            sweep_at: after(at, config.stale_after + creation_allowance(upload.stored)),
            trace_parent: crate::trace::current_traceparent(),
        };
        match store.seal_import(&submission).await? {
            None => {}
            Some(StoreResult::Replayed { batch }) => {
                guard.armed = false;
                return Ok(ImportReceipt {
                    batch_id: batch.id,
                    organizations_count: batch.total,
                    rows_received: upload.received,
                    rows_rejected: upload.rejected,
                    replayed: true,
                });
            }
            Some(StoreResult::KeyConflict { batch }) => {
                guard.armed = false;
                return Err(key_reused(
                    options.idempotency_key.as_deref().unwrap_or_default(),
                    batch.id,
                ));
            }
            Some(StoreResult::Stored { .. }) => {
                return Err(Error::internal("sealing an upload stored a batch"));
            }
        }
        stages.seal = sealing.elapsed();
        // Sealed: the upload is the batch's to be, no longer the request's to discard.
        guard.armed = false;
        tracing::info!(batch_id = %batch, %tenant, organizations = upload.stored,
            rejected = upload.rejected,
            body_ms = stages.body.as_millis(), parse_ms = stages.parse.as_millis(),
            stage_ms = stages.stage.as_millis(), seal_ms = stages.seal.as_millis(),
            "import accepted");
        self.finish_in_background(submission);
        Ok(ImportReceipt {
            batch_id: batch,
            organizations_count: u32::try_from(upload.stored).unwrap_or(u32::MAX),
            rows_received: upload.received,
            rows_rejected: upload.rejected,
            replayed: false,
        })
    }

    /// Creates a sealed import's batch and enqueues its items after the answer.
    ///
    /// The upload is durable once sealed: should this process stop before
    /// the task ends, a worker's sweeper finishes it
    /// ([`finish_sealed_imports`]), and pending items are swept as after
    /// any failed enqueue.
    fn finish_in_background(&self, submission: Submission) {
        let service = self.clone();
        let span = tracing::info_span!("import_finish", batch_id = %submission.batch_id,
            tenant = %submission.tenant);
        tokio::spawn(
            async move {
                finish_sealed(service.backends(), &submission).await;
            }
            .instrument(span),
        );
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

/// Creates the batch of a sealed upload and enqueues its pending items (or
/// announces it when nothing is left to do). A failure is logged: the
/// upload stays sealed and a sweeper finishes it later.
async fn finish_sealed(backends: &Backends, submission: &Submission) {
    let Some(store) = backends.repository.imports() else {
        return;
    };
    let started = Instant::now();
    let stored = match store.finish_import(submission).await {
        Ok(stored) => stored,
        Err(e) if e.kind() == ErrorKind::NotFound => return, // finished by another process
        Err(e) => {
            tracing::warn!(batch_id = %submission.batch_id, error = %e,
                "creating an import's batch failed; a sweeper will finish it");
            return;
        }
    };
    let finish_ms = started.elapsed().as_millis();
    let batch = match stored {
        StoreResult::Stored { batch, .. } => batch,
        StoreResult::Replayed { batch } | StoreResult::KeyConflict { batch } => {
            // A JSON submission took the key between the seal and the finish.
            tracing::error!(batch_id = %submission.batch_id, earlier = %batch.id,
                "an import's idempotency key was used by another batch before its batch was created; the upload was discarded");
            return;
        }
    };
    if batch.completed_at.is_some() {
        if let Ok(Some(status)) = backends
            .repository
            .batch_status(&submission.tenant, batch.id)
            .await
        {
            announce(backends, &[status]).await;
        }
        tracing::info!(finish_ms, organizations = batch.total, "import stored");
        return;
    }
    let enqueuing = Instant::now();
    let queued = enqueue_pending(backends, &submission.tenant, batch.id).await;
    tracing::info!(
        finish_ms,
        organizations = batch.total,
        queued,
        enqueue_ms = enqueuing.elapsed().as_millis(),
        "import stored and enqueued"
    );
}

/// Finishes uploads sealed before `before` whose process stopped before
/// creating their batch (at most `limit`); answers how many it finished.
///
/// # Errors
/// Only a backend's, listing the sealed uploads.
pub(crate) async fn finish_sealed_imports(
    backends: &Backends,
    before: crate::model::Timestamp,
    limit: u32,
) -> Result<usize> {
    let Some(store) = backends.repository.imports() else {
        return Ok(0);
    };
    let sealed = store.sealed_imports(before, now(), limit).await?;
    for submission in &sealed {
        tracing::info!(batch_id = %submission.batch_id, tenant = %submission.tenant,
            "finishing an import sealed by a process that stopped");
        finish_sealed(backends, submission).await;
    }
    Ok(sealed.len())
}

/// Enqueues a batch's pending items page by page (bounded memory). A
/// failed enqueue is left to the sweeper, as after a submission.
async fn enqueue_pending(backends: &Backends, tenant: &TenantId, batch: BatchId) -> u64 {
    let repository = &backends.repository;
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
        if let Err(e) = backends.queue.enqueue(&jobs).await {
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
