#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod error;
pub mod model;
pub mod validate;

pub mod cache;
pub mod events;
pub mod keys;
pub mod limits;
pub mod processor;
pub mod queue;
pub mod repository;
pub mod webhooks;

pub mod memory;

mod backends;
mod backlog;
mod completion;
pub mod service;
pub mod worker;

#[cfg(feature = "testing")]
#[cfg_attr(docsrs, doc(cfg(feature = "testing")))]
pub mod testing;

pub use backends::{batch_status_cache_key, Backends};
pub use cache::Cache;
pub use error::{Error, ErrorKind, FieldError, Result};
pub use events::{Event, EventSink};
pub use keys::KeyStore;
pub use limits::{BacklogLedger, RateLimiter};
pub use processor::{NoopProcessor, ProcessError, Processor, WorkItem};
pub use queue::{Delivery, Job, JobQueue, QueueDepth, Receipt};
pub use repository::OrgRepository;
pub use service::{Accepted, IngestConfig, OnboardingService, SubmitOptions, FRESHNESS};
pub use webhooks::{DeliveryLog, WebhookStore};
pub use worker::{RetryPolicy, Worker, WorkerConfig, WorkerHandle};
