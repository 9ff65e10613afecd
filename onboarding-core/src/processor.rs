//! The `Processor` trait: the onboarding work done for each organization.

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{BatchId, Change, ItemId, Organization, TenantId};

/// What a processor is given for one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    /// The item.
    pub item_id: ItemId,
    /// Its batch.
    pub batch_id: BatchId,
    /// The batch owner.
    pub tenant: TenantId,
    /// This attempt's number, 1-based.
    pub attempt: u32,
    /// What the submission's upsert did.
    pub change: Change,
    /// The organization as stored when the item was claimed.
    pub organization: Organization,
}

/// How an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessError {
    /// May succeed later: retried with backoff while attempts remain.
    Retryable(String),
    /// Will never succeed: straight to the dead-letter list.
    Permanent(String),
}

impl ProcessError {
    /// The message.
    pub fn message(&self) -> &str {
        match self {
            Self::Retryable(m) | Self::Permanent(m) => m,
        }
    }
}

/// The work done for each organization: provisioning, a call to a CRM, …
///
/// Processing is at-least-once: an attempt can be repeated when a worker dies
/// after the work and before recording it, so side effects should be
/// idempotent (keyed by `item_id`). Long-running work is fine: the engine
/// renews the lease while `process` runs.
#[async_trait]
pub trait Processor: Send + Sync + 'static {
    /// Processes one item.
    async fn process(&self, item: &WorkItem) -> Result<(), ProcessError>;
}

/// A processor that does nothing and always succeeds (benchmarks, tests).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopProcessor;

#[async_trait]
impl Processor for NoopProcessor {
    async fn process(&self, _item: &WorkItem) -> Result<(), ProcessError> {
        Ok(())
    }
}

/// A [`Processor`] made of an async function of the item (given a clone of
/// it), for work that needs no state of its own:
///
/// ```
/// use onboarding_core::processor_fn;
/// let welcome = processor_fn(|item| async move {
///     println!("welcome aboard, {}", item.organization.name);
///     Ok(())
/// });
/// # let _ = welcome;
/// ```
pub fn processor_fn<F, Fut>(process: F) -> Arc<dyn Processor>
where
    F: Fn(WorkItem) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ProcessError>> + Send + 'static,
{
    Arc::new(FnProcessor(process))
}

struct FnProcessor<F>(F);

#[async_trait]
impl<F, Fut> Processor for FnProcessor<F>
where
    F: Fn(WorkItem) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), ProcessError>> + Send + 'static,
{
    async fn process(&self, item: &WorkItem) -> Result<(), ProcessError> {
        (self.0)(item.clone()).await
    }
}
