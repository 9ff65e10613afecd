//! Retry policy: how many attempts, and how long to wait between them.

use std::time::Duration;

use rand::Rng;

use crate::model::Timestamp;
use crate::processor::ProcessError;
use crate::repository::Resolution;

/// Exponential backoff with jitter, and an attempt limit.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts in all, the first included (default 3).
    pub max_attempts: u32,
    /// Delay after the first failed attempt (default 10 s).
    pub base_delay: Duration,
    /// Factor applied per further attempt (default 2.0).
    pub multiplier: f64,
    /// Upper bound of one delay before jitter (default 1 h).
    pub max_delay: Duration,
    /// Each delay is multiplied by a uniform factor in `[1 - jitter, 1 + jitter]` (default 0.1).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_secs(10),
            multiplier: 2.0,
            max_delay: Duration::from_secs(3600),
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// Sets the attempt limit (at least 1).
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Sets the first delay.
    pub fn with_base_delay(mut self, d: Duration) -> Self {
        self.base_delay = d;
        self
    }

    /// Sets the jitter fraction (clamped to 0.0-1.0).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// The delay before attempt `failed_attempt + 1`, without jitter.
    pub fn nominal_delay(&self, failed_attempt: u32) -> Duration {
        let exp = i32::try_from(failed_attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.base_delay.as_secs_f64() * self.multiplier.max(1.0).powi(exp);
        Duration::from_secs_f64(secs.min(self.max_delay.as_secs_f64()))
    }

    /// The delay before attempt `failed_attempt + 1`, with jitter.
    pub fn delay(&self, failed_attempt: u32) -> Duration {
        let nominal = self.nominal_delay(failed_attempt).as_secs_f64();
        let factor = if self.jitter > 0.0 {
            rand::rng().random_range(1.0 - self.jitter..=1.0 + self.jitter)
        } else {
            1.0
        };
        Duration::from_secs_f64((nominal * factor).max(0.0))
    }

    /// Turns a processor's answer for attempt `attempt` into a resolution.
    pub fn resolve(
        &self,
        attempt: u32,
        result: Result<(), ProcessError>,
        now: Timestamp,
    ) -> Resolution {
        match result {
            Ok(()) => Resolution::Completed,
            Err(ProcessError::Permanent(error)) => Resolution::Failed {
                error,
                permanent: true,
            },
            Err(ProcessError::Retryable(error)) if attempt >= self.max_attempts => {
                Resolution::Failed {
                    error,
                    permanent: false,
                }
            }
            Err(ProcessError::Retryable(error)) => Resolution::Retry {
                available_at: crate::model::after(now, self.delay(attempt)),
                error,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.nominal_delay(1), Duration::from_secs(10));
        assert_eq!(p.nominal_delay(2), Duration::from_secs(20));
        assert_eq!(p.nominal_delay(3), Duration::from_secs(40));
        for attempt in 1..=3 {
            let nominal = p.nominal_delay(attempt).as_secs_f64();
            for _ in 0..200 {
                let d = p.delay(attempt).as_secs_f64();
                assert!(
                    d >= nominal * 0.9 - 1e-9 && d <= nominal * 1.1 + 1e-9,
                    "{d}"
                );
            }
        }
    }

    #[test]
    fn delays_are_capped_and_spread() {
        let p = RetryPolicy {
            max_delay: Duration::from_secs(15),
            ..RetryPolicy::default()
        };
        assert_eq!(p.nominal_delay(10), Duration::from_secs(15));
        let spread: std::collections::HashSet<u128> =
            (0..50).map(|_| p.delay(1).as_micros()).collect();
        assert!(spread.len() > 10, "jitter spreads delays");
    }

    #[test]
    fn resolve_retries_until_the_last_attempt() {
        let p = RetryPolicy::default();
        let now = crate::model::now();
        let retry = p.resolve(1, Err(ProcessError::Retryable("x".into())), now);
        assert!(matches!(retry, Resolution::Retry { available_at, .. } if available_at > now));
        assert_eq!(
            p.resolve(3, Err(ProcessError::Retryable("x".into())), now),
            Resolution::Failed {
                error: "x".into(),
                permanent: false
            }
        );
        assert_eq!(
            p.resolve(1, Err(ProcessError::Permanent("bad".into())), now),
            Resolution::Failed {
                error: "bad".into(),
                permanent: true
            }
        );
        assert_eq!(p.resolve(1, Ok(()), now), Resolution::Completed);
    }
}
