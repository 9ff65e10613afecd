//! The `JobQueue` trait: a wake-up call for workers, never the truth.
//!
//! A message carries an item id; the worker claims the item in the
//! repository before doing anything. A message may be lost (the sweeper
//! re-enqueues), duplicated (the claim lets one through) or early (the claim
//! refuses an item that is not yet available).

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::{ItemId, TenantId, Timestamp};

/// One job message.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Job {
    /// The batch item to claim.
    pub item_id: ItemId,
    /// Its tenant, for fair interleaving.
    pub tenant: TenantId,
    /// Deliver no earlier than this (retry backoff); `None` = now.
    pub not_before: Option<Timestamp>,
}

/// A queue-specific handle to acknowledge one delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// A job taken from the queue, invisible to other consumers until it is
/// acknowledged or its visibility timeout passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The job.
    pub job: Job,
    /// Pass to [`JobQueue::ack`].
    pub receipt: Receipt,
}

/// How many messages a queue holds, as far as it can tell.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Ready to deliver.
    pub ready: u64,
    /// Waiting for their `not_before`.
    pub delayed: u64,
    /// Delivered and not yet acknowledged.
    pub in_flight: u64,
}

/// A durable or in-memory job queue.
///
/// The conformance suite in [`crate::testing`] checks every `# Behavior`
/// bullet below.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Adds many jobs in one round trip.
    ///
    /// # Behavior
    /// - `Ok` means every job is stored (on a durable queue: durably).
    /// - A job with `not_before` in the future is not delivered before then.
    /// - An empty slice is a no-op.
    async fn enqueue(&self, jobs: &[Job]) -> Result<()>;

    /// Takes up to `max` ready jobs, waiting up to `wait` for the first one.
    ///
    /// # Behavior
    /// - Returns an empty list after `wait` when nothing is ready (no error).
    /// - Returns as soon as at least one job is ready; does not busy-poll.
    /// - A delivered job is not delivered again until it is acknowledged or
    ///   the queue's visibility timeout passes; after that it is delivered again.
    /// - Concurrent dequeues never deliver the same job to two callers.
    /// - When several tenants have ready jobs, deliveries interleave tenants
    ///   rather than draining one tenant first.
    async fn dequeue(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>>;

    /// Acknowledges deliveries so they are never delivered again.
    ///
    /// # Behavior
    /// - Acknowledging an unknown or already acknowledged receipt is a no-op.
    /// - Acknowledged jobs do not accumulate in the queue.
    async fn ack(&self, receipts: &[Receipt]) -> Result<()>;

    /// How many jobs the queue holds.
    async fn depth(&self) -> Result<QueueDepth>;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<()>;
}
