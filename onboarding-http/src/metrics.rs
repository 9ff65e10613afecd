//! Prometheus metrics, hand-written in the text exposition format (no
//! metrics crate): requests by route and status, ingest counts, job outcomes,
//! processing latency, webhook deliveries and queue depth.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use onboarding_core::{ProcessError, Processor, QueueDepth, WorkItem};

const REQUEST_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
const PROCESSING_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, value: f64) {
        for (bound, count) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

#[derive(Debug)]
struct Inner {
    requests: Mutex<BTreeMap<(String, &'static str, u16), u64>>,
    request_seconds: Mutex<BTreeMap<String, Histogram>>,
    batches_accepted: AtomicU64,
    batches_replayed: AtomicU64,
    organizations_ingested: AtomicU64,
    organizations_rejected: AtomicU64,
    refused_backlog: AtomicU64,
    refused_concurrency: AtomicU64,
    submissions_in_progress: AtomicU64,
    jobs: Mutex<BTreeMap<&'static str, u64>>,
    processing_seconds: Mutex<Histogram>,
    webhooks: Mutex<BTreeMap<&'static str, u64>>,
}

/// The metrics one process exposes on `GET /metrics`. Cheap to clone; all
/// clones count into the same place.
#[derive(Debug, Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

impl Metrics {
    /// Empty metrics.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                requests: Mutex::new(BTreeMap::new()),
                request_seconds: Mutex::new(BTreeMap::new()),
                batches_accepted: AtomicU64::new(0),
                batches_replayed: AtomicU64::new(0),
                organizations_ingested: AtomicU64::new(0),
                organizations_rejected: AtomicU64::new(0),
                refused_backlog: AtomicU64::new(0),
                refused_concurrency: AtomicU64::new(0),
                submissions_in_progress: AtomicU64::new(0),
                jobs: Mutex::new(BTreeMap::new()),
                processing_seconds: Mutex::new(Histogram::new(PROCESSING_BUCKETS)),
                webhooks: Mutex::new(BTreeMap::new()),
            }),
        }
    }

    /// Wraps a processor so that its outcomes and latency are counted here.
    pub fn instrument(&self, processor: Arc<dyn Processor>) -> Arc<dyn Processor> {
        Arc::new(MeteredProcessor {
            inner: processor,
            metrics: self.clone(),
        })
    }

    pub(crate) fn record_request(
        &self,
        route: &str,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        *lock(&self.inner.requests)
            .entry((route.to_owned(), method, status))
            .or_insert(0) += 1;
        lock(&self.inner.request_seconds)
            .entry(route.to_owned())
            .or_insert_with(|| Histogram::new(REQUEST_BUCKETS))
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn record_accepted(&self, organizations: u32, rejected: usize, replayed: bool) {
        if replayed {
            self.inner.batches_replayed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.batches_accepted.fetch_add(1, Ordering::Relaxed);
        self.inner
            .organizations_ingested
            .fetch_add(u64::from(organizations), Ordering::Relaxed);
        self.inner
            .organizations_rejected
            .fetch_add(rejected as u64, Ordering::Relaxed);
    }

    pub(crate) fn record_refused(&self, reason: Refusal) {
        let counter = match reason {
            Refusal::Backlog => &self.inner.refused_backlog,
            Refusal::Concurrency => &self.inner.refused_concurrency,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one submission in progress until the guard is dropped.
    pub(crate) fn submission_started(&self) -> InProgress {
        self.inner
            .submissions_in_progress
            .fetch_add(1, Ordering::Relaxed);
        InProgress {
            metrics: self.clone(),
        }
    }

    pub(crate) fn record_job(&self, outcome: &'static str, elapsed: Duration) {
        *lock(&self.inner.jobs).entry(outcome).or_insert(0) += 1;
        lock(&self.inner.processing_seconds).observe(elapsed.as_secs_f64());
    }

    pub(crate) fn record_webhook(&self, result: &'static str) {
        *lock(&self.inner.webhooks).entry(result).or_insert(0) += 1;
    }

    /// The Prometheus text exposition of every metric, with the queue depth
    /// when it could be read.
    pub fn render(&self, depth: Option<QueueDepth>) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP onboarding_http_requests_total HTTP requests by route, method and status.\n# TYPE onboarding_http_requests_total counter\n");
        for ((route, method, status), n) in lock(&self.inner.requests).iter() {
            let _ = writeln!(
                out,
                "onboarding_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP onboarding_http_request_duration_seconds HTTP request latency by route.\n# TYPE onboarding_http_request_duration_seconds histogram\n");
        for (route, h) in lock(&self.inner.request_seconds).iter() {
            h.render(
                &mut out,
                "onboarding_http_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
        let counters = [
            (
                "onboarding_batches_accepted_total",
                "Batches accepted (replays excluded).",
                &self.inner.batches_accepted,
            ),
            (
                "onboarding_batches_replayed_total",
                "Submissions answered from an earlier batch with the same Idempotency-Key.",
                &self.inner.batches_replayed,
            ),
            (
                "onboarding_organizations_ingested_total",
                "Organizations accepted into batches.",
                &self.inner.organizations_ingested,
            ),
            (
                "onboarding_organizations_rejected_total",
                "Organizations rejected in partial mode.",
                &self.inner.organizations_rejected,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP onboarding_submissions_refused_total Submissions refused by backpressure (503 overloaded): backlog = the queue's backlog limit, concurrency = the concurrent-submission limit.\n# TYPE onboarding_submissions_refused_total counter\nonboarding_submissions_refused_total{{reason=\"backlog\"}} {}\nonboarding_submissions_refused_total{{reason=\"concurrency\"}} {}",
            self.inner.refused_backlog.load(Ordering::Relaxed),
            self.inner.refused_concurrency.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP onboarding_submissions_in_progress Submissions being handled now.\n# TYPE onboarding_submissions_in_progress gauge\nonboarding_submissions_in_progress {}",
            self.inner.submissions_in_progress.load(Ordering::Relaxed),
        );
        out.push_str("# HELP onboarding_jobs_total Processing attempts by outcome (completed, retryable, permanent).\n# TYPE onboarding_jobs_total counter\n");
        for (outcome, n) in lock(&self.inner.jobs).iter() {
            let _ = writeln!(out, "onboarding_jobs_total{{outcome=\"{outcome}\"}} {n}");
        }
        out.push_str("# HELP onboarding_processing_duration_seconds Processor latency per attempt.\n# TYPE onboarding_processing_duration_seconds histogram\n");
        lock(&self.inner.processing_seconds).render(
            &mut out,
            "onboarding_processing_duration_seconds",
            "",
        );
        out.push_str("# HELP onboarding_webhook_deliveries_total Webhook delivery attempts by result.\n# TYPE onboarding_webhook_deliveries_total counter\n");
        for (result, n) in lock(&self.inner.webhooks).iter() {
            let _ = writeln!(
                out,
                "onboarding_webhook_deliveries_total{{result=\"{result}\"}} {n}"
            );
        }
        out.push_str("# HELP onboarding_queue_depth Jobs in the queue by state.\n# TYPE onboarding_queue_depth gauge\n");
        match depth {
            Some(d) => {
                let _ = writeln!(
                    out,
                    "onboarding_queue_depth{{state=\"ready\"}} {}\nonboarding_queue_depth{{state=\"delayed\"}} {}\nonboarding_queue_depth{{state=\"in_flight\"}} {}",
                    d.ready, d.delayed, d.in_flight
                );
                out.push_str("# HELP onboarding_queue_up Whether the queue depth could be read.\n# TYPE onboarding_queue_up gauge\nonboarding_queue_up 1\n");
            }
            None => out.push_str("# HELP onboarding_queue_up Whether the queue depth could be read.\n# TYPE onboarding_queue_up gauge\nonboarding_queue_up 0\n"),
        }
        out
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

/// One submission in progress, counted in the gauge until dropped.
#[derive(Debug)]
pub(crate) struct InProgress {
    metrics: Metrics,
}

impl Drop for InProgress {
    fn drop(&mut self) {
        self.metrics
            .inner
            .submissions_in_progress
            .fetch_sub(1, Ordering::Relaxed);
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A processor wrapper that counts outcomes and latency into [`Metrics`].
struct MeteredProcessor {
    inner: Arc<dyn Processor>,
    metrics: Metrics,
}

#[async_trait]
impl Processor for MeteredProcessor {
    async fn process(&self, item: &WorkItem) -> Result<(), ProcessError> {
        let started = Instant::now();
        let result = self.inner.process(item).await;
        let outcome = match &result {
            Ok(()) => "completed",
            Err(ProcessError::Retryable(_)) => "retryable",
            Err(ProcessError::Permanent(_)) => "permanent",
        };
        self.metrics.record_job(outcome, started.elapsed());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.record_request("/api/v1/batches/{id}", "GET", 200, Duration::from_millis(3));
        m.record_accepted(3, 1, false);
        m.record_accepted(3, 0, true);
        m.record_job("completed", Duration::from_millis(20));
        m.record_refused(Refusal::Backlog);
        m.record_refused(Refusal::Backlog);
        m.record_refused(Refusal::Concurrency);
        let in_progress = m.submission_started();
        let text = m.render(Some(QueueDepth {
            ready: 4,
            delayed: 1,
            in_flight: 2,
        }));
        assert!(text.contains(
            "onboarding_http_requests_total{route=\"/api/v1/batches/{id}\",method=\"GET\",status=\"200\"} 1"
        ));
        assert!(text.contains("onboarding_organizations_ingested_total 3"));
        assert!(text.contains("onboarding_batches_replayed_total 1"));
        assert!(text.contains("onboarding_jobs_total{outcome=\"completed\"} 1"));
        assert!(text.contains("onboarding_processing_duration_seconds_bucket{le=\"0.025\"} 1"));
        assert!(text.contains("onboarding_processing_duration_seconds_count 1"));
        assert!(text.contains("onboarding_queue_depth{state=\"ready\"} 4"));
        assert!(text.contains("onboarding_submissions_refused_total{reason=\"backlog\"} 2"));
        assert!(text.contains("onboarding_submissions_refused_total{reason=\"concurrency\"} 1"));
        assert!(text.contains("onboarding_submissions_in_progress 1\n"));
        drop(in_progress);
        let text = m.render(None);
        assert!(text.contains("onboarding_queue_up 0"));
        assert!(text.contains("onboarding_submissions_in_progress 0\n"));
    }
}
