//! Event sinks that need no service: one that records, one that logs.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::events::{Event, EventSink};

/// Keeps every published event in memory: for tests and for embedders that
/// poll events themselves.
#[derive(Debug, Default, Clone)]
pub struct RecordingEventSink {
    events: Arc<Mutex<Vec<Event>>>,
}

impl RecordingEventSink {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every event published so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

#[async_trait]
impl EventSink for RecordingEventSink {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        self.events
            .lock()
            .map_err(|_| Error::internal("event recorder lock poisoned by a panic"))?
            .extend_from_slice(events);
        Ok(())
    }
}

/// Logs each event with `tracing` at info level (batch events) or debug
/// level (organization events).
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingEventSink;

#[async_trait]
impl EventSink for TracingEventSink {
    async fn publish(&self, events: &[Event]) -> Result<()> {
        for event in events {
            match event {
                Event::BatchCompleted {
                    tenant,
                    batch_id,
                    counts,
                    ..
                } => tracing::info!(
                    %tenant, %batch_id, completed = counts.completed, failed = counts.failed,
                    cancelled = counts.cancelled, "batch completed"
                ),
                other => tracing::debug!(event = other.name(), ?other, "event"),
            }
        }
        Ok(())
    }
}
