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
    ///
    /// Redis Cluster: `redis://[user[:password]@]host:port[,host:port…]?cluster=true`,
    /// one or more seed nodes (the client discovers the others); see
    /// [`RedisConfig::is_cluster`].
    pub url: SecretUrl,
    /// Every key starts with `{prefix}:` (default `onboarding`). The queue
    /// adds its own hash tags after it (one slot for its global keys, one
    /// per tenant); a prefix with a hash tag of its own (`{onboarding}`)
    /// puts every key in that one slot instead.
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

impl RedisConfig {
    /// Whether [`url`](RedisConfig::url) names a Redis Cluster
    /// (`cluster=true` in its query).
    pub fn is_cluster(&self) -> bool {
        matches!(target(self.url.expose()), Ok(Target::Cluster(_)))
    }
}

/// What a URL names: one node, or the seed nodes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One Redis server: the URL for the `redis` crate.
    Single(String),
    /// A Redis Cluster: one URL per seed node.
    Cluster(Vec<String>),
}

/// Splits `scheme://[userinfo@]host[,host…][/db][?query]` into what it
/// names: `cluster=true|false` is taken out of the query (the rest is passed
/// on), a cluster's seed nodes share the user info, path and query. A URL
/// of another shape is passed on whole (the `redis` crate judges it).
pub(crate) fn target(url: &str) -> Result<Target, String> {
    let Some(scheme_end) = url.find("://") else {
        return Ok(Target::Single(url.to_owned()));
    };
    let (scheme, rest) = (&url[..scheme_end + 3], &url[scheme_end + 3..]);
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
    let mut cluster = false;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("cluster", "true" | "1" | "yes") => cluster = true,
            ("cluster", "false" | "0" | "no") => cluster = false,
            ("cluster", other) => {
                return Err(format!(
                    "cluster={other:?} in the Redis URL: use cluster=true or cluster=false"
                ))
            }
            _ => kept.push(pair),
        }
    }
    let tail = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    let (user_info, hosts) = match authority.rfind('@') {
        Some(at) => (&authority[..=at], &authority[at + 1..]),
        None => ("", authority),
    };
    let hosts: Vec<&str> = hosts.split(',').collect();
    if cluster {
        Ok(Target::Cluster(
            hosts
                .iter()
                .map(|host| format!("{scheme}{user_info}{host}{tail}"))
                .collect(),
        ))
    } else if hosts.len() > 1 {
        Err("several hosts in a Redis URL name a cluster: add cluster=true".to_owned())
    } else {
        Ok(Target::Single(format!("{scheme}{authority}{tail}")))
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
    fn cluster_urls_list_their_seed_nodes() {
        let t = |url: &str| target(url).expect(url);
        assert_eq!(
            t("redis://127.0.0.1:6379"),
            Target::Single("redis://127.0.0.1:6379".into())
        );
        assert_eq!(
            t("redis://h:1/2?cluster=false&protocol=resp3"),
            Target::Single("redis://h:1/2?protocol=resp3".into())
        );
        assert_eq!(
            t("redis://u:p@h1:7000,h2:7001?cluster=true"),
            Target::Cluster(vec![
                "redis://u:p@h1:7000".into(),
                "redis://u:p@h2:7001".into()
            ])
        );
        assert_eq!(
            t("rediss://h1:7000/?cluster=1&protocol=resp3"),
            Target::Cluster(vec!["rediss://h1:7000/?protocol=resp3".into()])
        );
        assert!(target("redis://h1:1,h2:2").is_err());
        assert!(target("redis://h1:1?cluster=maybe").is_err());
        assert!(RedisConfig::new("redis://h:1?cluster=true").is_cluster());
        assert!(!RedisConfig::default().is_cluster());
        let shown = format!(
            "{:?}",
            RedisConfig::new("redis://u:pw@h1:1,h2:2?cluster=true")
        );
        assert!(!shown.contains("pw"), "{shown}");
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
