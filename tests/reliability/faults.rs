//! Backend faults under load: PostgreSQL backends terminated, Redis
//! restarted and its keys deleted, RabbitMQ connections closed by the
//! broker; the database unreachable during a POST; enqueue failing after
//! the database commit.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use crate::harness::*;

const MIN: Duration = Duration::from_secs(60);
const WINDOW: Duration = Duration::from_secs(3);

/// Successful side effects per second over `[from, to)`.
fn rate(recorder: &Recorder, from: Instant, to: Instant) -> f64 {
    let n = recorder
        .calls()
        .iter()
        .filter(|c| c.status == 200 && c.ended.is_some_and(|e| e >= from && e < to))
        .count();
    n as f64 / (to - from).as_secs_f64()
}

/// A fault: applies itself to the stack and says what it did.
type Fault = dyn FnMut(&mut Deployment) -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + '_>>
    + Send;

/// Keeps the workers saturated, measures a baseline, applies each fault,
/// and requires throughput back at 90% of the baseline within 30 s of it.
async fn under_load(
    scenario: &str,
    mut stack: Deployment,
    faults: Vec<(&'static str, Box<Fault>)>,
) {
    let recorder = stack.recorder.clone();
    stack.start_server(&[]).await;
    stack.start_worker();
    stack.start_worker();
    let t = tag();
    let (mut submitted, mut accepted) = (0usize, 0i64);
    let mut refused = 0usize;
    // Feed until `until`, keeping a backlog.
    async fn feed(
        stack: &Deployment,
        t: &str,
        submitted: &mut usize,
        accepted: &mut i64,
        refused: &mut usize,
    ) {
        let c = stack.pg().item_counts().await;
        if c.is_empty() && *submitted > 0 {
            return; // our own query failed (backends terminated): try again next tick
        }
        if c.get("pending").copied().unwrap_or(0) < 300 {
            let r = stack.submit(t, *submitted..*submitted + 200).await;
            if r.status == 202 {
                *accepted += r.body["organizations_count"].as_i64().unwrap();
                *submitted += 200;
            } else {
                assert!(
                    r.status == 503 || r.status == 0,
                    "only 503 (backend down) may refuse a valid POST: {} {:?}",
                    r.status,
                    r.body
                );
                *refused += 1;
            }
        }
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        feed(&stack, &t, &mut submitted, &mut accepted, &mut refused).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let base_from = Instant::now();
    while base_from.elapsed() < Duration::from_secs(8) {
        feed(&stack, &t, &mut submitted, &mut accepted, &mut refused).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let baseline = rate(&recorder, base_from, Instant::now());
    assert!(baseline > 5.0, "no baseline throughput: {baseline}/s");
    let mut fields = vec![("baseline_per_s", format!("{baseline:.0}"))];
    for (name, mut fault) in faults {
        let detail = fault(&mut stack).await;
        let at = Instant::now();
        let mut recovered = None;
        while recovered.is_none() && at.elapsed() < Duration::from_secs(35) {
            feed(&stack, &t, &mut submitted, &mut accepted, &mut refused).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Sliding windows starting at the fault, every 250 ms.
            let mut from = at;
            while from + WINDOW <= Instant::now() {
                if rate(&recorder, from, from + WINDOW) >= 0.9 * baseline {
                    recovered = Some(from + WINDOW - at);
                    break;
                }
                from += Duration::from_millis(250);
            }
        }
        for p in stack.workers.iter_mut().chain(stack.server.iter_mut()) {
            assert!(
                p.try_exit().is_none(),
                "{} exited after {name}: {}",
                p.name,
                p.log_text()
            );
        }
        let recovered = recovered.unwrap_or_else(|| {
            panic!("{name}: throughput not back to 90% of {baseline:.0}/s within 35 s")
        });
        fields.push((
            name,
            format!("{detail};back_to_90pct_in_ms={}", recovered.as_millis()),
        ));
        assert!(
            recovered <= Duration::from_secs(30),
            "{name}: recovered after {recovered:?}"
        );
    }
    let counts = stack.until_settled(accepted, 3 * MIN).await;
    let lost = stack.lost().await;
    let effects = recorder.side_effects();
    fields.extend([
        ("accepted", accepted.to_string()),
        ("refused_503", refused.to_string()),
        (
            "completed",
            counts.get("completed").copied().unwrap_or(0).to_string(),
        ),
        ("lost", lost.len().to_string()),
        ("duplicated_side_effects", effects.duplicated.to_string()),
    ]);
    let fields: Vec<(&str, String)> = fields.into_iter().collect();
    report(scenario, &fields);
    assert_eq!(counts.get("completed").copied().unwrap_or(0), accepted);
    assert!(lost.is_empty(), "lost: {:?}", &lost[..lost.len().min(10)]);
    stack.teardown().await;
}

fn load_tuning() -> Tuning {
    Tuning {
        lease_ms: 4000,
        sweep_interval_ms: 1000,
        stale_after_ms: 4000,
        concurrency: 8,
        ..Tuning::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_backends_terminated() {
    let _serial = serial().await;
    let recorder = Recorder::start(|_| Reply::ok(Duration::from_millis(100))).await;
    let stack = Deployment::on_redis("pg-terminate", load_tuning(), recorder).await;
    under_load(
        "pg-terminate-backend",
        stack,
        vec![(
            "pg_terminate_backend",
            Box::new(|stack: &mut Deployment| {
                Box::pin(async move {
                    let mut n = 0;
                    for _ in 0..3 {
                        n += stack.pg().terminate_backends().await;
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    format!("backends_terminated={n}")
                })
            }),
        )],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_and_keys_deleted() {
    let _serial = serial().await;
    let redis = std::sync::Arc::new(tokio::sync::Mutex::new(
        PrivateRedis::start("redis-restart").await,
    ));
    let url = redis.lock().await.url();
    let recorder = Recorder::start(|_| Reply::ok(Duration::from_millis(100))).await;
    let stack = Deployment::new(
        "redis-restart",
        QueueKind::Redis(url),
        load_tuning(),
        recorder,
    )
    .await;
    let (r1, r2) = (redis.clone(), redis.clone());
    under_load(
        "redis-restart-and-keys-deleted",
        stack,
        vec![
            (
                "redis_restarted",
                Box::new(move |_stack: &mut Deployment| {
                    let r = r1.clone();
                    Box::pin(async move {
                        r.lock().await.restart().await;
                        "restarted_without_persistence".to_owned()
                    })
                }),
            ),
            (
                "redis_keys_deleted",
                Box::new(move |stack: &mut Deployment| {
                    let r = r2.clone();
                    let prefix = stack.prefix.clone();
                    Box::pin(async move {
                        let url = r.lock().await.url();
                        let deleted = onboarding_redis::testing::delete_keys(&url, &prefix).await;
                        format!("keys_deleted={deleted}")
                    })
                }),
            ),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_connections_closed_by_the_broker() {
    let _serial = serial().await;
    let recorder = Recorder::start(|_| Reply::ok(Duration::from_millis(100))).await;
    let stack = Deployment::new("amqp-close", QueueKind::Amqp, load_tuning(), recorder).await;
    under_load(
        "rabbitmq-close-connections",
        stack,
        vec![(
            "rabbitmq_connections_closed",
            Box::new(|stack: &mut Deployment| {
                let mut pids = stack.worker_pids();
                pids.extend(stack.server.iter().map(Proc::pid));
                Box::pin(async move {
                    let n = tokio::task::spawn_blocking(move || rabbit_close_connections_of(&pids))
                        .await
                        .unwrap();
                    assert!(n > 0, "no connection of ours found to close");
                    format!("connections_closed={n}")
                })
            }),
        )],
    )
    .await;
}

/// The database unreachable during a POST: 503 with Retry-After, nothing
/// half-written, and recovery without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_down_during_post() {
    let _serial = serial().await;
    let recorder = Recorder::start(|_| Reply::ok(Duration::ZERO)).await;
    let mut stack = Deployment::on_redis("db-down", Tuning::default(), recorder).await;
    let proxy = Proxy::start(server_address(&stack.database_url, 5432)).await;
    stack.database_url = through(&stack.database_url, proxy.addr);
    stack.start_server(&[]).await;
    let t = tag();
    let ok = stack.submit(&t, 0..3).await;
    assert_eq!(ok.status, 202);
    proxy.cut();
    let down = stack.submit(&t, 100..110).await;
    let ready_status = stack.ready_status().await;
    let stored = stack
        .pg()
        .count(&format!(
            "SELECT count(*) FROM organizations WHERE domain LIKE 'org10_-{t}%'"
        ))
        .await;
    let batches = stack.pg().count("SELECT count(*) FROM batches").await;
    let items = stack.pg().count("SELECT count(*) FROM batch_items").await;
    proxy.restore();
    let server_pid = stack.server.as_ref().unwrap().pid();
    let recovered_at = Instant::now();
    let again = eventually("a POST to succeed again", MIN, || async {
        let r = stack.submit(&t, 100..110).await;
        (r.status == 202).then_some(r)
    })
    .await;
    let recovery = recovered_at.elapsed();
    report(
        "database-down-during-post",
        &[
            ("status_while_down", down.status.to_string()),
            ("retry_after", down.retry_after.clone().unwrap_or_default()),
            ("content_type", down.content_type.clone()),
            ("latency_ms", down.latency.as_millis().to_string()),
            ("ready_while_down", ready_status.to_string()),
            ("half_written_orgs", stored.to_string()),
            ("half_written_batches", (batches - 1).to_string()),
            ("recovered_in_ms", recovery.as_millis().to_string()),
            (
                "server_restarted",
                (stack.server.as_ref().unwrap().pid() != server_pid).to_string(),
            ),
        ],
    );
    assert_eq!(down.status, 503, "{:?}", down.body);
    assert!(down.retry_after.is_some(), "Retry-After");
    assert!(down.content_type.starts_with("application/problem+json"));
    assert_eq!(ready_status, 503);
    assert_eq!((stored, batches, items), (0, 1, 3), "nothing half-written");
    assert_eq!(again.status, 202);
    assert!(stack.server.as_mut().unwrap().try_exit().is_none());
    stack.teardown().await;
}

/// Enqueue failing after the database commit: the POST is still accepted
/// (the items are pending in the database) and the sweeper delivers the work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_failure_after_commit_is_swept() {
    let _serial = serial().await;
    let recorder = Recorder::start(|_| Reply::ok(Duration::ZERO)).await;
    let tuning = Tuning {
        stale_after_ms: 3000,
        sweep_interval_ms: 500,
        ..Tuning::default()
    };
    let mut stack = Deployment::on_redis("enqueue-fail", tuning, recorder.clone()).await;
    let proxy = Proxy::start(server_address(&redis_url(), 6379)).await;
    // The server reaches Redis through the proxy; the worker directly.
    stack
        .start_server(&[("QUEUE_URL", &through(&redis_url(), proxy.addr))])
        .await;
    proxy.cut();
    let submitted_at = Instant::now();
    let r = stack.submit(&tag(), 0..20).await;
    let post_latency = submitted_at.elapsed();
    assert_eq!(r.status, 202, "{:?}", r.body);
    let queued_in_redis = onboarding_redis::testing::keys(&redis_url(), &stack.prefix)
        .await
        .len();
    stack.start_worker();
    let counts = stack.until_settled(20, MIN).await;
    let delivered_after = submitted_at.elapsed();
    let effects = recorder.side_effects();
    let lost = stack.lost().await;
    let server_log = stack.server.as_ref().unwrap().log_text();
    report(
        "enqueue-failure-after-commit",
        &[
            ("post_status", r.status.to_string()),
            ("post_latency_ms", post_latency.as_millis().to_string()),
            ("redis_keys_after_post", queued_in_redis.to_string()),
            (
                "completed",
                counts.get("completed").copied().unwrap_or(0).to_string(),
            ),
            (
                "delivered_after_ms",
                delivered_after.as_millis().to_string(),
            ),
            ("stale_after_ms", "3000".into()),
            ("duplicated_side_effects", effects.duplicated.to_string()),
            ("lost", lost.len().to_string()),
        ],
    );
    assert_eq!(queued_in_redis, 0, "the enqueue really failed");
    assert!(
        server_log.to_lowercase().contains("enqueue"),
        "{server_log}"
    );
    assert_eq!(counts.get("completed").copied(), Some(20));
    assert!(
        delivered_after >= Duration::from_secs(3),
        "delivered by the sweeper"
    );
    assert!(lost.is_empty());
    assert_eq!(effects.duplicated, 0);
    stack.teardown().await;
}
