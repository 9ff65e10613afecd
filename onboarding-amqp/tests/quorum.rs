//! Quorum queues (`QueueType::Quorum`): declared as such, and a message past
//! the delivery limit is dead-lettered, never dropped. (The whole
//! conformance suite also runs on quorum queues: `tests/conformance.rs`.)

use std::time::{Duration, Instant};

use onboarding_amqp::testing::{self, rabbitmqctl};
use onboarding_amqp::{AmqpQueue, QueueType};
use onboarding_core::model::TenantId;
use onboarding_core::testing::fixtures;
use onboarding_core::JobQueue;

/// A ready job of `tenant`.
fn job(tenant: &str) -> onboarding_core::Job {
    fixtures::job(&TenantId::parse(tenant).expect("valid tenant"))
}

/// `name → type` of the broker's queues whose name starts with `prefix`.
fn queue_types(prefix: &str) -> Vec<(String, String)> {
    rabbitmqctl(&[
        "list_queues",
        "--quiet",
        "--no-table-headers",
        "name",
        "type",
    ])
    .lines()
    .filter_map(|line| {
        let (name, kind) = line.split_once('\t')?;
        name.starts_with(prefix)
            .then(|| (name.to_owned(), kind.trim().to_owned()))
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_durable_queue_is_a_quorum_queue() {
    let config = testing::config(Duration::from_secs(30))
        .with_queue_type(QueueType::Quorum)
        .with_delay_buckets(2);
    let prefix = format!("{}.", config.prefix);
    let queue = AmqpQueue::connect(config).await.expect("connect");
    queue.enqueue(&[job("a")]).await.expect("enqueue");
    let types = queue_types(&prefix);
    // work, dead-letter, two wait queues and tenant a's queue.
    assert_eq!(types.len(), 5, "{types:?}");
    assert!(types.iter().all(|(_, kind)| kind == "quorum"), "{types:?}");
    queue.delete_queues().await.expect("cleanup");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_past_the_delivery_limit_is_dead_lettered() {
    let config = testing::config(Duration::from_millis(300))
        .with_queue_type(QueueType::Quorum)
        .with_delivery_limit(2);
    let queue = AmqpQueue::connect(config).await.expect("connect");
    queue.enqueue(&[job("a")]).await.expect("enqueue");
    // Never acknowledged: each visibility timeout gives it back, until the
    // broker stops delivering it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut deliveries = 0;
    while queue.dead_lettered().await.expect("dead-letter count") == 0 {
        assert!(
            Instant::now() < deadline,
            "the message neither came back nor reached the dead-letter queue ({deliveries} deliveries)"
        );
        deliveries += queue
            .dequeue(1, Duration::from_millis(200))
            .await
            .expect("dequeue")
            .len();
    }
    assert_eq!(queue.dead_lettered().await.expect("count"), 1);
    assert!(
        (2..=3).contains(&deliveries),
        "delivered {deliveries} times with a limit of 2"
    );
    let depth = queue.depth().await.expect("depth");
    assert_eq!((depth.ready, depth.delayed), (0, 0), "{depth:?}");
    queue.delete_queues().await.expect("cleanup");
}
