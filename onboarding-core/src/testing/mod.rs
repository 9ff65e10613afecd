//! The conformance suite every backend runs, and what tests share.
//!
//! Each `# Behavior` bullet of [`OrgRepository`], [`JobQueue`] and [`Cache`]
//! is one case: a plain `pub async fn case(backend: TestBackend)` in
//! [`repository`], [`queue`] or [`cache`]; each guarantee of the design is
//! one case in [`guarantees`]. [`conformance_tests!`](crate::conformance_tests)
//! turns the groups a backend runs into one `#[test]` per case for its
//! `setup` function:
//!
//! ```text
//! // tests/conformance.rs of a queue adapter, whose dev-dependencies
//! // enable `onboarding-core/testing`.
//! async fn setup() -> onboarding_core::testing::TestBackend {
//!     let queue = /* a fresh queue with its own name or key prefix */;
//!     onboarding_core::testing::TestBackend::memory()
//!         .with_queue(queue)
//!         .with_cleanup(/* a Cleanup that deletes the queue */)
//! }
//!
//! onboarding_core::conformance_tests!(setup, [queue, guarantees]);
//! ```
//!
//! The groups are `repository`, `queue`, `cache` and `guarantees` (the
//! guarantees of ARCHITECTURE.md, run through the ingest service and real
//! workers), and `keys` ([`KeyStore`](crate::keys::KeyStore)), `webhooks`
//! ([`WebhookStore`](crate::webhooks::WebhookStore) and
//! [`DeliveryLog`](crate::webhooks::DeliveryLog)) and `limits`
//! ([`RateLimiter`](crate::limits::RateLimiter) and
//! [`BacklogLedger`](crate::limits::BacklogLedger): two handles on one store,
//! as two processes have); a backend
//! runs those of the traits it implements, plus `guarantees`, and leaves the
//! other fields of its [`TestBackend`] in memory.
//!
//! Beside the cases, tests of every crate share: [`eventually`] (poll with
//! a deadline), [`requests`] (submit requests), [`fixtures`] (builders and
//! assertions on the traits), [`doubles`] (backends whose calls fail, hang
//! or wait at a gate, for error paths) and [`namespace`] (a name per test and
//! a [`Cleanup`] guard that removes what the test made).
//!
//! # What `setup` must return
//!
//! `setup` is called once per case, and cases run in parallel.
//!
//! - **Repository**: may be shared by every case (one database for the
//!   whole run). Cases never flush it: each works in its own random tenant
//!   with random domains and asserts only on its own rows. The few
//!   operations that act on every tenant at once (`sweep`,
//!   `complete_open_batches`) are serialized by a lock inside the suite,
//!   so no two cases of one process disturb each other; do not point two
//!   processes running the suite at the same database at the same time.
//!   `unannounced_batches` and `prune` cases keep to their own time range
//!   in the past (the 1980s and 1990s) so they never see or delete other
//!   cases' batches. Cases clean up what would disturb later cases (they
//!   cancel their open batches, finish their leases, announce or prune
//!   their past batches); the rows themselves stay until the database goes.
//! - **Queue**: must be a **fresh, isolated queue on every call** (its own
//!   queue name, key prefix or in-memory instance) because queue cases count
//!   every job they dequeue. Its visibility timeout must be **between 500 ms
//!   and 2 s**: the redelivery case waits for it (polling, up to 10 s).
//!   Cases may leave delayed jobs behind.
//! - **Cache**: may be shared: cases use random keys.
//! - **Clean-up**: what `setup` made for the case (a database, a key
//!   prefix) goes in a [`Cleanup`] given to [`TestBackend::with_cleanup`];
//!   it runs when the case ends, pass or fail, after the case's runtime
//!   stopped (so no task of the case still uses it).
//!
//! [`OrgRepository`]: crate::OrgRepository
//! [`JobQueue`]: crate::JobQueue
//! [`Cache`]: crate::Cache

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::keys::KeyStore;
use crate::limits::{BacklogLedger, LocalRateLimiter, MemoryLedger, RateLimiter};
use crate::memory::{MemoryCache, MemoryKeyStore, MemoryQueue, MemoryRepository, MemoryWebhooks};
use crate::queue::JobQueue;
use crate::repository::OrgRepository;
use crate::webhooks::{DeliveryLog, WebhookStore};

pub mod cache;
pub mod doubles;
pub mod fixtures;
pub mod guarantees;
pub mod imports;
pub mod keys;
pub mod limits;
pub mod namespace;
pub mod process;
pub mod queue;
pub mod repository;
pub mod requests;
pub mod webhooks;

mod poll;

pub use namespace::Cleanup;
pub use poll::{eventually, eventually_every, Progress, POLL_EVERY};
pub use process::proc_status_kib;

/// The backends one conformance case runs against.
///
/// See the [module documentation](self) for what each field must satisfy
/// (a fresh queue per call with a visibility timeout of 500 ms to 2 s).
#[derive(Clone)]
pub struct TestBackend {
    /// The repository under test (may be shared between cases).
    pub repository: Arc<dyn OrgRepository>,
    /// A queue of its own for this case.
    pub queue: Arc<dyn JobQueue>,
    /// The cache under test (may be shared between cases).
    pub cache: Arc<dyn Cache>,
    /// Tenants and API keys (may be shared between cases).
    pub keys: Arc<dyn KeyStore>,
    /// Webhook endpoints (may be shared between cases).
    pub endpoints: Arc<dyn WebhookStore>,
    /// The webhook delivery log (may be shared between cases).
    pub deliveries: Arc<dyn DeliveryLog>,
    /// Two handles on one rate store, each enforcing
    /// [`limits::CASE_RATE`] (keys are random: may be shared).
    pub limiters: [Arc<dyn RateLimiter>; 2],
    /// Two handles on one backlog ledger, **fresh for the case**.
    pub ledgers: [Arc<dyn BacklogLedger>; 2],
    cleanups: Vec<Arc<Cleanup>>,
}

impl TestBackend {
    /// The visibility timeout of the queues [`TestBackend::memory`] makes,
    /// and a good one for adapters' per-case queues (the suite wants 0.5-2 s).
    pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(1);

    /// These backends, with nothing to clean up.
    pub fn new(
        repository: Arc<dyn OrgRepository>,
        queue: Arc<dyn JobQueue>,
        cache: Arc<dyn Cache>,
    ) -> Self {
        let webhooks = Arc::new(MemoryWebhooks::new());
        let limiter = Arc::new(LocalRateLimiter::new(limits::CASE_RATE));
        let ledger = Arc::new(MemoryLedger::default());
        Self {
            repository,
            queue,
            cache,
            keys: Arc::new(MemoryKeyStore::new()),
            endpoints: webhooks.clone(),
            deliveries: webhooks,
            limiters: [limiter.clone(), limiter],
            ledgers: [ledger.clone(), ledger],
            cleanups: Vec::new(),
        }
    }

    /// A fresh memory repository, memory queue (visibility timeout
    /// [`TestBackend::VISIBILITY_TIMEOUT`]) and memory cache: the stand-ins
    /// for the traits an adapter does not implement.
    pub fn memory() -> Self {
        Self::new(
            Arc::new(MemoryRepository::new()),
            Arc::new(MemoryQueue::new(Self::VISIBILITY_TIMEOUT)),
            Arc::new(MemoryCache::new(100_000)),
        )
    }

    /// These backends with `repository` instead.
    pub fn with_repository(mut self, repository: Arc<dyn OrgRepository>) -> Self {
        self.repository = repository;
        self
    }

    /// These backends with `queue` instead.
    pub fn with_queue(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.queue = queue;
        self
    }

    /// These backends with `cache` instead.
    pub fn with_cache(mut self, cache: Arc<dyn Cache>) -> Self {
        self.cache = cache;
        self
    }

    /// These backends with `keys` instead.
    pub fn with_key_store(mut self, keys: Arc<dyn KeyStore>) -> Self {
        self.keys = keys;
        self
    }

    /// These backends with these webhook stores instead.
    pub fn with_webhooks(
        mut self,
        endpoints: Arc<dyn WebhookStore>,
        deliveries: Arc<dyn DeliveryLog>,
    ) -> Self {
        self.endpoints = endpoints;
        self.deliveries = deliveries;
        self
    }

    /// These backends with these limiters and ledgers instead (two handles
    /// on one store each, as two processes would have).
    pub fn with_limits(
        mut self,
        limiters: [Arc<dyn RateLimiter>; 2],
        ledgers: [Arc<dyn BacklogLedger>; 2],
    ) -> Self {
        self.limiters = limiters;
        self.ledgers = ledgers;
        self
    }

    /// Runs `cleanup` when the case ends (see the [module documentation](self)).
    pub fn with_cleanup(mut self, cleanup: Cleanup) -> Self {
        self.cleanups.push(Arc::new(cleanup));
        self
    }
}

impl std::fmt::Debug for TestBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestBackend").finish_non_exhaustive()
    }
}

/// Longest a case may run before [`run_case`] fails it instead of hanging.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(300);

/// Runs one conformance case: `case(setup().await)` on a fresh
/// multi-thread tokio runtime (2 worker threads), so the generated tests
/// need no tokio in the caller. The backend's clean-ups run once the case
/// is over and its runtime has stopped, also when the case fails.
///
/// # Panics
///
/// When the runtime cannot be built, when `setup` or `case` panics, or when
/// they run longer than [`CASE_TIMEOUT`].
pub fn run_case<S, SetupFuture, C, CaseFuture>(setup: S, case: C)
where
    S: FnOnce() -> SetupFuture,
    SetupFuture: Future<Output = TestBackend>,
    C: FnOnce(TestBackend) -> CaseFuture,
    CaseFuture: Future<Output = ()>,
{
    init_logging();
    // Declared before the runtime, so dropped after it, also while unwinding.
    let mut cleanups = Vec::new();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("building the tokio runtime of a conformance case failed");
    runtime.block_on(async {
        tokio::time::timeout(CASE_TIMEOUT, async {
            let mut backend = setup().await;
            cleanups = std::mem::take(&mut backend.cleanups);
            case(backend).await;
        })
        .await
        .expect("the conformance case did not finish within CASE_TIMEOUT");
    });
    drop(runtime);
    drop(cleanups);
}

/// Sends `tracing` output (warnings and up, or `ONBOARDING_TEST_LOG`) to the
/// test's captured output, so a failing case shows what the engine saw.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ONBOARDING_TEST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Fails when another case of this process installed it first: fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// The single list of conformance cases, per group.
///
/// Adding a case: write `pub async fn name(backend: TestBackend)` in the
/// group's module and add `name` to its list here (one line).
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    (repository, $setup:path) => {
        $crate::__conformance_tests! {
            $setup, repository, [
                store_is_all_or_nothing,
                store_inserts_new_domains,
                store_updates_changed_domains,
                store_keeps_identical_domains_unchanged,
                store_skips_existing_domains,
                store_completes_skipped_and_already_processed_items,
                store_makes_organization_pending_with_its_item,
                store_replays_same_key_and_hash,
                store_rejects_same_key_with_other_hash,
                store_idempotency_holds_under_concurrency,
                store_completes_batch_when_nothing_is_pending,
                store_stores_large_submissions,
                claim_marks_items_processing,
                claim_leaves_out_unclaimable_items,
                claim_takes_over_expired_leases,
                claim_is_exclusive_under_concurrency,
                extend_leases_only_for_matching_tokens,
                finish_is_fenced_by_lease_token,
                finish_completed_completes_item_and_organization,
                finish_retry_returns_item_to_pending,
                error_history_keeps_the_last_attempts,
                finish_failed_moves_item_to_dead_letter,
                release_returns_items_to_pending,
                sweep_returns_stale_pending_items_once,
                sweep_returns_retried_items_after_stale_after,
                sweep_returns_expired_leases_unchanged,
                sweep_never_returns_cancelled_items,
                sweep_respects_limit,
                sweep_reaches_every_open_batch,
                sweep_reaches_every_item_of_a_large_batch,
                one_sweep_finds_a_lost_item_deep_in_a_large_batch,
                complete_batches_marks_finished_batches_once,
                complete_open_batches_completes_each_finished_batch_once,
                complete_batches_once_under_concurrency,
                unannounced_batches_lists_completed_unannounced,
                mark_announced_sets_announced_at_on_completed_batches,
                cancel_batch_of_unknown_or_foreign_batch_is_none,
                cancel_batch_cancels_pending_items,
                retry_failed_of_unknown_or_foreign_batch_is_none,
                cancelled_calls_leave_the_repository_usable,
                retry_failed_redrives_failed_items,
                batch_status_counts_exactly,
                batch_status_of_unknown_or_foreign_batch_is_none,
                list_items_of_unknown_or_foreign_batch_is_none,
                list_items_pages_without_repeats_or_gaps,
                list_batches_pages_newest_first_for_the_tenant,
                list_batches_filters_by_state_and_created_after,
                throughput_counts_the_tenants_finished_items_per_bucket,
                throughput_counts_arrivals_and_forgets_pruned_batches,
                retry_items_of_unknown_or_foreign_batch_is_none,
                retry_items_redrives_only_listed_failed_items,
                organization_by_domain_finds_stored_rows,
                prune_deletes_only_batches_completed_before,
                repository_ping_answers,
                store_update_of_another_tenants_domain_leaves_it_untouched,
                store_skip_of_another_tenants_domain_leaves_it_untouched,
                store_outcomes_follow_the_tenants_own_row,
                cancel_and_retry_touch_only_the_tenants_own_rows,
                prune_of_one_tenants_batch_keeps_the_others,
                tenants_upsert_the_same_domains_concurrently,
                claim_reads_the_submitting_tenants_organization,
                idempotency_keys_and_tenants_compare_exactly,
                organization_versions_record_every_write,
                list_organizations_pages_by_domain_for_the_tenant,
                delete_organization_hides_it_from_reads,
                submission_restores_a_deleted_organization,
                organizations_of_another_tenant_stay_out_of_reach,
                deleted_organizations_items_finish_and_prune_keeps_them,
                claim_carries_the_batchs_trace_parent,
            ]
        }
    };
    (queue, $setup:path) => {
        $crate::__conformance_tests! {
            $setup, queue, [
                enqueue_empty_is_noop,
                enqueue_then_dequeue_returns_jobs,
                dequeue_on_empty_queue_returns_empty_after_wait,
                dequeue_returns_early_when_a_job_arrives,
                delayed_job_is_not_delivered_before_not_before,
                unacked_delivery_is_redelivered_after_visibility_timeout,
                ack_of_unknown_receipt_is_noop,
                dequeue_interleaves_tenants,
                concurrent_dequeues_never_share_a_delivery,
                depth_counts_ready_delayed_and_in_flight,
                queue_ping_answers,
            ]
        }
    };
    (guarantees, $setup:path) => {
        $crate::__conformance_tests! {
            $setup, guarantees, [
                submission_is_all_or_nothing,
                zombie_worker_is_fenced_off,
                lost_messages_are_swept,
                dead_workers_items_are_taken_over,
                retries_and_dead_letters,
                duplicates_follow_the_policy,
                counts_are_exact_and_cancel_stops_pending,
                batch_completed_exactly_once,
                tenants_are_interleaved,
                graceful_shutdown_releases_in_flight,
            ]
        }
    };
    (imports, $setup:path) => {
        $crate::__conformance_tests! {
            $setup, imports, [
                import_is_invisible_until_finished,
                import_finish_creates_one_batch,
                import_refuses_duplicate_domains,
                import_abort_keeps_nothing,
                import_seal_hands_the_upload_over,
                import_seal_answers_an_earlier_key,
                import_key_in_progress_conflicts,
                import_replays_finished_keys,
                import_staging_is_pruned_with_its_batch,
                import_keeps_the_trace_parent,
                import_finish_matches_store_submission,
            ]
        }
    };
    (keys, $setup:path) => {
        $crate::__conformance_tests! {
            $setup, keys, [
                create_tenant_lists_it,
                create_tenant_twice_is_conflict,
                create_key_registers_its_tenant,
                create_key_is_found_and_listed,
                create_key_with_taken_prefix_or_id_is_conflict,
                keys_lists_one_tenant_or_all,
                find_key_of_unknown_or_revoked_is_none,
                revoke_key_by_id_or_prefix,
                revoke_key_twice_keeps_the_first_time,
                revoke_key_of_unknown_or_foreign_is_none,
                rotate_key_replaces_the_key,
                rotate_key_of_unknown_revoked_or_foreign_is_none,
                key_store_ping_answers,
            ]
        }
    };
    (webhooks, $setup:path) => {
        $crate::__conformance_tests! {
            $setup, webhooks, [
                save_endpoint_reads_back,
                save_endpoint_again_replaces_it,
                save_endpoint_of_another_tenant_is_conflict,
                endpoints_lists_only_the_tenants_own,
                endpoint_of_unknown_or_foreign_is_none,
                delete_endpoint_only_deletes_the_tenants_own,
                add_deliveries_lists_them_pending,
                add_deliveries_skips_an_event_already_logged,
                add_deliveries_with_a_lease_is_not_claimed_before_it_ends,
                claim_due_claims_each_delivery_once,
                claim_due_leaves_out_undue_and_finished_deliveries,
                claim_due_is_exclusive_under_concurrency,
                claim_due_takes_over_expired_claims,
                claim_delivery_starts_a_new_round,
                claim_delivery_of_unknown_or_foreign_is_none,
                claim_delivery_of_a_live_claim_is_conflict,
                record_attempt_with_the_current_lease_updates_the_delivery,
                record_attempt_with_a_stale_lease_changes_nothing,
                deliveries_filters_by_tenant_endpoint_batch_and_limit,
                delivery_of_unknown_or_foreign_is_none,
                prune_deletes_only_finished_deliveries_changed_before,
            ]
        }
    };
    (limits, $setup:path) => {
        $crate::__conformance_tests! {
            $setup, limits, [
                rate_limiter_allows_the_burst_then_limits,
                rate_limiter_keys_do_not_share,
                rate_limiter_allows_again_after_the_wait,
                rate_limiter_is_shared_by_every_handle,
                ledger_without_a_reading_answers_none,
                ledger_admits_within_max_and_counts_it,
                ledger_refuses_over_max_and_counts_nothing,
                ledger_admits_anything_when_nothing_waits,
                ledger_unknown_depth_answers_unknown,
                ledger_tells_whether_the_reading_is_fresh,
                ledger_record_starts_a_fresh_count,
            ]
        }
    };
    (cache, $setup:path) => {
        $crate::__conformance_tests! {
            $setup, cache, [
                get_missing_key_is_none,
                set_then_get_returns_value,
                set_value_expires_after_ttl,
                set_replaces_value_and_ttl,
                delete_removes_keys_and_ignores_unknown,
                cache_ping_answers,
            ]
        }
    };
}

/// Emits one `#[test]` per case of one group, in the current module.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_tests {
    ($setup:path, $group:ident, [$($case:ident),* $(,)?]) => {
        $(
            #[test]
            fn $case() {
                $crate::testing::run_case($setup, $crate::testing::$group::$case)
            }
        )*
    };
}

/// Generates the conformance cases of the named groups as plain `#[test]`
/// functions in a module named `conformance`; without a list, every group.
///
/// The groups: `repository`, `queue`, `cache`, `imports`, `keys`, `webhooks`,
/// `limits` (one case per `# Behavior` bullet of the traits) and `guarantees` (ARCHITECTURE.md's guarantees through the
/// service and real workers). A backend names the traits it implements,
/// plus `guarantees`; the other fields of its [`TestBackend`](crate::testing::TestBackend)
/// stay in memory.
///
/// `$setup` is the path of an `async fn() -> TestBackend`, called once per
/// case. It is resolved from inside the generated module, which imports
/// everything of the calling module (`use super::*`): pass a name in scope
/// at the call site (`setup`) or a `crate::` path, not `self::` or `super::`.
///
/// The caller needs no imports and no tokio: each test builds its own
/// runtime with [`testing::run_case`](crate::testing::run_case). Tests are
/// named `conformance::<group>::<case>`, e.g.
/// `conformance::repository::claim_is_exclusive_under_concurrency`.
///
/// ```text
/// async fn setup() -> onboarding_core::testing::TestBackend { /* .. */ }
/// onboarding_core::conformance_tests!(setup, [queue, cache, guarantees]);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($setup:path $(,)?) => {
        $crate::conformance_tests!($setup, [repository, queue, cache, guarantees]);
    };
    ($setup:path, [$($group:ident),+ $(,)?]) => {
        #[allow(unused_imports, dead_code, missing_docs, unreachable_pub)]
        mod conformance {
            use super::*;

            async fn __conformance_setup() -> $crate::testing::TestBackend {
                $setup().await
            }

            $(
                mod $group {
                    $crate::__conformance_cases!($group, super::__conformance_setup);
                }
            )+
        }
    };
}
