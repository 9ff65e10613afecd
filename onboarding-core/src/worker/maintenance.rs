//! Heartbeats and the sweeper.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::engine::Shared;
use super::Counters;
use crate::completion::announce;
use crate::error::Result;
use crate::model::{after, before, now, ItemId};

/// Most jobs one sweep round re-enqueues.
const SWEEP_LIMIT: u32 = 1000;
/// Rounds per sweep, so a large backlog of lost work drains quickly but a sweep stays bounded.
const SWEEP_ROUNDS: usize = 20;

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SweepReport {
    /// Jobs re-enqueued (lost messages, expired leases).
    pub requeued: usize,
    /// Batches completed by the sweep (their last worker died before completing them).
    pub completed_batches: usize,
    /// `BatchCompleted` events published again.
    pub announced: usize,
    /// Batches pruned past retention.
    pub pruned: u64,
}

/// Renews every lease in hand with one call per interval, until aborted.
pub(crate) async fn heartbeat_loop(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(
        shared
            .config
            .heartbeat_interval
            .max(std::time::Duration::from_millis(10)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let leases = shared.leases_in_hand();
        if leases.is_empty() {
            continue;
        }
        let at = now();
        let until = after(at, shared.config.lease);
        match shared
            .backends
            .repository
            .extend_leases(&leases, at, until)
            .await
        {
            Ok(held) => {
                let held: HashSet<ItemId> = held.into_iter().collect();
                // Not renewed and still in hand: taken over. An item the
                // flusher recorded meanwhile is no longer in hand (not lost).
                let lost = shared.still_in_hand(
                    leases
                        .iter()
                        .map(|l| l.item_id)
                        .filter(|id| !held.contains(id)),
                );
                if !lost.is_empty() {
                    // Another worker took these over: our results would be fenced off.
                    Counters::bump(&shared.counters.leases_lost, lost.len());
                    tracing::warn!(items = lost.len(), "leases lost to another worker");
                    shared.forget(lost);
                }
            }
            Err(e) => {
                Counters::bump(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e, items = leases.len(), "lease renewal failed");
            }
        }
    }
}

/// Runs [`sweep_once`] every `sweep_interval` (the first right away) until stopped.
pub(crate) async fn sweeper_loop(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(
        shared
            .config
            .sweep_interval
            .max(std::time::Duration::from_millis(10)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = sweep_once(&shared).await {
            Counters::bump(&shared.counters.backend_errors, 1);
            tracing::warn!(error = %e, "sweep failed");
        }
        if last_prune.is_none_or(|t| t.elapsed() >= shared.config.prune_interval) {
            last_prune = Some(Instant::now());
            let cutoff = before(now(), shared.config.retention);
            match shared.backends.repository.prune(cutoff, 1000).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(batches = n, "pruned finished batches past retention"),
                Err(e) => tracing::warn!(error = %e, "pruning failed"),
            }
        }
    }
}

/// Re-enqueues lost work, completes batches nobody completed, and
/// re-announces completions whose event was not recorded.
pub(crate) async fn sweep_once(shared: &Shared) -> Result<SweepReport> {
    let repo = &shared.backends.repository;
    let mut report = SweepReport::default();
    for _ in 0..SWEEP_ROUNDS {
        let jobs = repo
            .sweep(now(), shared.config.stale_after, SWEEP_LIMIT)
            .await?;
        if jobs.is_empty() {
            break;
        }
        shared.backends.queue.enqueue(&jobs).await?;
        report.requeued += jobs.len();
        Counters::bump(&shared.counters.swept, jobs.len());
        if jobs.len() < SWEEP_LIMIT as usize {
            break;
        }
    }
    let completed = repo.complete_open_batches(now(), 1000).await?;
    report.completed_batches = completed.len();
    announce(&shared.backends, &completed).await;
    let overdue = repo
        .unannounced_batches(before(now(), shared.config.announce_grace), 100)
        .await?;
    report.announced = overdue.len();
    announce(&shared.backends, &overdue).await;
    if report.requeued > 0 {
        tracing::info!(jobs = report.requeued, "sweeper re-enqueued lost work");
    }
    Ok(report)
}
