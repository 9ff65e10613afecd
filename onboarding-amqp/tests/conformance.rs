//! The core conformance suite with the RabbitMQ queue, twice: the whole
//! suite on classic queues, and the queue and guarantee cases on quorum
//! queues (the repository and cache cases do not touch the queue). Every
//! case gets a fresh queue (its own name prefix, deleted by the broker 5
//! minutes after its last use); the repository and the cache are the
//! in-memory ones, shared by every case.

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use onboarding_amqp::{AmqpConfig, AmqpQueue, QueueType};
use onboarding_core::memory::{MemoryCache, MemoryRepository};
use onboarding_core::testing::TestBackend;
use onboarding_core::JobQueue;

/// Visibility timeout of the per-case queues (the suite wants 0.5-2 s).
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(1);

/// The shared in-memory repository and cache, with `queue`.
fn backend(queue: Arc<dyn JobQueue>) -> TestBackend {
    static SHARED: OnceLock<(Arc<MemoryRepository>, Arc<MemoryCache>)> = OnceLock::new();
    let (repository, cache) = SHARED
        .get_or_init(|| {
            (
                Arc::new(MemoryRepository::new()),
                Arc::new(MemoryCache::new(100_000)),
            )
        })
        .clone();
    TestBackend {
        repository,
        queue,
        cache,
    }
}

async fn connect(config: AmqpConfig) -> AmqpQueue {
    AmqpQueue::connect(config)
        .await
        .expect("the RabbitMQ broker must be running (ONBOARDING_TEST_AMQP_URL)")
}

/// Classic queues (the default).
mod classic {
    async fn setup() -> onboarding_core::testing::TestBackend {
        let queue = super::connect(super::common::config(super::VISIBILITY_TIMEOUT)).await;
        super::backend(std::sync::Arc::new(queue))
    }

    onboarding_core::conformance_tests!(setup);
}

/// Quorum queues (`x-queue-type: quorum`). Each quorum queue is a Raft
/// group, far heavier than a classic queue: these cases use 2 wait queues
/// instead of 16 (the suite's delays are a few seconds), allow a slow broker
/// a minute to declare them, and delete their queues when the case ends
/// (left to expire together, a run's quorum queues would be deleted in one
/// burst that stalls a small broker for minutes).
mod quorum {
    use std::sync::Arc;
    use std::time::Duration;

    use async_trait::async_trait;
    use onboarding_amqp::AmqpQueue;
    use onboarding_core::{Delivery, Job, JobQueue, QueueDepth, Receipt, Result};

    /// The queue of one case; deletes its queues when dropped.
    struct DeletedAfterUse(Option<AmqpQueue>);

    impl DeletedAfterUse {
        fn queue(&self) -> &AmqpQueue {
            self.0.as_ref().expect("present until dropped")
        }
    }

    impl Drop for DeletedAfterUse {
        fn drop(&mut self) {
            let Some(queue) = self.0.take() else { return };
            // Dropped inside the case's runtime: delete on a runtime of its own.
            let deleted = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(queue.delete_queues())
            })
            .join();
            if !matches!(deleted, Ok(Ok(()))) {
                // Best effort: the broker deletes them on expiry otherwise.
                eprintln!("deleting the case's quorum queues failed: {deleted:?}");
            }
        }
    }

    #[async_trait]
    impl JobQueue for DeletedAfterUse {
        async fn enqueue(&self, jobs: &[Job]) -> Result<()> {
            self.queue().enqueue(jobs).await
        }
        async fn dequeue(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>> {
            self.queue().dequeue(max, wait).await
        }
        async fn ack(&self, receipts: &[Receipt]) -> Result<()> {
            self.queue().ack(receipts).await
        }
        async fn depth(&self) -> Result<QueueDepth> {
            self.queue().depth().await
        }
        async fn ping(&self) -> Result<()> {
            self.queue().ping().await
        }
    }

    async fn setup() -> onboarding_core::testing::TestBackend {
        let config = super::common::config(super::VISIBILITY_TIMEOUT)
            .with_queue_type(super::QueueType::Quorum)
            .with_delay_buckets(2)
            .with_connect_timeout(Duration::from_secs(60));
        let queue = DeletedAfterUse(Some(super::connect(config).await));
        super::backend(Arc::new(queue))
    }

    // The queue and guarantee cases; the repository and cache cases use
    // the in-memory backends only and run once, above.
    onboarding_core::__conformance_module!(conformance, setup, [queue, guarantees]);
}
