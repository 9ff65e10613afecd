#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Every item has one path: the contracts of a backend and what a host
// program uses are at the root; families of types live in their module.

mod backends;
mod backlog;
mod cache;
mod completion;
mod error;
mod events;
mod processor;
mod queue;
mod redact;
mod service;
mod setters;
mod worker;

pub mod failures;
pub mod import;
pub mod keys;
pub mod limits;
pub mod memory;
pub mod model;
pub mod organizations;
pub mod repository;
pub mod trace;
pub mod validate;
pub mod webhooks;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use backends::Backends;
pub use cache::Cache;
pub use error::{Error, ErrorKind, FieldError, Result};
pub use events::{Event, EventSink};
pub use processor::{processor_fn, NoopProcessor, ProcessError, Processor, WorkItem};
pub use queue::{Delivery, Job, JobQueue, QueueDepth, Receipt};
pub use redact::{redact_url, SecretUrl};
pub use service::{
    Accepted, IngestConfig, OnboardingService, Readiness, SubmitOptions, FRESHNESS,
    MAX_IDEMPOTENCY_KEY_LEN,
};
pub use worker::{RetryPolicy, ShutdownReport, Worker, WorkerConfig, WorkerHandle, WorkerStats};
