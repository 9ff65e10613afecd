//! Sustained load on PostgreSQL + Redis with worker processes running: the
//! original's design load (10 submits/s × 1000 organizations) for 60 s, then
//! 5× that for 30 s (`RELIABILITY_FULL=1`; CI runs 10/s × 100 for 10 s, then
//! 5× for 5 s). Every accepted organization completes; load beyond the
//! per-key rate (`RATE_LIMIT`, 10/s by default) is refused at once with 429
//! and Retry-After, never by timeouts; the server's memory stays bounded.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use onboarding_reliability::*;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sustained_load_then_five_times_more() {
    let _serial = serial().await;
    let orgs_per_post = count(100, 1000);
    let (d1, d2) = if full() { (60, 30) } else { (10, 5) };
    let recorder = Recorder::start(|_| Reply::ok(Duration::ZERO)).await;
    let tuning = Tuning {
        concurrency: 16,
        lease_ms: 30_000,
        stale_after_ms: 60_000,
        ..Tuning::default()
    };
    let mut stack = Stack::new(
        "load",
        QueueKind::Redis(REDIS_URL.into()),
        tuning,
        recorder.clone(),
    )
    .await;
    stack.start_server(&[("RATE_LIMIT", "10/s")]).await;
    stack.start_worker();
    stack.start_worker();
    let server_pid = stack.server.as_ref().unwrap().pid();
    let rss_start = rss_kib(server_pid);
    let stack = std::sync::Arc::new(stack);
    let t = tag();
    let mut tasks = tokio::task::JoinSet::new();
    let mut max_rss = rss_start;
    let mut sent = 0usize;
    for (phase, per_second, seconds) in [(1u8, 10u64, d1), (2, 50, d2)] {
        let interval = Duration::from_millis(1000 / per_second);
        let phase_start = Instant::now();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        while phase_start.elapsed() < Duration::from_secs(seconds) {
            tick.tick().await;
            let (stack, t) = (stack.clone(), t.clone());
            let first = sent * orgs_per_post;
            sent += 1;
            tasks.spawn(
                async move { (phase, stack.submit(&t, first..first + orgs_per_post).await) },
            );
            if sent.is_multiple_of(10) {
                max_rss = max_rss.max(rss_kib(server_pid));
            }
        }
    }
    let mut results = Vec::new();
    while let Some(r) = tasks.join_next().await {
        results.push(r.unwrap());
    }
    let mut accepted_orgs = 0i64;
    let mut latencies = Vec::new();
    let mut refused_latencies = Vec::new();
    let (mut accepted, mut refused, mut refused_without_retry_after, mut other) =
        ([0usize; 3], [0usize; 3], 0usize, Vec::new());
    for (phase, r) in &results {
        match r.status {
            202 => {
                accepted[*phase as usize] += 1;
                accepted_orgs += r.body["organizations_count"].as_i64().unwrap();
                latencies.push(r.latency);
            }
            429 | 503 => {
                refused[*phase as usize] += 1;
                refused_latencies.push(r.latency);
                if r.retry_after.is_none() {
                    refused_without_retry_after += 1;
                }
            }
            _ => other.push((r.status, r.body.clone())),
        }
    }
    let stack = std::sync::Arc::try_unwrap(stack)
        .ok()
        .expect("no other holder");
    let drain_start = Instant::now();
    let counts = stack
        .until_settled(
            accepted_orgs,
            Duration::from_secs(if full() { 3 * 3600 } else { 600 }),
        )
        .await;
    let drained_in = drain_start.elapsed();
    max_rss = max_rss.max(rss_kib(server_pid));
    let lost = stack.lost().await;
    let effects = recorder.side_effects();
    let p50 = percentile(&mut latencies.clone(), 50.0);
    let p99 = percentile(&mut latencies, 99.0);
    let refused_p99 = percentile(&mut refused_latencies, 99.0);
    report(
        "sustained-load",
        &[
            ("orgs_per_post", orgs_per_post.to_string()),
            ("phases", format!("10/s x {d1}s, 50/s x {d2}s")),
            ("posts", results.len().to_string()),
            ("accepted_posts_phase1", accepted[1].to_string()),
            ("refused_posts_phase1", refused[1].to_string()),
            ("accepted_posts_phase2", accepted[2].to_string()),
            ("refused_posts_phase2", refused[2].to_string()),
            ("other_answers", other.len().to_string()),
            ("accepted_orgs", accepted_orgs.to_string()),
            (
                "completed",
                counts.get("completed").copied().unwrap_or(0).to_string(),
            ),
            ("lost", lost.len().to_string()),
            ("duplicated_side_effects", effects.duplicated.to_string()),
            ("p50_202_ms", p50.as_millis().to_string()),
            ("p99_202_ms", p99.as_millis().to_string()),
            ("p99_refusal_ms", refused_p99.as_millis().to_string()),
            ("server_rss_start_mib", (rss_start / 1024).to_string()),
            ("server_rss_max_mib", (max_rss / 1024).to_string()),
            ("drained_after_load_s", drained_in.as_secs().to_string()),
        ],
    );
    assert!(
        other.is_empty(),
        "only 202, 429 or 503: {:?}",
        &other[..other.len().min(5)]
    );
    assert_eq!(
        refused_without_retry_after, 0,
        "every refusal has Retry-After"
    );
    assert!(refused[2] > 0, "5x the rate is refused early");
    assert!(
        refused_p99 < Duration::from_secs(1),
        "refusals are immediate, not timeouts: {refused_p99:?}"
    );
    assert_eq!(counts.get("completed").copied().unwrap_or(0), accepted_orgs);
    assert!(lost.is_empty());
    assert!(max_rss < 1024 * 1024, "server RSS {max_rss} KiB");
    stack.teardown().await;
}
