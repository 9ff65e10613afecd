//! Events and the `EventSink` trait they go to.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{BatchCounts, BatchId, Domain, ItemId, OrganizationId, TenantId, Timestamp};

/// Something that happened to an organization or a batch.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Event {
    /// A submission inserted a new organization.
    OrganizationCreated {
        /// Owner of the batch.
        tenant: TenantId,
        /// The batch.
        batch_id: BatchId,
        /// The organization.
        organization_id: OrganizationId,
        /// Its domain.
        domain: Domain,
    },
    /// A submission changed an existing organization.
    OrganizationUpdated {
        /// Owner of the batch.
        tenant: TenantId,
        /// The batch.
        batch_id: BatchId,
        /// The organization.
        organization_id: OrganizationId,
        /// Its domain.
        domain: Domain,
    },
    /// Processing of one item succeeded.
    OrganizationProcessed {
        /// Owner of the batch.
        tenant: TenantId,
        /// The batch.
        batch_id: BatchId,
        /// The item.
        item_id: ItemId,
        /// The organization.
        organization_id: OrganizationId,
        /// Its domain.
        domain: Domain,
    },
    /// One item failed for good (it is in the dead-letter list).
    OrganizationFailed {
        /// Owner of the batch.
        tenant: TenantId,
        /// The batch.
        batch_id: BatchId,
        /// The item.
        item_id: ItemId,
        /// The organization.
        organization_id: OrganizationId,
        /// Its domain.
        domain: Domain,
        /// The last error.
        error: String,
    },
    /// Every item of a batch reached a terminal status. Emitted once per
    /// completion (a re-drive of failed items starts a new one).
    BatchCompleted {
        /// Owner of the batch.
        tenant: TenantId,
        /// The batch.
        batch_id: BatchId,
        /// Final counts.
        counts: BatchCounts,
        /// When the last item finished.
        completed_at: Timestamp,
    },
}

impl Event {
    /// The event's type name, as serialized in `type`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::OrganizationCreated { .. } => "OrganizationCreated",
            Self::OrganizationUpdated { .. } => "OrganizationUpdated",
            Self::OrganizationProcessed { .. } => "OrganizationProcessed",
            Self::OrganizationFailed { .. } => "OrganizationFailed",
            Self::BatchCompleted { .. } => "BatchCompleted",
        }
    }
}

/// Where events go (a log, a message bus, webhooks).
#[async_trait]
pub trait EventSink: Send + Sync + 'static {
    /// Publishes events in order.
    ///
    /// # Behavior
    /// - An error means the events may not have been delivered; the caller
    ///   retries `BatchCompleted` later (so a sink sees it at least once, and
    ///   exactly once when nothing crashes between publish and bookkeeping).
    async fn publish(&self, events: &[Event]) -> Result<()>;
}
