//! `RedisConfig`: where Redis is, which key prefix to use, and the timeouts.

use std::time::Duration;

use onboarding_core::SecretUrl;

/// How to reach Redis and how the queue and cache behave there.
///
/// Build one with [`RedisConfig::new`] and the `with_*` methods; its `Debug`
/// output hides the password of the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user[:password]@]host[:port][/db]` (or `rediss://` when the
    /// `redis` crate is built with TLS, `redis+unix:///path` for a socket).
    pub url: SecretUrl,
    /// Every key starts with `{prefix}:` (default `onboarding`). Use a hash
    /// tag such as `{onboarding}` to keep all keys in one Cluster slot.
    pub prefix: String,
    /// A delivery not acknowledged within this time is delivered again (default 30 s).
    pub visibility_timeout: Duration,
    /// Longest a blocked `dequeue` sleeps before it checks for due delayed
    /// jobs and expired deliveries again (default 200 ms).
    pub poll_interval: Duration,
    /// Longest wait for one answer from Redis (default 5 s).
    pub response_timeout: Duration,
    /// Longest wait for one connection attempt (default 2 s).
    pub connection_timeout: Duration,
}

impl RedisConfig {
    /// A configuration for `url` with every other field at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: SecretUrl::new(url),
            prefix: "onboarding".to_owned(),
            visibility_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            response_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(2),
        }
    }

    /// Sets the key prefix (without the trailing `:`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the visibility timeout (at least 1 ms).
    pub fn with_visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Sets the longest sleep of a blocked `dequeue` (between 10 ms and 5 s).
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.clamp(Duration::from_millis(10), Duration::from_secs(5));
        self
    }

    /// Sets the response timeout (at least 100 ms).
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout.max(Duration::from_millis(100));
        self
    }

    /// Sets the connection timeout (at least 10 ms).
    pub fn with_connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout.max(Duration::from_millis(10));
        self
    }
}

impl Default for RedisConfig {
    /// `redis://127.0.0.1:6379`, prefix `onboarding`.
    fn default() -> Self {
        Self::new("redis://127.0.0.1:6379")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        // The URL is a SecretUrl: Debug shows it redacted.
        let shown = format!(
            "{:?}",
            RedisConfig::new("redis://app:s3cret@cache.internal:6380/2")
        );
        assert!(
            shown.contains("redis://app:***@cache.internal:6380/2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn builder_sets_fields() {
        let c = RedisConfig::default()
            .with_prefix("p")
            .with_visibility_timeout(Duration::from_secs(2))
            .with_poll_interval(Duration::ZERO);
        assert_eq!(c.prefix, "p");
        assert_eq!(c.visibility_timeout, Duration::from_secs(2));
        assert_eq!(c.poll_interval, Duration::from_millis(10));
    }
}
