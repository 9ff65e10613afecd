//! The worker engine: claim with a lease, process, record the result in
//! set-based flushes, retry with backoff, dead-letter, sweep, shut down
//! gracefully.
//!
//! One [`Worker`] runs these tasks:
//! - **fetch**: dequeues wake-ups, claims their items in one call, acks the
//!   messages, and spawns one processing task per claimed item (bounded by
//!   `concurrency`);
//! - **flush**: gathers results and records them with one `finish_items`
//!   call per flush (every `flush_max` results or `flush_interval`), then
//!   enqueues delayed retries, publishes events and completes batches;
//! - **heartbeat**: renews the leases of every item in hand with one call;
//! - **sweeper** (optional): re-enqueues lost work, completes and announces
//!   batches nobody completed, prunes old batches.

mod counters;
mod engine;
mod flush;
mod maintenance;
mod retry;

use std::time::Duration;

pub use counters::WorkerStats;
pub use engine::{ShutdownReport, Worker, WorkerHandle};
pub use retry::RetryPolicy;

pub(crate) use counters::{Counters, SharedCounters};

/// How a worker behaves. Every field has a sane default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Items processed at once (default 8).
    pub concurrency: usize,
    /// Most messages taken and items claimed per round trip (default 500;
    /// a fetch loop takes at most its share of the free `concurrency` permits).
    pub claim_batch: usize,
    /// Fetch loops running at once (default 2): while one waits for its
    /// claim, the next dequeues, so the queue's and the database's round
    /// trips overlap. They share the `concurrency` permits.
    pub fetchers: usize,
    /// How long a claim holds an item without a heartbeat (default 30 s).
    pub lease: Duration,
    /// How often leases are renewed (default lease / 3).
    pub heartbeat_interval: Duration,
    /// Longest wait for a message in one dequeue (default 1 s).
    pub poll_wait: Duration,
    /// Results recorded per flush at most (default 500).
    pub flush_max: usize,
    /// Longest a result waits to be flushed (default 5 ms).
    pub flush_interval: Duration,
    /// Flushes in progress at once (default 2): the next batch of results
    /// is recorded while the previous one's events are published.
    pub flushers: usize,
    /// Attempts and backoff.
    pub retry: RetryPolicy,
    /// A processor call running longer counts as a retryable failure (default 5 min).
    pub process_timeout: Duration,
    /// Whether this worker runs the sweeper (default true; several sweepers are safe).
    pub run_sweeper: bool,
    /// How often the sweeper runs (default 5 s).
    pub sweep_interval: Duration,
    /// A pending item nobody claimed this long after it became available is re-enqueued (default 60 s).
    pub stale_after: Duration,
    /// The longest a message waiting in a non-empty queue is trusted to be
    /// delivered: past it, its pending item is re-enqueued even while the
    /// queue says its message may still be waiting (default 10 min; see the sweeper).
    pub max_queue_wait: Duration,
    /// A completed batch not announced this long after completion is announced by the sweeper (default 10 s).
    pub announce_grace: Duration,
    /// Finished batches older than this are pruned (default 7 days).
    pub retention: Duration,
    /// How often pruning runs (default 1 h).
    pub prune_interval: Duration,
    /// How long shutdown waits for in-flight items before releasing them (default 10 s).
    pub shutdown_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let lease = Duration::from_secs(30);
        Self {
            concurrency: 8,
            claim_batch: 500,
            fetchers: 2,
            lease,
            heartbeat_interval: lease / 3,
            poll_wait: Duration::from_secs(1),
            flush_max: 500,
            flush_interval: Duration::from_millis(5),
            flushers: 2,
            retry: RetryPolicy::default(),
            process_timeout: Duration::from_secs(300),
            run_sweeper: true,
            sweep_interval: Duration::from_secs(5),
            stale_after: Duration::from_secs(60),
            max_queue_wait: Duration::from_secs(600),
            announce_grace: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(3600),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl WorkerConfig {
    /// Sets the concurrency (at least 1).
    pub fn with_concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// Sets how many fetch loops run at once (at least 1).
    pub fn with_fetchers(mut self, n: usize) -> Self {
        self.fetchers = n.max(1);
        self
    }

    /// Sets how many result flushes may be in progress at once (at least 1).
    pub fn with_flushers(mut self, n: usize) -> Self {
        self.flushers = n.max(1);
        self
    }

    /// Sets the lease and a heartbeat of a third of it.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self.heartbeat_interval = lease / 3;
        self
    }

    /// Sets how often the sweeper runs and when pending work counts as lost.
    pub fn with_sweep(mut self, interval: Duration, stale_after: Duration) -> Self {
        self.sweep_interval = interval;
        self.stale_after = stale_after;
        self
    }

    /// Sets how long finished batches are kept.
    pub fn with_retention(mut self, retention: Duration, prune_interval: Duration) -> Self {
        self.retention = retention;
        self.prune_interval = prune_interval;
        self
    }

    crate::setters! {
        /// Sets the retry policy.
        with_retry(retry: RetryPolicy);
        /// Sets how long a message waiting in a non-empty queue is trusted to be delivered.
        with_max_queue_wait(max_queue_wait: Duration);
        /// Turns the sweeper on or off.
        with_sweeper(run_sweeper: bool);
        /// Sets the shutdown deadline.
        with_shutdown_timeout(shutdown_timeout: Duration);
        /// Sets the longest wait of one dequeue.
        with_poll_wait(poll_wait: Duration);
        /// Sets the processor timeout.
        with_process_timeout(process_timeout: Duration);
        /// Sets the announce grace period of the sweeper.
        with_announce_grace(announce_grace: Duration);
    }
}
