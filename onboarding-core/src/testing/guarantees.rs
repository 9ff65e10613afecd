//! Conformance cases for the guarantees (ARCHITECTURE.md, "What it guarantees"), run through
//! the ingest service and real workers over a backend under test.
//!
//! Every case uses its own tenant and random domains, so cases can share
//! one database and run in parallel. Time-based behaviour (leases, backoff,
//! sweeps) runs on short, configured durations and is awaited by polling
//! with a deadline, never by a fixed sleep.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{eventually, requests, TestBackend};
use crate::backends::Backends;
use crate::events::Event;
use crate::memory::RecordingEventSink;
use crate::model::{now, BatchId, ConflictPolicy, ItemStatus, LeaseToken, TenantId};
use crate::processor::{ProcessError, Processor, WorkItem};
use crate::repository::{ClaimRequest, ItemQuery, Submission};
use crate::service::{IngestConfig, OnboardingService, SubmitOptions};
use crate::validate::SubmitRequest;
use crate::worker::{RetryPolicy, Worker, WorkerConfig, WorkerHandle};
use crate::ErrorKind;

/// Longest a case waits for an outcome before it fails.
const DEADLINE: Duration = Duration::from_secs(60);

/// A processor that records every call per domain, and can fail or block on chosen domains.
#[derive(Default)]
pub struct ScriptedProcessor {
    calls: Mutex<HashMap<String, u32>>,
    /// Domains that fail with a retryable error this many times before succeeding (`u32::MAX` = always).
    failures: Mutex<HashMap<String, u32>>,
    /// Domains that fail permanently.
    permanent: Mutex<Vec<String>>,
    /// Domains whose processing waits until `release` is notified.
    blocking: Mutex<Vec<String>>,
    release: Notify,
    entered: AtomicU32,
    delay: Mutex<Duration>,
}

impl ScriptedProcessor {
    /// A processor that succeeds on everything.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Makes `domain` fail (retryably) `times` times before it succeeds.
    pub fn fail(&self, domain: &str, times: u32) {
        lock(&self.failures).insert(domain.to_owned(), times);
    }

    /// Makes `domain` fail permanently.
    pub fn fail_permanently(&self, domain: &str) {
        lock(&self.permanent).push(domain.to_owned());
    }

    /// Makes `domain` wait for [`ScriptedProcessor::unblock`].
    pub fn block(&self, domain: &str) {
        lock(&self.blocking).push(domain.to_owned());
    }

    /// Lets every blocked call finish (and later ones pass).
    pub fn unblock(&self) {
        lock(&self.blocking).clear();
        self.release.notify_waiters();
    }

    /// Makes every call take `delay`.
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.delay) = delay;
    }

    /// How many calls entered a blocking wait.
    pub fn blocked_calls(&self) -> u32 {
        self.entered.load(Ordering::SeqCst)
    }

    /// How often `domain` was processed.
    pub fn calls(&self, domain: &str) -> u32 {
        lock(&self.calls).get(domain).copied().unwrap_or(0)
    }

    /// Calls for domains containing `needle` (a case's prefix), in all.
    pub fn calls_matching(&self, needle: &str) -> u32 {
        lock(&self.calls)
            .iter()
            .filter(|(d, _)| d.contains(needle))
            .map(|(_, n)| n)
            .sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[async_trait]
impl Processor for ScriptedProcessor {
    async fn process(&self, item: &WorkItem) -> Result<(), ProcessError> {
        let domain = item.organization.domain.as_str().to_owned();
        *lock(&self.calls).entry(domain.clone()).or_default() += 1;
        let delay = *lock(&self.delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let blocked = lock(&self.blocking).contains(&domain);
        if blocked {
            let released = self.release.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            self.entered.fetch_add(1, Ordering::SeqCst);
            if lock(&self.blocking).contains(&domain) {
                released.await;
            }
        }
        if lock(&self.permanent).contains(&domain) {
            return Err(ProcessError::Permanent(format!("{domain} is poison")));
        }
        let mut failures = lock(&self.failures);
        if let Some(left) = failures.get_mut(&domain) {
            if *left > 0 {
                if *left != u32::MAX {
                    *left -= 1;
                }
                return Err(ProcessError::Retryable(format!(
                    "{domain} failed, try again"
                )));
            }
        }
        Ok(())
    }
}

/// A backend under test wired to a recording event sink, with helpers.
pub struct Harness {
    /// The service under test.
    pub service: OnboardingService,
    /// Everything published.
    pub events: RecordingEventSink,
    /// The tenant of this case.
    pub tenant: TenantId,
    prefix: String,
}

impl Harness {
    /// Wires `backend` to a recording sink and a random tenant.
    pub fn new(backend: TestBackend) -> Self {
        Self::with_config(backend, IngestConfig::default())
    }

    /// Like [`Harness::new`] with an ingest configuration.
    pub fn with_config(backend: TestBackend, config: IngestConfig) -> Self {
        let events = RecordingEventSink::new();
        let backends = Backends::new(
            backend.repository,
            backend.queue,
            backend.cache,
            Arc::new(events.clone()),
        );
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            service: OnboardingService::new(backends, config),
            events,
            tenant: TenantId::parse(format!("t-{}", &id[..12])).expect("valid tenant id"),
            prefix: id[..16].to_owned(),
        }
    }

    /// The backends.
    pub fn backends(&self) -> Backends {
        self.service.backends().clone()
    }

    /// A unique domain of this case.
    pub fn domain(&self, n: usize) -> String {
        requests::domain(&self.prefix, n)
    }

    /// A request for organizations `range` of this case.
    pub fn request(&self, range: std::ops::Range<usize>) -> SubmitRequest {
        requests::request(&self.prefix, range)
    }

    /// Submits organizations `range` and returns the batch id.
    pub async fn submit(&self, range: std::ops::Range<usize>) -> BatchId {
        self.service
            .submit(&self.tenant, &self.request(range), SubmitOptions::default())
            .await
            .expect("submission accepted")
            .batch_id
    }

    /// Starts a worker with `config` and `processor`.
    pub fn worker(&self, processor: Arc<dyn Processor>, config: WorkerConfig) -> WorkerHandle {
        Worker::new(self.backends(), processor, config).start()
    }

    /// The first 100 items of `batch` (those with `status`, if given), by position.
    pub async fn items(
        &self,
        batch: BatchId,
        status: Option<ItemStatus>,
    ) -> crate::repository::ItemPage {
        let query = ItemQuery {
            status,
            limit: 100,
            after_position: None,
        };
        self.service
            .list_items(&self.tenant, batch, &query)
            .await
            .expect("list_items failed")
    }

    /// Waits until the batch has no pending or processing item and is completed.
    pub async fn until_completed(&self, batch: BatchId) -> crate::model::BatchStatus {
        let repo = self.backends().repository;
        let completed =
            |s: &crate::model::BatchStatus| s.is_finished() && s.batch.completed_at.is_some();
        let what = "the batch to complete";
        super::fixtures::until_batch(&*repo, &self.tenant, batch, what, DEADLINE, completed).await
    }

    /// Waits until `BatchCompleted` for `batch` was published `n` times in all.
    pub async fn until_announced(&self, batch: BatchId, n: usize) {
        eventually("BatchCompleted to be published", DEADLINE, || async {
            (self.completions(batch) >= n).then_some(())
        })
        .await;
    }

    /// How many `BatchCompleted` events were published for `batch`.
    pub fn completions(&self, batch: BatchId) -> usize {
        self.events
            .events()
            .iter()
            .filter(|e| matches!(e, Event::BatchCompleted { batch_id, .. } if *batch_id == batch))
            .count()
    }
}

/// A fast worker configuration for tests: short lease, sweeps and backoff.
///
/// The lease (2 s) and the announce grace (5 s) keep a margin for a loaded
/// 2-core CI machine, where a task can wait hundreds of milliseconds for a
/// thread: shorter ones turn scheduling delays into lease takeovers and
/// repeated `BatchCompleted` announcements (the documented at-least-once window).
pub fn fast_worker() -> WorkerConfig {
    WorkerConfig::default()
        .with_concurrency(4)
        .with_lease(Duration::from_secs(2))
        .with_sweep(Duration::from_millis(100), Duration::from_millis(300))
        .with_poll_wait(Duration::from_millis(100))
        .with_announce_grace(Duration::from_secs(5))
        .with_shutdown_timeout(Duration::from_secs(5))
        .with_retry(
            RetryPolicy::default()
                .with_base_delay(Duration::from_millis(50))
                .with_max_attempts(3),
        )
}

/// Guarantee 1: invalid input stores nothing, and an idempotency conflict stores nothing.
pub async fn submission_is_all_or_nothing(backend: TestBackend) {
    // Workers sweep every tenant: no other case may run meanwhile.
    let _exclusive = super::fixtures::exclusive().await;
    let h = Harness::new(backend);
    let repo = h.backends().repository;
    let mut request = h.request(0..5);
    request.organizations[3].domain = "not a domain".into();
    let err = h
        .service
        .submit(&h.tenant, &request, SubmitOptions::default())
        .await
        .expect_err("an invalid organization rejects the whole request");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    for n in 0..5 {
        let domain = crate::validate::normalize_domain(&h.domain(n)).expect("valid domain");
        assert_eq!(
            repo.organization_by_domain(&h.tenant, &domain)
                .await
                .expect("lookup"),
            None,
            "nothing of an invalid request is stored"
        );
    }
    let key = SubmitOptions::default().with_idempotency_key("k-1");
    let first = h
        .service
        .submit(&h.tenant, &h.request(0..3), key.clone())
        .await
        .expect("first");
    let err = h
        .service
        .submit(&h.tenant, &h.request(10..13), key.clone())
        .await
        .expect_err("same key, other body");
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert_eq!(err.field_errors()[0].code, "idempotency_key_reused");
    for n in 10..13 {
        let domain = crate::validate::normalize_domain(&h.domain(n)).expect("valid domain");
        assert_eq!(
            repo.organization_by_domain(&h.tenant, &domain)
                .await
                .expect("lookup"),
            None
        );
    }
    let replay = h
        .service
        .submit(&h.tenant, &h.request(0..3), key)
        .await
        .expect("replay");
    assert_eq!(replay.batch_id, first.batch_id);
    assert!(replay.replayed);
}

/// Guarantee 2: a worker paused past its lease cannot overwrite the work of
/// the worker that took its item over; the item completes exactly once.
pub async fn zombie_worker_is_fenced_off(backend: TestBackend) {
    // Workers sweep every tenant: no other case may run meanwhile.
    let _exclusive = super::fixtures::exclusive().await;
    let h = Harness::new(backend);
    let zombie_processor = ScriptedProcessor::new();
    zombie_processor.block(&h.domain(0));
    // The zombie never renews its lease (heartbeat far slower than the lease), like a paused process.
    // Concurrency 1: while paused it cannot claim anything else either.
    let mut zombie_config = fast_worker().with_sweeper(false).with_concurrency(1);
    zombie_config.heartbeat_interval = Duration::from_secs(3600);
    let zombie = h.worker(zombie_processor.clone(), zombie_config);
    let batch = h.submit(0..1).await;
    eventually("the zombie to hold the item", DEADLINE, || async {
        (zombie_processor.blocked_calls() == 1).then_some(())
    })
    .await;
    // The healthy worker takes the item over once the lease expires, and is
    // still processing it when the zombie wakes up.
    let healthy_processor = ScriptedProcessor::new();
    healthy_processor.block(&h.domain(0));
    let healthy = h.worker(healthy_processor.clone(), fast_worker());
    eventually(
        "the healthy worker to take the item over",
        DEADLINE,
        || async { (healthy_processor.blocked_calls() == 1).then_some(()) },
    )
    .await;
    zombie_processor.unblock();
    let zombie_report = zombie.shutdown().await;
    assert_eq!(
        zombie_report.stats.fenced_off, 1,
        "the zombie's result was fenced off"
    );
    // Not the workers' totals: the healthy worker sweeps every tenant, and
    // a run that shares one store across cases (the memory suite) can hand
    // either worker another case's leftover item. This item's calls count.
    assert_eq!(
        zombie_processor.calls(&h.domain(0)),
        1,
        "the zombie processed the item once"
    );
    let page = h.items(batch, None).await;
    assert_eq!(
        page.items[0].status,
        ItemStatus::Processing,
        "the zombie did not finish the item under the new owner's lease"
    );
    healthy_processor.unblock();
    let status = h.until_completed(batch).await;
    assert_eq!(status.counts.completed, 1);
    healthy.shutdown().await;
    assert_eq!(
        healthy_processor.calls(&h.domain(0)),
        1,
        "the healthy worker processed the item once"
    );
    let page = h.items(batch, None).await;
    assert_eq!(page.items[0].status, ItemStatus::Completed);
    assert_eq!(
        page.items[0].attempts, 2,
        "claimed twice: zombie and healthy worker"
    );
    let processed = h
        .events
        .events()
        .iter()
        .filter(
            |e| matches!(e, Event::OrganizationProcessed { batch_id, .. } if *batch_id == batch),
        )
        .count();
    assert_eq!(processed, 1, "completed exactly once");
    // The announcement follows `completed_at` (published by an announcer task).
    h.until_announced(batch, 1).await;
    assert_eq!(h.completions(batch), 1);
}

/// Guarantee 3: work whose messages were never enqueued (or were lost) is
/// delivered by the sweeper.
pub async fn lost_messages_are_swept(backend: TestBackend) {
    // Workers sweep every tenant: no other case may run meanwhile.
    let _exclusive = super::fixtures::exclusive().await;
    let h = Harness::new(backend);
    let repo = h.backends().repository;
    // Store directly, skipping the enqueue: as if the queue lost every message.
    let valid = h.service.validate(&h.request(0..20)).expect("valid");
    let at = now();
    let submission = Submission {
        batch_id: BatchId::new(),
        tenant: h.tenant.clone(),
        idempotency_key: None,
        request_hash: valid.request_hash(),
        policy: valid.policy,
        mode: valid.mode,
        organizations: valid.organizations,
        chunk_size: 500,
        reprocess_unchanged: false,
        now: at,
        sweep_at: at,
        trace_parent: None,
    };
    repo.store_submission(&submission).await.expect("stored");
    let processor = ScriptedProcessor::new();
    let worker = h.worker(processor.clone(), fast_worker());
    let status = h.until_completed(submission.batch_id).await;
    assert_eq!(status.counts.completed, 20);
    assert_eq!(
        processor.calls_matching(&h.prefix),
        20,
        "each item processed once"
    );
    let stats = worker.shutdown().await.stats;
    assert!(
        stats.swept >= 20,
        "the sweeper delivered the work: {stats:?}"
    );
}

/// Guarantee 3: items held by a worker that died (leases never finished)
/// are taken over after their lease expires.
pub async fn dead_workers_items_are_taken_over(backend: TestBackend) {
    // Workers sweep every tenant: no other case may run meanwhile.
    let _exclusive = super::fixtures::exclusive().await;
    let h = Harness::new(backend);
    let repo = h.backends().repository;
    let batch = h.submit(0..10).await;
    let items = h.items(batch, None).await;
    // A worker claims everything and dies without a word.
    let at = now();
    let claimed = repo
        .claim_items(&ClaimRequest {
            item_ids: items.items.iter().map(|i| i.id).collect(),
            token: LeaseToken::new(),
            now: at,
            lease_until: at + chrono::Duration::milliseconds(300),
        })
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 10);
    let processor = ScriptedProcessor::new();
    let worker = h.worker(processor.clone(), fast_worker());
    let status = h.until_completed(batch).await;
    assert_eq!(status.counts.completed, 10);
    worker.shutdown().await;
}

/// Guarantee 4: retryable failures are retried with backoff; a poison item
/// is attempted exactly `max_attempts` times and dead-lettered with its
/// history; a permanent failure is not retried; the rest complete; a
/// re-drive processes the failed items again.
pub async fn retries_and_dead_letters(backend: TestBackend) {
    // Workers sweep every tenant: no other case may run meanwhile.
    let _exclusive = super::fixtures::exclusive().await;
    let h = Harness::new(backend);
    let processor = ScriptedProcessor::new();
    processor.fail(&h.domain(0), 2); // succeeds on the third attempt
    processor.fail(&h.domain(1), u32::MAX); // poison
    processor.fail_permanently(&h.domain(2));
    let worker = h.worker(processor.clone(), fast_worker());
    let batch = h.submit(0..10).await;
    let status = h.until_completed(batch).await;
    assert_eq!(status.counts.completed, 8);
    assert_eq!(status.counts.failed, 2);
    assert_eq!(processor.calls(&h.domain(0)), 3);
    assert_eq!(
        processor.calls(&h.domain(1)),
        3,
        "poison: exactly max_attempts"
    );
    assert_eq!(processor.calls(&h.domain(2)), 1, "permanent: no retry");
    let failed = h.items(batch, Some(ItemStatus::Failed)).await;
    assert_eq!(failed.items.len(), 2);
    let poison = &failed.items[0];
    assert_eq!(poison.position, 1);
    assert_eq!(poison.attempts, 3);
    assert_eq!(poison.errors.len(), 3, "every attempt's error kept");
    assert!(poison.errors.windows(2).all(|w| w[0].at <= w[1].at));
    let permanent = &failed.items[1];
    assert_eq!(permanent.errors.len(), 1);
    assert!(permanent.errors[0].permanent);
    let recovered = h.items(batch, None).await;
    assert_eq!(
        recovered.items[0].errors.len(),
        2,
        "two failures before success"
    );
    h.until_announced(batch, 1).await;
    assert_eq!(h.completions(batch), 1);

    // Re-drive the dead letters after fixing the cause.
    processor.fail(&h.domain(1), 0);
    lock(&processor.permanent).clear();
    let redriven = h
        .service
        .retry_failed(&h.tenant, batch)
        .await
        .expect("retry");
    assert_eq!(redriven, 2);
    let status = h.until_completed(batch).await;
    assert_eq!(status.counts.completed, 10);
    assert_eq!(status.counts.failed, 0);
    h.until_announced(batch, 2).await;
    worker.shutdown().await;
}

/// Guarantee 5: policy `update` upserts, `skip` keeps rows; re-submitting
/// unchanged, completed organizations does not process them again.
pub async fn duplicates_follow_the_policy(backend: TestBackend) {
    // Workers sweep every tenant: no other case may run meanwhile.
    let _exclusive = super::fixtures::exclusive().await;
    let h = Harness::new(backend);
    let processor = ScriptedProcessor::new();
    let worker = h.worker(processor.clone(), fast_worker());
    let first = h.submit(0..5).await;
    h.until_completed(first).await;
    assert_eq!(processor.calls_matching(&h.prefix), 5);

    // Same data again: unchanged and already processed → nothing to do.
    let again = h.submit(0..5).await;
    let status = h.until_completed(again).await;
    assert_eq!(status.counts.unchanged, 5);
    assert_eq!(
        processor.calls_matching(&h.prefix),
        5,
        "unchanged organizations not re-processed"
    );

    // Changed names with `skip`: rows kept, nothing processed.
    let mut skip = h.request(0..5);
    skip.on_conflict = ConflictPolicy::Skip;
    for org in &mut skip.organizations {
        org.name.push_str(" renamed");
    }
    let accepted = h
        .service
        .submit(&h.tenant, &skip, SubmitOptions::default())
        .await
        .expect("skip");
    let status = h.until_completed(accepted.batch_id).await;
    assert_eq!(status.counts.skipped, 5);
    let domain = crate::validate::normalize_domain(&h.domain(0)).expect("valid");
    let org = h
        .service
        .organization(&h.tenant, domain.as_str())
        .await
        .expect("org");
    assert_eq!(org.name, "Org 0");
    assert_eq!(org.version, 1);

    // Changed names with `update`: rows updated and processed again.
    skip.on_conflict = ConflictPolicy::Update;
    let accepted = h
        .service
        .submit(&h.tenant, &skip, SubmitOptions::default())
        .await
        .expect("update");
    let status = h.until_completed(accepted.batch_id).await;
    assert_eq!(status.counts.updated, 5);
    assert_eq!(processor.calls_matching(&h.prefix), 10);
    let org = h
        .backends()
        .repository
        .organization_by_domain(&h.tenant, &domain)
        .await
        .expect("lookup")
        .expect("row");
    assert_eq!(org.name, "Org 0 renamed");
    assert_eq!(org.version, 2);
    assert_eq!(org.status, ItemStatus::Completed);
    worker.shutdown().await;
}

/// Guarantee 6: counts are exact while many workers finish items of one
/// batch at once; a cancelled batch stops its pending items.
pub async fn counts_are_exact_and_cancel_stops_pending(backend: TestBackend) {
    // Workers sweep every tenant: no other case may run meanwhile.
    let _exclusive = super::fixtures::exclusive().await;
    let h = Harness::new(backend);
    let processor = ScriptedProcessor::new();
    let workers: Vec<WorkerHandle> = (0..3)
        .map(|_| h.worker(processor.clone(), fast_worker()))
        .collect();
    let batch = h.submit(0..300).await;
    let status = h.until_completed(batch).await;
    assert_eq!(status.counts.completed, 300);
    assert_eq!(status.counts.total(), 300);
    assert_eq!(status.counts.created, 300);
    assert!((status.counts.percent() - 100.0).abs() < f64::EPSILON);
    for w in workers {
        w.shutdown().await;
    }
    // No worker runs: cancel stops everything pending.
    let cancelled = h.submit(1000..1010).await;
    let status = h
        .service
        .cancel(&h.tenant, cancelled)
        .await
        .expect("cancel");
    assert_eq!(status.counts.cancelled, 10);
    let status = h.until_completed(cancelled).await;
    assert_eq!(status.counts.pending, 0);
    h.until_announced(cancelled, 1).await;
    assert_eq!(h.completions(cancelled), 1);
    let other = TenantId::parse("someone-else").expect("tenant");
    assert_eq!(
        h.service
            .cancel(&other, cancelled)
            .await
            .map_err(|e| e.kind())
            .err(),
        Some(ErrorKind::NotFound)
    );
}

/// Guarantee 7: with several workers racing, `BatchCompleted` is published
/// exactly once per batch, and organization events are published.
pub async fn batch_completed_exactly_once(backend: TestBackend) {
    // Workers sweep every tenant: no other case may run meanwhile.
    let _exclusive = super::fixtures::exclusive().await;
    let h = Harness::new(backend);
    let processor = ScriptedProcessor::new();
    let workers: Vec<WorkerHandle> = (0..3)
        .map(|_| h.worker(processor.clone(), fast_worker()))
        .collect();
    let batches = vec![
        h.submit(0..40).await,
        h.submit(40..80).await,
        h.submit(80..81).await,
    ];
    for b in &batches {
        h.until_completed(*b).await;
        h.until_announced(*b, 1).await;
    }
    // Let sweepers run a few more rounds: they must not announce again.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for w in workers {
        w.shutdown().await;
    }
    // Completing an already completed batch again (a cancel does) announces nothing.
    for b in &batches {
        h.service
            .cancel(&h.tenant, *b)
            .await
            .expect("cancel a finished batch");
    }
    for b in &batches {
        assert_eq!(h.completions(*b), 1, "BatchCompleted once for {b}");
    }
    let events = h.events.events();
    let created = events
        .iter()
        .filter(|e| matches!(e, Event::OrganizationCreated { tenant, .. } if *tenant == h.tenant))
        .count();
    let processed = events
        .iter()
        .filter(|e| matches!(e, Event::OrganizationProcessed { tenant, .. } if *tenant == h.tenant))
        .count();
    assert_eq!(created, 81);
    assert_eq!(processed, 81);
}

/// Guarantee 8: a small batch of another tenant is not starved by a large one.
pub async fn tenants_are_interleaved(backend: TestBackend) {
    // Workers sweep every tenant: no other case may run meanwhile.
    let _exclusive = super::fixtures::exclusive().await;
    let big = Harness::new(backend);
    let small = Harness {
        service: big.service.clone(),
        events: big.events.clone(),
        tenant: TenantId::parse(format!("{}-b", big.tenant)).expect("tenant"),
        prefix: format!("{}b", big.prefix),
    };
    let big_batch = big.submit(0..600).await;
    let small_batch = small.submit(0..5).await;
    let processor = ScriptedProcessor::new();
    processor.set_delay(Duration::from_millis(2));
    let mut config = fast_worker().with_concurrency(2);
    config.claim_batch = 10;
    let worker = big.worker(processor.clone(), config);
    small.until_completed(small_batch).await;
    let big_status = big
        .service
        .backends()
        .repository
        .batch_status(&big.tenant, big_batch)
        .await
        .expect("status")
        .expect("exists");
    assert!(
        big_status.counts.completed < 300,
        "the small batch finished while the big one was under half done ({} of 600)",
        big_status.counts.completed
    );
    big.until_completed(big_batch).await;
    worker.shutdown().await;
}

/// Guarantee 9: on shutdown a worker stops claiming, lets short items finish,
/// releases the rest at once (not left leased) and reports it.
pub async fn graceful_shutdown_releases_in_flight(backend: TestBackend) {
    // Workers sweep every tenant: no other case may run meanwhile.
    let _exclusive = super::fixtures::exclusive().await;
    let h = Harness::new(backend);
    let processor = ScriptedProcessor::new();
    processor.block(&h.domain(0));
    let config = fast_worker()
        .with_shutdown_timeout(Duration::from_millis(300))
        .with_sweeper(false);
    let worker = h.worker(processor.clone(), config);
    let batch = h.submit(0..5).await;
    eventually(
        "the blocking item to start and the others to finish",
        DEADLINE,
        || async {
            let s = h
                .backends()
                .repository
                .batch_status(&h.tenant, batch)
                .await
                .ok()??;
            (processor.blocked_calls() == 1 && s.counts.completed == 4).then_some(())
        },
    )
    .await;
    let report = worker.shutdown().await;
    assert_eq!(report.released, 1);
    let page = h.items(batch, None).await;
    let item = &page.items[0];
    assert_eq!(
        item.status,
        ItemStatus::Pending,
        "released, not left leased"
    );
    assert_eq!(item.attempts, 0, "a released attempt does not count");
    assert_eq!(item.lease_until, None);
    // Another worker finishes it.
    processor.unblock();
    let worker = h.worker(processor.clone(), fast_worker());
    let status = h.until_completed(batch).await;
    assert_eq!(status.counts.completed, 5);
    worker.shutdown().await;
}
