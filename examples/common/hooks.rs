//! Tuning knobs the reliability suite (`tests/reliability`)
//! sets so that its scenarios run in seconds: short leases, sweeps and
//! backoff, and a queue prefix per scenario. Unset, every value keeps the
//! library's default.

use std::time::Duration;

use onboarding::{IngestConfig, WorkerConfig};

/// Optional timing and isolation overrides (milliseconds).
#[derive(clap::Args, Debug, Clone, Default)]
#[command(next_help_heading = "Tuning (tests, benchmarks)")]
pub struct Hooks {
    /// Redis key prefix / RabbitMQ queue prefix (default `onboarding`).
    #[arg(long, env = "QUEUE_PREFIX")]
    pub queue_prefix: Option<String>,
    /// Worker lease in ms (default 30000; heartbeat = a third of it).
    #[arg(long, env = "LEASE_MS", value_name = "MS")]
    pub lease_ms: Option<u64>,
    /// Sweeper interval in ms (default 5000).
    #[arg(long, env = "SWEEP_INTERVAL_MS", value_name = "MS")]
    pub sweep_interval_ms: Option<u64>,
    /// Pending work unclaimed this long is re-enqueued, in ms (default 60000; server and worker alike).
    #[arg(long, env = "STALE_AFTER_MS", value_name = "MS")]
    pub stale_after_ms: Option<u64>,
    /// First retry delay in ms (default 10000).
    #[arg(long, env = "RETRY_BASE_MS", value_name = "MS")]
    pub retry_base_ms: Option<u64>,
    /// Attempts in all (default 3).
    #[arg(long, env = "RETRY_MAX_ATTEMPTS", value_name = "N")]
    pub retry_max_attempts: Option<u32>,
    /// Graceful shutdown deadline in ms (default 10000).
    #[arg(long, env = "SHUTDOWN_TIMEOUT_MS", value_name = "MS")]
    pub shutdown_timeout_ms: Option<u64>,
    /// Longest wait of one dequeue in ms (default 1000).
    #[arg(long, env = "POLL_WAIT_MS", value_name = "MS")]
    pub poll_wait_ms: Option<u64>,
    /// RabbitMQ queues unused this long are deleted by the broker, in ms (default: never).
    #[arg(long, env = "QUEUE_EXPIRY_MS", value_name = "MS")]
    pub queue_expiry_ms: Option<u64>,
    /// Claim loops of the worker, 1-64 (default 2).
    #[arg(long, env = "FETCHERS", value_name = "N", value_parser = clap::value_parser!(u8).range(1..=64))]
    pub fetchers: Option<u8>,
    /// Result flushes of the worker in progress at once, 1-64 (default 2).
    #[arg(long, env = "FLUSHERS", value_name = "N", value_parser = clap::value_parser!(u8).range(1..=64))]
    pub flushers: Option<u8>,
    /// HTTP request timeout in ms (server only; default 30000).
    #[arg(long, env = "REQUEST_TIMEOUT_MS", value_name = "MS")]
    pub request_timeout_ms: Option<u64>,
}

fn ms(v: Option<u64>) -> Option<Duration> {
    v.map(Duration::from_millis)
}

impl Hooks {
    /// The worker configuration with the overrides applied.
    pub fn worker(&self, mut config: WorkerConfig) -> WorkerConfig {
        if let Some(lease) = ms(self.lease_ms) {
            config = config.with_lease(lease);
        }
        if self.sweep_interval_ms.is_some() || self.stale_after_ms.is_some() {
            let interval = ms(self.sweep_interval_ms).unwrap_or(config.sweep_interval);
            let stale = ms(self.stale_after_ms).unwrap_or(config.stale_after);
            config = config.with_sweep(interval, stale);
        }
        if self.retry_base_ms.is_some() || self.retry_max_attempts.is_some() {
            let mut retry = config.retry.clone();
            if let Some(base) = ms(self.retry_base_ms) {
                retry = retry.with_base_delay(base);
            }
            if let Some(n) = self.retry_max_attempts {
                retry = retry.with_max_attempts(n);
            }
            config = config.with_retry(retry);
        }
        if let Some(d) = ms(self.shutdown_timeout_ms) {
            config = config.with_shutdown_timeout(d);
        }
        if let Some(d) = ms(self.poll_wait_ms) {
            config = config.with_poll_wait(d);
        }
        if let Some(n) = self.fetchers {
            config = config.with_fetchers(n.into());
        }
        if let Some(n) = self.flushers {
            config = config.with_flushers(n.into());
        }
        config
    }

    /// The ingest configuration with the overrides applied.
    pub fn ingest(&self, config: IngestConfig) -> IngestConfig {
        match ms(self.stale_after_ms) {
            Some(stale) => config.with_stale_after(stale),
            None => config,
        }
    }

    /// The queue prefix, when set.
    pub fn prefix(&self) -> Option<&str> {
        self.queue_prefix
            .as_deref()
            .filter(|p| !p.trim().is_empty())
    }
}
