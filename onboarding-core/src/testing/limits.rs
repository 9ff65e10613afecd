//! [`RateLimiter`] and [`BacklogLedger`] cases: one per `# Behavior` bullet.
//!
//! Each case gets two handles on one store (two processes: for an
//! in-memory backend the same object twice, for Redis two connections
//! under one key prefix), so that sharing is tested, not assumed. Keys are
//! random; ledgers must be fresh per `setup` call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limits::{Admission, Admit, BacklogLedger, Rate, RateLimiter};
use crate::testing::TestBackend;

/// The rate every case's limiters enforce: 10 a second, burst 5.
pub const CASE_RATE: Rate = Rate {
    per_second: 10.0,
    burst: 5,
};

fn key() -> String {
    format!("case-{}", uuid::Uuid::new_v4().simple())
}

async fn check(limiter: &dyn RateLimiter, key: &str) -> Admit {
    limiter.check(key).await.expect("rate limiter check failed")
}

/// Takes the whole burst of a fresh key within one emission interval,
/// retrying the run when the machine stalled past it.
async fn drain_burst(limiters: &[Arc<dyn RateLimiter>; 2]) -> String {
    loop {
        let key = key();
        let started = Instant::now();
        for i in 0..CASE_RATE.burst {
            let allowed = check(&*limiters[i as usize % 2], &key).await;
            assert_eq!(
                allowed,
                Admit::Allowed,
                "request {i} of a fresh key's burst"
            );
        }
        if started.elapsed() < CASE_RATE.emission_interval() / 2 {
            return key;
        }
    }
}

/// A fresh key gets `burst` requests at once, then waits at most one interval.
pub async fn rate_limiter_allows_the_burst_then_limits(backend: TestBackend) {
    let key = drain_burst(&backend.limiters).await;
    match check(&*backend.limiters[0], &key).await {
        Admit::Limited(wait) => assert!(
            wait <= CASE_RATE.emission_interval() && !wait.is_zero(),
            "waits {wait:?}"
        ),
        Admit::Allowed => panic!("one request past the burst was allowed"),
    }
    assert_eq!(backend.limiters[0].rate(), CASE_RATE);
}

/// Keys do not share allowance.
pub async fn rate_limiter_keys_do_not_share(backend: TestBackend) {
    let _limited = drain_burst(&backend.limiters).await;
    let other = key();
    assert_eq!(check(&*backend.limiters[0], &other).await, Admit::Allowed);
}

/// After the wait it answered, a limited key is allowed again.
pub async fn rate_limiter_allows_again_after_the_wait(backend: TestBackend) {
    let key = drain_burst(&backend.limiters).await;
    let Admit::Limited(wait) = check(&*backend.limiters[0], &key).await else {
        panic!("one request past the burst was allowed");
    };
    tokio::time::sleep(wait + Duration::from_millis(20)).await;
    assert_eq!(check(&*backend.limiters[1], &key).await, Admit::Allowed);
}

/// Two handles on one store share each key's allowance.
pub async fn rate_limiter_is_shared_by_every_handle(backend: TestBackend) {
    // The burst was taken alternately through both handles.
    let key = drain_burst(&backend.limiters).await;
    for limiter in &backend.limiters {
        assert!(
            matches!(check(&**limiter, &key).await, Admit::Limited(_)),
            "a handle still had allowance of its own"
        );
    }
}

async fn admit(ledger: &dyn BacklogLedger, incoming: u64, max: u64) -> Option<Admission> {
    ledger
        .admit(incoming, max, Duration::from_secs(3600))
        .await
        .expect("ledger admit failed")
        .map(|a| a.admission)
}

async fn record(ledger: &dyn BacklogLedger, waiting: Option<u64>) {
    ledger.record(waiting).await.expect("ledger record failed");
}

/// Without a reading: `None`.
pub async fn ledger_without_a_reading_answers_none(backend: TestBackend) {
    assert_eq!(admit(&*backend.ledgers[0], 1, 10).await, None);
}

/// Within `max`: admitted, and counted for every caller.
pub async fn ledger_admits_within_max_and_counts_it(backend: TestBackend) {
    let [a, b] = &backend.ledgers;
    record(&**a, Some(10)).await;
    assert_eq!(admit(&**a, 5, 20).await, Some(Admission::Admitted));
    assert_eq!(admit(&**b, 5, 20).await, Some(Admission::Admitted));
    assert_eq!(
        admit(&**b, 1, 20).await,
        Some(Admission::Refused { waiting: 20 }),
        "what both handles admitted counts"
    );
}

/// Over `max`: refused with the waiting count, nothing counted.
pub async fn ledger_refuses_over_max_and_counts_nothing(backend: TestBackend) {
    let ledger = &*backend.ledgers[0];
    record(ledger, Some(8)).await;
    assert_eq!(
        admit(ledger, 5, 10).await,
        Some(Admission::Refused { waiting: 8 })
    );
    assert_eq!(admit(ledger, 2, 10).await, Some(Admission::Admitted));
}

/// Nothing waiting: anything is admitted (a request larger than `max` too).
pub async fn ledger_admits_anything_when_nothing_waits(backend: TestBackend) {
    let ledger = &*backend.ledgers[0];
    record(ledger, Some(0)).await;
    assert_eq!(admit(ledger, 50, 10).await, Some(Admission::Admitted));
    assert_eq!(
        admit(ledger, 1, 10).await,
        Some(Admission::Refused { waiting: 50 })
    );
}

/// A reading of an unknown depth answers `Unknown`.
pub async fn ledger_unknown_depth_answers_unknown(backend: TestBackend) {
    let ledger = &*backend.ledgers[0];
    record(ledger, None).await;
    assert_eq!(admit(ledger, 1_000, 10).await, Some(Admission::Unknown));
}

/// `fresh` tells whether the reading is younger than `fresh_for`.
pub async fn ledger_tells_whether_the_reading_is_fresh(backend: TestBackend) {
    let ledger = &*backend.ledgers[0];
    record(ledger, Some(1)).await;
    let fresh = ledger
        .admit(0, 10, Duration::from_secs(3600))
        .await
        .expect("admit");
    assert_eq!(fresh.map(|a| a.fresh), Some(true));
    tokio::time::sleep(Duration::from_millis(30)).await;
    let stale = ledger
        .admit(0, 10, Duration::from_millis(10))
        .await
        .expect("admit");
    assert_eq!(stale.map(|a| a.fresh), Some(false));
}

/// A new reading starts with nothing admitted, for every caller.
pub async fn ledger_record_starts_a_fresh_count(backend: TestBackend) {
    let [a, b] = &backend.ledgers;
    record(&**a, Some(5)).await;
    assert_eq!(admit(&**a, 5, 10).await, Some(Admission::Admitted));
    record(&**b, Some(2)).await;
    assert_eq!(admit(&**a, 8, 10).await, Some(Admission::Admitted));
    assert_eq!(
        admit(&**b, 1, 10).await,
        Some(Admission::Refused { waiting: 10 })
    );
}
