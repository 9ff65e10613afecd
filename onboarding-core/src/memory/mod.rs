//! In-memory implementations of every backend trait: the test baseline and
//! the fastest backend. Nothing survives the process.

mod cache;
mod events;
mod imports;
mod keys;
mod organizations;
mod queue;
mod repository;
mod webhooks;

pub use crate::limits::{LocalRateLimiter, MemoryLedger};
pub use cache::MemoryCache;
pub use events::{RecordingEventSink, TracingEventSink};
pub use keys::MemoryKeyStore;
pub use queue::MemoryQueue;
pub use repository::MemoryRepository;
pub use webhooks::MemoryWebhooks;
