//! In-memory implementations of every backend trait: the test baseline and
//! the fastest backend. Nothing survives the process.

mod cache;
mod events;
mod queue;
mod repository;

pub use cache::MemoryCache;
pub use events::{RecordingEventSink, TracingEventSink};
pub use queue::MemoryQueue;
pub use repository::MemoryRepository;
