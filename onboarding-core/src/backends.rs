//! `Backends`: the set of trait objects the ingest service and the worker share.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::events::EventSink;
use crate::memory::{MemoryCache, MemoryQueue, MemoryRepository, TracingEventSink};
use crate::model::BatchId;
use crate::queue::JobQueue;
use crate::repository::OrgRepository;

/// The backends one deployment uses. Cheap to clone.
#[derive(Clone)]
pub struct Backends {
    /// Organizations, batches and items: the source of truth.
    pub repository: Arc<dyn OrgRepository>,
    /// Wake-up calls for workers.
    pub queue: Arc<dyn JobQueue>,
    /// Best-effort cache of batch status and organization lookups.
    pub cache: Arc<dyn Cache>,
    /// Where events go.
    pub events: Arc<dyn EventSink>,
}

impl Backends {
    /// Builds a set from its parts.
    pub fn new(
        repository: Arc<dyn OrgRepository>,
        queue: Arc<dyn JobQueue>,
        cache: Arc<dyn Cache>,
        events: Arc<dyn EventSink>,
    ) -> Self {
        Self {
            repository,
            queue,
            cache,
            events,
        }
    }

    /// Drops the cached status of these batches (best effort: entries expire
    /// on their own), so readers see fresh counts.
    pub async fn invalidate_batch_status(&self, batches: impl IntoIterator<Item = BatchId>) {
        let keys: Vec<String> = batches
            .into_iter()
            .collect::<std::collections::HashSet<_>>()
            .into_iter()
            .map(batch_status_cache_key)
            .collect();
        if keys.is_empty() {
            return;
        }
        if let Err(e) = self.cache.delete(&keys).await {
            tracing::debug!(error = %e, "cache invalidation failed; entries expire on their own");
        }
    }

    /// Everything in process memory (events logged with `tracing`).
    pub fn memory() -> Self {
        Self::new(
            Arc::new(MemoryRepository::new()),
            Arc::new(MemoryQueue::new(Duration::from_secs(30))),
            Arc::new(MemoryCache::default()),
            Arc::new(TracingEventSink),
        )
    }
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends").finish_non_exhaustive()
    }
}

/// The cache key of a batch's status. Workers delete it when counts change.
pub(crate) fn batch_status_cache_key(batch: BatchId) -> String {
    format!("onboarding:batch-status:{batch}")
}
