//! Test doubles for the error paths a real server cannot produce on
//! demand: a [`Double`] wraps a real backend (usually an in-memory one) and
//! forwards every call to it, unless its hook makes that call fail, hang or
//! wait at a gate. It counts calls per method.
//!
//! ```
//! use std::sync::Arc;
//! use onboarding_core::memory::MemoryQueue;
//! use onboarding_core::testing::doubles::{unavailable, Action, Double};
//!
//! // The second `depth` call fails; everything else reaches the memory queue.
//! let queue = Double::new(Arc::new(MemoryQueue::default())).with_hook(|call| {
//!     if call.method == "depth" && call.number == 2 {
//!         Action::Fail(unavailable())
//!     } else {
//!         Action::Forward
//!     }
//! });
//! assert_eq!(queue.calls("depth"), 0);
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::events::{Event, EventSink};
use crate::model::{BatchId, BatchStatus, Domain, ItemId, Organization, TenantId, Timestamp};
use crate::organizations::{OrganizationPage, OrganizationQuery, OrganizationVersion};
use crate::queue::{Delivery, Job, JobQueue, QueueDepth, Receipt};
use crate::repository::{
    BatchPage, BatchQuery, ClaimRequest, ClaimedItem, Finish, ItemPage, ItemQuery, Lease,
    OrgRepository, StoreResult, Submission, ThroughputBucket,
};

/// What a [`Double`] does with one call.
#[derive(Debug)]
pub enum Action {
    /// Hand the call to the wrapped backend.
    Forward,
    /// Answer this error instead.
    Fail(Error),
    /// Never answer: the caller's own timeout (or cancellation) ends the call.
    Hang,
    /// Wait for a permit of this gate (and keep it), then forward; once the
    /// gate is closed ([`Semaphore::close`]), forward at once.
    Gate(Arc<Semaphore>),
}

/// One call, as a [`Double`]'s hook sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct Call<'a> {
    /// The trait method's name, e.g. `"store_submission"`.
    pub method: &'static str,
    /// 1 for the first call of this method on this double, 2 for the next, ...
    pub number: u64,
    /// The events of an [`EventSink::publish`] call; empty for other calls.
    pub events: &'a [Event],
}

type Hook = Arc<dyn Fn(&Call<'_>) -> Action + Send + Sync>;

/// A backend that forwards to `inner`, as its hook decides call by call.
///
/// Implements [`OrgRepository`], [`JobQueue`], [`Cache`] or [`EventSink`]
/// when `inner` does.
pub struct Double<T: ?Sized> {
    inner: Arc<T>,
    hook: Mutex<Hook>,
    calls: Mutex<HashMap<&'static str, u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl<T: ?Sized> Double<T> {
    /// A double that forwards every call to `inner`.
    pub fn new(inner: Arc<T>) -> Self {
        Self {
            inner,
            hook: Mutex::new(Arc::new(|_: &Call<'_>| Action::Forward)),
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// A double whose every call fails with [`unavailable`]: a backend that is down.
    pub fn down(inner: Arc<T>) -> Self {
        Self::new(inner).with_hook(|_| Action::Fail(unavailable()))
    }

    /// A double whose every call hangs: a backend that never answers.
    pub fn hanging(inner: Arc<T>) -> Self {
        Self::new(inner).with_hook(|_| Action::Hang)
    }

    /// This double with `hook` deciding every call.
    pub fn with_hook(self, hook: impl Fn(&Call<'_>) -> Action + Send + Sync + 'static) -> Self {
        self.set_hook(hook);
        self
    }

    /// Replaces the hook; calls already waiting keep the action they got.
    pub fn set_hook(&self, hook: impl Fn(&Call<'_>) -> Action + Send + Sync + 'static) {
        *lock(&self.hook) = Arc::new(hook);
    }

    /// How many calls of `method` this double has seen (forwarded or not).
    pub fn calls(&self, method: &str) -> u64 {
        lock(&self.calls).get(method).copied().unwrap_or(0)
    }

    /// The wrapped backend.
    pub fn inner(&self) -> &Arc<T> {
        &self.inner
    }

    /// Counts the call and does what the hook says: `Ok` means forward.
    async fn intercept(&self, method: &'static str, events: &[Event]) -> Result<()> {
        let number = {
            let mut calls = lock(&self.calls);
            let n = calls.entry(method).or_default();
            *n += 1;
            *n
        };
        let hook = lock(&self.hook).clone();
        match hook(&Call {
            method,
            number,
            events,
        }) {
            Action::Forward => Ok(()),
            Action::Fail(error) => Err(error),
            Action::Hang => std::future::pending().await,
            Action::Gate(gate) => {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                Ok(())
            }
        }
    }
}

impl<T: ?Sized> std::fmt::Debug for Double<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Double")
            .field("calls", &*lock(&self.calls))
            .finish_non_exhaustive()
    }
}

/// The error of a backend that cannot be reached: [`crate::ErrorKind::Unavailable`],
/// retryable, with a connection-refused source naming a host that must
/// never reach a client.
pub fn unavailable() -> Error {
    Error::unavailable(
        "cannot reach the backend",
        std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused (secret-host:5432)",
        ),
    )
}

/// Implements `$trait` for `Double<T: $trait>`: each method asks the hook,
/// then forwards.
macro_rules! forward {
    ($trait:ident { $(fn $method:ident($($arg:ident: $ty:ty),*) -> $out:ty;)* }) => {
        #[async_trait]
        impl<T: $trait + ?Sized> $trait for Double<T> {
            $(
                async fn $method(&self, $($arg: $ty),*) -> Result<$out> {
                    self.intercept(stringify!($method), &[]).await?;
                    self.inner.$method($($arg),*).await
                }
            )*
        }
    };
}

forward!(OrgRepository {
    fn store_submission(submission: &Submission) -> StoreResult;
    fn claim_items(request: &ClaimRequest) -> Vec<ClaimedItem>;
    fn extend_leases(leases: &[Lease], now: Timestamp, lease_until: Timestamp) -> Vec<ItemId>;
    fn finish_items(finishes: &[Finish], now: Timestamp, stale_after: Duration) -> Vec<ItemId>;
    fn release_items(leases: &[Lease], now: Timestamp) -> Vec<Job>;
    fn sweep(now: Timestamp, pending_due: Timestamp, stale_after: Duration, limit: u32) -> Vec<Job>;
    fn complete_batches(batches: &[BatchId], now: Timestamp) -> Vec<BatchStatus>;
    fn complete_open_batches(now: Timestamp, limit: u32) -> Vec<BatchStatus>;
    fn unannounced_batches(completed_before: Timestamp, limit: u32) -> Vec<BatchStatus>;
    fn mark_announced(batches: &[BatchId], now: Timestamp) -> ();
    fn cancel_batch(tenant: &TenantId, batch: BatchId, now: Timestamp) -> Option<BatchStatus>;
    fn retry_failed(tenant: &TenantId, batch: BatchId, now: Timestamp) -> Option<Vec<Job>>;
    fn retry_items(tenant: &TenantId, batch: BatchId, items: &[ItemId], now: Timestamp) -> Option<Vec<Job>>;
    fn list_batches(tenant: &TenantId, query: &BatchQuery) -> BatchPage;
    fn batch_status(tenant: &TenantId, batch: BatchId) -> Option<BatchStatus>;
    fn list_items(tenant: &TenantId, batch: BatchId, query: &ItemQuery) -> Option<ItemPage>;
    fn throughput(tenant: &TenantId, since: Timestamp, bucket_seconds: u32) -> Vec<ThroughputBucket>;
    fn organization_by_domain(tenant: &TenantId, domain: &Domain) -> Option<Organization>;
    fn list_organizations(tenant: &TenantId, query: &OrganizationQuery) -> OrganizationPage;
    fn organization_versions(tenant: &TenantId, domain: &Domain) -> Option<Vec<OrganizationVersion>>;
    fn delete_organization(tenant: &TenantId, domain: &Domain, now: Timestamp) -> bool;
    fn prune(finished_before: Timestamp, limit: u32) -> u64;
    fn ping() -> ();
});

forward!(JobQueue {
    fn enqueue(jobs: &[Job]) -> ();
    fn dequeue(max: usize, wait: Duration) -> Vec<Delivery>;
    fn ack(receipts: &[Receipt]) -> ();
    fn depth() -> QueueDepth;
    fn ping() -> ();
});

forward!(Cache {
    fn get(key: &str) -> Option<Vec<u8>>;
    fn set(key: &str, value: &[u8], ttl: Duration) -> ();
    fn delete(keys: &[String]) -> ();
    fn ping() -> ();
});

#[async_trait]
impl<T: EventSink + ?Sized> EventSink for Double<T> {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        self.intercept("publish", events).await?;
        self.inner.publish(events).await
    }
}
