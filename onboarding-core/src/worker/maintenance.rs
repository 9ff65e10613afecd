//! Heartbeats and the sweeper.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::engine::Shared;
use super::Counters;
use crate::completion::announce;
use crate::error::Result;
use crate::model::{after, before, now, ItemId, Timestamp};

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
    /// Imports whose batch the sweep created (their process stopped after answering).
    pub imports_finished: usize,
}

/// Sealed imports one sweep finishes at most (each can take seconds).
const SWEEP_IMPORTS: u32 = 10;

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

/// What the sweeper remembers of the queue between sweeps, to tell an item
/// whose message is only waiting in a long queue from one whose message is lost.
///
/// A pending item is re-enqueued `stale_after` after it was last enqueued
/// (its `sweep_at`) only once the queue has had time to deliver it. Each
/// sweep reads the queue's depth `D` and the rate `R` at which messages
/// leave it (this worker's deliveries, or the fall in depth, whichever is
/// higher), and notes a horizon: every message waiting now is delivered by
/// `now + 2 D / R` (a queue hands out what it holds, whatever the order
/// between tenants), at most `max_queue_wait` away. An item enqueued before
/// a sweep whose horizon has passed, and still pending, has lost its
/// message; one enqueued later may still be waiting. An empty queue's
/// horizon is the sweep itself: every pending item past its `sweep_at` is
/// lost, as without the watch. A queue that cannot tell its depth gets the
/// same answer (re-enqueueing is harmless; missing a lost item is not).
#[derive(Debug, Default)]
pub(crate) struct QueueWatch {
    /// (sweep time, horizon), oldest first.
    horizons: VecDeque<(Timestamp, Timestamp)>,
    /// The previous reading: when, messages waiting, messages this worker had taken.
    last: Option<(Timestamp, u64, u64)>,
}

impl QueueWatch {
    /// Notes a reading at `at` (`waiting`: the queue's depth, `None` when
    /// unknown; `taken`: messages this worker has dequeued so far) and
    /// returns the latest `sweep_at` of a pending item that counts as lost.
    pub(crate) fn pending_due(
        &mut self,
        at: Timestamp,
        waiting: Option<u64>,
        taken: u64,
        stale_after: Duration,
        max_wait: Duration,
    ) -> Timestamp {
        let horizon = match waiting {
            None | Some(0) => at,
            Some(d) => {
                let rate = self.last.map_or(0.0, |(t, last_d, last_taken)| {
                    let secs = (at - t).num_microseconds().unwrap_or(0) as f64 / 1e6;
                    if secs <= 0.0 {
                        return 0.0;
                    }
                    let drained = last_d.saturating_sub(d) as f64;
                    let delivered = taken.saturating_sub(last_taken) as f64;
                    drained.max(delivered) / secs
                });
                let wait = if rate > 0.0 {
                    Duration::from_secs_f64((2.0 * d as f64 / rate).min(max_wait.as_secs_f64()))
                } else {
                    max_wait
                };
                after(at, wait)
            }
        };
        self.last = waiting.map(|d| (at, d, taken));
        self.horizons.push_back((at, horizon));
        // The latest sweep whose horizon has passed; older ones are no longer needed.
        let passed = self.horizons.iter().rposition(|&(_, h)| h <= at);
        let enqueued_by = match passed {
            Some(i) => {
                self.horizons.drain(..i);
                self.horizons.front().map_or(at, |&(s, _)| s)
            }
            // None passed yet (a worker that started beside a long queue):
            // trust the queue for `max_queue_wait`.
            None => before(at, max_wait),
        };
        after(enqueued_by, stale_after).min(at)
    }
}

/// Re-enqueues lost work, completes batches nobody completed, and
/// re-announces completions whose event was not recorded.
pub(crate) async fn sweep_once(shared: &Shared) -> Result<SweepReport> {
    let repo = &shared.backends.repository;
    let mut report = SweepReport::default();
    let waiting = match shared.backends.queue.depth().await {
        Ok(d) => Some(d.ready + d.delayed),
        Err(e) => {
            tracing::warn!(error = %e, "queue depth unknown; every pending item past its sweep_at counts as lost");
            None
        }
    };
    let at = now();
    let taken = shared.counters.claimed.get() + shared.counters.claim_misses.get();
    let pending_due = shared
        .queue_watch
        .lock()
        .map(|mut w| {
            w.pending_due(
                at,
                waiting,
                taken,
                shared.config.stale_after,
                shared.config.max_queue_wait,
            )
        })
        .unwrap_or(at);
    for _ in 0..SWEEP_ROUNDS {
        let jobs = repo
            .sweep(now(), pending_due, shared.config.stale_after, SWEEP_LIMIT)
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
    // An import answered by a process that stopped before creating its
    // batch: its own process had `stale_after` to do it.
    report.imports_finished = crate::import::finish_sealed_imports(
        &shared.backends,
        before(now(), shared.config.stale_after),
        SWEEP_IMPORTS,
    )
    .await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    const STALE: Duration = Duration::from_secs(60);
    const MAX: Duration = Duration::from_secs(600);

    fn secs(n: i64) -> chrono::Duration {
        chrono::Duration::seconds(n)
    }

    #[test]
    fn an_empty_or_unknown_queue_leaves_every_due_item_due() {
        let mut w = QueueWatch::default();
        let t = now();
        assert_eq!(w.pending_due(t, Some(0), 0, STALE, MAX), t);
        assert_eq!(w.pending_due(t + secs(5), None, 0, STALE, MAX), t + secs(5));
    }

    #[test]
    fn items_enqueued_before_a_reading_are_due_once_its_backlog_had_time_to_drain() {
        let mut w = QueueWatch::default();
        let t = now();
        // No rate yet: the queue is trusted for `max_queue_wait`.
        assert_eq!(
            w.pending_due(t, Some(100_000), 0, STALE, MAX),
            t - secs(540)
        );
        // 10,000 delivered in 5 s: 2,000/s, 90,000 waiting → horizon 90 s away.
        assert_eq!(
            w.pending_due(t + secs(5), Some(90_000), 10_000, STALE, MAX),
            t - secs(535)
        );
        // Once that horizon has passed, what was enqueued by t + 5 s is due.
        let later = t + secs(5 + 90);
        assert_eq!(
            w.pending_due(later, Some(1_000), 190_000, STALE, MAX),
            t + secs(5) + secs(60)
        );
        // The queue emptied: everything past its sweep_at is due.
        let end = later + secs(5);
        assert_eq!(w.pending_due(end, Some(0), 191_000, STALE, MAX), end);
    }
}
