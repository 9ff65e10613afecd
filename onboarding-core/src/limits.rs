//! Limits that hold across processes: a per-key request rate
//! ([`RateLimiter`]) and the backlog ledger behind
//! [`IngestConfig::max_backlog`](crate::IngestConfig::max_backlog)
//! ([`BacklogLedger`]). In one process the in-memory implementations are
//! enough ([`LocalRateLimiter`], on `governor`; [`MemoryLedger`]); a
//! deployment of several servers shares them through Redis
//! (onboarding-redis).

use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::error::Result;

/// A request rate: a bucket refilled at `per_second` that holds `burst`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained requests per second (positive).
    pub per_second: f64,
    /// Requests that may arrive at once (at least 1).
    pub burst: u32,
}

impl Rate {
    /// `per_second` with `burst` (both clamped to sane values).
    pub fn new(per_second: f64, burst: u32) -> Self {
        let per_second = if per_second.is_finite() && per_second > 0.0 {
            per_second
        } else {
            1.0
        };
        Self {
            per_second,
            burst: burst.max(1),
        }
    }

    /// The time one request's token takes to come back.
    pub fn emission_interval(&self) -> Duration {
        Duration::try_from_secs_f64(1.0 / self.per_second)
            .unwrap_or(Duration::from_secs(1))
            .max(Duration::from_nanos(1))
    }
}

/// The answer of [`RateLimiter::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Within the rate: go on.
    Allowed,
    /// Over it: try again after this long.
    Limited(Duration),
}

/// A rate per key, each key with its own bucket of the limiter's [`Rate`].
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// Takes one request of `key`'s allowance.
    ///
    /// # Behavior
    /// - A fresh key is allowed `burst` requests at once; the next is
    ///   `Limited` with a wait of at most one emission interval.
    /// - Keys do not share allowance.
    /// - After the wait it answered, a limited key is allowed again.
    /// - Every caller sharing the limiter's store shares each key's
    ///   allowance (two processes do not get twice the rate).
    async fn check(&self, key: &str) -> Result<Admit>;

    /// The rate it enforces.
    fn rate(&self) -> Rate;
}

/// The in-process [`RateLimiter`]: `governor`'s keyed GCRA limiter.
/// Idle keys are forgotten when more than 10,000 are held.
pub struct LocalRateLimiter {
    rate: Rate,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for LocalRateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRateLimiter")
            .field("rate", &self.rate)
            .finish_non_exhaustive()
    }
}

/// Keys a [`LocalRateLimiter`] holds before it forgets idle ones.
const LOCAL_KEYS: usize = 10_000;

impl LocalRateLimiter {
    /// A limiter enforcing `rate` per key.
    pub fn new(rate: Rate) -> Self {
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(rate.emission_interval())
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst);
        Self {
            rate,
            limiter: DefaultKeyedRateLimiter::dashmap(quota),
        }
    }

    /// Takes one request of `key`'s allowance, without an await.
    pub fn check_now(&self, key: &str) -> Admit {
        if self.limiter.len() > LOCAL_KEYS {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        match self.limiter.check_key(&key.to_owned()) {
            Ok(()) => Admit::Allowed,
            Err(not_until) => {
                Admit::Limited(not_until.wait_time_from(DefaultClock::default().now()))
            }
        }
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn check(&self, key: &str) -> Result<Admit> {
        Ok(self.check_now(key))
    }

    fn rate(&self) -> Rate {
        self.rate
    }
}

/// What a backlog reading says about one more submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Counted in; store it.
    Admitted,
    /// Over the limit: `waiting` organizations are queued or admitted.
    Refused {
        /// Queued at the reading plus admitted since.
        waiting: u64,
    },
    /// The depth could not be read: nothing is refused on it.
    Unknown,
}

/// The answer of [`BacklogLedger::admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LedgerAnswer {
    /// The decision on the last reading.
    pub admission: Admission,
    /// Whether that reading is younger than the caller's `fresh_for`.
    pub fresh: bool,
}

impl LedgerAnswer {
    /// An answer.
    pub fn new(admission: Admission, fresh: bool) -> Self {
        Self { admission, fresh }
    }
}

/// The last queue-depth reading and what was admitted since, shared by
/// every server that shares the ledger: the backlog limit then holds across
/// them, not per process.
#[async_trait]
pub trait BacklogLedger: Send + Sync + 'static {
    /// Decides on `incoming` more organizations against the last reading.
    ///
    /// # Behavior
    /// - Without a reading: `None`.
    /// - `Admitted` when nothing waits, or when the waiting organizations
    ///   (reading + admitted since) plus `incoming` stay within `max`; the
    ///   admitted count then grows by `incoming`, for every caller.
    /// - Otherwise `Refused` with the waiting count, and nothing is counted.
    /// - A reading of an unknown depth answers `Unknown`.
    /// - `fresh` tells whether the reading is younger than `fresh_for`.
    async fn admit(
        &self,
        incoming: u64,
        max: u64,
        fresh_for: Duration,
    ) -> Result<Option<LedgerAnswer>>;

    /// Records a new reading (`None`: the depth could not be read), with
    /// nothing admitted since.
    ///
    /// # Behavior
    /// - The next [`admit`](Self::admit) of any caller decides on it, fresh.
    async fn record(&self, waiting: Option<u64>) -> Result<()>;
}

/// Decides on `incoming` against `queued + admitted` (the rule every ledger applies).
pub fn decide(queued: u64, admitted: u64, incoming: u64, max: u64) -> Admission {
    let waiting = queued.saturating_add(admitted);
    if waiting > 0 && waiting.saturating_add(incoming) > max {
        Admission::Refused { waiting }
    } else {
        Admission::Admitted
    }
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    waiting: Option<u64>,
    admitted: u64,
}

/// The in-process [`BacklogLedger`]: right for one server.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    last: Mutex<Option<Reading>>,
}

impl MemoryLedger {
    fn last(&self) -> MutexGuard<'_, Option<Reading>> {
        // A reading is written whole: a poisoned lock still holds a valid one.
        self.last.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl BacklogLedger for MemoryLedger {
    async fn admit(
        &self,
        incoming: u64,
        max: u64,
        fresh_for: Duration,
    ) -> Result<Option<LedgerAnswer>> {
        let mut last = self.last();
        let Some(reading) = last.as_mut() else {
            return Ok(None);
        };
        let fresh = reading.at.elapsed() < fresh_for;
        let admission = match reading.waiting {
            None => Admission::Unknown,
            Some(queued) => decide(queued, reading.admitted, incoming, max),
        };
        if admission == Admission::Admitted {
            reading.admitted = reading.admitted.saturating_add(incoming);
        }
        Ok(Some(LedgerAnswer { admission, fresh }))
    }

    async fn record(&self, waiting: Option<u64>) -> Result<()> {
        *self.last() = Some(Reading {
            at: Instant::now(),
            waiting,
            admitted: 0,
        });
        Ok(())
    }
}
