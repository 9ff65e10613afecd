//! `HttpConfig`: API keys, rate limit, body limit, timeouts, metrics and webhooks.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use onboarding_core::keys::KeyStore;
use onboarding_core::limits::{Rate, RateLimiter};
use onboarding_core::model::TenantId;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::metrics::Metrics;
use crate::webhook::Webhooks;

/// A configuration value that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub(crate) String);

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A per-key request rate: a token bucket refilled at `per_second` tokens
/// a second that holds at most `burst` tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Sustained requests per second.
    pub per_second: f64,
    /// Requests that may arrive at once (default: twice the rate per second).
    pub burst: u32,
}

impl RateLimit {
    /// `n` requests a second with a burst of `2 × n` (at least 1).
    pub fn per_second(n: f64) -> Self {
        let n = if n.is_finite() && n > 0.0 { n } else { 1.0 };
        Self {
            per_second: n,
            burst: burst_for(n),
        }
    }

    /// Sets the burst (at least 1).
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    /// Parses `10/s`, `600/m` (or `/min`), `3600/h`, or a bare number (per second).
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let value = value.trim();
        let (count, unit) = value.split_once('/').unwrap_or((value, "s"));
        let count: f64 = count
            .trim()
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n > 0.0)
            .ok_or_else(|| {
                ConfigError::new(format!(
                    "rate limit {value:?}: expected a positive number of requests, e.g. 10/s"
                ))
            })?;
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "m" | "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            other => {
                return Err(ConfigError::new(format!(
                    "rate limit {value:?}: unknown unit {other:?} (use s, m or h)"
                )))
            }
        };
        Ok(Self::per_second(count / seconds))
    }
}

fn burst_for(per_second: f64) -> u32 {
    let burst = (per_second * 2.0).ceil();
    if burst >= f64::from(u32::MAX) {
        u32::MAX
    } else if burst < 1.0 {
        1
    } else {
        // In range: checked above.
        burst as u32
    }
}

impl RateLimit {
    /// The same rate for core's limiters.
    pub fn rate(&self) -> Rate {
        Rate::new(self.per_second, self.burst)
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        Self::per_second(10.0)
    }
}

/// The SHA-256 of an API key: what is stored and compared.
pub type KeyHash = [u8; 32];

/// API keys, each belonging to one tenant, stored as SHA-256 hashes and
/// compared in constant time.
#[derive(Clone, Default)]
pub struct ApiKeys {
    entries: Vec<(KeyHash, TenantId)>,
}

impl ApiKeys {
    /// No keys: every authenticated endpoint answers 401.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key for `tenant` (only its hash is kept).
    pub fn with_key(self, tenant: TenantId, key: &str) -> Self {
        self.with_key_hash(tenant, Self::hash(key))
    }

    /// Adds a key by its SHA-256 hash (for keys kept hashed elsewhere).
    pub fn with_key_hash(mut self, tenant: TenantId, hash: KeyHash) -> Self {
        self.entries.push((hash, tenant));
        self
    }

    /// Parses `tenant:key,tenant2:key2` (the `API_KEYS` format).
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let mut keys = Self::new();
        for (i, entry) in value.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let (tenant, key) = entry.split_once(':').ok_or_else(|| {
                ConfigError::new(format!("API key entry {} must look like tenant:key", i + 1))
            })?;
            let tenant = TenantId::parse(tenant.trim()).map_err(|e| {
                ConfigError::new(format!("API key entry {}: {}", i + 1, e.message()))
            })?;
            let key = key.trim();
            if key.len() < 8 {
                return Err(ConfigError::new(format!(
                    "API key entry {} (tenant {tenant}): the key must have at least 8 characters",
                    i + 1
                )));
            }
            keys = keys.with_key(tenant, key);
        }
        Ok(keys)
    }

    /// A fresh random key (about 244 bits of randomness), e.g. for a first start.
    pub fn generate_key() -> String {
        format!(
            "obk_{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )
    }

    /// SHA-256 of a key.
    pub fn hash(key: &str) -> KeyHash {
        Sha256::digest(key.as_bytes()).into()
    }

    /// How many keys are configured.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tenant a presented key belongs to, with the key's hash. Every
    /// stored hash is compared, in constant time, whatever matches.
    pub(crate) fn authenticate(&self, presented: &str) -> Option<(TenantId, KeyHash)> {
        let hash = Self::hash(presented);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u64;
        for (i, (stored, _)) in self.entries.iter().enumerate() {
            let eq = stored.ct_eq(&hash);
            index = u64::conditional_select(&index, &(i as u64), eq);
            found |= eq;
        }
        if bool::from(found) {
            let index = usize::try_from(index).ok()?;
            self.entries
                .get(index)
                .map(|(_, tenant)| (tenant.clone(), hash))
        } else {
            None
        }
    }
}

impl fmt::Debug for ApiKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tenants: Vec<&str> = self.entries.iter().map(|(_, t)| t.as_str()).collect();
        f.debug_struct("ApiKeys")
            .field("tenants", &tenants)
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// How the HTTP layer behaves. Build one with [`HttpConfig::builder`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct HttpConfig {
    /// Accepted API keys (default: none, so every authenticated call is 401).
    pub api_keys: ApiKeys,
    /// Per-tenant rate limit (default 10/s, burst 20); `None` turns it off.
    pub rate_limit: Option<RateLimit>,
    /// Largest accepted request body in bytes (default 2 MiB: 1000
    /// organizations with 255-character names fit with room to spare).
    pub body_limit: usize,
    /// Largest file `POST /api/v1/imports` accepts, in bytes (default 1 GiB;
    /// separate from [`HttpConfig::body_limit`]: a file is streamed, never held whole).
    pub import_body_limit: u64,
    /// Longest a request may take before it is answered 503 (default 30 s).
    pub request_timeout: Duration,
    /// `Retry-After` sent with 503 answers (default 5 s).
    pub retry_after: Duration,
    /// Load shedding: the most submissions (`POST /api/bulk-onboard`,
    /// `POST /api/v1/bulk-onboard`) this router handles at once (default 32;
    /// `None` turns it off). One more is answered at once with 503
    /// `overloaded` and `Retry-After`, before its body is read: it does not
    /// wait for a slot, so latency and memory stay bounded under overload.
    /// Status, listing, health and other reads are not counted.
    pub max_concurrent_submissions: Option<usize>,
    /// Where request and ingest metrics are counted (`GET /metrics`).
    pub metrics: Metrics,
    /// Tenants' webhooks (endpoints, deliveries); `None`: the webhook routes answer 404.
    pub webhooks: Option<Webhooks>,
    /// Keys, limits and the admin token shared by every process.
    pub shared: SharedConfig,
}

/// What makes several servers act as one: API keys in the database, the
/// rate limit in a shared store, the operator's admin token, and the
/// throttle of failed authentications.
#[derive(Clone)]
#[non_exhaustive]
pub struct SharedConfig {
    /// API keys in the database (checked after [`HttpConfig::api_keys`]).
    pub key_store: Option<Arc<dyn KeyStore>>,
    /// The per-tenant rate limit in a store every server shares (e.g.
    /// onboarding-redis's `RedisRateLimiter`); `None`: in this process.
    pub rate_limiter: Option<Arc<dyn RateLimiter>>,
    /// SHA-256 of the admin token (`ADMIN_TOKEN`); `None`: no admin routes.
    pub admin_token: Option<KeyHash>,
    /// Failed authentications allowed per client address before 429
    /// (default a burst of 10, then one per 6 s); `None` turns it off.
    pub auth_failures: Option<Rate>,
}

impl Default for SharedConfig {
    fn default() -> Self {
        Self {
            key_store: None,
            rate_limiter: None,
            admin_token: None,
            auth_failures: Some(crate::auth::AUTH_FAILURES),
        }
    }
}

impl fmt::Debug for SharedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedConfig")
            .field("key_store", &self.key_store.is_some())
            .field("rate_limiter", &self.rate_limiter.is_some())
            .field("admin_token", &self.admin_token.map(|_| "<redacted>"))
            .field("auth_failures", &self.auth_failures)
            .finish()
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            api_keys: ApiKeys::new(),
            rate_limit: Some(RateLimit::default()),
            body_limit: Self::DEFAULT_BODY_LIMIT,
            import_body_limit: Self::DEFAULT_IMPORT_BODY_LIMIT,
            request_timeout: Duration::from_secs(30),
            retry_after: Duration::from_secs(5),
            max_concurrent_submissions: Some(Self::DEFAULT_MAX_CONCURRENT_SUBMISSIONS),
            metrics: Metrics::new(),
            webhooks: None,
            shared: SharedConfig::default(),
        }
    }
}

impl HttpConfig {
    /// The default body limit: 2 MiB.
    pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;
    /// The default [`HttpConfig::import_body_limit`]: 1 GiB.
    pub const DEFAULT_IMPORT_BODY_LIMIT: u64 = 1024 * 1024 * 1024;

    /// The default [`max_concurrent_submissions`](Self::max_concurrent_submissions): 32.
    pub const DEFAULT_MAX_CONCURRENT_SUBMISSIONS: usize = 32;

    /// A builder starting from the defaults.
    pub fn builder() -> HttpConfigBuilder {
        HttpConfigBuilder {
            config: Self::default(),
        }
    }
}

/// Builds an [`HttpConfig`].
#[derive(Debug, Clone)]
pub struct HttpConfigBuilder {
    config: HttpConfig,
}

impl HttpConfigBuilder {
    /// Replaces the API keys.
    pub fn api_keys(mut self, keys: ApiKeys) -> Self {
        self.config.api_keys = keys;
        self
    }

    /// Adds one API key for `tenant`.
    pub fn api_key(mut self, tenant: TenantId, key: &str) -> Self {
        self.config.api_keys = self.config.api_keys.with_key(tenant, key);
        self
    }

    /// Sets the per-tenant rate limit; `None` turns it off.
    pub fn rate_limit(mut self, limit: Option<RateLimit>) -> Self {
        self.config.rate_limit = limit;
        self
    }

    /// Sets the largest accepted body, in bytes.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.config.body_limit = bytes;
        self
    }

    /// Sets the largest accepted import file, in bytes.
    pub fn import_body_limit(mut self, bytes: u64) -> Self {
        self.config.import_body_limit = bytes;
        self
    }

    /// Sets the request timeout.
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// Sets the `Retry-After` of 503 answers (rounded up to whole seconds, at least 1).
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.config.retry_after = after;
        self
    }

    /// Sets how many submissions are handled at once (at least 1); `None`
    /// turns the limit off.
    pub fn max_concurrent_submissions(mut self, max: Option<usize>) -> Self {
        self.config.max_concurrent_submissions = max.map(|n| n.max(1));
        self
    }

    /// Uses these metrics (share them with [`Metrics::instrument`] to count job outcomes).
    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.config.metrics = metrics;
        self
    }

    /// Serves tenants' webhook endpoints and deliveries from `webhooks`.
    pub fn webhooks(mut self, webhooks: Webhooks) -> Self {
        self.config.webhooks = Some(webhooks);
        self
    }

    /// Accepts the API keys of this store too (one-second cache per process).
    pub fn key_store(mut self, store: Arc<dyn KeyStore>) -> Self {
        self.config.shared.key_store = Some(store);
        self
    }

    /// Keeps the per-tenant rate limit in this shared limiter.
    pub fn shared_rate_limiter(mut self, limiter: Arc<dyn RateLimiter>) -> Self {
        self.config.shared.rate_limiter = Some(limiter);
        self
    }

    /// Turns the admin routes on, for requests bearing this token (only its hash is kept).
    pub fn admin_token(mut self, token: &str) -> Self {
        self.config.shared.admin_token = Some(ApiKeys::hash(token));
        self
    }

    /// Sets the throttle of failed authentications per client address; `None` turns it off.
    pub fn auth_failures(mut self, rate: Option<Rate>) -> Self {
        self.config.shared.auth_failures = rate;
        self
    }

    /// The configuration.
    pub fn build(self) -> HttpConfig {
        self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_parse() {
        assert_eq!(
            RateLimit::parse("10/s").unwrap(),
            RateLimit::per_second(10.0)
        );
        assert_eq!(RateLimit::parse("10/s").unwrap().burst, 20);
        assert_eq!(RateLimit::parse("60/m").unwrap().per_second, 1.0);
        assert_eq!(RateLimit::parse("5").unwrap().per_second, 5.0);
        assert_eq!(RateLimit::parse("1/h").unwrap().burst, 1);
        for bad in ["", "x/s", "0/s", "-1/s", "10/d", "NaN/s", "inf/s"] {
            assert!(RateLimit::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_parse_authenticate_and_hide() {
        let keys = ApiKeys::parse("acme:secret-key-1, globex:secret-key-2").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys.authenticate("secret-key-2")
                .map(|(t, _)| t.to_string()),
            Some("globex".into())
        );
        assert!(keys.authenticate("secret-key-3").is_none());
        assert!(keys.authenticate("").is_none());
        let debug = format!("{keys:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(ApiKeys::parse("nokey").is_err());
        assert!(ApiKeys::parse("bad tenant:secret-key").is_err());
        assert!(ApiKeys::parse("acme:short").is_err());
        assert!(ApiKeys::parse("").unwrap().is_empty());
        assert_ne!(ApiKeys::generate_key(), ApiKeys::generate_key());
    }
}
