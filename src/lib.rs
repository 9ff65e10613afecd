#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod connect;

// Running the service: submissions, workers, the processor a host plugs in.
pub use onboarding_core::{
    processor_fn, Accepted, Backends, IngestConfig, NoopProcessor, OnboardingService, ProcessError,
    Processor, Readiness, RetryPolicy, ShutdownReport, SubmitOptions, WorkItem, Worker,
    WorkerConfig, WorkerHandle, WorkerStats,
};
// One error type for everything.
pub use onboarding_core::{Error, ErrorKind, FieldError, Result};
// The other backend contracts, for a backend of your own (the repository's
// is in `repository`).
pub use onboarding_core::{Cache, Delivery, Event, EventSink, Job, JobQueue, QueueDepth, Receipt};
// Domain types, validation, the repository contract, in-memory backends.
pub use onboarding_core::{memory, model, repository, validate};
// What the processes of a deployment share: keys, webhooks, limits.
pub use onboarding_core::{keys, limits, webhooks, FRESHNESS};
// URLs fit for logs.
pub use onboarding_core::{redact_url, SecretUrl};

// Backends from `DATABASE_URL` / `QUEUE_URL` / `CACHE_URL`-style URLs.
pub use connect::{connect, BackendUrls, Deployment};

/// PostgreSQL, MySQL/MariaDB and SQLite: repository and SQL-table queue.
#[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
#[cfg_attr(
    docsrs,
    doc(cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite")))
)]
pub use onboarding_sqlx as sql;

/// Redis: a reliable, tenant-fair queue and a cache.
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use onboarding_redis::{RedisCache, RedisConfig, RedisQueue};

/// RabbitMQ: a queue with confirms, delayed retries and a dead-letter queue.
#[cfg(feature = "amqp")]
#[cfg_attr(docsrs, doc(cfg(feature = "amqp")))]
pub use onboarding_amqp::{AmqpConfig, AmqpQueue, QueueType};

/// The HTTP API: an axum router to serve or nest, its configuration,
/// metrics and signed webhooks.
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub use onboarding_http as web;

/// Domain checks by DNS: a processor decorator that fails items whose
/// domain does not exist.
#[cfg(feature = "dns")]
#[cfg_attr(docsrs, doc(cfg(feature = "dns")))]
pub mod dns;

/// OpenTelemetry traces: OTLP/HTTP export of the spans, a request and its
/// items in one trace.
#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
