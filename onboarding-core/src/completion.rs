//! Batch completion and its `BatchCompleted` announcement, shared by the
//! ingest service, the workers and the sweeper.

use std::collections::HashSet;

use crate::backends::Backends;
use crate::error::Result;
use crate::events::Event;
use crate::model::{now, BatchId, BatchStatus};

/// Marks the candidates completed where every item is terminal, and
/// announces those this call completed (the repository hands each
/// completion to exactly one caller).
pub(crate) async fn complete_and_announce(
    backends: &Backends,
    candidates: &[BatchId],
) -> Result<()> {
    if candidates.is_empty() {
        return Ok(());
    }
    let unique: Vec<BatchId> = candidates
        .iter()
        .copied()
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let completed = backends.repository.complete_batches(&unique, now()).await?;
    announce(backends, &completed).await;
    Ok(())
}

/// Publishes `BatchCompleted` for each batch, then records that it was. A
/// failure leaves the batch unannounced: the sweeper publishes it later.
pub(crate) async fn announce(backends: &Backends, completed: &[BatchStatus]) {
    if completed.is_empty() {
        return;
    }
    let events: Vec<Event> = completed
        .iter()
        .map(|s| Event::BatchCompleted {
            tenant: s.batch.tenant.clone(),
            batch_id: s.batch.id,
            counts: s.counts,
            completed_at: s.batch.completed_at.unwrap_or_else(now),
        })
        .collect();
    if let Err(e) = backends.events.publish(&events).await {
        tracing::warn!(error = %e, "BatchCompleted not published; the sweeper retries");
        return;
    }
    let ids: Vec<BatchId> = completed.iter().map(|s| s.batch.id).collect();
    if let Err(e) = backends.repository.mark_announced(&ids, now()).await {
        tracing::warn!(error = %e, "BatchCompleted published but not recorded; it may be published again");
    }
    backends.invalidate_batch_status(ids).await;
}
