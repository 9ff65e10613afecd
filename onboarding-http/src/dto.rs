//! The JSON documents of the API: HTTP-layer mirrors of core types, with
//! their OpenAPI schemas. Field names are part of the contract.

use chrono::{DateTime, Utc};
use onboarding_core::import::{ImportProgress, ImportRow, ImportState};
use onboarding_core::model::{
    AttemptError, BatchItem, BatchStatus, Change, ConflictPolicy, ItemOutcome, ItemStatus,
    SubmitMode,
};
use onboarding_core::validate::{Rejection, ValidRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::ProblemField;

/// The seed's success message, kept word for word.
pub const ACCEPTED_MESSAGE: &str = "Bulk onboarding initiated successfully";

/// One organization of a request, as the OpenAPI document describes it
/// (core's `validate::OrganizationInput` is the typed input it validates into).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SubmittedOrganization {
    /// Display name: 1-255 characters after trimming, no control characters.
    #[schema(example = "Acme Corporation", min_length = 1)]
    pub name: String,
    /// Domain in any case, Unicode or punycode, with a registrable public
    /// suffix; stored normalized (lowercase punycode, no trailing dot).
    #[schema(example = "acme.com", min_length = 1, format = IdnHostname)]
    pub domain: String,
    /// A plain email address (at most 254 bytes after trimming).
    #[schema(example = "contact@acme.com", min_length = 1, format = Email)]
    pub contact_email: String,
}

/// What to do with a domain that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Overwrite name and contact_email (the default).
    Update,
    /// Keep the existing organization untouched.
    Skip,
}

impl From<ConflictPolicy> for OnConflict {
    fn from(p: ConflictPolicy) -> Self {
        match p {
            ConflictPolicy::Update => Self::Update,
            ConflictPolicy::Skip => Self::Skip,
        }
    }
}

/// Whether one invalid organization rejects the whole request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// All or nothing (the default).
    Atomic,
    /// Accept the valid organizations, list the rejected ones.
    Partial,
}

impl From<SubmitMode> for Mode {
    fn from(m: SubmitMode) -> Self {
        match m {
            SubmitMode::Atomic => Self::Atomic,
            SubmitMode::Partial => Self::Partial,
        }
    }
}

/// The body of `POST /api/bulk-onboard`, the seed's contract: `organizations`
/// only (other keys, `on_conflict` and `mode` included, are ignored there).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SeedBulkOnboardRequest {
    /// 1 to 1000 organizations; domains unique after normalization.
    #[schema(min_items = 1, max_items = 1000)]
    pub organizations: Vec<SubmittedOrganization>,
}

/// The body of `POST /api/v1/bulk-onboard` (the seed route takes `organizations` only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BulkOnboardRequest {
    /// 1 to 1000 organizations; domains unique after normalization.
    #[schema(min_items = 1, max_items = 1000)]
    pub organizations: Vec<SubmittedOrganization>,
    /// Default `update` (also when null).
    pub on_conflict: Option<OnConflict>,
    /// Default `atomic` (also when null).
    pub mode: Option<Mode>,
}

/// An organization rejected in partial mode.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedOrganization {
    /// Its index in `organizations`.
    pub position: u32,
    /// Every problem with it.
    pub errors: Vec<ProblemField>,
}

impl From<&Rejection> for RejectedOrganization {
    fn from(r: &Rejection) -> Self {
        Self {
            position: r.position,
            errors: r.errors.iter().map(ProblemField::from).collect(),
        }
    }
}

/// The 202 answer to a submission (the seed's three fields; `rejected` only in partial mode).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BulkOnboardAccepted {
    /// The batch to watch.
    pub batch_id: Uuid,
    /// Always `Bulk onboarding initiated successfully`.
    #[schema(example = "Bulk onboarding initiated successfully")]
    pub message: String,
    /// Organizations accepted into the batch.
    pub organizations_count: u32,
    /// Partial mode only: the organizations left out, with their errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Vec<RejectedOrganization>>,
}

/// A normalized organization, as it would be stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct NormalizedOrganization {
    /// Its index in `organizations`.
    pub position: u32,
    /// Trimmed name.
    pub name: String,
    /// Normalized domain (lowercase, punycode).
    pub domain: String,
    /// Normalized contact email.
    pub contact_email: String,
}

/// The 200 answer of the dry run: the request is valid (in partial mode: at least partly).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ValidationSummary {
    /// Always true (an invalid request is a 422 problem).
    pub valid: bool,
    /// Organizations that would be accepted.
    pub organizations_count: u32,
    /// The conflict policy that would apply.
    pub on_conflict: OnConflict,
    /// The mode that would apply.
    pub mode: Mode,
    /// Partial mode: organizations that would be rejected.
    pub rejected: Vec<RejectedOrganization>,
    /// The accepted organizations, normalized.
    pub organizations: Vec<NormalizedOrganization>,
}

impl From<&ValidRequest> for ValidationSummary {
    fn from(v: &ValidRequest) -> Self {
        Self {
            valid: true,
            organizations_count: u32::try_from(v.organizations.len()).unwrap_or(u32::MAX),
            on_conflict: v.policy.into(),
            mode: v.mode.into(),
            rejected: v.rejected.iter().map(Into::into).collect(),
            organizations: v
                .organizations
                .iter()
                .map(|(position, o)| NormalizedOrganization {
                    position: *position,
                    name: o.name.clone(),
                    domain: o.domain.to_string(),
                    contact_email: o.contact_email.clone(),
                })
                .collect(),
        }
    }
}

/// Where a batch is, as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchState {
    /// A file import whose body is still arriving, or has arrived (the
    /// import was answered, `upload.arrived`) and whose batch is being
    /// created from its rows: no items yet; `upload` counts the rows
    /// received, stored (staged) and refused so far.
    Receiving,
    /// Items are pending or processing (or the last ones just finished and
    /// the completion is being recorded).
    Running,
    /// Every item is terminal and the completion is recorded (`completed_at` is set).
    Completed,
    /// The batch was cancelled (pending items stopped).
    Cancelled,
}

/// Items per status.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct StatusCounts {
    /// Waiting.
    pub pending: u32,
    /// Being processed.
    pub processing: u32,
    /// Done.
    pub completed: u32,
    /// In the dead-letter list.
    pub failed: u32,
    /// Stopped by a cancel.
    pub cancelled: u32,
}

/// Items per change their upsert made.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct ChangeCounts {
    /// New organizations.
    pub created: u32,
    /// Changed organizations.
    pub updated: u32,
    /// Organizations with identical data.
    pub unchanged: u32,
    /// Organizations kept as they were (`on_conflict: skip`).
    pub skipped: u32,
}

/// `GET /api/v1/batches/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchStatusResponse {
    /// The batch.
    pub batch_id: Uuid,
    /// Running, completed or cancelled.
    pub state: BatchState,
    /// Items in the batch.
    pub total: u32,
    /// Items per status (exact).
    pub counts: StatusCounts,
    /// Items per change.
    pub changes: ChangeCounts,
    /// Finished items in percent, 0-100.
    pub percent: f64,
    /// Seconds until every item should be finished, estimated from the
    /// throughput so far; null when unknown (nothing finished yet) or finished.
    pub eta_seconds: Option<f64>,
    /// When the batch should be finished at this pace; null when unknown or finished.
    pub estimated_completion_at: Option<DateTime<Utc>>,
    /// Conflict policy of the request.
    pub on_conflict: OnConflict,
    /// Mode of the request.
    pub mode: Mode,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When its last item finished.
    pub completed_at: Option<DateTime<Utc>>,
    /// When it was cancelled.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// File imports: the upload's row counters (while it arrives and
    /// after, on `GET /api/v1/batches/{id}`); null for a JSON submission
    /// and in the listing once the batch is stored.
    pub upload: Option<UploadProgress>,
}

/// The rows of a file import's upload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UploadProgress {
    /// Rows parsed so far, valid or not.
    pub rows_received: u64,
    /// Valid rows stored (staged) so far: the batch's organizations once it is stored.
    pub rows_stored: u64,
    /// Rows refused so far (listed by the results route with `status=rejected`).
    pub rows_rejected: u64,
    /// Whether the whole body arrived and every row is staged (the import
    /// was answered); the batch is created right after.
    pub arrived: bool,
    /// Whether the batch was created from the staged rows.
    pub stored: bool,
    /// When the upload began.
    pub started_at: DateTime<Utc>,
}

impl From<&ImportProgress> for UploadProgress {
    fn from(p: &ImportProgress) -> Self {
        Self {
            rows_received: p.rows_received,
            rows_stored: p.rows_stored,
            rows_rejected: p.rows_rejected,
            arrived: p.state != ImportState::Receiving,
            stored: p.state == ImportState::Stored,
            started_at: p.started_at,
        }
    }
}

impl BatchStatusResponse {
    /// The answer for a file import whose body is still arriving: no items
    /// yet (`total` counts the rows stored so far), no percent or ETA.
    pub fn receiving(p: &ImportProgress) -> Self {
        Self {
            batch_id: p.batch_id.0,
            state: BatchState::Receiving,
            total: u32::try_from(p.rows_stored).unwrap_or(u32::MAX),
            counts: StatusCounts {
                pending: 0,
                processing: 0,
                completed: 0,
                failed: 0,
                cancelled: 0,
            },
            changes: ChangeCounts {
                created: 0,
                updated: 0,
                unchanged: 0,
                skipped: 0,
            },
            percent: 0.0,
            eta_seconds: None,
            estimated_completion_at: None,
            on_conflict: p.policy.into(),
            mode: p.mode.into(),
            created_at: p.started_at,
            completed_at: None,
            cancelled_at: None,
            upload: Some(p.into()),
        }
    }

    /// Builds the answer at `now`.
    pub fn new(status: &BatchStatus, now: DateTime<Utc>) -> Self {
        let c = &status.counts;
        let b = &status.batch;
        let state = if b.cancelled_at.is_some() {
            BatchState::Cancelled
        } else if b.completed_at.is_some() {
            BatchState::Completed
        } else {
            BatchState::Running
        };
        let remaining = c.total().saturating_sub(c.finished());
        let elapsed = (now - b.created_at).num_milliseconds() as f64 / 1000.0;
        let eta_seconds =
            (state == BatchState::Running && remaining > 0 && c.finished() > 0 && elapsed > 0.0)
                .then(|| {
                    let per_second = f64::from(c.finished()) / elapsed;
                    (f64::from(remaining) / per_second * 10.0).round() / 10.0
                });
        let estimated_completion_at = eta_seconds
            .and_then(|s| chrono::Duration::try_milliseconds((s * 1000.0) as i64).map(|d| now + d));
        Self {
            batch_id: b.id.0,
            state,
            total: c.total(),
            counts: StatusCounts {
                pending: c.pending,
                processing: c.processing,
                completed: c.completed,
                failed: c.failed,
                cancelled: c.cancelled,
            },
            changes: ChangeCounts {
                created: c.created,
                updated: c.updated,
                unchanged: c.unchanged,
                skipped: c.skipped,
            },
            percent: (c.percent() * 100.0).round() / 100.0,
            eta_seconds,
            estimated_completion_at,
            on_conflict: b.policy.into(),
            mode: b.mode.into(),
            created_at: b.created_at,
            completed_at: b.completed_at,
            cancelled_at: b.cancelled_at,
            upload: None,
        }
    }
}

/// Where one item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatusDto {
    /// Waiting.
    Pending,
    /// Being processed.
    Processing,
    /// Done.
    Completed,
    /// Failed for good (dead-letter list).
    Failed,
    /// Stopped by a cancel.
    Cancelled,
}

impl From<ItemStatus> for ItemStatusDto {
    fn from(s: ItemStatus) -> Self {
        match s {
            ItemStatus::Pending => Self::Pending,
            ItemStatus::Processing => Self::Processing,
            ItemStatus::Completed => Self::Completed,
            ItemStatus::Failed => Self::Failed,
            ItemStatus::Cancelled => Self::Cancelled,
        }
    }
}

/// What the upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeDto {
    /// Inserted.
    Created,
    /// Changed.
    Updated,
    /// Identical data.
    Unchanged,
    /// Kept (`skip`).
    Skipped,
}

impl From<Change> for ChangeDto {
    fn from(c: Change) -> Self {
        match c {
            Change::Created => Self::Created,
            Change::Updated => Self::Updated,
            Change::Unchanged => Self::Unchanged,
            Change::Skipped => Self::Skipped,
        }
    }
}

/// The result a client sees for one organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeDto {
    /// Inserted.
    Created,
    /// Changed.
    Updated,
    /// Identical data.
    Unchanged,
    /// Kept (`skip`).
    Skipped,
    /// Processing failed for good.
    Failed,
}

impl From<ItemOutcome> for OutcomeDto {
    fn from(o: ItemOutcome) -> Self {
        match o {
            ItemOutcome::Created => Self::Created,
            ItemOutcome::Updated => Self::Updated,
            ItemOutcome::Unchanged => Self::Unchanged,
            ItemOutcome::Skipped => Self::Skipped,
            ItemOutcome::Failed => Self::Failed,
        }
    }
}

/// One failed attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AttemptErrorDto {
    /// Which attempt (1-based).
    pub attempt: u32,
    /// When it failed.
    pub at: DateTime<Utc>,
    /// What the processor said.
    pub message: String,
    /// Whether it was declared permanent.
    pub permanent: bool,
}

impl From<&AttemptError> for AttemptErrorDto {
    fn from(e: &AttemptError) -> Self {
        Self {
            attempt: e.attempt,
            at: e.at,
            message: e.message.clone(),
            permanent: e.permanent,
        }
    }
}

/// One organization of a batch: what was submitted and its result (the
/// fields of a row of `GET /api/v1/batches/{id}/results`, and more).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchItemResponse {
    /// Item id.
    pub id: Uuid,
    /// Index in the submitted `organizations` (imports: the file's line number).
    pub position: u32,
    /// The file's line number (imports); null for a JSON submission.
    pub line: Option<u32>,
    /// The submitted name (imports); null when the batch did not keep it (a JSON submission).
    pub name: Option<String>,
    /// The submitted contact email (imports); null when the batch did not keep it.
    pub contact_email: Option<String>,
    /// The row's `external_id` (imports), if it had one.
    pub external_id: Option<String>,
    /// The organization row.
    pub organization_id: Uuid,
    /// Normalized domain.
    pub domain: String,
    /// Where it is.
    pub status: ItemStatusDto,
    /// What the upsert did.
    pub change: ChangeDto,
    /// The client-facing result (`failed` for failed items, else the change).
    pub outcome: OutcomeDto,
    /// Attempts started.
    pub attempts: u32,
    /// The last error's code (`code: detail` messages), if any.
    pub error_code: Option<String>,
    /// The last error's detail (the whole message when it has no code), if any.
    pub error_detail: Option<String>,
    /// The last 10 failed attempts, oldest first.
    #[schema(max_items = 10)]
    pub errors: Vec<AttemptErrorDto>,
    /// Every failed attempt ever recorded, re-drives included (`errors` keeps the last 10).
    pub error_count: u32,
    /// Not claimable before this.
    pub available_at: DateTime<Utc>,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it finished.
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<&BatchItem> for BatchItemResponse {
    fn from(i: &BatchItem) -> Self {
        Self::of(i, None)
    }
}

impl BatchItemResponse {
    /// An item with its staged row (imports: line, name, email, external id).
    pub(crate) fn of(i: &BatchItem, staged: Option<&ImportRow>) -> Self {
        let (error_code, error_detail) = crate::handlers::results::last_error(i);
        Self {
            id: i.id.0,
            position: i.position,
            line: staged.map(|s| s.line),
            name: staged.map(|s| s.organization.name.clone()),
            contact_email: staged.map(|s| s.organization.contact_email.clone()),
            external_id: staged.and_then(|s| s.external_id.clone()),
            organization_id: i.organization_id.0,
            domain: i.domain.to_string(),
            status: i.status.into(),
            change: i.change.into(),
            outcome: i.outcome().into(),
            attempts: i.attempts,
            error_code,
            error_detail,
            errors: i.errors.iter().map(Into::into).collect(),
            error_count: i.error_count,
            available_at: i.available_at,
            created_at: i.created_at,
            updated_at: i.updated_at,
            finished_at: i.finished_at,
        }
    }
}

/// One page of a batch's organizations.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchItemsPage {
    /// Items ordered by position.
    pub items: Vec<BatchItemResponse>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The answer to a re-drive.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetryAccepted {
    /// The batch.
    pub batch_id: Uuid,
    /// Failed items put back to pending.
    pub requeued: u32,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// Encodes a position as an opaque page cursor.
pub(crate) fn encode_cursor(position: u32) -> String {
    format!("p1.{}", crate::webhook::hex_bytes(&position.to_be_bytes()))
}

/// Decodes [`encode_cursor`].
pub(crate) fn decode_cursor(cursor: &str) -> Option<u32> {
    let hex = cursor.strip_prefix("p1.")?;
    let bytes: [u8; 4] = crate::webhook::unhex_bytes(hex)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for p in [0, 1, 999, u32::MAX] {
            assert_eq!(decode_cursor(&encode_cursor(p)), Some(p));
        }
        for bad in [
            "",
            "p1.",
            "p1.zz",
            "p1.0000",
            "x",
            "p1.000000000a",
            "p2.00000001",
        ] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
