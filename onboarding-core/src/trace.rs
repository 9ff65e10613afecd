//! The trace context a request hands to the jobs it creates.
//!
//! The core knows no tracing backend: a host that exports traces (the
//! facade's `otel` feature) installs a [`TracePropagation`] once. Without
//! one, [`current_traceparent`] is `None`, nothing is stored with the batch
//! and nothing changes for the worker.
//!
//! The context travels with the batch in the repository
//! ([`Submission::trace_parent`](crate::repository::Submission::trace_parent),
//! read back by every claim as
//! [`ClaimedItem::trace_parent`](crate::repository::ClaimedItem::trace_parent)),
//! not in the queue message: a queue may lose its contents and the sweeper
//! re-enqueues from the database, so a retry, a release or a re-enqueued job
//! still continues the request's trace.

use std::sync::OnceLock;

/// Reads and continues W3C trace contexts on `tracing` spans.
pub trait TracePropagation: Send + Sync + 'static {
    /// The W3C `traceparent` of `span` (`None` when it is not recorded).
    fn traceparent(&self, span: &tracing::Span) -> Option<String>;
    /// Makes `span` (not yet entered) a child of the span `traceparent` names.
    fn set_parent(&self, span: &tracing::Span, traceparent: &str);
}

static PROPAGATION: OnceLock<Box<dyn TracePropagation>> = OnceLock::new();

/// Installs the process's propagation; `false` when one was installed before
/// (the first stays).
pub fn install(propagation: impl TracePropagation) -> bool {
    PROPAGATION.set(Box::new(propagation)).is_ok()
}

/// The `traceparent` of the current span, when a propagation is installed.
pub fn current_traceparent() -> Option<String> {
    let propagation = PROPAGATION.get()?;
    propagation.traceparent(&tracing::Span::current())
}

/// Makes `span` a child of `traceparent` (nothing without a propagation).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if let Some(propagation) = PROPAGATION.get() {
        propagation.set_parent(span, traceparent);
    }
}
