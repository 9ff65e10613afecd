//! A worker's counters (its [`WorkerStats`]), mirrored to the `metrics`
//! facade, and the histograms it records there.
//!
//! `metrics` is a facade, like `tracing`: no I/O, one small dependency, and
//! a no-op until the application installs a recorder (the HTTP layer's
//! `Metrics::install` installs a Prometheus one). So the engine can record
//! per-item histograms (queue wait, processing time) that a snapshot of
//! totals could not give, while the exporter stays the embedder's choice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::model::{ItemId, Timestamp};

/// One counter of a worker; those with a metric name are also counted in
/// the `metrics` facade.
#[derive(Debug)]
pub(crate) struct Count {
    value: AtomicU64,
    metric: Option<&'static str>,
}

impl Count {
    const fn new(metric: Option<&'static str>) -> Self {
        Self {
            value: AtomicU64::new(0),
            metric,
        }
    }

    pub(crate) fn get(&self) -> u64 {
        self.value.load(Ordering::Relaxed)
    }
}

/// Counters of one worker since it started (its stats, and metrics).
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) claimed: Count,
    pub(crate) claim_misses: Count,
    pub(crate) completed: Count,
    pub(crate) retried: Count,
    pub(crate) failed: Count,
    pub(crate) fenced_off: Count,
    pub(crate) leases_lost: Count,
    pub(crate) swept: Count,
    pub(crate) released: Count,
    pub(crate) backend_errors: Count,
    pub(crate) processing_micros: Count,
    pub(crate) dequeue_micros: Count,
    pub(crate) claim_micros: Count,
    pub(crate) finish_micros: Count,
}

/// The metrics the engine records, with their help texts.
const COUNTERS: &[(&str, &str)] = &[
    (
        "onboarding_worker_claimed_total",
        "Items claimed by this process's workers.",
    ),
    (
        "onboarding_worker_claim_misses_total",
        "Messages whose item could not be claimed (done, leased elsewhere, not yet available).",
    ),
    ("onboarding_worker_completed_total", "Items completed."),
    (
        "onboarding_worker_retried_total",
        "Attempts that failed and will be retried.",
    ),
    ("onboarding_worker_failed_total", "Items dead-lettered."),
    (
        "onboarding_worker_fenced_off_total",
        "Results refused because another worker took the item over (the lease token fence).",
    ),
    (
        "onboarding_worker_leases_lost_total",
        "Leases that could not be renewed (taken over).",
    ),
    (
        "onboarding_worker_swept_total",
        "Jobs re-enqueued by the sweeper.",
    ),
    (
        "onboarding_worker_released_total",
        "Items given back at shutdown.",
    ),
    (
        "onboarding_worker_backend_errors_total",
        "Backend calls of the worker that failed (retried, or left to the sweeper).",
    ),
];
const QUEUE_WAIT: &str = "onboarding_worker_queue_wait_seconds";
const PROCESSING: &str = "onboarding_worker_processing_seconds";

impl Default for Counters {
    fn default() -> Self {
        let metric = |i: usize| COUNTERS.get(i).map(|(name, _)| *name);
        Self {
            claimed: Count::new(metric(0)),
            claim_misses: Count::new(metric(1)),
            completed: Count::new(metric(2)),
            retried: Count::new(metric(3)),
            failed: Count::new(metric(4)),
            fenced_off: Count::new(metric(5)),
            leases_lost: Count::new(metric(6)),
            swept: Count::new(metric(7)),
            released: Count::new(metric(8)),
            backend_errors: Count::new(metric(9)),
            processing_micros: Count::new(None),
            dequeue_micros: Count::new(None),
            claim_micros: Count::new(None),
            finish_micros: Count::new(None),
        }
    }
}

impl Counters {
    pub(crate) fn bump(counter: &Count, n: usize) {
        counter.value.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(name) = counter.metric {
            metrics::counter!(name).increment(n as u64);
        }
    }

    /// Adds the time since `started` to a `*_micros` counter.
    pub(crate) fn add_elapsed(counter: &Count, started: tokio::time::Instant) {
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        counter.value.fetch_add(micros, Ordering::Relaxed);
    }

    /// Describes the metrics to the installed recorder (if any).
    pub(crate) fn describe() {
        for (name, help) in COUNTERS {
            metrics::describe_counter!(*name, *help);
            // Registered at 0, so a dashboard sees them before the first event.
            metrics::counter!(*name).increment(0);
        }
        metrics::describe_histogram!(
            QUEUE_WAIT,
            metrics::Unit::Seconds,
            "Wait of an item in the queue until its claim: since its submission, or since the end of its retry backoff."
        );
        metrics::describe_histogram!(
            PROCESSING,
            metrics::Unit::Seconds,
            "Processor time per attempt by outcome: completed, retryable (timeouts and panics included), permanent."
        );
    }

    /// Records how long a claimed item waited: from the later of its
    /// submission (the time in its UUIDv7 id) and its message's
    /// `not_before` (a retry's backoff end), to `claimed_at`. A re-driven
    /// item counts from its submission.
    pub(crate) fn record_queue_wait(
        item: ItemId,
        not_before: Option<Timestamp>,
        claimed_at: Timestamp,
    ) {
        let created = item.0.get_timestamp().and_then(|t| {
            let (secs, nanos) = t.to_unix();
            Timestamp::from_timestamp(i64::try_from(secs).ok()?, nanos)
        });
        let Some(since) = created.max(not_before) else {
            return;
        };
        if let Ok(wait) = (claimed_at - since).to_std() {
            metrics::histogram!(QUEUE_WAIT).record(wait.as_secs_f64());
        }
    }

    /// Records one processor call.
    pub(crate) fn record_processing(outcome: &'static str, took: Duration) {
        metrics::histogram!(PROCESSING, "outcome" => outcome).record(took.as_secs_f64());
    }

    pub(crate) fn snapshot(&self) -> WorkerStats {
        WorkerStats {
            claimed: self.claimed.get(),
            claim_misses: self.claim_misses.get(),
            completed: self.completed.get(),
            retried: self.retried.get(),
            failed: self.failed.get(),
            fenced_off: self.fenced_off.get(),
            leases_lost: self.leases_lost.get(),
            swept: self.swept.get(),
            released: self.released.get(),
            backend_errors: self.backend_errors.get(),
            processing_micros: self.processing_micros.get(),
            dequeue_micros: self.dequeue_micros.get(),
            claim_micros: self.claim_micros.get(),
            finish_micros: self.finish_micros.get(),
        }
    }
}

/// A snapshot of a worker's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct WorkerStats {
    /// Items claimed.
    pub claimed: u64,
    /// Messages whose item could not be claimed (done, leased elsewhere, early).
    pub claim_misses: u64,
    /// Items completed by this worker.
    pub completed: u64,
    /// Attempts that will be retried.
    pub retried: u64,
    /// Items dead-lettered by this worker.
    pub failed: u64,
    /// Results refused because another worker took the item over.
    pub fenced_off: u64,
    /// Leases that could not be renewed.
    pub leases_lost: u64,
    /// Jobs re-enqueued by this worker's sweeper.
    pub swept: u64,
    /// Items released at shutdown.
    pub released: u64,
    /// Backend calls that failed (each retried or left to the sweeper).
    pub backend_errors: u64,
    /// Total time spent in the processor, in microseconds.
    pub processing_micros: u64,
    /// Total time spent waiting in `JobQueue::dequeue` (including idle waits), in microseconds.
    pub dequeue_micros: u64,
    /// Total time spent in `OrgRepository::claim_items`, in microseconds.
    pub claim_micros: u64,
    /// Total time spent in `OrgRepository::finish_items` (the flushes), in microseconds.
    pub finish_micros: u64,
}

pub(crate) type SharedCounters = Arc<Counters>;
