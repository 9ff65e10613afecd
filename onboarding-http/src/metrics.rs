//! Prometheus metrics, produced with the `metrics` crate's Prometheus
//! recorder (no listener of its own: the operator router renders it on
//! `GET /metrics`).
//!
//! The HTTP layer records into its own [`Metrics`] (so two routers in one
//! process, or two tests, count apart). The worker engine in
//! `onboarding-core` records through the `metrics` facade:
//! [`Metrics::install`] makes this recorder the process's global one, so
//! the worker's counters and histograms land in the same exposition.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};
use onboarding_core::QueueDepth;

use crate::config::ConfigError;

/// Request, submission and processing latencies (seconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Waits (histograms named `…_wait_seconds`, such as the worker's
/// `onboarding_worker_queue_wait_seconds`), in seconds: from milliseconds
/// to an hour of backlog.
const WAIT_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// How often histogram samples are folded into their buckets when nobody
/// scrapes (they accumulate until then).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

/// Every metric this crate produces, with its help text (the worker
/// engine describes its own, `onboarding_worker_*`).
const DESCRIPTIONS: &[(&str, Option<Unit>, &str)] = &[
    ("onboarding_http_requests_total", None, "HTTP requests by route, method and status."),
    ("onboarding_http_request_duration_seconds", Some(Unit::Seconds), "HTTP request latency by route."),
    ("onboarding_submission_duration_seconds", Some(Unit::Seconds), "Submissions from the service call to its answer (validate, backlog check, store, enqueue) by outcome: accepted, replayed, rejected (invalid, too large, idempotency conflict), refused (backlog), failed (a backend)."),
    ("onboarding_batches_accepted_total", None, "Batches accepted (replays excluded)."),
    ("onboarding_batches_replayed_total", None, "Submissions answered from an earlier batch with the same Idempotency-Key."),
    ("onboarding_organizations_ingested_total", None, "Organizations accepted into batches."),
    ("onboarding_organizations_rejected_total", None, "Organizations rejected in partial mode."),
    ("onboarding_submissions_refused_total", None, "Submissions refused by backpressure (503 overloaded): backlog = the queue's backlog limit, concurrency = the concurrent-submission limit."),
    ("onboarding_submissions_in_progress", None, "Submissions being handled now."),
    ("onboarding_webhook_deliveries_total", None, "Webhook delivery attempts by result."),
    ("onboarding_queue_depth", None, "Jobs in the queue by state (read at most every few seconds)."),
    ("onboarding_queue_up", None, "Whether the last queue depth reading succeeded."),
];

/// The metrics one process exposes on `GET /metrics`. Cheap to clone; all
/// clones count into the same place.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    upkeep: OnceLock<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A method name safe to use as a label (unknown methods collapse to `OTHER`).
pub(crate) fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn labels(pairs: &[(&'static str, &str)]) -> Vec<Label> {
    pairs
        .iter()
        .map(|(k, v)| Label::new(*k, SharedString::from(v.to_string())))
        .collect()
}

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        let builder = PrometheusBuilder::new();
        // Both only fail on an empty bucket list.
        let builder = builder
            .set_buckets_for_metric(Matcher::Suffix("_wait_seconds".into()), WAIT_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        for (name, unit, help) in DESCRIPTIONS {
            let (name, help) = (KeyName::from(*name), SharedString::from(*help));
            if name.as_str().ends_with("_total") {
                recorder.describe_counter(name, *unit, help);
            } else if unit.is_some() {
                recorder.describe_histogram(name, *unit, help);
            } else {
                recorder.describe_gauge(name, *unit, help);
            }
        }
        let metrics = Self {
            inner: Arc::new(Inner {
                recorder,
                handle,
                upkeep: OnceLock::new(),
            }),
        };
        // Shown at 0 from the start, so a dashboard sees them before the first refusal.
        for reason in [Refusal::Backlog, Refusal::Concurrency] {
            metrics.refused(reason).absolute(0);
        }
        metrics.in_progress_gauge().set(0.0);
        metrics
    }

    /// Makes this the process's global `metrics` recorder, so what the
    /// worker engine records (claims, completions, retries, failures,
    /// fenced-off results, lost leases, queue wait and processing time)
    /// shows on this `/metrics` too. One recorder per process: a second
    /// call (of any `Metrics`) fails.
    pub fn install(&self) -> Result<(), ConfigError> {
        self.start_upkeep();
        metrics::set_global_recorder(Global(self.inner.clone()))
            .map_err(|_| ConfigError::new("a global metrics recorder is already installed"))
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.inner.handle.run_upkeep();
        self.inner.handle.render()
    }

    /// Folds histogram samples into their buckets every few seconds (they
    /// would otherwise pile up in memory until the next scrape), from a task
    /// that ends when the last clone is dropped. Starts once, when called
    /// inside a tokio runtime.
    pub(crate) fn start_upkeep(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.inner.upkeep.get_or_init(|| {
            let weak: Weak<Inner> = Arc::downgrade(&self.inner);
            runtime.spawn(async move {
                let mut tick = tokio::time::interval(UPKEEP_EVERY);
                loop {
                    tick.tick().await;
                    match weak.upgrade() {
                        Some(inner) => inner.handle.run_upkeep(),
                        None => return,
                    }
                }
            });
        });
    }

    fn counter(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> Counter {
        let key = Key::from_parts(name, labels(pairs));
        self.inner.recorder.register_counter(&key, &METADATA)
    }

    fn gauge(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> Gauge {
        let key = Key::from_parts(name, labels(pairs));
        self.inner.recorder.register_gauge(&key, &METADATA)
    }

    fn histogram(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> Histogram {
        let key = Key::from_parts(name, labels(pairs));
        self.inner.recorder.register_histogram(&key, &METADATA)
    }

    fn refused(&self, reason: Refusal) -> Counter {
        let reason = match reason {
            Refusal::Backlog => "backlog",
            Refusal::Concurrency => "concurrency",
        };
        self.counter(
            "onboarding_submissions_refused_total",
            &[("reason", reason)],
        )
    }

    fn in_progress_gauge(&self) -> Gauge {
        self.gauge("onboarding_submissions_in_progress", &[])
    }

    pub(crate) fn record_request(
        &self,
        route: &str,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let status = status.to_string();
        self.counter(
            "onboarding_http_requests_total",
            &[("route", route), ("method", method), ("status", &status)],
        )
        .increment(1);
        self.histogram(
            "onboarding_http_request_duration_seconds",
            &[("route", route)],
        )
        .record(elapsed.as_secs_f64());
    }

    pub(crate) fn record_submission(&self, outcome: SubmissionOutcome, elapsed: Duration) {
        let outcome = match outcome {
            SubmissionOutcome::Accepted => "accepted",
            SubmissionOutcome::Replayed => "replayed",
            SubmissionOutcome::Rejected => "rejected",
            SubmissionOutcome::Refused => "refused",
            SubmissionOutcome::Failed => "failed",
        };
        self.histogram(
            "onboarding_submission_duration_seconds",
            &[("outcome", outcome)],
        )
        .record(elapsed.as_secs_f64());
    }

    pub(crate) fn record_accepted(&self, organizations: u32, rejected: usize, replayed: bool) {
        if replayed {
            self.counter("onboarding_batches_replayed_total", &[])
                .increment(1);
            return;
        }
        self.counter("onboarding_batches_accepted_total", &[])
            .increment(1);
        self.counter("onboarding_organizations_ingested_total", &[])
            .increment(u64::from(organizations));
        self.counter("onboarding_organizations_rejected_total", &[])
            .increment(rejected as u64);
    }

    pub(crate) fn record_refused(&self, reason: Refusal) {
        self.refused(reason).increment(1);
    }

    /// Counts one submission in progress until the guard is dropped.
    pub(crate) fn submission_started(&self) -> InProgress {
        let gauge = self.in_progress_gauge();
        gauge.increment(1.0);
        InProgress { gauge }
    }

    pub(crate) fn record_webhook(&self, result: &'static str) {
        self.counter("onboarding_webhook_deliveries_total", &[("result", result)])
            .increment(1);
    }

    /// Sets the queue depth gauges from a reading (`None`: it failed).
    pub(crate) fn record_depth(&self, depth: Option<QueueDepth>) {
        self.gauge("onboarding_queue_up", &[])
            .set(if depth.is_some() { 1.0 } else { 0.0 });
        if let Some(d) = depth {
            for (state, n) in [
                ("ready", d.ready),
                ("delayed", d.delayed),
                ("in_flight", d.in_flight),
            ] {
                // Gauges are f64: exact up to 2^53 jobs.
                self.gauge("onboarding_queue_depth", &[("state", state)])
                    .set(n as f64);
            }
        }
    }
}

/// The global recorder: forwards to one [`Metrics`]' recorder.
struct Global(Arc<Inner>);

impl Recorder for Global {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.recorder.describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.recorder.describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.0.recorder.describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.0.recorder.register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.0.recorder.register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.0.recorder.register_histogram(key, metadata)
    }
}

/// Why a submission was refused with 503 `overloaded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The queue's backlog is over `IngestConfig::max_backlog`.
    Backlog,
    /// `HttpConfig::max_concurrent_submissions` are in progress.
    Concurrency,
}

/// How a submission's service call ended (the label of
/// `onboarding_submission_duration_seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubmissionOutcome {
    Accepted,
    Replayed,
    Rejected,
    Refused,
    Failed,
}

/// One submission in progress, counted in the gauge until dropped.
pub(crate) struct InProgress {
    gauge: Gauge,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let m = Metrics::new();
        m.record_request("/api/v1/batches/{id}", "GET", 200, Duration::from_millis(3));
        m.record_accepted(3, 1, false);
        m.record_accepted(3, 0, true);
        m.record_submission(SubmissionOutcome::Accepted, Duration::from_millis(20));
        m.record_refused(Refusal::Backlog);
        m.record_refused(Refusal::Backlog);
        let in_progress = m.submission_started();
        m.record_depth(Some(QueueDepth {
            ready: 4,
            delayed: 1,
            in_flight: 2,
        }));
        let text = m.render();
        for line in [
            "onboarding_http_requests_total{route=\"/api/v1/batches/{id}\",method=\"GET\",status=\"200\"} 1",
            "onboarding_organizations_ingested_total 3",
            "onboarding_batches_replayed_total 1",
            "onboarding_submission_duration_seconds_bucket{outcome=\"accepted\",le=\"0.025\"} 1",
            "onboarding_submission_duration_seconds_count{outcome=\"accepted\"} 1",
            "onboarding_queue_depth{state=\"ready\"} 4",
            "onboarding_queue_up 1",
            "onboarding_submissions_refused_total{reason=\"backlog\"} 2",
            "onboarding_submissions_refused_total{reason=\"concurrency\"} 0",
            "onboarding_submissions_in_progress 1",
            "# HELP onboarding_organizations_ingested_total Organizations accepted into batches.",
            "# TYPE onboarding_http_request_duration_seconds histogram",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        drop(in_progress);
        m.record_depth(None);
        let text = m.render();
        assert!(text.lines().any(|l| l == "onboarding_queue_up 0"), "{text}");
        assert!(
            text.lines()
                .any(|l| l == "onboarding_submissions_in_progress 0"),
            "{text}"
        );
    }

    #[test]
    fn two_instances_count_apart() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.record_accepted(5, 0, false);
        assert!(a
            .render()
            .contains("onboarding_organizations_ingested_total 5"));
        assert!(!b
            .render()
            .contains("onboarding_organizations_ingested_total"));
    }
}
