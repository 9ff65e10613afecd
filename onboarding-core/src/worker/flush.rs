//! Records results in set-based flushes, then enqueues retries, publishes
//! events and completes batches.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::engine::{ErrorBackoff, Shared};
use super::Counters;
use crate::completion::complete_and_announce;
use crate::events::Event;
use crate::model::{now, BatchId, ItemId};
use crate::queue::Job;
use crate::repository::{ClaimedItem, Finish, Resolution};

/// One attempt's result, waiting to be recorded.
pub(crate) struct Done {
    pub(crate) item: ClaimedItem,
    pub(crate) resolution: Resolution,
}

pub(crate) async fn flush_loop(shared: Arc<Shared>, mut results: mpsc::UnboundedReceiver<Done>) {
    let max = shared.config.flush_max.max(1);
    let mut buffer = Vec::with_capacity(max);
    // Completing and announcing batches runs beside the flushes: a slow event
    // sink (a webhook endpoint that times out) must not hold up recording results.
    let mut announcers = JoinSet::new();
    let mut flushes: JoinSet<Vec<BatchId>> = JoinSet::new();
    loop {
        // A finished flush hands its batches to an announcer at once, also
        // when no further results arrive.
        let first = tokio::select! {
            next = results.recv() => match next {
                Some(done) => done,
                None => break,
            },
            Some(done) = flushes.join_next(), if !flushes.is_empty() => {
                announce_after(&shared, &mut announcers, done);
                continue;
            }
        };
        while announcers.try_join_next().is_some() {}
        buffer.push(first);
        let deadline = Instant::now() + shared.config.flush_interval;
        while buffer.len() < max {
            match tokio::time::timeout_at(deadline, results.recv()).await {
                Ok(Some(done)) => buffer.push(done),
                Ok(None) | Err(_) => break,
            }
        }
        while flushes.len() >= shared.config.flushers.max(1) {
            if let Some(done) = flushes.join_next().await {
                announce_after(&shared, &mut announcers, done);
            }
        }
        let (task_shared, batch) = (shared.clone(), std::mem::take(&mut buffer));
        flushes.spawn(async move { flush(&task_shared, batch).await });
    }
    // Shutdown: record what is in progress, then let the announcements finish
    // (each is bounded by the sink).
    while let Some(done) = flushes.join_next().await {
        announce_after(&shared, &mut announcers, done);
    }
    while announcers.join_next().await.is_some() {}
}

/// Completes (and announces) the batches a finished flush touched, beside the flushes.
fn announce_after(
    shared: &Arc<Shared>,
    announcers: &mut JoinSet<()>,
    flushed: std::result::Result<Vec<BatchId>, tokio::task::JoinError>,
) {
    let finished_batches = match flushed {
        Ok(batches) => batches,
        Err(e) => {
            tracing::error!(error = %e, "a flush task ended abnormally; the sweeper completes its batches");
            return;
        }
    };
    if finished_batches.is_empty() {
        return;
    }
    let shared = shared.clone();
    announcers.spawn(async move {
        if let Err(e) = complete_and_announce(&shared.backends, &finished_batches).await {
            Counters::bump(&shared.counters.backend_errors, 1);
            tracing::warn!(error = %e, "completing batches failed; the sweeper will");
        }
    });
}

/// Records one batch of results; returns the batches in which items reached
/// a terminal status (candidates for completion).
async fn flush(shared: &Shared, batch: Vec<Done>) -> Vec<BatchId> {
    let repo = &shared.backends.repository;
    let mut finishes: Vec<Finish> = batch
        .iter()
        .map(|d| Finish {
            lease: d.item.lease,
            resolution: d.resolution.clone(),
        })
        .collect();
    // Ordered by item id like every multi-row write: see `Shared::leases_in_hand`.
    finishes.sort_unstable_by_key(|f| f.lease.item_id);
    // Keep trying while the lease could still be ours; after that another
    // worker may redo the item (at-least-once), and our write would be fenced off anyway.
    let give_up = Instant::now() + shared.config.lease;
    let mut backoff = ErrorBackoff::new();
    let applied: HashSet<ItemId> = loop {
        let started = Instant::now();
        let finished = repo
            .finish_items(&finishes, now(), shared.config.stale_after)
            .await;
        Counters::add_elapsed(&shared.counters.finish_micros, started);
        match finished {
            Ok(ids) => break ids.into_iter().collect(),
            Err(e) if Instant::now() < give_up => {
                Counters::bump(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e, items = finishes.len(), "recording results failed; retrying");
                tokio::time::sleep(backoff.next()).await;
            }
            Err(e) => {
                Counters::bump(&shared.counters.backend_errors, 1);
                tracing::error!(error = %e, items = finishes.len(), "results not recorded; the items will be redone after their leases expire");
                break HashSet::new();
            }
        }
    };
    shared.forget(batch.iter().map(|d| d.item.lease.item_id));
    Counters::bump(&shared.counters.fenced_off, batch.len() - applied.len());

    let mut retries = Vec::new();
    let mut events = Vec::new();
    let mut touched = Vec::new();
    let mut finished_batches = Vec::new();
    for done in batch
        .iter()
        .filter(|d| applied.contains(&d.item.lease.item_id))
    {
        let item = &done.item;
        touched.push(item.batch_id);
        match &done.resolution {
            Resolution::Completed => {
                Counters::bump(&shared.counters.completed, 1);
                finished_batches.push(item.batch_id);
                events.push(Event::OrganizationProcessed {
                    tenant: item.tenant.clone(),
                    batch_id: item.batch_id,
                    item_id: item.lease.item_id,
                    organization_id: item.organization.id,
                    domain: item.organization.domain.clone(),
                });
            }
            Resolution::Retry { available_at, .. } => {
                Counters::bump(&shared.counters.retried, 1);
                retries.push(Job {
                    item_id: item.lease.item_id,
                    tenant: item.tenant.clone(),
                    not_before: Some(*available_at),
                });
            }
            Resolution::Failed { error, .. } => {
                Counters::bump(&shared.counters.failed, 1);
                finished_batches.push(item.batch_id);
                events.push(Event::OrganizationFailed {
                    tenant: item.tenant.clone(),
                    batch_id: item.batch_id,
                    item_id: item.lease.item_id,
                    organization_id: item.organization.id,
                    domain: item.organization.domain.clone(),
                    error: error.clone(),
                });
            }
        }
    }
    if let Err(e) = shared.backends.queue.enqueue(&retries).await {
        Counters::bump(&shared.counters.backend_errors, 1);
        tracing::warn!(error = %e, jobs = retries.len(), "retry wake-ups not enqueued; the sweeper will");
    }
    if !events.is_empty() {
        if let Err(e) = shared.backends.events.publish(&events).await {
            tracing::warn!(error = %e, events = events.len(), "event sink refused organization events");
        }
    }
    shared.backends.invalidate_batch_status(touched).await;
    finished_batches
}
