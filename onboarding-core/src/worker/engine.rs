//! The fetch loop, processing tasks, and the worker's lifecycle.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::Instrument as _;

use super::flush::{flush_loop, Done};
use super::maintenance::{heartbeat_loop, sweep_once, sweeper_loop, QueueWatch, SweepReport};
use super::{Counters, SharedCounters, WorkerConfig, WorkerStats};
use crate::backends::Backends;
use crate::error::Result;
use crate::model::{now, BatchId, ItemId, LeaseToken, Timestamp};
use crate::processor::{ProcessError, Processor, WorkItem};
use crate::queue::Receipt;
use crate::repository::{ClaimRequest, ClaimedItem, Lease};

/// State every task of one worker shares.
pub(crate) struct Shared {
    pub(crate) backends: Backends,
    pub(crate) processor: Arc<dyn Processor>,
    pub(crate) config: WorkerConfig,
    /// Leases in hand: claimed and not yet recorded.
    pub(crate) in_flight: Mutex<HashMap<ItemId, Lease>>,
    pub(crate) counters: SharedCounters,
    /// The sweeper's readings of the queue (see [`QueueWatch`]).
    pub(crate) queue_watch: Mutex<QueueWatch>,
}

impl Shared {
    /// The leases in hand, ordered by item id: every multi-row write of a
    /// worker presents its rows in that order, so two of them (a heartbeat
    /// and a flush) lock rows in the same order and cannot deadlock.
    pub(crate) fn leases_in_hand(&self) -> Vec<Lease> {
        let mut leases: Vec<Lease> = self
            .in_flight
            .lock()
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        leases.sort_unstable_by_key(|l| l.item_id);
        leases
    }

    /// Those of `items` that are still in hand.
    pub(crate) fn still_in_hand(&self, items: impl IntoIterator<Item = ItemId>) -> Vec<ItemId> {
        self.in_flight
            .lock()
            .map(|m| items.into_iter().filter(|id| m.contains_key(id)).collect())
            .unwrap_or_default()
    }

    pub(crate) fn forget(&self, items: impl IntoIterator<Item = ItemId>) {
        if let Ok(mut m) = self.in_flight.lock() {
            for id in items {
                m.remove(&id);
            }
        }
    }
}

/// A worker, configured and not yet running.
pub struct Worker {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// A worker that processes items of `backends` with `processor`.
    pub fn new(backends: Backends, processor: Arc<dyn Processor>, config: WorkerConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                backends,
                processor,
                config,
                in_flight: Mutex::new(HashMap::new()),
                counters: Arc::new(Counters::default()),
                queue_watch: Mutex::new(QueueWatch::default()),
            }),
        }
    }

    /// Starts the worker's tasks on the current tokio runtime.
    pub fn start(self) -> WorkerHandle {
        Counters::describe();
        let shared = self.shared;
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let permits = Arc::new(Semaphore::new(shared.config.concurrency.max(1)));
        let fetch = (0..shared.config.fetchers.max(1))
            .map(|_| {
                tokio::spawn(fetch_loop(
                    shared.clone(),
                    permits.clone(),
                    done_tx.clone(),
                    stop_rx.clone(),
                ))
            })
            .collect();
        drop(done_tx);
        let flush = tokio::spawn(flush_loop(shared.clone(), done_rx));
        let heartbeat = tokio::spawn(heartbeat_loop(shared.clone()));
        let sweeper = shared
            .config
            .run_sweeper
            .then(|| tokio::spawn(sweeper_loop(shared.clone(), stop_rx)));
        WorkerHandle {
            shared,
            stop: stop_tx,
            fetch,
            flush,
            heartbeat,
            sweeper,
        }
    }

    /// Runs until `signal` resolves, then shuts down gracefully.
    pub async fn run_until(self, signal: impl Future<Output = ()>) -> ShutdownReport {
        let handle = self.start();
        signal.await;
        handle.shutdown().await
    }
}

/// A running worker.
pub struct WorkerHandle {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    fetch: Vec<JoinHandle<()>>,
    flush: JoinHandle<()>,
    heartbeat: JoinHandle<()>,
    sweeper: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// What a graceful shutdown did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// Items still in hand at the deadline, given back to the queue.
    pub released: usize,
    /// Counters at exit.
    pub stats: WorkerStats,
}

impl WorkerHandle {
    /// The worker's counters now.
    pub fn stats(&self) -> WorkerStats {
        self.shared.counters.snapshot()
    }

    /// Items claimed and not yet recorded.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Runs one sweep now (also when this worker runs no sweeper).
    pub async fn sweep_now(&self) -> Result<SweepReport> {
        sweep_once(&self.shared).await
    }

    /// Stops claiming, lets in-flight items finish until the shutdown
    /// deadline, releases the rest at once, records every result, and stops.
    pub async fn shutdown(self) -> ShutdownReport {
        let _ = self.stop.send(true);
        // The fetch loops own the processing tasks: each returns once its are done or aborted.
        for fetch in self.fetch {
            if let Err(e) = fetch.await {
                tracing::error!(error = %e, "worker fetch task ended abnormally");
            }
        }
        // With the fetch loops gone, the result channel closes: the flusher drains and exits.
        if let Err(e) = self.flush.await {
            tracing::error!(error = %e, "worker flush task ended abnormally");
        }
        let leftover = self.shared.leases_in_hand();
        let released = if leftover.is_empty() {
            0
        } else {
            release(&self.shared, &leftover).await
        };
        self.heartbeat.abort();
        if let Some(sweeper) = self.sweeper {
            sweeper.abort();
            let _ = sweeper.await;
        }
        let _ = self.heartbeat.await;
        ShutdownReport {
            released,
            stats: self.shared.counters.snapshot(),
        }
    }
}

/// Gives leases back (a few tries: a busy database should not leave items
/// leased until their lease expires), enqueues them, and returns how many went back.
async fn release(shared: &Shared, leases: &[Lease]) -> usize {
    let mut backoff = ErrorBackoff::new();
    let mut released = 0;
    for attempt in 1..=RELEASE_TRIES {
        match shared
            .backends
            .repository
            .release_items(leases, now())
            .await
        {
            Ok(jobs) => {
                released = jobs.len();
                Counters::bump(&shared.counters.released, released);
                if let Err(e) = shared.backends.queue.enqueue(&jobs).await {
                    tracing::warn!(error = %e, "released items not enqueued; the sweeper will");
                }
                break;
            }
            Err(e) if attempt < RELEASE_TRIES => {
                Counters::bump(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e, attempt, "releasing items failed; retrying");
                tokio::time::sleep(backoff.next()).await;
            }
            Err(e) => {
                Counters::bump(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e, items = leases.len(), "could not release items; their leases will expire");
            }
        }
    }
    shared.forget(leases.iter().map(|l| l.item_id));
    released
}

/// Attempts at releasing leases on shutdown.
const RELEASE_TRIES: u32 = 5;

/// Grows a pause after backend errors, resets after a success.
pub(crate) struct ErrorBackoff {
    current: Duration,
}

impl ErrorBackoff {
    const MIN: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Self {
        Self { current: Self::MIN }
    }

    pub(crate) fn next(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(Self::MAX);
        d
    }

    pub(crate) fn reset(&mut self) {
        self.current = Self::MIN;
    }
}

async fn fetch_loop(
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    done: mpsc::UnboundedSender<Done>,
    mut stop: watch::Receiver<bool>,
) {
    let config = &shared.config;
    let mut tasks = JoinSet::new();
    // Acks and cache invalidations run beside the next dequeue (a few at most).
    let mut chores = JoinSet::new();
    let mut backoff = ErrorBackoff::new();
    loop {
        while tasks.try_join_next().is_some() {}
        while chores.try_join_next().is_some() {}
        if *stop.borrow() {
            break;
        }
        // Wait for a fair share of the permits before dequeuing, so that a
        // busy worker claims in batches instead of one item per round trip;
        // an idle worker has them all at once.
        let share = claim_share(config);
        let first = tokio::select! {
            p = permits.clone().acquire_many_owned(share) => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        let mut held = vec![first];
        let mut in_hand = share as usize;
        while in_hand < config.claim_batch.max(1) {
            match permits.clone().try_acquire_owned() {
                Ok(p) => {
                    held.push(p);
                    in_hand += 1;
                }
                Err(_) => break,
            }
        }
        let held = split_permits(held, in_hand);
        // Not raced against the stop signal: a dequeue cancelled half-way can
        // leave a pooled database connection inside a transaction (seen with
        // sqlx on SQLite: a cancelled `BEGIN IMMEDIATE` while waiting for the
        // lock). Shutdown waits at most `poll_wait` for it instead.
        let started = Instant::now();
        let dequeued = shared
            .backends
            .queue
            .dequeue(held.len(), config.poll_wait)
            .await;
        Counters::add_elapsed(&shared.counters.dequeue_micros, started);
        let deliveries = match dequeued {
            Ok(d) => d,
            Err(e) => {
                Counters::bump(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e, "dequeue failed");
                pause(&mut stop, backoff.next()).await;
                continue;
            }
        };
        if deliveries.is_empty() {
            continue;
        }
        let not_before: HashMap<ItemId, Option<Timestamp>> = deliveries
            .iter()
            .map(|d| (d.job.item_id, d.job.not_before))
            .collect();
        let mut item_ids: Vec<ItemId> = not_before.keys().copied().collect();
        // Ordered (and unique) like every multi-row write: see `leases_in_hand`.
        item_ids.sort_unstable();
        item_ids.dedup();
        let receipts: Vec<Receipt> = deliveries.into_iter().map(|d| d.receipt).collect();
        let claim_now = now();
        let request = ClaimRequest {
            item_ids,
            token: LeaseToken::new(),
            now: claim_now,
            lease_until: crate::model::after(claim_now, config.lease),
        };
        let Some(claimed) = claim(&shared, &request, &mut stop, &mut backoff).await else {
            // Not acked: the queue delivers these again after its visibility timeout.
            continue;
        };
        backoff.reset();
        Counters::bump(&shared.counters.claimed, claimed.len());
        for item in &claimed {
            let id = item.lease.item_id;
            Counters::record_queue_wait(id, not_before.get(&id).copied().flatten(), claim_now);
        }
        Counters::bump(
            &shared.counters.claim_misses,
            request.item_ids.len() - claimed.len(),
        );
        if let Ok(mut m) = shared.in_flight.lock() {
            m.extend(claimed.iter().map(|c| (c.lease.item_id, c.lease)));
        }
        // The item is safe in the repository now (leased, or someone else's,
        // or done), so the ack need not hold up processing.
        if chores.len() >= MAX_CHORES {
            chores.join_next().await;
        }
        let touched: Vec<BatchId> = claimed.iter().map(|c| c.batch_id).collect();
        let chore_shared = shared.clone();
        chores.spawn(async move {
            let shared = chore_shared;
            if let Err(e) = shared.backends.queue.ack(&receipts).await {
                Counters::bump(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e, "ack failed; the messages come back and their claims miss");
            }
            shared.backends.invalidate_batch_status(touched).await;
        });
        for (item, permit) in claimed.into_iter().zip(held) {
            let (shared, done) = (shared.clone(), done.clone());
            tasks.spawn(async move {
                let resolution = process_one(&shared, &item).await;
                let _ = done.send(Done { item, resolution });
                drop(permit);
            });
        }
    }
    drain(&mut tasks, shared.config.shutdown_timeout).await;
    while chores.join_next().await.is_some() {}
}

/// Permits one fetch loop waits for before it dequeues: its share of the
/// concurrency, at most `claim_batch`, at least 1.
fn claim_share(config: &WorkerConfig) -> u32 {
    let share = (config.concurrency / config.fetchers.max(1)).clamp(1, config.claim_batch.max(1));
    u32::try_from(share).unwrap_or(u32::MAX)
}

/// One permit per item slot (a multi-permit is split so each processing
/// task gives its slot back on its own).
fn split_permits(held: Vec<OwnedSemaphorePermit>, n: usize) -> Vec<OwnedSemaphorePermit> {
    let mut out = Vec::with_capacity(n);
    for mut permit in held {
        while permit.num_permits() > 1 {
            match permit.split(1) {
                Some(one) => out.push(one),
                None => break,
            }
        }
        out.push(permit);
    }
    out
}

/// Acks (with their cache invalidations) in progress per fetch loop at most.
const MAX_CHORES: usize = 4;

/// Waits for processing tasks until `timeout`, then aborts the rest (their
/// leases stay in hand and are released by the shutdown).
async fn drain(tasks: &mut JoinSet<()>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, tasks.join_next()).await {
            Ok(Some(_)) => continue,
            Ok(None) => return,
            Err(_) => {
                tracing::info!(
                    tasks = tasks.len(),
                    "shutdown deadline reached; releasing items in hand"
                );
                tasks.abort_all();
                while tasks.join_next().await.is_some() {}
                return;
            }
        }
    }
}

/// Claims tried per delivery before it is left to the queue's visibility timeout.
const CLAIM_TRIES: u32 = 3;

/// Claims the items of one dequeue, trying again after an error (a
/// deadlock victim, a connection reset): a delivery that is not acked stays
/// invisible for the queue's whole visibility timeout (30 s by default), so
/// one failed statement would hold its items back that long (issue 17's
/// 31.5 s drain). `None` after [`CLAIM_TRIES`] failures or at shutdown.
async fn claim(
    shared: &Shared,
    request: &ClaimRequest,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut ErrorBackoff,
) -> Option<Vec<ClaimedItem>> {
    for tried in 1..=CLAIM_TRIES {
        let started = Instant::now();
        let claimed = shared.backends.repository.claim_items(request).await;
        Counters::add_elapsed(&shared.counters.claim_micros, started);
        match claimed {
            Ok(c) => return Some(c),
            Err(e) => {
                Counters::bump(&shared.counters.backend_errors, 1);
                tracing::warn!(error = %e, tried, "claim failed");
                pause(stop, backoff.next()).await;
                if *stop.borrow() {
                    return None;
                }
            }
        }
    }
    None
}

async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
}

async fn process_one(shared: &Shared, item: &ClaimedItem) -> crate::repository::Resolution {
    let work = WorkItem {
        item_id: item.lease.item_id,
        batch_id: item.batch_id,
        tenant: item.tenant.clone(),
        attempt: item.attempt,
        change: item.change,
        organization: item.organization.clone(),
    };
    // One span per attempt, a child of the request that created the batch
    // (its `traceparent` is stored with the batch: `crate::trace`).
    let span = tracing::info_span!("process_item", item_id = %work.item_id, batch_id = %work.batch_id, attempt = work.attempt);
    if let Some(parent) = &item.trace_parent {
        crate::trace::set_parent(&span, parent);
    }
    let started = Instant::now();
    let call = AssertUnwindSafe(shared.processor.process(&work).instrument(span)).catch_unwind();
    let result = match tokio::time::timeout(shared.config.process_timeout, call).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a non-string payload".to_owned());
            Err(ProcessError::Retryable(format!(
                "processor panicked: {what}"
            )))
        }
        Err(_) => Err(ProcessError::Retryable(format!(
            "processing timed out after {:?}",
            shared.config.process_timeout
        ))),
    };
    Counters::add_elapsed(&shared.counters.processing_micros, started);
    let outcome = match &result {
        Ok(()) => "completed",
        Err(ProcessError::Retryable(_)) => "retryable",
        Err(ProcessError::Permanent(_)) => "permanent",
    };
    Counters::record_processing(outcome, started.elapsed());
    if let Err(e) = &result {
        tracing::debug!(item_id = %work.item_id, batch_id = %work.batch_id, attempt = work.attempt, error = e.message(), "attempt failed");
    }
    shared.config.retry.resolve(item.attempt, result, now())
}
