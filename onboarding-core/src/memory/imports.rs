//! `ImportStore` for [`MemoryRepository`]: uploads staged in a map beside
//! the repository's state; `finish_import` is one `store_submission`.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use super::MemoryRepository;
use crate::error::{Error, ErrorKind, Result};
use crate::import::{
    ImportProgress, ImportRow, ImportState, ImportStore, NewImport, RepeatsRefused, RowError,
};
use crate::model::{BatchId, Domain, TenantId, Timestamp};
use crate::repository::{OrgRepository, StoreResult, Submission};

/// Every upload of one repository.
#[derive(Debug, Default)]
pub(crate) struct Uploads(Mutex<HashMap<BatchId, Upload>>);

#[derive(Debug)]
struct Upload {
    tenant: TenantId,
    key: Option<String>,
    progress: ImportProgress,
    rows: Vec<ImportRow>,
    lines_by_domain: HashMap<Domain, u32>,
    rejected: Vec<RowError>,
    /// When it was sealed, and the submission that finishes it.
    sealed: Option<(Timestamp, Submission)>,
}

impl Upload {
    /// Still the request's: receiving and not sealed.
    fn open(&self) -> bool {
        self.progress.state == ImportState::Receiving
    }

    /// Not yet a batch: receiving or sealed.
    fn unfinished(&self) -> bool {
        matches!(
            self.progress.state,
            ImportState::Receiving | ImportState::Staged
        )
    }
}

impl Uploads {
    fn lock(&self) -> Result<MutexGuard<'_, HashMap<BatchId, Upload>>> {
        self.0
            .lock()
            .map_err(|_| Error::internal("memory import lock poisoned by a panic"))
    }
}

impl Uploads {
    /// Forgets the uploads of pruned batches, and uploads still receiving
    /// that began before `abandoned_before` (their request died with its process).
    pub(crate) fn prune(&self, pruned: &[BatchId], abandoned_before: Timestamp) -> Result<()> {
        let mut uploads = self.lock()?;
        for batch in pruned {
            uploads.remove(batch);
        }
        uploads.retain(|_, u| !u.open() || u.progress.started_at >= abandoned_before);
        Ok(())
    }
}

fn not_receiving(batch: BatchId) -> Error {
    Error::not_found(format!("no upload {batch} is being received"))
}

#[async_trait]
impl ImportStore for MemoryRepository {
    async fn begin_import(&self, import: &NewImport) -> Result<()> {
        let mut uploads = self.uploads.lock()?;
        if import.idempotency_key.is_some()
            && uploads.values().any(|u| {
                u.unfinished() && u.tenant == import.tenant && u.key == import.idempotency_key
            })
        {
            return Err(Error::new(
                ErrorKind::Conflict,
                "an upload with this idempotency key is still in progress",
            ));
        }
        uploads.insert(
            import.batch_id,
            Upload {
                tenant: import.tenant.clone(),
                key: import.idempotency_key.clone(),
                progress: ImportProgress {
                    batch_id: import.batch_id,
                    state: ImportState::Receiving,
                    rows_received: 0,
                    rows_stored: 0,
                    rows_rejected: 0,
                    started_at: import.now,
                    policy: import.policy,
                    mode: import.mode,
                },
                rows: Vec::new(),
                lines_by_domain: HashMap::new(),
                rejected: Vec::new(),
                sealed: None,
            },
        );
        Ok(())
    }

    async fn append_import(
        &self,
        batch: BatchId,
        rows: &[ImportRow],
        rejected: &[RowError],
    ) -> Result<Vec<RowError>> {
        let mut uploads = self.uploads.lock()?;
        let upload = uploads
            .get_mut(&batch)
            .filter(|u| u.open())
            .ok_or_else(|| not_receiving(batch))?;
        let mut duplicates = Vec::new();
        for row in rows {
            match upload.lines_by_domain.get(&row.organization.domain) {
                Some(&earlier) => duplicates.push(RowError::duplicate(row, earlier)),
                None => {
                    upload
                        .lines_by_domain
                        .insert(row.organization.domain.clone(), row.line);
                    upload.rows.push(row.clone());
                }
            }
        }
        let refused_rows = crate::import::refused_rows(rejected);
        let p = &mut upload.progress;
        p.rows_received += count(rows.len()) + refused_rows;
        p.rows_stored += count(rows.len() - duplicates.len());
        p.rows_rejected += refused_rows + count(duplicates.len());
        upload.rejected.extend(rejected.iter().cloned());
        upload.rejected.extend(duplicates.iter().cloned());
        Ok(duplicates)
    }

    async fn refuse_repeats(&self, batch: BatchId, _quote: usize) -> Result<RepeatsRefused> {
        // `append_import` refuses every repeat (the upload's domains are in a map).
        self.uploads
            .lock()?
            .get(&batch)
            .filter(|u| u.open())
            .map(|_| RepeatsRefused::default())
            .ok_or_else(|| not_receiving(batch))
    }

    async fn seal_import(&self, submission: &Submission) -> Result<Option<StoreResult>> {
        let batch = submission.batch_id;
        if !self.uploads.lock()?.get(&batch).is_some_and(Upload::open) {
            return Err(not_receiving(batch));
        }
        if let Some(key) = &submission.idempotency_key {
            if let Some(earlier) = self.batch_by_key(&submission.tenant, key)? {
                self.uploads.lock()?.remove(&batch);
                return Ok(Some(StoreResult::for_earlier(
                    earlier,
                    &submission.request_hash,
                )));
            }
        }
        let mut uploads = self.uploads.lock()?;
        let upload = uploads
            .get_mut(&batch)
            .filter(|u| u.open())
            .ok_or_else(|| not_receiving(batch))?;
        upload.progress.state = ImportState::Staged;
        upload.sealed = Some((submission.now, submission.clone()));
        Ok(None)
    }

    async fn sealed_imports(
        &self,
        before: Timestamp,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<Submission>> {
        let uploads = self.uploads.lock()?;
        let mut found: Vec<(Timestamp, Submission)> = uploads
            .values()
            .filter(|u| u.progress.state == ImportState::Staged)
            .filter_map(|u| u.sealed.clone())
            .filter(|(at, _)| *at < before)
            .collect();
        found.sort_by_key(|(at, _)| *at);
        found.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(found
            .into_iter()
            .map(|(_, mut s)| {
                s.sweep_at = now + (s.sweep_at - s.now);
                s.now = now;
                s
            })
            .collect())
    }

    async fn finish_import(&self, submission: &Submission) -> Result<StoreResult> {
        let rows = {
            let mut uploads = self.uploads.lock()?;
            let upload = uploads
                .get_mut(&submission.batch_id)
                .filter(|u| u.unfinished())
                .ok_or_else(|| not_receiving(submission.batch_id))?;
            // Claimed: a second finisher finds nothing to do.
            upload.progress.state = ImportState::Stored;
            upload.rows.clone()
        };
        let mut s = submission.clone();
        s.organizations = rows.into_iter().map(|r| (r.line, r.organization)).collect();
        let answer = match self.store_submission(&s).await {
            Ok(answer) => answer,
            Err(e) => {
                // As it was: receiving, or sealed.
                if let Some(upload) = self.uploads.lock()?.get_mut(&s.batch_id) {
                    upload.progress.state = if upload.sealed.is_some() {
                        ImportState::Staged
                    } else {
                        ImportState::Receiving
                    };
                }
                return Err(e);
            }
        };
        let mut uploads = self.uploads.lock()?;
        match &answer {
            StoreResult::Stored { .. } => {
                if let Some(upload) = uploads.get_mut(&s.batch_id) {
                    upload.progress.state = ImportState::Stored;
                    upload.lines_by_domain = HashMap::new();
                }
            }
            StoreResult::Replayed { .. } | StoreResult::KeyConflict { .. } => {
                uploads.remove(&s.batch_id);
            }
        }
        Ok(match answer {
            StoreResult::Stored { batch, .. } => StoreResult::Stored {
                batch,
                items: Vec::new(),
            },
            other => other,
        })
    }

    async fn abort_import(&self, batch: BatchId) -> Result<()> {
        let mut uploads = self.uploads.lock()?;
        if uploads.get(&batch).is_some_and(Upload::open) {
            uploads.remove(&batch);
        }
        Ok(())
    }

    async fn import_progress(
        &self,
        tenant: &TenantId,
        batch: BatchId,
    ) -> Result<Option<ImportProgress>> {
        Ok(self
            .uploads
            .lock()?
            .get(&batch)
            .filter(|u| &u.tenant == tenant)
            .map(|u| u.progress.clone()))
    }

    async fn receiving_imports(
        &self,
        tenant: &TenantId,
        key: Option<&str>,
    ) -> Result<Vec<ImportProgress>> {
        let uploads = self.uploads.lock()?;
        let mut found: Vec<ImportProgress> = uploads
            .values()
            .filter(|u| {
                u.unfinished()
                    && &u.tenant == tenant
                    && key.is_none_or(|k| u.key.as_deref() == Some(k))
            })
            .map(|u| u.progress.clone())
            .collect();
        found.sort_by_key(|p| std::cmp::Reverse(p.started_at));
        found.truncate(usize::try_from(crate::import::RECEIVING_LISTED).unwrap_or(usize::MAX));
        Ok(found)
    }

    async fn staged_rows(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        lines: &[u32],
    ) -> Result<Vec<ImportRow>> {
        let uploads = self.uploads.lock()?;
        let Some(upload) = uploads.get(&batch).filter(|u| &u.tenant == tenant) else {
            return Ok(Vec::new());
        };
        let wanted: std::collections::HashSet<u32> = lines.iter().copied().collect();
        Ok(upload
            .rows
            .iter()
            .filter(|r| wanted.contains(&r.line))
            .cloned()
            .collect())
    }

    async fn rejected_rows(
        &self,
        tenant: &TenantId,
        batch: BatchId,
        after_line: Option<u32>,
        limit: u32,
    ) -> Result<Option<Vec<RowError>>> {
        let uploads = self.uploads.lock()?;
        let Some(upload) = uploads.get(&batch).filter(|u| &u.tenant == tenant) else {
            return Ok(None);
        };
        let mut rows: Vec<RowError> = upload
            .rejected
            .iter()
            .filter(|e| after_line.is_none_or(|a| e.line > a))
            .cloned()
            .collect();
        rows.sort_by_key(|e| e.line);
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(Some(rows))
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
